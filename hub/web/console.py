"""The agent console's pages: server-rendered HTML (Jinja2), a little JavaScript on top.

Pages read through the same services as the REST API (``hub.queue``, ``hub.actions``,
``hub.store``) and act as the signed-in person. Every form posts with the session's CSRF token
(checked by the auth middleware) and answers with a redirect back (post/redirect/get); the
outcome travels in a short-lived flash cookie. Templates autoescape everything: a citizen's
message, name or attachment name is always text, never markup, and the pages carry a strict
Content-Security-Policy (scripts and styles from /static only) as a second line of defence.

Language: ``?lang=en|id`` (kept in the ``hub_lang`` cookie), else the user's language, else
``console.default_language``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from hub.accounts import AuthError, Principal, User
from hub.ports import split_ticket_id
from hub.queue import PRIORITY_RANK, QueueError
from hub.replies import ReplyRefused
from hub.ticket_actions import ActionError
from hub.web import auth
from hub.web.common import HUB
from hub.web.i18n import JAKARTA, LANGS, Translator
from hub.web.search_api import BadParameter, query_from_params

if TYPE_CHECKING:
    from hub.runtime import Hub

LANG_COOKIE = "hub_lang"
FLASH_COOKIE = "hub_flash"
LOGIN_CSRF_COOKIE = "hub_login_csrf"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_URLS: web.AppKey[dict[str, str]] = web.AppKey("console_static", dict)
NEXT_PER_UNIT = 8
CLOSING_S = 2 * 3600
PENDING_STATES = ("queued", "sending", "retrying", "sent")
PRESENCE_STATES = ("online", "away", "offline")
MAX_REPLY = 4096
MAX_NOTE = 8000
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("hub", "web/templates"),
    autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


class Refused(Exception):
    """A console form that cannot be carried out: the flash says why (already translated)."""


def safe_next(raw: str, default: str = "/console") -> str:
    """Only same-site paths: no scheme, no host, no ``//evil`` or ``/\\evil``."""
    if not raw.startswith("/") or raw.startswith(("//", "/\\")) or any(c in raw for c in "\r\n"):
        return default
    return raw


def _b64(data: dict[str, str]) -> str:
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(value: str) -> dict[str, str] | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): str(v) for k, v in data.items()}


def _secure(request: web.Request) -> bool:
    return request.app[HUB].settings.hub.public_url.startswith("https://")


def _ref(fields: Mapping[str, str], tid: str) -> str:
    return fields.get("number") or tid


def _ms(value: str | None) -> float:
    """A stored epoch-milliseconds field as epoch seconds (0 when missing)."""
    try:
        return float(value or 0) / 1000
    except ValueError:
        return 0.0


