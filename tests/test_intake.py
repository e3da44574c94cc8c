"""Pulling channels run in exactly one process at a time, and move when that process dies."""

from __future__ import annotations

import asyncio

from adapters.redis_lease import RedisLease
from hub.intake import IntakeRunner
from tests.helpers import HubHarness, eventually


class CountingPoller:
    """A poller that records which runner is polling, until told to stop."""

    def __init__(self, name: str, log: list[str], who: str) -> None:
        self.name = name
        self.log = log
        self.who = who

    async def run(self, stop: asyncio.Event) -> None:
        self.log.append(self.who)
        await stop.wait()


async def test_one_runner_polls_and_another_takes_over(harness: HubHarness) -> None:
    """Two processes, one mailbox: only one polls; when it stops, the other takes over."""
    redis = harness.hub.redis
    seen: list[str] = []
    runners = [
        IntakeRunner([CountingPoller("email:ppid", seen, who)],
                     lambda n: RedisLease(redis, f"intake:{n}"), who, lease_ms=150)
        for who in ("a", "b")
    ]  # fmt: skip
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:

        async def one_polling() -> bool:
            return len(seen) == 1

        await eventually(one_polling)
        first = seen[0]
        holder = next(r for r in runners if r.owner == first)
        other = next(r for r in runners if r.owner != first)
        assert not other.holding
        holder.stop()

        async def taken_over() -> bool:
            return seen[-1] == other.owner

        await eventually(taken_over)
        assert seen == [first, other.owner]
    finally:
        for r in runners:
            r.stop()
        await asyncio.gather(*tasks)
