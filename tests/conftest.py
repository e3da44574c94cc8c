"""Shared fixtures: a real redis-server per test worker, a fake Twilio, and hubs built on them.

Redis is a real server on a free port (never a mock), flushed before each test. Hubs are
started without their background workers unless a test asks for them, so most tests drive the
dispatcher and sender step by step (``drain_inbound``, ``drain_outbox``) instead of sleeping.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis

from adapters.redis_server import free_port
from hub.demo.fake_twilio import FakeTwilio
from hub.settings import Settings, TwilioWhatsAppAccount
from tests import redis_cluster
from tests.helpers import HubHarness, make_settings
from tests.redis_cluster import CLUSTER_MODE, ClusterStartError, start_cluster

REDIS_BIN = shutil.which("redis-server")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """One real redis-server for this test worker, on a free loopback port; with
    ``HUB_TEST_REDIS=cluster``, a real 3-master Redis Cluster instead (its first master's URL;
    settings built for it say ``redis.cluster = true``)."""
    if CLUSTER_MODE:
        try:
            cluster = start_cluster()
        except ClusterStartError as exc:
            pytest.fail(str(exc))
        with cluster:
            yield cluster.url
        return
    if REDIS_BIN is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it")
    tmp = Path(tempfile.mkdtemp(prefix="hub-redis-"))
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS_BIN,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp),
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
    client = SyncRedis(port=port)
    try:
        for _ in range(400):
            with contextlib.suppress(Exception):
                if client.ping():
                    break
            if proc.poll() is not None:
                pytest.fail("redis-server exited at start")
            time.sleep(0.025)  # session setup, outside any event loop
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The worker's Redis (every master of the cluster), emptied before the test."""
    redis_cluster.flush(redis_server)
    return redis_server


@pytest.fixture(scope="module")
def cluster_nodes() -> Iterator[list[int]]:
    """A real 3-master Redis Cluster for this module on this worker (whatever
    ``HUB_TEST_REDIS`` says); its masters' ports."""
    try:
        cluster = start_cluster()
    except ClusterStartError as exc:
        pytest.fail(str(exc))
    with cluster:
        yield cluster.ports


@pytest.fixture
def cluster_url(cluster_nodes: list[int]) -> str:
    """That cluster, every master emptied (data and script cache) before the test."""
    url = f"redis://127.0.0.1:{cluster_nodes[0]}/0"
    redis_cluster.flush(url)
    return url


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio({})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def settings_for(
    redis_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        s = make_settings(redis_url, fake_twilio.base_url, tmp_path, **overrides)
        for acct in s.channels.whatsapp.accounts.values():
            if isinstance(acct, TwilioWhatsAppAccount):
                fake_twilio.accounts[acct.account_sid] = acct.auth_token.get_secret_value()
        return s

    return build


@pytest.fixture
async def harness_factory(
    settings_for: Callable[..., Settings], fake_twilio: FakeTwilio
) -> AsyncIterator[Callable[..., Awaitable[HubHarness]]]:
    """Build hubs with settings overrides (``outbox__max_attempts=2``); stopped after the test."""
    made: list[HubHarness] = []

    async def make(workers: bool = False, **overrides: Any) -> HubHarness:
        h = HubHarness(settings_for(**overrides), fake_twilio)
        await h.start(workers=workers)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.stop()


@pytest.fixture
async def harness(harness_factory: Callable[..., Awaitable[HubHarness]]) -> HubHarness:
    """A hub with web only; dispatcher and sender are driven step by step by the test."""
    return await harness_factory()