def _iso_s(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def _safe_url(url: Any) -> str:
    """Links from providers only when they are plain web links (never ``javascript:``)."""
    u = str(url or "")
    return u if u.startswith(("https://", "http://")) else ""


@dataclasses.dataclass
class View:
    """One request's console context: who, in which language, and the pending flash."""

    request: web.Request
    hub: Hub
    who: Principal | None
    lang: str
    t: Translator
    set_lang: bool = False
    flash: dict[str, str] | None = None
    _users: dict[str, User] | None = None

    @classmethod
    async def of(cls, request: web.Request, who: Principal | None = None) -> View:
        hub = request.app[HUB]
        if who is None:
            who = request.get(auth.PRINCIPAL)
        asked = request.query.get("lang", "")
        cookie = request.cookies.get(LANG_COOKIE, "")
        if asked in LANGS:
            lang, set_lang = asked, True
        elif cookie in LANGS:
            lang, set_lang = cookie, False
        elif who is not None and who.language in LANGS:
            lang, set_lang = who.language, False
        else:
            lang, set_lang = hub.settings.console.default_language, False
        flash = (
            _unb64(request.cookies.get(FLASH_COOKIE, ""))
            if FLASH_COOKIE in request.cookies
            else None
        )
        return cls(request, hub, who, lang, Translator(lang), set_lang, flash)

    # -- names -------------------------------------------------------------------------

    async def users(self) -> dict[str, User]:
        if self._users is None:
            self._users = {u.username: u for u in await self.hub.users.all()}
        return self._users

    async def display(self, username: str) -> str:
        if not username:
            return ""
        if username == "hub":
            return self.t("actor.hub")
        user = (await self.users()).get(username)
        return user.display_name if user and user.display_name else username

    def unit_name(self, unit: str) -> str:
        cfg = self.hub.settings.units.get(unit)
        if cfg is None:
            return unit
        return cfg.name_en if self.lang == "en" else cfg.name_id

    def label(self, group: str, value: str) -> str:
        key = f"{group}.{value}"
        return self.t(key) if self.t.has(key) else value

    def error_text(self, code: str, message: str) -> str:
        key = f"err.{code}"
        return self.t(key) if self.t.has(key) else self.t("err.generic", detail=message)

    # -- responses ---------------------------------------------------------------------

    def base_context(self) -> dict[str, Any]:
        rel = self.request.rel_url
        who = self.who
        return {
            "t": self.t,
            "lang": self.lang,
            "lang_urls": {lang: str(rel.update_query(lang=lang)) for lang in LANGS},
            "who": who,
            "csrf": who.csrf if who else "",
            "flash": self.flash,
            "static": self.request.app[STATIC_URLS],
            "role_label": self.label("role", who.role) if who else "",
            "path": rel.path,
        }

    def render(self, name: str, status: int = 200, **ctx: Any) -> web.Response:
        html = ENV.get_template(name).render(**self.base_context(), **ctx)
        resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
        self.finish(resp)
        return resp

    def finish(self, resp: web.StreamResponse, keep_flash: bool = False) -> None:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        if self.set_lang:
            resp.set_cookie(
                LANG_COOKIE, self.lang, max_age=365 * 86400, path="/", samesite="Lax",
                httponly=True, secure=_secure(self.request),
            )  # fmt: skip
        if self.flash is not None and not keep_flash:
            resp.del_cookie(FLASH_COOKIE, path="/")

    def redirect(
        self, location: str, flash: str = "", kind: str = "ok", code: str = ""
    ) -> web.Response:
        resp = web.Response(status=303, headers={"Location": location})
        self.finish(resp, keep_flash=bool(flash))
        if flash:
            resp.set_cookie(
                FLASH_COOKIE, _b64({"kind": kind, "text": flash, "code": code}), max_age=120,
                path="/", samesite="Lax", httponly=True, secure=_secure(self.request),
            )  # fmt: skip
        return resp

    def not_found(self) -> web.Response:
        return self.render(
            "error.html",
            404,
            page="error",
            title=self.t("err.not_found_title"),
            message=self.t("err.not_found"),
        )


def _who(view: View) -> Principal:
    assert view.who is not None  # console routes are behind the auth middleware
    return view.who


# -- login and logout ------------------------------------------------------------------


def _login_form(
    view: View, next_url: str, error: str = "", username: str = "", status: int = 200,
    notice: str = "",
) -> web.Response:  # fmt: skip
    # One token per browser, kept while it lives: a second tab, or a stray request that
    # lands on /login (a favicon), must not invalidate the form already on screen.
    token = view.request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{32}", token):
        token = secrets.token_urlsafe(24)
    resp = view.render(
        "login.html", status, page="login", next_url=next_url, error=error, username=username,
        login_csrf=token, notice=notice,
    )  # fmt: skip
    resp.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login", samesite="Strict", httponly=True,
        secure=_secure(view.request),
    )  # fmt: skip
    return resp


async def _session_principal(request: web.Request) -> Principal | None:
    sid = request.cookies.get(auth.COOKIE)
    return await request.app[HUB].auth.from_session(sid) if sid else None


