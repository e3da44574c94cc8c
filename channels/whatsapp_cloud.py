"""WhatsApp through Meta's Cloud API: the hub's second WhatsApp provider beside Twilio.

Webhook (one callback URL per Meta app; every WhatsApp number of the app's business accounts
posts to it): GET answers Meta's subscription handshake (``hub.verify_token``), POST carries
``{"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field":
"messages", "value": {...}}]}]}`` signed with the app secret in X-Hub-Signature-256 (checked
on the raw bytes: re-serialized JSON never matches). Changes of other fields (templates,
quality, account updates) are acknowledged and ignored, and so are webhook-level ``errors``.

Features: text, media (image, audio and voice notes, video, document with its file name,
sticker) as ``wa-media:{media id}`` attachments the hub fetches through ``fetch_media`` (the
Graph API hands out a short-lived URL that wants the bearer token), location, shared contacts
(the first phone in ``meta["shared_phone"]``, E.164, when valid; ``shared_phone_is_sender``
says whether it is the citizen's own number), interactive button and list replies and
template quick replies (kind ``button``), reactions (kind ``reaction``; a removed reaction
comes without an emoji), the quoted message (``replied_to``) and the click-to-WhatsApp ad
(``referral_url``). Order, system (number changed) and unsupported messages are recorded as
kind ``unsupported`` with ``meta["whatsapp_type"]`` and Meta's error code when it gave one.
Delivery statuses sent, delivered, read and failed (with Meta's error code and details) become
StatusUpdates; "deleted" and statuses Meta may add later are ignored.

The sender is ``phone:+E164`` from the message's ``from`` (a wa_id: digits without the plus),
the same identity the Twilio channel makes, so a citizen is one contact whichever provider
carried the message. Dedupe key: the message's ``wamid`` (a reaction has its own wamid too).
Events addressed to another phone_number_id of the same app are parsed like ours, with
``meta["recipient_id"]`` naming it, so the hub can relabel them to that account.

Sending: ``POST /{version}/{phone_number_id}/messages`` with the system-user token, free text
inside the customer-service window (24 h after the citizen's last message) and an approved
template (by name and language, positional body parameters) outside it; no attachments on
replies. Graph errors that a later attempt can fix (throttling, Meta's own trouble, 5xx,
timeouts) raise TransientSendError; every other refusal (131047 outside the window, 131026
undeliverable, 190 bad token, ...) is a FAILED result with Meta's code.

Settings: ``channels.whatsapp.accounts.<name>`` with ``provider = "cloud"``
(``CloudWhatsAppAccount``): phone_number_id, number, access_token, app_secret, verify_token,
api_base_url, api_version, max_media_bytes, templates.
``raw`` is the whole body when the delivery holds one message, else the message's own JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from channels.base import (
    InboundRequest,
    ParsedInbound,
    PayloadError,
    TransientSendError,
    WindowRule,
)
from channels.meta import (
    SIGNATURE_HEADER,
    GraphClient,
    GraphError,
    check_signature,
    check_subscription,
    load_json_object,
)
from hub.identity import InvalidIdentity, normalize_phone, phone_identity
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
from hub.settings import CloudWhatsAppAccount
from hub.text import isolate

OBJECT = "whatsapp_business_account"
MEDIA_PREFIX = "wa-media:"
MAX_TEXT = 4096  # Cloud API limit for a text message body
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
_DEFAULT_MIME = {
    "image": "image/jpeg",
    "audio": "audio/ogg",
    "video": "video/mp4",
    "document": "application/octet-stream",
    "sticker": "image/webp",
}
_STATUS_MAP = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "failed": DeliveryState.FAILED,
}
_MEDIA_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")


# -- small type-checked readers: every malformed shape becomes a PayloadError ----------------


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object")
    return value


def _opt_obj(parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = parent.get(key)
    return None if value is None else _obj(value, f"{where}.{key}")


def _list(parent: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{where}.{key} must be a list")
    return value


def _str(parent: Mapping[str, Any], key: str, where: str, required: bool = False) -> str:
    value = parent.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key} must be a string")
    if required and not value.strip():  # blank is as good as missing (ids, types, from)
        raise PayloadError(f"{where}.{key} is missing")
    return value


def _id(parent: Mapping[str, Any], key: str, where: str, required: bool = False) -> str:
    """An id Meta may write as a string or a number (phone_number_id, error codes)."""
    value = parent.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _str(parent, key, where, required)


def _number(parent: Mapping[str, Any], key: str, where: str) -> float:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(f"{where}.{key} must be a number")
    try:
        out = float(value)
    except (ValueError, OverflowError):
        raise PayloadError(f"{where}.{key} must be a number") from None
    if not math.isfinite(out):
        raise PayloadError(f"{where}.{key} must be a finite number")
    return out


def _timestamp(parent: Mapping[str, Any], where: str) -> float | None:
    """Meta's ``timestamp``: Unix seconds as a string of digits (or a number)."""
    value = parent.get("timestamp")
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,15}", value):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return float(value)
    raise PayloadError(f"{where}.timestamp must be Unix seconds")


