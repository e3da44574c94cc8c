"""Pulling channels (a mailbox, a call log, a portal's list API) run in exactly one process.

Each poller is guarded by a lease in Redis: the process that holds it polls, renews it while
it runs, and stops polling the moment it loses it; another process takes over when the
holder dies. Pollers hand each item to the hub and advance their own position only after it
is on the inbound stream, so a takeover re-reads at most what was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

log = structlog.get_logger("hub.intake")


class Poller(Protocol):
    name: str  # e.g. "email:ppid"

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; never return early on errors (back off instead)."""


class Lease(Protocol):
    async def hold(self, owner: str, ttl_ms: int) -> bool: ...

    async def release(self, owner: str) -> None: ...


class IntakeRunner:
    def __init__(
        self,
        pollers: Sequence[Poller],
        lease_for: Callable[[str], Lease],
        owner: str,
        lease_ms: int = 15_000,
    ) -> None:
        self.pollers = list(pollers)
        self.lease_for = lease_for
        self.owner = owner
        self.lease_ms = lease_ms
        self._stop = asyncio.Event()
        self.holding: set[str] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for p in self.pollers:
                tg.create_task(self._guard(p), name=f"intake:{p.name}")

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _guard(self, poller: Poller) -> None:
        lease = self.lease_for(poller.name)
        while not self._stop.is_set():
            try:
                held = await lease.hold(self.owner, self.lease_ms)
            except Exception as exc:
                log.warning("intake.lease_failed", poller=poller.name, error=repr(exc)[:200])
                held = False
            if not held:
                await self._wait(self.lease_ms / 3000)
                continue
            log.info("intake.started", poller=poller.name, owner=self.owner)
            self.holding.add(poller.name)
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop), name=f"poll:{poller.name}")
            try:
                while not self._stop.is_set() and not task.done():
                    await self._wait(self.lease_ms / 3000)
                    try:
                        if not await lease.hold(self.owner, self.lease_ms):
                            log.warning("intake.lease_lost", poller=poller.name)
                            break
                    except Exception as exc:
                        log.warning("intake.renew_failed", poller=poller.name, error=repr(exc))
                        break
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)
                self.holding.discard(poller.name)
                with contextlib.suppress(Exception):
                    await lease.release(self.owner)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("intake.poller_crashed", poller=poller.name,
                          error=repr(task.exception())[:300])  # fmt: skip
                await self._wait(1.0)