async def login_page(request: web.Request) -> web.Response:
    who = await _session_principal(request)
    view = await View.of(request, who)
    next_url = safe_next(request.query.get("next", ""))
    if who is not None:
        return view.redirect(next_url)
    notice = view.t("login.signed_out") if request.query.get("bye") == "1" else ""
    return _login_form(view, next_url, notice=notice)


async def login_submit(request: web.Request) -> web.Response:
    view = await View.of(request, None)
    form = await request.post()
    next_url = safe_next(str(form.get("next", "")))
    username = str(form.get("username", "")).strip()[:64]
    password = str(form.get("password", ""))[:200]
    presented = str(form.get("csrf_token", ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not presented or not expected or not hmac.compare_digest(presented, expected):
        return _login_form(view, next_url, view.t("login.expired"), username, 403)
    hub = request.app[HUB]
    try:
        sid, _csrf, user = await hub.auth.login(username, password)
    except AuthError as exc:
        key = "login.locked" if exc.code == "locked" else "login.failed"
        return _login_form(view, next_url, view.t(key), username, 401)
    resp = view.redirect(next_url)
    auth.set_session_cookie(request, resp, sid)
    resp.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    with contextlib.suppress(Exception):  # presence is a convenience; never fail a login on it
        await hub.queue.set_presence(user.principal("session"), "online")
    return resp


async def logout(request: web.Request) -> web.Response:
    view = await View.of(request)
    hub = request.app[HUB]
    sid = request.cookies.get(auth.COOKIE)
    if view.who is not None and view.who.via == "session":
        with contextlib.suppress(Exception):
            await hub.queue.set_presence(view.who, "offline")
    if sid:
        await hub.auth.logout(sid)
    resp = view.redirect("/login?bye=1")
    resp.del_cookie(auth.COOKIE, path="/")
    return resp


async def root(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console")


# -- the queue -------------------------------------------------------------------------


async def _rows(view: View, tids: list[str]) -> list[dict[str, Any]]:
    """Tickets as the lists show them: number, citizen, channel, priority, times."""
    hub = view.hub
    names: dict[str, str] = {}
    now = time.time()
    out = []
    for tid in tids:
        f = await hub.store.get_ticket_fields(tid)
        if not f:
            continue
        cid = split_ticket_id(tid)[0]
        if cid not in names:
            contact = await hub.store.get_contact(cid)
            names[cid] = str(contact.get("name", "")) if contact else ""
        since = _ms(f.get("reopened_at") or f.get("created_at"))
        updated = _ms(f.get("updated_at"))
        priority = f.get("priority") or "normal"
        status = f.get("status", "open")
        channel = f.get("channel", "")
        out.append(
            {
                "id": tid,
                "ref": _ref(f, tid),
                "number": f.get("number", ""),
                "name": names[cid] or view.t("ticket.no_name"),
                "named": bool(names[cid]),
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
            }
        )
    return out


async def _queue_context(view: View) -> dict[str, Any]:
    hub, who = view.hub, _who(view)
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
                "rows": await _rows(view, tids),
                "more": max(0, counts[unit] - len(tids)),
            }
        )
    cards.sort(key=lambda c: (-counts[str(c["key"])], str(c["name"])))
    mine = await _rows(view, await hub.queue.queue.held_by(who.name))
    return {"cards": cards, "mine": mine, "total_waiting": sum(counts.values())}


async def _presence(view: View) -> str:
    return (await view.hub.queue.queue.presence()).get(_who(view).name, "offline")


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
    got = await hub.queue.claim_next(_who(view))
    if got is None:
        return view.redirect("/console", view.t("flash.queue_empty"))
    fields = await hub.store.get_ticket_fields(got.ticket_id)
    return view.redirect(f"/console/tickets/{quote(_ref(fields, got.ticket_id))}")


async def set_presence(request: web.Request) -> web.Response:
    view = await View.of(request)
    form = await request.post()
    state = str(form.get("state", ""))
    back = safe_next(str(form.get("back", "")))
    if state not in PRESENCE_STATES:
        return view.redirect(back, view.t("err.bad_request"), "error")
    await view.hub.queue.set_presence(_who(view), state)
    return view.redirect(back, view.t("flash.presence_set", state=view.label("presence", state)))


# -- a ticket --------------------------------------------------------------------------


async def _resolve(view: View) -> tuple[str, dict[str, str]] | None:
    """The ticket in the path, if it exists and this person may see it."""
    ref = view.request.match_info["ref"]
    tid = await view.hub.store.resolve_ticket_ref(ref)
    if tid is None:
        return None
    try:
        fields = await view.hub.actions.visible(_who(view), tid)
    except ActionError:
        return None
    return tid, fields


async def _event_label(view: View, e: Mapping[str, Any]) -> str:
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
    if t.has(f"ev.{kind}"):
        return t(f"ev.{kind}", actor=actor, agent=agent)
    return t("ev.other", actor=actor, type=kind)


async def _timeline(view: View, ticket: Mapping[str, Any]) -> list[dict[str, Any]]:
    now = time.time()
    items = []
    for e in ticket.get("messages", []):
        at = _iso_s(e.get("at"))
        item: dict[str, Any] = {
            "id": str(e.get("id", "")),
            "when": view.t.when(at, now),
            "when_full": view.t.when_full(at),
            "iso": str(e.get("at", "")),
            "text": str(e.get("text") or ""),
        }
        direction = e.get("direction")
        if direction == "in":
            attachments = [
                {"name": str(a.get("name") or a.get("content_type") or view.t("ticket.attachment")),
                 "type": str(a.get("content_type", "")), "url": _safe_url(a.get("url"))}
                for a in e.get("attachments") or []
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
            item.update(
                kind="in",
                author=str(e.get("display_name") or "") or str(e.get("reply_address") or ""),
                channel=view.label("channel", str(e.get("channel", ""))),
                attachments=attachments,
                location=location,
            )
        elif direction == "out":
            state = str(e.get("state", "queued"))
            tpl = e.get("template") if isinstance(e.get("template"), dict) else None
            item.update(
                kind="out",
                author=await view.display(str(e.get("author", ""))),
                auto=e.get("kind") == "auto",
                state=state,
                state_label=view.label("state", state),
                pending=state in PENDING_STATES,
                error_code=str(e.get("error_code") or ""),
                error_message=str(e.get("error_message") or ""),
                template=str(tpl.get("name", "")) if tpl else "",
            )
        elif e.get("type") == "note":
            item.update(kind="note", author=await view.display(str(e.get("actor", ""))))
        else:
            item.update(kind="event", label=await _event_label(view, e))
        items.append(item)
    return items


async def _header_context(view: View, tid: str, ticket: Mapping[str, Any]) -> dict[str, Any]:
    hub, who = view.hub, _who(view)
    now = time.time()
    window = await hub.replies.window(tid)
    left = int(window.seconds_left)
    wstate = "closed" if left <= 0 else "closing" if left < CLOSING_S else "open"
    hh, rest = divmod(max(0, left), 3600)
    held = await hub.queue.queue.holder(tid)
    claim = None
    if held:
        agent, until_ms = held
        claim = {
            "agent": await view.display(agent),
            "mine": agent == who.name,
            "until": view.t.when(until_ms / 1000, now),
            "lapsed": until_ms < now * 1000,
        }
    status = str(ticket.get("status", "open"))
    priority = str(ticket.get("priority") or "normal")
    channel = str(ticket.get("channel", ""))
    created = _ms(ticket.get("created_at"))
    return {
        "tid": tid,
        "ref": _ref(ticket, tid),
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
        "claim": claim,
        "window": {
            "state": wstate,
            "label": view.t(f"window.{wstate}"),
            "seconds_left": left,
            "left_text": f"{hh:02d}:{rest // 60:02d}:{rest % 60:02d}",
            "channel": window.channel,
        },
    }


async def _ticket_context(view: View, tid: str) -> dict[str, Any] | None:
    hub, who = view.hub, _who(view)
    ticket = await hub.store.get_ticket(tid)
    if ticket is None:
        return None
    header = await _header_context(view, tid, ticket)
    cid = str(ticket["contact_id"])
    contact = await hub.store.get_contact(cid) or {}
    name = str(contact.get("name", ""))
    identities = [
        {"kind": str(i.get("kind", "")), "value": str(i.get("value", "")),
         "channels": ", ".join(view.label("channel", c) for c in i.get("channels", []))}
        for i in contact.get("identities", [])
    ]  # fmt: skip
    others = []
    for other in list(contact.get("tickets", []))[:12]:
        if other == tid:
            continue
        f = await hub.store.get_ticket_fields(other)
        if f and who.can_see(f.get("unit", "")):
            st = f.get("status", "")
            others.append({"ref": _ref(f, other), "status": st,
                           "status_label": view.label("status", st)})  # fmt: skip
    ch, acct = str(ticket.get("reply_channel", "")), str(ticket.get("reply_account", ""))
    channel = hub.channels.get(ch, acct)
    window = header["window"]
    needs_template = (
        window["state"] == "closed"
        and channel is not None
        and channel.window.template_required_outside
    )
    status = header["status"]
    mode = "closed_ticket" if status == "closed" else "template" if needs_template else "text"
    templates = [
        {"name": spec.name, "description": spec.description, "language": spec.language,
         "fields": [v for v in spec.variables if v != "ticket_number"],
         "auto": [v for v in spec.variables if v == "ticket_number"]}
        for spec in sorted(hub.channels.templates.get((ch, acct), {}).values(),
                           key=lambda s: s.name)
    ]  # fmt: skip
    values = {
        "name": name or view.t("ticket.no_name"),
        "ticket_number": header["number"],
        "agent": who.display_name or who.name,
    }
    canned = []
    for key, spec in sorted(hub.settings.canned.items()):
        text = spec.text_en if view.lang == "en" else spec.text_id
        for k, v in values.items():
            text = text.replace("{" + k + "}", v)
        title = spec.title_en if view.lang == "en" else spec.title_id
        canned.append({"key": key, "title": title, "text": text})
    prefill = ""
    asked = view.request.query.get("canned", "")
    for c in canned:
        if c["key"] == asked:
            prefill = c["text"]
    viewers = await hub.queue.queue.viewers(tid)
    others_viewing = {await view.display(a): s for a, s in sorted(viewers.items()) if a != who.name}
    categories = sorted({r.category for r in hub.settings.routing if r.category})
    users = await view.users()
    return {
        "h": header,
        "ticket": ticket,
        "timeline": await _timeline(view, ticket),
        "contact": {
            "name": name or view.t("ticket.no_name"),
            "named": bool(name),
            "identities": identities,
            "others": others,
        },
        "mode": mode,
        "templates": templates,
        "canned": canned,
        "prefill": prefill,
        "via": view.t(
            "reply.via",
            channel=view.label("channel", ch),
            account=acct,
            to=str(ticket.get("reply_to", "")),
        ),
        "viewing": [n for n, s in others_viewing.items() if s == "viewing"],
        "typing": [n for n, s in others_viewing.items() if s == "typing"],
        "priorities": [(p, view.label("priority", p)) for p in PRIORITY_RANK],
        "categories": categories,
        "units": [(u, view.unit_name(u)) for u in sorted(hub.settings.units)],
        "agents": sorted(
            ((u.username, u.display_name) for u in users.values() if not u.disabled),
        ),
        "reply_sent": (view.flash or {}).get("code") == "reply_sent",
    }


async def ticket_page(request: web.Request) -> web.Response:
    view = await View.of(request)
    found = await _resolve(view)
    if found is None:
        return view.not_found()
    ctx = await _ticket_context(view, found[0])
    if ctx is None:
        return view.not_found()
    return view.render(
        "ticket.html", page="ticket", events_since=await view.hub.events.last_id(), **ctx
    )


async def timeline_partial(request: web.Request) -> web.Response:
    view = await View.of(request)
    found = await _resolve(view)
    ticket = await view.hub.store.get_ticket(found[0]) if found else None
    if ticket is None:
        return view.not_found()
    return view.render("_timeline.html", timeline=await _timeline(view, ticket))


async def header_partial(request: web.Request) -> web.Response:
    view = await View.of(request)
    found = await _resolve(view)
    ticket = await view.hub.store.get_ticket(found[0]) if found else None
    if found is None or ticket is None:
        return view.not_found()
    return view.render("_ticket_header.html", h=await _header_context(view, found[0], ticket))


Action = Callable[[View, str, dict[str, str], MultiDictProxy[Any]], Awaitable[str]]


def ticket_action(action: Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A ticket form: resolve and check the ticket, act, redirect back with the outcome."""

    async def handler(request: web.Request) -> web.Response:
        view = await View.of(request)
        found = await _resolve(view)
        if found is None:
            return view.not_found()
        tid, fields = found
        back = f"/console/tickets/{quote(_ref(fields, tid))}"
        form = await request.post()
        try:
            done = await action(view, tid, fields, form)
        except Refused as exc:
            return view.redirect(back, str(exc), "error")
        except (ReplyRefused, ActionError, QueueError) as exc:
            return view.redirect(back, view.error_text(exc.code, str(exc)), "error", exc.code)
        after = await view.hub.store.get_ticket_fields(tid)
        if not _who(view).can_see(after.get("unit", "")):
            back = "/console"  # transferred out of this person's units
        return view.redirect(back, view.t(f"flash.{done}"), "ok", done)

    return handler


def _text(form: MultiDictProxy[Any], name: str) -> str:
    return str(form.get(name, ""))


async def _reply(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    template = _text(form, "template").strip()
    text = _text(form, "text")
    if len(text) > MAX_REPLY:
        raise Refused(view.t("err.too_long"))
    variables = {
        str(k)[4:]: str(v).strip()[:500] for k, v in form.items() if str(k).startswith("var.")
    }
    if template:
        await view.hub.actions.reply(_who(view), tid, template=template, variables=variables)
    else:
        if not text.strip():
            raise Refused(view.t("err.empty_reply"))
        await view.hub.actions.reply(_who(view), tid, text=text)
    return "reply_sent"


async def _note(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    text = _text(form, "text")
    if not text.strip():
        raise Refused(view.t("err.empty_note"))
    if len(text) > MAX_NOTE:
        raise Refused(view.t("err.too_long"))
    await view.hub.actions.note(_who(view), tid, text)
    return "note_saved"


async def _status(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    status = _text(form, "status")
    if status not in ("open", "resolved", "closed"):
        raise Refused(view.t("err.bad_request"))
    await view.hub.actions.set_status(_who(view), tid, status)
    return f"status_{status}"


async def _claim(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    await view.hub.queue.claim(_who(view), tid, fields.get("unit", "general"))
    return "claimed"


async def _release(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    await view.hub.queue.release(_who(view), tid)
    return "released"


async def _transfer(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    unit = _text(form, "unit").strip()[:40] or None
    agent = _text(form, "agent").strip()[:64] or None
    if not unit and not agent:
        raise Refused(view.t("err.transfer_target"))
    await view.hub.queue.transfer(_who(view), tid, unit, agent)
    return "transferred"


async def _priority(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    priority = _text(form, "priority")
    if priority not in PRIORITY_RANK:
        raise Refused(view.t("err.bad_request"))
    await view.hub.actions.set_priority(_who(view), tid, priority)
    return "priority_set"


async def _category(view: View, tid: str, fields: dict[str, str], form: MultiDictProxy[Any]) -> str:
    category = " ".join(_text(form, "category").split())
    if len(category) > 80:
        raise Refused(view.t("err.too_long"))
    await view.hub.actions.set_category(_who(view), tid, category)
    return "category_set"


# -- search ----------------------------------------------------------------------------


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        return None


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
    lo = datetime.combine(day_from, datetime.min.time(), JAKARTA).timestamp() if day_from else 0
    hi = (
        datetime.combine(day_to + timedelta(days=1), datetime.min.time(), JAKARTA).timestamp()
        if day_to
        else float("inf")
    )
    words = q.casefold().split()
    found: list[tuple[float, str]] = []
    names: dict[str, str] = {}
    for unit in units:
        items, _ = await hub.store.list_tickets({**filters, "unit": unit}, 200)
        for t in items:
            created = _ms(t.get("created_at"))
            if not lo <= created < hi:
                continue
            if words:
                cid = str(t["contact_id"])
                if cid not in names:
                    contact = await hub.store.get_contact(cid)
                    names[cid] = str(contact.get("name", "")) if contact else ""
                hay = f"{t.get('number', '')} {names[cid]}".casefold()
                if not all(w in hay for w in words):
                    continue
            found.append((_ms(t.get("updated_at")), str(t["id"])))
    found.sort(reverse=True)
    return [tid for _, tid in found[:50]]


async def search_page(request: web.Request) -> web.Response:
    view = await View.of(request)
    hub, who = view.hub, _who(view)
    p = request.query
    q = p.get("q", "")[:200]
    status = p.get("status", "") if p.get("status", "") in ("open", "resolved", "closed") else ""
    unit = p.get("unit", "")
    channel = p.get("channel", "")[:40]
    visible_units = hub.queue.units_for(who)
    if unit and unit not in visible_units:
        unit = ""
    units = [unit] if unit else ([""] if who.sees_all_units else visible_units)
    asked = any(p.get(k) for k in ("q", "status", "unit", "channel", "from", "to"))
    error = ""
    tids: list[str] = []
    index = getattr(hub, "search", None)  # a hub without a search index: the simple search
    basic = index is None
    if asked and index is not None:
        try:
            query = query_from_params({**p, "unit": "", "limit": "50", "offset": "0"})
        except BadParameter as exc:
            error = view.t("err.invalid_parameter", detail=str(exc))
        else:
            seen: set[str] = set()
            for u in units:
                got, _ = await index.search(dataclasses.replace(query, unit=u))
                tids += [t for t in got if t not in seen]
                seen.update(got)
    elif asked:
        filters = {"status": status, "channel": channel}
        tids = await _search_fallback(
            view, q, filters, units, _day(p.get("from", "")), _day(p.get("to", ""))
        )
    rows = [
        r for r in await _rows(view, tids)
        if who.can_see(str(r["unit"]))
    ]  # fmt: skip
    if len(units) > 1:  # several units' pages merged: newest activity first again
        rows.sort(key=lambda r: float(r["updated_s"]), reverse=True)
    channels = sorted({c for c, _ in hub.channels.templates} | {"whatsapp"})
    return view.render(
        "search.html",
        page="search",
        q=q,
        status_filter=status,
        unit=unit,
        channel=channel,
        day_from=p.get("from", ""),
        day_to=p.get("to", ""),
        asked=asked,
        error=error,
        rows=rows,
        basic=basic,
        statuses=[(s, view.label("status", s)) for s in ("open", "resolved", "closed")],
        units=[(u, view.unit_name(u)) for u in visible_units],
        channels=[(c, view.label("channel", c)) for c in channels],
    )


TICKET_ACTIONS: dict[str, Action] = {
    "reply": _reply, "note": _note, "status": _status, "claim": _claim, "release": _release,
    "transfer": _transfer, "priority": _priority, "category": _category,
}  # fmt: skip
PAGES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]], ...] = (
    ("GET", "/login", login_page),
    ("POST", "/login", login_submit),
    ("POST", "/logout", logout),
    ("GET", "/console", queue_page),
    ("GET", "/console/queue", queue_partial),
    ("POST", "/console/claim-next", claim_next),
    ("POST", "/console/presence", set_presence),
    ("GET", "/console/search", search_page),
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
    }
    for method, path, handler in PAGES:
        r.add_route(method, path, handler)
    if not app.get(auth.DEMO, False):  # in demo mode "/" is the demo's overview page
        r.add_get("/", root)
