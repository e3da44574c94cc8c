"""Operational reads and repairs: health, stream gauges, and the dead-letter streams.

Dead letters are what supervisors see and replay. Replaying an outbox entry also puts its
reply back to ``retrying`` with a fresh attempt budget, or the sender would skip it as failed.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from adapters import keys
from adapters.scripts import AnyRedis, Scripts, as_text

_META = ("source_id", "error", "deliveries")


class RedisOps:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.scripts = Scripts(redis)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def stream_stats(self, stream: str, group: str) -> dict[str, int]:
        """Length, lag (never delivered) and pending (delivered, not acked) of one stream."""
        out = {"length": 0, "lag": 0, "pending": 0, "dead": 0}
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(stream)
        pipe.xlen(keys.dead_letters(stream))
        out["length"], out["dead"] = (int(x) for x in await pipe.execute())
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return out
        for g in groups:
            if as_text(g.get("name", "")) == group:
                out["pending"] = int(g.get("pending") or 0)
                lag = g.get("lag")
                out["lag"] = int(lag) if lag is not None else 0
        return out

    async def dead_letters(self, stream: str, count: int = 100) -> list[dict[str, str]]:
        rows = await self.redis.xrevrange(keys.dead_letters(stream), count=count)
        out = []
        for eid, fields in rows:
            f = {as_text(k): as_text(v) for k, v in fields.items()}
            out.append({"id": as_text(eid), "stream": stream, **f})
        return out

    async def replay_dead_letter(self, stream: str, dead_id: str) -> str | None:
        """Put a dead entry back on its stream (as a new entry) and drop it from the dead."""
        dead = keys.dead_letters(stream)
        rows = await self.redis.xrange(dead, min=dead_id, max=dead_id)
        if not rows:
            return None
        fields = {as_text(k): as_text(v) for k, v in rows[0][1].items()}
        payload = {k: v for k, v in fields.items() if k not in _META}
        ref = payload.get("r", "")
        if ref:  # an outbox entry: give the reply a fresh budget
            cid, _, rid = ref.partition("|")
            await self.redis.hset(
                keys.entry(cid, rid), mapping={"state": "retrying", "attempts": 0}
            )
        # a stream and its dead letters share a hash tag: one slot, one atomic step on a cluster
        flat = [w for kv in payload.items() for w in kv]
        new_id, _ = await self.scripts.atomic(("XADD", stream, "*", *flat), ("XDEL", dead, dead_id))
        return as_text(new_id)
