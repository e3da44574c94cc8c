"""A local stand-in for Meta's Graph API (WhatsApp Cloud API and Instagram messaging).

It speaks the part of the real protocol the hub uses, and records every request:

- ``POST /{version}/{phone-number-id}/messages`` with ``messaging_product=whatsapp``: answers
  ``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}``;
- ``POST /{version}/{ig-id or me}/messages`` with ``recipient.id``: answers
  ``{"recipient_id": ..., "message_id": "aWdf..."}``;
- ``GET /{version}/{media-id}``: the media's ``url``, ``mime_type``, ``sha256``, ``file_size``;
  ``GET /_media/{media-id}``: its bytes (with the same bearer token, as Meta wants);
- a bearer token the fake does not know gets Graph's 401 with code 190.

Refusals use Graph's error body ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``. Tests script answers (an error status and code, Retry-After, a hang) per send.
Like Meta, it can send webhooks back, signed with the app secret (X-Hub-Signature-256): the
statuses of each WhatsApp message (sent, delivered, read) and the echo of each Instagram
message, so that the demo and the end-to-end tests see what production sees.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from channels.meta import SIGNATURE_HEADER, sign_body
from hub.demo.local_server import LocalServer


@dataclass
class Scripted:
    """One scripted answer for a send: an HTTP status with a Graph error, or a hang."""

    status: int = 200
    code: int = 0
    subcode: int = 0
    message: str = ""
    retry_after: int | None = None
    hang_s: float = 0.0


@dataclass
class GraphCall:
    method: str
    path: str
    token: str
    body: dict[str, Any]
    answered: int = 200
    provider_id: str = ""


@dataclass
class Media:
    data: bytes
    mime_type: str


@dataclass
class WebhookTarget:
    """Where the fake sends webhooks for one sender id (a phone_number_id or an IG id)."""

    url: str
    app_secret: str
    statuses: tuple[str, ...] = ("sent", "delivered", "read")  # WhatsApp only


@dataclass
class FakeGraph:
    tokens: set[str]
    script: deque[Scripted] = field(default_factory=deque)
    calls: list[GraphCall] = field(default_factory=list)  # every request, answered or refused
    sent: list[GraphCall] = field(default_factory=list)  # accepted sends only
    media: dict[str, Media] = field(default_factory=dict)
    webhooks: dict[str, WebhookTarget] = field(default_factory=dict)
    webhook_answers: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed = asyncio.Event()
        self._release = asyncio.Event()
        self._server = LocalServer()
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/_media/{media_id}", self._media_bytes)
        app.router.add_get("/_fake/sent", self._list)
        app.router.add_post("/{version}/{sender}/messages", self._send)
        app.router.add_get("/{version}/{media_id}", self._media_info)
        return app

    async def start(self, port: int = 0) -> None:
        self._release.clear()
        await self._server.start(self.app(), port)

    async def stop(self) -> None:
        self._release.set()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._server.stop()

    def add_media(self, data: bytes, mime_type: str) -> str:
        """Store bytes as Meta would after a citizen sent them; returns the media id."""
        media_id = str(900_000_000_000 + next(self._ids))
        self.media[media_id] = Media(data, mime_type)
        return media_id

    async def wait_for(self, n: int, limit_s: float = 10.0) -> list[GraphCall]:
        async with asyncio.timeout(limit_s):
            while len(self.sent) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.sent

    # -- requests ------------------------------------------------------------------------

    def _token(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return None
        return token

    @staticmethod
    def _error(
        status: int,
        code: int,
        message: str,
        subcode: int = 0,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        err: dict[str, Any] = {
            "message": message,
            "type": "OAuthException" if code in (190, 10, 200) else "GraphMethodException",
            "code": code,
            "fbtrace_id": "AbCdEfFakeTrace",
        }
        if subcode:
            err["error_subcode"] = subcode
        return web.json_response({"error": err}, status=status, headers=headers)

    async def _send(self, request: web.Request) -> web.Response:
        token = self._token(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        call = GraphCall("POST", request.path, token or "", body if isinstance(body, dict) else {})
        self.calls.append(call)
        self.changed.set()
        if token is None:
            call.answered = 401
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if not isinstance(body, dict):
            call.answered = 400
            return self._error(400, 100, "(#100) The parameter body must be a JSON object")
        if self.script:
            step = self.script.popleft()
            if step.hang_s:
                await asyncio.wait_for(self._release.wait(), step.hang_s)
            if step.status >= 400:
                call.answered = step.status
                headers = {"Retry-After": str(step.retry_after)} if step.retry_after else None
                return self._error(
                    step.status, step.code, step.message or "scripted", step.subcode, headers
                )
        sender = request.match_info["sender"]
        if body.get("messaging_product") == "whatsapp":
            return self._whatsapp_sent(call, sender, body)
        return self._instagram_sent(call, sender, body)

    def _whatsapp_sent(self, call: GraphCall, sender: str, body: dict[str, Any]) -> web.Response:
        to = str(body.get("to", ""))
        kind = body.get("type", "text")
        if not to or kind not in ("text", "template", "image", "document", "audio", "video"):
            call.answered = 400
            return self._error(400, 100, "(#100) Invalid parameter")
        wamid = "wamid." + base64.b64encode(f"fake-{next(self._ids)}".encode()).decode()
        call.provider_id = wamid
        self.sent.append(call)
        target = self.webhooks.get(sender)
        if target is not None:
            self._spawn(self._whatsapp_statuses(target, sender, to, wamid))
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": wamid}],
            }
        )

    def _instagram_sent(self, call: GraphCall, sender: str, body: dict[str, Any]) -> web.Response:
        raw_recipient, message = body.get("recipient"), body.get("message")
        recipient: dict[str, Any] = raw_recipient if isinstance(raw_recipient, dict) else {}
        rid = str(recipient.get("id", ""))
        if not isinstance(message, dict):
            message = None
        if not rid or message is None:
            call.answered = 400
            return self._error(400, 100, "(#100) param recipient and message are required")
        if body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") != "HUMAN_AGENT":
            call.answered = 400
            return self._error(400, 100, "(#100) Invalid tag for Instagram")
        mid = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj" + f"{next(self._ids):012d}"
        call.provider_id = mid
        self.sent.append(call)
        target = self.webhooks.get(sender)
        if target is not None:
            self._spawn(self._instagram_echo(target, sender, rid, mid, message))
        return web.json_response({"recipient_id": rid, "message_id": mid})

    async def _media_info(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        self.calls.append(GraphCall("GET", request.path, self._token(request) or "", {}))
        if self._token(request) is None:
            return self._error(401, 190, "Invalid OAuth access token")
        m = self.media.get(media_id)
        if m is None:
            return self._error(400, 100, f"(#100) Unsupported get request. Object {media_id}")
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.base_url}/_media/{media_id}",
                "mime_type": m.mime_type,
                "sha256": hashlib.sha256(m.data).hexdigest(),
                "file_size": len(m.data),
                "id": media_id,
            }
        )

    async def _media_bytes(self, request: web.Request) -> web.Response:
        if self._token(request) is None:
            return web.Response(status=401)
        m = self.media.get(request.match_info["media_id"])
        if m is None:
            return web.Response(status=404)
        return web.Response(body=m.data, content_type=m.mime_type)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"path": c.path, "body": c.body, "id": c.provider_id} for c in self.sent]
        )

    # -- webhooks the fake sends back ----------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def post_webhook(self, target: WebhookTarget, payload: dict[str, Any]) -> int:
        """POST a webhook the way Meta does: JSON, signed with the app secret."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            target.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign_body(target.app_secret, body),
            },
        ) as resp:
            self.webhook_answers.append(resp.status)
            return resp.status

    async def _whatsapp_statuses(
        self, target: WebhookTarget, phone_number_id: str, to: str, wamid: str
    ) -> None:
        for status in target.statuses:
            payload = {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "WABA-FAKE",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "",
                                        "phone_number_id": phone_number_id,
                                    },
                                    "statuses": [
                                        {
                                            "id": wamid,
                                            "status": status,
                                            "timestamp": str(int(time.time())),
                                            "recipient_id": to.lstrip("+"),
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
            try:
                await self.post_webhook(target, payload)
            except aiohttp.ClientError:
                return

    async def _instagram_echo(
        self, target: WebhookTarget, ig_id: str, recipient: str, mid: str, message: dict[str, Any]
    ) -> None:
        echo: dict[str, Any] = {"mid": mid, "is_echo": True}
        if "text" in message:
            echo["text"] = message["text"]
        if "attachment" in message:
            echo["attachments"] = [message["attachment"]]
        now_ms = int(time.time() * 1000)
        payload = {
            "object": "instagram",
            "entry": [
                {
                    "id": ig_id,
                    "time": now_ms,
                    "messaging": [
                        {
                            "sender": {"id": ig_id},
                            "recipient": {"id": recipient},
                            "timestamp": now_ms,
                            "message": echo,
                        }
                    ],
                }
            ],
        }
        try:
            await self.post_webhook(target, payload)
        except aiohttp.ClientError:
            return
