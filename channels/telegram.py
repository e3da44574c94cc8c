"""Telegram bot: webhook updates in, replies out through python-telegram-bot's ``Bot``.

Webhook path (per configured account ``{account}``): POST /webhooks/telegram/{account}, JSON
``Update`` bodies. Telegram proves itself with the ``X-Telegram-Bot-Api-Secret-Token`` header
set by ``setWebhook(url, secret_token=...)`` (done by a CLI command through ``set_webhook``).

Features: text, photos (largest size), documents, video, voice, audio, locations and contacts
from ``message`` and ``edited_message`` updates; other update types (callback queries, polls,
channel posts, ...) are acknowledged and ignored. Dedupe key: ``update:{update_id}``. A contact
the citizen shares carries its phone in ``meta["shared_phone"]`` (E.164), and
``meta["shared_phone_is_sender"]`` says whether it is the citizen's own number (Telegram sets
``contact.user_id`` to the sender's id when the user shares their own contact): only then may the
hub link the Telegram identity to that phone's contact.

Sending uses ``telegram.Bot`` as a plain HTTP client pointed at ``api_base_url`` (never PTB's
``Application``/``Updater``, which want to own the loop and the web server). Telegram has no
reply window and no delivery receipts: an accepted send is final at "sent".

Settings: ``channels.telegram.accounts.<name>``: bot_token, webhook_secret, api_base_url, unit,
ack_language (``TelegramAccount`` below; to move to hub/settings.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import warnings
from datetime import timedelta

from telegram import Bot, Update
from telegram import Message as TgMessage
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from channels.base import (
    ChannelError,
    InboundRequest,
    ParsedInbound,
    PayloadError,
    SignatureError,
    TransientSendError,
    WindowRule,
)
from channels.json_input import without_lone_surrogates
from hub.identity import InvalidIdentity, normalize_phone
from hub.ids import new_id
from hub.model import (
    Attachment,
    DeliveryResult,
    DeliveryState,
    Location,
    Message,
    OutboundReply,
    StatusUpdate,
)
from hub.settings import TelegramAccount

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
SUPPORTED_UPDATES = ("message", "edited_message")
MAX_TEXT = 4096  # Telegram's limit for one message's text
FILE_PREFIX = "tg-file:"  # an attachment's url: fetched through the hub with getFile

# httpx logs every request URL at INFO, and Bot API URLs contain the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)


def telegram_identity(chat_id: int | str) -> str:
    return f"telegram:{chat_id}"


def plain_bot(token: str, api_base_url: str, timeout_s: float) -> Bot:
    """python-telegram-bot's ``Bot`` as a plain HTTP client on ``api_base_url`` (never PTB's
    ``Application``, which wants to own the loop), with every timeout bounded."""
    base = api_base_url.rstrip("/")
    request = HTTPXRequest(
        connect_timeout=timeout_s, read_timeout=timeout_s, write_timeout=timeout_s
    )
    return Bot(token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot", request=request)


def _text(value: object, where: str) -> str:
    """A string field of the Bot API ("" when absent)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be a string")
    return value


