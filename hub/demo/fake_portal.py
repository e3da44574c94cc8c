"""A local stand-in for the bantuan.kemnaker.go.id portal API that records what it is sent.

It speaks the contract in ``channels/portal/__init__.py``: ``POST /api/v1/requests/{id}/
replies`` (bearer token, ``Idempotency-Key``; 201 ``{"id": "RPL-…"}``, 200 with the same body
for a repeated key, ``{"error": {"code", "message"}}`` on refusals) and ``GET /api/v1/events
?after=&limit=`` over ``events``, a list the test or the demo fills (the cursor is the index
of the next event, as text) and ``POST /api/v1/requests/{id}/status`` (``{"status", "ticket_number",
"changed_at"}`` with an ``Idempotency-Key``; 201, 200 for a repeated key; recorded in
``status_calls``). Tests script answers per endpoint (a status with an error code
and headers, or a hang until ``stop``) and sign webhooks with ``signed_headers``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from channels.portal.contract import sign
from hub.demo.local_server import LocalServer


@dataclass
class Scripted:
    """One scripted answer: an HTTP status, an error code, headers, or a hang."""

    status: int = 201
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Reply:
    request_id: str
    body: dict[str, Any]
    idempotency_key: str
    status: int
    portal_id: str = ""


@dataclass
class StatusCall:
    request_id: str
    body: dict[str, Any]
    idempotency_key: str
    status: int


def make_event(
    n: int,
    event: str = "request.created",
    request_id: str = "REQ-2026-000123",
    text: str = "Gaji saya belum dibayar tiga bulan.",
    **citizen: str,
) -> dict[str, Any]:
    """A portal event as the contract describes it (citizen fields override the defaults)."""
    who = {"account_id": "u-1001", "name": "Siti Rahayu", "email": "siti@example.id",
           "phone": "0812-3456-7890"} | citizen  # fmt: skip
    return {
        "event": event,
        "event_id": f"evt-{n}",
        "request": {
            "id": request_id,
            "category": "pengupahan",
            "subject": "Gaji tidak dibayar",
            "created_at": "2026-03-02T09:15:00+07:00",
            "status": "open",
        },
        "message": {"id": f"msg-{n}", "text": text, "attachments": []},
        "citizen": {k: v for k, v in who.items() if v},
    }


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Portal-Timestamp": ts,
        "X-Portal-Signature": sign(secret, ts, body),
    }


class FakePortal:
    def __init__(self, api_token: str) -> None:
        self.api_token = api_token
        self.events: list[dict[str, Any]] = []
        self.reply_script: deque[Scripted] = deque()
        self.events_script: deque[Scripted] = deque()
        self.requests: list[Reply] = []  # every reply request, accepted or not
        self.replies: dict[str, Reply] = {}  # accepted, by idempotency key
        self.event_reads: list[dict[str, str]] = []  # query of every events-list call
        self.status_script: deque[Scripted] = deque()
        self.status_calls: list[StatusCall] = []  # every status call, accepted or not
        self._ids = itertools.count(1)
        self._release = asyncio.Event()
        self._server = LocalServer()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/requests/{request_id}/replies", self._reply)
        app.router.add_post("/api/v1/requests/{request_id}/status", self._status)
        app.router.add_get("/api/v1/events", self._events)
        return app

    async def start(self, port: int = 0) -> None:
        await self._server.start(self.app(), port)

    async def stop(self) -> None:
        self._release.set()
        await self._server.stop()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode(), f"Bearer {self.api_token}".encode())

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str]) -> web.Response:
        body = {"error": {"code": code or str(status), "message": message or "error"}}
        return web.json_response(body, status=status, headers=headers)

    async def _scripted(self, script: deque[Scripted]) -> web.Response | None:
        step = script.popleft() if script else None
        if step is None:
            return None
        if step.hang:
            await self._release.wait()
        return self._error(step.status, step.code, step.message, step.headers)

    async def _body(self, request: web.Request) -> tuple[Any, str]:
        """The JSON body (``{}`` when unreadable) and the Idempotency-Key."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = {}
        return body, request.headers.get("Idempotency-Key", "")

    async def _reply(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "unauthorized", "bad bearer token", {})
        body, key = await self._body(request)
        record = Reply(request.match_info["request_id"], body, key, 0)
        self.requests.append(record)
        answer = await self._scripted(self.reply_script)
        if answer is not None:
            record.status = answer.status
            return answer
        if not key or not isinstance(body, dict) or not body.get("text"):
            record.status = 422
            return self._error(422, "invalid_reply", "Idempotency-Key and text are required", {})
        if key in self.replies:
            record.status, record.portal_id = 200, self.replies[key].portal_id
        else:
            record.status, record.portal_id = 201, f"RPL-{next(self._ids):06d}"
            self.replies[key] = record
        return web.json_response(
            {"id": record.portal_id, "request_id": record.request_id}, status=record.status
        )

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "unauthorized", "bad bearer token", {})
        body, key = await self._body(request)
        call = StatusCall(request.match_info["request_id"], body, key, 0)
        self.status_calls.append(call)
        answer = await self._scripted(self.status_script)
        if answer is not None:
            call.status = answer.status
            return answer
        ok = isinstance(body, dict) and body.get("status") in ("open", "resolved", "closed")
        if not key or not ok:
            call.status = 422
            return self._error(422, "invalid_status", "Idempotency-Key and status are required", {})
        seen = any(c.idempotency_key == key and c.status in (200, 201) for c in self.status_calls)
        call.status = 200 if seen else 201
        return web.json_response(
            {"request_id": call.request_id, "status": body["status"]}, status=call.status
        )

    async def _events(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "unauthorized", "bad bearer token", {})
        self.event_reads.append(dict(request.query))
        answer = await self._scripted(self.events_script)
        if answer is not None:
            return answer
        after = request.query.get("after", "0")
        start = int(after) if after.isdigit() else 0
        limit = min(int(request.query.get("limit", "100")), 1000)
        page = self.events[start : start + limit]
        return web.json_response({"events": page, "next_cursor": str(start + len(page))})
