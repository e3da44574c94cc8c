"""A real Redis Cluster on loopback: three masters (redis-server processes), for tests and benches.

``start_cluster()`` starts the masters on free ports (client and cluster-bus ports), joins them
with ``redis-cli --cluster create`` and returns once every node reports ``cluster_state:ok``.
The URL it hands out names the first master; the hub (``[redis] cluster = true``) discovers the
others. Every cluster started here is remembered by URL, so test helpers can tell a cluster URL
from a single server's (``is_cluster_url``) and build the right client kind (``client``,
``sync_client``) or settings (``redis.cluster = true``).

``HUB_TEST_REDIS=cluster`` makes the session's ``redis_server`` fixture (tests/conftest.py) one
of these, so the whole end-to-end suite runs on a cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.cluster import RedisCluster as SyncRedisCluster

from adapters.redis_server import free_port

REDIS_BIN = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
CLUSTER_MODE = os.environ.get("HUB_TEST_REDIS", "").strip().lower() == "cluster"
"""The suite runs on a 3-master cluster instead of one redis-server (``make test-cluster``)."""

_STARTED: dict[str, LocalCluster] = {}


class ClusterStartError(RuntimeError):
    pass


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each, then wait (SIGKILL one that does not exit within 10 s)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@dataclass
class LocalCluster:
    """A running cluster: its masters' client ports and processes."""

    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    tmp: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def flush(self) -> None:
        """Empty every master: data and script cache (so each test loads its scripts afresh)."""
        for port in self.ports:
            with SyncRedis(port=port) as c:
                c.flushall()
                c.script_flush()

    def keys_by_node(self, pattern: str = "*") -> dict[int, set[str]]:
        out = {}
        for port in self.ports:
            with SyncRedis(port=port, decode_responses=True) as c:
                out[port] = set(c.keys(pattern))
        return out

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        _STARTED.pop(self.url, None)
        stop_processes(self.procs)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _spawn(port: int, bus: int, d: Path) -> subprocess.Popen[bytes]:
    assert REDIS_BIN is not None
    d.mkdir()
    return subprocess.Popen(
        [
            REDIS_BIN,
            "--port", str(port),
            "--cluster-port", str(bus),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000",
            "--dir", str(d),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the terminal reaches the runner, not the servers
    )  # fmt: skip


def _start_once(tmp: Path, masters: int) -> LocalCluster:
    assert REDIS_CLI is not None
    ports = free_ports(2 * masters)
    clients, buses = ports[:masters], ports[masters:]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port, bus in zip(clients, buses, strict=True):
            procs.append(_spawn(port, bus, tmp / str(port)))
        for port, proc in zip(clients, procs, strict=True):
            with SyncRedis(port=port, socket_connect_timeout=1) as c:
                for _ in range(800):
                    with contextlib.suppress(Exception):
                        if c.ping():
                            break
                    if proc.poll() is not None:
                        raise ClusterStartError(f"redis-server on port {port} exited at start")
                    time.sleep(0.025)  # process start-up: nothing to await
                else:
                    raise ClusterStartError(f"redis-server on port {port} never answered")
        subprocess.run(
            [
                REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in clients),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        for port in clients:
            with SyncRedis(port=port, decode_responses=True) as c:
                for _ in range(1200):
                    info = str(c.execute_command("CLUSTER", "INFO"))
                    if "cluster_state:ok" in info and f"cluster_known_nodes:{masters}" in info:
                        break
                    time.sleep(0.025)  # gossip converging: nothing to await
                else:
                    raise ClusterStartError(f"node {port} never reached cluster_state:ok")
    except BaseException:
        stop_processes(procs)
        raise
    return LocalCluster(clients, procs, tmp)


def start_cluster(masters: int = 3, attempts: int = 3) -> LocalCluster:
    """A new cluster of ``masters`` masters; stop it with ``.stop()`` (or use ``with``)."""
    if REDIS_BIN is None or REDIS_CLI is None:
        raise ClusterStartError(
            "redis-server and redis-cli are needed: run `make setup`, which installs them"
        )
    last: Exception | None = None
    for _ in range(attempts):  # a free port can be taken by someone else before it is bound
        tmp = Path(tempfile.mkdtemp(prefix="hub-cluster-"))
        try:
            cluster = _start_once(tmp, masters)
        except (ClusterStartError, subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            last = exc
            continue
        _STARTED[cluster.url] = cluster
        return cluster
    raise ClusterStartError(f"could not start a Redis Cluster: {last}")


def cluster_of(url: str) -> LocalCluster | None:
    """The cluster started here whose URL this is, if any."""
    return _STARTED.get(url)


def is_cluster_url(url: str) -> bool:
    return url in _STARTED


def client(url: str, **kw: Any) -> Redis | RedisCluster:
    """An asyncio client of the right kind for ``url``: a RedisCluster for a cluster."""
    if is_cluster_url(url):
        return RedisCluster.from_url(url, **kw)
    return Redis.from_url(url, **kw)


def sync_client(url: str, **kw: Any) -> SyncRedis | SyncRedisCluster:
    """A blocking client of the right kind for ``url``."""
    if is_cluster_url(url):
        return SyncRedisCluster.from_url(url, **kw)
    return SyncRedis.from_url(url, **kw)


def flush(url: str) -> None:
    """Empty the server or every master of the cluster at ``url``."""
    cluster = cluster_of(url)
    if cluster is not None:
        cluster.flush()
        return
    with SyncRedis.from_url(url) as c:
        c.flushall()
