"""The portal's wire contract: settings, the webhook signature, and event → Message.

Pure functions, no I/O: the channel's ``verify``/``parse`` and the poller share them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime
from typing import Any

from channels.base import PayloadError
from channels.json_input import without_lone_surrogates
from channels.signing import StaleSignature, check_timestamped, sign
from hub.identity import InvalidIdentity, normalize_phone, phone_identity
from hub.ids import new_id
from hub.model import Attachment, Message
from hub.settings import PortalAccount

CHANNEL = "portal"
EVENTS = frozenset({"request.created", "request.replied"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_ATTACHMENTS = 20


__all__ = ["PortalAccount", "StaleSignature", "sign"]


def check_signature(
    secret: str, timestamp: str, signature: str, body: bytes, now: float, window_s: float
) -> None:
    check_timestamped(
        secret,
        timestamp,
        signature,
        body,
        now,
        window_s,
        timestamp_header="X-Portal-Timestamp",
        signature_header="X-Portal-Signature",
    )


def mask_nik(nik: str) -> str:
    """First 2 and last 4 digits, as hub.logging.mask_text writes a NIK."""
    return nik[:2] + "*" * (len(nik) - 6) + nik[-4:]


def hash_nik(key: str, nik: str) -> str:
    return hmac.new(key.encode(), nik.encode(), hashlib.sha256).hexdigest()


def _obj(d: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    v = d.get(key)
    if v is None and not required:
        return {}
    if not isinstance(v, dict):
        raise PayloadError(f"{key} must be an object")
    return v


def _str(d: dict[str, Any], key: str, where: str, limit: int = 10_000) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise PayloadError(f"{where}.{key} must be a string")
    return v[:limit]


def _ts(raw: str) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _attachments(message: dict[str, Any]) -> tuple[Attachment, ...]:
    raw = message.get("attachments") or []
    if not isinstance(raw, list):
        raise PayloadError("message.attachments must be a list")
    if len(raw) > MAX_ATTACHMENTS:
        raise PayloadError(f"more than {MAX_ATTACHMENTS} attachments")
    out = []
    for i, a in enumerate(raw):
        if not isinstance(a, dict):
            raise PayloadError(f"message.attachments[{i}] must be an object")
        url = _str(a, "url", f"message.attachments[{i}]", 2000)
        if not url.startswith(("https://", "http://")):
            raise PayloadError(f"message.attachments[{i}].url is not an http(s) URL")
        size = a.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise PayloadError(f"message.attachments[{i}].size must be a non-negative integer")
        out.append(
            Attachment(
                url=url,
                content_type=_str(a, "content_type", "attachment", 200) or "unknown",
                name=_str(a, "name", "attachment", 255),
                size=size,
            )
        )
    return tuple(out)


def parse_event(
    event: Any, account: str, received_at: float, nik_key: str, region: str = "ID"
) -> Message:
    """One webhook body or one item of the events list → a Message; PayloadError says why not."""
    if not isinstance(event, dict):
        raise PayloadError("the event must be a JSON object")
    event = without_lone_surrogates(event)
    kind = event.get("event")
    if not isinstance(kind, str) or kind not in EVENTS:
        shown = repr(kind) if len(repr(kind)) <= 60 else repr(kind)[:57] + "..."
        raise PayloadError(f"unknown event {shown} (expected one of {sorted(EVENTS)})")
    request, message = _obj(event, "request"), _obj(event, "message")
    citizen = _obj(event, "citizen")
    req_id = _str(request, "id", "request", 200)
    if not REQUEST_ID.match(req_id):
        raise PayloadError("request.id is missing or not a portal request id")
    msg_id = _str(message, "id", "message", 201)
    if not msg_id.strip() or len(msg_id) > 200:
        raise PayloadError("message.id is missing")
    text = _str(message, "text", "message")
    attachments = _attachments(message)
    if not text.strip() and not attachments:
        raise PayloadError("message has neither text nor attachments")

    meta: dict[str, str] = {
        "event": kind,
        "event_id": _str(event, "event_id", "event", 200),
        "category": _str(request, "category", "request", 200),
        "subject": _str(request, "subject", "request", 500),
        "request_status": _str(request, "status", "request", 100),
        "request_created_at": _str(request, "created_at", "request", 100),
        "reply_context": json.dumps({"portal_request": req_id}),
    }
    identities: list[tuple[str, str]] = []  # (meta key, identity) in preference order
    phone_raw = _str(citizen, "phone", "citizen", 100)
    if phone_raw:
        try:
            identities.append(
                ("identity.phone", phone_identity(normalize_phone(phone_raw, region)))
            )
        except InvalidIdentity:
            meta["phone_unusable"] = "1"
    email = _str(citizen, "email", "citizen", 320).strip().lower()
    if email and _EMAIL.match(email):
        identities.append(("identity.email", f"email:{email}"))
    portal_account = _str(citizen, "account_id", "citizen", 200).strip()
    if portal_account and not any(ch.isspace() for ch in portal_account):  # an identity key
        identities.append(("identity.portal", f"portal:{portal_account}"))
    if not identities:
        raise PayloadError("citizen has no usable phone, e-mail or account_id")
    sender = identities[0][1]
    for key, ident in identities[1:]:
        meta[key] = ident

    display_name = _str(citizen, "name", "citizen", 200)
    nik = "".join(ch for ch in _str(citizen, "nik", "citizen", 100) if not ch.isspace())
    valid_nik = len(nik) == 16 and nik.isdigit()
    if valid_nik:
        meta["nik_masked"] = mask_nik(nik)
        meta["nik_hash"] = hash_nik(nik_key, nik)
        # The citizen may have typed it into the message too: mask it wherever it appears.
        text = text.replace(nik, meta["nik_masked"])
        meta["subject"] = meta["subject"].replace(nik, meta["nik_masked"])
        display_name = display_name.replace(nik, meta["nik_masked"])
    elif nik:
        meta["nik_invalid"] = "1"
    raw_event = {**event, "citizen": {**citizen, "nik": meta.get("nik_masked", "[invalid]")}}
    raw = json.dumps(raw_event if nik else event, ensure_ascii=False, separators=(",", ":"))
    if valid_nik:
        raw = raw.replace(nik, meta["nik_masked"])
    return Message(
        id=new_id(int(received_at * 1000)),
        channel=CHANNEL,
        account=account,
        provider_id=msg_id,
        sender=sender,
        reply_address=req_id,
        received_at=received_at,
        kind="portal",
        text=text,
        display_name=display_name,
        attachments=attachments,
        thread_hints=(f"portal-request:{req_id}",),
        provider_ts=_ts(_str(message, "created_at", "message", 100))
        or (_ts(meta["request_created_at"]) if kind == "request.created" else None),
        meta={k: v for k, v in meta.items() if v},
        raw=raw,
    )
