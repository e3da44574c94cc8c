"""A local stand-in for Twilio's Messages API that records what it is sent.

It speaks the part of the real protocol the hub uses: ``POST /2010-04-01/Accounts/{sid}/
Messages.json`` with HTTP basic auth and form fields (To, From, Body or ContentSid and
ContentVariables, StatusCallback); 201 with the message resource as JSON; Twilio's error body
(``code``, ``message``, ``more_info``, ``status``) on refusals. Tests script failures (500, 429
with Retry-After, 400 with a code, a hang) and fire status callbacks signed with the account's
auth token, as Twilio does. The demo uses it so that `make run` needs no Twilio account.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from hub.demo.local_server import LocalServer


@dataclass
class Scripted:
    """One scripted answer: an HTTP status, optional Twilio error code, headers, or a hang."""

    status: int = 201
    code: int | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


@dataclass
class Sent:
    sid: str
    account_sid: str
    params: dict[str, str]
    status: int


class FakeTwilio:
    def __init__(self, accounts: dict[str, str], auto_callbacks: tuple[str, ...] = ()) -> None:
        """``accounts`` maps AccountSid to auth token; ``auto_callbacks`` e.g. ("sent",
        "delivered", "read") are fired at StatusCallback after each accepted message."""
        self.accounts = accounts
        self.auto_callbacks = auto_callbacks
        self.script: deque[Scripted] = deque()
        self.requests: list[Sent] = []  # every request, accepted or not
        self.sent: list[Sent] = []  # accepted messages only
        self.changed = asyncio.Event()
        self._server = LocalServer()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.router.add_get("/_fake/messages", self._list)
        return app

    async def start(self, port: int = 0) -> None:
        await self._server.start(self.app(), port)
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await self._server.stop()

    async def wait_for(self, n: int, limit_s: float = 10.0) -> list[Sent]:
        """Wait until ``n`` messages were accepted (an event, not a sleep loop)."""
        async with asyncio.timeout(limit_s):
            while len(self.sent) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.sent

    def _auth_ok(self, request: web.Request, sid: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        token = self.accounts.get(sid)
        return user == sid and token is not None and hmac.compare_digest(pw, token)

    async def _create(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        if not self._auth_ok(request, sid):
            return self._error(401, 20003, "Authenticate")
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        step = self.script.popleft() if self.script else Scripted()
        msg_sid = "SM" + secrets.token_hex(16)
        record = Sent(msg_sid, sid, params, step.status)
        self.requests.append(record)
        self.changed.set()
        if step.hang_s:
            await asyncio.sleep(step.hang_s)
        if step.status >= 300:
            return self._error(step.status, step.code or step.status, step.message, step.headers)
        if not params.get("To") or not (params.get("Body") or params.get("ContentSid")):
            return self._error(400, 21619, "A text message body or media urls must be specified")
        self.sent.append(record)
        self.changed.set()
        cb = params.get("StatusCallback")
        if cb and self.auto_callbacks:
            t = asyncio.create_task(self._callbacks(cb, sid, record))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        now = format_datetime(datetime.now(UTC))
        return web.json_response(
            {
                "sid": msg_sid,
                "account_sid": sid,
                "to": params.get("To"),
                "from": params.get("From"),
                "body": params.get("Body", ""),
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "date_created": now,
                "date_updated": now,
                "error_code": None,
                "error_message": None,
                "price": None,
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}.json",
            },
            status=201,
        )

    def _error(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "status": status,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
            },
            status=status,
            headers=headers,
        )

    async def status_callback(
        self, url: str, account_sid: str, sent: Sent, status: str, error_code: str = ""
    ) -> int:
        """POST a status callback the way Twilio does: form-encoded and signed."""
        params = {
            "MessageSid": sent.sid,
            "SmsSid": sent.sid,
            "AccountSid": account_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": sent.params.get("To", ""),
            "From": sent.params.get("From", ""),
            "ApiVersion": "2010-04-01",
            "ChannelPrefix": "whatsapp",
        }
        if error_code:
            params["ErrorCode"] = error_code
        sig = RequestValidator(self.accounts[account_sid]).compute_signature(url, params)
        assert self._session is not None
        async with self._session.post(url, data=params, headers={"X-Twilio-Signature": sig}) as r:
            return r.status

    async def _callbacks(self, url: str, account_sid: str, sent: Sent) -> None:
        for status in self.auto_callbacks:
            await asyncio.sleep(0.5)  # the demo's pace: let a person see the states change
            try:
                await self.status_callback(url, account_sid, sent, status)
            except aiohttp.ClientError:
                return

    async def _list(self, request: web.Request) -> web.Response:
        out: list[dict[str, Any]] = [
            {
                "sid": s.sid,
                "to": s.params.get("To"),
                "from": s.params.get("From"),
                "body": s.params.get("Body", ""),
                "content_sid": s.params.get("ContentSid", ""),
            }
            for s in self.sent
        ]
        return web.json_response(out)
