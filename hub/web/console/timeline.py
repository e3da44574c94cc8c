"""A ticket's timeline as the page shows it: messages, replies with their delivery states,
notes and labelled events, each marked with the ticket it came from after a merge.

A long timeline shows its latest ``LATEST`` entries, with a link to all of them at the top
(``?all=1``): a ticket with 500 messages would otherwise cost every view and every live
refresh (the page re-fetches the fragment on each event and while replies are pending) the
rendering of all 500. The live refresh keeps what the page shows: the fragment follows the
page's own ``?all=1`` (its Referer) as well as its own."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from hub.web.console.fmt import iso_s, numbers, safe_url
from hub.web.console.view import View
from hub.web.media_api import attachment_path

PENDING_STATES = ("queued", "sending", "retrying", "sent")
LATEST = 100  # entries a timeline shows until asked for all
# The notice above a shortened timeline (kept here until it joins hub/web/i18n.py's tables).
_OLDER = {
    "id": ("Menampilkan {shown} entri terakhir dari {total}.", "Tampilkan semua"),
    "en": ("Showing the latest {shown} of {total} entries.", "Show all"),
}
MERGE_EVENTS = {"merged": "from", "merged_into": "into"}
CHANNEL_EVENTS = frozenset({"message_retracted", "reaction", "identity_linked", "contact_linked"})


async def _event_label(view: View, e: Mapping[str, Any], refs: Mapping[str, str]) -> str:
    kind = str(e.get("type", ""))
    actor = await view.display(str(e.get("actor", "")))
    agent = await view.display(str(e.get("agent", "")))
    t = view.t
    if kind == "status":
        return t("ev.status", actor=actor, status=view.label("status", str(e.get("status", ""))))
    if kind == "transferred":
        unit = view.unit_name(str(e.get("unit", "")))
        if agent:
            return t("ev.transferred_agent", actor=actor, unit=unit, agent=agent)
        return t("ev.transferred", actor=actor, unit=unit)
    if kind == "priority":
        return t("ev.priority", actor=actor,
                 priority=view.label("priority", str(e.get("priority", ""))))  # fmt: skip
    if kind == "category":
        return t("ev.category", actor=actor, category=str(e.get("category", "")) or "—")
    if kind == "sla_escalated":
        timer = str(e.get("timer", ""))
        state = "breached" if e.get("state") == "breached" else "at_risk"
        due = view.t.when(float(e.get("due", 0)) / 1000, view.hub.clock.now())
        return t(f"ev.sla_{state}", timer=view.label("sla_timer", timer), due=due)
    if kind in CHANNEL_EVENTS:
        channel = view.label("channel", str(e.get("channel", "")))
        if kind == "reaction" and e.get("action") == "unreact":
            kind = "reaction_removed"
        return t(f"ev.{kind}", channel=channel, emoji=str(e.get("emoji", "")))
    if kind in MERGE_EVENTS:
        other = str(e.get(MERGE_EVENTS[kind], ""))
        return t(f"ev.{kind}", actor=actor, number=refs.get(other, other))
    if t.has(f"ev.{kind}"):
        return t(f"ev.{kind}", actor=actor, agent=agent)
    return t("ev.other", actor=actor, type=kind)


def _incoming(view: View, e: Mapping[str, Any], tid: str) -> dict[str, Any]:
    """A citizen's message. Attachments link to the provider's public URL, or else to the
    hub, which fetches them with the account's credentials (a media id, a stored file)."""
    source = str(e.get("from_ticket") or tid)
    attachments = [
        {"name": str(a.get("name") or a.get("content_type") or view.t("ticket.attachment")),
         "type": str(a.get("content_type", "")),
         "url": safe_url(a.get("url")) or attachment_path(source, str(e.get("id", "")), i)}
        for i, a in enumerate(e.get("attachments") or [])
        if isinstance(a, dict)
    ]  # fmt: skip
    loc = e.get("location") if isinstance(e.get("location"), dict) else None
    location = None
    if loc:
        lat, lon = float(loc.get("latitude", 0)), float(loc.get("longitude", 0))
        location = {
            "label": str(loc.get("label") or loc.get("address") or f"{lat:.5f}, {lon:.5f}"),
            "url": f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=17/{lat:.6f}/{lon:.6f}",
        }
    return {
        "kind": "in",
        "author": str(e.get("display_name") or "") or str(e.get("reply_address") or ""),
        "channel": view.label("channel", str(e.get("channel", ""))),
        "attachments": attachments,
        "location": location,
        "retracted": bool(e.get("retracted")),
    }


