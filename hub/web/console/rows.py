"""Tickets as the queue and search lists show them: one row each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from hub.ports import split_ticket_id
from hub.web.console.fmt import ms, ref
from hub.web.console.view import View

_SLA_RANK = {"": 0, "at_risk": 1, "breached": 2}


async def _row(view: View, tid: str, f: Mapping[str, str], name: str, now: float) -> dict[str, Any]:
    since = ms(f.get("reopened_at") or f.get("created_at"))
    updated = ms(f.get("updated_at"))
    priority = f.get("priority") or "normal"
    status = f.get("status", "open")
    channel = f.get("channel", "")
    # The observer's escalation flags: the worst level any timer reached.
    flags = (f.get("sla_first_response", ""), f.get("sla_resolution", ""))
    sla = max(flags, key=lambda v: _SLA_RANK.get(v, 0))
    return {
        "id": tid,
        "ref": ref(f, tid),
        "number": f.get("number", ""),
        "name": name or view.t("ticket.no_name"),
        "named": bool(name),
        "channel": channel,
        "channel_label": view.label("channel", channel),
        "priority": priority,
        "priority_label": view.label("priority", priority),
        "status": status,
        "status_label": view.label("status", status),
        "unit": f.get("unit", ""),
        "unit_label": view.unit_name(f.get("unit", "")),
        "assignee": await view.display(f.get("assignee", "")),
        "waiting": view.t.duration(now - since) if since else "",
        "waiting_full": view.t.when_full(since),
        "updated": view.t.when(updated, now),
        "updated_s": updated,
        "updated_full": view.t.when_full(updated),
        "sla": sla if status == "open" else "",
        "sla_label": view.t(f"queue.sla_{sla}") if sla and status == "open" else "",
    }


async def _fields(view: View, tids: list[str]) -> dict[str, Mapping[str, str]]:
    """Every ticket's fields: one pipelined read through the search index's summaries, or
    one read each on a hub without an index."""
    hub = view.hub
    index = getattr(hub, "search", None)
    if index is not None:
        return {str(t["id"]): t for t in await index.summaries(tids)}
    got = await asyncio.gather(*(hub.store.get_ticket_fields(t) for t in tids))
    return {t: f for t, f in zip(tids, got, strict=True) if f}


async def rows(view: View, tids: list[str]) -> list[dict[str, Any]]:
    """Tickets as the lists show them: number, citizen, channel, priority, times. The
    tickets are read in one round trip and their citizens' contacts concurrently, so a list
    costs a few round trips, not a few per row."""
    hub = view.hub
    now = time.time()
    fields = await _fields(view, tids)
    cids = list(dict.fromkeys(split_ticket_id(t)[0] for t in tids if t in fields))
    contacts = await asyncio.gather(*(hub.store.get_contact(c) for c in cids))
    names = {c: str(x.get("name", "")) if x else "" for c, x in zip(cids, contacts, strict=True)}
    return [
        await _row(view, tid, fields[tid], names[split_ticket_id(tid)[0]], now)
        for tid in tids
        if tid in fields
    ]
