"""The live feed: one tail of the event stream per web process, fanned out to consoles.

A console that reconnects sends the id of the last event it saw (``Last-Event-ID``) and first
gets everything after it from the stream, then the live tail, with nothing missed and nothing
twice. A console too slow to keep up is cut off; it reconnects the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

import structlog

from hub.accounts import Principal
from hub.ports import EventBus, TicketStore

log = structlog.get_logger("hub.live")
Event = tuple[str, dict[str, Any]]


def _id_key(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms or 0), int(seq or 0)


class LiveFeed:
    def __init__(self, events: EventBus, store: TicketStore, queue_size: int = 1000) -> None:
        self.events = events
        self.store = store
        self.queue_size = queue_size
        self._subs: set[asyncio.Queue[Event | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._units: OrderedDict[str, str] = OrderedDict()

    async def _tail(self) -> None:
        last = await self.events.last_id()
        while self._subs:
            try:
                batch = await self.events.wait(last, block_ms=5000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live.tail_failed", error=repr(exc)[:200])
                await asyncio.sleep(1.0)
                continue
            for eid, ev in batch:
                last = eid
                for q in list(self._subs):
                    try:
                        q.put_nowait((eid, ev))
                    except asyncio.QueueFull:  # too slow: cut off; it will reconnect
                        self._subs.discard(q)
                        q.put_nowait(None) if q.qsize() < q.maxsize else None

    async def unit_of(self, tid: str) -> str:
        if tid in self._units:
            self._units.move_to_end(tid)
            return self._units[tid]
        unit = (await self.store.get_ticket_fields(tid)).get("unit", "")
        self._units[tid] = unit
        if len(self._units) > 20_000:
            self._units.popitem(last=False)
        return unit

    async def allowed(self, who: Principal, ev: dict[str, Any]) -> bool:
        if who.sees_all_units:
            return True
        if ev.get("type", "").startswith("agent."):
            return ev.get("agent") == who.name
        unit = ev.get("unit") or (await self.unit_of(ev["ticket_id"]) if "ticket_id" in ev else "")
        if ev.get("type") in ("ticket.transferred",) and ev.get("ticket_id"):
            self._units.pop(ev["ticket_id"], None)  # its unit changed: look it up again
        return who.can_see(unit) if unit else False

    async def subscribe(self, who: Principal, last_id: str) -> AsyncGenerator[Event, None]:
        q: asyncio.Queue[Event | None] = asyncio.Queue(self.queue_size)
        self._subs.add(q)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._tail(), name="live-tail")
        try:
            seen = (0, 0)
            if last_id:
                for eid, ev in await self.events.since(last_id, count=5000):
                    seen = _id_key(eid)
                    if await self.allowed(who, ev):
                        yield eid, ev
            while True:
                item = await q.get()
                if item is None:
                    return
                eid, ev = item
                if _id_key(eid) <= seen:
                    continue
                if await self.allowed(who, ev):
                    yield eid, ev
        finally:
            self._subs.discard(q)

    async def aclose(self) -> None:
        """End every subscription (their streams close cleanly), then the tail."""
        for q in list(self._subs):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        self._subs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
