"""The search page: the search index when the hub has one, else a simple search over the
ticket lists (number, citizen name, filters, created-date range)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from hub.web.console.fmt import ms
from hub.web.console.rows import rows
from hub.web.console.view import View
from hub.web.i18n import JAKARTA
from hub.web.search_api import BadParameter, query_from_params

STATUSES = ("open", "resolved", "closed")
MAX_FOUND = 50


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        return None


def _created_range(day_from: date | None, day_to: date | None) -> tuple[float, float]:
    """Whole days in Jakarta time as [lo, hi) epoch seconds."""
    lo = datetime.combine(day_from, datetime.min.time(), JAKARTA).timestamp() if day_from else 0
    hi = (
        datetime.combine(day_to + timedelta(days=1), datetime.min.time(), JAKARTA).timestamp()
        if day_to
        else float("inf")
    )
    return lo, hi


async def _search_fallback(
    view: View, q: str, filters: dict[str, str], units: list[str], day_from: date | None,
    day_to: date | None,
) -> list[str]:  # fmt: skip
    """Without a search index: a ticket number or id, else the newest tickets matching the
    filters whose number or citizen name contains the words."""
    hub = view.hub
    q = q.strip()
    if q:
        tid = await hub.store.resolve_ticket_ref(q) or await hub.store.resolve_ticket_ref(q.upper())
        if tid is not None:
            return [tid]
    lo, hi = _created_range(day_from, day_to)
    words = q.casefold().split()
    found: list[tuple[float, str]] = []
    names: dict[str, str] = {}
    for unit in units:
        items, _ = await hub.store.list_tickets({**filters, "unit": unit}, 200)
        for t in items:
            if not lo <= ms(t.get("created_at")) < hi:
                continue
            if words:
                cid = str(t["contact_id"])
                if cid not in names:
                    contact = await hub.store.get_contact(cid)
                    names[cid] = str(contact.get("name", "")) if contact else ""
                hay = f"{t.get('number', '')} {names[cid]}".casefold()
                if not all(w in hay for w in words):
                    continue
            found.append((ms(t.get("updated_at")), str(t["id"])))
    found.sort(reverse=True)
    return [tid for _, tid in found[:MAX_FOUND]]


async def _find(
    view: View, p: MultiMapping[str], units: list[str], status: str, channel: str
) -> tuple[list[str], str]:
    """Ticket ids for the query (through the index when there is one) and an error text."""
    index = getattr(view.hub, "search", None)  # a hub without a search index: the simple search
    if index is None:
        filters = {"status": status, "channel": channel}
        day_from, day_to = _day(p.get("from", "")), _day(p.get("to", ""))
        q = p.get("q", "")[:200]
        return await _search_fallback(view, q, filters, units, day_from, day_to), ""
    try:
        query = query_from_params({**p, "unit": "", "limit": str(MAX_FOUND), "offset": "0"})
    except BadParameter as exc:
        return [], view.t("err.invalid_parameter", detail=str(exc))
    if len(units) != 1:  # an agent's units: one search over them all (as the API does)
        got, _ = await index.search(dataclasses.replace(query, units=tuple(units)))
        return got, ""
    got, _ = await index.search(dataclasses.replace(query, unit=units[0]))
    return got, ""


async def search_page(request: web.Request) -> web.Response:
    view = await View.of(request)
    hub, who = view.hub, view.me
    p = request.query
    status = p.get("status", "") if p.get("status", "") in STATUSES else ""
    unit = p.get("unit", "")
    channel = p.get("channel", "")[:40]
    visible_units = hub.queue.units_for(who)
    if unit and unit not in visible_units:
        unit = ""
    units = [unit] if unit else ([""] if who.sees_all_units else visible_units)
    asked = any(p.get(k) for k in ("q", "status", "unit", "channel", "from", "to"))
    tids, error = await _find(view, p, units, status, channel) if asked else ([], "")
    found = [r for r in await rows(view, tids) if who.can_see(str(r["unit"]))]
    if len(units) > 1:  # several units' pages merged: newest activity first again
        found.sort(key=lambda r: float(r["updated_s"]), reverse=True)
    return view.render("search.html", page="search", q=p.get("q", "")[:200],
                       status_filter=status, unit=unit, channel=channel,
                       day_from=p.get("from", ""), day_to=p.get("to", ""), asked=asked,
                       error=error, rows=found, basic=getattr(hub, "search", None) is None,
                       **_choices(view, visible_units))  # fmt: skip


def _choices(view: View, visible_units: list[str]) -> dict[str, Any]:
    channels = sorted({c for c, _ in view.hub.channels.templates} | {"whatsapp"})
    return {
        "statuses": [(s, view.label("status", s)) for s in STATUSES],
        "units": [(u, view.unit_name(u)) for u in visible_units],
        "channels": [(c, view.label("channel", c)) for c in channels],
    }
