"""Issue 8, points 12 and 13: who may call what, CSRF, cookies, security headers, secrets.

The routes come from the running app's router, so a route added later fails
``test_every_route_is_public_with_a_reason_or_in_the_matrix`` until it is listed in PUBLIC
(with the reason it needs no sign-in) or given a row in API_ROWS or CONSOLE_ROWS (what each
caller gets). The walks call every row as five callers (the columns of a row):

    anon  nobody                   /api: 401 (WWW-Authenticate: Bearer); pages: 303 to /login
    budi  agent of unit k3         a general ticket's or contact's routes: 404, so ticket
                                   numbers of other units cannot be probed
    ani   agent of unit general    the ticket's own unit
    sari  supervisor               every unit
    root  admin                    every unit, and manages accounts

Outcomes: A allowed (2xx, or a redirect that is not to the sign-in form), U 401, L 303 to
/login?next=<the page>, F 403, N 404. Anything else (a 400 from a bad body, a 409, a 5xx) is
a mismatch. API rows are called with each person's personal bearer token and no CSRF token
(a browser never sends an Authorization header by itself); console rows with a signed-in
session and its CSRF token. Every response is audited on the way: never a 5xx; HTML carries
a CSP without inline scripts, anti-framing and nosniff; no configured secret, personal token
or session id appears in a body; budi and anonymous callers never see the citizen of the
ticket they probe.

One hub for the whole module (users, tokens, channels with secrets); each walk makes fresh
tickets of its own (``new_targets``), so the tests do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from html import unescape
from http.cookies import Morsel, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.abc import AbstractCookieJar
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from pydantic import BaseModel, SecretStr
from yarl import URL

from adapters.redis_server import free_port
from hub.demo.fake_twilio import FakeTwilio, Scripted
from hub.settings import Settings, TwilioWhatsAppAccount
from hub.web import auth
from hub.web.app import build_app
from tests import redis_cluster
from tests.helpers import SID1, SID2, TOKEN, HubHarness, inbound_params, make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROLES = ("anon", "budi", "ani", "sari", "root")
PEOPLE: dict[str, tuple[str, list[str]]] = {
    "ani": ("agent", ["general"]),
    "budi": ("agent", ["k3"]),
    "sari": ("supervisor", []),
    "root": ("admin", []),
}
NOWHERE = "http://127.0.0.1:9"  # providers are never called by a web-only hub
# Every channel configured with secrets, so that the secret checks have something to find.
OVERRIDES: dict[str, Any] = {
    "ack__enabled": False,  # keeps the outbox to the replies the tests send
    "channels__whatsapp__accounts__wa2__unit": "k3",
    "channels__whatsapp__accounts__cloud": {
        "provider": "cloud", "number": "+628119521152", "phone_number_id": "106540352242922",
        "access_token": "cloud-access-token-S3CRET-01", "app_secret": "cloud-app-S3CRET-02",
        "verify_token": "cloud-verify-S3CRET-03", "api_base_url": NOWHERE,
    },
    "channels__instagram__accounts": {"ppid": {
        "ig_account_id": "17841400000000001", "access_token": "ig-access-token-S3CRET-04",
        "app_secret": "meta-app-S3CRET-05", "verify_token": "ig-verify-S3CRET-06",
        "api_base_url": NOWHERE,
    }},
    "channels__telegram__accounts": {"kemnaker": {
        "bot_token": "987654:telegramBotS3CRET07", "webhook_secret": "tg-webhook-S3CRET-08",
        "api_base_url": NOWHERE,
    }},
    "channels__portal__accounts": {"bantuan": {
        "api_base_url": NOWHERE, "api_token": "portal-api-S3CRET-09",
        "webhook_secret": "portal-webhook-S3CRET-10", "nik_hash_key": "portal-nik-S3CRET-11",
    }},
    "channels__call__accounts": {"hotline": {
        "events_secret": "call-events-S3CRET-12", "dialer_token": "dialer-S3CRET-13",
    }},
    "channels__email__accounts": {"ppid": {
        "address": "ppid@kemnaker.example", "smtp_host": "127.0.0.1", "smtp_port": 9,
        "smtp_password": "smtp-S3CRET-14", "imap_host": "127.0.0.1", "imap_username": "ppid",
        "imap_password": "imap-S3CRET-15",
    }},
    "channels__web": {"form_secret": "web-form-S3CRET-16-abcdef"},
    "demo__users": [{"username": "demo", "password": "demo-password-S3CRET-17"}],
}  # fmt: skip

# -- routes that need no sign-in, and why -----------------------------------------------------

PUBLIC: dict[tuple[str, str], str] = {
    ("POST", "/webhooks/whatsapp/{account}"): "provider webhook: the channel checks Twilio's "
    "X-Twilio-Signature (or Meta's X-Hub-Signature-256 for a Cloud account); 403 without",
    ("GET", "/webhooks/whatsapp/{account}"): "Meta's subscription handshake: echoes the "
    "challenge only for the account's verify token",
    ("POST", "/webhooks/whatsapp/{account}/status"): "Twilio's delivery callbacks, signed "
    "like the inbound webhook",
    ("POST", "/webhooks/instagram/{account}"): "provider webhook: Meta's X-Hub-Signature-256",
    ("GET", "/webhooks/instagram/{account}"): "Meta's subscription handshake (verify token)",
    ("POST", "/webhooks/portal/{account}"): "the portal's HMAC signature with a replay window",
    ("POST", "/webhooks/telegram/{account}"): "Telegram's X-Telegram-Bot-Api-Secret-Token",
    ("POST", "/webhooks/call/{account}"): "the call platform's HMAC signature (404 when the "
    "account has no events_secret)",
    ("GET", "/healthz"): "load balancer liveness probe: {'status': 'ok'} and nothing else",
    ("GET", "/readyz"): "load balancer readiness probe: check names and booleans only",
    ("GET", "/metrics"): "Prometheus scrapes it without credentials (README, Operations). It "
    "holds counters, queue sizes, agent usernames and alert subjects, but no citizen data and "
    "no secret (asserted below); keep it to the monitoring network at the proxy",
    ("GET", "/api/v1/openapi.json"): "the API's description; no data",
    ("POST", "/api/v1/session"): "signing in; JSON only, so a cross-site form cannot post it "
    "(login CSRF), asserted below",
    ("GET", "/login"): "the sign-in form",
    ("POST", "/login"): "the sign-in form's post; its own CSRF token in a SameSite=Strict cookie",
    ("GET", "/static"): "the console's CSS, JavaScript and icons; no data",
    ("GET", "/lapor"): "citizens' public complaint form (channels.web)",
    ("POST", "/lapor"): "its submission: HMAC-signed form token, honeypot, rate limits",
    ("GET", "/lapor/terima-kasih"): "the form's thank-you page",
    ("GET", "/lapor/status"): "a ticket's status, only for its number plus one of its "
    "contact's identities; rate limited",
}
# Only in demo mode (python -m hub run --demo), where "/" is the overview instead of a redirect.
PUBLIC_IN_DEMO = {("GET", "/"): "the demo's read-only overview, shown without a sign-in by design"}

# -- what each caller gets --------------------------------------------------------------------


@dataclass(frozen=True)
class Json:
    data: dict[str, Any]


@dataclass(frozen=True)
class Form:
    data: dict[str, str]


@dataclass(frozen=True)
class Raw:
    data: bytes
    content_type: str


Body = Json | Form | Raw


@dataclass
class Citizen:
    """One citizen who wrote once (with a photo) on WhatsApp, and the ticket that opened."""

    phone: str
    name: str
    marker: str  # a word in their message
    ticket: str = ""
    number: str = ""
    contact: str = ""
    message: str = ""
    unit: str = ""


@dataclass
class Target:
    """What one person's calls name: a ticket of theirs, a second one to merge with, and a dead
    letter to replay."""

    main: Citizen
    other: Citizen
    dead: dict[str, str] = field(default_factory=lambda: {"stream": "none", "id": "0-0"})


@dataclass(frozen=True)
class Row:
    expect: str  # one outcome per caller, in ROLES order
    body: Callable[[Target], Body] | None = None
    query: Callable[[Target], dict[str, str]] | None = None
    shows_citizen: bool = False  # allowed callers see the ticket's citizen (so hiding means it)

    def outcome(self, role: str) -> str:
        return self.expect.split()[ROLES.index(role)]


SEQ = itertools.count(1)


def _json(**data: Any) -> Callable[[Target], Body]:
    return lambda t: Json(data)


def _form(**data: str) -> Callable[[Target], Body]:
    return lambda t: Form(data)


def _new_user(t: Target) -> Body:
    return Json({"username": f"baru{next(SEQ)}", "password": "password-baru-1",
                 "role": "agent", "units": ["general"]})  # fmt: skip


# Walked in this order, each row for every caller: a ticket's actions in an order in which each
# step can succeed (claim before lease and release, merges last), the sign-outs at the very end.
API_ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/api/v1/me"): Row("U A A A A"),
    ("GET", "/api/v1/tickets"): Row("U A A A A"),
    ("GET", "/api/v1/search"): Row(
        "U A A A A", query=lambda t: {"q": t.main.number}, shows_citizen=True
    ),
    ("GET", "/api/v1/queue"): Row("U A A A A"),
    ("GET", "/api/v1/canned"): Row("U A A A A"),
    ("GET", "/api/v1/events"): Row("U A A A A"),
    ("GET", "/api/v1/presence"): Row("U F F A A"),
    ("GET", "/api/v1/users"): Row("U F F A A"),
    ("GET", "/api/v1/dashboard"): Row("U F F A A"),
    ("GET", "/api/v1/dead-letters"): Row("U F F A A"),
    ("GET", "/api/v1/reports"): Row("U F F A A"),
    ("GET", "/api/v1/reports.csv"): Row("U F F A A"),
    ("GET", "/api/v1/tickets/{ticket}"): Row(
        "U N A A A", query=lambda t: {"raw": "1"}, shows_citizen=True
    ),
    ("GET", "/api/v1/tickets/{ticket}/export"): Row("U N A A A", shows_citizen=True),
    ("GET", "/api/v1/tickets/{ticket}/messages/{message}/attachments/{index}"): Row("U N A A A"),
    ("GET", "/api/v1/contacts/{contact}"): Row("U N A A A", shows_citizen=True),
    ("POST", "/api/v1/tickets/{ticket}/viewing"): Row("U N A A A", _json(state="viewing")),
    ("POST", "/api/v1/tickets/{ticket}/claim"): Row("U N A A A"),
    ("POST", "/api/v1/tickets/{ticket}/lease"): Row("U N A A A"),
    ("POST", "/api/v1/tickets/{ticket}/notes"): Row("U N A A A", _json(text="catatan")),
    ("POST", "/api/v1/tickets/{ticket}/priority"): Row("U N A A A", _json(priority="high")),
    ("POST", "/api/v1/tickets/{ticket}/category"): Row("U N A A A", _json(category="upah")),
    ("POST", "/api/v1/tickets/{ticket}/replies"): Row("U N A A A", _json(text="Kami cek.")),
    ("POST", "/api/v1/tickets/{ticket}/release"): Row("U N A A A"),
    ("POST", "/api/v1/tickets/{ticket}/transfer"): Row(
        "U N A A A", lambda t: Json({"unit": t.main.unit})
    ),
    ("POST", "/api/v1/tickets/{ticket}/status"): Row("U N A A A", _json(status="resolved")),
    ("POST", "/api/v1/contacts/{contact}/merge"): Row(
        "U N A A A", lambda t: Json({"contact": t.other.contact})
    ),
    ("POST", "/api/v1/contacts/{contact}/unmerge"): Row(
        "U N A A A", lambda t: Json({"contact": t.other.contact})
    ),
    ("POST", "/api/v1/tickets/{ticket}/merge"): Row(
        "U N A A A", lambda t: Json({"into": t.other.number})
    ),
    ("POST", "/api/v1/presence"): Row("U A A A A", _json(state="online")),
    ("POST", "/api/v1/queue/claim-next"): Row("U A A A A"),
    ("POST", "/api/v1/attachments"): Row(
        "U A A A A", lambda t: Raw(b"isi surat", "text/plain"), lambda t: {"name": "surat.txt"}
    ),
    ("POST", "/api/v1/me/tokens"): Row("U A A A A", _json(label="skrip")),
    ("POST", "/api/v1/dead-letters/replay"): Row("U F F A A", lambda t: Json(t.dead)),
    ("POST", "/api/v1/users"): Row("U F F F A", _new_user),
    ("POST", "/api/v1/session/logout"): Row("U A A A A"),
}

CONSOLE_ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/"): Row("L A A A A"),
    ("GET", "/console"): Row("L A A A A"),
    ("GET", "/console/queue"): Row("L A A A A"),
    ("GET", "/console/search"): Row(
        "L A A A A", query=lambda t: {"q": t.main.number}, shows_citizen=True
    ),
    ("GET", "/console/dashboard"): Row("L F F A A"),
    ("GET", "/console/dashboard/live"): Row("L F F A A"),
    ("GET", "/console/dashboard/charts"): Row("L F F A A"),
    ("GET", "/console/reports"): Row("L F F A A"),
    ("GET", "/console/tickets/{ref}"): Row("L N A A A", shows_citizen=True),
    ("GET", "/console/tickets/{ref}/timeline"): Row("L N A A A"),
    ("GET", "/console/tickets/{ref}/header"): Row("L N A A A"),
    ("POST", "/console/tickets/{ref}/claim"): Row("L N A A A", _form()),
    ("POST", "/console/tickets/{ref}/reply"): Row("L N A A A", _form(text="Kami cek.")),
    ("POST", "/console/tickets/{ref}/note"): Row("L N A A A", _form(text="catatan")),
    ("POST", "/console/tickets/{ref}/priority"): Row("L N A A A", _form(priority="high")),
    ("POST", "/console/tickets/{ref}/category"): Row("L N A A A", _form(category="upah")),
    ("POST", "/console/tickets/{ref}/release"): Row("L N A A A", _form()),
    ("POST", "/console/tickets/{ref}/transfer"): Row(
        "L N A A A", lambda t: Form({"unit": t.main.unit})
    ),
    ("POST", "/console/tickets/{ref}/status"): Row("L N A A A", _form(status="resolved")),
    ("POST", "/console/tickets/{ref}/merge-contact"): Row(
        "L N A A A", lambda t: Form({"number": t.other.number, "confirm": "1"})
    ),
    ("POST", "/console/tickets/{ref}/unmerge-contact"): Row(
        "L N A A A", lambda t: Form({"contact": t.other.contact})
    ),
    ("POST", "/console/tickets/{ref}/merge"): Row(
        "L N A A A", lambda t: Form({"number": t.other.number, "confirm": "1"})
    ),
    ("POST", "/console/presence"): Row("L A A A A", _form(state="online", back="/console")),
    ("POST", "/console/claim-next"): Row("L A A A A", _form()),
    ("POST", "/console/dead-letters/replay"): Row(
        "L F F A A", lambda t: Form({**t.dead, "back": "/console/dashboard"})
    ),
    ("POST", "/logout"): Row("L A A A A", _form()),
}
MATRIX = {**API_ROWS, **CONSOLE_ROWS}

# Path parameters, filled from the caller's target ticket (budi and anon use ani's).
FILL: dict[str, Callable[[Citizen], str]] = {
    "ticket": lambda c: c.ticket,
    "ref": lambda c: c.number,
    "contact": lambda c: c.contact,
    "message": lambda c: c.message,
    "index": lambda c: "0",
}
# Webhook accounts to knock on without a signature (configured ones, and one that is not).
WEBHOOK_ACCOUNTS = {
    "/webhooks/whatsapp/{account}": ("wa1", "cloud", "nope"),
    "/webhooks/whatsapp/{account}/status": ("wa1", "nope"),
    "/webhooks/instagram/{account}": ("ppid", "nope"),
    "/webhooks/portal/{account}": ("bantuan", "nope"),
    "/webhooks/telegram/{account}": ("kemnaker", "nope"),
    "/webhooks/call/{account}": ("hotline", "nope"),
}
PARAM = re.compile(r"\{([^}]+)\}")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def fill(template: str, t: Target) -> str:
    return PARAM.sub(lambda m: FILL[m.group(1)](t.main), template)


def target_for(targets: dict[str, Target], role: str) -> Target:
    return targets["ani" if role in ("anon", "budi") else role]


# -- the hub, its people and their clients ----------------------------------------------------


@dataclass
class Caller:
    role: str
    s: aiohttp.ClientSession
    headers: dict[str, str] = field(default_factory=dict)
    csrf: str = ""
    sid: str = ""


@dataclass
class Seen:
    method: str
    path: str
    status: int
    headers: CIMultiDict[str]
    body: str
    cookies: SimpleCookie

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    @property
    def html(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("text/html")

    def error_code(self) -> str:
        try:
            return str(json.loads(self.body).get("error", ""))
        except (ValueError, AttributeError):
            return ""


@dataclass
class World:
    h: HubHarness
    tokens: dict[str, str]
    base_ticket: str
    secrets: set[str] = field(default_factory=set)
    csrf: dict[str, set[str]] = field(default_factory=dict)  # role: its sessions' tokens
    clients: list[aiohttp.ClientSession] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    html_seen: int = 0

    @property
    def base(self) -> str:
        return self.h.base

    def client(self, cookies: bool = True) -> aiohttp.ClientSession:
        jar: AbstractCookieJar = (
            aiohttp.CookieJar(unsafe=True) if cookies else aiohttp.DummyCookieJar()
        )
        s = aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=15))
        self.clients.append(s)
        return s

    def anon(self) -> Caller:
        return Caller("anon", self.client())

    def bearer(self, role: str) -> Caller:
        return Caller(role, self.client(False), {"Authorization": f"Bearer {self.tokens[role]}"})

    async def login(self, role: str) -> Caller:
        """A signed-in session (cookie jar) and its CSRF token."""
        s = self.client()
        async with s.post(
            self.base + "/api/v1/session", json={"username": role, "password": password(role)}
        ) as r:
            assert r.status == 200, await r.text()
            csrf = str((await r.json())["csrf_token"])
            sid = r.cookies[auth.COOKIE].value
        self.secrets.add(sid)
        self.csrf.setdefault(role, set()).add(csrf)
        return Caller(role, s, csrf=csrf, sid=sid)

    def secrets_for(self, role: str) -> set[str]:
        """What no response to ``role`` may contain: every configured secret, personal token
        and session id, and the CSRF tokens of other people's sessions."""
        others = {c for r, tokens in self.csrf.items() if r != role for c in tokens}
        return self.secrets | others

    def audit(self, seen: Seen, role: str) -> None:
        where = f"{seen.method} {seen.path} as {role} ({seen.status})"
        if seen.status >= 500:
            self.problems.append(f"{where}: server error {seen.body[:200]!r}")
        if seen.html:
            self.html_seen += 1
            self.problems += [f"{where}: {p}" for p in html_problems(seen)]
        text = seen.body + "\n" + seen.location
        for secret in self.secrets_for(role):
            if secret in text:
                self.problems.append(f"{where}: shows a secret ({secret[:6]}…)")

    def clean(self) -> None:
        found, self.problems = self.problems, []
        assert not found, "\n".join(found)


