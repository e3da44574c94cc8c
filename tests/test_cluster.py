"""The same hub code on a real 3-master Redis Cluster: hash tags keep every script on one slot.

One cluster per test module (and per xdist worker), on free loopback ports; every master is
flushed, scripts included, before each test, so each test also loads its scripts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio.cluster import RedisCluster

from adapters import keys
from adapters.redis_bus import StreamGroup
from adapters.redis_server import free_port
from hub.demo.fake_twilio import FakeTwilio, Scripted
from hub.model import Message
from hub.settings import ConfigError, load_settings
from tests.helpers import HubHarness, eventually, inbound_params, make_settings

REDIS_BIN = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
PHONE_A = "+6281234567890"  # hub:id:{phone:+6281234567890} is slot 6722
PHONE_B = "+6285712345678"  # hub:id:{phone:+6285712345678} is slot 13108: another master


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def _start_cluster(tmp: Path) -> tuple[list[int], list[subprocess.Popen[bytes]]]:
    """Three masters (client port and cluster-bus port both picked free), joined into one
    cluster; returns once every node reports cluster_state:ok."""
    assert REDIS_BIN is not None
    assert REDIS_CLI is not None
    ports = _free_ports(6)
    masters, buses = ports[:3], ports[3:]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port, bus in zip(masters, buses, strict=True):
            d = tmp / str(port)
            d.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        REDIS_BIN,
                        "--port",
                        str(port),
                        "--cluster-port",
                        str(bus),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--dir",
                        str(d),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port, proc in zip(masters, procs, strict=True):
            with SyncRedis(port=port) as c:
                for _ in range(400):
                    with contextlib.suppress(Exception):
                        if c.ping():
                            break
                    if proc.poll() is not None:
                        raise RuntimeError(f"redis-server on port {port} exited at start")
                    time.sleep(0.025)  # module setup, outside any event loop
                else:
                    raise RuntimeError(f"redis-server on port {port} never answered")
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in masters),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in masters:
            for _ in range(400):
                info = subprocess.run(
                    [REDIS_CLI, "-p", str(port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                if "cluster_state:ok" in info:
                    break
                time.sleep(0.025)
            else:
                raise RuntimeError(f"node {port} never reached cluster_state:ok")
    except BaseException:
        _stop(procs)
        raise
    return masters, procs


@pytest.fixture(scope="module")
def cluster_nodes() -> Iterator[list[int]]:
    """A real 3-master Redis Cluster for this module on this worker; its masters' ports."""
    if REDIS_BIN is None or REDIS_CLI is None:
        pytest.fail("redis-server and redis-cli are needed: run `make test`, which installs them")
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken by someone else before the server binds it
        tmp = Path(tempfile.mkdtemp(prefix="hub-cluster-"))
        try:
            masters, procs = _start_cluster(tmp)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            last = exc
            continue
        try:
            yield masters
        finally:
            _stop(procs)
            shutil.rmtree(tmp, ignore_errors=True)
        return
    pytest.fail(f"could not start a Redis Cluster: {last}")


@pytest.fixture
def cluster_url(cluster_nodes: list[int]) -> str:
    """The cluster, every master emptied (data and script cache) before the test."""
    for port in cluster_nodes:
        with SyncRedis(port=port) as c:
            c.flushall()
            c.script_flush()
    return f"redis://127.0.0.1:{cluster_nodes[0]}/0"


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
    out = {}
    for port in ports:
        with SyncRedis(port=port, decode_responses=True) as c:
            out[port] = set(c.keys("*"))
    return out


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
