"""The polling fallback: read the portal's events list from a persisted cursor.

Each page's events are handed, in order, to ``on_message``, which returns only once the
message is durably accepted (on the inbound stream); the page's ``next_cursor`` is persisted
only after the whole page went through. A failure leaves the cursor where it was, so the page
is read again and the hub's dedupe (message id) drops what had already gone through. A
malformed event cannot be accepted ever: it is logged (without its body) and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from channels.base import PayloadError
from channels.portal.channel import PortalChannel
from hub.model import Message

log = structlog.get_logger("channels.portal")


class CursorStore(Protocol):
    async def get(self, account: str) -> str | None: ...

    async def set(self, account: str, cursor: str) -> None: ...


class PortalPoller:
    """One portal account's polling intake (a ``hub.intake.Poller``)."""

    def __init__(
        self,
        channel: PortalChannel,
        cursors: CursorStore,
        on_message: Callable[[Message], Awaitable[object]],
        clock: Callable[[], float] = time.time,
        max_backoff_s: float = 300.0,
        on_health: Callable[[bool, str], Awaitable[None]] | None = None,
    ) -> None:
        self.name = f"portal:{channel.account}"
        self.channel = channel
        self.cursors = cursors
        self.on_message = on_message
        self.clock = clock
        self.max_backoff_s = max_backoff_s
        self.skipped = 0
        self.on_health = on_health

    async def poll_once(self) -> int:
        """Read one page, hand its events over, then persist its cursor; the event count."""
        account = self.channel.account
        cursor = await self.cursors.get(account)
        events, next_cursor = await self.channel.fetch_events(
            cursor, self.channel.settings.poll_limit
        )
        for event in events:
            try:
                msg = self.channel.parse_event(event, self.clock())
            except PayloadError as exc:
                self.skipped += 1
                event_id = event.get("event_id") if isinstance(event, dict) else None
                log.warning("portal.event_skipped", account=account, event_id=str(event_id),
                            reason=str(exc))  # fmt: skip
                continue
            await self.on_message(msg)
        if next_cursor and next_cursor != cursor:
            await self.cursors.set(account, next_cursor)
        return len(events)

    async def _health(self, healthy: bool, detail: str) -> None:
        if self.on_health is not None:
            with contextlib.suppress(Exception):  # health must not stop the polling
                await self.on_health(healthy, detail)

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.channel.settings.poll_interval_s
        failures = 0
        while not stop.is_set():
            try:
                n = await self.poll_once()
                failures = 0
                await self._health(True, "")
                if n >= self.channel.settings.poll_limit:
                    continue  # a full page: more are waiting (catching up after downtime)
                wait = interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                wait = min(self.max_backoff_s, interval * 2 ** min(failures, 10))
                log.warning("portal.poll_failed", poller=self.name, error=repr(exc)[:300],
                            retry_in=wait)  # fmt: skip
                await self._health(False, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