def password(name: str) -> str:
    return f"password-{name}-1"


def configured_secrets(settings: BaseModel) -> set[str]:
    """Every SecretStr in the settings, wherever it sits (a secret added later is included)."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, SecretStr):
            if len(v.get_secret_value()) >= 8:
                found.add(v.get_secret_value())
        elif isinstance(v, BaseModel):
            for name in type(v).model_fields:
                walk(getattr(v, name))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    walk(settings)
    return found


def _register(fake: FakeTwilio, settings: Settings) -> None:
    for acct in settings.channels.whatsapp.accounts.values():
        if isinstance(acct, TwilioWhatsAppAccount):
            fake.accounts[acct.account_sid] = acct.auth_token.get_secret_value()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    redis_cluster.flush(redis_server)
    fake = FakeTwilio({})
    await fake.start()
    settings = make_settings(
        redis_server, fake.base_url, tmp_path_factory.mktemp("matrix"), **OVERRIDES
    )
    _register(fake, settings)
    h = HubHarness(settings, fake)
    await h.start()
    w: World | None = None
    try:
        for name, (role, units) in PEOPLE.items():
            await h.hub.auth.create_user(name, password(name), role, units, name.title())
        tokens = {name: await h.hub.users.create_token(name, "matrix") for name in PEOPLE}
        status, _ = await h.post_whatsapp(inbound_params("Halo", phone="+6281100000001"))
        assert status == 200
        await h.drain_inbound()
        [base] = await h.tickets()
        w = World(h, tokens, str(base["id"]))
        w.secrets = configured_secrets(settings) | set(tokens.values())
        yield w
    finally:
        for s in w.clients if w else []:
            await s.close()
        await h.stop()
        await fake.stop()


@pytest.fixture(autouse=True)
def _fresh_audit(world: World) -> None:
    """Each test answers for its own findings (not for an earlier test's)."""
    world.problems.clear()
    world.html_seen = 0


async def new_targets(w: World, tag: str, dead: bool = False) -> dict[str, Target]:
    """Fresh tickets for ani and sari (unit general) and root (unit k3, not the admin's own):
    two citizens each, who wrote once with a photo; and dead letters for the replay rows."""
    accounts = {"ani": ("wa1", SID1, "+628119521150"), "sari": ("wa1", SID1, "+628119521150"),
                "root": ("wa2", SID2, "+628119521151")}  # fmt: skip
    made: dict[str, list[Citizen]] = {}
    for role, (account, sid, to) in accounts.items():
        for _ in range(2):
            n = next(SEQ)
            c = Citizen(f"+62813{n:08d}", f"Warga{tag}{role}{n}x", f"penanda{tag}{role}{n}x")
            params = inbound_params(
                f"Gaji saya belum dibayar {c.marker}", phone=c.phone, account_sid=sid, to=to,
                ProfileName=c.name, NumMedia="1", MediaContentType0="image/jpeg",
                MediaUrl0=f"https://media.example.test/{n}.jpg",
            )  # fmt: skip
            status, _ = await w.h.post_whatsapp(params, account=account)
            assert status == 200
            made.setdefault(role, []).append(c)
    await w.h.drain_inbound()
    listed = {t["reply_to"]: t for t in await w.h.tickets(limit="200")}
    for c in (c for pair in made.values() for c in pair):
        t = listed[c.phone]
        c.ticket, c.number, c.contact, c.unit = t["id"], t["number"], t["contact_id"], t["unit"]
        full = await w.h.ticket(c.ticket)
        [msg] = [m for m in full["messages"] if m["direction"] == "in"]
        c.message = msg["id"]
    targets = {role: Target(pair[0], pair[1]) for role, pair in made.items()}
    assert (targets["ani"].main.unit, targets["root"].main.unit) == ("general", "k3")
    if dead:
        for role, letter in zip(("sari", "root"), await dead_letters(w, 2), strict=True):
            targets[role].dead = letter
    return targets


async def dead_letters(w: World, n: int) -> list[dict[str, str]]:
    """``n`` replies that ran out of attempts, for the replay rows."""
    h = w.h
    await h.drain_outbox()  # what earlier walks queued goes out first
    stream = h.hub.outbox_streams()["whatsapp"]
    before = {d["id"] for d in await h.hub.ops.dead_letters(stream)}
    for _ in range(n):
        status, _ = await h.api(
            "POST", f"/api/v1/tickets/{w.base_ticket}/replies", json={"text": "Halo"}
        )
        assert status == 202
    h.fake.script.extend(Scripted(status=503) for _ in range(3 * n))
    for _ in range(3):
        await h.drain_outbox(include_delayed=True)
    assert not h.fake.script
    new = [d for d in await h.hub.ops.dead_letters(stream) if d["id"] not in before]
    assert len(new) == n
    return [{"stream": stream, "id": d["id"]} for d in new]


# -- calling and judging ----------------------------------------------------------------------


async def send(
    w: World,
    c: Caller,
    method: str,
    path: str,
    body: Body | None = None,
    csrf: str | None = None,
    query: dict[str, str] | None = None,
) -> Seen:
    """One request as ``c``; ``csrf`` goes in the form field (forms) or X-CSRF-Token."""
    headers = dict(c.headers)
    kw: dict[str, Any] = {}
    if isinstance(body, Form):
        kw["data"] = {**body.data, **({"csrf_token": csrf} if csrf is not None else {})}
    else:
        if isinstance(body, Json):
            kw["json"] = body.data
        elif isinstance(body, Raw):
            kw["data"] = body.data
            headers["Content-Type"] = body.content_type
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
    url = w.base + path + ("?" + urlencode(query) if query else "")
    if method == "HEAD":
        seen = await head(w, c, url)
        w.audit(seen, c.role)
        return seen
    async with c.s.request(method, url, headers=headers, allow_redirects=False, **kw) as r:
        endless = r.headers.get("Content-Type", "").startswith("text/event-stream")
        raw = b"" if method == "HEAD" or endless else await r.read()
        seen = Seen(method, path, r.status, CIMultiDict(r.headers), raw.decode("utf-8", "replace"),
                    r.cookies)  # fmt: skip
    w.audit(seen, c.role)
    return seen


async def head(w: World, c: Caller, url: str) -> Seen:
    """HEAD on its own connection, reading the head only: HEAD /api/v1/events writes its
    stream after the headers (see test_head_answers_carry_no_body), which throws aiohttp's
    client off."""
    headers = {"Host": "127.0.0.1", "Connection": "close", **c.headers}
    if cookies := c.s.cookie_jar.filter_cookies(URL(url)):
        headers["Cookie"] = "; ".join(f"{k}={m.value}" for k, m in cookies.items())
    answer = await exchange(w, "HEAD", url.removeprefix(w.base), headers)
    head_part = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status_line, *lines = head_part.split("\r\n")
    got: CIMultiDict[str] = CIMultiDict()
    jar: SimpleCookie = SimpleCookie()
    for line in lines:
        name, _, value = line.partition(":")
        got.add(name.strip(), value.strip())
        if name.strip().lower() == "set-cookie":
            jar.load(value.strip())
    return Seen("HEAD", urlsplit(url).path, int(status_line.split()[1]), got, "", jar)


async def exchange(
    w: World, method: str, target: str, headers: dict[str, str], limit_s: float = 0.3
) -> bytes:
    """Bytes the hub sends back for a raw request (no client normalizing the path), read
    until it closes or ``limit_s`` of silence."""
    reader, writer = await asyncio.open_connection("127.0.0.1", w.h.settings.hub.listen_port)
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), limit_s):
            answer += chunk
    except TimeoutError:
        pass
    writer.close()
    await writer.wait_closed()
    return answer


