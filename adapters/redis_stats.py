"""Per-minute load counters and samples in Redis, for the supervisors' live charts.

One hash per metric per hour (``hub:{stats}:<metric>:<hour>``) holds a field per minute and
subject (``"<minute>|whatsapp/wa1"``): the last hour is two keys, a day 25, a week 169, read in
one pipeline; keys expire after ``retention_days``. Counters (``incr``) add; samples
(``sample``) keep the last value of their minute (a backlog). These feed charts and alerts,
so they favour cheapness over exactness: a crash between storing a message and counting it
loses one count. What the Ombudsman gets (reports) is computed from the tickets themselves.

It also keeps small shared documents (``get_shared``/``put_shared``, with a lock so that one
process rebuilds a document while the others keep reading it): the dashboard's tally of the
open tickets, counted once per deployment rather than once per request (``hub/dashboard.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from adapters.scripts import AnyRedis, as_text

PREFIX = "hub:{stats}"


def _key(metric: str, hour: int) -> str:
    return f"{PREFIX}:{metric}:{hour}"


def _shared(name: str) -> str:
    return f"{PREFIX}:shared:{name}"


class RedisStats:
    def __init__(self, redis: AnyRedis, retention_days: float = 8.0) -> None:
        self.redis: Any = redis
        self.ttl_s = int(retention_days * 86400)

    async def incr(self, metric: str, counts: Iterable[tuple[str, float, int]]) -> None:
        """Add ``n`` to ``subject`` in the minute of ``at`` (unix seconds), for each item."""
        pipe = self.redis.pipeline(transaction=False)
        touched: set[str] = set()
        for subject, at, n in counts:
            minute = int(at // 60)
            key = _key(metric, minute // 60)
            pipe.hincrby(key, f"{minute}|{subject}", n)
            touched.add(key)
        for key in touched:
            pipe.expire(key, self.ttl_s)
        if touched:
            await pipe.execute()

    async def sample(self, metric: str, values: dict[str, float], at: float) -> None:
        """Record the value of each subject for the minute of ``at`` (the last one wins)."""
        if not values:
            return
        minute = int(at // 60)
        key = _key(metric, minute // 60)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={f"{minute}|{s}": repr(float(v)) for s, v in values.items()})
        pipe.expire(key, self.ttl_s)
        await pipe.execute()

    async def minutes(self, metric: str, since: float, until: float) -> dict[str, dict[int, float]]:
        """subject → {minute (unix seconds // 60): value} for the minutes in [since, until)."""
        first, last = int(since // 60), int((until - 1e-9) // 60)
        hours = range(first // 60, last // 60 + 1)
        pipe = self.redis.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(_key(metric, hour))
        out: dict[str, dict[int, float]] = defaultdict(dict)
        for row in await pipe.execute():
            for field, value in row.items():
                minute_s, _, subject = as_text(field).partition("|")
                minute = int(minute_s)
                if first <= minute <= last:
                    out[subject][minute] = float(as_text(value))
        return dict(out)

    # -- small shared documents ---------------------------------------------------------------

    async def get_shared(self, name: str) -> str | None:
        raw = await self.redis.get(_shared(name))
        return as_text(raw) if raw is not None else None

    async def put_shared(self, name: str, value: str, ttl_s: float) -> None:
        # The document first, then its lock: one round trip, no MULTI (a transaction pipeline
        # is refused on a Redis Cluster); a caller that locks in between only builds it twice.
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(_shared(name), value, px=max(1, int(ttl_s * 1000)))
        pipe.delete(f"{_shared(name)}:lock")
        await pipe.execute()

    async def lock_shared(self, name: str, ttl_s: float) -> bool:
        """True for one caller until ``ttl_s`` passes or the document is put again."""
        got = await self.redis.set(f"{_shared(name)}:lock", "1", nx=True, px=int(ttl_s * 1000))
        return bool(got)

    async def drop_shared(self, name: str) -> None:
        await self.redis.delete(_shared(name), f"{_shared(name)}:lock")
