"""What the ticket page shows: the header (status, claim, WhatsApp window), the composer
(free text, templates or nothing, canned responses) and the side cards' choices."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hub.queue import PRIORITY_RANK
from hub.web.console.contact_card import contact_card
from hub.web.console.fmt import ms, numbers, ref
from hub.web.console.timeline import timeline, window
from hub.web.console.view import View

CLOSING_S = 2 * 3600


async def _window(view: View, tid: str) -> dict[str, Any]:
    """The reply window as the header shows it; ``human`` is Instagram's extension, where the
    countdown runs to the hard close."""
    window = await view.hub.replies.window(tid)
    if window.mode == "human_agent":
        left, wstate = int(window.human_agent_seconds_left), "human"
    else:
        left = int(window.seconds_left)
        wstate = "closed" if left <= 0 else "closing" if left < CLOSING_S else "open"
    hh, rest = divmod(max(0, left), 3600)
    channel_label = view.label("channel", window.channel)
    return {
        "state": wstate,
        "label": view.t(f"window.{wstate}", channel=channel_label),
        "seconds_left": left,
        "left_text": f"{hh:02d}:{rest // 60:02d}:{rest % 60:02d}",
        "channel": window.channel,
        "channel_label": channel_label,
        # Channels without a real window (e-mail, Telegram, the portal) show no badge.
        "shown": window.free_text_hours < 24 * 365,
    }


async def _claim(view: View, tid: str, now: float) -> dict[str, Any] | None:
    held = await view.hub.queue.queue.holder(tid)
    if not held:
        return None
    agent, until_ms = held
    return {
        "agent": await view.display(agent),
        "mine": agent == view.me.name,
        "until": view.t.when(until_ms / 1000, now),
        "lapsed": until_ms < now * 1000,
    }


async def header_context(view: View, tid: str, ticket: Mapping[str, Any]) -> dict[str, Any]:
    now = time.time()
    status = str(ticket.get("status", "open"))
    priority = str(ticket.get("priority") or "normal")
    channel = str(ticket.get("channel", ""))
    created = ms(ticket.get("created_at"))
    into = str(ticket.get("merged_into") or "")
    return {
        "tid": tid,
        "ref": ref(ticket, tid),
        "number": str(ticket.get("number") or tid),
        "status": status,
        "status_label": view.label("status", status),
        "priority": priority,
        "priority_label": view.label("priority", priority),
        "category": str(ticket.get("category", "")),
        "unit": str(ticket.get("unit", "")),
        "unit_label": view.unit_name(str(ticket.get("unit", ""))),
        "channel_label": view.label("channel", channel),
        "created": view.t.when(created, now),
        "created_full": view.t.when_full(created),
        "assignee": await view.display(str(ticket.get("assignee", ""))),
        "claim": await _claim(view, tid, now),
        "merged_into": (await numbers(view.hub, [into]))[into] if into else "",
        "window": await _window(view, tid),
    }


def _templates(view: View, ch: str, acct: str) -> list[dict[str, Any]]:
    return [
        {"name": spec.name, "description": spec.description, "language": spec.language,
         "fields": [v for v in spec.variables if v != "ticket_number"],
         "auto": [v for v in spec.variables if v == "ticket_number"]}
        for spec in sorted(view.hub.channels.templates.get((ch, acct), {}).values(),
                           key=lambda s: s.name)
    ]  # fmt: skip


def _canned(view: View, values: Mapping[str, str]) -> list[dict[str, str]]:
    canned = []
    for key, spec in sorted(view.hub.settings.canned.items()):
        text = spec.text_en if view.lang == "en" else spec.text_id
        for k, v in values.items():
            text = text.replace("{" + k + "}", v)
        title = spec.title_en if view.lang == "en" else spec.title_id
        canned.append({"key": key, "title": title, "text": text})
    return canned


def _composer(
    view: View, ticket: Mapping[str, Any], header: Mapping[str, Any], name: str
) -> dict[str, Any]:
    """Free text (tagged HUMAN_AGENT in Instagram's extension), an approved template (WhatsApp
    window closed) or nothing (ticket closed, or Instagram past its 7 days)."""
    ch, acct = str(ticket.get("reply_channel", "")), str(ticket.get("reply_account", ""))
    channel = view.hub.channels.get(ch, acct)
    window_closed = header["window"]["state"] == "closed" and channel is not None
    needs_template = (
        window_closed and channel is not None and channel.window.template_required_outside
    )
    past_final = window_closed and channel is not None and channel.window.human_agent_hours > 0
    closed = header["status"] == "closed"
    values = {"name": name, "ticket_number": header["number"],
              "agent": view.me.display_name or view.me.name}  # fmt: skip
    canned = _canned(view, values)
    asked = view.request.query.get("canned", "")
    return {
        "mode": (
            "closed_ticket"
            if closed
            else "closed_window"
            if past_final
            else "template"
            if needs_template
            else "text"
        ),
        "human_agent": header["window"]["state"] == "human",
        "can_attach": channel is not None and channel.window.attachments,
        "templates": _templates(view, ch, acct),
        "canned": canned,
        "prefill": next((c["text"] for c in canned if c["key"] == asked), ""),
        "via": view.t(
            "reply.via",
            channel=view.label("channel", ch),
            account=acct,
            to=str(ticket.get("reply_to", "")),
        ),
        "reply_sent": (view.flash or {}).get("code") == "reply_sent",
    }


async def _choices(view: View) -> dict[str, Any]:
    settings = view.hub.settings
    users = await view.users()
    return {
        "priorities": [(p, view.label("priority", p)) for p in PRIORITY_RANK],
        "categories": sorted({r.category for r in settings.routing if r.category}),
        "units": [(u, view.unit_name(u)) for u in sorted(settings.units)],
        "agents": sorted(
            ((u.username, u.display_name) for u in users.values() if not u.disabled),
        ),
    }


async def _via_options(view: View, ticket: Mapping[str, Any]) -> list[dict[str, str]]:
    """Other enabled channels that reach the citizen, for "send via" in the composer."""
    current = str(ticket.get("reply_channel", ""))
    contact = await view.hub.store.get_contact(str(ticket["contact_id"])) or {}
    enabled = view.hub.channels.names()
    found = sorted(
        {c for i in contact.get("identities", []) for c in i.get("channels", [])}
        & enabled - {current}
    )
    return [{"value": c, "label": view.label("channel", c)} for c in found]


async def ticket_context(view: View, tid: str, show_all: bool = False) -> dict[str, Any] | None:
    ticket = await view.hub.store.get_ticket(tid)
    if ticket is None:
        return None
    shown = window(view, ticket, show_all)
    header = await header_context(view, tid, ticket)
    contact = await contact_card(view, tid, str(ticket["contact_id"]))
    viewers = await view.hub.queue.queue.viewers(tid)
    others_viewing = {
        await view.display(a): s for a, s in sorted(viewers.items()) if a != view.me.name
    }
    return {
        "h": header,
        "ticket": ticket,
        "timeline": await timeline(view, shown["ticket"]),
        "older": shown["older"],
        "contact": contact,
        "via_options": await _via_options(view, ticket),
        **_composer(view, ticket, header, str(contact["name"])),
        "viewing": [n for n, s in others_viewing.items() if s == "viewing"],
        "typing": [n for n, s in others_viewing.items() if s == "typing"],
        **await _choices(view),
    }
