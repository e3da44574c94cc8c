"""The agent console's pages: server-rendered HTML (Jinja2), a little JavaScript on top.

Pages read through the same services as the REST API (``hub.queue``, ``hub.actions``,
``hub.store``) and act as the signed-in person. Every form posts with the session's CSRF token
(checked by the auth middleware) and answers with a redirect back (post/redirect/get); the
outcome travels in a short-lived flash cookie. Templates autoescape everything: a citizen's
message, name or attachment name is always text, never markup, and the pages carry a strict
Content-Security-Policy (scripts and styles from /static only) as a second line of defence.

Language: ``?lang=en|id`` (kept in the ``hub_lang`` cookie), else the user's language, else
``console.default_language``.

Modules: ``view`` (request context, rendering, flash), ``auth_pages``, ``queue_pages``,
``search_pages``, ``ticket_pages`` (with ``ticket_context``, ``timeline``, ``contact_card``),
``ticket_forms`` and ``merge_forms`` (the ticket page's POST forms), ``dashboard_pages`` and
``report_pages`` (the supervisors'); ``rows`` and ``fmt`` are shared helpers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.web import auth
from hub.web.console.auth_pages import login_page, login_submit, logout, root
from hub.web.console.dashboard_pages import (
    dashboard_charts,
    dashboard_live,
    dashboard_page,
    replay_dead_letter,
)
from hub.web.console.queue_pages import claim_next, queue_page, queue_partial, set_presence
from hub.web.console.report_pages import reports_page
from hub.web.console.search_pages import search_page
from hub.web.console.ticket_forms import TICKET_ACTIONS, ticket_action
from hub.web.console.ticket_pages import header_partial, ticket_page, timeline_partial
from hub.web.console.view import STATIC_DIR, STATIC_URLS

__all__ = ["PAGES", "PAGE_PATHS", "TICKET_ACTIONS", "setup"]

PAGES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]], ...] = (
    ("GET", "/login", login_page),
    ("POST", "/login", login_submit),
    ("POST", "/logout", logout),
    ("GET", "/console", queue_page),
    ("GET", "/console/queue", queue_partial),
    ("POST", "/console/claim-next", claim_next),
    ("POST", "/console/presence", set_presence),
    ("GET", "/console/search", search_page),
    ("GET", "/console/dashboard", dashboard_page),
    ("GET", "/console/dashboard/live", dashboard_live),
    ("GET", "/console/dashboard/charts", dashboard_charts),
    ("POST", "/console/dead-letters/replay", replay_dead_letter),
    ("GET", "/console/reports", reports_page),
    ("GET", "/console/tickets/{ref}", ticket_page),
    ("GET", "/console/tickets/{ref}/timeline", timeline_partial),
    ("GET", "/console/tickets/{ref}/header", header_partial),
    *(("POST", f"/console/tickets/{{ref}}/{name}", ticket_action(action))
      for name, action in TICKET_ACTIONS.items()),
)  # fmt: skip
# The HTML routes (not part of the REST API, so not in its OpenAPI document).
PAGE_PATHS = frozenset({"/", "/static", *(path for _, path, _ in PAGES)})


def setup(app: web.Application) -> None:
    r = app.router
    static = r.add_static("/static/", STATIC_DIR, name="static", append_version=True)
    app[STATIC_URLS] = {
        "css": str(static.url_for(filename="console.css")),
        "js": str(static.url_for(filename="console.js")),
        "icon": str(static.url_for(filename="favicon.svg")),
        "dashboard_css": str(static.url_for(filename="dashboard.css")),
        "reports_css": str(static.url_for(filename="reports.css")),
    }
    for method, path, handler in PAGES:
        r.add_route(method, path, handler)
    if not app.get(auth.DEMO, False):  # in demo mode "/" is the demo's overview page
        r.add_get("/", root)