def _id(value: object, where: str) -> int:
    """A required integer field of the Bot API (chat and message ids); a bool is none."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{where} must be an integer")
    return value


def _int(value: object, where: str) -> int | None:
    return None if value is None else _id(value, where)


def _size(value: object, where: str) -> int | None:
    size = _int(value, where)
    if size is not None and size < 0:
        raise PayloadError(f"{where} must not be negative")
    return size


def _file_id(value: object, where: str) -> str:
    file_id = _text(value, where)
    if not file_id.strip():
        raise PayloadError(f"{where} is missing")
    return file_id


def _coordinate(value: object, limit: float, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{where} must be a number")
    if not -limit <= value <= limit:  # also false for NaN; before float() of a huge int
        raise PayloadError(f"{where} is out of range")
    return float(value)


def _retry_after_seconds(exc: RetryAfter) -> float:
    # PTB 22.2+ warns on reading retry_after unless PTB_TIMEDELTA is set; the value is the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class TelegramChannel:
    """One Telegram bot (one configured account)."""

    name = "telegram"
    provider = "telegram"

    def __init__(
        self,
        account: str,
        settings: TelegramAccount,
        default_region: str = "ID",
        send_timeout_s: float = 15.0,
    ) -> None:
        self.account = account
        self.window = WindowRule(free_text_hours=10**6, template_required_outside=False)
        self.settings = settings
        self._region = default_region
        self._timeout = send_timeout_s
        self._base = settings.api_base_url.rstrip("/")
        self._bot: Bot | None = None

    def __repr__(self) -> str:  # never the token or the secret
        return f"TelegramChannel(account={self.account!r}, api_base_url={self._base!r})"

    # -- inbound -----------------------------------------------------------------------

    def verify(self, request: InboundRequest) -> None:
        given = request.header(SECRET_HEADER)
        if not given:
            raise SignatureError(f"missing {SECRET_HEADER}")
        expected = self.settings.webhook_secret.get_secret_value()
        # The header's bytes as sent: aiohttp keeps bytes that are not UTF-8 as surrogates.
        given_bytes = given.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given_bytes, expected.encode("utf-8")):
            raise SignatureError(f"{SECRET_HEADER} does not match")

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise PayloadError("body is not JSON") from None
        except RecursionError:
            raise PayloadError("body is nested too deeply") from None
        if not isinstance(data, dict):
            raise PayloadError("an Update must be a JSON object")
        data = without_lone_surrogates(data)
        update_id = data.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise PayloadError("update_id is missing or not an integer")
        if not any(key in data for key in SUPPORTED_UPDATES):
            return ParsedInbound()  # callback_query, poll, channel_post, ...: not for us
        for key in SUPPORTED_UPDATES:
            if key in data and not isinstance(data[key], dict):
                raise PayloadError(f"{key} must be an object")
        try:
            update = Update.de_json(data, None)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
            # OSError: a date fromtimestamp() cannot take on this platform (errno 75)
            reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            raise PayloadError(f"not a Telegram Update: {reason}") from None
        except RecursionError:
            raise PayloadError("body is nested too deeply") from None
        tg = update.message or update.edited_message
        if tg is None:
            return ParsedInbound()
        raw = request.body.decode("utf-8", "replace")
        return ParsedInbound(
            messages=[
                self._message(update_id, tg, update.edited_message is not None, raw, received_at)
            ]
        )

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        raise PayloadError("Telegram sends no delivery status callbacks")

    def _message(
        self, update_id: int, tg: TgMessage, edited: bool, raw: str, received_at: float
    ) -> Message:
        # PTB builds its objects from whatever JSON it is given: every field read here is
        # checked for the type the Bot API documents, so a wrong one is a 400, not a crash.
        where = "edited_message" if edited else "message"
        chat = tg.chat
        user = tg.from_user
        if chat is None:
            raise PayloadError(f"{where}.chat is missing")
        chat_id = _id(chat.id, f"{where}.chat.id")
        meta: dict[str, str] = {
            "message_id": str(_id(tg.message_id, f"{where}.message_id")),
            "chat_type": _text(chat.type, f"{where}.chat.type"),
        }
        if edited:
            meta["edited"] = "true"
        if user is not None:
            uwhere = f"{where}.from"
            if username := _text(user.username, f"{uwhere}.username"):
                meta["username"] = username
            if language := _text(user.language_code, f"{uwhere}.language_code"):
                meta["language_code"] = language
            names: tuple[object, ...] = (user.first_name, user.last_name)
            display = " ".join(_text(p, f"{uwhere}.name") for p in names if p)
        else:
            names = (chat.first_name, chat.last_name)
            display = " ".join(_text(p, f"{where}.chat.name") for p in names if p) or _text(
                chat.title, f"{where}.chat.title"
            )
        if tg.reply_to_message is not None:
            replied = tg.reply_to_message.message_id
            meta["replied_to"] = str(_int(replied, f"{where}.reply_to_message.message_id"))

        kind = "text"
        text = _text(tg.text, f"{where}.text") or _text(tg.caption, f"{where}.caption")
        attachments: list[Attachment] = []
        location: Location | None = None
        if tg.photo:
            sizes = [
                (
                    _int(p.width, f"{where}.photo.width") or 0,
                    _int(p.height, f"{where}.photo.height") or 0,
                    _size(p.file_size, f"{where}.photo.file_size"),
                    _file_id(p.file_id, f"{where}.photo.file_id"),
                )
                for p in tg.photo
            ]
            _w, _h, size, file_id = max(sizes, key=lambda p: (p[0] * p[1], p[2] or 0))
            attachments.append(
                Attachment(url=f"{FILE_PREFIX}{file_id}", content_type="image/jpeg", size=size)
            )
        if tg.document is not None:
            d, dwhere = tg.document, f"{where}.document"
            attachments.append(
                Attachment(
                    url=f"{FILE_PREFIX}{_file_id(d.file_id, f'{dwhere}.file_id')}",
                    content_type=_text(d.mime_type, f"{dwhere}.mime_type").strip()
                    or "application/octet-stream",
                    name=_text(d.file_name, f"{dwhere}.file_name")[:200],
                    size=_size(d.file_size, f"{dwhere}.file_size"),
                )
            )
        for media, field, default_type in (
            (tg.video, "video", "video/mp4"),
            (tg.voice, "voice", "audio/ogg"),
            (tg.audio, "audio", "audio/mpeg"),
        ):
            if media is not None:
                mwhere = f"{where}.{field}"
                mime = _text(getattr(media, "mime_type", None), f"{mwhere}.mime_type").strip()
                attachments.append(
                    Attachment(
                        url=f"{FILE_PREFIX}{_file_id(media.file_id, f'{mwhere}.file_id')}",
                        content_type=mime or default_type,
                        size=_size(media.file_size, f"{mwhere}.file_size"),
                    )
                )
        if attachments:
            kind = "media"
        if tg.location is not None:
            kind = "location"
            venue = tg.venue
            lwhere = f"{where}.location"
            latitude = _coordinate(tg.location.latitude, 90, f"{lwhere}.latitude")
            longitude = _coordinate(tg.location.longitude, 180, f"{lwhere}.longitude")
            location = Location(
                latitude=latitude,
                longitude=longitude,
                address=_text(venue.address if venue else "", f"{where}.venue.address")[:500],
                label=_text(venue.title if venue else "", f"{where}.venue.title")[:200],
            )
        if tg.contact is not None:
            kind = "contact"
            c, cwhere = tg.contact, f"{where}.contact"
            phone = _text(c.phone_number, f"{cwhere}.phone_number")
            names = (c.first_name, c.last_name)
            name = " ".join(_text(p, f"{cwhere}.name") for p in names if p)
            meta["contact_name"] = name[:200]
            is_sender = user is not None and c.user_id is not None and c.user_id == user.id
            meta["shared_phone_is_sender"] = "true" if is_sender else "false"
            try:
                meta["shared_phone"] = normalize_phone(phone, self._region)
            except InvalidIdentity:
                meta["shared_phone_invalid"] = phone[:40]
            text = text or f"{name} {phone}".strip()
        if kind == "text" and not text:
            kind = "unsupported"  # a sticker, poll, game, ...: recorded, nothing to read
            meta["telegram_type"] = str(tg.effective_attachment.__class__.__name__).lower()

        return Message(
            id=new_id(int(received_at * 1000)),
            channel=self.name,
            account=self.account,
            provider_id=f"update:{update_id}",
            sender=telegram_identity(chat_id),
            reply_address=str(chat_id),
            received_at=received_at,
            kind=kind,
            text=text,
            display_name=display[:200],
            attachments=tuple(attachments),
            location=location,
            provider_ts=(tg.edit_date or tg.date).timestamp() if tg.date else None,
            meta=meta,
            raw=raw,
        )

    # -- outbound ----------------------------------------------------------------------

    def _client(self) -> Bot:
        if self._bot is None:
            self._bot = plain_bot(
                self.settings.bot_token.get_secret_value(), self._base, self._timeout
            )
        return self._bot

    async def _ready(self) -> Bot:
        bot = self._client()
        await bot.initialize()  # getMe, once; a no-op afterwards
        return bot

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        text = reply.text
        if not text and reply.template is not None:
            text = reply.template.name
        if not text:
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code="empty_text",
                error_message="Telegram cannot send an empty message",
            )
        if not re.fullmatch(r"-?[0-9]{1,20}", reply.to):
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code="bad_chat_id",
                error_message=f"not a Telegram chat id: {reply.to[:40]!r}",
            )
        try:
            async with asyncio.timeout(self._timeout * 2 + 1):
                bot = await self._ready()
                sent = await bot.send_message(chat_id=int(reply.to), text=text[:MAX_TEXT])
        except TimeoutError:
            raise TransientSendError("provider timed out", code="timeout") from None
        except RetryAfter as exc:
            raise TransientSendError(
                "flood control", _retry_after_seconds(exc), code="429"
            ) from None
        except ChatMigrated as exc:
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code="chat_migrated",
                error_message=f"chat moved to {exc.new_chat_id}",
            )
        except TimedOut:
            raise TransientSendError("provider timed out", code="timeout") from None
        except (BadRequest, Forbidden, InvalidToken) as exc:
            code = {BadRequest: "400", Forbidden: "403"}.get(type(exc), "401")
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code=code,
                error_message=str(exc.message)[:500],
            )
        except NetworkError as exc:  # connection errors, 5xx
            raise TransientSendError(
                f"network error: {exc.message[:200]}", code="network"
            ) from None
        except TelegramError as exc:
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code=type(exc).__name__,
                error_message=str(exc.message)[:500],
            )
        return DeliveryResult(
            accepted=True, provider_id=str(sent.message_id), state=DeliveryState.SENT
        )

    # -- media (MediaSource): a citizen's photo or document, by file id ------------------

    def owns_media(self, ref: str) -> bool:
        return ref.startswith(FILE_PREFIX)

    async def fetch_media(self, ref: str, max_bytes: int) -> tuple[bytes, str]:
        """getFile, then the file's bytes (bots may download files up to 20 MB)."""
        file_id = ref.removeprefix(FILE_PREFIX)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,200}", file_id):
            raise PayloadError("not a Telegram file id")
        try:
            async with asyncio.timeout(self._timeout * 2 + 1):
                bot = await self._ready()
                tg_file = await bot.get_file(file_id)
                if tg_file.file_size is not None and tg_file.file_size > max_bytes:
                    raise PayloadError(f"file above {max_bytes} bytes")
                data = bytes(await tg_file.download_as_bytearray())
        except TimeoutError:
            raise TransientSendError("provider timed out", code="timeout") from None
        except (BadRequest, Forbidden, InvalidToken) as exc:
            raise PayloadError(f"Telegram refused the file: {exc.message[:200]}") from None
        except (NetworkError, RetryAfter) as exc:
            raise TransientSendError(f"Telegram unavailable: {type(exc).__name__}") from None
        if len(data) > max_bytes:
            raise PayloadError(f"file above {max_bytes} bytes")
        return data, ""  # Telegram does not say; the type recorded at intake stands

    async def set_webhook(self, url: str, secret: str | None = None) -> bool:
        """Point Telegram at ``url`` with the secret-token header (for the CLI)."""
        token = secret if secret is not None else self.settings.webhook_secret.get_secret_value()
        try:
            bot = await self._ready()
            return await bot.set_webhook(
                url=url,
                secret_token=token,
                allowed_updates=list(SUPPORTED_UPDATES),
            )
        except TelegramError as exc:
            raise ChannelError(f"setWebhook failed: {exc.message}") from None

    async def aclose(self) -> None:
        if self._bot is not None:
            bot, self._bot = self._bot, None
            await bot.shutdown()
