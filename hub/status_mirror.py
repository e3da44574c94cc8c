"""Ticket status changes told back to the channel a ticket came from, when that channel
keeps a status of its own (the portal's requests). Wired in by the composition root as a
``TicketActions`` status listener; it knows channels only through ``MirrorsStatus``.

The mirror runs in the background, after the change is stored, so the agent never waits on
the portal. A passing failure (timeout, 429, 5xx) goes to a durable retry queue in Redis with
backoff, retried by the sender role (``run``) with the same Idempotency-Key; a refusal, or
running out of attempts, is logged and kept in the queue's dead list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Protocol, runtime_checkable

import structlog

from channels.base import TransientSendError
from hub.channelset import ChannelSet
from hub.clock import Clock

log = structlog.get_logger("hub.status_mirror")


@runtime_checkable
class MirrorsStatus(Protocol):
    async def mirror_status(
        self,
        request_id: str,
        status: str,
        ticket_number: str,
        key: str,
        changed_at: float | None = None,
    ) -> None: ...


class RetryQueue(Protocol):
    async def schedule(self, item: dict[str, Any], due_ms: int) -> None: ...

    async def take_due(self, now_ms: int, limit: int = 100) -> list[dict[str, Any]]: ...

    async def bury(self, item: dict[str, Any], error: str) -> None: ...


class StatusMirror:
    def __init__(
        self,
        channels: ChannelSet,
        clock: Clock,
        retries: RetryQueue | None = None,
        max_attempts: int = 6,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self.channels = channels
        self.clock = clock
        self.retries = retries
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._pending: set[asyncio.Task[None]] = set()

    async def on_status(self, tid: str, fields: dict[str, str], status: str) -> None:
        """The ``StatusListener``: start the mirror for portal tickets, return at once."""
        if fields.get("reply_channel") != "portal":
            return
        ch = self.channels.get("portal", fields.get("reply_account", ""))
        try:
            context = json.loads(fields.get("reply_context") or "{}")
        except ValueError:
            context = {}
        request_id = context.get("portal_request") if isinstance(context, dict) else None
        if not isinstance(ch, MirrorsStatus) or not isinstance(request_id, str):
            log.warning("portal.status_mirror_failed", ticket_id=tid, error="no portal request")
            return
        now = self.clock.now()
        item = {
            "ticket_id": tid, "account": fields.get("reply_account", ""),
            "request_id": request_id, "status": status, "number": fields.get("number", ""),
            "key": f"status-{tid}-{status}-{int(now * 1000)}", "changed_at": now, "attempt": 1,
        }  # fmt: skip
        task = asyncio.create_task(self._mirror(item))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _mirror(self, item: dict[str, Any]) -> None:
        """One attempt; a passing failure is scheduled again (same Idempotency-Key)."""
        bound = log.bind(ticket_id=item["ticket_id"], request_id=item["request_id"],
                         status=item["status"], attempt=item["attempt"])  # fmt: skip
        ch = self.channels.get("portal", item["account"])
        if not isinstance(ch, MirrorsStatus):
            bound.warning("portal.status_mirror_failed", error="portal account gone")
            return
        try:
            await ch.mirror_status(
                item["request_id"], item["status"], item["number"], item["key"],
                item["changed_at"],
            )  # fmt: skip
        except TransientSendError as exc:
            if self.retries is not None and item["attempt"] < self.max_attempts:
                delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (item["attempt"] - 1))
                delay = max(delay, exc.retry_after or 0.0)
                due = int((self.clock.now() + delay) * 1000)
                await self.retries.schedule({**item, "attempt": item["attempt"] + 1}, due)
                bound.warning("portal.status_mirror_retry", error=str(exc), delay_s=delay)
            else:
                await self._give_up(item, f"gave up: {exc}")
        except Exception as exc:
            await self._give_up(item, f"refused: {exc!r}"[:300])
        else:
            bound.info("portal.status_mirrored")

    async def _give_up(self, item: dict[str, Any], error: str) -> None:
        log.error("portal.status_mirror_failed", ticket_id=item["ticket_id"],
                  request_id=item["request_id"], status=item["status"], error=error)  # fmt: skip
        if self.retries is not None:
            await self.retries.bury(item, error)

    async def retry_due(self) -> int:
        """One pass over the retries that are due; returns how many were attempted."""
        if self.retries is None:
            return 0
        items = await self.retries.take_due(int(self.clock.now() * 1000))
        for item in items:
            await self._mirror(item)
        return len(items)

    async def run(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """Retry due mirrors until ``stop`` (runs in the sender role)."""
        while not stop.is_set():
            try:
                await self.retry_due()
            except Exception as exc:  # Redis away: try again next round
                log.warning("portal.status_mirror_loop_failed", error=repr(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def drain(self, limit_s: float = 10.0) -> None:
        """Wait for mirrors under way (at shutdown, and in tests)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=limit_s)
