"""Shared pieces of the web layer: the app key for the hub, JSON errors, request context."""

from __future__ import annotations

import ipaddress
import time
import uuid
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

if TYPE_CHECKING:
    from hub.runtime import Hub

HUB: web.AppKey[Hub] = web.AppKey("hub")
log = structlog.get_logger("hub.http")


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
    rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
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
    except Exception as exc:
        log.exception("http.unhandled", path=request.path, error=repr(exc)[:200])
        response = error(500, "internal_error", "the hub failed on this request", request_id=rid)
    finally:
        log.info(
            "http.request",
            method=request.method,
            path=request.path,
            status=status,
            ms=round((time.perf_counter() - start) * 1000, 2),
        )
        structlog.contextvars.clear_contextvars()
    response.headers["X-Request-Id"] = rid
    return response
