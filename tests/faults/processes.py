"""The processes a fault test starts, kills and restarts: its own redis-server (AOF on, so a
restart finds the data again) and the hub's roles, each a ``python -m hub run`` subprocess.

Everything listens on 127.0.0.1; every wait is bounded; every process is stopped by the test
that started it (``stop_all``), by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from adapters.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class RedisProc:
    """A redis-server on a fixed port and data dir, so that a restart is the same server."""

    def __init__(self, data_dir: Path, appendfsync: str = "everysec") -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed: run `make test`"
        self.binary = binary
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--save", "", "--daemonize", "no",
            "--appendonly", "yes", "--appendfsync", self.appendfsync,
            "--appenddirname", "appendonly", "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip

    async def start(self, limit_s: float = 20.0) -> float:
        """Start (or restart on the same port and data) and wait until the AOF is loaded;
        returns the seconds it took."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.paused = False
        client = Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        try:
            async with asyncio.timeout(limit_s):
                while True:
                    assert self.proc.poll() is None, f"redis-server exited: {self.dir}/redis.log"
                    with contextlib.suppress(Exception):
                        if await client.ping():  # LOADING errors until the AOF is read
                            return time.monotonic() - t0
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF flush beyond what the fsync policy did."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class HubProc:
    """One ``python -m hub run --role ...`` process, logging JSON lines to a file."""

    def __init__(
        self,
        name: str,
        config: Path,
        roles: Iterable[str],
        log_dir: Path,
        web_port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.roles = tuple(roles)
        self.log_path = log_dir / f"{name}.log"
        self.web_port = web_port
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_from = 0

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "hub", "run", "--config", str(self.config)]
        for r in self.roles:
            argv += ["--role", r]
        return argv

    def spawn(self) -> None:
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self._argv(), cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1

    async def ready(self, limit_s: float = 30.0) -> float:
        """Wait for this start's ``hub.started`` (and, for web, a 200 from /healthz)."""
        t0 = time.monotonic()
        async with asyncio.timeout(limit_s):
            while "hub.started" not in self._log_since(self._log_from):
                assert self.proc is not None
                assert self.proc.poll() is None, self.tail()
                await asyncio.sleep(0.05)
            if self.web_port is not None:
                async with aiohttp.ClientSession() as s:
                    while True:
                        with contextlib.suppress(aiohttp.ClientError):
                            url = f"http://127.0.0.1:{self.web_port}/healthz"
                            async with s.get(url) as r:
                                if r.status == 200:
                                    break
                        await asyncio.sleep(0.02)
        return time.monotonic() - t0

    async def start(self, limit_s: float = 30.0) -> float:
        self.spawn()
        return await self.ready(limit_s)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP: frozen exactly where it is (to kill it there, mid-batch)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """kill -9: no handler runs, nothing is flushed or acked."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def terminate(self, limit_s: float = 40.0) -> tuple[int, float]:
        """SIGTERM and wait for the exit: (exit code, seconds it took)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(limit_s):
            while (code := self.proc.poll()) is None:
                await asyncio.sleep(0.02)
        return code, time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # in case a test left it frozen
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def _log_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def tail(self, n: int = 3000) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n" + self._log_since(0)[-n:]

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every JSON log line whose event is ``name``, over all starts."""
        out = []
        for line in self._log_since(0).splitlines():
            if f'"{name}"' not in line:
                continue
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec.get("event") == name:
                    out.append(rec)
        return out


def stop_all(procs: Iterable[HubProc | RedisProc]) -> None:
    """At the end of a test: kill -9 whatever still runs (graceful stops are tested on
    purpose, where they matter), and reap it."""
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(10)


def toml(tree: Mapping[str, Any]) -> str:
    """Just enough TOML for a hub configuration: nested tables of strings, numbers, booleans
    and lists of those or of inline tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"no TOML for {v!r}")

    lines: list[str] = []

    def table(path: list[str], node: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, Mapping)}
        if path and (scalars or not node):
            lines.append(f"[{'.'.join(path)}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, Mapping):
                table([*path, k], v)

    table([], tree)
    return "\n".join(lines) + "\n"
