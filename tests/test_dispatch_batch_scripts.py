"""The dispatcher's batch-level writes (issue 9, point 3) give what the per-command writes
gave: the pipeliner's own pipeline answers like redis-py's, the list indexes written from the
apply script's answer equal a reindex that reads the tickets, the search terms of a batch in
one script keep ``ZADD GT``'s rules, and a batch's events arrive once each, in order. On a
single Redis and (``HUB_TEST_REDIS=cluster``) on a Redis Cluster."""

from __future__ import annotations

import asyncio
from typing import Any

from adapters import keys
from adapters.redis_bus import Pipeliner, message_json
from adapters.redis_events import STREAM, RedisEvents
from adapters.redis_search import RedisSearchIndex
from adapters.redis_store import AppliedBatch, RedisStore
from hub.ids import new_id
from hub.model import Attachment, Location, Message
from hub.ports import Route
from hub.search import SearchDoc
from tests.helpers import redis_client


def _msg(sender: str, text: str, at: float, **kw: Any) -> Message:
    return Message(
        id=new_id(int(at * 1000)),
        channel="whatsapp",
        account="wa1",
        provider_id="SM" + new_id(),
        sender=f"phone:{sender}",
        reply_address=sender,
        received_at=at,
        text=text,
        display_name="Siti Aminah",
        **kw,
    )


async def test_pipeliner_answers_like_redis_py(redis_url: str) -> None:
    """Replies (with redis-py's reply callbacks), an error reply kept to its caller, and
    the connection still in step afterwards."""
    r = redis_client(redis_url)
    try:
        pipe = Pipeliner.of(r)
        k = "hub:{t}:pl"
        commands = [
            ("HSET", f"{k}:h", "a", "1", "b", "2"),
            ("HGETALL", f"{k}:h"),
            ("HMGET", f"{k}:h", "a", "zz"),
            ("INCRBY", f"{k}:n", 5),
            ("ZADD", f"{k}:z", 1.5, "m"),
            ("ZRANGE", f"{k}:z", 0, -1, "WITHSCORES"),
            ("GET", f"{k}:missing"),
        ]
        ours = await pipe.many(commands)
        await r.delete(f"{k}:h", f"{k}:n", f"{k}:z")
        theirs_pipe = r.pipeline(transaction=False)
        for c in commands:
            theirs_pipe.execute_command(*c)
        theirs = await theirs_pipe.execute()
        assert ours == theirs
        assert ours[1] == {b"a": b"1", b"b": b"2"}

        # concurrent callers in one turn: one fails (WRONGTYPE), the others get their replies
        async def bad() -> Any:
            return await pipe.one("HSET", f"{k}:n", "x", "y")

        got = await asyncio.gather(
            pipe.one("SET", f"{k}:s", "v"), bad(), pipe.one("GET", f"{k}:s"),
            return_exceptions=True,
        )  # fmt: skip
        assert got[0] is True
        assert got[2] == b"v"
        assert isinstance(got[1], Exception)
        assert "WRONGTYPE" in str(got[1])
        assert await pipe.one("GET", f"{k}:s") == b"v"
    finally:
        await r.aclose()


async def test_message_json_equals_to_json() -> None:
    m = _msg("+6281234567890", 'THR "belum" dibayar é 😀\n', 1_760_000_000.123)
    variants = [
        m,
        _msg("+62812", "x", 1.0, meta={"a": "1", "n": 2}, thread_hints=("h1", "h2")),
        _msg("+62812", "x", 1.0, attachments=(Attachment("https://x/y", "image/jpeg"),)),
        _msg("+62812", "x", 1.0, location=Location(-6.2, 106.8, "Jakarta")),
    ]
    for v in variants:
        assert message_json(v) == v.to_json()


