"""``build_app``: one aiohttp application, composed of one module per concern."""

from __future__ import annotations

from aiohttp import web

from hub.runtime import Hub
from hub.web import (
    api,
    auth,
    console,
    console_api,
    demo_page,
    live_api,
    media_api,
    openapi,
    ops,
    reports_api,
    search_api,
    webform,
    webhooks,
)
from hub.web.common import HUB, request_context


def build_app(hub: Hub, demo: bool = False) -> web.Application:
    app = web.Application(
        middlewares=[request_context, auth.authenticate],
        client_max_size=hub.settings.hub.max_body_bytes,
    )
    app[HUB] = hub
    app[auth.DEMO] = demo
    auth.setup(app)
    webhooks.setup(app)
    api.setup(app)
    media_api.setup(app)
    console_api.setup(app)
    console.setup(app)
    webform.setup(app)  # after the console: shares its static route and templates
    live_api.setup(app)
    search_api.setup(app)
    reports_api.setup(app)
    openapi.setup(app)
    ops.setup(app)
    if demo:
        demo_page.setup(app)
    return app