async def _outgoing(view: View, e: Mapping[str, Any]) -> dict[str, Any]:
    state = str(e.get("state", "queued"))
    tpl = e.get("template") if isinstance(e.get("template"), dict) else None
    return {
        "kind": "out",
        "author": (
            view.t("ticket.external", channel=view.label("channel", str(e.get("channel", ""))))
            if e.get("kind") == "external"
            else await view.display(str(e.get("author", "")))
        ),
        "auto": e.get("kind") == "auto",
        "state": state,
        "state_label": view.label("state", state),
        "pending": state in PENDING_STATES,
        "error_code": str(e.get("error_code") or ""),
        "error_message": str(e.get("error_message") or ""),
        "template": str(tpl.get("name", "")) if tpl else "",
    }


async def _kind(
    view: View, e: Mapping[str, Any], refs: Mapping[str, str], tid: str
) -> dict[str, Any]:
    direction = e.get("direction")
    if direction == "in":
        return _incoming(view, e, tid)
    if direction == "out":
        return await _outgoing(view, e)
    if e.get("type") == "note":
        return {"kind": "note", "author": await view.display(str(e.get("actor", "")))}
    return {"kind": "event", "label": await _event_label(view, e, refs)}


async def _refs(view: View, ticket: Mapping[str, Any]) -> dict[str, str]:
    """The numbers of every other ticket the timeline mentions, read once."""
    tids = set(ticket.get("merged_from") or [])
    for e in ticket.get("messages", []):
        tids.add(str(e.get("from_ticket") or ""))
        if e.get("type") in MERGE_EVENTS:
            tids.add(str(e.get(MERGE_EVENTS[str(e["type"])]) or ""))
    return await numbers(view.hub, tids)


def wants_all(request: web.Request) -> bool:
    """``?all=1`` on this request, or on the page that fetched it (its live refresh)."""
    if request.query.get("all") == "1":
        return True
    referer = urlsplit(request.headers.get("Referer", ""))
    page = request.path.removesuffix("/timeline")
    return referer.path == page and parse_qs(referer.query).get("all") == ["1"]


def window(view: View, ticket: Mapping[str, Any], show_all: bool) -> dict[str, Any]:
    """The ticket with only the entries shown, and what the notice above them says."""
    entries = list(ticket.get("messages", []))
    if show_all or len(entries) <= LATEST:
        return {"ticket": ticket, "older": None}
    text, link = _OLDER.get(view.lang, _OLDER["id"])
    older = {"text": text.format(shown=LATEST, total=len(entries)), "link": link,
             "count": len(entries) - LATEST}  # fmt: skip
    return {"ticket": {**ticket, "messages": entries[-LATEST:]}, "older": older}


async def timeline(view: View, ticket: Mapping[str, Any]) -> list[dict[str, Any]]:
    now = time.time()
    refs = await _refs(view, ticket)
    items = []
    for e in ticket.get("messages", []):
        at = iso_s(e.get("at"))
        source = str(e.get("from_ticket") or "")
        item: dict[str, Any] = {
            "id": str(e.get("id", "")),
            "when": view.t.when(at, now),
            "when_full": view.t.when_full(at),
            "iso": str(e.get("at", "")),
            "text": str(e.get("text") or ""),
            "from_ref": refs.get(source, source) if source else "",
        }
        item.update(await _kind(view, e, refs, str(ticket.get("id", ""))))
        items.append(item)
    return items
