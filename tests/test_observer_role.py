"""The observer is a role of its own (``--role observer``), so that its pass over the open
tickets need not run on a busy dispatcher's loop: a process with the dispatcher role alone runs
no observer (no lease taken, nothing evaluated); one with the observer role alone evaluates
the alerts and samples the backlog on the real Redis; of several observer processes exactly
one evaluates (the ``observer`` lease) and another takes over when it stops; and an
observer-only process answers its probes and metrics on ``hub.ops_port``.

Runs on the worker's Redis, a cluster with ``HUB_TEST_REDIS=cluster``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import tomli_w

from adapters.redis_server import free_port
from adapters.scripts import AnyRedis, as_text
from hub.clock import Clock
from hub.load_stats import BACKLOG
from hub.runtime import ROLES, Hub
from hub.settings import Settings
from tests import redis_cluster
from tests.helpers import HubHarness, eventually, inbound_params, redis_client

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent
LEASE = "hub:lease:{observer}"
MON_0900 = 1_789_956_000.0  # Monday 21 September 2026, 09:00 WIB
BACKLOG_RULE = {"name": "backlog", "kind": "backlog_above", "threshold": 1}
Factory = Callable[..., Awaitable[HubHarness]]


class Hubs:
    """Hubs started with some roles on a test's settings; stopped after the test."""

    def __init__(self) -> None:
        self.running: list[Hub] = []

    async def start(self, settings: Settings, roles: Iterable[str], clock: Clock) -> Hub:
        hub = Hub(settings, frozenset(roles), clock=clock)
        await hub.start()
        self.running.append(hub)
        return hub

    async def stop(self, hub: Hub) -> None:
        self.running.remove(hub)
        await hub.stop()


@pytest.fixture
async def hubs() -> AsyncIterator[Hubs]:
    h = Hubs()
    yield h
    for hub in list(h.running):
        await h.stop(hub)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AnyRedis]:
    r = redis_client(redis_url)
    yield r
    await r.aclose()


async def _waiting_tickets(h: HubHarness, n: int, first: int = 0) -> None:
    """``n`` citizens write in; their tickets wait in the general queue."""
    for i in range(first, first + n):
        status, _ = await h.post_whatsapp(
            inbound_params("THR belum dibayar", phone=f"+62812345678{i:02}")
        )
        assert status == 200
    assert await h.drain_inbound() == n


async def _lease_holder(redis: AnyRedis) -> str | None:
    raw = await redis.get(LEASE)
    return None if raw is None else as_text(raw)


def test_observer_is_a_role_and_the_default_runs_it() -> None:
    """A process started without ``--role`` (``make run``, ``python -m hub run``) has every
    role, the observer included."""
    from hub.cli import _parser

    assert "observer" in ROLES
    assert Hub.__dataclass_fields__["roles"].default == ROLES
    assert _parser().parse_args(["run"]).role is None  # → ROLES in hub.cli.main


async def test_a_dispatcher_alone_runs_no_observer(
    harness_factory: Factory, hubs: Hubs, redis: AnyRedis
) -> None:
    """The dispatcher makes tickets that a backlog rule would alert on, yet nothing is
    evaluated: no observer, no ``observer`` lease, no alert, no backlog sample."""
    h = await harness_factory(alerts__rules=[BACKLOG_RULE])
    h.clock.t = MON_0900
    d = await hubs.start(h.settings, {"dispatcher"}, h.clock)
    assert d.dispatcher is not None
    assert d.observer is None
    assert {t.get_name() for t in d._tasks} == {"dispatcher", "queue-keeper"}
    for i in range(2):
        status, _ = await h.post_whatsapp(
            inbound_params("Gaji belum dibayar", phone=f"+6281300000{i:02}")
        )
        assert status == 200

    async def ticketed() -> bool:
        return len(await h.tickets()) == 2

    await eventually(ticketed, limit_s=20)
    assert await _lease_holder(redis) is None
    assert await d.alert_board.active() == []
    series = await d.load.series(BACKLOG, "hour", h.clock.now(), peak=True)
    assert sum(sum(v) for v in series.values.values()) == 0
    assert set(d.workers_alive(60)) == {"dispatcher"}


async def test_an_observer_alone_evaluates_and_samples(
    harness_factory: Factory, hubs: Hubs, redis: AnyRedis
) -> None:
    """With only the observer role: no dispatcher, sender, pollers or queue keeper; its
    first round (at start) takes the lease, fires the backlog alert and samples the backlog."""
    h = await harness_factory(alerts__rules=[BACKLOG_RULE])
    h.clock.t = MON_0900
    await _waiting_tickets(h, 2)
    obs = await hubs.start(h.settings, {"observer"}, h.clock)
    assert (obs.dispatcher, obs.sender, obs.intake) == (None, None, None)
    assert {t.get_name() for t in obs._tasks} == {"observer"}

    [active] = await eventually(obs.alert_board.active)
    assert (active.rule, active.subject) == ("backlog", "unit general")
    observer = obs.observer
    assert observer is not None

    async def ticked() -> bool:  # the alert is saved within the round, counted at its end
        return observer.ticks >= 1

    await eventually(ticked)
    assert await _lease_holder(redis) == obs.owner
    series = await obs.load.series(BACKLOG, "hour", h.clock.now(), peak=True)
    assert series.values["general"][-1] == 2
    fired = [ev for _, ev in await obs.events.since("0") if ev["type"] == "alert.fired"]
    assert [ev["key"] for ev in fired] == ["backlog:unit general"]  # once, by one observer
    assert obs.workers_alive(1) == {"observer": True}

    await hubs.stop(obs)
    assert await _lease_holder(redis) is None  # released on a clean stop: no wait for a successor


