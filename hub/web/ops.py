"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from hub.supervisor_metrics import export
from hub.web.common import HUB

if TYPE_CHECKING:
    from hub.runtime import Hub


async def healthz(request: web.Request) -> web.Response:
    """The process answers; nothing more (a load balancer's liveness probe)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis answers and this process's role loops are alive (the dispatcher's and sender's
    consumers beating, the observer's loop running, whether it holds the lease or stands by):
    safe to send traffic here."""
    hub = request.app[HUB]
    checks: dict[str, bool] = {}
    try:
        checks["redis"] = await hub.ops.ping()
    except (RedisError, OSError):
        checks["redis"] = False
    stall = max(hub.settings.dispatcher.lease_ms, hub.settings.outbox.block_ms) / 1000 + 10
    checks.update(hub.workers_alive(stall))
    ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    m = hub.metrics
    groups = [(s, "dispatch") for s in hub.inbound_streams()]
    groups += [(s, "send") for s in hub.outbox_streams().values()]
    try:
        for stream, group in groups:
            st = await hub.ops.stream_stats(stream, group)
            m.stream_length.labels(stream).set(st["length"])
            m.stream_lag.labels(stream).set(st["lag"])
            m.stream_pending.labels(stream).set(st["pending"])
            m.dead_letters.labels(stream).set(st["dead"])
        export(m, await hub.dashboard.snapshot(), await hub.alert_board.active(),
               await hub.health.all())  # fmt: skip
    except (RedisError, OSError):
        pass  # the counters still tell; the gauges keep their last value
    body = generate_latest(m.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def ops_app(hub: Hub) -> web.Application:
    """The probes and metrics alone, for a process without the web role (``hub.ops_port``):
    no webhooks, no console, no API; nothing here needs a sign-in."""
    app = web.Application()
    app[HUB] = hub
    setup(app)
    return app


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
