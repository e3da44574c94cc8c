"""The same hub code on a real 3-master Redis Cluster: hash tags keep every script on one slot.

One cluster per test module (and per xdist worker), on free loopback ports (``cluster_nodes``
in tests/conftest.py, started by tests/redis_cluster.py); every master is flushed, scripts
included, before each test, so each test also loads its scripts afresh. ``make test-cluster``
runs the whole end-to-end suite on such a cluster too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters import keys
from adapters.redis_bus import StreamGroup
from adapters.redis_cluster_client import ClusterClient, ClusterUnavailableError
from adapters.redis_rate_limit import RedisRateLimit
from adapters.redis_server import free_port
from adapters.redis_store import RedisStore
from adapters.redis_users import RedisUsers
from hub.demo.fake_twilio import FakeTwilio, Scripted
from hub.model import Message
from hub.settings import ConfigError, load_settings
from tests import redis_cluster
from tests.helpers import HubHarness, eventually, inbound_params, make_settings

PHONE_A = "+6281234567890"  # hub:id:{phone:+6281234567890} is slot 6722
PHONE_B = "+6285712345678"  # hub:id:{phone:+6285712345678} is slot 13108: another master


@pytest.fixture
async def harness_factory(
    cluster_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[HubHarness]]]:
    """Build hubs whose Redis client is a RedisCluster; stopped after the test."""
    made: list[HubHarness] = []

    async def make(workers: bool = False) -> HubHarness:
        s = make_settings(cluster_url, fake_twilio.base_url, tmp_path, redis__cluster=True)
        for acct in s.channels.whatsapp.accounts.values():
            fake_twilio.accounts[acct.account_sid] = acct.auth_token.get_secret_value()
        h = HubHarness(s, fake_twilio)
        made.append(h)
        await h.start(workers=workers)
        return h

    try:
        yield make
    finally:
        for h in made:
            await h.stop()


@pytest.fixture
async def harness(harness_factory: Callable[..., Awaitable[HubHarness]]) -> HubHarness:
    """A cluster hub with web only; dispatcher and sender are driven step by step."""
    return await harness_factory()


def _node_keys(ports: list[int]) -> dict[int, set[str]]:
    cluster = redis_cluster.cluster_of(f"redis://127.0.0.1:{ports[0]}/0")
    assert cluster is not None
    return cluster.keys_by_node()


def _reply(ticket: dict, reply_id: str) -> dict:
    [r] = [m for m in ticket["messages"] if m["id"] == reply_id]
    return r


async def _ticket_with_citizen(harness: HubHarness) -> dict:
    await harness.post_whatsapp(inbound_params("Gaji di bawah UMK"))
    await harness.drain_inbound()
    await harness.drain_outbox()  # the acknowledgement
    harness.fake.sent.clear()
    harness.fake.requests.clear()
    [t] = await harness.tickets()
    return t


def test_cluster_without_url_is_refused(tmp_path: Path) -> None:
    """redis.cluster = true with no url stops the hub with a message naming the key."""
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[hub]\npublic_url = "http://127.0.0.1:1"\n[redis]\ncluster = true\n')
    with pytest.raises(ConfigError, match=r"redis\.cluster = true needs redis\.url"):
        load_settings(cfg, environ={})


async def test_client_is_a_cluster_client(harness: HubHarness, cluster_nodes: list[int]) -> None:
    """With redis.cluster on, the hub talks to every master through a RedisCluster."""
    assert isinstance(harness.hub.redis, RedisCluster)
    assert await harness.hub.ops.ping()
    nodes = {n.port for n in harness.hub.redis.get_primaries()}
    assert nodes == set(cluster_nodes)


async def test_webhook_to_numbered_ticket_and_ack(
    harness: HubHarness, cluster_nodes: list[int]
) -> None:
    """A webhook becomes a numbered ticket and its acknowledgement is sent, across masters."""
    status, _ = await harness.post_whatsapp(inbound_params("THR saya belum dibayar"))
    assert status == 200
    assert await harness.drain_inbound() == 1
    [t] = await harness.tickets()
    assert t["number"].startswith("KMN-")
    assert t["number"].endswith("-000001")
    assert await harness.drain_outbox() == 1
    [sent] = harness.fake.sent
    assert t["number"] in sent.params["Body"]
    full = await harness.ticket(t["number"])
    [ack] = [m for m in full["messages"] if m["direction"] == "out"]
    assert (ack["state"], ack["kind"], ack["provider_id"]) == ("sent", "auto", sent.sid)
    # the shards, the outbox and the indexes live on different masters: a real cluster test
    assert sum(1 for ks in _node_keys(cluster_nodes).values() if ks) >= 2


async def test_same_webhook_twice_is_stored_once(harness: HubHarness) -> None:
    """A provider retry of the same MessageSid is stored once and acknowledged once."""
    params = inbound_params("Upah lembur tidak dibayar")
    assert (await harness.post_whatsapp(params))[0] == 200
    assert (await harness.post_whatsapp(params))[0] == 200
    assert await harness.drain_inbound() == 2
    [t] = await harness.tickets()
    full = await harness.ticket(t["id"])
    assert [m["text"] for m in full["messages"] if m["direction"] == "in"] == [
        "Upah lembur tidak dibayar"
    ]
    assert full["msg_count"] == "1"
    assert await harness.drain_outbox() == 1
    assert len(harness.fake.sent) == 1


async def test_two_citizens_on_different_masters(
    harness: HubHarness, cluster_nodes: list[int]
) -> None:
    """Two citizens whose identities hash to different masters get their own tickets."""
    await harness.post_whatsapp(inbound_params("A1", phone=PHONE_A))
    await harness.post_whatsapp(inbound_params("B1", phone=PHONE_B))
    await harness.post_whatsapp(inbound_params("A2", phone=PHONE_A))
    assert await harness.drain_inbound() == 3
    tickets = await harness.tickets()
    assert len({t["contact_id"] for t in tickets}) == 2
    assert sorted(t["number"][-6:] for t in tickets) == ["000001", "000002"]
    texts = {}
    for t in tickets:
        full = await harness.ticket(t["id"])
        texts[full["reply_to"]] = [m["text"] for m in full["messages"] if m["direction"] == "in"]
    assert texts == {PHONE_A: ["A1", "A2"], PHONE_B: ["B1"]}
    where = {
        ident: next(p for p, ks in _node_keys(cluster_nodes).items() if keys.identity(ident) in ks)
        for ident in (f"phone:{PHONE_A}", f"phone:{PHONE_B}")
    }
    assert len(set(where.values())) == 2
    assert await harness.drain_outbox() == 2


async def test_reply_500_then_201_is_delivered_once(harness: HubHarness) -> None:
    """A 500 is retried from the delayed set; the retry succeeds and the callback applies."""
    t = await _ticket_with_citizen(harness)
    harness.fake.script.append(Scripted(status=500))
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Sedang kami proses."}
    )
    assert status == 202, body
    await harness.drain_outbox()
    assert _reply(await harness.ticket(t["id"]), body["reply_id"])["state"] == "retrying"
    assert harness.fake.sent == []
    await harness.drain_outbox(include_delayed=True)
    [sent] = harness.fake.sent
    assert len(harness.fake.requests) == 2
    cb = await harness.fake.status_callback(
        sent.params["StatusCallback"], sent.account_sid, sent, "delivered"
    )
    assert cb == 204
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert (r["state"], r["attempts"]) == ("delivered", 2)


async def test_dead_letter_listing_and_replay(harness: HubHarness) -> None:
    """A reply out of attempts is dead-lettered, listed, replayed and then sent once."""
    t = await _ticket_with_citizen(harness)
    harness.fake.script.extend(Scripted(status=503) for _ in range(3))
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    for _ in range(3):
        await harness.drain_outbox(include_delayed=True)
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert (r["state"], r["attempts"]) == ("failed", 3)
    status, dead = await harness.api("GET", "/api/v1/dead-letters")
    assert status == 200
    [entry] = dead["items"]
    assert entry["stream"] == keys.outbox_stream("whatsapp")
    status, replayed = await harness.api(
        "POST", "/api/v1/dead-letters/replay", json={"stream": entry["stream"], "id": entry["id"]}
    )
    assert status == 200, replayed
    assert await harness.drain_outbox() == 1
    assert len(harness.fake.sent) == 1
    assert _reply(await harness.ticket(t["id"]), body["reply_id"])["state"] == "sent"
    _, dead = await harness.api("GET", "/api/v1/dead-letters")
    assert dead["items"] == []


async def test_list_tickets_with_two_filters(harness: HubHarness) -> None:
    """Two filters intersect the {tickets} indexes (ZINTER) on the cluster."""
    await harness.post_whatsapp(inbound_params("A", phone=PHONE_A))
    await harness.post_whatsapp(inbound_params("B", phone=PHONE_B))
    await harness.drain_inbound()
    a, b = sorted(await harness.tickets(), key=lambda t: t["reply_to"])
    status, _ = await harness.api(
        "POST", f"/api/v1/tickets/{b['id']}/status", json={"status": "resolved"}
    )
    assert status == 200
    open_general = await harness.tickets(status="open", unit="general")
    assert [t["id"] for t in open_general] == [a["id"]]
    resolved_wa = await harness.tickets(status="resolved", channel="whatsapp")
    assert [t["id"] for t in resolved_wa] == [b["id"]]
    assert await harness.tickets(status="closed", unit="general") == []


async def test_status_callbacks_applied_and_early_one_parked(harness: HubHarness) -> None:
    """Callbacks apply in rank order; one that beats the send answer is parked, then applied."""
    t = await _ticket_with_citizen(harness)
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    await harness.drain_outbox()
    [sent] = harness.fake.sent
    url = sent.params["StatusCallback"]
    for state in ("read", "delivered"):
        assert await harness.fake.status_callback(url, sent.account_sid, sent, state) == 204
    assert _reply(await harness.ticket(t["id"]), body["reply_id"])["state"] == "read"

    _, early = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Lagi"}
    )
    sid = "SM" + "f" * 32
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": sent.account_sid}
    status, _ = await harness.post_whatsapp(params, path="/webhooks/whatsapp/wa1/status")
    assert status == 204
    cid = t["contact_id"]
    await harness.hub.store.map_provider_id("whatsapp", sid, cid, early["reply_id"])
    await harness.sender()._apply_early("whatsapp", sid, cid, early["reply_id"])
    assert _reply(await harness.ticket(t["id"]), early["reply_id"])["state"] == "delivered"
    assert await harness.hub.store.take_early_statuses("whatsapp", sid) == []


async def test_crashed_consumer_entries_reclaimed_and_gauges(harness: HubHarness) -> None:
    """XAUTOCLAIM and XPENDING reclaim a dead consumer's entries; XINFO GROUPS feeds gauges."""
    for i in range(3):
        await harness.post_whatsapp(inbound_params(f"pesan {i}", phone=PHONE_A))
    await harness.post_whatsapp(inbound_params("lain", phone=PHONE_B))
    redis = harness.hub.redis
    ghost = harness.dispatcher("ghost")
    read_by_ghost = 0
    for s in harness.hub.inbound_streams():
        g = StreamGroup(redis, s, keys.DISPATCH_GROUP, "ghost")
        await g.ensure()
        entries = await g.read_new(100, None)
        read_by_ghost += len(entries)
        if entries:  # the ghost wrote the tickets before dying: the redo must not double them
            await ghost.apply([Message.from_json(e.fields["m"]) for e in entries])
    assert read_by_ghost == 4
    pending = 0
    for s in harness.hub.inbound_streams():
        pending += (await harness.hub.ops.stream_stats(s, keys.DISPATCH_GROUP))["pending"]
    assert pending == 4

    survivor = harness.dispatcher("survivor")
    task = asyncio.create_task(survivor.run())
    try:

        async def all_acked() -> bool:
            stats = [
                await harness.hub.ops.stream_stats(s, keys.DISPATCH_GROUP)
                for s in harness.hub.inbound_streams()
            ]
            return sum(st["pending"] + st["lag"] for st in stats) == 0

        await eventually(all_acked)
    finally:
        survivor.stop()
        await task
    tickets = await harness.tickets()
    assert sorted(int(t["msg_count"]) for t in tickets) == [1, 3]
    await harness.drain_outbox()
    assert len(harness.fake.sent) == 2


