"""Authentication and CSRF for every request, in one middleware.

People sign in and carry a session cookie (HttpOnly, SameSite=Lax, Secure when the hub is
served over https); every state-changing request made with that cookie must also carry the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``). Machines and
scripts send ``Authorization: Bearer <token>``, which browsers never attach by themselves,
so bearer requests need no CSRF token.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import quote

from aiohttp import web

from hub.accounts import AuthError, Principal
from hub.web.common import HUB, error

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
COOKIE = "hub_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/webhooks/", "/static/")
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/login", "/api/v1/session",
     "/lapor", "/lapor/terima-kasih", "/lapor/status"}
)  # fmt: skip


def _is_public(request: web.Request) -> bool:
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    return path == "/" and request.app.get(DEMO, False)


DEMO: web.AppKey[bool] = web.AppKey("demo", bool)


def _is_text(value: str) -> bool:
    """False for header bytes that were not UTF-8 (aiohttp keeps them as surrogates, which
    cannot be encoded again): no token or session id of ours looks like that."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


async def _principal(request: web.Request) -> Principal | None:
    auth = request.app[HUB].auth
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return await auth.from_bearer(token.strip()) if _is_text(token) else None
    sid = request.cookies.get(COOKIE)
    if sid and _is_text(sid):
        return await auth.from_session(sid)
    return None


async def _csrf_ok(request: web.Request, who: Principal) -> bool:
    presented = request.headers.get("X-CSRF-Token", "")
    if not presented and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        try:
            presented = str((await request.post()).get("csrf_token", ""))
        except (ValueError, LookupError):  # a malformed form or an unknown charset
            return False
    # Compared as bytes: compare_digest refuses str with non-ASCII characters.
    given = presented.encode("utf-8", "replace")
    return bool(presented) and hmac.compare_digest(given, who.csrf.encode())


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    if _is_public(request):
        response: web.StreamResponse = await handler(request)
        return response
    who = await _principal(request)
    if who is None:
        if request.path.startswith("/api/"):
            resp = error(401, "unauthorized", "sign in, or send a valid bearer token")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="hub"'
            return resp
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
    needs_csrf = who.via == "session" and request.method not in SAFE_METHODS
    if needs_csrf and not await _csrf_ok(request, who):
        return error(403, "csrf", "missing or wrong CSRF token: reload the page")
    request[PRINCIPAL] = who
    response = await handler(request)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, sid: str) -> None:
    hub = request.app[HUB]
    response.set_cookie(
        COOKIE,
        sid,
        httponly=True,
        samesite="Lax",
        path="/",
        secure=hub.settings.hub.public_url.startswith("https://"),
        max_age=hub.auth.session_ttl_s,
    )


async def api_login(request: web.Request) -> web.Response:
    """POST /api/v1/session {username, password}: a session cookie and its CSRF token."""
    hub = request.app[HUB]
    if request.content_type != "application/json":
        # A cross-site <form enctype="text/plain"> can post a body that parses as JSON, but
        # not with this content type (that needs a CORS preflight): without the check, any
        # site could sign a visitor's browser into an account of its choosing (login CSRF).
        return error(
            400, "invalid_request", "send JSON (application/json) with username and password"
        )
    try:
        body = await request.json()
        username, password = str(body["username"]), str(body["password"])
    except (ValueError, KeyError, TypeError, LookupError, RecursionError):
        return error(400, "invalid_request", "send JSON with username and password")
    if not (_is_text(username) and _is_text(password)):  # "\ud800" in JSON: not storable
        return error(400, "invalid_request", "username and password must be Unicode text")
    try:
        sid, csrf, user = await hub.auth.login(username, password)
    except AuthError as exc:
        return error(401, "login_failed", str(exc))
    resp = web.json_response(
        {
            "username": user.username,
            "role": user.role,
            "units": list(user.units),
            "csrf_token": csrf,
        }
    )
    set_session_cookie(request, resp, sid)
    return resp


async def api_logout(request: web.Request) -> web.Response:
    sid = request.cookies.get(COOKIE)
    if sid:
        await request.app[HUB].auth.logout(sid)
    resp = web.json_response({"signed_out": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def whoami(request: web.Request) -> web.Response:
    who = request[PRINCIPAL]
    return web.json_response(
        {
            "name": who.name,
            "role": who.role,
            "units": list(who.units),
            "via": who.via,
            "csrf_token": who.csrf,
        }
    )


def require(request: web.Request, *, supervisor: bool = False, admin: bool = False) -> Principal:
    who = request[PRINCIPAL]
    if (admin and not who.is_admin) or (supervisor and not who.is_supervisor):
        raise web.HTTPForbidden(
            text='{"error": "forbidden", "message": "your role may not do this"}',
            content_type="application/json",
        )
    return who


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/session", api_login)
    app.router.add_post("/api/v1/session/logout", api_logout)
    app.router.add_get("/api/v1/me", whoami)
