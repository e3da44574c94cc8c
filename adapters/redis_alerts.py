"""The alert engine's memory and the health of the sources the hub depends on, in Redis.

``hub:{alerts}:state`` is one JSON document (the firing/pending alerts and the notifications
not yet delivered), written whole by the one observer holding the lease: small, and read by
every web process for the dashboard. ``hub:{alerts}:health`` is a hash, one JSON value per
source (a mailbox, a provider API), written by whichever process talks to that source, only
when its health changes (a compare-and-set script, so ``since`` keeps the first moment).
"""

from __future__ import annotations

import json
from typing import Any

from adapters.scripts import AnyRedis, Scripts, as_text

STATE_KEY = "hub:{alerts}:state"
HEALTH_KEY = "hub:{alerts}:health"


class RedisAlertStore:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis
        self.scripts = Scripts(redis)

    async def load(self) -> dict[str, Any]:
        """The saved document; ``{}`` when there is none or it cannot be read (logged by
        the caller as a fresh start: alerts re-fire rather than stay silent)."""
        raw = await self.redis.get(STATE_KEY)
        if raw is None:
            return {}
        try:
            doc = json.loads(as_text(raw))
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    async def save(self, doc: dict[str, Any]) -> None:
        await self.redis.set(STATE_KEY, json.dumps(doc, ensure_ascii=False, sort_keys=True))

    async def set_health(
        self, name: str, kind: str, healthy: bool, since: float, detail: str
    ) -> bool:
        record = {"kind": kind, "healthy": healthy, "since": since, "detail": detail}
        wrote = await self.scripts.set_health(
            keys=[HEALTH_KEY],
            args=[name, "true" if healthy else "false", json.dumps(record, ensure_ascii=False)],
        )
        return bool(int(wrote))

    async def health(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, raw in (await self.redis.hgetall(HEALTH_KEY)).items():
            try:
                record = json.loads(as_text(raw))
            except ValueError:
                continue
            if isinstance(record, dict):
                out[as_text(name)] = record
        return out

    async def forget_health(self, names: list[str]) -> None:
        if names:
            await self.redis.hdel(HEALTH_KEY, *names)
