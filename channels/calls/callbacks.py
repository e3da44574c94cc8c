"""Replies to call tickets: callback requests for the call center's dialer, and the callback's
result read back from the call log.

Outbound: ``CallCenterChannel.send`` turns a reply into a callback request and puts it on the
callback list the dialer reads, either

- ``callback_list = "file"``: one JSON object per line appended to ``callback_file`` (fsynced),
  under an advisory lock (``fcntl.flock``); or
- ``callback_list = "http"``: ``POST <dialer_url>`` with ``Authorization: Bearer <dialer_token>``
  and ``Idempotency-Key: <callback id>``; 2xx (and 409, "already have it") accepted, 408/429/5xx,
  timeouts and connection failures are transient, any other 4xx is a refusal.

The request (both backends)::

    {"callback_id": "cb-<reply id>", "phone": "+62…", "ticket_number": "…",
     "note": "<the agent's reply text>", "requested_at": "<ISO 8601 UTC>", "account": "hotline"}

The callback id is ``cb-<reply id>``: a retried send of one reply finds its own line (file)
or is deduplicated by the dialer on the idempotency key (HTTP), never a second callback.

Inbound (the result): the dialer's call appears in the call log as an outbound record
(``direction = "out"``) naming the callback id in

- the JSON-lines export: the field ``callback_id``;
- Asterisk Master.csv: the CDR ``userfield`` (the dialer sets ``CDR(userfield)=cb-…``).

``callback_status`` maps such a record to the reply's state: ANSWERED → delivered; NO ANSWER,
BUSY, FAILED, CONGESTION → undelivered with ``callback-no-answer`` / ``callback-busy`` /
``callback-failed`` / ``callback-congestion``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp

from channels.base import (
    InboundRequest,
    ParsedInbound,
    PayloadError,
    TransientSendError,
    WindowRule,
)
from channels.calls.records import CallRecord
from hub.model import DeliveryResult, DeliveryState, OutboundReply, StatusUpdate
from hub.settings import CallAccount

NO_WINDOW: Final = WindowRule(free_text_hours=10**6, template_required_outside=False)
CALLBACK_PREFIX: Final = "cb-"
TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})
_RESULT_CODES: Final = {
    "NO ANSWER": "callback-no-answer",
    "BUSY": "callback-busy",
    "FAILED": "callback-failed",
    "CONGESTION": "callback-congestion",
}


def callback_id(reply_id: str) -> str:
    return f"{CALLBACK_PREFIX}{reply_id}"


def record_callback_id(record: CallRecord) -> str:
    """The callback id an outbound record names (``callback_id``, else ``userfield``), or ""."""
    if record.direction != "out":
        return ""
    for key in ("callback_id", "userfield"):
        value = record.extra.get(key, "").strip()
        if value.startswith(CALLBACK_PREFIX) and len(value) > len(CALLBACK_PREFIX):
            return value
    return ""


def callback_status(record: CallRecord, account: str) -> StatusUpdate | None:
    """The reply state a callback's call record reports, or None if it is no callback."""
    cid = record_callback_id(record)
    if not cid:
        return None
    if record.disposition == "ANSWERED":
        return StatusUpdate("call", account, cid, DeliveryState.DELIVERED)
    code = _RESULT_CODES.get(record.disposition)
    if code is None:  # ABANDONED is an inbound-queue outcome; not a dialer result
        return None
    return StatusUpdate(
        "call", account, cid, DeliveryState.UNDELIVERED, code, f"callback: {record.disposition}"
    )


def _retry_after(raw: str) -> float | None:
    raw = raw.strip()
    return float(raw) if raw.isascii() and raw.isdigit() else None


def _append_once(path: Path, cid: str, line: str) -> bool:
    """Append ``line`` unless a line with ``cid`` is there; True if appended. Blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as f:
            f.seek(0)
            data = f.read()
        needle = json.dumps(cid).encode()
        for existing in data.splitlines():
            if needle in existing:
                try:
                    if json.loads(existing).get("callback_id") == cid:
                        return False
                except (ValueError, AttributeError):
                    continue
        prefix = b"\n" if data and not data.endswith(b"\n") else b""  # a torn last line
        os.write(fd, prefix + line.encode() + b"\n")
        os.fsync(fd)
        return True
    finally:
        os.close(fd)  # releases the lock


class CallCenterChannel:
    """The call center as a reply channel: a reply asks the dialer to call the citizen back."""

    name = "call"
    provider = "dialer"

    def __init__(self, account: str, settings: CallAccount, send_timeout_s: float = 15.0) -> None:
        self.account = account
        self.settings = settings
        self.window = NO_WINDOW
        self.send_timeout_s = send_timeout_s
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the token
        where = self.settings.dialer_url or str(self.settings.callback_file)
        kind = self.settings.callback_list
        return f"CallCenterChannel(account={self.account!r}, {kind}={where!r})"

    def verify(self, request: InboundRequest) -> None:
        raise PayloadError("calls arrive through the call log, not by webhook")

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        raise PayloadError("calls arrive through the call log, not by webhook")

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        raise PayloadError("callback results arrive through the call log, not by webhook")

    def request_for(self, reply: OutboundReply) -> dict[str, Any]:
        return {
            "callback_id": callback_id(reply.reply_id),
            "phone": reply.to,
            "ticket_number": reply.ticket_number,
            "note": reply.text,
            "requested_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "account": self.account,
        }

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        if not reply.to:
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code="callback-no-number",
                error_message="the caller's number was withheld: nobody to call back",
            )
        req = self.request_for(reply)
        if self.settings.callback_list == "http":
            return await self._post(req)
        line = json.dumps(req, ensure_ascii=False, separators=(",", ":"))
        async with self._lock:
            await asyncio.to_thread(
                _append_once, self.settings.callback_file, req["callback_id"], line
            )
        return DeliveryResult(accepted=True, provider_id=req["callback_id"])

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            token = self.settings.dialer_token.get_secret_value()
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {token}"} if token else {}
            )
        return self._session

    async def _post(self, req: dict[str, Any]) -> DeliveryResult:
        cid = req["callback_id"]
        try:
            async with (
                asyncio.timeout(self.send_timeout_s),
                self._http().post(
                    self.settings.dialer_url, json=req, headers={"Idempotency-Key": cid}
                ) as resp,
            ):
                status, text = resp.status, await resp.text()
                hint = _retry_after(resp.headers.get("Retry-After", ""))
        except TimeoutError:
            raise TransientSendError("dialer timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"connection failed: {type(exc).__name__}") from None
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientSendError(f"dialer answered {status}", hint, str(status))
        if 200 <= status < 300 or status == 409:
            return DeliveryResult(accepted=True, provider_id=cid)
        return DeliveryResult(
            accepted=False,
            state=DeliveryState.FAILED,
            error_code=str(status),
            error_message=f"dialer refused the callback: {text[:200]}",
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
