"""A read-only overview page for demo mode: tickets forming and replies going out, live.

Only mounted by ``python -m hub run --demo`` (it shows citizens' messages without a login);
the agent console proper is its own issue.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from html import escape
from typing import Any

from aiohttp import web

from hub.web.common import HUB

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f4f6f8;color:#1c2733}
header{background:#0b4f8a;color:#fff;padding:12px 20px}header h1{margin:0;font-size:18px}
main{padding:16px 20px;display:grid;gap:12px}
.t{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0002}
.t h2{margin:0 0 6px;font-size:15px}.meta{color:#5a6b7b;font-size:12px}
.m{margin:6px 0;padding:6px 10px;border-radius:6px;max-width:70ch}
.in{background:#eef3f8}.out{background:#e3f6e8;margin-left:40px}
.s{font-size:11px;text-transform:uppercase;letter-spacing:.04em;padding:1px 6px;border-radius:4px;
background:#dde3ea}.s.delivered,.s.read{background:#bfe8c9}.s.failed{background:#f6c4c4}
.s.open{background:#ffe6a8}.s.resolved{background:#bfe8c9}
"""
# The page's one inline style is allowed by its hash; nothing else runs or loads.
_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _ts(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%H:%M:%S UTC")
    except ValueError:
        return ""


def _message(m: dict[str, Any]) -> str:
    cls = "out" if m.get("direction") == "out" else "in"
    text = m.get("text") or ""
    if not text and m.get("template"):
        text = f"[template {m['template'].get('name', '')}]"
    if m.get("kind") == "location" and m.get("location"):
        loc = m["location"]
        text = f"📍 {loc.get('latitude')}, {loc.get('longitude')} {loc.get('address', '')}"
    # the hub's own words stay outside the citizen's text, in a block of their own: a <bdi>
    # spanning lines (a mail's) does not keep an override from the words after it
    extra = (
        f'<div class="x">[{len(m["attachments"])} attachment(s)]</div>'
        if m.get("attachments")
        else ""
    )
    state = (
        f' <span class="s {escape(m["state"])}">{escape(m["state"])}</span>' if cls == "out" else ""
    )
    who = escape(m.get("display_name") or "") if cls == "in" else escape(m.get("author") or "hub")
    meta = f"<bdi>{who}</bdi> · {_ts(m.get('at', ''))} · {escape(m.get('channel', ''))}{state}"
    body = f"<bdi>{escape(text)}</bdi>"
    return (
        f'<div class="m {cls}"><div class="meta">{meta}</div>'
        f'<div class="msg-body">{body}</div>{extra}</div>'
    )


async def overview(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    items, total = await hub.store.list_tickets({}, limit=30)
    cards = []
    for t in items:
        full = await hub.store.get_ticket(t["id"]) or {}
        msgs = "".join(_message(m) for m in full.get("messages", []))
        cards.append(
            f'<section class="t"><h2>{escape(t.get("number", "(numbering…)"))} '
            f'<span class="s {escape(t.get("status", ""))}">{escape(t.get("status", ""))}</span>'
            f'</h2><div class="meta">contact {escape(t["contact_id"])} · unit '
            f"{escape(t.get('unit', ''))} · {escape(t.get('msg_count', '0'))} message(s)</div>"
            f"{msgs}</section>"
        )
    body = "".join(cards) or "<p>No tickets yet: run <code>python -m hub simulate</code>.</p>"
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="3"><title>Contact hub demo</title>'
        f"<style>{_STYLE}</style></head><body><header><h1>Kemnaker contact hub — demo "
        f"({total} tickets)</h1></header><main>{body}</main></body></html>"
    )
    return web.Response(text=html, content_type="text/html", headers=_HEADERS)


def setup(app: web.Application) -> None:
    app.router.add_get("/", overview)