def outcome(seen: Seen) -> str:
    if seen.status in (301, 302, 303, 307, 308):
        loc = urlsplit(seen.location)
        return "L" if loc.path == "/login" and "next" in parse_qs(loc.query) else "A"
    if 200 <= seen.status < 300:
        return "A"
    return {401: "U", 403: "F", 404: "N"}.get(seen.status, str(seen.status))


def csp_of(value: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
SCRIPT_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)
LOOSE_SCRIPTS = {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:", "blob:"}


def html_problems(seen: Seen) -> list[str]:
    """The console's promise for every HTML answer: a CSP that allows scripts from the hub's
    own files only, no framing, no sniffing, and markup that needs nothing more."""
    out: list[str] = []
    h = seen.headers
    csp = csp_of(h.get("Content-Security-Policy", ""))
    scripts = csp.get("script-src", csp.get("default-src"))
    if scripts is None:
        out.append("no Content-Security-Policy for scripts")
    elif LOOSE_SCRIPTS & set(scripts):
        out.append(f"CSP script-src {' '.join(scripts)}")
    if csp.get("frame-ancestors") not in (["'none'"], ["'self'"]):
        out.append("CSP without frame-ancestors 'none'")
    if h.get("X-Frame-Options", "").upper() not in ("DENY", "SAMEORIGIN"):
        out.append("no X-Frame-Options")
    if h.get("X-Content-Type-Options", "").lower() != "nosniff":
        out.append("no X-Content-Type-Options: nosniff")
    if csp.get("object-src", csp.get("default-src")) not in (["'none'"], ["'self'"]):
        out.append("CSP lets plugins load")
    for pattern, what in ((INLINE_SCRIPT, "inline <script>"), (INLINE_HANDLER, "inline on…= "
                          "handler"), (SCRIPT_URL, "javascript: URL")):  # fmt: skip
        if m := pattern.search(seen.body):
            out.append(f"{what}: {m.group(0)[:80]!r}")
    return out


def flash_of(seen: Seen) -> dict[str, str] | None:
    morsel = seen.cookies.get("hub_flash")
    if morsel is None or not morsel.value:
        return None
    try:
        raw = base64.urlsafe_b64decode(morsel.value + "=" * (-len(morsel.value) % 4))
        return {str(k): str(v) for k, v in json.loads(raw).items()}
    except (binascii.Error, ValueError):
        return {"kind": "unreadable", "text": morsel.value}


async def walk(
    w: World, rows: dict[tuple[str, str], Row], callers: dict[str, Caller],
    targets: dict[str, Target],
) -> tuple[list[str], list[str]]:  # fmt: skip
    """Every row (and its HEAD twin) as every caller; the mismatches, and the outcome table."""
    served = routes_of(served_app(w))
    bad: list[str] = []
    table: list[str] = []
    for (method, template), row in rows.items():
        methods = [method, *(["HEAD"] if method == "GET" and ("HEAD", template) in served else [])]
        for m in methods:
            got_row: list[str] = []
            for role in ROLES:
                t, c = target_for(targets, role), callers[role]
                path = fill(template, t)
                query = row.query(t) if row.query else None
                body = row.body(t) if row.body else None
                seen = await send(w, c, m, path, body, c.csrf or None, query)
                got, want = outcome(seen), row.outcome(role)
                got_row.append(got)
                where = f"{m} {template} as {role}"
                if got != want:
                    bad.append(f"{where}: want {want}, got {seen.status} {seen.body[:160]!r}")
                    continue
                bad += [f"{where}: {p}" for p in judge(seen, row, role, t, path, query)]
            table.append(f"{m:5} {template:70} {' '.join(got_row)}")
    return bad, table


def judge(
    seen: Seen, row: Row, role: str, t: Target, path: str, query: dict[str, str] | None
) -> list[str]:
    """What the outcome letter does not say."""
    out: list[str] = []
    got = outcome(seen)
    if got == "U" and not seen.headers.get("WWW-Authenticate", "").startswith("Bearer"):
        out.append("401 without WWW-Authenticate: Bearer")
    if got == "L":
        back = parse_qs(urlsplit(seen.location).query)["next"][0]
        if back != path + ("?" + urlencode(query) if query else ""):
            out.append(f"sign-in does not lead back: next={back!r}")
    if role in ("anon", "budi"):  # they probe ani's ticket: nothing of its citizen may show
        for c in (t.main, t.other):
            for secret in traces(c):
                if secret in seen.body:
                    out.append(f"shows {secret!r} of a ticket outside their units")
    elif (
        got == "A"
        and row.shows_citizen
        and seen.method != "HEAD"
        and not any(x in seen.body for x in traces(t.main))  # else hiding would prove nothing
    ):
        out.append(f"does not show its own citizen {t.main.name!r}")
    flash = flash_of(seen)
    if got == "A" and flash is not None and flash.get("kind") != "ok":
        out.append(f"refused in the flash: {flash}")
    return out


def traces(c: Citizen) -> tuple[str, ...]:
    """What would give a citizen away: name, a word they wrote, their number."""
    return c.name, c.marker, c.phone, c.phone.lstrip("+")


def served_app(w: World) -> web.Application:
    runner = w.h._runner
    assert runner is not None
    app = runner.app
    assert isinstance(app, web.Application)
    return app


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        out.add((route.method, str(path)))
    return out


def sample(template: str) -> str:
    """A concrete path for a public route (to ask the auth middleware about)."""
    if template == "/static":
        return "/static/console.css"
    return template.replace("{account}", "wa1")


# -- the tests --------------------------------------------------------------------------------


async def test_every_route_is_public_with_a_reason_or_in_the_matrix(world: World) -> None:
    """Each route the app serves is either PUBLIC (with why) or has a row for every caller;
    the two agree with the auth middleware; no row or exemption is stale; demo mode adds no
    route and makes only "/" public."""
    app = served_app(world)
    served = routes_of(app)
    problems: list[str] = []
    for method, path in sorted(served):
        key = ("GET" if method == "HEAD" else method, path)
        if method == "HEAD" and ("GET", path) not in served:
            problems.append(f"HEAD {path} without its GET")
        public, covered = key in PUBLIC, key in MATRIX
        if public == covered:
            problems.append(f"{method} {path}: {'both' if public else 'neither'} public and "
                            "in the matrix")  # fmt: skip
            continue
        if public:
            is_public = auth._is_public(make_mocked_request(method, sample(path), app=app))
            if not PUBLIC[key].strip() or not is_public:
                problems.append(f"{method} {path}: listed public, but the middleware guards it")
            continue
        if missing := [p for p in PARAM.findall(path) if p not in FILL]:
            problems.append(f"{method} {path}: no filling for {missing}")
        if len(MATRIX[key].expect.split()) != len(ROLES):
            problems.append(f"{method} {path}: expectations for {MATRIX[key].expect!r}")
        probe = make_mocked_request(method, PARAM.sub("x", path), app=app)
        if auth._is_public(probe):
            problems.append(f"{method} {path}: in the matrix, but the middleware lets it by")
        if path.startswith("/webhooks/") and path not in WEBHOOK_ACCOUNTS:
            problems.append(f"{method} {path}: no accounts to knock on")
    problems += [f"stale row {k}" for k in (*PUBLIC, *MATRIX) if k not in served]
    # every exemption in the middleware is a route listed here with its reason
    public_paths = {p for _, p in PUBLIC}
    problems += [f"exempt but not listed: {p}" for p in auth.PUBLIC_PATHS if p not in public_paths]
    for prefix in auth.PUBLIC_PREFIXES:
        problems += [f"under the exempt {prefix} but not listed: {m} {p}" for m, p in served
                     if (p + "/").startswith(prefix) and ("GET" if m == "HEAD" else m, p)
                     not in PUBLIC]  # fmt: skip
    demo = build_app(world.h.hub, demo=True)
    assert routes_of(demo) == served
    for (method, path), why in PUBLIC_IN_DEMO.items():
        assert why
        assert auth._is_public(make_mocked_request(method, path, app=demo))
        assert not auth._is_public(make_mocked_request(method, path, app=app))
    assert not problems, "\n".join(problems)
    public = sorted(r for r in served if ("GET" if r[0] == "HEAD" else r[0], r[1]) in PUBLIC)
    print(f"\n{len(served)} routes: {len(public)} public, {len(served) - len(public)} walked")
    for method, path in public:
        print(f"  public {method:4} {path}: {PUBLIC['GET' if method == 'HEAD' else method, path]}")


async def test_api_matrix(world: World) -> None:
    """Every API route as anonymous, budi (k3) on a general ticket, ani, sari and root, with
    personal bearer tokens and no CSRF token."""
    targets = await new_targets(world, "api", dead=True)
    callers = {"anon": world.anon(), **{r: world.bearer(r) for r in PEOPLE}}
    bad, table = await walk(world, API_ROWS, callers, targets)
    print("\n".join(["", f"{'':76} {' '.join(r[:4] for r in ROLES)}", *table]))
    assert not bad, "\n".join(bad)
    world.clean()
    # the admin's POST /api/v1/users made the account
    users = {u.username for u in await world.h.hub.users.all()}
    assert any(u.startswith("baru") for u in users)


async def test_console_matrix(world: World) -> None:
    """Every console page and form as anonymous, budi, ani, sari and root, signed in with a
    session and posting its CSRF token; forms that are allowed must work (their flash is ok)."""
    targets = await new_targets(world, "con", dead=True)
    callers = {"anon": world.anon(), **{r: await world.login(r) for r in PEOPLE}}
    bad, table = await walk(world, CONSOLE_ROWS, callers, targets)
    print("\n".join(["", f"{'':76} {' '.join(r[:4] for r in ROLES)}", *table]))
    assert not bad, "\n".join(bad)
    world.clean()
    merged = await world.h.ticket(targets["ani"].main.ticket)
    assert merged["status"] == "closed"  # the forms did their work, down to the merge


async def test_csrf_on_every_state_change(world: World) -> None:
    """Every state-changing route that needs a sign-in, called by the admin's session without
    a CSRF token, with a wrong one and with another person's, is refused (403 csrf) and
    changes nothing; with the session's own token the API's rows then work (bearer calls
    needing none is the API matrix)."""
    targets = await new_targets(world, "csrf", dead=True)
    t = targets["root"]
    root, ani = await world.login("root"), await world.login("ani")
    served = routes_of(served_app(world))
    changing = [k for k in MATRIX if k[0] in STATE_CHANGING]
    assert {k for k in served if k[0] in STATE_CHANGING} - set(PUBLIC) == set(changing)

    async def state() -> Any:
        tickets = [await world.h.ticket(c.ticket) for c in (t.main, t.other)]
        users = sorted(u.username for u in await world.h.hub.users.all())
        held = await world.h.hub.queue.queue.held_by("root")
        dead = await world.h.hub.ops.dead_letters(t.dead["stream"])
        return tickets, users, held, dead, await world.h.hub.queue.queue.presence()

    before = await state()
    refused: list[str] = []
    for method, template in changing:
        row = MATRIX[(method, template)]
        for csrf in (None, "not-the-token", next(iter(world.csrf["ani"]))):
            seen = await send(
                world, root, method, fill(template, t), row.body(t) if row.body else None,
                csrf, row.query(t) if row.query else None,
            )  # fmt: skip
            if (seen.status, seen.error_code()) != (403, "csrf"):
                refused.append(f"{method} {template} csrf={csrf!r}: {seen.status} {seen.body}")
    assert not refused, "\n".join(refused)
    assert await state() == before
    # the same session with its own token: the API's rows work (the console's: its matrix)
    for (method, template), row in API_ROWS.items():
        if method not in STATE_CHANGING:
            continue
        seen = await send(
            world, root, method, fill(template, t), row.body(t) if row.body else None,
            root.csrf, row.query(t) if row.query else None,
        )  # fmt: skip
        assert outcome(seen) == row.outcome("root"), (method, template, seen.status, seen.body)
    assert ani.csrf  # ani's session was only lent its token
    world.clean()


async def test_sign_in_cannot_be_forged_cross_site(world: World) -> None:
    """Login CSRF: the form needs its own token from a SameSite=Strict cookie, and the JSON
    sign-in refuses what a cross-site <form enctype="text/plain"> can send."""
    s = world.client(cookies=False)
    form = {"username": "root", "password": password("root"), "next": "/console"}
    for cookie, token in (("", ""), ("", "a" * 32), ("b" * 32, "a" * 32)):
        headers = {"Cookie": f"hub_login_csrf={cookie}"} if cookie else {}
        async with s.post(world.base + "/login", data={**form, "csrf_token": token},
                          headers=headers, allow_redirects=False) as r:  # fmt: skip
            assert r.status == 403
            assert auth.COOKIE not in r.cookies
    body = json.dumps({"username": "root", "password": password("root"), "x": "="})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        async with s.post(
            world.base + "/api/v1/session", data=body, headers={"Content-Type": ctype}
        ) as r:
            assert r.status in (400, 415), (ctype, r.status)
            assert auth.COOKIE not in r.cookies, ctype


def _set_cookies(headers: CIMultiDict[str]) -> list[Morsel[str]]:
    out: list[Morsel[str]] = []
    for raw in headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(raw)
        out += [m for m in jar.values() if m.value and m["max-age"] != "0"]
    return out


async def _a_visit(base: str, s: aiohttp.ClientSession) -> list[Morsel[str]]:
    """Sign in with the form, change language, post a form (flash), sign in with JSON: every
    cookie the hub sets on the way. Cookies are carried by hand (a Secure cookie would not be
    sent back over the test's plain http)."""
    got: list[Morsel[str]] = []
    async with s.get(base + "/login?lang=en") as r:
        got += _set_cookies(CIMultiDict(r.headers))
        page = await r.text()
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m
    token = unescape(m.group(1))
    async with s.post(
        base + "/login", allow_redirects=False, headers={"Cookie": f"hub_login_csrf={token}"},
        data={"username": "root", "password": password("root"), "csrf_token": token,
              "next": "/console"},
    ) as r:  # fmt: skip
        assert r.status == 303, await r.text()
        got += _set_cookies(CIMultiDict(r.headers))
        sid = r.cookies[auth.COOKIE].value
    async with s.get(base + "/console", headers={"Cookie": f"{auth.COOKIE}={sid}"}) as r:
        m = re.search(r'<meta name="csrf-token" content="([^"]+)"', await r.text())
        assert m
    async with s.post(
        base + "/console/presence", allow_redirects=False,
        headers={"Cookie": f"{auth.COOKIE}={sid}"},
        data={"state": "online", "back": "/console", "csrf_token": unescape(m.group(1))},
    ) as r:  # fmt: skip
        assert r.status == 303
        got += _set_cookies(CIMultiDict(r.headers))
    async with s.post(
        base + "/api/v1/session", json={"username": "root", "password": password("root")}
    ) as r:
        assert r.status == 200
        got += _set_cookies(CIMultiDict(r.headers))
    return got


async def test_cookies_are_httponly_samesite_and_secure_over_https(world: World) -> None:
    """Every cookie the hub sets is HttpOnly and SameSite (the session Lax, the sign-in form's
    token Strict), and Secure exactly when public_url is https (a second hub)."""
    fake = world.h.fake
    https = HubHarness(
        make_settings(world.h.settings.redis.url, fake.base_url, world.h.settings.hub.data_dir,
                      port=free_port(), hub__public_url="https://hub.example.test"),
        fake,
    )  # fmt: skip
    await https.start()
    try:
        for h, secure in ((world.h, False), (https, True)):
            cookies = await _a_visit(h.base, world.client(cookies=False))
            names = {m.key for m in cookies}
            assert {auth.COOKIE, "hub_login_csrf", "hub_lang", "hub_flash"} <= names
            for m in cookies:
                assert m["httponly"] is True, m.OutputString()
                assert bool(m["secure"]) is secure, m.OutputString()
                want = "Strict" if m.key == "hub_login_csrf" else "Lax"
                assert m["samesite"] == want, m.OutputString()
                if m.key == auth.COOKIE:
                    assert m["path"] == "/"
    finally:
        await https.stop()


async def test_pages_carry_security_headers_and_no_secrets(world: World) -> None:
    """Crawl as the admin: every GET route (pages and API, filled in), every link the pages
    offer, the public pages and files, the error pages; every HTML answer has its headers and
    runs under its CSP, and no answer holds a secret."""
    targets = await new_targets(world, "crawl")
    t = targets["root"]
    root, ani, anon = await world.login("root"), await world.login("ani"), world.anon()
    bearer = world.bearer("root")
    queue: list[str] = []
    for (method, template), row in MATRIX.items():
        if method == "GET":
            query = row.query(t) if row.query else None
            queue.append(fill(template, t) + ("?" + urlencode(query) if query else ""))
    queue += ["/console/dashboard?window=week", "/console/reports?from=2026-01-01"]
    done: set[str] = set()
    while queue and len(done) < 250:
        path = queue.pop(0)
        if path in done or path.startswith(("/static", "/logout", "/api/v1/events")):
            continue
        done.add(path)
        c = bearer if path.startswith("/api/") else root
        seen = await send(world, c, "GET", path)
        assert seen.status < 400, (path, seen.status, seen.body[:300])
        for href in re.findall(r'href="(/[^"/][^"]*)"', seen.body):
            queue.append(unescape(href).split("#")[0])
    assert len(done) > 25
    # what anyone may fetch, and the error pages
    anon_paths = ["/login", "/login?lang=en", "/lapor", "/lapor/terima-kasih",
                  f"/lapor/status?nomor={t.main.number}&kontak=0812000000",
                  "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json",
                  "/static/console.css", "/static/console.js", "/console/nope"]  # fmt: skip
    for path in anon_paths:
        seen = await send(world, anon, "GET", path)
        if path in ("/metrics", "/readyz", "/healthz"):  # public: nothing about citizens
            for citizen in (t.main, t.other):
                assert not [x for x in traces(citizen) if x in seen.body], path
    for path in (f"/console/tickets/{t.main.number}", "/console/dashboard", "/console/reports"):
        assert (await send(world, ani, "GET", path)).status in (403, 404)
    async with world.client(cookies=False).post(
        world.base + "/login", data={"username": "root", "password": "salah", "csrf_token": "x"}
    ) as r:
        assert r.status == 403
        world.audit(Seen("POST", "/login", r.status, CIMultiDict(r.headers), await r.text(),
                         r.cookies), "anon")  # fmt: skip
    assert world.html_seen > 30
    world.clean()


async def test_configured_secrets_are_all_found(world: World) -> None:
    """The secret checks look for every kind the brief names: Twilio auth tokens, the Meta
    app secret, webhook secrets, bot tokens, the web form secret, API tokens."""
    s = world.h.settings
    wa1 = s.channels.whatsapp.accounts["wa1"]
    assert isinstance(wa1, TwilioWhatsAppAccount)
    web_form = s.channels.web
    assert web_form is not None
    wanted = {
        wa1.auth_token.get_secret_value(),
        s.channels.instagram.accounts["ppid"].app_secret.get_secret_value(),
        s.channels.telegram.accounts["kemnaker"].bot_token.get_secret_value(),
        s.channels.telegram.accounts["kemnaker"].webhook_secret.get_secret_value(),
        s.channels.portal.accounts["bantuan"].webhook_secret.get_secret_value(),
        s.channels.call.accounts["hotline"].events_secret.get_secret_value(),
        web_form.form_secret.get_secret_value(),
        TOKEN,
        *world.tokens.values(),
    }
    assert wanted <= world.secrets
    assert len(configured_secrets(s)) >= 19


async def test_public_routes_answer_anonymously_and_webhooks_need_their_signature(
    world: World,
) -> None:
    """The public routes work without a sign-in; every webhook refuses an unsigned call (4xx,
    nothing stored); exempt prefixes cannot be used to reach a guarded route."""
    anon = world.anon()
    for path, ok in (("/healthz", {200}), ("/readyz", {200, 503}), ("/metrics", {200}),
                     ("/api/v1/openapi.json", {200}), ("/login", {200}), ("/lapor", {200}),
                     ("/lapor/terima-kasih", {200}), ("/lapor/status", {200}),
                     ("/static/console.css", {200})):  # fmt: skip
        assert (await send(world, anon, "GET", path)).status in ok, path
    await world.h.drain_inbound()
    knocked = 0
    for method, template in sorted(routes_of(served_app(world))):
        if not template.startswith("/webhooks/") or method == "HEAD":
            continue
        for account in WEBHOOK_ACCOUNTS[template]:
            path = template.replace("{account}", account)
            if method == "GET":
                q = {"hub.mode": "subscribe", "hub.verify_token": "wrong-token-1",
                     "hub.challenge": "1158201444"}  # fmt: skip
                seen = await send(world, anon, "GET", path, query=q)
                assert "1158201444" not in seen.body
            else:
                body: Body = Form(inbound_params("x")) if "whatsapp" in template else Json({"a": 1})
                seen = await send(world, anon, "POST", path, body)
            assert 400 <= seen.status < 500, (method, path, seen.status, seen.body)
            knocked += 1
    assert knocked >= 15
    assert await world.h.drain_inbound() == 0  # nothing unsigned was stored
    # the exempt prefixes do not stretch over guarded routes
    for raw in ("/webhooks/../api/v1/users", "/static/..%2Fapi/v1/users",
                "/webhooks/%2e%2e/api/v1/users", "/lapor/../api/v1/users",
                "/static/../../hub/settings.py", "/healthz/../api/v1/users"):  # fmt: skip
        answer = await exchange(world, "GET", raw, {"Host": "x", "Connection": "close"})
        status = int(answer.split(b" ", 2)[1])
        assert not 200 <= status < 300, (raw, answer[:300])
        assert b"username" not in answer, raw
    world.clean()


async def test_head_answers_carry_no_body(world: World) -> None:
    """A HEAD answer is headers only, on every GET route (here: the event stream)."""
    headers = {"Host": "x", "Connection": "close", **world.bearer("ani").headers}
    answer = await exchange(world, "HEAD", "/api/v1/events", headers)
    assert answer.split(b"\r\n\r\n", 1)[1] == b""
