"""Server-sent events for the consoles: ``GET /api/v1/events`` (``Last-Event-ID`` resumes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

from aiohttp import web

from hub.web.auth import PRINCIPAL
from hub.web.common import HUB, error

HEARTBEAT_S = 15.0
STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    who = request[PRINCIPAL]
    last = request.headers.get("Last-Event-ID") or request.query.get("since", "")
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    if last and not STREAM_ID.fullmatch(last):  # checked before the 200 goes out
        return error(400, "invalid_parameter", "since / Last-Event-ID must be a stream id")
    if request.method == "HEAD":  # headers only: a stream after them breaks keep-alive
        return web.Response(headers=headers)
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    feed = hub.live.subscribe(who, last)
    try:
        while True:
            try:
                eid, ev = await asyncio.wait_for(anext(feed), HEARTBEAT_S)
            except TimeoutError:
                await resp.write(b": ping\n\n")
                continue
            except StopAsyncIteration:
                break
            data = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
            await resp.write(
                f"id: {eid}\nevent: {ev.get('type', 'message')}\ndata: {data}\n\n".encode()
            )
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await feed.aclose()
    return resp


async def _end_streams(app: web.Application) -> None:
    """On shutdown, end the open event streams instead of waiting for their heartbeat."""
    await app[HUB].live.aclose()


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", events)
    app.on_shutdown.append(_end_streams)
