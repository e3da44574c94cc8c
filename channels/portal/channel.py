"""The portal channel: verify and parse webhooks, send replies, read the events list."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from channels.base import (
    ChannelError,
    InboundRequest,
    ParsedInbound,
    PayloadError,
    TransientSendError,
    WindowRule,
)
from channels.portal.contract import REQUEST_ID, PortalAccount, check_signature, parse_event
from hub.model import DeliveryResult, DeliveryState, Message, OutboundReply, StatusUpdate

TRANSIENT_STATUSES = frozenset({408, 429})
MIRRORED_STATUSES = frozenset({"open", "resolved", "closed"})


class StatusMirrorRefused(ChannelError):
    """The portal refused a status change for good (a 4xx other than 408/429)."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.code = code


def retry_after(raw: str, now: float) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date)."""
    raw = raw.strip()
    if not raw:
        return None
    if raw.isascii() and raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class PortalChannel:
    """One portal (one configured account)."""

    name = "portal"
    provider = "bantuan"

    def __init__(
        self,
        account: str,
        settings: PortalAccount,
        default_region: str = "ID",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.settings = settings
        self.window = WindowRule(
            free_text_hours=settings.reply_window_hours, template_required_outside=False
        )
        self._region = default_region
        self._clock = clock
        self._base = settings.api_base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the token or the secret
        return f"PortalChannel(account={self.account!r}, api_base_url={self._base!r})"

    # -- inbound -----------------------------------------------------------------------

    def verify(self, request: InboundRequest) -> None:
        check_signature(
            self.settings.webhook_secret.get_secret_value(),
            request.header("X-Portal-Timestamp").strip(),
            request.header("X-Portal-Signature"),
            request.body,
            self._clock(),
            self.settings.replay_window_s,
        )

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        ctype = request.content_type or request.header("Content-Type")
        if ctype and not ctype.lower().startswith("application/json"):
            raise PayloadError("expected application/json")
        try:
            event = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise PayloadError("body is nested too deeply") from None
        return ParsedInbound(messages=[self.parse_event(event, received_at)])

    def parse_event(self, event: Any, received_at: float) -> Message:
        key = self.settings.nik_hash_key.get_secret_value()
        key = key or self.settings.webhook_secret.get_secret_value()
        return parse_event(event, self.account, received_at, key, self._region)

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        raise PayloadError("the portal sends no delivery-status callbacks")

    # -- outbound ----------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.settings.api_token.get_secret_value()}"}
            )
        return self._session

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        """One API call: (status, headers, JSON body or None); 408/429/5xx, timeouts and
        connection failures raise TransientSendError (with the portal's Retry-After)."""
        try:
            async with (
                asyncio.timeout(self.settings.send_timeout_s),
                self._http().request(method, self._base + path, **kwargs) as resp,
            ):
                text = await resp.text()
                status, headers = resp.status, dict(resp.headers)
        except TimeoutError:
            raise TransientSendError("portal timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"connection failed: {type(exc).__name__}") from None
        if status in TRANSIENT_STATUSES or status >= 500:
            hint = retry_after(headers.get("Retry-After", ""), self._clock())
            raise TransientSendError(f"portal answered {status}", hint, str(status))
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return status, headers, body

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        request_id = str(reply.context.get("portal_request") or reply.to)
        if not REQUEST_ID.match(request_id):
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code="no_portal_request",
                error_message="the reply names no portal request",
            )
        if not reply.text.strip():
            return DeliveryResult(
                accepted=False,
                state=DeliveryState.FAILED,
                error_code="empty_reply",
                error_message="the portal takes text replies only",
            )
        status, _headers, body = await self._call(
            "POST",
            f"/api/v1/requests/{quote(request_id, safe='')}/replies",
            json={"reply_id": reply.reply_id, "text": reply.text},
            headers={"Idempotency-Key": reply.reply_id},
        )
        if status in (200, 201):
            pid = body.get("id") if isinstance(body, dict) else None
            return DeliveryResult(
                accepted=True, provider_id=str(pid or reply.reply_id), state=DeliveryState.SENT
            )
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        return DeliveryResult(
            accepted=False,
            state=DeliveryState.FAILED,
            error_code=str(err.get("code") or status),
            error_message=str(err.get("message") or f"portal answered {status}")[:500],
        )

    async def mirror_status(
        self,
        request_id: str,
        status: str,
        ticket_number: str,
        key: str,
        changed_at: float | None = None,
    ) -> None:
        """Tell the portal the hub ticket of ``request_id`` is now ``status``. 200/201/204 are
        accepted; 408/429/5xx, timeouts and refused connections raise TransientSendError;
        other answers raise StatusMirrorRefused with the portal's error code."""
        if not REQUEST_ID.match(request_id):
            raise StatusMirrorRefused("not a portal request id", "no_portal_request")
        if status not in MIRRORED_STATUSES:
            raise StatusMirrorRefused(f"status {status!r} is not mirrored", "bad_status")
        when = self._clock() if changed_at is None else changed_at
        body = {
            "status": status,
            "ticket_number": ticket_number,
            "changed_at": datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds"),
        }
        code, _headers, answer = await self._call(
            "POST",
            f"/api/v1/requests/{quote(request_id, safe='')}/status",
            json=body,
            headers={"Idempotency-Key": key},
        )
        if code in (200, 201, 204):
            return
        err = answer.get("error") if isinstance(answer, dict) else None
        err = err if isinstance(err, dict) else {}
        raise StatusMirrorRefused(
            str(err.get("message") or f"portal answered {code}")[:500],
            str(err.get("code") or code),
        )

    async def fetch_events(self, cursor: str | None, limit: int) -> tuple[list[Any], str]:
        """One page of the events list: (events, next cursor). Failures raise."""
        params: dict[str, str] = {"limit": str(limit)}
        if cursor:
            params["after"] = cursor
        status, _headers, body = await self._call("GET", "/api/v1/events", params=params)
        if status != 200 or not isinstance(body, dict):
            raise PayloadError(f"events list answered {status}")
        events, next_cursor = body.get("events"), body.get("next_cursor")
        if not isinstance(events, list):
            raise PayloadError("events list has no events array")
        if events and not (isinstance(next_cursor, str) and next_cursor):
            raise PayloadError("events list has events but no next_cursor")
        return events, str(next_cursor or cursor or "")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
