"""Fixed-window rate limits in Redis: one counter per bucket and window, expiring with it.

Bucket names are hashed, so an IP address, phone number or e-mail never appears in a key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from adapters.scripts import AnyRedis, Scripts


class RedisRateLimit:
    def __init__(self, redis: AnyRedis, prefix: str = "hub:rl") -> None:
        self.redis: Any = redis
        self.prefix = prefix
        self.scripts = Scripts(redis)

    def _key(self, bucket: str, window: int) -> str:
        digest = hashlib.sha256(bucket.encode()).hexdigest()[:32]
        return f"{self.prefix}:{{{digest}}}:{window}"

    async def over(self, bucket: str, limit: int, window_s: int, now_s: float) -> int:
        """Without counting: the seconds until the window ends if ``bucket`` has used up its
        ``limit`` (one more attempt would be over it), else 0."""
        window = int(now_s // window_s)
        count = await self.redis.get(self._key(bucket, window))
        if count is None or int(count) < limit:
            return 0
        return max(1, int((window + 1) * window_s - now_s) + 1)

    async def hit(self, bucket: str, limit: int, window_s: int, now_s: float) -> int:
        """Count one attempt: 0 if within ``limit``, else the seconds until the window ends."""
        window = int(now_s // window_s)
        key = self._key(bucket, window)
        count, _ = await self.scripts.atomic(("INCR", key), ("EXPIRE", key, window_s + 1))
        if int(count) <= limit:
            return 0
        return max(1, int((window + 1) * window_s - now_s) + 1)
