"""The ticket page and the fragments the page re-fetches when something changes."""

from __future__ import annotations

from aiohttp import web

from hub.web.console.ticket_context import header_context, ticket_context
from hub.web.console.timeline import timeline, wants_all, window
from hub.web.console.view import View


async def ticket_page(request: web.Request) -> web.Response:
    view = await View.of(request)
    found = await view.visible_ticket()
    if found is None:
        return await view.not_found_or_archived()
    ctx = await ticket_context(view, found[0], wants_all(request))
    if ctx is None:
        return view.not_found()
    return view.render(
        "ticket.html", page="ticket", events_since=await view.hub.events.last_id(), **ctx
    )


async def timeline_partial(request: web.Request) -> web.Response:
    view = await View.of(request)
    found = await view.visible_ticket()
    ticket = await view.hub.store.get_ticket(found[0]) if found else None
    if ticket is None:
        return view.not_found()
    shown = window(view, ticket, wants_all(request))
    return view.render(
        "_timeline.html", timeline=await timeline(view, shown["ticket"]), older=shown["older"]
    )


async def header_partial(request: web.Request) -> web.Response:
    view = await View.of(request)
    found = await view.visible_ticket()
    ticket = await view.hub.store.get_ticket(found[0]) if found else None
    if found is None or ticket is None:
        return view.not_found()
    return view.render("_ticket_header.html", h=await header_context(view, found[0], ticket))
