"""One request's console context (who, which language, the pending flash) and the response
plumbing every page shares: templates, security headers, the flash and language cookies."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from hub.accounts import Principal, User
from hub.text import isolate
from hub.ticket_actions import ActionError
from hub.web import auth
from hub.web.common import HUB
from hub.web.i18n import LANGS, Translator

if TYPE_CHECKING:
    from hub.runtime import Hub

LANG_COOKIE = "hub_lang"
FLASH_COOKIE = "hub_flash"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_URLS: web.AppKey[dict[str, str]] = web.AppKey("console_static", dict)
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


class IsolatingTranslator(Translator):
    """``t(key, **values)`` where a value that carries direction controls (a citizen's name
    with a right-to-left override) is wrapped in FSI … PDI (U+2068, U+2069): the PDI ends
    every override opened inside it, so the value cannot reorder the sentence around it."""

    def __call__(self, key: str, **values: Any) -> str:
        return super().__call__(
            key,
            **{k: isolate(v) if isinstance(v, str) else v for k, v in values.items()},
        )


class Refused(Exception):
    """A console form that cannot be carried out: the flash says why (already translated)."""

    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.code = code


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


def secure(request: web.Request) -> bool:
    """Cookies are ``Secure`` when the hub is served over https."""
    return request.app[HUB].settings.hub.public_url.startswith("https://")


def _language(request: web.Request, who: Principal | None, default: str) -> tuple[str, bool]:
    """``?lang=`` (then remembered), else the cookie, else the person's, else the default."""
    asked = request.query.get("lang", "")
    cookie = request.cookies.get(LANG_COOKIE, "")
    if asked in LANGS:
        return asked, True
    if cookie in LANGS:
        return cookie, False
    if who is not None and who.language in LANGS:
        return who.language, False
    return default, False


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
        lang, set_lang = _language(request, who, hub.settings.console.default_language)
        flash = (
            _unb64(request.cookies.get(FLASH_COOKIE, ""))
            if FLASH_COOKIE in request.cookies
            else None
        )
        return cls(request, hub, who, lang, IsolatingTranslator(lang), set_lang, flash)

    @property
    def me(self) -> Principal:
        """The signed-in person (console routes are behind the auth middleware)."""
        assert self.who is not None
        return self.who

    async def visible_ticket(self) -> tuple[str, dict[str, str]] | None:
        """The ticket in the path, if it exists and this person may see it."""
        tid = await self.hub.store.resolve_ticket_ref(self.request.match_info["ref"])
        if tid is None:
            return None
        try:
            fields = await self.hub.actions.visible(self.me, tid)
        except ActionError:
            return None
        return tid, fields

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
                httponly=True, secure=secure(self.request),
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
                path="/", samesite="Lax", httponly=True, secure=secure(self.request),
            )  # fmt: skip
        return resp

    async def not_found_or_archived(self) -> web.Response:
        """404, or 410 Gone naming the archive file when the ticket in the path was archived
        (and is of this person's units: other units' numbers cannot be probed)."""
        record = await self.hub.archive.lookup(self.request.match_info["ref"])
        if record is None or not self.me.can_see(record.get("unit", "general")):
            return self.not_found()
        return self.render(
            "error.html",
            410,
            page="error",
            title=self.t("err.archived_title"),
            message=self.t(
                "err.archived",
                number=record.get("number") or record["id"],
                file=record["file"],
                at=self.t.when_full(datetime.fromisoformat(record["archived_at"]).timestamp()),
            ),
        )

    def not_found(self) -> web.Response:
        return self.render(
            "error.html",
            404,
            page="error",
            title=self.t("err.not_found_title"),
            message=self.t("err.not_found"),
        )
