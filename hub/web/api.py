"""The REST API for agents' tools and machine clients (bearer tokens)."""

from __future__ import annotations

import hmac
import json
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.replies import ReplyRefused
from hub.web.common import HUB, error

log = structlog.get_logger("hub.api")
API_USER: web.RequestKey[str] = web.RequestKey("api_user", str)
TICKET_STATUSES = ("open", "resolved", "closed")


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field("", max_length=4096)
    template: str = Field("", max_length=64)
    variables: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of(self) -> ReplyIn:
        if bool(self.text.strip()) == bool(self.template):
            raise ValueError("give either text or template")
        return self


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(pattern="^(open|resolved|closed)$")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream: str = Field(min_length=1, max_length=200)
    id: str = Field(pattern=r"^\d+-\d+$")


def authenticate(request: web.Request) -> str | None:
    """The name of the token's owner, comparing every configured token in constant time."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    found = None
    for t in request.app[HUB].settings.api.tokens:
        if hmac.compare_digest(presented.encode(), t.token.get_secret_value().encode()):
            found = t.name
    return found


@web.middleware
async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/api/") and request.path != "/api/v1/openapi.json":
        user = authenticate(request)
        if user is None:
            resp = error(401, "unauthorized", "a valid bearer token is required")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="hub"'
            return resp
        request[API_USER] = user
    response: web.StreamResponse = await handler(request)
    return response


async def _json_body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Bad(error(400, "malformed_json", "the body is not JSON")) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise _Bad(error(400, "invalid_request", reason)) from None


class _Bad(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _ticket_id(request: web.Request) -> str:
    ref = request.match_info["ticket"]
    tid = await request.app[HUB].store.resolve_ticket_ref(ref)
    if tid is None:
        raise _Bad(error(404, "not_found", f"no ticket {ref!r}"))
    return tid


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise _Bad(error(400, "invalid_parameter", f"{name} must be an integer in {lo}..{hi}"))
    return int(raw)


async def list_tickets(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        limit = _int_param(request, "limit", 50, 1, 200)
        offset = _int_param(request, "offset", 0, 0, 10_000_000)
        filters = {f: request.query.get(f, "") for f in ("status", "channel", "unit", "assignee")}
        if filters["status"] and filters["status"] not in TICKET_STATUSES:
            raise _Bad(error(400, "invalid_parameter", f"status must be one of {TICKET_STATUSES}"))
    except _Bad as bad:
        return bad.response
    items, total = await hub.store.list_tickets(filters, limit, offset)
    return web.json_response({"items": items, "total": total, "limit": limit, "offset": offset})


async def get_ticket(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        tid = await _ticket_id(request)
    except _Bad as bad:
        return bad.response
    ticket = await hub.store.get_ticket(tid, with_raw=request.query.get("raw") == "1")
    if ticket is None:
        return error(404, "not_found", "no such ticket")
    ticket["window"] = (await hub.replies.window(tid)).as_dict()
    ch, acct = ticket.get("reply_channel", ""), ticket.get("reply_account", "")
    ticket["templates"] = sorted(hub.channels.templates.get((ch, acct), {}))
    return web.json_response(ticket)


async def post_reply(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        tid = await _ticket_id(request)
        body: ReplyIn = await _json_body(request, ReplyIn)
    except _Bad as bad:
        return bad.response
    try:
        q = await hub.replies.create(
            tid,
            text=body.text,
            template=body.template,
            variables=body.variables,
            author=request.get(API_USER, "api"),
        )
    except ReplyRefused as exc:
        return error(exc.status, exc.code, str(exc), **exc.details)
    return web.json_response(
        {
            "reply_id": q.reply_id,
            "ticket_id": q.ticket_id,
            "channel": q.channel,
            "account": q.account,
            "state": q.state,
        },
        status=202,
    )


async def post_status(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        tid = await _ticket_id(request)
        body: StatusIn = await _json_body(request, StatusIn)
    except _Bad as bad:
        return bad.response
    result, previous = await hub.store.set_ticket_status(tid, body.status)
    if result == "refused":
        return error(409, "ticket_closed", "a closed ticket cannot change status")
    log.info("ticket.status_changed", ticket_id=tid, status=body.status, previous=previous)
    return web.json_response({"ticket_id": tid, "status": body.status, "previous": previous})


async def get_contact(request: web.Request) -> web.Response:
    contact = await request.app[HUB].store.get_contact(request.match_info["contact"])
    if contact is None:
        return error(404, "not_found", "no such contact")
    return web.json_response(contact)


def _streams(request: web.Request) -> list[str]:
    hub = request.app[HUB]
    return hub.inbound_streams() + list(hub.outbox_streams().values())


async def list_dead_letters(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    items: list[dict[str, str]] = []
    for stream in _streams(request):
        items += await hub.ops.dead_letters(stream)
    return web.json_response({"items": items, "total": len(items)})


async def replay_dead_letter(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        body: ReplayIn = await _json_body(request, ReplayIn)
    except _Bad as bad:
        return bad.response
    if body.stream not in _streams(request):
        return error(404, "not_found", f"no stream {body.stream!r}")
    new_id = await hub.ops.replay_dead_letter(body.stream, body.id)
    if new_id is None:
        return error(404, "not_found", f"no dead letter {body.id} on {body.stream}")
    log.info(
        "dead_letter.replayed",
        stream=body.stream,
        entry=body.id,
        new_entry=new_id,
        by=request.get(API_USER, ""),
    )
    return web.json_response({"stream": body.stream, "replayed": body.id, "entry": new_id})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/tickets", list_tickets)
    r.add_get("/api/v1/tickets/{ticket}", get_ticket)
    r.add_post("/api/v1/tickets/{ticket}/replies", post_reply)
    r.add_post("/api/v1/tickets/{ticket}/status", post_status)
    r.add_get("/api/v1/contacts/{contact}", get_contact)
    r.add_get("/api/v1/dead-letters", list_dead_letters)
    r.add_post("/api/v1/dead-letters/replay", replay_dead_letter)
