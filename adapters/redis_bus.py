"""Redis Streams as the hub's bus: the inbound shards, the per-channel outboxes, dead letters;
and the pipeliner the adapters share.

The webhook path is the hot path: ``publish`` coalesces the XADDs that arrive in one event-loop
turn into one pipeline, so a burst of webhooks costs one round trip, and each caller still
learns that *its* entry is stored before it answers the provider. ``Pipeliner`` does the same
for any command: the dispatcher's and the sender's concurrent steps share round trips.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import math
import operator
import weakref
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters import keys
from adapters.scripts import AnyRedis, Script, Scripts, as_text
from hub.model import Message
from hub.ports import StreamEntry

Command = tuple[Any, ...]
_NO_CALLBACK = object()


class Pipeliner:
    """Commands that concurrent callers issue during one event-loop turn go to Redis in one
    pipeline (not a transaction); each caller awaits only its own replies.

    Nothing changes for a caller but the number of round trips: its commands run in the order
    it gave them, a command it issues after awaiting another runs after it, and an error in
    one caller's command is that caller's alone. Never give it a blocking command (XREADGROUP
    BLOCK): it would hold up everyone's. Scripts run by SHA (on a cluster by source, as
    ``adapters.scripts`` explains), and a pipeline that runs some starts by loading them
    (SCRIPT LOAD, once per script per pipeline; cheap when Redis has them): Redis runs one
    connection's commands in order, so no EVALSHA of it can find its script missing. (Retrying
    EVALSHAs that met NOSCRIPT would not do: another connection's load can land in the middle
    of the pipeline, and the retried first ones would then run after later ones that worked,
    applying a citizen's messages out of order.)
    One per Redis client, shared by the adapters built on it (``Pipeliner.of``)."""

    _shared: ClassVar[weakref.WeakKeyDictionary[Any, Pipeliner]] = weakref.WeakKeyDictionary()

    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis
        self.cluster = isinstance(redis, RedisCluster)
        self._queue: list[tuple[list[Command], asyncio.Future[list[Any]]]] = []
        self._sources: dict[str, str] = {}  # script SHA → source, loaded with its pipeline
        self._flush_task: asyncio.Task[None] | None = None  # the one that takes this turn's
        self._running: set[asyncio.Task[None]] = set()
        self._callbacks: dict[str, Any] = {}  # command name → redis-py's reply callback

    @classmethod
    def of(cls, redis: AnyRedis) -> Pipeliner:
        p = cls._shared.get(redis)
        if p is None:
            p = cls._shared[redis] = cls(redis)
        return p

    def script_command(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Command:
        if self.cluster:
            return ("EVAL", script.source, len(keys), *keys, *args)
        sha = script.script.sha
        self._sources[sha] = script.source
        return ("EVALSHA", sha, len(keys), *keys, *args)

    def many(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Queue ``commands`` (adjacent, in this order) for this turn's pipeline; the future
        has their replies, or the first error among them."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if not commands:
            fut.set_result([])
            return fut
        self._queue.append((list(commands), fut))
        if self._flush_task is None:
            self._flush_task = t = asyncio.create_task(self._flush())
            self._running.add(t)
            t.add_done_callback(self._running.discard)
        return fut

    async def one(self, *command: Any) -> Any:
        return (await self.many([command]))[0]

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return (await self.many([self.script_command(script, keys, args)]))[0]

    async def _flush(self) -> None:
        batch: list[tuple[list[Command], asyncio.Future[list[Any]]]] = []
        try:
            await asyncio.sleep(0)  # let the other callers of this loop turn add theirs
            batch, self._queue, self._flush_task = self._queue, [], None
            replies = await self._run([c for cmds, _ in batch for c in cmds])
        except BaseException as exc:
            if not batch:  # cancelled before taking its batch: fail the callers, not hang
                batch, self._queue, self._flush_task = self._queue, [], None
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            if not isinstance(exc, Exception):
                raise
            return
        i = 0
        for cmds, fut in batch:
            mine = replies[i : i + len(cmds)]
            i += len(cmds)
            if fut.done():  # its caller was cancelled
                continue
            err = next((r for r in mine if isinstance(r, Exception)), None)
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(mine)

    async def _run(self, commands: list[Command]) -> list[Any]:
        shas = list(dict.fromkeys(c[1] for c in commands if c[0] == "EVALSHA"))
        loads: list[Command] = [("SCRIPT", "LOAD", self._sources[sha]) for sha in shas]
        if self.cluster:
            pipe = self.redis.pipeline(transaction=False)
            for c in loads + commands:
                pipe.execute_command(*c)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        else:
            replies = await self._run_direct(loads + commands)
        loaded = replies[: len(shas)]
        for r in loaded:
            if isinstance(r, Exception):
                raise r
        return replies[len(shas) :]

    async def _run_direct(self, commands: list[Command]) -> list[Any]:
        """One pipeline on one pooled connection, as redis-py's ``Pipeline.execute``
        (``raise_on_error=False``) does it, with the same replies (its response callbacks)
        and the same retry on a connection error, at a fraction of its CPU per command: the
        commands packed by hiredis (C) rather than in Python, and one read timeout for the
        whole pipeline (redis-py's ``socket_timeout``) rather than one per reply."""
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        packed = b"".join(map(hiredis.pack_command, commands))
        names = [c[0] for c in commands]

        async def fail(_error: Exception) -> None:
            await conn.disconnect()

        try:
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: self._exchange(conn, packed, names), fail
            )
            return replies
        finally:
            await pool.release(conn)

    async def _exchange(self, conn: Any, packed: bytes, names: list[str]) -> list[Any]:
        await conn.send_packed_command(packed)
        out: list[Any] = []
        callbacks = self._callbacks
        try:
            async with asyncio.timeout(conn.socket_timeout):
                for name in names:
                    try:
                        r = await conn.read_response(timeout=math.inf)  # the timeout: above
                    except ResponseError as exc:
                        out.append(exc)
                        continue
                    cb = callbacks.get(name, _NO_CALLBACK)
                    if cb is _NO_CALLBACK:
                        cb = callbacks[name] = self.redis.response_callbacks.get(name)
                    if cb is not None:
                        r = cb(r)
                        if inspect.isawaitable(r):
                            r = await r
                    out.append(r)
        except TimeoutError:
            await conn.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout reading from Redis (pipeline)") from None
        except BaseException:
            # replies left unread must not reach the next user of this connection
            await conn.disconnect(nowait=True)
            raise
        return out


