"""A named lease in Redis: one holder at a time, lost if not renewed within its TTL."""

from __future__ import annotations

from typing import Any

from adapters.scripts import AnyRedis, Scripts, as_text


class RedisLease:
    def __init__(self, redis: AnyRedis, name: str) -> None:
        self.redis: Any = redis
        self.key = f"hub:lease:{{{name}}}"
        self.scripts = Scripts(redis)

    async def hold(self, owner: str, ttl_ms: int) -> bool:
        """Take the lease if free, extend it if ours."""
        return bool(int(await self.scripts.lease(keys=[self.key], args=[owner, ttl_ms])))

    async def release(self, owner: str) -> None:
        if as_text(await self.redis.get(self.key) or b"") == owner:
            await self.redis.delete(self.key)
