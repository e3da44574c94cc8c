"""Signing in and out of the console (the login form has its own CSRF cookie)."""

from __future__ import annotations

import contextlib
import hmac
import re
import secrets

from aiohttp import web

from hub.accounts import AuthError, Principal
from hub.web import auth
from hub.web.common import HUB
from hub.web.console.view import View, safe_next, secure

LOGIN_CSRF_COOKIE = "hub_login_csrf"


def _same(a: str, b: str) -> bool:
    """Constant time, on bytes: compare_digest raises on non-ASCII strings (a 500)."""
    return hmac.compare_digest(a.encode(errors="surrogatepass"), b.encode(errors="surrogatepass"))


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
        secure=secure(view.request),
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
    if not presented or not expected or not _same(presented, expected):
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