async def test_running_workers_answer_a_webhook(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    """With the dispatcher and sender loops running (blocking reads, leases), a webhook is acked."""
    harness = await harness_factory(workers=True)
    assert (await harness.post_whatsapp(inbound_params("Tolong bantu", phone=PHONE_B)))[0] == 200

    async def acked() -> bool:
        return len(harness.fake.sent) == 1

    await eventually(acked)
    [t] = await harness.tickets()
    assert t["number"] in harness.fake.sent[0].params["Body"]


# -- what differs on a cluster: MULTI/EXEC, and how "the store is away" is reported ----------


async def test_atomic_steps_on_a_fresh_client_leave_it_usable(cluster_url: str) -> None:
    """The rate limiter's and the lockout's INCR+EXPIRE are one script (Scripts.atomic), even
    as a fresh client's very first command: redis-py's cluster MULTI/EXEC ran each queued
    command in a thread with its own event loop, and a client that connected there was broken
    for the hub's loop (the web form answered 500). Transactions are refused outright now."""
    rc = ClusterClient.from_url(cluster_url)
    try:
        limit = RedisRateLimit(rc)
        assert [await limit.hit("ip:10.0.0.1", 2, 60, 1000.0) for _ in range(3)] == [0, 0, 21]
        assert 0 < await rc.ttl(limit._key("ip:10.0.0.1", 16)) <= 61
        users = RedisUsers(rc)
        assert [await users.record_failure("ani", 300) for _ in range(2)] == [1, 2]
        assert 0 < await rc.ttl("hub:{users}:fail:ani") <= 300
        assert await rc.ping()
        with pytest.raises(RedisClusterException, match=r"Scripts\.atomic"):
            rc.pipeline(transaction=True)
    finally:
        await rc.aclose()


async def test_contact_merge_and_unmerge_on_two_masters(cluster_url: str) -> None:
    """Each side of a merge is one atomic step on its own contact's hash tag."""
    rc = ClusterClient.from_url(cluster_url)
    try:
        store = RedisStore(rc)
        [a, b] = await store.resolve_contacts([f"phone:{PHONE_A}", f"phone:{PHONE_B}"])
        await rc.sadd(keys.contact_identities(b), f"phone:{PHONE_B}")
        assert await store.merge_contacts(a, b, "ani") == [f"phone:{PHONE_B}"]
        assert await store.find_contact(f"phone:{PHONE_B}") == a
        assert await rc.smembers(keys.contact_identities(a)) >= {f"phone:{PHONE_B}".encode()}
        assert (await rc.hget(keys.contact(b), "merged_into")) == a.encode()
        assert await store.unmerge_contacts(a, b, "ani") == [f"phone:{PHONE_B}"]
        assert await store.find_contact(f"phone:{PHONE_B}") == b
        assert await rc.hget(keys.contact(b), "merged_into") is None
        audit = [json.loads(x) for x in await rc.lrange(f"{keys.contact(a)}:audit", 0, -1)]
        assert [e["type"] for e in audit] == ["merged", "unmerged"]
    finally:
        await rc.aclose()


async def test_unreachable_cluster_answers_503_not_500(
    fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    """No node reachable: RedisCluster raises RedisClusterException, not a RedisError, so the
    hub answered 500; the hub's cluster client reports a ConnectionError, as a lone Redis
    does, and readiness and webhooks say 503 (retry)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    s = make_settings(dead, fake_twilio.base_url, tmp_path, redis__cluster=True)
    for acct in s.channels.whatsapp.accounts.values():
        fake_twilio.accounts[acct.account_sid] = acct.auth_token.get_secret_value()
    h = HubHarness(s, fake_twilio)
    await h.start()
    try:
        assert isinstance(h.hub.redis, ClusterClient)
        with pytest.raises(ClusterUnavailableError):
            await h.hub.redis.get("x")
        assert h.session is not None
        async with h.session.get(h.base + "/readyz") as r:
            assert r.status == 503
            assert (await r.json())["checks"]["redis"] is False
        status, body = await h.post_whatsapp(inbound_params("x"))
        assert (status, "retry" in body) == (503, True)
    finally:
        await h.stop()


async def test_a_frozen_master_fails_fast_and_once(cluster_url: str) -> None:
    """A master that stops answering: a command and a pipeline to it fail after one socket
    timeout, not after redis-py's default retries (26 s instead of 2 s for a pipeline, its
    client's every connection closed first), the command is not sent again, and the other
    masters keep answering."""
    cluster = redis_cluster.cluster_of(cluster_url)
    assert cluster is not None
    rc = ClusterClient.from_url(cluster_url, socket_timeout=1.0)
    try:
        key, other = keys.identity(f"phone:{PHONE_A}"), keys.identity(f"phone:{PHONE_B}")
        await rc.set(key, 0)
        await rc.set(other, "x")
        port = rc.get_node_from_key(key).port
        assert rc.get_node_from_key(other).port != port
        frozen = cluster.procs[cluster.ports.index(port)]
        frozen.send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                await rc.incr(key)
            pipe = rc.pipeline(transaction=False)
            pipe.get(key)
            pipe.get(other)
            with pytest.raises(RedisTimeoutError):
                await pipe.execute()
            assert time.monotonic() - start < 6  # two timeouts of 1 s, with room for a slow box
            assert await rc.get(other) == b"x"  # the other masters still answer
        finally:
            frozen.send_signal(signal.SIGCONT)

        async def counted() -> bytes | None:
            return await rc.get(key)

        assert await eventually(counted) == b"1"  # sent once, run once it woke up
    finally:
        await rc.aclose()