def shard_of(sender: str, shards: int) -> int:
    """A sender always lands on the same shard, which is what keeps its messages in order."""
    return zlib.crc32(sender.encode()) % shards


class InboundPublisher:
    """XADD normalized messages to their shard. The webhook path is the hot path: the XADDs
    (and the webhooks' other lookups, ``PipelinedGets``) of one loop turn share one pipeline
    (``Pipeliner``), and each caller still learns that *its* entry is stored before it
    answers the provider."""

    def __init__(self, redis: AnyRedis, shards: int, maxlen: int | None = None) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.shards = shards
        self.maxlen = maxlen
        self.pipe = Pipeliner.of(redis)
        self._streams = [keys.inbound_stream(i) for i in range(shards)]

    async def publish(self, msg: Message) -> str:
        stream = self._streams[shard_of(msg.sender, self.shards)]
        trim = () if self.maxlen is None else ("MAXLEN", "~", self.maxlen)
        return as_text(await self.pipe.one("XADD", stream, *trim, "*", "m", message_json(msg)))


class PipelinedGets:
    """A client whose GETs join the loop turn's pipeline (``Pipeliner``); everything else is
    the client's own. For lookups on the webhook path (the forgers' quota): concurrent
    webhooks share one round trip instead of taking a pooled connection each."""

    def __init__(self, redis: AnyRedis) -> None:
        self._redis: Any = redis
        self._pipe = Pipeliner.of(redis)

    async def get(self, key: str) -> Any:
        return await self._pipe.one("GET", key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)


_MESSAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Message))
_message_values = operator.attrgetter(*_MESSAGE_FIELDS)
# json.dumps(..., ensure_ascii=False, separators=(",", ":")) without a new encoder per call
COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def message_json(msg: Message) -> str:
    """``msg.to_json()``, character for character, without ``dataclasses.asdict``'s deep copy
    (the hot path's most expensive step after the signature): the fields go to the encoder
    as they are, which gives the same text whenever it can encode them (text, numbers, None,
    tuples, dicts); a dataclass inside (attachments, a location) makes it refuse, and then
    ``to_json`` itself does it."""
    try:
        return COMPACT_JSON(dict(zip(_MESSAGE_FIELDS, _message_values(msg), strict=True)))
    except TypeError:
        return msg.to_json()


