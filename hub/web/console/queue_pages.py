"""The queue page: waiting tickets per unit, my tickets, claim next, my presence."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.web.console.fmt import ticket_path
from hub.web.console.rows import rows
from hub.web.console.view import View, safe_next

NEXT_PER_UNIT = 8
PRESENCE_STATES = ("online", "away", "offline")


async def _queue_context(view: View) -> dict[str, Any]:
    hub, who = view.hub, view.me
    units = hub.queue.units_for(who)
    counts = await hub.queue.queue.waiting_counts(units)
    cards = []
    for unit in units:
        tids = await hub.queue.queue.waiting(unit, 0, NEXT_PER_UNIT)
        cards.append(
            {
                "key": unit,
                "name": view.unit_name(unit),
                "waiting": counts[unit],
                "rows": await rows(view, tids),
                "more": max(0, counts[unit] - len(tids)),
            }
        )
    cards.sort(key=lambda c: (-counts[str(c["key"])], str(c["name"])))
    mine = await rows(view, await hub.queue.queue.held_by(who.name))
    return {"cards": cards, "mine": mine, "total_waiting": sum(counts.values())}


async def _presence(view: View) -> str:
    return (await view.hub.queue.queue.presence()).get(view.me.name, "offline")


async def queue_page(request: web.Request) -> web.Response:
    view = await View.of(request)
    ctx = await _queue_context(view)
    return view.render(
        "queue.html",
        page="queue",
        events_since=await view.hub.events.last_id(),
        presence=await _presence(view),
        presence_states=PRESENCE_STATES,
        **ctx,
    )


async def queue_partial(request: web.Request) -> web.Response:
    view = await View.of(request)
    return view.render("_queue.html", **await _queue_context(view))


async def claim_next(request: web.Request) -> web.Response:
    view = await View.of(request)
    hub = view.hub
    got = await hub.queue.claim_next(view.me)
    if got is None:
        return view.redirect("/console", view.t("flash.queue_empty"))
    fields = await hub.store.get_ticket_fields(got.ticket_id)
    return view.redirect(ticket_path(fields, got.ticket_id))


async def set_presence(request: web.Request) -> web.Response:
    view = await View.of(request)
    form = await request.post()
    state = str(form.get("state", ""))
    back = safe_next(str(form.get("back", "")))
    if state not in PRESENCE_STATES:
        return view.redirect(back, view.t("err.bad_request"), "error")
    await view.hub.queue.set_presence(view.me, state)
    return view.redirect(back, view.t("flash.presence_set", state=view.label("presence", state)))
