"""Who is alive in a role: one sorted set per role, member = process, score = its last beat.

The dispatchers use it to share the inbound shards: each holds at most its fair share
(``hub.dispatcher``). Times are Redis's own (``TIME`` in the script), so hosts whose clocks
disagree still agree on who is alive. The key has its own hash tag (one slot on a cluster).
"""

from __future__ import annotations

from typing import Any

from adapters.keys import PREFIX
from adapters.scripts import AnyRedis, Script

BEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""


def roster_key(role: str) -> str:
    return f"{PREFIX}:{{roster:{role}}}"


class RedisRoster:
    def __init__(self, redis: AnyRedis, role: str) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.key = roster_key(role)
        self._beat = Script(redis, BEAT_LUA)

    async def beat(self, member: str, ttl_ms: int) -> int:
        """``member`` is alive now; members silent for ``ttl_ms`` are forgotten. Returns how
        many are alive (``member`` included)."""
        return int(await self._beat(keys=[self.key], args=[member, ttl_ms]))

    async def leave(self, member: str) -> None:
        await self.redis.zrem(self.key, member)