async def test_indexes_from_the_apply_answer_equal_a_reindex(redis_url: str) -> None:
    """``reindex_rows`` on what ``apply_messages`` answered writes the same list indexes as
    ``reindex`` reading the tickets (new tickets and follow-ups, several per ticket)."""
    r = redis_client(redis_url)
    try:
        store = RedisStore(r)
        senders = ["+6281234567890", "+6285712345678", "+6281311112222"]
        cids = await store.resolve_contacts([f"phone:{s}" for s in senders])
        items = [
            (cid, _msg(s, f"pesan {i}", 1_760_000_000 + i), Route(unit="pengawasan"))
            for i in range(6)
            for cid, s in zip(cids, senders, strict=True)
            if i % 2 == 0 or s != senders[2]
        ]
        applied = await store.apply_messages(items, 7 * 24 * 3600 * 1000)
        assert isinstance(applied, AppliedBatch)
        assert set(applied.rows) == {a.ticket_id for a in applied}

        async def index_state() -> dict[str, Any]:
            ix_keys = [
                keys.ticket_index(),
                keys.ticket_index("status", "open"),
                keys.ticket_index("channel", "whatsapp"),
                keys.ticket_index("unit", "pengawasan"),
            ]
            state: dict[str, Any] = {k: await r.zrange(k, 0, -1, withscores=True) for k in ix_keys}
            for a in applied:
                state[a.ticket_id] = await r.hget(keys.ticket(a.contact_id, a.ticket_n), "ix")
            return state

        from_rows = await store.reindex_rows(applied.rows)
        after_rows = await index_state()
        assert after_rows[keys.ticket_index("status", "open")]  # written
        for a in applied:  # forget the indexes, then the reading way
            await r.hdel(keys.ticket(a.contact_id, a.ticket_n), "ix")
        await r.delete(keys.ticket_index())
        for k in list(after_rows):
            if k.startswith("hub:{tickets}"):
                await r.delete(k)
        from_reads = await store.reindex(a.ticket_id for a in applied)
        assert from_rows == from_reads
        assert await index_state() == after_rows

        # a redelivery answers the same rows and changes nothing
        again = await store.apply_messages(items, 7 * 24 * 3600 * 1000)
        assert isinstance(again, AppliedBatch)
        assert all(a.duplicate for a in again)
        assert await store.reindex_rows(again.rows) == from_rows
        assert await index_state() == after_rows
    finally:
        await r.aclose()


async def test_search_terms_of_a_batch_keep_zadd_gt(redis_url: str) -> None:
    r = redis_client(redis_url)
    try:
        idx = RedisSearchIndex(r)
        tid = f"{new_id()}.1"
        cid = tid.split(".")[0]
        late = SearchDoc(tid, cid, "KMN-2026-000042", 2000, "Pesangon belum dibayar", "Siti",
                         ("phone:+6281234567890",))  # fmt: skip
        early = SearchDoc(tid, cid, "", 1000, "pesangon dan THR", "Siti")
        await idx.index([late, early])  # the older message, later in the batch
        assert await r.zscore(keys.search_word("pesangon"), tid) == 2000
        assert await r.zscore(keys.search_word("thr"), tid) == 1000
        assert await r.zscore(keys.search_name("siti"), tid) == 2000
        assert await r.zscore(keys.search_identity("phone:+6281234567890"), tid) == 2000
        assert await r.zscore(keys.search_seq("42"), tid) == 2000
        await idx.index([early])  # a redelivery of the older one lowers nothing
        assert await r.zscore(keys.search_word("pesangon"), tid) == 2000
        await idx.index([])  # nothing to write: no call
    finally:
        await r.aclose()


async def test_events_of_a_batch_once_each_in_order(redis_url: str) -> None:
    r = redis_client(redis_url)
    try:
        ev = RedisEvents(r)
        start = await ev.last_id()
        one = await ev.publish({"type": "first"})
        batch = [{"type": "message.received", "n": i, "text": "é"} for i in range(250)]
        ids = await ev.publish_many(batch)
        assert await ev.publish_many([]) == []
        got = await ev.since(start, count=1000)
        assert [i for i, _ in got] == [one, *ids]
        assert [e for _, e in got] == [{"type": "first"}, *batch]
        assert await r.xlen(STREAM) == 251
    finally:
        await r.aclose()
