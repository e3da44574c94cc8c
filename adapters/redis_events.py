"""The live event log: one capped stream every web process tails for the consoles.

An agent's browser that lost its connection reconnects with the last id it saw and gets
everything since (as far back as the cap keeps), then the live tail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from adapters.redis_bus import COMPACT_JSON, Pipeliner
from adapters.scripts import AnyRedis, Scripts, as_text

STREAM = "hub:{events}"
KEEP = 100_000


class RedisEvents:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        # Events join the loop turn's pipeline (a sender's replies, a batch's steps share
        # round trips) instead of taking a pooled connection each.
        self.pipe = Pipeliner.of(redis)
        self._publish_events = Scripts(redis).publish_events

    async def publish(self, event: dict[str, Any]) -> str:
        data = COMPACT_JSON(event)
        return as_text(await self.pipe.one("XADD", STREAM, "MAXLEN", "~", KEEP, "*", "e", data))

    async def publish_many(self, events: Sequence[dict[str, Any]]) -> list[str]:
        """Several events, in order, in one script call (one command for a whole batch:
        every event goes to the one stream, so it is one slot on a cluster too)."""
        if not events:
            return []
        data = [COMPACT_JSON(e) for e in events]
        ids = await self.pipe.script(self._publish_events, [STREAM], [KEEP, *data])
        return [as_text(i) for i in ids]

    async def since(self, last_id: str, count: int = 500) -> list[tuple[str, dict[str, Any]]]:
        """Events strictly after ``last_id`` (``0`` for all kept)."""
        rows = await self.redis.xrange(
            STREAM, min=f"({last_id}" if last_id != "0" else "-", count=count
        )
        return [(as_text(eid), json.loads(f[b"e"] if b"e" in f else f["e"])) for eid, f in rows]

    async def wait(
        self, last_id: str, block_ms: int, count: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        reply = await self.redis.xread({STREAM: last_id}, count=count, block=block_ms)
        out = []
        for _stream, rows in reply or []:
            for eid, f in rows:
                out.append((as_text(eid), json.loads(f[b"e"] if b"e" in f else f["e"])))
        return out

    async def last_id(self) -> str:
        rows = await self.redis.xrevrange(STREAM, count=1)
        return as_text(rows[0][0]) if rows else "0-0"
