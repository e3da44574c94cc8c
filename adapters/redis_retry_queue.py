"""A small durable retry queue: items wait in a sorted set until due, then are taken once.

For side effects that are not replies (a ticket status told to the portal): the item is in
Redis before the first attempt fails, so a restart loses no retry.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.scripts import AnyRedis, as_text

_TAKE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do redis.call('ZREM', KEYS[1], m) end
return due
"""


class RedisRetryQueue:
    def __init__(self, redis: AnyRedis, name: str) -> None:
        self.redis: Any = redis
        self.due_key = f"hub:{{retry:{name}}}:due"
        self.dead_key = f"hub:{{retry:{name}}}:dead"
        self._take = redis.register_script(_TAKE)

    async def schedule(self, item: dict[str, Any], due_ms: int) -> None:
        await self.redis.zadd(self.due_key, {json.dumps(item, sort_keys=True): due_ms})

    async def take_due(self, now_ms: int, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._take(keys=[self.due_key], args=[now_ms, limit])
        return [json.loads(as_text(r)) for r in rows]

    async def bury(self, item: dict[str, Any], error: str) -> None:
        await self.redis.rpush(self.dead_key, json.dumps({**item, "error": error[:500]}))

    async def dead(self) -> list[dict[str, Any]]:
        return [json.loads(as_text(r)) for r in await self.redis.lrange(self.dead_key, 0, -1)]
