"""Scale-out of dispatchers: the inbound shards spread over the live dispatcher processes.

Each dispatcher beats in a roster (``adapters/redis_roster.py``) and holds at most
ceil(shards / dispatchers) shard leases. Before, the first dispatcher to start kept every
shard for as long as it lived, and one started later stayed idle however loaded the hub was.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from adapters import keys
from adapters.redis_roster import RedisRoster, roster_key
from adapters.scripts import as_text
from hub.dispatcher import Dispatcher
from tests.helpers import HubHarness, eventually, inbound_params

Factory = Callable[..., Awaitable[HubHarness]]


def _dispatcher(h: HubHarness, owner: str) -> Dispatcher:
    d = h.dispatcher(owner)
    d.roster = RedisRoster(h.hub.redis, "dispatcher")
    return d


async def _owners(h: HubHarness) -> Counter[str]:
    """Who holds each shard's lease, as a count per owner."""
    held: Counter[str] = Counter()
    for s in h.hub.inbound_streams():
        raw = await h.hub.redis.get(keys.lease(s))
        held[as_text(raw) if raw is not None else ""] += 1
    return held


async def test_shards_spread_over_dispatchers_and_come_back(harness_factory: Factory) -> None:
    """One dispatcher holds all four shards; a second one joins and gets two handed over;
    messages from many citizens are all applied once; when it stops, the first takes its
    shards back."""
    h = await harness_factory(redis__inbound_shards=4)
    first, second = _dispatcher(h, "first"), _dispatcher(h, "second")
    tasks = [asyncio.create_task(first.run())]
    try:

        async def first_holds_all() -> bool:
            return await _owners(h) == Counter({"first": 4})

        await eventually(first_holds_all)
        tasks.append(asyncio.create_task(second.run()))

        async def spread() -> bool:
            return await _owners(h) == Counter({"first": 2, "second": 2})

        await eventually(spread, limit_s=20)
        assert (first.share, second.share) == (2, 2)
        assert len(first.holding) == len(second.holding) == 2
        assert await h.hub.redis.zcard(roster_key("dispatcher")) == 2

        phones = [f"+62812000{i:05d}" for i in range(40)]
        for p in phones:
            assert (await h.post_whatsapp(inbound_params(f"halo dari {p}", phone=p)))[0] == 200

        async def all_applied() -> bool:
            stats = [
                await h.hub.ops.stream_stats(s, keys.DISPATCH_GROUP)
                for s in h.hub.inbound_streams()
            ]
            return sum(st["length"] for st in stats) == 40 and all(
                st["lag"] == st["pending"] == st["dead"] == 0 for st in stats
            )

        await eventually(all_applied, limit_s=30)
        tickets = await h.tickets(limit="100")
        assert sorted(t["reply_to"] for t in tickets) == phones

        second.stop()
        await tasks.pop()

        async def back_to_first() -> bool:
            return await _owners(h) == Counter({"first": 4})

        await eventually(back_to_first, limit_s=20)
        assert await h.hub.redis.zcard(roster_key("dispatcher")) == 1
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(*tasks)
