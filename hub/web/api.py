"""The REST API: everything the console does, for agents' tools and machine clients.

Every handler acts as the request's principal (a signed-in person or a token): agents see and
act on their units' tickets only, supervisors on all, admins also manage accounts.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.errors import Refusal
from hub.web.auth import PRINCIPAL, require
from hub.web.common import HUB, error

log = structlog.get_logger("hub.api")
TICKET_STATUSES = ("open", "resolved", "closed")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AttachmentRef(BaseModel):
    """A file uploaded with POST /api/v1/attachments, to send with a reply."""

    model_config = ConfigDict(extra="forbid")
    ref: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    name: str = Field(min_length=1, max_length=200)
    content_type: str = Field("application/octet-stream", max_length=100)


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field("", max_length=4096)
    template: str = Field("", max_length=64)
    variables: dict[str, str] = Field(default_factory=dict)
    attachments: list[AttachmentRef] = Field(default_factory=list, max_length=10)
    via: str = Field(
        "", max_length=20, description="another channel that reaches the citizen (whatsapp)"
    )

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
    id: str = Field(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")

    @field_validator("id")
    @classmethod
    def _stream_id(cls, v: str) -> str:
        if any(int(part) >= 2**64 for part in v.split("-")):  # Redis refuses such an id
            raise ValueError("not a stream entry id (two 64-bit numbers)")
        return v


class Bad(Exception):
    """A handler's way to answer with an error response from deep inside."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


