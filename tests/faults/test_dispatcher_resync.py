"""A dispatcher read that Redis carried out but whose answer never arrived (found by
test_redis_unreachable: a read sent while Redis was frozen ran when it woke up, after the
client had timed out). Its entries are pending for the dispatcher, which never saw them; a
citizen's next message must not be applied before them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hub.ports import StreamEntry
from tests.helpers import HubHarness, eventually, inbound_params

PHONE = "+6281234567890"


class LosesOneAnswer:
    """A shard's group whose first read that returns entries raises instead, as a socket
    timeout would after Redis had already delivered them; ``meanwhile`` runs in between
    (the citizen's next message arrives)."""

    def __init__(self, group: Any, meanwhile: Callable[[], Awaitable[None]]) -> None:
        self.group = group
        self.meanwhile = meanwhile
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.group, name)

    async def read_new(
        self, count: int, block_ms: int | None, ack: Sequence[str] = ()
    ) -> list[StreamEntry]:
        got: list[StreamEntry] = await self.group.read_new(count, block_ms, ack)
        if got and not self.lost:
            self.lost = True
            await self.meanwhile()
            raise TimeoutError("Timeout reading from 127.0.0.1")
        return got


async def test_entries_of_a_lost_read_are_applied_before_newer_ones(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    h = await harness_factory(dispatcher__claim_idle_ms=30_000)  # production's default
    assert (await h.post_whatsapp(inbound_params("pesan #0", phone=PHONE)))[0] == 200

    async def next_message() -> None:
        assert (await h.post_whatsapp(inbound_params("pesan #1", phone=PHONE)))[0] == 200

    d = h.dispatcher("resync")
    d.groups = [LosesOneAnswer(g, next_message) for g in d.groups]
    task = asyncio.create_task(d.run())
    try:

        async def applied(n: int) -> list[str]:
            texts = []
            for t in await h.tickets():
                full = await h.ticket(t["id"])
                texts += [m["text"] for m in full["messages"] if m["direction"] == "in"]
            return texts if len(texts) >= n else []

        first = await eventually(lambda: applied(1), limit_s=10)
        assert first[0] == "pesan #0", first  # not the later message first
        texts = await eventually(lambda: applied(2), limit_s=10)
    finally:
        d.stop()
        await task
    assert texts == ["pesan #0", "pesan #1"]
    assert len(await h.tickets()) == 1
