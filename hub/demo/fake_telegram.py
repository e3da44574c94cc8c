"""A local stand-in for the Telegram Bot API that records what it is sent.

It speaks the part of the real protocol the hub uses: ``/bot{token}/getMe``,
``/bot{token}/sendMessage``, ``/bot{token}/setWebhook``, ``/bot{token}/getFile`` with
``/file/bot{token}/<file_path>`` (GET or POST, parameters as query,
form or JSON), answering ``{"ok": true, "result": ...}`` or the API's error body
``{"ok": false, "error_code": ..., "description": ..., "parameters": {"retry_after": ...}}``.
An unknown token gets 401 as from the real API. Tests script failures (429 with retry_after,
400, 403, 5xx, a hang) per call; the demo uses it so that `make run` needs no bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hub.demo.local_server import LocalServer


@dataclass
class Scripted:
    """One scripted answer for sendMessage: an error code and text, retry_after, or a hang."""

    error_code: int = 0  # 0: answer normally
    description: str = ""
    retry_after: int | None = None
    hang_s: float = 0.0


@dataclass
class Call:
    method: str
    token: str
    params: dict[str, str]
    answered: int = 200


@dataclass
class FakeTelegram:
    tokens: set[str]
    bot_username: str = "kemnaker_test_bot"
    script: deque[Scripted] = field(default_factory=deque)
    calls: list[Call] = field(default_factory=list)  # every call, answered or refused
    sent: list[Call] = field(default_factory=list)  # accepted sendMessage calls only
    webhook: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> bytes (getFile)

    def __post_init__(self) -> None:
        self.changed = asyncio.Event()
        self._release = asyncio.Event()
        self._server = LocalServer()
        self._ids = itertools.count(1000)

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        app.router.add_get("/_fake/messages", self._list)
        return app

    async def start(self, port: int = 0) -> None:
        self._release.clear()
        await self._server.start(self.app(), port)

    async def stop(self) -> None:
        self._release.set()  # let hanging handlers return
        await self._server.stop()

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, n: int, limit_s: float = 10.0) -> list[Call]:
        async with asyncio.timeout(limit_s):
            while len(self.sent) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.sent

    @staticmethod
    async def _params(request: web.Request) -> dict[str, str]:
        params = {k: v for k, v in request.query.items()}
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(
                    {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
                )
        elif request.can_read_body:
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
        return params

    @staticmethod
    def _error(
        code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    async def _dispatch(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        params = await self._params(request)
        call = Call(method, token, params)
        self.calls.append(call)
        self.changed.set()
        if token not in self.tokens:
            call.answered = 401
            return self._error(401, "Unauthorized")
        bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        if method == "getMe":
            return self._ok(
                {
                    "id": bot_id,
                    "is_bot": True,
                    "first_name": "Kemnaker",
                    "username": self.bot_username,
                    "can_join_groups": False,
                    "can_read_all_group_messages": False,
                    "supports_inline_queries": False,
                }
            )
        if method == "setWebhook":
            if not params.get("url"):
                call.answered = 400
                return self._error(400, "Bad Request: bad webhook: URL must be provided")
            self.webhook = dict(params)
            return self._ok(True)
        if method == "sendMessage":
            return await self._send_message(call, bot_id)
        if method == "getFile":
            file_id = call.params.get("file_id", "")
            if file_id not in self.files:
                call.answered = 400
                return self._error(400, "Bad Request: invalid file_id")
            data = self.files[file_id]
            return self._ok(
                {
                    "file_id": file_id,
                    "file_unique_id": f"u{file_id}",
                    "file_size": len(data),
                    "file_path": f"photos/{file_id}.jpg",
                }
            )
        call.answered = 404
        return self._error(404, "Not Found")

    async def _send_message(self, call: Call, bot_id: int) -> web.Response:
        step = self.script.popleft() if self.script else Scripted()
        if step.hang_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), step.hang_s)
        if step.error_code:
            call.answered = step.error_code
            parameters = {"retry_after": step.retry_after} if step.retry_after else None
            return self._error(step.error_code, step.description or "Error", parameters)
        chat_id, text = call.params.get("chat_id", ""), call.params.get("text", "")
        if not chat_id.lstrip("-").isdigit():
            call.answered = 400
            return self._error(400, "Bad Request: chat not found")
        if not text:
            call.answered = 400
            return self._error(400, "Bad Request: message text is empty")
        self.sent.append(call)
        self.changed.set()
        return self._ok(
            {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": int(chat_id), "type": "private"},
                "from": {"id": bot_id, "is_bot": True, "first_name": "Kemnaker"},
                "text": text,
            }
        )

    async def _file(self, request: web.Request) -> web.Response:
        """A file's bytes at the path getFile gave, as api.telegram.org/file/bot<token>/..."""
        if request.match_info["token"] not in self.tokens:
            return web.Response(status=401)
        name = request.match_info["path"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        data = self.files.get(name)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/jpeg")

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"chat_id": c.params.get("chat_id"), "text": c.params.get("text")} for c in self.sent]
        )
