"""The shared queue in Redis: waiting tickets per unit, claims with leases, presence.

Everything lives under the ``{q}`` hash tag, so a claim is one atomic script: two agents
never hold the same ticket, and a lapsed lease is taken back into its unit's queue with its
original place.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.redis_bus import Pipeliner
from adapters.scripts import AnyRedis, Scripts, as_text

Q = "hub:{q}"


class RedisQueue:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.scripts = Scripts(redis)
        # The dispatcher enqueues a batch's new tickets concurrently: one round trip.
        self.pipe = Pipeliner.of(redis)

    async def enqueue(self, tid: str, unit: str, score: int) -> str:
        return as_text(await self.pipe.script(self.scripts.queue_enqueue, [Q], [tid, unit, score]))

    async def claim(
        self, agent: str, units: list[str], lease_ms: int, tid: str = "", now_ms: int = 0
    ) -> tuple[str, str]:
        now_ms = now_ms or int(time.time() * 1000)
        r = await self.scripts.queue_claim(keys=[Q], args=[agent, now_ms, lease_ms, tid, *units])
        return as_text(r[0]), as_text(r[1]) if len(r) > 1 else ""

    async def release(
        self, tid: str, agent: str = "", mode: str = "requeue", unit: str = "", score: str = ""
    ) -> tuple[str, str]:
        r = await self.scripts.queue_release(keys=[Q], args=[tid, agent, mode, unit, score])
        return as_text(r[0]), as_text(r[1])

    async def renew(self, tid: str, agent: str, lease_ms: int, now_ms: int = 0) -> bool:
        now_ms = now_ms or int(time.time() * 1000)
        r = await self.scripts.queue_renew(keys=[Q], args=[tid, agent, now_ms, lease_ms])
        return bool(int(r))

    async def expire(self, now_ms: int, limit: int = 500) -> list[tuple[str, str]]:
        flat = [as_text(x) for x in await self.scripts.queue_expire(keys=[Q], args=[now_ms, limit])]
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def holder(self, tid: str) -> tuple[str, int] | None:
        raw = await self.redis.hget(f"{Q}:lease", tid)
        if raw is None:
            return None
        agent, _, exp = as_text(raw).rpartition("|")
        return agent, int(exp)

    async def held_by(self, agent: str) -> list[str]:
        return sorted(as_text(t) for t in await self.redis.smembers(f"{Q}:held:{agent}"))

    async def waiting(self, unit: str, offset: int = 0, limit: int = 50) -> list[str]:
        rows = await self.redis.zrange(f"{Q}:wait:{unit}", offset, offset + limit - 1)
        return [as_text(r) for r in rows]

    async def waiting_counts(self, units: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for u in units:
            pipe.zcard(f"{Q}:wait:{u}")
        return {u: int(n) for u, n in zip(units, await pipe.execute(), strict=True)}

    async def oldest_waiting(self, units: list[str]) -> dict[str, int]:
        """Per unit, since when (ms) its longest-waiting ticket has waited, whatever its
        priority (scores are rank * 1e13 + since): the earliest head of the four bands."""
        pipe = self.redis.pipeline(transaction=False)
        for u in units:
            for rank in range(4):
                lo = rank * 10**13
                pipe.zrangebyscore(
                    f"{Q}:wait:{u}", lo, lo + 10**13 - 1, start=0, num=1, withscores=True
                )
        rows = await pipe.execute()
        out: dict[str, int] = {}
        for i, u in enumerate(units):
            heads = [int(score) % 10**13 for band in rows[i * 4 : i * 4 + 4] for _, score in band]
            if heads:
                out[u] = min(heads)
        return out

    async def waiting_since(self, units: list[str], limit: int = 20_000) -> dict[str, int]:
        """Every waiting ticket (up to ``limit`` per unit, longest-waiting of each band
        first) and since when (ms) it has waited: for backlog per channel."""
        pipe = self.redis.pipeline(transaction=False)
        for u in units:
            pipe.zrange(f"{Q}:wait:{u}", 0, limit - 1, withscores=True)
        out: dict[str, int] = {}
        for rows in await pipe.execute():
            for tid, score in rows:
                out[as_text(tid)] = int(score) % 10**13
        return out

    async def unit_of(self, tid: str) -> str | None:
        raw = await self.redis.hget(f"{Q}:where", tid)
        return as_text(raw) if raw else None

    # -- presence: online / away, with a heartbeat; missing means offline -----------------

    async def set_presence(self, agent: str, state: str, ttl_s: int) -> None:
        if state == "offline":
            await self.redis.hdel(f"{Q}:presence", agent)
            return
        await self.redis.hset(f"{Q}:presence", agent, f"{state}|{int(time.time()) + ttl_s}")

    async def presence(self) -> dict[str, str]:
        now = int(time.time())
        out = {}
        for k, v in (await self.redis.hgetall(f"{Q}:presence")).items():
            state, _, until = as_text(v).partition("|")
            out[as_text(k)] = state if int(until or 0) >= now else "offline"
        return out

    async def mark_viewer(self, tid: str, agent: str, state: str, ttl_s: int) -> None:
        """Who has a ticket open, and who is typing in it (expires unless refreshed)."""
        key = f"{Q}:viewers:{tid}"
        if state == "left":
            await self.redis.hdel(key, agent)
            return
        await self.redis.hset(key, agent, f"{state}|{int(time.time()) + ttl_s}")
        await self.redis.expire(key, ttl_s * 4)

    async def viewers(self, tid: str) -> dict[str, str]:
        now = int(time.time())
        out = {}
        for k, v in (await self.redis.hgetall(f"{Q}:viewers:{tid}")).items():
            state, _, until = as_text(v).partition("|")
            if int(until or 0) >= now:
                out[as_text(k)] = state
        return out

    async def rr_next(self, unit: str, candidates: list[str]) -> str:
        """Round robin: the candidate after the one who got the unit's last ticket."""
        last = as_text(await self.redis.hget(f"{Q}:rr", unit) or b"")
        ordered = sorted(candidates)
        later = [c for c in ordered if c > last]
        pick = (later or ordered)[0]
        await self.redis.hset(f"{Q}:rr", unit, pick)
        return pick
