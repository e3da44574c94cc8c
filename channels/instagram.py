"""Instagram DM (@ppid.kemnaker): Meta's Instagram messaging webhooks in, Graph API sends out.

Webhook path (per configured account ``{account}``): GET for Meta's subscription handshake
(``hub.mode=subscribe``, our ``verify_token``, the ``hub.challenge`` echoed back), POST for
``{"object": "instagram", "entry": [...]}`` deliveries signed with the app secret in
X-Hub-Signature-256 (checked over the raw bytes: re-serialized JSON never matches).

Features: every entry's ``messaging`` events, and the ``changes`` form some deliveries use
(``{"field": "messages", "value": <one messaging event>}``; the other messaging fields too),
in delivery order. Citizen messages: text; image, video, audio and file attachments (kind
``media``; Instagram gives a CDN URL, no MIME type, so the content type is a generic one per
type); shared posts and reels (kind ``share``, the link as a ``text/uri-list`` attachment);
story mentions (kind ``story_mention``, the story's URL as an attachment); story replies
(``story_url``/``story_id``) and quoted messages (``replied_to``); quick replies and
postbacks (kind ``button``); ad and ig.me referrals (``referral_*`` on the message, or a
message of kind ``referral`` of their own); ``is_unsupported`` (kind ``unsupported``).
Reactions become kind ``reaction``, unsent messages kind ``retraction``, the business's own
messages (``is_echo``, also those typed in the Instagram app) kind ``echo`` with the citizen
as sender, so that an echo can never open a ticket in the business's name. Read receipts
(``read.mid``) are a StatusUpdate READ of our message: Instagram has no separate status
callback. A reaction or read by the business itself (in the Instagram app) is skipped, as
are other events (``message_edit``, ``delivery``, comments, mentions, ...): acknowledged.
Attachment URLs are CDN links (``lookaside.fbsbx.com``) signed in the URL itself and
short-lived: the channel is not a MediaSource, the hub should copy them soon after arrival.

Identity: ``instagram:{IGSID}``, the Instagram-scoped id of the citizen (the sender of a
citizen event, the recipient of an echo); ``meta["recipient_id"]`` is our side's Instagram id.
One Meta app may serve several Instagram accounts through one callback URL, so an event for a
sibling account is parsed like our own and labelled with its recipient id; the hub routes it.
``raw`` is the whole body when the delivery holds one message, else the event's own JSON: a
batch must not copy every citizen's words into every message (nor keep a deleted one's).

Sending: ``POST /{version}/{ig_account_id}/messages`` (never ``me``) with the access token,
``messaging_type`` RESPONSE, or MESSAGE_TAG with ``tag`` HUMAN_AGENT when the hub says an agent
answers after the 24-hour window (up to ``human_agent_hours``). Instagram takes at most 1000
characters a message, so a longer reply goes out in parts, each cut at its last blank line,
else line break, else sentence end in its second half (no tiny parts), else its last space;
mid-word only inside a word longer than the limit. The reply's provider id is the first
part's, the others are its ``part_ids`` (their echoes and reads name the same reply), and a
failure after the first part is final (``partial:k/n``) so the hub never sends
the delivered parts twice. Templates do not exist on Instagram. Graph refusals map through
``channels.meta.GraphError``: retryable codes raise TransientSendError, the rest are a FAILED
result with Meta's ``code/subcode`` (``10/2018278``: outside the allowed window, ``551``: the
user is not available, ``190``: the token is bad).

Settings: ``channels.instagram.accounts.<name>`` (``hub.settings.InstagramAccount``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
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
from hub.ids import new_id
from hub.model import (
    Attachment,
    DeliveryResult,
    DeliveryState,
    Message,
    OutboundReply,
    StatusUpdate,
)
from hub.settings import InstagramAccount

log = logging.getLogger(__name__)

MAX_TEXT = 1000  # Instagram's limit for one text message, in characters
HUMAN_AGENT = "HUMAN_AGENT"

# Attachment types with a file behind them, and the generic type we label each with:
# Instagram's payload carries only a CDN URL, never a MIME type.
MEDIA_TYPES = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mp4",
    "file": "application/octet-stream",
}
SHARE_TYPES = frozenset({"share", "ig_reel", "reel"})
URI_LIST = "text/uri-list"

# The "changes" form names the webhook field; these carry one messaging event as the value.
MESSAGING_FIELDS = frozenset(
    {
        "messages",
        "messaging_postbacks",
        "messaging_referral",
        "messaging_seen",
        "message_reactions",
    }
)
# Anything a meta value or a referral string could hold is cut to this (never the text).
META_MAX = 1000
_ID_RE = re.compile(r"[0-9]{1,30}")

_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_SPACE = re.compile(r"\s")


def instagram_identity(igsid: str) -> str:
    return f"instagram:{igsid}"


# -- JSON shape helpers: every wrong type is a PayloadError ------------------------------


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object")
    return value


def _opt_obj(parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = parent.get(key)
    if value is None:
        return None
    return _obj(value, f"{where}.{key}")


def _opt_list(parent: Mapping[str, Any], key: str, where: str) -> list[Any] | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise PayloadError(f"{where}.{key} must be a list")
    return value


def _opt_str(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key} must be a string")
    return value


def _opt_bool(parent: Mapping[str, Any], key: str, where: str) -> bool:
    value = parent.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise PayloadError(f"{where}.{key} must be a boolean")
    return value


def _id(value: Any, where: str) -> str:
    """A Graph id: a non-empty string (Meta's form) or a non-negative integer."""
    if isinstance(value, str) and value.strip() and len(value) <= 200:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    raise PayloadError(f"{where} is missing or not an id")


def _party(event: Mapping[str, Any], key: str, where: str) -> str:
    """An Instagram-scoped id or account id: digits (it becomes ``instagram:<id>``, and a
    reply can only go to digits)."""
    value = _id(_obj(event.get(key), f"{where}.{key}").get("id"), f"{where}.{key}.id")
    if not _ID_RE.fullmatch(value):
        raise PayloadError(f"{where}.{key}.id is not an Instagram id (digits)")
    return value


def _timestamp(event: Mapping[str, Any], where: str) -> tuple[str, float | None]:
    """The event's timestamp as given (for dedupe keys) and in seconds. Meta sends
    milliseconds; the ``changes`` form's examples use a string of seconds."""
    value = event.get("timestamp")
    if value is None:
        return "", None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**20:
        number = value
    else:
        raise PayloadError(f"{where}.timestamp must be a number")
    seconds = number / 1000 if number >= 10**11 else float(number)
    return str(number), seconds


def _clip(value: str) -> str:
    return value[:META_MAX]


# -- text splitting ------------------------------------------------------------------------


def _last_end(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int:
    """The largest match end in ``[lo, hi]`` (0 if none): where a part may end."""
    best = 0
    for m in pattern.finditer(text, 0, hi + 1):
        if lo <= m.end() <= hi:
            best = m.end()
    return best


def _last_start(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int:
    best = 0
    for m in pattern.finditer(text, 0, hi + 1):
        if lo <= m.start() <= hi:
            best = m.start()
    return best


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters: at the last blank line, else
    line break, else sentence end that leaves the part at least half full, else at the last
    space, else (a word longer than the limit) at the limit. The whitespace at each cut is
    dropped; nothing else is."""
    if len(text) <= limit:
        return [text] if text.strip() else []
    parts: list[str] = []
    rest = text
    half = limit // 2
    while len(rest) > limit:
        cut = (
            _last_start(_PARAGRAPH, rest, half, limit)
            or _last_start(_LINE, rest, half, limit)
            or _last_end(_SENTENCE, rest, half, limit)
            or _last_start(_SPACE, rest, 1, limit)
            or limit
        )
        part = rest[:cut].rstrip()
        if part.strip():
            parts.append(part)
        rest = rest[cut:].lstrip()
    if rest.strip():
        parts.append(rest)
    return parts


def _own_raw(event: dict[str, Any]) -> str:
    """One event's own JSON: a delivery of many events must not copy every citizen's text
    into every message (and a deleted message's text must leave with it)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def _whole_body_if_alone(out: ParsedInbound, raw: str) -> ParsedInbound:
    """A delivery of one message keeps the exact bytes Meta signed, for the audit trail."""
    if len(out.messages) == 1:
        out.messages[0] = replace(out.messages[0], raw=raw)
    return out


def _failed(code: str, message: str, *delivered: str) -> DeliveryResult:
    """A refusal; ``delivered`` are the ids of parts that did go out (their echoes and read
    receipts still name this reply)."""
    return DeliveryResult(
        accepted=False,
        provider_id=delivered[0] if delivered else "",
        state=DeliveryState.FAILED,
        error_code=code,
        error_message=message[:500],
        part_ids=tuple(i for i in delivered[1:] if i),
    )


class InstagramChannel:
    """One Instagram professional account (one configured account)."""

    name = "instagram"
    provider = "meta"

    def __init__(
        self, account: str, settings: InstagramAccount, send_timeout_s: float = 15.0
    ) -> None:
        self.account = account
        self.settings = settings
        self.ig_account_id = settings.ig_account_id
        self.recipient_ids: tuple[str, ...] = (settings.ig_account_id,)
        self.window = WindowRule(
            free_text_hours=settings.window_hours,
            template_required_outside=False,
            attachments=False,
            human_agent_hours=settings.human_agent_hours,
        )
        self._timeout = send_timeout_s
        self._graph: GraphClient | None = None

    def __repr__(self) -> str:  # never the token, the app secret or the verify token
        return f"InstagramChannel(account={self.account!r}, ig_account_id={self.ig_account_id!r})"

    # -- handshake and signature -------------------------------------------------------

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        return check_subscription(self.settings.verify_token.get_secret_value(), params)

    def verify(self, request: InboundRequest) -> None:
        check_signature(
            self.settings.app_secret.get_secret_value(),
            request.body,
            request.header(SIGNATURE_HEADER),
        )

    # -- inbound -----------------------------------------------------------------------

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        data = load_json_object(request.body, "instagram")
        raw = request.body.decode("utf-8", "replace")
        out = ParsedInbound()
        for i, entry_value in enumerate(data["entry"]):
            where = f"entry[{i}]"
            entry = _obj(entry_value, where)
            entry_id = _id(entry["id"], f"{where}.id") if entry.get("id") is not None else ""
            events: list[tuple[str, Any]] = []
            messaging = _opt_list(entry, "messaging", where)
            for j, event in enumerate(messaging or ()):
                events.append((f"{where}.messaging[{j}]", event))
            changes = _opt_list(entry, "changes", where)
            for j, change_value in enumerate(changes or ()):
                cwhere = f"{where}.changes[{j}]"
                change = _obj(change_value, cwhere)
                if _opt_str(change, "field", cwhere) in MESSAGING_FIELDS:
                    events.append((f"{cwhere}.value", change.get("value")))
            for ewhere, event in events:
                obj = _obj(event, ewhere)
                self._event(obj, ewhere, entry_id, _own_raw(obj), received_at, out)
        return _whole_body_if_alone(out, raw)

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        raise PayloadError("Instagram has no status callback: read receipts come as webhooks")

    def _event(
        self,
        event: dict[str, Any],
        where: str,
        entry_id: str,
        raw: str,
        received_at: float,
        out: ParsedInbound,
    ) -> None:
        sender = _party(event, "sender", where)
        recipient = _party(event, "recipient", where)
        ts_raw, ts = _timestamp(event, where)
        ours = {entry_id, *self.recipient_ids} - {""}
        # A reaction, read, postback or referral "from" our own account is the business acting
        # in the Instagram app (reacting to, or reading, the citizen's message): not a citizen's.
        from_us = sender in ours and recipient not in ours

        def make(**fields: Any) -> Message:
            return Message(
                id=new_id(int(received_at * 1000)),
                channel=self.name,
                account=self.account,
                received_at=received_at,
                provider_ts=ts,
                raw=raw,
                **fields,
            )

        message = _opt_obj(event, "message", where)
        if message is not None:
            out.messages.append(self._message(message, f"{where}.message", sender, recipient, make))
            return
        reaction = _opt_obj(event, "reaction", where)
        if reaction is not None:
            rwhere = f"{where}.reaction"
            mid = _id(reaction.get("mid"), f"{rwhere}.mid")
            action = _opt_str(reaction, "action", rwhere)
            emoji = _opt_str(reaction, "emoji", rwhere)
            name = _opt_str(reaction, "reaction", rwhere)
            if action not in ("react", "unreact") or from_us:
                self._skip("reaction", "from the business" if from_us else "unknown action")
                return
            if not ts_raw:
                raise PayloadError(f"{where}.timestamp is required for a reaction")
            meta = {"recipient_id": recipient, "reacted_to": mid, "action": action}
            if name:
                meta["reaction"] = _clip(name)
            out.messages.append(
                make(
                    provider_id=f"reaction:{mid}:{ts_raw}",
                    sender=instagram_identity(sender),
                    reply_address=sender,
                    kind="reaction",
                    text=emoji[:32] if action == "react" else "",
                    meta=meta,
                )
            )
            return
        postback = _opt_obj(event, "postback", where)
        if postback is not None:
            pwhere = f"{where}.postback"
            mid = _opt_str(postback, "mid", pwhere).strip()
            title = _opt_str(postback, "title", pwhere)
            payload = _opt_str(postback, "payload", pwhere)
            meta = {"recipient_id": recipient, "button_payload": _clip(payload)}
            self._referral(_opt_obj(postback, "referral", pwhere), f"{pwhere}.referral", meta)
            if from_us:
                self._skip("postback", "from the business")
                return
            if not mid and not ts_raw:
                raise PayloadError(f"{pwhere} needs a mid or the event a timestamp")
            out.messages.append(
                make(
                    provider_id=mid or f"postback:{sender}:{ts_raw}",
                    sender=instagram_identity(sender),
                    reply_address=sender,
                    kind="button",
                    text=title,
                    meta=meta,
                )
            )
            return
        read = _opt_obj(event, "read", where)
        if read is not None:
            if read.get("mid") is None or from_us:
                self._skip("read", "watermark only" if not from_us else "from the business")
                return
            out.statuses.append(
                StatusUpdate(
                    channel=self.name,
                    account=self.account,
                    provider_id=_id(read.get("mid"), f"{where}.read.mid"),
                    state=DeliveryState.READ,
                )
            )
            return
        referral = _opt_obj(event, "referral", where)
        if referral is not None:
            meta = {"recipient_id": recipient}
            self._referral(referral, f"{where}.referral", meta)
            if from_us:
                self._skip("referral", "from the business")
                return
            if not ts_raw:
                raise PayloadError(f"{where}.timestamp is required for a referral")
            out.messages.append(
                make(
                    provider_id=f"referral:{sender}:{ts_raw}",
                    sender=instagram_identity(sender),
                    reply_address=sender,
                    kind="referral",
                    meta=meta,
                )
            )
            return
        known = ("sender", "recipient", "timestamp")
        self._skip(",".join(sorted(k for k in event if k not in known))[:200] or "empty", "")

    @staticmethod
    def _skip(what: str, why: str) -> None:
        log.debug("instagram event skipped: %s %s", what, why)

    @staticmethod
    def _referral(referral: dict[str, Any] | None, where: str, meta: dict[str, str]) -> None:
        if referral is None:
            return
        for key in ("ref", "source", "type", "ad_id"):
            value = referral.get(key)
            if value is None:
                continue
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise PayloadError(f"{where}.{key} must be a string")
            if str(value):
                meta[f"referral_{key}"] = _clip(str(value))

    def _message(
        self,
        message: dict[str, Any],
        where: str,
        sender: str,
        recipient: str,
        make: Callable[..., Message],
    ) -> Message:
        mid = _id(message.get("mid"), f"{where}.mid")
        is_echo = _opt_bool(message, "is_echo", where)
        is_deleted = _opt_bool(message, "is_deleted", where)
        is_unsupported = _opt_bool(message, "is_unsupported", where)
        text = _opt_str(message, "text", where)
        # The citizen is the other side: the sender of their message, the recipient of ours.
        citizen, ours = (recipient, sender) if is_echo else (sender, recipient)
        meta: dict[str, str] = {"recipient_id": ours}
        if is_echo:
            meta["direction"] = "out"
        if is_deleted:
            meta["retracts"] = mid
            return make(
                provider_id=f"deleted:{mid}",
                sender=instagram_identity(citizen),
                reply_address=citizen,
                kind="retraction",
                text="",
                meta=meta,
            )

        attachments: list[Attachment] = []
        types: list[str] = []
        kinds: list[str] = []
        for k, att_value in enumerate(_opt_list(message, "attachments", where) or ()):
            awhere = f"{where}.attachments[{k}]"
            att = _obj(att_value, awhere)
            att_type = _opt_str(att, "type", awhere)
            payload = _opt_obj(att, "payload", awhere) or {}
            url = _opt_str(payload, "url", f"{awhere}.payload")
            if att_type and att_type not in types:
                types.append(att_type)
            if att_type in MEDIA_TYPES:
                kinds.append("media")
                content_type = MEDIA_TYPES[att_type]
            elif att_type in SHARE_TYPES:
                kinds.append("share")
                content_type = URI_LIST
                title = _opt_str(payload, "title", f"{awhere}.payload")
                if title:
                    meta.setdefault("share_title", _clip(title))
            elif att_type == "story_mention":
                kinds.append("story_mention")
                content_type = "application/octet-stream"  # a photo or a video: Meta won't say
            else:
                continue  # fallback, like_heart, ...: recorded in instagram_type only
            if url.strip():
                attachments.append(Attachment(url=url, content_type=content_type))
        if types:
            meta["instagram_type"] = _clip(",".join(types))

        reply_to = _opt_obj(message, "reply_to", where)
        if reply_to is not None:
            rwhere = f"{where}.reply_to"
            story = _opt_obj(reply_to, "story", rwhere)
            if story is not None:
                story_url = _opt_str(story, "url", f"{rwhere}.story")
                if story_url:
                    meta["story_url"] = story_url
                if story.get("id") is not None:
                    meta["story_id"] = _id(story.get("id"), f"{rwhere}.story.id")
            if reply_to.get("mid") is not None:
                meta["replied_to"] = _id(reply_to.get("mid"), f"{rwhere}.mid")
        quick_reply = _opt_obj(message, "quick_reply", where)
        if quick_reply is not None:
            meta["button_payload"] = _clip(_opt_str(quick_reply, "payload", f"{where}.quick_reply"))
        self._referral(_opt_obj(message, "referral", where), f"{where}.referral", meta)

        if is_echo:
            kind = "echo"
        elif is_unsupported:
            kind = "unsupported"
            meta.setdefault("instagram_type", "unsupported")
        elif quick_reply is not None:
            kind = "button"
        elif "story_mention" in kinds:
            kind = "story_mention"
        elif "share" in kinds:
            kind = "share"
        elif "media" in kinds:
            kind = "media"
        elif text:
            kind = "text"
        else:
            kind = "unsupported"  # only an attachment type we do not know: nothing to read
            meta.setdefault("instagram_type", "empty")
        return make(
            provider_id=mid,
            sender=instagram_identity(citizen),
            reply_address=citizen,
            kind=kind,
            text=text,
            attachments=tuple(attachments),
            meta=meta,
        )

    # -- outbound ----------------------------------------------------------------------

    def _client(self) -> GraphClient:
        if self._graph is None:
            self._graph = GraphClient(
                self.settings.api_base_url,
                self.settings.api_version,
                self.settings.access_token.get_secret_value(),
                self._timeout,
            )
        return self._graph

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        if reply.template is not None:
            return _failed("templates_unsupported", "Instagram has no message templates")
        if reply.message_tag not in ("", HUMAN_AGENT):
            return _failed("bad_message_tag", f"Instagram knows only the {HUMAN_AGENT} tag")
        if not _ID_RE.fullmatch(reply.to):
            return _failed("bad_recipient", f"not an Instagram-scoped id: {reply.to[:40]!r}")
        parts = split_text(reply.text)
        if not parts:
            return _failed("empty_text", "Instagram cannot send an empty message")
        envelope: dict[str, Any] = {"recipient": {"id": reply.to}}
        if reply.message_tag == HUMAN_AGENT:
            envelope |= {"messaging_type": "MESSAGE_TAG", "tag": HUMAN_AGENT}
        else:
            envelope["messaging_type"] = "RESPONSE"
        path = f"{self.ig_account_id}/messages"
        n = len(parts)
        ids: list[str] = []
        for k, part in enumerate(parts):
            try:
                answer = await self._client().post(path, {**envelope, "message": {"text": part}})
            except GraphError as err:
                if k == 0:
                    if err.retryable:
                        raise TransientSendError(
                            str(err), err.retry_after, code=err.error_code
                        ) from None
                    return _failed(err.error_code, err.message)
                return _failed(
                    f"partial:{k}/{n}",
                    f"part {k + 1} of {n} refused ({err.error_code}): {err.message}",
                    *ids,
                )
            except TransientSendError as err:
                if k == 0:
                    raise
                return _failed(
                    f"partial:{k}/{n}",
                    f"part {k + 1} of {n} not confirmed ({err.code or 'transient'}): {err}",
                    *ids,
                )
            ids.append(str(answer.get("message_id") or ""))
        return DeliveryResult(
            accepted=True,
            provider_id=ids[0],
            state=DeliveryState.SENT,
            part_ids=tuple(i for i in ids[1:] if i),
        )

    async def aclose(self) -> None:
        if self._graph is not None:
            graph, self._graph = self._graph, None
            await graph.aclose()
