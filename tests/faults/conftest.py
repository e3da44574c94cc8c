"""The fault tests' rig: a redis-server of the test's own (not the session's: the tests kill
it), the fake providers in the test process (they outlive any hub process and record every
send), a configuration file, and the hub's roles as subprocesses.

Quick variants run in the normal suite; ``-m chaos`` variants (larger loads, longer outages)
run only with ``HUB_CHAOS=1`` (``make chaos``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters import keys
from adapters.redis_server import free_port
from hub.demo.fake_graph import FakeGraph
from hub.demo.fake_telegram import FakeTelegram
from hub.demo.fake_twilio import FakeTwilio
from tests.email.conftest import dovecot, tls_files  # noqa: F401  (fault 5's fixtures)
from tests.faults.checker import Report, check, provider_sends, read_tickets
from tests.faults.loadgen import Accounts, LoadGen, Planned
from tests.faults.processes import ROOT, HubProc, RedisProc, stop_all, toml

TOKEN = "fault-api-token-0123456789abcdef"
CHAOS = os.environ.get("HUB_CHAOS") == "1"
FIGURES = ROOT / "var" / "faults"
SHARDS = 4


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: long fault-injection variants; run with HUB_CHAOS=1 (make chaos)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHAOS:
        return
    skip = pytest.mark.skip(reason="chaos variant: HUB_CHAOS=1 make chaos")
    for item in items:
        if "chaos" in item.keywords:
            item.add_marker(skip)


@dataclass
class Rig:
    tmp: Path
    redis: RedisProc
    twilio: FakeTwilio
    graph: FakeGraph
    telegram: FakeTelegram
    accounts: Accounts = field(default_factory=Accounts)
    web_port: int = field(default_factory=free_port)
    procs: list[HubProc] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    laps: dict[str, float] = field(default_factory=dict)  # seconds per phase of the test
    _lap_at: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._lap_at, 2)
        self._lap_at = now

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def config(self, **over: Any) -> Path:
        """Write the hub's configuration (``outbox__send_timeout_s=3`` style overrides)."""
        a = self.accounts
        tree: dict[str, Any] = {
            "hub": {
                "public_url": self.base, "listen_port": self.web_port,
                "data_dir": str(self.tmp / "data"), "log_format": "json", "log_level": "info",
                "reopen_window_hours": 72,
            },
            "redis": {"url": self.redis.url, "inbound_shards": SHARDS},
            "dispatcher": {
                "batch_size": 100, "block_ms": 50, "claim_idle_ms": 30_000, "lease_ms": 1000,
                "max_deliveries": 5,
            },
            "outbox": {
                "max_attempts": 6, "backoff_base_s": 0.1, "backoff_max_s": 1.0, "block_ms": 50,
                "claim_idle_ms": 500, "send_timeout_s": 1.5, "concurrency": 32,
            },
            "api": {"tokens": [{"name": "fault-checker", "token": TOKEN}]},
            "channels": {
                "whatsapp": {"accounts": {
                    a.twilio_account: {
                        "number": a.twilio_number, "account_sid": a.twilio_sid,
                        "auth_token": a.twilio_token, "api_base_url": self.twilio.base_url,
                    },
                    a.cloud_account: {
                        "provider": "cloud", "number": a.cloud_number,
                        "phone_number_id": a.cloud_phone_id, "access_token": a.cloud_token,
                        "app_secret": a.cloud_app_secret, "verify_token": "fault-verify",
                        "api_base_url": self.graph.base_url,
                    },
                }},
                "telegram": {"accounts": {
                    a.telegram_account: {
                        "bot_token": a.telegram_bot_token, "webhook_secret": a.telegram_secret,
                        "api_base_url": self.telegram.base_url,
                    },
                }},
            },
        }  # fmt: skip
        for dotted, value in {**self.overrides, **over}.items():
            node = tree
            *path, last = dotted.split("__")
            for p in path:
                node = node.setdefault(p, {})
            node[last] = value
        cfg = self.tmp / "hub.toml"
        cfg.write_text(toml(tree))
        return cfg

    def hub(self, name: str, *roles: str) -> HubProc:
        """A hub process with these roles (all of them if none); not started yet."""
        cfg = self.tmp / "hub.toml"
        if not cfg.exists():
            self.config()
        web = self.web_port if not roles or "web" in roles else None
        p = HubProc(name, cfg, roles, self.tmp, web_port=web)
        self.procs.append(p)
        return p

    async def start(self, *procs: HubProc) -> None:
        """Start several processes at once (their imports overlap)."""
        for p in procs:
            p.spawn()
        await asyncio.gather(*(p.ready() for p in procs))

    def loadgen(self, plan: list[Planned], **kw: Any) -> LoadGen:
        return LoadGen(self.base, plan, **kw)

    def redis_client(self) -> Redis:
        return Redis.from_url(self.redis.url, socket_timeout=5, socket_connect_timeout=2)

    async def backlog(self, outboxes: Iterable[str] = ("whatsapp", "telegram")) -> dict[str, int]:
        """Inbound and outbox entries not yet handled (never delivered, or delivered and not
        acked), and retries waiting: 0 everywhere once the hub is drained. ``outboxes``: the
        channels whose outbox to look at."""
        r = self.redis_client()
        out = {"inbound": 0, "outbox": 0, "delayed": 0}
        try:
            streams = [
                (keys.inbound_stream(i), keys.DISPATCH_GROUP, "inbound") for i in range(SHARDS)
            ]
            streams += [(keys.outbox_stream(ch), keys.SEND_GROUP, "outbox")
                        for ch in outboxes]  # fmt: skip
            for stream, group, kind in streams:
                if not await r.exists(stream):
                    continue
                for g in await r.xinfo_groups(stream):
                    name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
                    if name == group:
                        out[kind] += int(g.get("lag") or 0) + int(g.get("pending") or 0)
            for ch in outboxes:
                out["delayed"] += int(await r.zcard(keys.outbox_delayed(ch)))
        finally:
            await r.aclose()
        return out

    async def drained(
        self,
        limit_s: float = 60.0,
        only: str = "",
        outboxes: Iterable[str] = ("whatsapp", "telegram"),
    ) -> float:
        """Wait until nothing is left to dispatch or send (or only ``only``: "inbound");
        returns the seconds it took."""
        t0 = time.monotonic()
        outboxes = tuple(outboxes)
        async with asyncio.timeout(limit_s):
            while True:
                left = await self.backlog(outboxes)
                if not (left[only] if only else any(left.values())):
                    return time.monotonic() - t0
                await asyncio.sleep(0.1)

    async def report(self, gen: LoadGen, limit_s: float = 60.0) -> Report:
        """Drain, then check; re-checks (bounded) while replies are still on their way."""
        deadline = time.monotonic() + limit_s
        await self.drained(limit_s)
        while True:
            tickets = await read_tickets(self.base, TOKEN)
            sends = provider_sends(self.twilio, self.graph, self.telegram)
            rep = check(gen.plan, gen.outcomes, tickets, sends)
            complete = rep.found + rep.lost == rep.planned and rep.replies_not_final == 0
            if (complete and rep.lost == 0) or time.monotonic() > deadline:
                return rep
            await asyncio.sleep(0.25)

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def count(self, event: str, procs: Iterable[HubProc] | None = None) -> int:
        return sum(len(p.events(event)) for p in (procs or self.procs))


def record(name: str, figures: dict[str, Any], rig: Rig | None = None) -> None:
    """Keep a run's figures (var/faults/<name>.json) for docs/reliability.md."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    at = time.strftime("%Y-%m-%d %H:%M:%S")
    figures = {"test": name, "at": at, **figures}
    if rig is not None:
        figures["phases_s"] = rig.laps
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\nFIGURES {name}: {json.dumps(figures, default=str)}")


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    twilio = FakeTwilio({Accounts().twilio_sid: Accounts().twilio_token})
    graph = FakeGraph({Accounts().cloud_token})
    telegram = FakeTelegram({Accounts().telegram_bot_token})
    redis = RedisProc(tmp_path / "redis")
    r = Rig(tmp_path, redis, twilio, graph, telegram)
    await twilio.start()
    await graph.start()
    await telegram.start()
    await redis.start()
    try:
        yield r
    finally:
        stop_all([*r.procs, redis])
        logs = FIGURES / "logs" / request.node.name.replace("/", "_")
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True, exist_ok=True)
        for p in r.procs:  # kept for a look after the run (var/ is not versioned)
            if p.log_path.exists():
                shutil.copy(p.log_path, logs / p.log_path.name)
        await telegram.stop()
        await graph.stop()
        await twilio.stop()
