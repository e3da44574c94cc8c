"""``GET /api/v1/search``: tickets by number, phone, e-mail, name, words, status, unit, date.

The index is ``request.app[HUB].search`` (a ``hub.search.SearchPort``). Supervisors and
admins search every unit; an agent only the tickets of their units (asking for another unit is
403). ``OPENAPI_PATHS`` is this route's entry for the OpenAPI document; it is self-contained so
that ``hub.web.openapi`` can import it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any

from aiohttp import web

from hub.search import SearchPort, SearchQuery
from hub.web.auth import PRINCIPAL
from hub.web.common import HUB, error

PATH = "/api/v1/search"
STATUSES = ("open", "resolved", "closed")
MAX_LIMIT = 100
MAX_OFFSET = 5000  # the index considers at most this many candidates per query anyway
MAX_Q = 200


class BadParameter(ValueError):
    """A query parameter that cannot be used; the message says which and why."""


def _int(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not lo <= int(raw) <= hi:
        raise BadParameter(f"{name} must be an integer in {lo}..{hi}")
    return int(raw)


def _date(params: Mapping[str, str], name: str) -> date | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a date as YYYY-MM-DD") from None


def query_from_params(params: Mapping[str, str]) -> SearchQuery:
    """The request's query string as a SearchQuery; BadParameter says what is wrong."""
    q = params.get("q", "")
    if len(q) > MAX_Q:
        raise BadParameter(f"q must be at most {MAX_Q} characters")
    status = params.get("status", "")
    if status and status not in STATUSES:
        raise BadParameter(f"status must be one of {', '.join(STATUSES)}")
    date_from, date_to = _date(params, "from"), _date(params, "to")
    if date_from and date_to and date_from > date_to:
        raise BadParameter("from must not be after to")
    return SearchQuery(
        q=q,
        status=status,
        unit=params.get("unit", ""),
        channel=params.get("channel", ""),
        assignee=params.get("assignee", ""),
        date_from=date_from,
        date_to=date_to,
        limit=_int(params, "limit", 20, 1, MAX_LIMIT),
        offset=_int(params, "offset", 0, 0, MAX_OFFSET),
    )


async def search(request: web.Request) -> web.Response:
    who = request.get(PRINCIPAL)
    if who is None:  # the auth middleware sets it on every non-public path: fail closed
        return error(401, "unauthorized", "sign in, or send a valid bearer token")
    try:
        query = query_from_params(request.query)
    except BadParameter as exc:
        return error(400, "invalid_parameter", str(exc))
    if not who.sees_all_units:
        if query.unit and not who.can_see(query.unit):
            return error(403, "forbidden", f"you are not in unit {query.unit!r}")
        query = replace(query, units=tuple(who.units))  # an agent finds their units' tickets
    index: SearchPort = request.app[HUB].search
    tids, total = await index.search(query)
    items = await index.summaries(tids)
    return web.json_response(
        {"items": items, "total": total, "limit": query.limit, "offset": query.offset}
    )


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, search)


def _param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    p = {"name": name, "in": "query", "schema": schema}
    return {**p, "description": description} if description else p


_ERR = {"$ref": "#/components/schemas/Error"}
_STR = {"type": "string"}

OPENAPI_PATHS: dict[str, Any] = {
    PATH: {
        "get": {
            "summary": "Search tickets by number, phone, e-mail, name or words, with filters",
            "tags": ["tickets"],
            "parameters": [
                _param(
                    "q",
                    {"type": "string", "maxLength": MAX_Q},
                    "A ticket number (KMN-2026-000123) or id, a phone in any notation "
                    "(0812…, +62 812…, 62812…), an e-mail address, or words: every word must "
                    "appear in the ticket's messages or the citizen's name (accents and case "
                    "ignored)",
                ),
                _param("status", {"type": "string", "enum": list(STATUSES)}, "Ticket status"),
                _param("unit", _STR, "Unit the ticket belongs to (agents: one of theirs)"),
                _param("channel", _STR, "Channel the ticket was opened on"),
                _param("assignee", _STR, "Assigned agent"),
                _param(
                    "from",
                    {"type": "string", "format": "date"},
                    "Created on or after this day (Asia/Jakarta)",
                ),
                _param(
                    "to",
                    {"type": "string", "format": "date"},
                    "Created on or before this day (Asia/Jakarta)",
                ),
                _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
                _param("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
            ],
            "responses": {
                "200": {
                    "description": "A page of matching tickets, latest activity first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "items": {"type": "array", "items": {"type": "object"}},
                                    "total": {"type": "integer"},
                                    "limit": {"type": "integer"},
                                    "offset": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "400": {
                    "description": "Malformed request",
                    "content": {"application/json": {"schema": _ERR}},
                },
                "401": {
                    "description": "Missing or bad token",
                    "content": {"application/json": {"schema": _ERR}},
                },
                "403": {
                    "description": "Not in that unit",
                    "content": {"application/json": {"schema": _ERR}},
                },
                "503": {
                    "description": "No search index on this hub",
                    "content": {"application/json": {"schema": _ERR}},
                },
            },
        }
    }
}
