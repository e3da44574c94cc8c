"""The "web" channel: the hub's own public complaint form (``/lapor``) and ticket-status page,
for sites without a helpdesk of their own (the PPID website).

Anonymous and public (no sign-in, no session): every page works without JavaScript, is served
with the console's security headers, and speaks Bahasa Indonesia unless ``?lang=en``.
A submission is checked (per-field errors re-rendered with a 400), screened for spam (a
honeypot field, a minimum fill time carried in an HMAC-signed timestamp that also serves as
the form's token, a cap on links), rate limited per client IP and per phone/e-mail, then put
on the inbound stream as a message of channel "web" and only then answered (303 to the
thank-you page). The web channel cannot send: agents answer on WhatsApp or e-mail.

The status page tells a ticket's status only to someone who quotes both its number and one of
its contact's identities; anything else gets the same "not found" (no enumeration).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from hub.identity import InvalidIdentity, normalize_phone, phone_identity
from hub.ids import new_id
from hub.model import Message
from hub.settings import WebChannel
from hub.web.common import HUB, client_ip
from hub.web.console.view import View

log = structlog.get_logger("hub.webform")

FORM_PATH = "/lapor"
THANKS_PATH = "/lapor/terima-kasih"
STATUS_PATH = "/lapor/status"
PAGE_PATHS = frozenset({FORM_PATH, THANKS_PATH, STATUS_PATH})
ACCOUNT = "lapor"
CATEGORIES = ("upah", "phk", "jaminan_sosial", "k3", "pelatihan", "penempatan", "informasi",
              "lainnya")  # fmt: skip
HOUR = 3600
TOKEN_MAX_AGE_S = 86400
MAX_NAME, MAX_PHONE, MAX_EMAIL, MAX_TEXT = 100, 32, 254, 4000
EMAIL_RE = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"']+$")
LINK_RE = re.compile(r"(?i)\b(?:https?://|www\.)")
REF_RE = re.compile(r"^[0-9a-z]{20}$")
NUMBER_RE = re.compile(r"^[A-Z]{2,10}-\d{4}-\d{6}$")
HONEYPOT = "website"
WEB_CFG: web.AppKey[WebChannel] = web.AppKey("webform", WebChannel)
CSS_URL: web.AppKey[str] = web.AppKey("webform_css", str)


# -- the signed timestamp: form token and minimum fill time -------------------------------


def _sign(secret: str, issued: int) -> str:
    mac = hmac.new(secret.encode(), f"lapor:{issued}".encode(), hashlib.sha256)
    return f"{issued}.{mac.hexdigest()[:32]}"


def _token_age(secret: str, token: str, now: float) -> float | None:
    """Seconds since the form was issued, or None if the token is forged or malformed."""
    issued_s, _, _ = token.partition(".")
    # ASCII digits only ("²".isdigit() is true, int() refuses it); bytes for compare_digest,
    # which raises on non-ASCII strings.
    if not (issued_s.isascii() and issued_s.isdigit() and len(issued_s) <= 20):
        return None
    expected = _sign(secret, int(issued_s)).encode()
    if not hmac.compare_digest(expected, token.encode(errors="surrogatepass")):
        return None
    return now - int(issued_s)


# -- the submission ------------------------------------------------------------------------


@dataclass
class Submission:
    name: str = ""
    phone: str = ""
    email: str = ""
    category: str = ""
    message: str = ""
    consent: bool = False
    e164: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # field → error text, in form order

    @property
    def identities(self) -> list[str]:
        return ([phone_identity(self.e164)] if self.e164 else []) + (
            [f"email:{self.email.lower()}"] if self.email else []
        )


def _validate(view: View, form: dict[str, str], region: str, max_links: int) -> Submission:
    t = view.t
    s = Submission(
        name=form.get("name", "").strip()[: MAX_NAME + 1],
        phone=form.get("phone", "").strip()[: MAX_PHONE + 1],
        email=form.get("email", "").strip()[: MAX_EMAIL + 1],
        category=form.get("category", ""),
        message=form.get("message", "").strip()[: MAX_TEXT + 1],
        consent=form.get("consent", "") == "yes",
    )
    if not s.name:
        s.errors["name"] = t("lapor.err.name")
    elif len(s.name) > MAX_NAME:
        s.errors["name"] = t("lapor.err.too_long", n=MAX_NAME)
    if s.phone:
        try:
            s.e164 = normalize_phone(s.phone, region)
        except InvalidIdentity:
            s.errors["phone"] = t("lapor.err.phone")
    if s.email and (len(s.email) > MAX_EMAIL or not EMAIL_RE.match(s.email)):
        s.errors["email"] = t("lapor.err.email")
    if not s.phone and not s.email:
        s.errors["phone"] = t("lapor.err.contact")
    if s.category not in CATEGORIES:
        s.errors["category"] = t("lapor.err.category")
    if not s.message:
        s.errors["message"] = t("lapor.err.message")
    elif len(s.message) > MAX_TEXT:
        s.errors["message"] = t("lapor.err.too_long", n=MAX_TEXT)
    elif len(LINK_RE.findall(s.message)) > max_links:
        s.errors["message"] = t("lapor.err.links", n=max_links)
    if not s.consent:
        s.errors["consent"] = t("lapor.err.consent")
    return s


# -- pages ---------------------------------------------------------------------------------


def _render(view: View, name: str, status: int = 200, **ctx: object) -> web.Response:
    css = view.request.app[CSS_URL]
    return view.render(name, status, page="lapor", lapor_css=css, **ctx)


def _form(
    view: View, sub: Submission | None = None, status: int = 200, notice: str = ""
) -> web.Response:
    cfg = view.request.app[WEB_CFG]
    token = _sign(cfg.form_secret.get_secret_value(), int(view.hub.clock.now()))
    cats = [(c, view.t(f"lapor.cat.{c}")) for c in CATEGORIES]
    return _render(
        view, "lapor.html", status, sub=sub or Submission(), token=token, categories=cats,
        notice=notice, honeypot=HONEYPOT, max_text=MAX_TEXT,
    )  # fmt: skip


def _too_many(view: View, retry_after: int) -> web.Response:
    resp = _render(
        view, "lapor_message.html", 429, title=view.t("lapor.limit.title"),
        message=view.t("lapor.limit.text", minutes=max(1, (retry_after + 59) // 60)),
    )  # fmt: skip
    resp.headers["Retry-After"] = str(retry_after)
    return resp


async def _limited(request: web.Request, buckets: list[tuple[str, int]]) -> int:
    """Count one attempt in each bucket: the longest wait if any is over its limit, else 0."""
    limiter = request.app[HUB].rate_limit
    now = request.app[HUB].clock.now()
    waits = [await limiter.hit(b, limit, HOUR, now) for b, limit in buckets]
    return max(waits, default=0)


async def form_page(request: web.Request) -> web.Response:
    return _form(await View.of(request, None))


async def form_submit(request: web.Request) -> web.Response:
    view = await View.of(request, None)
    hub = request.app[HUB]
    cfg = request.app[WEB_CFG]
    try:
        wait = await _limited(
            request, [(f"lapor:ip:{client_ip(request)}", cfg.rate_per_ip_per_hour)]
        )
    except (RedisError, OSError):
        return _unavailable(view)
    if wait:
        log.info("webform.rate_limited", by="ip")
        return _too_many(view, wait)
    raw = await request.post()
    form = {k: str(v) for k, v in raw.items() if isinstance(v, str)}
    age = _token_age(cfg.form_secret.get_secret_value(), form.get("token", ""), hub.clock.now())
    sub = _validate(view, form, hub.settings.hub.default_region, cfg.max_links)
    if form.get(HONEYPOT) or age is None or age < cfg.min_fill_seconds or age > TOKEN_MAX_AGE_S:
        reason = "honeypot" if form.get(HONEYPOT) else "token" if age is None else "timing"
        log.info("webform.refused", reason=reason)
        sub.errors = {}
        return _form(view, sub, 400, notice=view.t("lapor.err.again"))
    if sub.errors:
        return _form(view, sub, 400)
    try:
        wait = await _limited(
            request, [(f"lapor:contact:{i}", cfg.rate_per_contact_per_hour) for i in sub.identities]
        )
    except (RedisError, OSError):
        return _unavailable(view)
    if wait:
        log.info("webform.rate_limited", by="contact")
        return _too_many(view, wait)
    now = hub.clock.now()
    meta = {"category": sub.category, "phone": sub.e164, "email": sub.email.lower(),
            "lang": view.lang, "form": "lapor"}  # fmt: skip
    msg = Message(
        id=new_id(int(now * 1000)),
        channel="web",
        account=ACCOUNT,
        provider_id=new_id(int(now * 1000)),
        sender=sub.identities[0],
        reply_address="",
        received_at=now,
        kind="web",
        text=sub.message,
        display_name=sub.name,
        meta={k: v for k, v in meta.items() if v},
        raw=json.dumps(
            {"name": sub.name, "phone": sub.phone, "email": sub.email,
             "category": sub.category, "message": sub.message},
            ensure_ascii=False,
        ),
    )  # fmt: skip
    try:
        entry = await hub.publisher.publish(msg)
    except (RedisError, OSError) as exc:
        log.error("webform.store_unavailable", error=repr(exc)[:200])
        return _unavailable(view)
    hub.metrics.inbound.labels(msg.channel, msg.account).inc()
    log.info("message.received", message_id=msg.id, entry=entry, kind=msg.kind)
    return view.redirect(f"{THANKS_PATH}?ref={msg.id}")


def _unavailable(view: View) -> web.Response:
    resp = _render(
        view, "lapor_message.html", 503, title=view.t("lapor.down.title"),
        message=view.t("lapor.down.text"),
    )  # fmt: skip
    resp.headers["Retry-After"] = "60"
    return resp


async def thanks_page(request: web.Request) -> web.Response:
    view = await View.of(request, None)
    ref = request.query.get("ref", "")
    return _render(view, "lapor_thanks.html", ref=ref if REF_RE.match(ref) else "")


def _identity_of(kontak: str, region: str) -> str:
    if "@" in kontak:
        return f"email:{kontak.lower()}" if EMAIL_RE.match(kontak) else ""
    try:
        return phone_identity(normalize_phone(kontak, region))
    except InvalidIdentity:
        return ""


async def _find(request: web.Request, nomor: str, kontak: str) -> dict[str, str] | None:
    """The ticket's fields, if the number exists and the contact is one of its identities."""
    hub = request.app[HUB]
    ident = _identity_of(kontak, hub.settings.hub.default_region)
    if not ident or not NUMBER_RE.match(nomor):
        return None
    tid = await hub.store.resolve_ticket_ref(nomor)
    if tid is None:
        return None
    fields = await hub.store.get_ticket_fields(tid)
    contact = await hub.store.get_contact(tid.rsplit(".", 1)[0])
    if not fields or contact is None:
        return None
    idents = {f"{i['kind']}:{i['value']}" for i in contact.get("identities", [])}
    return fields if ident in idents else None


