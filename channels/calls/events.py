"""Live call events from the telephony platform: the wire contract, no I/O.

``POST /webhooks/call/<account>`` with a JSON body::

    {"event": "ringing" | "answered" | "hangup", "call_id": "...", "caller": "0812…",
     "queue": "...", "agent": "SIP/agent101 or a username", "at": <unix seconds>}

signed like the portal's webhooks: ``X-Call-Signature: sha256=<HMAC-SHA256(events_secret,
"<X-Call-Timestamp>.<body>")>``; a genuine signature outside the replay window is stale (401).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from channels.base import PayloadError
from channels.json_input import without_lone_surrogates
from channels.signing import StaleSignature, check_timestamped, sign

EVENTS = ("ringing", "answered", "hangup")
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
TIMESTAMP_HEADER = "X-Call-Timestamp"
SIGNATURE_HEADER = "X-Call-Signature"

__all__ = ["EVENTS", "CallEvent", "StaleSignature", "check_signature", "parse_event", "sign"]


@dataclass(frozen=True, slots=True)
class CallEvent:
    event: str
    call_id: str
    caller: str  # as the platform wrote it; "" when withheld
    queue: str
    agent: str  # the agent's username when the platform's name is "SIP/<username>"
    at: float | None


def check_signature(
    secret: str, timestamp: str, signature: str, body: bytes, now: float, window_s: float
) -> None:
    """Raise SignatureError (403) unless ``secret`` signed ``body`` at ``timestamp``;
    StaleSignature (401) when the signature is genuine but outside ``window_s``."""
    check_timestamped(
        secret,
        timestamp,
        signature,
        body,
        now,
        window_s,
        timestamp_header=TIMESTAMP_HEADER,
        signature_header=SIGNATURE_HEADER,
    )


def agent_name(raw: str) -> str:
    """``SIP/agent101``, ``PJSIP/agent101-0000002a``, ``Local/agent101@from-queue`` →
    ``agent101``; a bare username stays as it is."""
    name = raw.strip()
    if "/" in name:
        name = name.split("/", 1)[1]
        name = name.split("@", 1)[0]
        name = re.sub(r"-[0-9a-fA-F]{6,}$", "", name)  # the channel's unique suffix
    return name[:64]


def _str(d: dict[str, Any], key: str, limit: int, required: bool = False) -> str:
    v = d.get(key)
    if v is None or v == "":
        if required:
            raise PayloadError(f"{key} is required")
        return ""
    if isinstance(v, int | float) and not isinstance(v, bool) and key == "caller":
        v = str(v)
    if not isinstance(v, str):
        raise PayloadError(f"{key} must be a string")
    if len(v) > limit:
        raise PayloadError(f"{key} is longer than {limit} characters")
    return v.strip()


def parse_event(body: bytes) -> CallEvent:
    try:
        d = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("body is not JSON") from None
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    if not isinstance(d, dict):
        raise PayloadError("body must be a JSON object")
    d = without_lone_surrogates(d)
    event = _str(d, "event", 20, required=True)
    if event not in EVENTS:
        raise PayloadError(f"event must be one of {', '.join(EVENTS)}")
    call_id = _str(d, "call_id", 128, required=True)
    if not CALL_ID.match(call_id):
        raise PayloadError("call_id has characters other than letters, digits and ._:@-")
    at = d.get("at")
    if at is not None and (
        not isinstance(at, int | float) or isinstance(at, bool) or not 0 <= at < 10**11
    ):  # also refuses NaN and infinities (1e999), and ints too large for a float
        raise PayloadError("at must be unix seconds")
    return CallEvent(
        event=event,
        call_id=call_id,
        caller=_str(d, "caller", 64),
        queue=_str(d, "queue", 128),
        agent=agent_name(_str(d, "agent", 128)),
        at=float(at) if at is not None else None,
    )
