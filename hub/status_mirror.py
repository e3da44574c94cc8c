"""Ticket status changes told back to the channel a ticket came from, when that channel
keeps a status of its own (the portal's requests). Wired in by the composition root as a
``TicketActions`` status listener; it knows channels only through ``MirrorsStatus``.

Best effort: the mirror runs in the background, after the change is stored; a failure is
logged (``portal.status_mirror_failed``) and not retried (no retry queue yet).
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol, runtime_checkable

import structlog

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


class StatusMirror:
    def __init__(self, channels: ChannelSet, clock: Clock) -> None:
        self.channels = channels
        self.clock = clock
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
        key = f"status-{tid}-{status}-{int(now * 1000)}"
        number = fields.get("number", "")
        task = asyncio.create_task(self._mirror(ch, tid, request_id, status, number, key, now))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _mirror(
        self,
        ch: MirrorsStatus,
        tid: str,
        request_id: str,
        status: str,
        number: str,
        key: str,
        now: float,
    ) -> None:
        try:
            await ch.mirror_status(request_id, status, number, key, now)
        except Exception as exc:
            log.warning(
                "portal.status_mirror_failed",
                ticket_id=tid,
                request_id=request_id,
                status=status,
                error=repr(exc)[:200],
                code=str(getattr(exc, "code", "")),
            )
        else:
            log.info("portal.status_mirrored", ticket_id=tid, request_id=request_id, status=status)

    async def drain(self, limit_s: float = 10.0) -> None:
        """Wait for mirrors under way (at shutdown, and in tests)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=limit_s)
