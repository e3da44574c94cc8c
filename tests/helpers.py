"""Test helpers: settings for tests, signed Twilio webhooks, and a hub harness."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from twilio.request_validator import RequestValidator

from adapters import keys
from adapters.redis_bus import StreamGroup
from adapters.redis_server import free_port
from hub.clock import ManualClock
from hub.demo.fake_twilio import FakeTwilio
from hub.dispatcher import Dispatcher, DispatchOptions
from hub.observer import Notifier, Observer
from hub.runtime import ROLES, Hub
from hub.sender import Sender, SenderOptions
from hub.settings import Settings
from hub.web.app import build_app
from tests import redis_cluster

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SID1 = "AC" + "1" * 32
SID2 = "AC" + "2" * 32


def make_settings(redis_url: str, twilio_url: str, data_dir: Path, **over: Any) -> Settings:
    """Test settings on ``redis_url``; ``redis.cluster = true`` when it names a cluster
    started by tests/redis_cluster.py (``HUB_TEST_REDIS=cluster``)."""
    port = over.pop("port", None) or free_port()
    tree: dict[str, Any] = {
        "hub": {
            "public_url": f"http://127.0.0.1:{port}",
            "listen_port": port,
            "data_dir": str(data_dir),
            "log_format": "console",
            "log_level": "warning",
            "reopen_window_hours": 72,
        },
        "redis": {
            "url": redis_url,
            "inbound_shards": 2,
            **({"cluster": True} if redis_cluster.is_cluster_url(redis_url) else {}),
        },
        "dispatcher": {"block_ms": 20, "claim_idle_ms": 200, "lease_ms": 300, "max_deliveries": 3},
        "outbox": {
            "max_attempts": 3,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "block_ms": 20,
            "claim_idle_ms": 200,
            "send_timeout_s": 2,
        },
        "api": {"tokens": [{"name": "agent-ani", "token": TOKEN}]},
        "channels": {
            "whatsapp": {
                "accounts": {
                    "wa1": {
                        "number": "+628119521150",
                        "account_sid": SID1,
                        "auth_token": "wa1-auth-token-secret",
                        "api_base_url": twilio_url,
                        "templates": {
                            "follow_up": {
                                "content_sid": "HX" + "a" * 32,
                                "variables": ["ticket_number"],
                            }
                        },
                    },
                    "wa2": {
                        "number": "+628119521151",
                        "account_sid": SID2,
                        "auth_token": "wa2-auth-token-secret",
                        "api_base_url": twilio_url,
                    },
                }
            }
        },
    }
    for dotted, value in over.items():
        node = tree
        parts = dotted.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return Settings.model_validate(tree)


def redis_client(url: str, **kw: Any) -> Redis | RedisCluster:
    """A client for a test's own reads and writes: a RedisCluster when ``url`` is a cluster's
    (``HUB_TEST_REDIS=cluster``), else a plain Redis. Close it with ``aclose()``."""
    return redis_cluster.client(url, **kw)


def inbound_params(
    body: str = "THR saya belum dibayar",
    phone: str = "+6281234567890",
    account_sid: str = SID1,
    to: str = "+628119521150",
    sid: str | None = None,
    **extra: str,
) -> dict[str, str]:
    sid = sid or "SM" + secrets.token_hex(16)
    p = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Siti Rahayu",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": phone.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": f"whatsapp:{to}",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": f"whatsapp:{phone}",
        "ApiVersion": "2010-04-01",
    }
    p.update(extra)
    return p


class HubHarness:
    """A hub on a real Redis with its web app on a real port; workers driven by hand."""

    def __init__(self, settings: Settings, fake: FakeTwilio) -> None:
        self.settings = settings
        self.fake = fake
        self.clock = ManualClock()
        self.hub = Hub(settings, frozenset({"web"}), clock=self.clock)
        self.session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.base = f"http://127.0.0.1:{settings.hub.listen_port}"

    async def start(self, workers: bool = False) -> None:
        if workers:
            self.hub.roles = ROLES
        await self.hub.start()
        self._runner = web.AppRunner(build_app(self.hub), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.settings.hub.listen_port).start()
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.hub.stop()

    def sign(self, path: str, params: dict[str, str], account: str = "wa1") -> str:
        token = self.settings.channels.whatsapp.accounts[account].auth_token.get_secret_value()
        return str(RequestValidator(token).compute_signature(self.base + path, params))

    async def post_whatsapp(
        self,
        params: dict[str, str],
        account: str = "wa1",
        signature: str | None = None,
        path: str | None = None,
    ) -> tuple[int, str]:
        path = path or f"/webhooks/whatsapp/{account}"
        sig = self.sign(path, params, account) if signature is None else signature
        headers = {"X-Twilio-Signature": sig} if sig else {}
        assert self.session is not None
        async with self.session.post(self.base + path, data=params, headers=headers) as r:
            return r.status, await r.text()

    async def api(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        assert self.session is not None
        headers = {**AUTH, **kw.pop("headers", {})}
        async with self.session.request(method, self.base + path, headers=headers, **kw) as r:
            ctype = r.headers.get("Content-Type", "")
            return r.status, (await r.json() if "json" in ctype else await r.text())

    async def api_ok(self, method: str, path: str, **kw: Any) -> Any:
        """``api`` that must succeed (a 2xx): its body."""
        status, body = await self.api(method, path, **kw)
        assert 200 <= status < 300, (method, path, status, body)
        return body

    # -- workers, step by step --------------------------------------------------------

    def dispatcher(self, owner: str = "test-dispatcher") -> Dispatcher:
        h = self.hub
        groups = [StreamGroup(h.redis, s, keys.DISPATCH_GROUP, owner) for s in h.inbound_streams()]
        opts = DispatchOptions.from_settings(
            self.settings.dispatcher, self.settings.hub.reopen_window_hours
        )
        return Dispatcher(
            h.store,
            groups,
            h.acknowledger,
            h.channels,
            opts,
            owner,
            h.metrics,
            h.router,
            h.events,
            h.queue,
            h.search,
            h.load,
        )

    async def drain_inbound(self, owner: str = "test-dispatcher") -> int:
        """Read and apply every new inbound entry now; returns how many."""
        d = self.dispatcher(owner)
        n = 0
        for g in d.groups:
            await g.ensure()
            while entries := await g.read_new(100, None):
                await d.process(g, entries)
                n += len(entries)
        return n

    def sender(self, owner: str = "test-sender") -> Sender:
        h = self.hub
        groups = {
            ch: StreamGroup(h.redis, s, keys.SEND_GROUP, owner)
            for ch, s in h.outbox_streams().items()
        }
        return Sender(
            h.store,
            h.outbox,
            groups,
            h.channels,
            SenderOptions.from_settings(self.settings.outbox),
            self.settings.hub.public_url,
            h.metrics,
            h.events,
            health=h.health,
        )

    def observer(self, notifier: Notifier | None = None) -> Observer:
        """The supervisors' observer on this hub's parts; the test calls ``tick()``."""
        h = self.hub
        return Observer(
            h.alert_board.engine, h.alert_board, h.dashboard, h.load, h.health, h.store,
            h.sla, h.events, self.clock, notifier, escalate=self.settings.sla.enabled,
        )  # fmt: skip

    async def drain_outbox(self, include_delayed: bool = False) -> int:
        """Send every reply waiting in the outbox now (and due retries, if asked)."""
        s = self.sender()
        n = 0
        for ch, g in s.groups.items():
            await g.ensure()
            if include_delayed:
                await self.hub.outbox.move_due(ch, int((time.time() + 3600) * 1000))
            while entries := await g.read_new(100, None):
                await asyncio.gather(*(s.handle(ch, g, e) for e in entries))
                n += len(entries)
        return n

    async def tickets(self, **filters: str) -> list[dict[str, Any]]:
        status, body = await self.api("GET", "/api/v1/tickets", params=filters)
        assert status == 200, body
        return list(body["items"])

    async def ticket(self, ref: str) -> dict[str, Any]:
        status, body = await self.api("GET", f"/api/v1/tickets/{ref}")
        assert status == 200, body
        return dict(body)


async def eventually(check: Any, limit_s: float = 10.0, every_s: float = 0.02) -> Any:
    """Await ``check()`` until it returns something truthy; for state with no event to await
    (another process's writes). Bounded, and fails with the last value seen."""
    deadline = time.monotonic() + limit_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"condition not reached in {limit_s}s; last value: {last!r}")
