"""The reports over HTTP: the period report as JSON and CSV (supervisors), and one ticket
with its whole audit trail as JSON or CSV (whoever may see the ticket).

``OPENAPI_PATHS`` is these routes' entry for the OpenAPI document; it is self-contained so
that ``hub.web.openapi`` can import it without an import cycle.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from hub.archive import period_report
from hub.reports import (
    GROUPS,
    Period,
    PeriodError,
    Report,
    export_document,
    parse_period,
    report_csv,
    timeline_csv,
)
from hub.web.api import Bad, archived_record, json_errors, ticket_id
from hub.web.auth import PRINCIPAL, require
from hub.web.common import HUB, error

REPORT_PATH = "/api/v1/reports"
CSV_PATH = "/api/v1/reports.csv"
EXPORT_PATH = "/api/v1/tickets/{ticket}/export"


def period_of(request: web.Request) -> Period:
    try:
        return parse_period(
            request.query.get("from"), request.query.get("to"), request.app[HUB].clock.now()
        )
    except PeriodError as exc:
        raise Bad(error(400, "invalid_period", str(exc))) from None


def groups_of(request: web.Request) -> tuple[str, ...]:
    """One group when ``group=`` names one, else all of them."""
    raw = request.query.get("group", "")
    if not raw:
        return GROUPS
    if raw not in GROUPS:
        raise Bad(error(400, "invalid_parameter", f"group must be one of {', '.join(GROUPS)}"))
    return (raw,)


async def report_of(request: web.Request, period: Period) -> Report:
    """Computed from the tickets, or a saved month's report once its tickets may be archived;
    409 for a period that only partly covers archived months (it would undercount)."""
    hub = request.app[HUB]
    try:
        return await period_report(
            hub.store, hub.archive, hub.sla, period, hub.clock.now(), list(hub.settings.units)
        )
    except PeriodError as exc:
        raise Bad(error(409, "archived_period", str(exc), **exc.values)) from None


def _csv(text: str, filename: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@json_errors
async def get_report(request: web.Request) -> web.Response:
    require(request, supervisor=True)
    groups, period = groups_of(request), period_of(request)
    report = await report_of(request, period)
    return web.json_response(report.as_dict(groups))


@json_errors
async def get_report_csv(request: web.Request) -> web.Response:
    require(request, supervisor=True)
    groups, period = groups_of(request), period_of(request)
    report = await report_of(request, period)
    suffix = f"-{groups[0]}" if len(groups) == 1 else ""
    return _csv(report_csv(report, groups), f"laporan-{period.label}{suffix}.csv")


@json_errors
async def export_ticket(request: web.Request) -> web.Response:
    """Everything the hub holds on one ticket, for a complaint file or an audit: its fields
    and its timeline (messages, replies with delivery states, notes, status and other
    audit events, in order, merged tickets' entries included). An archived ticket answers
    410 Gone saying where it is; with ``archived=1`` a supervisor gets its archived document
    back from the archive file."""
    hub = request.app[HUB]
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        return error(400, "invalid_parameter", "format must be json or csv")
    if request.query.get("archived") in ("1", "true"):
        return await _archived_export(request, fmt)
    tid = await ticket_id(request)
    ticket = await hub.store.get_ticket(tid)
    if ticket is None:
        return error(404, "not_found", "no such ticket")
    doc = export_document(ticket, hub.clock.now(), request[PRINCIPAL].name)
    if fmt == "csv":
        return _csv(timeline_csv(doc["timeline"]), f"tiket-{_file_part(ticket, tid)}.csv")
    return web.json_response(doc)


def _file_part(ticket: dict[str, Any], tid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(ticket.get("number") or tid))


async def _archived_export(request: web.Request, fmt: str) -> web.Response:
    """The archived document of a ticket, read back from its archive file (supervisors)."""
    require(request, supervisor=True)
    hub = request.app[HUB]
    ref = request.match_info["ticket"]
    record = await archived_record(request, ref)
    if record is None:
        return error(404, "not_found", f"no archived ticket {ref!r}")
    doc = await asyncio.to_thread(
        hub.archive_files.read, record["file"], int(record["offset"]), record["id"]
    )
    if doc is None:
        return error(404, "not_found", f"ticket {ref!r} is not in {record['file']}")
    if fmt == "csv":
        return _csv(timeline_csv(doc["timeline"]), f"tiket-{_file_part(doc['ticket'], ref)}.csv")
    return web.json_response(doc)


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(REPORT_PATH, get_report)
    r.add_get(CSV_PATH, get_report_csv)
    r.add_get(EXPORT_PATH, export_ticket)


_ERR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "Bad period or parameter",
        401: "Missing or bad token",
        403: "Supervisors only",
        404: "Not found",
        409: "The period partly covers archived months",
        410: "The ticket is archived",
    }
    return {
        str(c): {"description": names[c], "content": {"application/json": {"schema": _ERR}}}
        for c in codes
    }


_PERIOD_PARAMS: list[dict[str, Any]] = [
    {
        "name": "from",
        "in": "query",
        "schema": {"type": "string", "format": "date"},
        "description": "First day, YYYY-MM-DD in Asia/Jakarta (default: the 1st of the month)",
    },
    {
        "name": "to",
        "in": "query",
        "schema": {"type": "string", "format": "date"},
        "description": "Last day, inclusive (default: today); at most 400 days from `from`",
    },
    {
        "name": "group",
        "in": "query",
        "schema": {"type": "string", "enum": list(GROUPS)},
        "description": "Only this grouping's rows (default: all)",
    },
]
_CSV_OK = {"description": "CSV, UTF-8", "content": {"text/csv": {"schema": {"type": "string"}}}}

OPENAPI_PATHS: dict[str, Any] = {
    REPORT_PATH: {
        "get": {
            "summary": "Tickets created in a period, per unit, channel and category: volumes, "
            "first-response and resolution times (median, p90 by nearest rank), SLA "
            "compliance, reopen rate (supervisors)",
            "tags": ["supervision"],
            "parameters": _PERIOD_PARAMS,
            "responses": {
                "200": {
                    "description": "The report",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_errors(400, 401, 403, 409),
            },
        }
    },
    CSV_PATH: {
        "get": {
            "summary": "The same report as CSV, one row per group (supervisors)",
            "tags": ["supervision"],
            "parameters": _PERIOD_PARAMS,
            "responses": {"200": _CSV_OK, **_errors(400, 401, 403, 409)},
        }
    },
    EXPORT_PATH: {
        "get": {
            "summary": "One ticket with its full timeline and audit trail (JSON), or the "
            "timeline as CSV",
            "tags": ["tickets"],
            "parameters": [
                {
                    "name": "ticket",
                    "in": "path",
                    "required": True,
                    "description": "Ticket id (<contact>.<n>) or number (KMN-2026-000123)",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 80},
                },
                {
                    "name": "format",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["json", "csv"]},
                },
                {
                    "name": "archived",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["1"]},
                    "description": "An archived ticket's document, read back from its archive "
                    "file (supervisors)",
                },
            ],
            "responses": {
                "200": {
                    "description": "The ticket and its timeline",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **_errors(400, 401, 403, 404, 410),
            },
        }
    },
}
