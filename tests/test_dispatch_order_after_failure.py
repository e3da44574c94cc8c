"""A citizen's order survives an entry that fails inside a failed batch.

When a batch fails, the dispatcher applies its entries one by one. If one of them fails there
too, the later entries of the same citizen in that batch must not be applied before it: they
are left pending, and the shard retakes its pending entries, oldest first, before reading new
ones. The retake must not count a delivery (``XCLAIM ... JUSTID``): only a failed attempt
counts, so a short hiccup cannot push a healthy entry into the dead letters, and an entry
that fails every time still gets there after ``max_deliveries`` and lets the citizen's later
messages through, in order.

Real Redis (``HUB_TEST_REDIS=cluster`` runs it on a cluster too). The fault is injected by a
wrapper around the real store that raises, for one chosen message, before passing the write
to Redis, as a connection that drops would.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from adapters import keys
from adapters.redis_bus import shard_of
from hub.model import Message
from hub.ports import StreamEntry
from tests.helpers import HubHarness, eventually, inbound_params

PHONE_A = "+6281234567890"
SHARDS = 2  # tests/helpers.py: redis.inbound_shards


def same_shard_phone(phone: str) -> str:
    """Another citizen whose messages land on ``phone``'s shard (the shard key is the sender
    identity, ``adapters.redis_bus.shard_of``)."""
    want = shard_of(f"phone:{phone}", SHARDS)
    for n in range(100):
        other = f"+62857123456{n:02d}"
        if other != phone and shard_of(f"phone:{other}", SHARDS) == want:
            return other
    raise AssertionError("no phone on the same shard")


PHONE_B = same_shard_phone(PHONE_A)


class FailingStore:
    """The real store, except that writing the message with provider id ``sid`` raises
    ``error`` the first ``times`` times (None: every time), before reaching Redis. Records
    which messages were written, in order, and when ``sid`` failed."""

    def __init__(self, store: Any, sid: str, error: Exception, times: int | None) -> None:
        self.store = store
        self.sid = sid
        self.error = error
        self.left = times
        # "ok:<sid>" per message written; "fail<n>:<sid>" per failure of a call with n messages
        self.log: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def apply_messages(self, items: Sequence[tuple[str, Message, Any]], *a: Any) -> Any:
        if any(m.provider_id == self.sid for _, m, _ in items) and self.left != 0:
            if self.left is not None:
                self.left -= 1
            self.log.append(f"fail{len(items)}:{self.sid}")
            raise self.error
        got = await self.store.apply_messages(items, *a)
        self.log += [f"ok:{m.provider_id}" for _, m, _ in items]
        return got


class Recorded:
    """A shard's real group, recording the delivery count of every entry it hands out."""

    def __init__(self, group: Any, seen: dict[str, list[int]]) -> None:
        self.group = group
        self.seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self.group, name)

    def _note(self, entries: list[StreamEntry]) -> list[StreamEntry]:
        for e in entries:
            self.seen.setdefault(e.id, []).append(e.deliveries)
        return entries

    async def read_new(
        self, count: int, block_ms: int | None, ack: Sequence[str] = ()
    ) -> list[StreamEntry]:
        return self._note(await self.group.read_new(count, block_ms, ack))

    async def claim_idle(self, min_idle_ms: int, count: int) -> list[StreamEntry]:
        return self._note(await self.group.claim_idle(min_idle_ms, count))

    async def retake_pending(self, count: int) -> list[StreamEntry]:
        return self._note(await self.group.retake_pending(count))


async def _post(h: HubHarness, phone: str, text: str) -> str:
    sid = "SM" + hashlib.sha256(f"{phone} {text}".encode()).hexdigest()[:32]
    status, _ = await h.post_whatsapp(inbound_params(text, phone=phone, sid=sid))
    assert status == 200
    return sid


async def _post_interleaved(h: HubHarness) -> dict[str, str]:
    """Citizen A's A1..A4 with B's B1, B2 between them (one batch: A1 A2 B1 A3 A4 B2);
    text → MessageSid."""
    sids = {}
    for phone, text in [
        (PHONE_A, "A1"), (PHONE_A, "A2"), (PHONE_B, "B1"),
        (PHONE_A, "A3"), (PHONE_A, "A4"), (PHONE_B, "B2"),
    ]:  # fmt: skip
        sids[text] = await _post(h, phone, text)
    return sids


async def _texts(h: HubHarness, phone: str) -> list[str]:
    texts: list[str] = []
    for t in await h.tickets():
        if t["reply_to"].endswith(phone):
            full = await h.ticket(t["id"])
            texts += [m["text"] for m in full["messages"] if m["direction"] == "in"]
    return texts