def json_errors(handler: Handler) -> Handler:
    """Domain refusals become JSON errors with their code and HTTP status."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Bad as bad:
            return bad.response
        except Refusal as exc:
            return error(exc.status, exc.code, str(exc), **exc.details)

    return wrapped


async def json_body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        data = await request.json()
    except (ValueError, LookupError, RecursionError):  # not JSON, unknown charset, too deep
        raise Bad(error(400, "malformed_json", "the body is not JSON")) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise Bad(error(400, "invalid_request", reason)) from None


async def ticket_id(request: web.Request) -> str:
    """The ticket named in the path, if it exists and the caller may see it."""
    ref = request.match_info["ticket"]
    hub = request.app[HUB]
    tid = await hub.store.resolve_ticket_ref(ref)
    if tid is None:
        record = await archived_record(request, ref)
        if record is not None:
            raise Bad(
                error(
                    410,
                    "archived",
                    f"ticket {ref!r} was archived on {record['archived_at']} to "
                    f"{record['file']}; supervisors read it with ?archived=1 on its export",
                    file=record["file"],
                    archived_at=record["archived_at"],
                    ticket_id=record["id"],
                    number=record.get("number", ""),
                )
            )
        raise Bad(error(404, "not_found", f"no ticket {ref!r}"))
    await hub.actions.visible(request[PRINCIPAL], tid)
    return tid


async def archived_record(request: web.Request, ref: str) -> dict[str, Any] | None:
    """The archive record of ``ref`` (id or number) if the caller may see its unit (like a
    live ticket: 404 for other units, so numbers cannot be probed)."""
    record = await request.app[HUB].archive.lookup(ref)
    if record is None or not request[PRINCIPAL].can_see(record.get("unit", "general")):
        return None
    return record


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # ASCII digits only ("²".isdigit() is true, int("²") fails), and few enough for int()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not lo <= int(raw) <= hi:
        raise Bad(error(400, "invalid_parameter", f"{name} must be an integer in {lo}..{hi}"))
    return int(raw)


@json_errors
async def list_tickets(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    who = request[PRINCIPAL]
    limit = int_param(request, "limit", 50, 1, 200)
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    filters = {f: request.query.get(f, "") for f in ("status", "channel", "unit", "assignee")}
    if filters["status"] and filters["status"] not in TICKET_STATUSES:
        raise Bad(error(400, "invalid_parameter", f"status must be one of {TICKET_STATUSES}"))
    if not who.sees_all_units:
        if filters["unit"] and not who.can_see(filters["unit"]):
            raise Bad(error(403, "forbidden", f"you are not in unit {filters['unit']!r}"))
        if not filters["unit"]:  # an agent's list is their units' tickets, one unit at a time
            items: list[dict[str, Any]] = []
            total = 0
            for unit in who.units:
                got, n = await hub.store.list_tickets({**filters, "unit": unit}, limit + offset)
                items += got
                total += n
            items.sort(key=lambda t: float(t.get("updated_at", 0)), reverse=True)
            page = items[offset : offset + limit]
            return web.json_response(
                {"items": page, "total": total, "limit": limit, "offset": offset}
            )
    items, total = await hub.store.list_tickets(filters, limit, offset)
    return web.json_response({"items": items, "total": total, "limit": limit, "offset": offset})


@json_errors
async def get_ticket(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tid = await ticket_id(request)
    ticket = await hub.store.get_ticket(tid, with_raw=request.query.get("raw") == "1")
    if ticket is None:
        return error(404, "not_found", "no such ticket")
    ticket["window"] = (await hub.replies.window(tid)).as_dict()
    ch, acct = ticket.get("reply_channel", ""), ticket.get("reply_account", "")
    ticket["templates"] = sorted(hub.channels.templates.get((ch, acct), {}))
    held = await hub.queue.queue.holder(tid)
    ticket["claim"] = {"agent": held[0], "until_ms": held[1]} if held else None
    return web.json_response(ticket)


@json_errors
async def post_reply(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tid = await ticket_id(request)
    body: ReplyIn = await json_body(request, ReplyIn)
    q = await hub.actions.reply(
        request[PRINCIPAL], tid, text=body.text, template=body.template,
        variables=body.variables, attachments=[a.model_dump() for a in body.attachments],
        via=body.via,
    )  # fmt: skip
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


@json_errors
async def post_status(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tid = await ticket_id(request)
    body: StatusIn = await json_body(request, StatusIn)
    previous = await hub.actions.set_status(request[PRINCIPAL], tid, body.status)
    return web.json_response({"ticket_id": tid, "status": body.status, "previous": previous})


@json_errors
async def get_contact(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    who = request[PRINCIPAL]
    contact = await hub.store.get_contact(request.match_info["contact"])
    if contact is None:
        return error(404, "not_found", "no such contact")
    visible, summaries = [], []
    for tid in contact["tickets"]:
        fields = await hub.store.get_ticket_fields(tid)
        if fields and (who.sees_all_units or who.can_see(fields.get("unit", ""))):
            visible.append(tid)
            summaries.append(
                {"id": tid, **{f: fields.get(f, "") for f in ("number", "status", "unit")}}
            )
    if not visible and not who.sees_all_units:
        return error(404, "not_found", "no such contact")
    if not who.sees_all_units:
        contact["tickets"] = visible
    contact["ticket_summaries"] = summaries  # what the screen pop lists: number and status
    return web.json_response(contact)


def _streams(request: web.Request) -> list[str]:
    hub = request.app[HUB]
    return hub.inbound_streams() + list(hub.outbox_streams().values())


@json_errors
async def list_dead_letters(request: web.Request) -> web.Response:
    require(request, supervisor=True)
    hub = request.app[HUB]
    items: list[dict[str, str]] = []
    for stream in _streams(request):
        items += await hub.ops.dead_letters(stream)
    return web.json_response({"items": items, "total": len(items)})


@json_errors
async def replay_dead_letter(request: web.Request) -> web.Response:
    who = require(request, supervisor=True)
    hub = request.app[HUB]
    body: ReplayIn = await json_body(request, ReplayIn)
    if body.stream not in _streams(request):
        return error(404, "not_found", f"no stream {body.stream!r}")
    new_id = await hub.ops.replay_dead_letter(body.stream, body.id)
    if new_id is None:
        return error(404, "not_found", f"no dead letter {body.id} on {body.stream}")
    log.info(
        "dead_letter.replayed", stream=body.stream, entry=body.id, new_entry=new_id, by=who.name
    )
    return web.json_response({"stream": body.stream, "replayed": body.id, "entry": new_id})


@json_errors
async def upload_attachment(request: web.Request) -> web.Response:
    """The body is the file itself (its Content-Type); ``?name=`` names it."""
    hub = request.app[HUB]
    name = request.query.get("name", "").strip()
    if not name or len(name) > 200 or "/" in name or "\\" in name:
        return error(400, "invalid_parameter", "name= is required (a file name, no path)")
    limit = hub.blobs.max_bytes
    if (request.content_length or 0) > limit:
        return error(413, "payload_too_large", f"files above {limit} bytes are refused")
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            return error(413, "payload_too_large", f"files above {limit} bytes are refused")
    if not data:
        return error(400, "empty_file", "the body is empty")
    ref = await hub.blobs.put(bytes(data))
    return web.json_response(
        {"ref": ref, "name": name, "content_type": request.content_type, "size": len(data)},
        status=201,
    )


@json_errors
async def get_dashboard(request: web.Request) -> web.Response:
    """The supervisors' live numbers: channels, units (backlog, oldest waiting, SLA), agents,
    dead letters (``hub.dashboard``)."""
    require(request, supervisor=True)
    snap = await request.app[HUB].dashboard.snapshot()
    return web.json_response(snap.as_dict())


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/dashboard", get_dashboard)
    r.add_post("/api/v1/attachments", upload_attachment)
    r.add_get("/api/v1/tickets", list_tickets)
    r.add_get("/api/v1/tickets/{ticket}", get_ticket)
    r.add_post("/api/v1/tickets/{ticket}/replies", post_reply)
    r.add_post("/api/v1/tickets/{ticket}/status", post_status)
    r.add_get("/api/v1/contacts/{contact}", get_contact)
    r.add_get("/api/v1/dead-letters", list_dead_letters)
    r.add_post("/api/v1/dead-letters/replay", replay_dead_letter)
