"""Shared pieces of the web layer: the app key for the hub, JSON errors, request context."""

from __future__ import annotations

import ipaddress
import random
import time
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from hub.runtime import Hub

HUB: web.AppKey[Hub] = web.AppKey("hub")
# Set by a handler that logged at info what the request did: the summary line is then debug.
SUMMARIZED: web.RequestKey[bool] = web.RequestKey("summarized", bool)
log = structlog.get_logger("hub.http")

# The store is down or frozen (Redis restarting, failing over, a network cut): a request met
# one of these is worth retrying, so it gets 503 + Retry-After, not a 500 that reads as a bug.
STORE_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
STORE_DOWN_RETRY_S = 5
_STORE_DOWN_PAGE = """<!doctype html><html lang="id"><head><meta charset="utf-8">
<title>503 — sementara tidak tersedia</title></head><body>
<h1>Sementara tidak tersedia</h1>
<p>Hub tidak dapat menjangkau penyimpanannya. Coba lagi dalam beberapa detik.</p>
<p lang="en">The hub cannot reach its store right now. Retry in a few seconds.</p>
</body></html>"""


def client_ip(request: web.Request) -> str:
    """Who is calling: the peer, or, when the peer is a trusted reverse proxy, the nearest
    address in X-Forwarded-For that is not one (a client can prepend anything to it)."""
    trusted = request.app[HUB].settings.hub.trusted_proxies
    peer = request.remote or "unknown"

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not is_trusted(hop):
            return hop if _is_ip(hop) else peer
    return peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def error(status: int, code: str, message: str, **details: Any) -> web.Response:
    """Every refusal says what went wrong in words and in a stable code."""
    body = {"error": code, "message": message, **details}
    headers = (
        {"Retry-After": str(details.get("retry_after_s", 5))} if status in (429, 503) else None
    )
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def request_context(request: web.Request, handler: Any) -> web.StreamResponse:
    """Bind a request id to every log line of this request; one summary line at the end."""
    # Not a secret, only a correlation id: 64 bits of the process's PRNG (uuid4 costs a
    # system call per request).
    rid = request.headers.get("X-Request-Id", "")[:64] or f"{random.getrandbits(64):016x}"
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid)
    start = time.perf_counter()
    status = 500
    response: web.StreamResponse
    try:
        response = await handler(request)
        status = response.status
    except web.HTTPException as exc:
        status = exc.status
        raise
    except STORE_DOWN as exc:
        status = 503
        log.warning("http.store_unavailable", path=request.path, error=type(exc).__name__)
        response = _store_unavailable(request, rid)
    except Exception as exc:
        log.exception("http.unhandled", path=request.path, error=repr(exc)[:200])
        response = error(500, "internal_error", "the hub failed on this request", request_id=rid)
    finally:
        # One summary per request, at info; at debug when the request succeeded and already
        # said at info what it did (an accepted webhook's ``message.received`` lines carry the
        # same request id): providers post thousands a second, and a second JSON line for
        # each was one of the webhook path's largest costs.
        summary = log.debug if status < 400 and request.get(SUMMARIZED) else log.info
        summary(
            "http.request",
            method=request.method,
            path=request.path,
            status=status,
            ms=round((time.perf_counter() - start) * 1000, 2),
        )
        structlog.contextvars.clear_contextvars()
    response.headers["X-Request-Id"] = rid
    return response


def _store_unavailable(request: web.Request, rid: str) -> web.Response:
    """A page for people in the console, the JSON error for everyone else."""
    if request.path.startswith("/console") and request.method in ("GET", "HEAD"):
        return web.Response(
            text=_STORE_DOWN_PAGE,
            status=503,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Retry-After": str(STORE_DOWN_RETRY_S),
                "Content-Security-Policy": "default-src 'none'",
                "Cache-Control": "no-store",
            },
        )
    return error(
        503,
        "store_unavailable",
        "the hub cannot reach its store right now; retry",
        retry_after_s=STORE_DOWN_RETRY_S,
        request_id=rid,
    )
