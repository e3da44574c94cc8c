"""Redis Streams as the hub's bus: the inbound shards, the per-channel outboxes, dead letters.

The webhook path is the hot path: ``publish`` coalesces the XADDs that arrive in one event-loop
turn into one pipeline, so a burst of webhooks costs one round trip, and each caller still
learns that *its* entry is stored before it answers the provider.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from adapters import keys
from adapters.scripts import AnyRedis, Scripts, as_text
from hub.model import Message
from hub.ports import StreamEntry


def shard_of(sender: str, shards: int) -> int:
    """A sender always lands on the same shard, which is what keeps its messages in order."""
    return zlib.crc32(sender.encode()) % shards


class InboundPublisher:
    """XADD normalized messages to their shard; one pipeline per loop turn."""

    def __init__(self, redis: AnyRedis, shards: int, maxlen: int | None = None) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.shards = shards
        self.maxlen = maxlen
        self._pending: list[tuple[str, dict[str, str], asyncio.Future[str]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def publish(self, msg: Message) -> str:
        stream = keys.inbound_stream(shard_of(msg.sender, self.shards))
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, {"m": msg.to_json()}, fut))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other handlers of this loop turn add theirs
        while self._pending:
            batch, self._pending = self._pending, []
            pipe = self.redis.pipeline(transaction=False)
            for stream, fields, _ in batch:
                pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
            try:
                ids = await pipe.execute()
            except BaseException as exc:
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, fut), entry_id in zip(batch, ids, strict=True):
                if not fut.done():
                    fut.set_result(as_text(entry_id))


class StreamGroup:
    """One consumer group on one stream: read, claim, ack, dead-letter."""

    def __init__(self, redis: AnyRedis, stream: str, group: str, consumer: str) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.scripts = Scripts(redis)

    async def ensure(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, count: int, block_ms: int | None) -> list[StreamEntry]:
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        out = []
        for _stream, entries in reply or []:
            for eid, fields in entries:
                out.append(StreamEntry(self.stream, as_text(eid), _fields(fields)))
        return out

    async def claim_idle(self, min_idle_ms: int, count: int) -> list[StreamEntry]:
        """Take over entries another (dead) consumer read and never acked."""
        out: list[StreamEntry] = []
        cursor = "0-0"
        while True:
            nxt, entries, _deleted = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_ms, cursor, count=count
            )
            for eid, fields in entries:
                if fields is not None:
                    out.append(StreamEntry(self.stream, as_text(eid), _fields(fields)))
            cursor = as_text(nxt)
            if cursor == "0-0" or len(out) >= count:
                break
        if out:
            counts = await self.delivery_counts([e.id for e in out])
            out = [StreamEntry(e.stream, e.id, e.fields, counts.get(e.id, 1)) for e in out]
        return out

    async def delivery_counts(self, ids: Sequence[str]) -> dict[str, int]:
        lo, hi = min(ids, key=_id_key), max(ids, key=_id_key)
        rows = await self.redis.xpending_range(
            self.stream, self.group, min=lo, max=hi, count=len(ids) * 2 + 10
        )
        return {as_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def trim_processed(self, keep_ms: int, now_ms: int, exact: bool = False) -> int:
        """Drop entries older than ``keep_ms`` that every group has read and acked.

        Redis 7.0 has no XTRIM ... ACKED, so the floor is the oldest of: the retention cut,
        each group's last-delivered id, and each group's oldest pending entry."""
        try:
            groups = await self.redis.xinfo_groups(self.stream)
        except ResponseError:
            return 0
        floor = (now_ms - keep_ms, 0)
        for g in groups:
            floor = min(floor, _id_key(as_text(g["last-delivered-id"])))
            if int(g.get("pending") or 0):
                summary = await self.redis.xpending(self.stream, as_text(g["name"]))
                if summary.get("min"):
                    floor = min(floor, _id_key(as_text(summary["min"])))
        if floor <= (0, 0):
            return 0
        n = await self.redis.xtrim(
            self.stream, minid=f"{floor[0]}-{floor[1]}", approximate=not exact
        )
        return int(n)

    async def ack(self, ids: Sequence[str]) -> None:
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def dead_letter(self, entry: StreamEntry, error: str) -> None:
        flat: list[str] = []
        for k, v in entry.fields.items():
            flat += [k, v]
        await self.scripts.dead_letter(
            keys=[self.stream, keys.dead_letters(self.stream)],
            args=[self.group, entry.id, error[:1000], entry.deliveries, *flat],
        )

    async def hold_lease(self, owner: str, ttl_ms: int) -> bool:
        r = await self.scripts.lease(keys=[keys.lease(self.stream)], args=[owner, ttl_ms])
        return bool(int(r))

    async def release_lease(self, owner: str) -> None:
        k = keys.lease(self.stream)
        if as_text(await self.redis.get(k) or b"") == owner:
            await self.redis.delete(k)


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}


def _id_key(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


class Outbox:
    """Per-channel outbox streams, with a delayed set for retries waiting on their backoff."""

    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.scripts = Scripts(redis)

    async def enqueue(self, channel: str, contact_id: str, reply_id: str) -> str:
        eid = await self.redis.xadd(keys.outbox_stream(channel), {"r": f"{contact_id}|{reply_id}"})
        return as_text(eid)

    async def schedule_retry(
        self, channel: str, contact_id: str, reply_id: str, due_ms: int
    ) -> None:
        await self.redis.zadd(keys.outbox_delayed(channel), {f"{contact_id}|{reply_id}": due_ms})

    async def move_due(self, channel: str, now_ms: int, limit: int = 500) -> int:
        n = await self.scripts.move_due(
            keys=[keys.outbox_delayed(channel), keys.outbox_stream(channel)],
            args=[now_ms, limit],
        )
        return int(n)

    async def next_due_ms(self, channel: str) -> int | None:
        rows = await self.redis.zrange(keys.outbox_delayed(channel), 0, 0, withscores=True)
        return int(rows[0][1]) if rows else None
