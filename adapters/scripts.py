"""The Lua scripts, loaded from ``adapters/lua`` once and run by SHA (EVALSHA with fallback).

Every script names its contact's (or stream's) key in KEYS[1]; the other keys it touches share
that key's hash tag, so each call lands on one slot of a Redis Cluster too.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript

AnyRedis = Redis | RedisCluster
"""A single Redis or a Redis Cluster: the adapters run the same code on both."""


def as_text(v: Any) -> str:
    """A Redis reply (bytes, or str when decoded) as text."""
    return v.decode() if isinstance(v, bytes) else str(v)


@cache
def _source(name: str) -> str:
    return (resources.files("adapters") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class Script:
    """One registered script. redis-py refuses EVALSHA inside a cluster pipeline (it cannot
    load a missing script on the right node there), so in one it is queued as EVAL: the server
    caches it by SHA, and the pipeline still costs one round trip per node, in order."""

    def __init__(self, redis: AnyRedis, source: str) -> None:
        self.source = source
        self.script: AsyncScript = redis.register_script(source)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        if isinstance(client, ClusterPipeline):
            return client.eval(self.source, len(keys), *keys, *args)
        return await self.script(keys=keys, args=args, client=client)


class Scripts:
    """Registered scripts of one client; attribute access by file name."""

    NAMES = (
        "resolve_contact",
        "apply_message",
        "assign_number",
        "add_reply",
        "claim_reply",
        "set_reply_state",
        "set_ticket_status",
        "move_due",
        "lease",
        "dead_letter",
        "add_event",
        "queue_enqueue",
        "queue_claim",
        "queue_release",
        "queue_renew",
        "queue_expire",
        "record_outbound",
        "retract_message",
        "set_health",
        "multi",
        "publish_events",
        "search_index",
        "index_tickets",
    )

    def __init__(self, redis: AnyRedis) -> None:
        self._scripts: dict[str, Script] = {n: Script(redis, _source(n)) for n in self.NAMES}

    def __getattr__(self, name: str) -> Script:
        try:
            return self.__dict__["_scripts"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(name) from None

    async def run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        return await self._scripts[name](keys=keys, args=args, client=client)

    async def atomic(self, *commands: Sequence[Any]) -> list[Any]:
        """Run ``commands`` (``("INCR", key)``, ``("EXPIRE", key, 60)``, ...) as one atomic
        step and return their replies: MULTI/EXEC that works the same on a single Redis and
        on a Redis Cluster (never use ``pipeline(transaction=True)``: on a cluster redis-py
        runs each queued command in a thread with its own event loop). Each command names its
        key first; on a cluster, all the keys must share one hash tag."""
        names = list(dict.fromkeys(str(c[1]) for c in commands))
        args: list[Any] = []
        for c in commands:
            args += [len(c), *c]
        return list(await self._scripts["multi"](keys=names, args=args))