async def status_page(request: web.Request) -> web.Response:
    view = await View.of(request, None)
    cfg = request.app[WEB_CFG]
    nomor = request.query.get("nomor", "").strip().upper()[:40]
    kontak = request.query.get("kontak", "").strip()[:MAX_EMAIL]
    ctx: dict[str, object] = {"nomor": nomor, "kontak": kontak, "asked": False, "ticket": None}
    if nomor or kontak:
        try:
            wait = await _limited(
                request, [(f"lapor:status:{client_ip(request)}", cfg.rate_per_ip_per_hour)]
            )
            found = None if wait else await _find(request, nomor, kontak)
        except (RedisError, OSError):
            return _unavailable(view)
        if wait:
            return _too_many(view, wait)
        ctx["asked"] = True
        if found is not None:
            created = float(found.get("created_at") or 0) / 1000
            status = found.get("status", "open")
            ctx["ticket"] = {
                "number": nomor,
                "status": status,
                "status_text": view.t(f"lapor.status.{status}"),
                "created": view.t.when_full(created),
                "unit": view.unit_name(found.get("unit", "general")),
            }
    return _render(view, "lapor_status.html", 404 if ctx["asked"] and not ctx["ticket"] else 200,
                   **ctx)  # fmt: skip


def setup(app: web.Application) -> None:
    """Mount the form when ``[channels.web]`` is configured and enabled (after the console,
    whose static route and templates the pages share)."""
    cfg = app[HUB].settings.channels.web
    if cfg is None or not cfg.enabled:
        return
    app[WEB_CFG] = cfg
    app[CSS_URL] = str(app.router["static"].url_for(filename="lapor.css"))
    app.router.add_get(FORM_PATH, form_page)
    app.router.add_post(FORM_PATH, form_submit)
    app.router.add_get(THANKS_PATH, thanks_page)
    app.router.add_get(STATUS_PATH, status_page)