async def test_two_observers_one_evaluates_the_other_takes_over(
    harness_factory: Factory, hubs: Hubs, redis: AnyRedis
) -> None:
    """Two processes with the observer role, evaluating every 50 ms: while both run, the lease
    holder does every round and the other none; once the holder stops, the other takes the
    lease and evaluates."""
    h = await harness_factory(alerts__rules=[BACKLOG_RULE], alerts__evaluate_every_s=0.05)
    a = await hubs.start(h.settings, {"observer"}, h.clock)
    b = await hubs.start(h.settings, {"observer"}, h.clock)
    observers = {a.owner: a.observer, b.owner: b.observer}
    assert None not in observers.values()

    async def rounds() -> bool:
        return max(o.ticks for o in observers.values() if o is not None) >= 5

    await eventually(rounds)
    holder, standby = (a, b) if a.observer is not None and a.observer.ticks >= 5 else (b, a)
    assert standby.observer is not None
    assert standby.observer.ticks == 0
    assert await _lease_holder(redis) == holder.owner
    assert standby.workers_alive(1) == {"observer": True}  # standing by is being ready

    await hubs.stop(holder)

    async def taken_over() -> bool:
        assert standby.observer is not None
        return standby.observer.ticks >= 1 and await _lease_holder(redis) == standby.owner

    await eventually(taken_over)


def _observer_config(redis_url: str, data_dir: Path, ops_port: int) -> dict[str, Any]:
    return {
        "hub": {
            "public_url": f"http://127.0.0.1:{free_port()}",
            "listen_host": "127.0.0.1",
            "ops_port": ops_port,
            "data_dir": str(data_dir),
            "log_level": "warning",
        },
        "redis": {
            "url": redis_url,
            "inbound_shards": 2,
            "cluster": redis_cluster.is_cluster_url(redis_url),
        },
        "alerts": {"evaluate_every_s": 0.1, "rules": [BACKLOG_RULE]},
    }


async def test_observer_processes_serve_probes_and_share_the_lease(
    harness_factory: Factory, redis: AnyRedis, redis_url: str, tmp_path: Path
) -> None:
    """Two ``python -m hub serve --role observer`` processes: each answers /readyz (Redis and
    its observer loop) and /metrics on its ops port and nothing else; one holds the lease and
    fires the backlog alert once; SIGTERM to it hands the lease to the other."""
    h = await harness_factory(alerts__rules=[BACKLOG_RULE])
    await _waiting_tickets(h, 2)
    procs: dict[int, tuple[asyncio.subprocess.Process, int]] = {}
    try:
        for name in ("a", "b"):
            port = free_port()
            config = tmp_path / f"{name}.toml"
            config.write_text(tomli_w.dumps(_observer_config(redis_url, tmp_path / name, port)))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", "serve", "--config", str(config),
                "--role", "observer",
                cwd=ROOT, env=dict(os.environ), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs[proc.pid] = (proc, port)
        async with aiohttp.ClientSession() as s:

            async def ready(port: int) -> Any:
                assert all(p.returncode is None for p, _ in procs.values()), "an observer exited"
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200 and (await r.json())["checks"]
                return False

            for _, port in procs.values():
                checks = await eventually(lambda port=port: ready(port), limit_s=30, every_s=0.1)
                assert checks == {"redis": True, "observer": True}
                async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert r.status == 200
                    assert "hub_dispatched_messages_total" in await r.text()
                for path in ("/api/v1/tickets", "/console", "/webhooks/whatsapp/wa1"):
                    async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                        assert r.status == 404, path

            async def holder_pid() -> int | None:
                owner = await _lease_holder(redis)
                return None if owner is None else int(owner.split(":")[1])

            first = await eventually(holder_pid)
            assert first in procs
            [active] = await eventually(h.hub.alert_board.active)
            assert active.rule == "backlog"
            fired = [ev for _, ev in await h.hub.events.since("0") if ev["type"] == "alert.fired"]
            assert len(fired) == 1

            holder = procs[first][0]
            holder.terminate()
            _, err = await holder.communicate()
            assert holder.returncode == 0, err.decode()[-2000:]
            [other] = [pid for pid in procs if pid != first]

            async def taken_over() -> bool:
                return await holder_pid() == other

            await eventually(taken_over, limit_s=20)
            await _waiting_tickets(h, 1, first=2)  # a third: only the successor can see it

            async def evaluated_by_the_successor() -> bool:
                return [a.value for a in await h.hub.alert_board.active()] == [3]

            await eventually(evaluated_by_the_successor)
            fired = [ev for _, ev in await h.hub.events.since("0") if ev["type"] == "alert.fired"]
            assert len(fired) == 1  # the successor starts from the saved state: no second FIRING
    finally:
        for proc, _ in procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                _, err = await proc.communicate()
                assert proc.returncode == 0, err.decode()[-2000:]