async def _run_until(h: HubHarness, store: FailingStore, seen: dict[str, list[int]]) -> None:
    """Run a real dispatcher loop over the posted entries until none is pending."""
    d = h.dispatcher("order")
    d.store = store
    d.groups = [Recorded(g, seen) for g in d.groups]
    task = asyncio.create_task(d.run())
    redis = h.hub.redis
    try:

        async def settled() -> bool:
            if len(seen) < 6:  # not every entry handed out yet
                return False
            for s in h.hub.inbound_streams():
                if (await redis.xpending(s, keys.DISPATCH_GROUP))["pending"]:
                    return False
                lag = (await redis.xinfo_groups(s))[0].get("lag")
                if lag:
                    return False
            return True

        await eventually(settled, limit_s=20)
    finally:
        d.stop()
        await task


async def _dead(h: HubHarness) -> list[dict[str, str]]:
    return [d for s in h.hub.inbound_streams() for d in await h.hub.ops.dead_letters(s)]


async def _entry_ids(h: HubHarness) -> dict[str, str]:
    """provider message id (MessageSid) → inbound stream entry id."""
    out = {}
    for s in h.hub.inbound_streams():
        for eid, fields in await h.hub.redis.xrange(s):
            m = Message.from_json(fields[b"m"].decode())
            out[m.provider_id] = eid.decode()
    return out


async def test_a_failed_entry_is_not_overtaken_by_the_citizens_later_ones(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    """One batch: A1 A2 B1 A3 A4 B2. A2's write fails in the batch and again alone (a
    connection dropped twice), then works. The ticket has A1 A2 A3 A4, each once; B's
    messages were not held back; A2 was counted one failed delivery, A3 and A4 none."""
    h = await harness_factory()
    sids = await _post_interleaved(h)
    error = RedisConnectionError("Connection closed by server.")
    store = FailingStore(h.hub.store, sids["A2"], error, times=2)
    seen: dict[str, list[int]] = {}
    await _run_until(h, store, seen)

    assert store.left == 0  # both injected failures happened: batch, then one by one
    assert await _texts(h, PHONE_A) == ["A1", "A2", "A3", "A4"]
    assert await _texts(h, PHONE_B) == ["B1", "B2"]
    assert len(await h.tickets()) == 2
    assert await _dead(h) == []
    ids = await _entry_ids(h)
    # A2: read once (1), retaken after its one failed attempt (2); the retake added nothing
    assert seen[ids[sids["A2"]]] == [1, 2], seen
    # A3, A4: skipped, then retaken without a delivery being counted
    assert seen[ids[sids["A3"]]] == [1, 1], seen
    assert seen[ids[sids["A4"]]] == [1, 1], seen
    # B1, B2 were applied in the one-by-one pass, not held back with A's
    assert seen[ids[sids["B1"]]] == [1], seen
    assert seen[ids[sids["B2"]]] == [1], seen


async def test_a_poison_entry_is_dead_lettered_then_the_citizens_later_ones_follow(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    """A2 fails every time. After max_deliveries (3) attempts it is dead-lettered; A3 and A4
    are applied after that, in order; B's messages were never held back."""
    h = await harness_factory(dispatcher__max_deliveries=3)
    sids = await _post_interleaved(h)
    store = FailingStore(h.hub.store, sids["A2"], ValueError("poison"), times=None)
    seen: dict[str, list[int]] = {}
    await _run_until(h, store, seen)

    assert await _texts(h, PHONE_A) == ["A1", "A3", "A4"]
    assert await _texts(h, PHONE_B) == ["B1", "B2"]
    [dead] = await _dead(h)
    ids = await _entry_ids(h)
    assert dead["source_id"] == ids[sids["A2"]]
    assert dead["deliveries"] == "3"
    assert "poison" in dead["error"]
    # exactly max_deliveries attempts alone (each after a failed batch); A3 written only
    # after the last one
    fails = [i for i, x in enumerate(store.log) if x == f"fail1:{sids['A2']}"]
    assert len(fails) == 3, store.log
    assert store.log.index(f"ok:{sids['A3']}") > fails[-1], store.log
    assert store.log.index(f"ok:{sids['A4']}") > store.log.index(f"ok:{sids['A3']}")
    # B's were written in the first one-by-one pass, before A2's second failure
    assert store.log.index(f"ok:{sids['B2']}") < fails[1], store.log


async def test_retries_of_a_failed_entry_back_off_up_to_claim_idle(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    """1 s, then doubling, capped at ``claim_idle_ms``: five attempts span about 15 s, not 4
    (a failover's READONLY would otherwise dead-letter a healthy entry)."""
    h = await harness_factory(dispatcher__claim_idle_ms=30_000)
    d = h.dispatcher()
    assert [d._retry_pause(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert sum(d._retry_pause(n) for n in range(4)) == 15
    short = await harness_factory(dispatcher__claim_idle_ms=200)
    assert short.dispatcher()._retry_pause(5) == 1