def _first_error(parent: Mapping[str, Any], where: str) -> tuple[str, str]:
    """(code, text) of ``errors[0]``: Meta's title, message and error_data.details."""
    errors = _list(parent, "errors", where)
    if not errors:
        return "", ""
    err = _obj(errors[0], f"{where}.errors[0]")
    code = _id(err, "code", f"{where}.errors[0]")
    title = _str(err, "title", f"{where}.errors[0]")
    message = _str(err, "message", f"{where}.errors[0]")
    data = _opt_obj(err, "error_data", f"{where}.errors[0]") or {}
    details = _str(data, "details", f"{where}.errors[0].error_data")
    parts: list[str] = []
    for part in (title, message, details):
        if part and part not in parts:
            parts.append(part)
    return code, ": ".join(parts)[:500]


def _refused(code: str, message: str) -> DeliveryResult:
    return DeliveryResult(
        accepted=False, state=DeliveryState.FAILED, error_code=code, error_message=message[:500]
    )


class CloudWhatsApp:
    """One WhatsApp number on Meta's Cloud API (one configured account)."""

    name = "whatsapp"
    provider = "cloud"

    def __init__(
        self,
        account: str,
        settings: CloudWhatsAppAccount,
        window_hours: float = 24.0,
        default_region: str = "ID",
        send_timeout_s: float = 15.0,
    ) -> None:
        self.account = account
        self.window = WindowRule(free_text_hours=window_hours)
        self.recipient_ids: tuple[str, ...] = (settings.phone_number_id,)
        self._settings = settings
        self._region = default_region
        self._graph = GraphClient(
            settings.api_base_url,
            settings.api_version,
            settings.access_token.get_secret_value(),
            send_timeout_s,
        )

    def __repr__(self) -> str:  # never the token, the app secret or the verify token
        return (
            f"CloudWhatsApp(account={self.account!r}, "
            f"phone_number_id={self._settings.phone_number_id!r}, "
            f"number={self._settings.number!r})"
        )

    # -- handshake and signature -------------------------------------------------------

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        return check_subscription(self._settings.verify_token.get_secret_value(), params)

    def verify(self, request: InboundRequest) -> None:
        check_signature(
            self._settings.app_secret.get_secret_value(),
            request.body,
            request.header(SIGNATURE_HEADER),
        )

    # -- inbound -----------------------------------------------------------------------

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        try:
            data = load_json_object(request.body, OBJECT)
        except RecursionError:  # absurdly nested JSON
            raise PayloadError("body is nested too deeply") from None
        raw = request.body.decode("utf-8", "replace")
        out = ParsedInbound()
        for i, raw_entry in enumerate(data["entry"]):
            where = f"entry[{i}]"
            entry = _obj(raw_entry, where)
            waba_id = _id(entry, "id", where)
            for j, raw_change in enumerate(_list(entry, "changes", where)):
                cwhere = f"{where}.changes[{j}]"
                change = _obj(raw_change, cwhere)
                if _str(change, "field", cwhere, required=True) != "messages":
                    continue  # template, quality, account updates: not for the inbox
                value = _obj(change.get("value"), f"{cwhere}.value")
                self._change(value, waba_id, raw, received_at, f"{cwhere}.value", out)
        if len(out.messages) == 1:  # alone, it keeps the exact bytes Meta signed
            out.messages[0] = replace(out.messages[0], raw=raw)
        return out

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        """Meta sends statuses in the same webhook as messages: the first one in it."""
        statuses = self.parse(request, 0.0).statuses
        if not statuses:
            raise PayloadError("no delivery status in this request")
        return statuses[0]

    def _change(
        self,
        value: dict[str, Any],
        waba_id: str,
        raw: str,
        received_at: float,
        where: str,
        out: ParsedInbound,
    ) -> None:
        messages = _list(value, "messages", where)
        statuses = _list(value, "statuses", where)
        if not messages and not statuses:
            return  # webhook-level "errors" only, or nothing: acknowledged
        metadata = _obj(value.get("metadata"), f"{where}.metadata")
        recipient_id = _id(metadata, "phone_number_id", f"{where}.metadata", required=True)
        names: dict[str, str] = {}
        for k, raw_contact in enumerate(_list(value, "contacts", where)):
            cwhere = f"{where}.contacts[{k}]"
            contact = _obj(raw_contact, cwhere)
            profile = _opt_obj(contact, "profile", cwhere) or {}
            wa_id = _str(contact, "wa_id", cwhere)
            name = _str(profile, "name", f"{cwhere}.profile")
            if wa_id and name:
                names[wa_id] = name
        base_meta = {"recipient_id": recipient_id}
        display = _str(metadata, "display_phone_number", f"{where}.metadata")
        if display:
            base_meta["display_phone_number"] = display
        if waba_id:
            base_meta["waba_id"] = waba_id
        for k, raw_msg in enumerate(messages):
            mwhere = f"{where}.messages[{k}]"
            obj = _obj(raw_msg, mwhere)
            own = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            out.messages.append(self._message(obj, names, base_meta, own, received_at, mwhere))
        for k, raw_status in enumerate(statuses):
            swhere = f"{where}.statuses[{k}]"
            status = self._status(_obj(raw_status, swhere), swhere)
            if status is not None:
                out.statuses.append(status)

    def _status(self, s: dict[str, Any], where: str) -> StatusUpdate | None:
        wamid = _str(s, "id", where, required=True)
        state = _STATUS_MAP.get(_str(s, "status", where, required=True))
        if state is None:
            return None  # "deleted", or a status Meta adds later: nothing to record
        code, text = _first_error(s, where) if state is DeliveryState.FAILED else ("", "")
        return StatusUpdate(
            channel=self.name,
            account=self.account,
            provider_id=wamid,
            state=state,
            error_code=code,
            error_message=text,
        )

    def _message(
        self,
        m: dict[str, Any],
        names: dict[str, str],
        base_meta: dict[str, str],
        raw: str,
        received_at: float,
        where: str,
    ) -> Message:
        wamid = _str(m, "id", where, required=True)
        wa_id = _str(m, "from", where, required=True)
        try:
            phone = normalize_phone(wa_id, self._region)
        except InvalidIdentity as exc:
            raise PayloadError(f"{where}.from is not a usable phone number: {exc}") from None
        mtype = _str(m, "type", where, required=True)
        provider_ts = _timestamp(m, where)
        meta = dict(base_meta)
        meta["whatsapp_type"] = mtype

        context = _opt_obj(m, "context", where)
        if context is not None:
            replied_to = _str(context, "id", f"{where}.context")
            if replied_to:
                meta["replied_to"] = replied_to
            if context.get("forwarded") is True or context.get("frequently_forwarded") is True:
                meta["forwarded"] = "true"
        referral = _opt_obj(m, "referral", where)
        if referral is not None:
            url = _str(referral, "source_url", f"{where}.referral")
            if url:
                meta["referral_url"] = url
            source_type = _str(referral, "source_type", f"{where}.referral")
            if source_type:
                meta["referral_source_type"] = source_type
        error_code, error_text = _first_error(m, where)
        if error_code:
            meta["error_code"] = error_code
        if error_text:
            meta["error_message"] = error_text

        kind, text = "unsupported", ""
        attachments: tuple[Attachment, ...] = ()
        location: Location | None = None
        body = m.get(mtype)
        bwhere = f"{where}.{mtype}"
        if mtype == "text":
            kind = "text"
            text = _str(_obj(body, bwhere), "body", bwhere)
        elif mtype in MEDIA_TYPES:
            kind = "media"
            media = _obj(body, bwhere)
            text = _str(media, "caption", bwhere)
            attachments = (
                Attachment(
                    url=MEDIA_PREFIX + _id(media, "id", bwhere, required=True),
                    content_type=_str(media, "mime_type", bwhere).strip() or _DEFAULT_MIME[mtype],
                    name=_str(media, "filename", bwhere)[:200],
                ),
            )
            if media.get("voice") is True:
                meta["voice"] = "true"
            if media.get("animated") is True:
                meta["animated"] = "true"
        elif mtype == "location":
            kind = "location"
            loc = _obj(body, bwhere)
            location = self._location(loc, bwhere)
            url = _str(loc, "url", bwhere)
            if url:
                meta["location_url"] = url
        elif mtype == "contacts":
            kind = "contact"
            text = self._contacts(body, phone, meta, bwhere)
        elif mtype == "interactive":
            kind, text = self._interactive(_obj(body, bwhere), meta, bwhere)
        elif mtype == "button":
            kind = "button"
            button = _obj(body, bwhere)
            text = _str(button, "text", bwhere)
            meta["button_payload"] = _str(button, "payload", bwhere)
        elif mtype == "reaction":
            kind = "reaction"
            reaction = _obj(body, bwhere)
            meta["reacted_to"] = _str(reaction, "message_id", bwhere, required=True)
            text = _str(reaction, "emoji", bwhere)
            meta["action"] = "react" if text else "unreact"
        elif mtype == "system":  # the citizen changed numbers, say
            system = _obj(body, bwhere) if body is not None else {}
            system_type = _str(system, "type", bwhere)
            if system_type:
                meta["system_type"] = system_type
            new_wa_id = _str(system, "new_wa_id", bwhere) or _str(system, "wa_id", bwhere)
            if new_wa_id:
                meta["new_wa_id"] = new_wa_id
        # order, unsupported, request_welcome, and types Meta adds later: recorded, no text.

        return Message(
            id=new_id(int(received_at * 1000)),
            channel=self.name,
            account=self.account,
            provider_id=wamid,
            sender=phone_identity(phone),
            reply_address=phone,
            received_at=received_at,
            kind=kind,
            text=text,
            display_name=names.get(wa_id, "")[:200],
            attachments=attachments,
            location=location,
            provider_ts=provider_ts,
            meta=meta,
            raw=raw,
        )

    @staticmethod
    def _location(loc: dict[str, Any], where: str) -> Location:
        latitude = _number(loc, "latitude", where)
        longitude = _number(loc, "longitude", where)
        if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
            raise PayloadError(f"{where}: latitude or longitude out of range")
        return Location(
            latitude=latitude,
            longitude=longitude,
            address=_str(loc, "address", where)[:500],
            label=_str(loc, "name", where)[:200],
        )

    def _contacts(self, body: Any, sender_phone: str, meta: dict[str, str], where: str) -> str:
        if not isinstance(body, list):
            raise PayloadError(f"{where} must be a list")
        lines: list[str] = []
        first_phone: str | None = None
        for i, raw_card in enumerate(body):
            cwhere = f"{where}[{i}]"
            card = _obj(raw_card, cwhere)
            name_obj = _opt_obj(card, "name", cwhere) or {}
            name = _str(name_obj, "formatted_name", f"{cwhere}.name") or " ".join(
                p
                for p in (
                    _str(name_obj, "first_name", f"{cwhere}.name"),
                    _str(name_obj, "last_name", f"{cwhere}.name"),
                )
                if p
            )
            numbers: list[str] = []
            for j, raw_phone in enumerate(_list(card, "phones", cwhere)):
                pwhere = f"{cwhere}.phones[{j}]"
                entry = _obj(raw_phone, pwhere)
                number = _str(entry, "phone", pwhere)
                wa_id = _str(entry, "wa_id", pwhere)
                if number or wa_id:
                    numbers.append(number or wa_id)
                if first_phone is None and (number or wa_id):
                    # wa_id is international and canonical; the phone is as the citizen's
                    # address book wrote it (maybe local, "0812-...").
                    first_phone = wa_id or number
            if i == 0 and name:
                meta["contact_name"] = name[:200]
            # the name isolated: an override in it must not turn the numbers after it
            line = " ".join(p for p in (isolate(name) if name else "", ", ".join(numbers)) if p)
            if line:
                lines.append(line)
        if first_phone is not None:
            try:
                shared = normalize_phone(first_phone, self._region)
            except InvalidIdentity:
                meta["shared_phone_invalid"] = first_phone[:40]
            else:
                meta["shared_phone"] = shared
                meta["shared_phone_is_sender"] = "true" if shared == sender_phone else "false"
        return "\n".join(lines)

    @staticmethod
    def _interactive(body: dict[str, Any], meta: dict[str, str], where: str) -> tuple[str, str]:
        itype = _str(body, "type", where)
        meta["interactive_type"] = itype
        if itype in ("button_reply", "list_reply"):
            reply = _obj(body.get(itype), f"{where}.{itype}")
            reply_id = _str(reply, "id", f"{where}.{itype}")
            meta["button_payload"] = reply_id
            if itype == "list_reply":
                meta["list_id"] = reply_id
                description = _str(reply, "description", f"{where}.{itype}")
                if description:
                    meta["list_description"] = description[:200]
            return "button", _str(reply, "title", f"{where}.{itype}")
        return "unsupported", ""  # nfm_reply (Flows) and later kinds: recorded only

    # -- media -------------------------------------------------------------------------

    def owns_media(self, ref: str) -> bool:
        return ref.startswith(MEDIA_PREFIX)

    async def fetch_media(self, ref: str, max_bytes: int) -> tuple[bytes, str]:
        media_id = ref.removeprefix(MEDIA_PREFIX)
        if not ref.startswith(MEDIA_PREFIX) or not _MEDIA_ID.fullmatch(media_id):
            raise PayloadError("not a WhatsApp Cloud media reference")
        limit = min(self._settings.max_media_bytes, max_bytes)
        try:
            info = await self._graph.get(media_id)
        except GraphError as err:
            if err.retryable:
                raise TransientSendError(str(err), err.retry_after, err.error_code) from None
            raise PayloadError(f"media {media_id} is not available ({err.error_code})") from None
        url = info.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise PayloadError(f"media {media_id}: the Graph API gave no URL")
        size = info.get("file_size")
        if isinstance(size, int) and not isinstance(size, bool) and size > limit:
            raise PayloadError(f"media above {limit} bytes")
        data, ctype = await self._graph.download(url, max_bytes=limit)
        mime = info.get("mime_type")
        return data, mime if isinstance(mime, str) and mime else ctype

    # -- outbound ----------------------------------------------------------------------

    def _body(self, reply: OutboundReply, to: str) -> dict[str, Any] | DeliveryResult:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
        }
        if reply.template is not None:
            variables = reply.template.variables
            keys = [str(i) for i in range(1, len(variables) + 1)]
            if sorted(variables) != sorted(keys):
                return _refused(
                    "template_variables",
                    "template variables must be numbered 1..n (Meta's body parameters)",
                )
            template: dict[str, Any] = {
                "name": reply.template.provider_ref,
                "language": {"code": reply.template.language or "id"},
            }
            if keys:
                template["components"] = [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": variables[k]} for k in keys],
                    }
                ]
            body["type"] = "template"
            body["template"] = template
            return body
        if not reply.text.strip():
            return _refused("empty_text", "WhatsApp cannot send an empty message")
        if len(reply.text) > MAX_TEXT:
            return _refused("too_long", f"text above {MAX_TEXT} characters")
        body["type"] = "text"
        body["text"] = {"body": reply.text, "preview_url": False}
        return body

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        if reply.files:
            return _refused(
                "attachments_unsupported", "replies on WhatsApp Cloud carry no attachments"
            )
        try:
            to = normalize_phone(reply.to, self._region).removeprefix("+")
        except InvalidIdentity:
            return _refused("bad_recipient", "the recipient is not a valid phone number")
        body = self._body(reply, to)
        if isinstance(body, DeliveryResult):
            return body
        try:
            answer = await self._graph.post(f"{self._settings.phone_number_id}/messages", body)
        except GraphError as err:
            if err.retryable:
                raise TransientSendError(str(err), err.retry_after, err.error_code) from None
            return _refused(err.error_code, err.message)
        # An accepted send without an id cannot happen at Meta; if it does, the message may be
        # out, so it is not retried (a retry could reach the citizen twice).
        provider_id = ""
        messages = answer.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            wamid = messages[0].get("id")
            if isinstance(wamid, str):
                provider_id = wamid
        return DeliveryResult(accepted=True, provider_id=provider_id, state=DeliveryState.SENT)

    async def aclose(self) -> None:
        await self._graph.aclose()
