"""The queue and ticket actions of the agent console, as REST endpoints.

The console's pages call these same endpoints, so a machine client can do anything an agent
can, and the OpenAPI document covers all of it.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.web.api import Bad, json_body, json_errors, ticket_id
from hub.web.auth import PRINCIPAL, require
from hub.web.common import HUB, error


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=8000)


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str | None = Field(None, max_length=40)
    agent: str | None = Field(None, max_length=64)


class PriorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priority: Literal["urgent", "high", "normal", "low"]


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(max_length=80)


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["online", "away", "offline"]


class ViewingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["viewing", "typing", "left"]


class MergeTicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: str = Field(min_length=1, max_length=80, description="ticket id or number")


class MergeContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact: str = Field(min_length=1, max_length=80)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,31}$")
    password: str = Field(min_length=10, max_length=200)
    role: Literal["agent", "supervisor", "admin"] = "agent"
    units: list[str] = Field(default_factory=list)
    display_name: str = Field("", max_length=80)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=80)


@json_errors
async def claim_next(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    got = await hub.queue.claim_next(request[PRINCIPAL])
    if got is None:
        return web.json_response({"ticket_id": None, "message": "the queue is empty"})
    return web.json_response({"ticket_id": got.ticket_id, "agent": got.agent})


@json_errors
async def claim(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tid = await ticket_id(request)
    fields = await hub.store.get_ticket_fields(tid)
    got = await hub.queue.claim(request[PRINCIPAL], tid, fields.get("unit", "general"))
    return web.json_response({"ticket_id": got.ticket_id, "agent": got.agent})


@json_errors
async def release(request: web.Request) -> web.Response:
    tid = await ticket_id(request)
    await request.app[HUB].queue.release(request[PRINCIPAL], tid)
    return web.json_response({"ticket_id": tid, "released": True})


@json_errors
async def renew(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    tid = await ticket_id(request)
    ok = await hub.queue.queue.renew(tid, request[PRINCIPAL].name, hub.queue.lease_ms)
    if not ok:
        return error(409, "not_holder", "you do not hold this ticket (any more)")
    return web.json_response({"ticket_id": tid, "renewed": True})


@json_errors
async def transfer(request: web.Request) -> web.Response:
    tid = await ticket_id(request)
    body: TransferIn = await json_body(request, TransferIn)
    if not body.unit and not body.agent:
        raise Bad(error(400, "invalid_request", "give a unit, an agent, or both"))
    await request.app[HUB].queue.transfer(request[PRINCIPAL], tid, body.unit, body.agent)
    return web.json_response({"ticket_id": tid, "unit": body.unit, "agent": body.agent})


@json_errors
async def note(request: web.Request) -> web.Response:
    tid = await ticket_id(request)
    body: NoteIn = await json_body(request, NoteIn)
    await request.app[HUB].actions.note(request[PRINCIPAL], tid, body.text)
    return web.json_response({"ticket_id": tid, "noted": True}, status=201)


@json_errors
async def priority(request: web.Request) -> web.Response:
    tid = await ticket_id(request)
    body: PriorityIn = await json_body(request, PriorityIn)
    await request.app[HUB].actions.set_priority(request[PRINCIPAL], tid, body.priority)
    return web.json_response({"ticket_id": tid, "priority": body.priority})


@json_errors
async def category(request: web.Request) -> web.Response:
    tid = await ticket_id(request)
    body: CategoryIn = await json_body(request, CategoryIn)
    await request.app[HUB].actions.set_category(request[PRINCIPAL], tid, body.category)
    return web.json_response({"ticket_id": tid, "category": body.category})


@json_errors
async def viewing(request: web.Request) -> web.Response:
    """Say that you are viewing (or typing in) a ticket; answers who else is."""
    hub = request.app[HUB]
    tid = await ticket_id(request)
    who = request[PRINCIPAL]
    body: ViewingIn = await json_body(request, ViewingIn)
    await hub.queue.queue.mark_viewer(tid, who.name, body.state, 20)
    await hub.events.publish(
        {"type": "ticket.viewing", "ticket_id": tid, "agent": who.name, "state": body.state}
    )
    others = {a: s for a, s in (await hub.queue.queue.viewers(tid)).items() if a != who.name}
    return web.json_response({"ticket_id": tid, "others": others})


@json_errors
async def merge_ticket(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    src = await ticket_id(request)
    body: MergeTicketIn = await json_body(request, MergeTicketIn)
    dst = await hub.store.resolve_ticket_ref(body.into)
    if dst is None:
        raise Bad(error(404, "not_found", f"no ticket {body.into!r}"))
    await hub.actions.merge_tickets(request[PRINCIPAL], src, dst)
    return web.json_response({"merged": src, "into": dst})


@json_errors
async def merge_contact(request: web.Request) -> web.Response:
    body: MergeContactIn = await json_body(request, MergeContactIn)
    into = request.match_info["contact"]
    moved = await request.app[HUB].actions.merge_contacts(request[PRINCIPAL], into, body.contact)
    return web.json_response({"contact_id": into, "merged": body.contact, "identities": moved})


@json_errors
async def unmerge_contact(request: web.Request) -> web.Response:
    body: MergeContactIn = await json_body(request, MergeContactIn)
    into = request.match_info["contact"]
    moved = await request.app[HUB].actions.unmerge_contacts(request[PRINCIPAL], into, body.contact)
    return web.json_response({"contact_id": into, "unmerged": body.contact, "identities": moved})


@json_errors
async def queue_overview(request: web.Request) -> web.Response:
    """Waiting tickets per unit the caller may see, in the order they will be served."""
    hub = request.app[HUB]
    who = request[PRINCIPAL]
    units = hub.queue.units_for(who)
    counts = await hub.queue.queue.waiting_counts(units)
    out: dict[str, Any] = {}
    for unit in units:
        tids = await hub.queue.queue.waiting(unit, 0, 50)
        out[unit] = {"waiting": counts[unit], "next": tids}
    mine = await hub.queue.queue.held_by(who.name)
    return web.json_response({"units": out, "mine": mine})


@json_errors
async def set_presence(request: web.Request) -> web.Response:
    body: PresenceIn = await json_body(request, PresenceIn)
    await request.app[HUB].queue.set_presence(request[PRINCIPAL], body.state)
    return web.json_response({"state": body.state})


@json_errors
async def presence(request: web.Request) -> web.Response:
    require(request, supervisor=True)
    return web.json_response(await request.app[HUB].queue.queue.presence())


@json_errors
async def canned(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    items = [
        {
            "key": k,
            "title_id": c.title_id,
            "title_en": c.title_en,
            "text_id": c.text_id,
            "text_en": c.text_en,
        }
        for k, c in sorted(hub.settings.canned.items())
    ]
    return web.json_response({"items": items})


@json_errors
async def list_users(request: web.Request) -> web.Response:
    require(request, supervisor=True)
    users = await request.app[HUB].users.all()
    return web.json_response(
        {
            "items": [
                {
                    "username": u.username,
                    "display_name": u.display_name,
                    "role": u.role,
                    "units": list(u.units),
                    "disabled": u.disabled,
                }
                for u in users
            ]
        }
    )


@json_errors
async def create_user(request: web.Request) -> web.Response:
    require(request, admin=True)
    body: UserIn = await json_body(request, UserIn)
    try:
        user = await request.app[HUB].auth.create_user(
            body.username, body.password, body.role, body.units, body.display_name
        )
    except ValueError as exc:
        return error(409 if "exists" in str(exc) else 400, "invalid_user", str(exc))
    return web.json_response({"username": user.username, "role": user.role}, status=201)


@json_errors
async def create_token(request: web.Request) -> web.Response:
    """A personal API token for the caller's own scripts; shown once."""
    who = request[PRINCIPAL]
    if who.via == "service-token":
        return error(403, "forbidden", "service tokens cannot mint tokens")
    body: TokenIn = await json_body(request, TokenIn)
    token = await request.app[HUB].users.create_token(who.name, body.label)
    return web.json_response({"token": token, "label": body.label}, status=201)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/queue/claim-next", claim_next)
    r.add_get("/api/v1/queue", queue_overview)
    r.add_post("/api/v1/tickets/{ticket}/claim", claim)
    r.add_post("/api/v1/tickets/{ticket}/release", release)
    r.add_post("/api/v1/tickets/{ticket}/lease", renew)
    r.add_post("/api/v1/tickets/{ticket}/transfer", transfer)
    r.add_post("/api/v1/tickets/{ticket}/notes", note)
    r.add_post("/api/v1/tickets/{ticket}/priority", priority)
    r.add_post("/api/v1/tickets/{ticket}/category", category)
    r.add_post("/api/v1/tickets/{ticket}/viewing", viewing)
    r.add_post("/api/v1/tickets/{ticket}/merge", merge_ticket)
    r.add_post("/api/v1/contacts/{contact}/merge", merge_contact)
    r.add_post("/api/v1/contacts/{contact}/unmerge", unmerge_contact)
    r.add_post("/api/v1/presence", set_presence)
    r.add_get("/api/v1/presence", presence)
    r.add_get("/api/v1/canned", canned)
    r.add_get("/api/v1/users", list_users)
    r.add_post("/api/v1/users", create_user)
    r.add_post("/api/v1/me/tokens", create_token)