class StreamGroup:
    """One consumer group on one stream: read, claim, ack, dead-letter."""

    def __init__(self, redis: AnyRedis, stream: str, group: str, consumer: str) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.scripts = Scripts(redis)
        self.pipe = Pipeliner.of(redis)

    async def ensure(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(
        self, count: int, block_ms: int | None, ack: Sequence[str] = ()
    ) -> list[StreamEntry]:
        """New entries for this consumer. ``ack``: entries applied since the last read,
        acknowledged in the same round trip (XACK, then the read, one pipeline on the
        shard's slot), so a batch's acknowledgement costs no round trip of its own."""
        if ack:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.stream, self.group, *ack)
            pipe.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
            )
            _, reply = await pipe.execute()
        else:
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

    async def retake_pending(self, count: int) -> list[StreamEntry]:
        """The group's ``count`` oldest pending entries (whoever holds them), taken over by
        this consumer without counting a delivery, with their fields and their real delivery
        counts: the dispatcher's resync, after a failure left entries pending. A claim that
        counted (XAUTOCLAIM without JUSTID) would count a delivery for entries never tried,
        and a few short hiccups would dead-letter healthy ones. One stream key per command,
        so it works on a cluster."""
        rows = await self.redis.xpending_range(self.stream, self.group, "-", "+", count)
        if not rows:
            return []
        counts = {as_text(r["message_id"]): int(r["times_delivered"]) for r in rows}
        ids = list(counts)
        # JUSTID: ownership only, the delivery count stays. An entry acked meanwhile is not
        # claimed, and one trimmed away leaves the pending list (Redis 7): both are skipped.
        claimed = {
            as_text(i)
            for i in await self.redis.xclaim(
                self.stream, self.group, self.consumer, 0, ids, justid=True
            )
        }
        ids = [i for i in ids if i in claimed]
        found = await self.pipe.many([("XRANGE", self.stream, i, i) for i in ids])
        out = []
        for eid, rows_of_id in zip(ids, found, strict=True):
            for got_id, fields in rows_of_id or []:
                if as_text(got_id) == eid and fields is not None:
                    out.append(StreamEntry(self.stream, eid, _fields(fields), counts[eid]))
        return out

    async def count_failed_delivery(self, entry_id: str, deliveries: int) -> None:
        """Record that attempt ``deliveries`` of a pending entry failed: its delivery count
        becomes ``deliveries + 1``, the number of the next attempt (``XCLAIM ... RETRYCOUNT``:
        set, not incremented, so a retried call cannot count twice)."""
        await self.redis.xclaim(
            self.stream,
            self.group,
            self.consumer,
            0,
            [entry_id],
            retrycount=deliveries + 1,
            justid=True,
        )

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
            await self.pipe.one("XACK", self.stream, self.group, *ids)

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
        self.pipe = Pipeliner.of(redis)

    async def enqueue(self, channel: str, contact_id: str, reply_id: str) -> str:
        value = f"{contact_id}|{reply_id}"
        return as_text(await self.pipe.one("XADD", keys.outbox_stream(channel), "*", "r", value))

    async def schedule_retry(
        self, channel: str, contact_id: str, reply_id: str, due_ms: int
    ) -> None:
        await self.pipe.one(
            "ZADD", keys.outbox_delayed(channel), due_ms, f"{contact_id}|{reply_id}"
        )

    async def move_due(self, channel: str, now_ms: int, limit: int = 500) -> int:
        n = await self.pipe.script(
            self.scripts.move_due,
            [keys.outbox_delayed(channel), keys.outbox_stream(channel)],
            [now_ms, limit],
        )
        return int(n)

    async def next_due_ms(self, channel: str) -> int | None:
        rows = await self.pipe.one("ZRANGE", keys.outbox_delayed(channel), 0, 0, "WITHSCORES")
        if not rows:
            return None
        # [member, score], or [[member, score]] once redis-py's reply callback paired them
        first = rows[0] if isinstance(rows[0], list | tuple) else rows
        return int(float(first[1]))
