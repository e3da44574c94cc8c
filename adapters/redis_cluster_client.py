"""The hub's Redis Cluster client: redis-py's ``RedisCluster``, failing the way a single Redis does.

The hub treats "the store is away" as one family of errors (redis ``ConnectionError`` and
``TimeoutError``): the web answers 503 + Retry-After, the workers back off and retry. A
``RedisCluster`` reports the same situations otherwise: ``RedisClusterException`` when it
cannot reach any node (not even a ``RedisError``, so every ``except RedisError`` missed it and
a webhook got a 500), ``SlotNotCoveredError`` when part of the slots have no master, and
``ClusterDownError`` / ``TryAgainError`` / ``ClusterError`` once its own retries are spent
during a failover or a resharding. This client turns those into ``ClusterUnavailableError``,
a redis ``ConnectionError``; errors that are bugs (a command whose keys span slots) stay
what they are.

Retries follow the single-server client's policy (``hub.runtime``): one immediate retry on a
connection error (after a master restarts, pooled connections are dead although it is back),
never on a timeout. redis-py's default for a cluster retries connection errors *and timeouts*
three times, a pipeline each time after closing every connection of the client (under the
commands other tasks have in flight) and re-reading the topology: a frozen master failed a
pipeline after 26 s instead of 2 s (1.5 s socket timeout), so a webhook would wait far past
the provider's own timeout instead of getting its 503, and a command that timed out (and may
have run) could be sent again.

It also refuses ``pipeline(transaction=True)``: redis-py's asyncio cluster pipeline runs a
transaction by starting a thread with its own event loop for every queued command (blocking
the hub's loop, and breaking the client if it had to connect then). Atomic steps go through
``Scripts.atomic`` (one Lua script on one hash tag), which works on both deployments.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

_UNAVAILABLE = (ClusterDownError, ClusterError, SlotNotCoveredError, TryAgainError)


class ClusterUnavailableError(RedisConnectionError):
    """The cluster cannot serve the command now (no node reachable, slots uncovered, a
    failover or resharding outlasting the client's retries): retry later."""


class ClusterClient(RedisCluster):
    """``RedisCluster`` with the hub's failure vocabulary and retry policy (see the module
    docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # no retry inside redis-py (its loop retries timeouts too; a pipeline's closes the
        # whole client first): execute_command retries a connection error once itself
        kwargs["retry"] = Retry(NoBackoff(), 0)
        super().__init__(*args, **kwargs)

    async def initialize(self, *args: Any, **kwargs: Any) -> ClusterClient:
        try:
            await super().initialize(*args, **kwargs)
        except RedisConnectionError:
            raise
        except RedisClusterException as exc:  # no startup node answered, or slots uncovered
            raise ClusterUnavailableError(str(exc)) from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._execute_once(*args, **kwargs)
        except RedisConnectionError:
            # the topology is read again first (redis-py flags it after a connection error)
            return await self._execute_once(*args, **kwargs)

    async def _execute_once(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except _UNAVAILABLE as exc:
            raise ClusterUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if transaction:
            raise RedisClusterException(
                "pipeline(transaction=True) on a Redis Cluster: use Scripts.atomic "
                "(adapters/scripts.py) for an atomic step on one hash tag"
            )
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # as redis-py does


class _Pipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except _UNAVAILABLE as exc:
            raise ClusterUnavailableError(f"{type(exc).__name__}: {exc}") from exc
