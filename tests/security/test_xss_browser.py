"""Issue 8, point 13: everything a citizen (or any outsider) controls is text on every page that
shows it, checked in headless Chromium (Debian's, as in ``tests/browser``).

How the fields were found: from the code. The console renders with Jinja2, which autoescapes
every ``*.html`` template (``hub/web/console/view.py``: ``select_autoescape(["html"],
default_for_string=True)``); the one ``|safe`` is the dashboard's SVG (``_dashboard_charts.html``,
escaped once in ``hub/charts.py``); nothing uses ``Markup``; ``hub/web/static/console.js`` never
uses ``innerHTML``/``insertAdjacentHTML``: it swaps server-rendered fragments in (``DOMParser``
+ ``importNode``, where markup would run on import) and sets data from events with
``textContent``; the demo overview (``hub/web/demo_page.py``) escapes by hand. Each
``{{ … }}`` of each template was followed back to where its value comes from; these are the
outside-controlled ones, each fed through its real entry point (one hub for the module, roles
``web`` and ``intake``, the dispatcher and sender driven step by step):

- Twilio WhatsApp (signed webhook): ``Body``, ``ProfileName``, a media caption,
  ``MediaContentType``, ``MediaUrl`` (``javascript:``, and https with markup in it), a
  location's ``Label`` and ``Address``, ``ButtonText``; a status callback's ``ErrorMessage``.
- WhatsApp Cloud API (signed): text, profile name, a document's caption, ``filename`` and
  ``mime_type``, a location's ``name`` and ``address``, a contact card, an interactive reply's
  title, a reaction's emoji (a timeline event); the Graph API's error message on a refused
  reply, and on a reply it failed with 500s: the dead letter's reason and the
  source-unreachable alert.
- Instagram (signed): text, a share and an image whose URLs are ``javascript:``, a postback
  title. Instagram sends ids, no user names: there is no Instagram user name to show.
- Telegram (secret header): first/last name, a document's ``file_name``, ``mime_type`` and
  caption, a venue's title and address, a contact card. The ``username`` is kept in the
  message's meta and shown by no page (the last test checks it arrived).
- Portal (signed, timestamped): citizen name, text, an attachment's ``name`` and
  ``content_type``. The request's subject and category stay in meta, shown by no page.
- E-mail (over SMTP into the hub's SMTP intake): the ``From`` display name; an HTML-only body
  (a script, an ``onerror`` image, a ``javascript:`` link, which nh3 removes, around escaped
  markup that must come out as text); an attachment's file name. The subject stays in meta.
- Call log (a JSON-lines log the intake role tails): caller id name, agent, wrap-up code,
  notes; a live call event's queue name and caller (the screen pop, from the SSE stream).
- The public form ``/lapor``: name and message, and every field it re-renders after an error.
- Agents and configuration: a note and a reply (API), a note and a category typed into the
  ticket page, a contact merge (the merged contact's name, the audit line, a button's
  ``aria-label``), an agent's display name (note author, "is typing" from the SSE stream, the
  dashboard), a unit's configured name (queue, ticket, transfer list, search filter,
  dashboard tables and chart, reports), a routing rule's category (ticket, reports), a canned
  response filled with the citizen's name (``data-text``, the textarea). Channel account
  names cannot carry markup (the settings allow ``[a-z0-9_-]``; tested); there are no tags.
- Query strings echoed back: search (``q``, dates, filters; the quick-search box and the
  language links of every page), reports' ``from`` (in the error), the dashboard's
  ``window``, ``/login?next=`` and a failed login's user name, ``/console/tickets/<markup>``
  (404), ``/lapor?lang=``, ``/lapor/status?nomor=&kontak=``, ``/lapor/terima-kasih?ref=``.

Pages: the queue (and its live swap when a citizen writes; the screen pop of a ringing call),
every ticket page (timeline, header, contact card, composer; the live timeline swap; "who else
is here"), search, the dashboard (its live fragment swapped in when the alerts fire; the
charts), reports, login, the 404 page, the public form's pages, demo mode's overview.

On every page, and after every live update: ``window.__xss`` is undefined, no dialog opened,
no script error, nothing from a payload became an element or attribute (no ``on*`` attribute
anywhere, no inline ``<script>``, no ``img[src=x]``, ``iframe``, ``object``, ``embed``,
``base``, no id a payload named), no ``href``/``src``/``action`` is a ``javascript:`` (or
``data:text/html``) URL, every link is http(s) and every form posts to the hub, and each
payload's text is visible as text where its field is shown. The browser bypasses the CSP, so
markup that slipped through would run here (the CSP itself is the route matrix's business).

Each payload also ends with a right-to-left override (U+202E) and a word: the override must
stay inside its field, as in ``<bdi>``: nothing after the field on the same line may be drawn
inside it (a name must not turn "· WhatsApp · 14:03" into "30:41 · ppAstahW ·"). A message's
body is the citizen's alone and not checked. Alert texts and a call's timeline line are
single strings built around outside words outside the templates; they isolate each outside
value (``hub.text.isolate``) the way the templates do.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiosmtplib
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Dialog, Page, async_playwright, expect
from pydantic import ValidationError

from adapters.redis_server import free_port
from channels.calls.events import sign as sign_call
from channels.email.parse import parse_mail
from channels.meta import SIGNATURE_HEADER, sign_body
from hub.demo.fake_graph import FakeGraph
from hub.demo.fake_graph import Scripted as GraphAnswer
from hub.demo.fake_portal import make_event, signed_headers
from hub.demo.fake_twilio import FakeTwilio
from hub.settings import DEFAULT_UNITS, TwilioWhatsAppAccount
from hub.web.app import build_app
from tests import redis_cluster
from tests.helpers import SID1, HubHarness, eventually, inbound_params, make_settings

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
    *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
]
expect.set_options(timeout=15_000)  # a shared 2-core machine: generous, never a sleep

# -- the payloads ------------------------------------------------------------------------------

SVG = '"><svg onload=window.__xss=1>'
IMG = "<img src=x onerror=window.__xss=1>"
ATTR = "' onmouseover='window.__xss=1' x='"
DIALOG = "<details open ontoggle=alert(1)>"
TEMPLATE = "{{7*7}}${7*7}"
SCRIPT = "</script><script>window.__xss=1</script>"
CLOSERS = "</textarea></title></noscript></select><b id=xssclose>"
RLO = "\u202e"
JS_URL = "javascript:window.__xss=1"


def evil(tag: str, limit: int = 10_000) -> str:
    """A field's payload: its tag, as many of the tricks as fit in ``limit`` characters (the
    most telling first), then a right-to-left override and the tag again."""
    tail = f" {RLO}{tag}"
    out = tag
    for part in (SVG, IMG, ATTR, DIALOG, TEMPLATE, SCRIPT, CLOSERS):
        if len(out) + 1 + len(part) + len(tail) <= limit:
            out += " " + part
    out += tail
    assert len(out) <= limit
    assert SVG in out
    return out


# Configuration, and agents' words.
UNIT_NAME, RULE_CATEGORY, AGENT_NAME = evil("unitname"), evil("rulecat"), evil("agentname", 80)
NOTE, CATEGORY, REPLY_TEXT = evil("note"), evil("category", 80), evil("replytext")
# What providers say.
TWILIO_ERROR, GRAPH_REFUSAL, GRAPH_DOWN = evil("twerror"), evil("refusal"), evil("graphdown", 200)
# Citizens, per channel (the limits are the parsers' own).
TW_NAME, TW_BODY, TW_BUTTON = evil("twname", 200), evil("twbody"), evil("twbutton")
TW_LABEL, TW_ADDRESS, TW_LIVE = evil("twlabel"), evil("twaddress"), evil("twlive")
TW2_NAME, TW2_CAPTION, TW2_CTYPE = evil("tw2name", 200), evil("tw2caption"), evil("tw2ctype", 150)
TW2_URL = f"https://media.example.test/a.jpg?{SVG}{IMG}"
MERGED_NAME = evil("mergedname", 200)
CL_NAME, CL_TEXT, CL_CAPTION = evil("clname", 200), evil("cltext"), evil("clcaption")
CL_FILE, CL_MIME, CL_CARD = evil("clfile", 200), evil("clmime", 150), evil("clcard", 150)
CL_LOCNAME, CL_LOCADDR, CL_BUTTON = evil("cllocname", 200), evil("cllocaddr"), evil("clbtn", 200)
CL_EMOJI = "<b id=xssr>R</b>"  # the hub keeps a reaction's first 16 characters
IG_TEXT, IG_POSTBACK = evil("igtext"), evil("igpostback", 200)
TG_NAME, TG_TEXT, TG_CAPTION = evil("tgname", 180), evil("tgtext"), evil("tgcaption")
TG_FILE, TG_MIME, TG_CARD = evil("tgfile", 200), evil("tgmime", 150), evil("tgcard", 150)
TG_VENUE, TG_VENUEADDR = evil("tgvenue", 200), evil("tgvenueaddr")
PO_NAME, PO_TEXT = evil("poname", 200), evil("potext")
PO_FILE, PO_CTYPE = evil("pofile", 250), evil("poctype", 200)
MAIL_NAME, MAIL_SUBJECT, MAIL_BODY = evil("mailname", 190), evil("subject"), evil("mailbody")
MAIL_FILE = f"mailfile {SVG}{IMG}.pdf"  # no "/" and no RLO: the parser drops them from names
CALL_NAME, CALL_AGENT = evil("callname", 150), evil("callagent", 150)
CALL_WRAPUP, CALL_NOTES = evil("callwrapup", 150), evil("callnotes")
WEB_NAME, WEB_TEXT = evil("webname", 100), evil("webtext", 3000)

# -- the hub -----------------------------------------------------------------------------------

NOWHERE = "http://127.0.0.1:9"
CLOUD_TOKEN, CLOUD_SECRET, CLOUD_PHONE_ID = "cloud-token-xss-0123", "cloud-app-xss-0123", "1065403"
IG_TOKEN, IG_SECRET, IG_ID = "ig-token-xss-0123", "ig-app-xss-0123", "17841400000000009"
TG_BOT, TG_SECRET = "987654:telegramBotXss01", "tg-webhook-xss-0123"
PORTAL_SECRET, CALL_SECRET = "portal-webhook-xss-0123", "call-events-xss-0123"
PASSWORDS = {"ani": "password-ani-1", "sari": "password-sari-1", "rina": "password-rina-1"}
CITIZENS = ("tw", "tw2", "merged", "unit", "cloud", "portal", "web", "call", "live")
PHONES = {k: f"+62813000000{i:02d}" for i, k in enumerate(CITIZENS, start=1)}
IG_CITIZEN, TG_CHAT, MAIL_FROM = "6100000000000009", 777009, "warga.xss@warga.example"


def overrides(graph: FakeGraph, call_log: Path, smtp_port: int) -> dict[str, Any]:
    telegram = {"bot_token": TG_BOT, "webhook_secret": TG_SECRET, "api_base_url": NOWHERE}
    return {
        "ack__enabled": False,  # the outbox holds only the replies the tests send
        "units": {**DEFAULT_UNITS, "evil": {"name_id": UNIT_NAME, "name_en": UNIT_NAME}},
        "routing": [{"keywords": ["racun"], "unit": "evil", "category": RULE_CATEGORY}],
        "alerts__rules": [
            {"name": "src", "kind": "source_unreachable"},
            {"name": "dead", "kind": "dead_letters"},
        ],
        "canned": {
            "salam": {
                "title_id": "Salam",
                "title_en": "Greeting",
                "text_id": "Halo {name}, tiket {ticket_number}.",
                "text_en": "Hello {name}, ticket {ticket_number}.",
            }
        },
        "channels__whatsapp__accounts__cloud": {
            "provider": "cloud",
            "number": "+628119521152",
            "phone_number_id": CLOUD_PHONE_ID,
            "access_token": CLOUD_TOKEN,
            "app_secret": CLOUD_SECRET,
            "verify_token": "cloud-verify-xss",
            "api_base_url": graph.base_url,
        },
        "channels__instagram__accounts": {
            "ppid": {
                "ig_account_id": IG_ID,
                "access_token": IG_TOKEN,
                "app_secret": IG_SECRET,
                "verify_token": "ig-verify-xss",
                "api_base_url": graph.base_url,
            }
        },
        "channels__telegram__accounts": {"kemnaker": telegram},
        "channels__portal__accounts": {
            "bantuan": {
                "api_base_url": NOWHERE,
                "api_token": "portal-api-xss",
                "webhook_secret": PORTAL_SECRET,
            }
        },
        "channels__call__accounts": {
            "hotline": {
                "unit": "general",
                "events_secret": CALL_SECRET,
                "logs": [{"kind": "jsonl", "path": str(call_log), "poll_interval": 0.05}],
            }
        },
        "channels__email__accounts": {
            "ppid": {
                "address": "ppid@kemnaker.example",
                "intake": "smtp",
                "smtp_host": "127.0.0.1",
                "smtp_port": 9,
                "smtp_security": "none",
            }
        },
        "channels__email__smtp_intake": {"enabled": True, "listen_port": smtp_port},
        "channels__web": {"form_secret": "web-form-xss-secret-0123", "min_fill_seconds": 0},
    }


@dataclass
class World:
    h: HubHarness
    graph: FakeGraph
    browser: Browser
    call_log: Path
    smtp_port: int
    tokens: dict[str, str] = field(default_factory=dict)
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> the API's ticket
    names: dict[str, str] = field(default_factory=dict)  # key -> the citizen's name, as shown
    shown: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # key -> (css, text)
    dead_reason: str = ""
    sessions: dict[str, Any] = field(default_factory=dict)  # user -> the browser's cookies

    def bearer(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed: run `make test`, which installs it")
    redis_cluster.flush(redis_server)  # every master with HUB_TEST_REDIS=cluster
    tmp = tmp_path_factory.mktemp("xss")
    call_log, smtp_port = tmp / "calls.jsonl", free_port()
    call_log.touch()
    fake, graph = FakeTwilio({}), FakeGraph({CLOUD_TOKEN, IG_TOKEN})
    await fake.start()
    await graph.start()
    settings = make_settings(
        redis_server, fake.base_url, tmp, **overrides(graph, call_log, smtp_port)
    )
    for acct in settings.channels.whatsapp.accounts.values():
        if isinstance(acct, TwilioWhatsAppAccount):
            fake.accounts[acct.account_sid] = acct.auth_token.get_secret_value()
    h = HubHarness(settings, fake)
    h.hub.roles = frozenset({"web", "intake"})  # the SMTP listener and the call-log tailer
    pw = await async_playwright().start()
    try:
        await h.start()
        auth = h.hub.auth
        await auth.create_user("ani", PASSWORDS["ani"], "agent", ["general", "evil"], "Ani")
        await auth.create_user("sari", PASSWORDS["sari"], "supervisor", [], "Sari")
        await auth.create_user("rina", PASSWORDS["rina"], "agent", ["general", "evil"], AGENT_NAME)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        w = World(h, graph, browser, call_log, smtp_port)
        w.tokens["rina"] = await h.hub.users.create_token("rina", "xss")
        await seed(w)
        yield w
        await browser.close()
    finally:
        await pw.stop()
        await h.stop()
        await graph.stop()
        await fake.stop()


# -- the channels' entry points ----------------------------------------------------------------


Signer = Callable[[bytes], str]  # a header whose value depends on the body's bytes


async def post_json(h: HubHarness, path: str, body: Any, headers: dict[str, str | Signer]) -> None:
    raw = json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"}
    for name, value in headers.items():
        hdrs[name] = value if isinstance(value, str) else value(raw)
    assert h.session is not None
    async with h.session.post(h.base + path, data=raw, headers=hdrs) as r:
        assert r.status == 200, (path, r.status, await r.text())


async def cloud(h: HubHarness, body: dict[str, Any]) -> None:
    """A Cloud API webhook from the Cloud citizen, signed with the app secret."""
    wa_id = PHONES["cloud"].lstrip("+")
    msg = {"from": wa_id, "id": "wamid." + secrets.token_hex(12), "timestamp": "1751000000"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "628119521152", "phone_number_id": CLOUD_PHONE_ID},
        "contacts": [{"profile": {"name": CL_NAME}, "wa_id": wa_id}],
        "messages": [{**msg, **body}],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1022901", "changes": [{"field": "messages", "value": value}]}],
    }
    sign: dict[str, str | Signer] = {SIGNATURE_HEADER: lambda raw: sign_body(CLOUD_SECRET, raw)}
    await post_json(h, "/webhooks/whatsapp/cloud", payload, sign)


async def instagram(h: HubHarness, event: dict[str, Any]) -> None:
    messaging = {"sender": {"id": IG_CITIZEN}, "recipient": {"id": IG_ID}, **event}
    payload = {"object": "instagram", "entry": [{"id": IG_ID, "messaging": [messaging]}]}
    sign: dict[str, str | Signer] = {SIGNATURE_HEADER: lambda raw: sign_body(IG_SECRET, raw)}
    await post_json(h, "/webhooks/instagram/ppid", payload, sign)


async def telegram(h: HubHarness, update_id: int, message: dict[str, Any]) -> None:
    who = {"first_name": "Warga", "last_name": TG_NAME}  # the payload last: nothing after it
    user = {"id": TG_CHAT, "is_bot": False, "username": "xss_user", **who}
    chat = {"id": TG_CHAT, "type": "private", **who}
    msg = {"message_id": update_id % 10_000, "from": user, "chat": chat, "date": 1751000000}
    update = {"update_id": update_id, "message": {**msg, **message}}
    await post_json(
        h, "/webhooks/telegram/kemnaker", update, {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    )


async def call_event(h: HubHarness, event: dict[str, Any]) -> None:
    ts = str(int(h.clock.now()))
    sign: dict[str, str | Signer] = {
        "X-Call-Timestamp": ts,
        "X-Call-Signature": lambda raw: sign_call(CALL_SECRET, ts, raw),
    }
    await post_json(h, "/webhooks/call/hotline", event, sign)


def mid() -> str:
    return "aWdfZAG1x" + secrets.token_hex(8)


# -- the seed: every field once, through its channel -------------------------------------------


async def seed_twilio(h: HubHarness) -> None:
    """Text and name; the same citizen's locations (label; address only) and a button; a
    second citizen's media; a third (merged into the first later); one for the unit."""
    tw = {"phone": PHONES["tw"], "ProfileName": TW_NAME}
    await h.post_whatsapp(inbound_params(TW_BODY, **tw))
    loc = {"MessageType": "location", "Latitude": "-6.2", "Longitude": "106.8"}
    await h.post_whatsapp(inbound_params("", **tw, **loc, Label=TW_LABEL, Address="Jl. Gatot"))
    await h.post_whatsapp(inbound_params("", **tw, **loc, Address=TW_ADDRESS))
    button = {"MessageType": "button", "ButtonText": TW_BUTTON, "ButtonPayload": "x"}
    await h.post_whatsapp(inbound_params("", **tw, **button))
    media = {"NumMedia": "2", "MediaUrl0": JS_URL, "MediaContentType0": TW2_CTYPE,
             "MediaUrl1": TW2_URL, "MediaContentType1": "image/jpeg"}  # fmt: skip
    await h.post_whatsapp(
        inbound_params(TW2_CAPTION, phone=PHONES["tw2"], ProfileName=TW2_NAME, **media)
    )
    await h.post_whatsapp(inbound_params("Halo", phone=PHONES["merged"], ProfileName=MERGED_NAME))
    text = f"racun di pabrik {TW_BODY}"  # the routing rule's keyword: the configured unit
    await h.post_whatsapp(inbound_params(text, phone=PHONES["unit"], ProfileName="Warga Unit"))


async def seed_meta_and_telegram(h: HubHarness) -> None:
    await cloud(h, {"type": "text", "text": {"body": CL_TEXT}})
    document = {"caption": CL_CAPTION, "filename": CL_FILE, "mime_type": CL_MIME, "id": "1234"}
    await cloud(h, {"type": "document", "document": document})
    place = {"latitude": -6.2, "longitude": 106.8, "name": CL_LOCNAME, "address": CL_LOCADDR}
    await cloud(h, {"type": "location", "location": place})
    card = {"name": {"formatted_name": CL_CARD}, "phones": [{"phone": "+62 812-9876-5432"}]}
    await cloud(h, {"type": "contacts", "contacts": [card]})
    reply = {"type": "button_reply", "button_reply": {"id": "b1", "title": CL_BUTTON}}
    await cloud(h, {"type": "interactive", "interactive": reply})

    await instagram(h, {"message": {"mid": mid(), "text": IG_TEXT}})
    shares = [{"type": "share", "payload": {"url": JS_URL}},
              {"type": "image", "payload": {"url": " JaVaScRiPt:window.__xss=1"}}]  # fmt: skip
    await instagram(h, {"message": {"mid": mid(), "attachments": shares}})
    await instagram(h, {"postback": {"mid": mid(), "title": IG_POSTBACK, "payload": "P"}})

    await telegram(h, 910001, {"text": TG_TEXT})
    doc = {"file_name": TG_FILE, "mime_type": TG_MIME, "file_id": "BQAC-x", "file_unique_id": "u"}
    await telegram(h, 910002, {"caption": TG_CAPTION, "document": doc})
    where = {"latitude": -6.2, "longitude": 106.8}
    venue = {"location": where, "title": TG_VENUE, "address": TG_VENUEADDR}
    await telegram(h, 910003, {"location": where, "venue": venue})
    contact = {"phone_number": "6281298765432", "first_name": TG_CARD, "user_id": 5}
    await telegram(h, 910004, {"contact": contact})


async def seed_portal_mail_form_calls(w: World) -> None:
    h = w.h
    event = make_event(1, text=PO_TEXT, name=PO_NAME, phone=PHONES["portal"], email="")
    event["message"]["attachments"] = [
        {"url": "https://bantuan.example/f/1", "name": PO_FILE, "content_type": PO_CTYPE}
    ]
    ts = int(time.time())  # the portal signs with its own clock (the hub's has not moved yet)
    sign: dict[str, str | Signer] = {
        "X-Portal-Timestamp": str(ts),
        "X-Portal-Signature": lambda raw: signed_headers(PORTAL_SECRET, raw, ts)[
            "X-Portal-Signature"
        ],
    }
    await post_json(h, "/webhooks/portal/bantuan", event, sign)

    mail = EmailMessage()
    mail["From"] = Address(display_name=MAIL_NAME, addr_spec=MAIL_FROM)
    mail["To"] = "ppid@kemnaker.example"
    mail["Subject"] = MAIL_SUBJECT
    mail["Message-ID"] = "<xss-1@warga.example>"
    mail.set_content(
        f"<p>{html.escape(MAIL_BODY)}</p><script>window.__xss=1</script>"
        f'<img src=x onerror="window.__xss=1"><a href="{JS_URL}">klik</a>'
        '<svg onload="window.__xss=1"></svg>',
        subtype="html",
    )
    mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=MAIL_FILE)
    # The generator folds the long name into encoded words, which read back with a space here
    # and there: the page must show the name as the parser reads it.
    w.names["mail"] = parse_mail(mail.as_bytes(), "ppid", 0).message.display_name
    assert SVG in w.names["mail"]
    errors, _ = await aiosmtplib.send(
        mail.as_bytes(), sender=MAIL_FROM, recipients=["ppid@kemnaker.example"],
        hostname="127.0.0.1", port=w.smtp_port, start_tls=False, timeout=30,
    )  # fmt: skip
    assert errors == {}

    assert h.session is not None  # the public form, as a browser without JavaScript sends it
    async with h.session.get(h.base + "/lapor") as r:
        token = re.search(r'name="token" value="([^"]+)"', await r.text())
    assert token is not None
    form = {"token": token.group(1), "name": WEB_NAME, "phone": PHONES["web"], "email": "",
            "category": "upah", "message": WEB_TEXT, "consent": "yes"}  # fmt: skip
    async with h.session.post(h.base + "/lapor", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()

    now = h.clock.now()  # a call, in the log the intake role tails
    record = {"call_id": "1751000000.77", "direction": "in", "caller": PHONES["call"],
              "disposition": "ANSWERED", "agent": CALL_AGENT, "offered_at": now - 60,
              "answered_at": now - 50, "ended_at": now, "wait_s": 10, "talk_s": 50,
              "wrapup_code": CALL_WRAPUP, "notes": CALL_NOTES,
              "caller_name": CALL_NAME}  # fmt: skip
    w.call_log.write_text(json.dumps(record) + "\n")


async def seed_agents_and_providers(w: World) -> None:
    """A note by an agent whose name is markup, a category, a contact merge; a reply Twilio
    fails with its error text; Cloud API replies: one sent (then reacted to), one refused with
    Graph's message, one failed with 500s until it is a dead letter."""
    h, tid = w.h, w.tickets["tw"]["id"]
    rina = w.bearer("rina")
    status, _ = await h.api(
        "POST", f"/api/v1/tickets/{tid}/notes", json={"text": NOTE}, headers=rina
    )
    assert status == 201
    status, _ = await h.api("POST", "/api/v1/presence", json={"state": "online"}, headers=rina)
    assert status < 300
    status, _ = await h.api("POST", f"/api/v1/tickets/{tid}/category", json={"category": CATEGORY})
    assert status < 300
    into, other = w.tickets["tw"]["contact_id"], w.tickets["merged"]["contact_id"]
    status, body = await h.api("POST", f"/api/v1/contacts/{into}/merge", json={"contact": other})
    assert status < 300, body

    async def reply(ticket: str, text: str) -> None:
        status, body = await h.api("POST", f"/api/v1/tickets/{ticket}/replies", json={"text": text})
        assert status == 202, body

    await reply(tid, REPLY_TEXT)
    await h.drain_outbox()
    sent = next(s for s in h.fake.sent if s.params.get("Body") == REPLY_TEXT)
    failed = {"MessageSid": sent.sid, "SmsSid": sent.sid, "AccountSid": SID1,
              "MessageStatus": "failed", "SmsStatus": "failed", "ErrorCode": "63016",
              "ErrorMessage": TWILIO_ERROR, "To": sent.params["To"], "From": sent.params["From"],
              "ApiVersion": "2010-04-01"}  # fmt: skip
    status, _ = await h.post_whatsapp(failed, path="/webhooks/whatsapp/wa1/status")
    assert status < 300

    cid = w.tickets["cloud"]["id"]
    await reply(cid, "Balasan pertama")
    await h.drain_outbox()
    [ok] = w.graph.sent
    await cloud(h, {"type": "reaction", "reaction": {"message_id": ok.provider_id,
                                                     "emoji": CL_EMOJI}})  # fmt: skip
    await h.drain_inbound()
    w.graph.script.append(GraphAnswer(status=400, code=131047, message=GRAPH_REFUSAL))
    await reply(cid, "Balasan kedua")
    await h.drain_outbox()
    w.graph.script.extend(GraphAnswer(status=500, code=2, message=GRAPH_DOWN) for _ in range(3))
    await reply(cid, "Balasan ketiga")
    for _ in range(3):  # max_attempts
        await h.drain_outbox(include_delayed=True)
    assert not w.graph.script
    [dead] = await h.hub.ops.dead_letters(h.hub.outbox_streams()["whatsapp"])
    assert GRAPH_DOWN in dead["error"]
    w.dead_reason = dead["error"][:300]  # what the dashboard shows of it


async def seed(w: World) -> None:
    h = w.h
    await seed_twilio(h)
    await seed_meta_and_telegram(h)
    await seed_portal_mail_form_calls(w)
    where = {
        "tw": ("whatsapp", PHONES["tw"]), "tw2": ("whatsapp", PHONES["tw2"]),
        "merged": ("whatsapp", PHONES["merged"]), "unit": ("whatsapp", PHONES["unit"]),
        "cloud": ("whatsapp", PHONES["cloud"]), "ig": ("instagram", IG_CITIZEN),
        "tg": ("telegram", str(TG_CHAT)), "portal": ("portal", "REQ-2026-000123"),
        "mail": ("email", MAIL_FROM), "web": ("web", ""), "call": ("call", PHONES["call"]),
    }  # fmt: skip

    async def all_in() -> list[dict[str, Any]] | None:  # the call log is read by another task
        await h.drain_inbound()
        ts = await h.tickets(limit="200")
        return ts if len(ts) == len(where) and all(t.get("number") for t in ts) else None

    by = {(t["channel"], t["reply_to"]): t for t in await eventually(all_in, limit_s=30)}
    w.tickets = {key: by[at] for key, at in where.items()}
    assert w.tickets["unit"]["unit"] == "evil"
    await seed_agents_and_providers(w)

    w.names.update(tw=TW_NAME, tw2=TW2_NAME, cloud=CL_NAME, tg=f"Warga {TG_NAME}",
                   portal=PO_NAME, web=WEB_NAME, call=CALL_NAME)  # fmt: skip
    for key, name in w.names.items():
        w.shown[key] = [(".contact-name", name), ("#timeline .msg-in .who", name)]
    body, att = "#timeline .msg-in .msg-body", "#timeline .msg-in .attachment"
    header, event = "#ticket-header dd", "#timeline .event"
    w.shown["tw"] += [
        (body, TW_BODY), (att, TW_LABEL), (att, TW_ADDRESS), (body, TW_BUTTON),
        ("#timeline .note .msg-body", NOTE), ("#timeline .note .who", AGENT_NAME),
        (header, CATEGORY), (event, CATEGORY), (".merged-name", MERGED_NAME),
        (".audit", MERGED_NAME), ("#timeline .msg-out .msg-body", REPLY_TEXT),
        ("#timeline .msg-out .error-code", TWILIO_ERROR),
    ]  # fmt: skip
    w.shown["tw2"] += [(body, TW2_CAPTION), (att, TW2_CTYPE)]
    w.shown["unit"] = [(header, UNIT_NAME), (header, RULE_CATEGORY)]
    w.shown["cloud"] += [
        (body, CL_TEXT), (body, CL_CAPTION), (att, CL_FILE), (att, CL_MIME), (att, CL_LOCNAME),
        (body, CL_CARD), (body, CL_BUTTON), (event, CL_EMOJI),
        ("#timeline .msg-out .error-code", GRAPH_REFUSAL),
    ]  # fmt: skip
    w.shown["ig"] = [(body, IG_TEXT), (body, IG_POSTBACK)]
    w.shown["tg"] += [
        (body, TG_TEXT), (body, TG_CAPTION), (att, TG_FILE), (att, TG_MIME), (att, TG_VENUE),
        (body, TG_CARD),
    ]  # fmt: skip
    w.shown["portal"] += [(body, PO_TEXT), (att, PO_FILE), (att, PO_CTYPE)]
    w.shown["mail"] += [(body, MAIL_BODY), (body, "klik"), (att, MAIL_FILE)]
    w.shown["web"] += [(body, WEB_TEXT)]
    w.shown["call"] += [(body, CALL_AGENT), (body, CALL_WRAPUP), (body, CALL_NOTES)]


# -- the browser side --------------------------------------------------------------------------

# Elements and attributes a payload would have made; links and forms that leave the hub.
INJECTED = r"""() => {
  const found = [];
  const urlAttrs = /^(href|src|action|formaction|xlink:href|data|poster|background)$/;
  for (const el of document.querySelectorAll("*")) {
    const tag = el.tagName.toLowerCase();
    for (const a of Array.from(el.attributes)) {
      const n = a.name.toLowerCase();
      if (n.startsWith("on") || n === "srcdoc") { found.push(`${tag}[${n}]`); }
      const v = a.value.replace(/[\u0000-\u0020]/g, "").toLowerCase();
      if (urlAttrs.test(n) && /^(javascript|vbscript|data:text\/html)/.test(v)) {
        found.push(`${tag}[${n}=${a.value}]`);
      }
    }
    if (tag === "script" && !el.hasAttribute("src")) { found.push("inline script"); }
    if (["iframe", "object", "embed", "base", "frame"].includes(tag)) { found.push(tag); }
    if (tag === "img" && el.getAttribute("src") === "x") { found.push("img[src=x]"); }
    if (tag === "meta" && el.hasAttribute("http-equiv")  // the demo page's plain reload is ours
        && !/^\d+$/.test(el.getAttribute("content") || "")) { found.push("meta[http-equiv]"); }
    const id = el.getAttribute("id") || "";  // not el.id: a form's "id" input shadows it
    if (id.startsWith("xss")) { found.push("#" + id); }
  }
  for (const a of document.querySelectorAll("a[href], area[href]")) {
    if (!/^https?:$/.test(a.protocol)) { found.push(`link ${a.href}`); }
  }
  for (const f of document.querySelectorAll("form")) {
    const action = new URL(f.getAttribute("action") || "", location.href);
    if (action.origin !== location.origin) { found.push(`form ${action.href}`); }
  }
  return found;
}"""

# A payload's right-to-left override must stay in its field (as in <bdi>): whatever follows the
# payload's last word in the same block must not be drawn left of that word on its line.
BIDI_LEAKS = r"""() => {
  const isBlock = el => !getComputedStyle(el).display.startsWith("inline");
  const sameLine = (a, b) => a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let block = node.parentElement;
    while (block !== document.body && !isBlock(block)) { block = block.parentElement; }
    if (block.classList.contains("msg-body")) { continue; }  // the message's own words
    for (const m of node.data.matchAll(/\u202e[a-z0-9]+/g)) {
      const own = document.createRange();
      own.setStart(node, 0);
      own.setEnd(node, m.index + m[0].length);
      const after = document.createRange();
      after.setStart(node, m.index + m[0].length);
      after.setEnd(block, block.childNodes.length);
      if (!after.toString().trim()) { continue; }
      const mine = Array.from(own.getClientRects());
      const inside = Array.from(after.getClientRects()).some(
        r => r.width >= 1 && mine.some(o => sameLine(o, r) && r.left < o.right - 1));
      if (inside) {
        found.push(`${block.tagName.toLowerCase()}.${block.className}: ` +
                   `"${after.toString().trim().slice(0, 50)}" drawn inside "${m[0]}"`);
      }
    }
  }
  return found;
}"""


@dataclass
class Tab:
    """One browser page (signed in or not) that records dialogs and script errors."""

    page: Page
    context: BrowserContext
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def clean(self, where: str) -> None:
        """Nothing from a payload ran, or became an element or an attribute; no payload's
        override reordered what follows it."""
        assert await self.page.evaluate("typeof window.__xss") == "undefined", where
        assert self.dialogs == [], (where, self.dialogs)
        assert self.errors == [], (where, self.errors)
        assert await self.page.evaluate(INJECTED) == [], where
        assert await self.page.evaluate(BIDI_LEAKS) == [], where

    async def shows_all(self, fields: list[tuple[str, str]]) -> None:
        """Each (selector, text) as ``shows``, for a page already loaded: one round trip."""
        missing = await self.page.evaluate(
            """fields => fields.filter(([sel, text]) => !Array.from(document.querySelectorAll(sel))
                 .some(e => e.textContent.includes(text) && e.checkVisibility()))""",
            fields,
        )
        assert missing == [], missing

    async def shows(self, selector: str, text: str) -> None:
        """An element matching ``selector`` shows ``text``, visibly and exactly as sent."""
        loc = self.page.locator(selector).filter(has_text=text)  # folds case and spaces
        await expect(loc.first).to_be_visible()
        assert await loc.evaluate_all(
            "(els, t) => els.some(e => e.textContent.includes(t))", text
        ), (selector, text)


@pytest_asyncio.fixture(loop_scope="module")
async def tabs(world: World) -> AsyncIterator[list[Tab]]:
    made: list[Tab] = []
    yield made
    for t in made:
        await t.context.close()


async def open_tab(w: World, tabs: list[Tab], user: str | None) -> Tab:
    """A new browser context, the CSP bypassed; signed in as ``user`` (through the form the
    first time, then with that session's cookies: password hashing is slow on purpose)."""
    ctx = await w.browser.new_context(
        bypass_csp=True, viewport={"width": 1280, "height": 900}, locale="id-ID",
        timezone_id="Asia/Jakarta", storage_state=w.sessions.get(user or ""),
    )  # fmt: skip
    tab = Tab(await ctx.new_page(), ctx)
    tabs.append(tab)

    async def on_dialog(d: Dialog) -> None:
        tab.dialogs.append(d.message)
        await d.dismiss()

    tab.page.on("dialog", on_dialog)
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    if user is not None and user not in w.sessions:
        await tab.page.goto(w.h.base + "/login")
        await tab.page.locator("#username").fill(user)
        await tab.page.locator("#password").fill(PASSWORDS[user])
        await tab.page.locator("#password").press("Enter")
        await tab.page.wait_for_url(w.h.base + "/console")
        w.sessions[user] = await ctx.storage_state()
    elif user is not None:
        await tab.page.goto(w.h.base + "/console")
    return tab


# -- the pages ---------------------------------------------------------------------------------


async def test_queue_live_swap_and_screen_pop(world: World, tabs: list[Tab]) -> None:
    """The queue lists the citizens by name as text; a new citizen's row arrives with the
    live swap; a ringing call's screen pop (set from the SSE stream) shows the queue's name."""
    w, h = world, world.h
    tab = await open_tab(w, tabs, "ani")
    page = tab.page
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    listed = 0
    for key, name in w.names.items():  # a unit's card shows its first 8
        row = f'#queue tr[data-ticket="{w.tickets[key]["id"]}"]'
        if await page.locator(row).count():
            await tab.shows(f"{row} .citizen", name)
            listed += 1
    assert listed >= 6
    await tab.shows("#queue .unit h3", UNIT_NAME)
    await tab.clean("queue")

    name = evil("livename", 200)  # routed to the configured unit, whose card has room
    await h.post_whatsapp(inbound_params("racun lagi", phone=PHONES["live"], ProfileName=name))
    await h.drain_inbound()
    await tab.shows("#queue .citizen", name)
    await tab.clean("queue after the live swap")

    queue = evil("callqueue", 128)
    await call_event(h, {"event": "ringing", "call_id": "1751000000.99", "caller": IMG,
                         "queue": queue, "agent": SVG, "at": int(h.clock.now())})  # fmt: skip
    await expect(page.locator("#screenpop")).to_be_visible()
    await tab.shows("#screenpop .screenpop-meta", queue)
    await tab.clean("screen pop")


async def test_every_ticket_page(world: World, tabs: list[Tab]) -> None:
    """Each ticket's page shows its fields as text (timeline, header, contact card); a link
    from a citizen's URL is kept only when it is http(s), else it goes through the hub."""
    w = world
    tab = await open_tab(w, tabs, "ani")
    for key, fields in w.shown.items():
        await tab.page.goto(f"{w.h.base}/console/tickets/{w.tickets[key]['number']}")
        await tab.shows_all(fields)
        await tab.clean(f"ticket {key}")
    hrefs = "els => els.map(e => e.getAttribute('href'))"
    await tab.page.goto(f"{w.h.base}/console/tickets/{w.tickets['tw2']['number']}")
    links = await tab.page.locator("#timeline .attachment a").evaluate_all(hrefs)
    assert links[1] == TW2_URL
    assert links[0].startswith("/api/v1/tickets/")
    await tab.page.goto(f"{w.h.base}/console/tickets/{w.tickets['ig']['number']}")
    links = await tab.page.locator("#timeline .attachment a").evaluate_all(hrefs)
    assert len(links) == 2
    assert all(href.startswith("/api/v1/tickets/") for href in links), links


async def test_ticket_live_swap_others_and_forms(world: World, tabs: list[Tab]) -> None:
    """On a ticket page: the citizen's next message arrives with the live swap; a colleague
    whose name is markup shows as typing (from the SSE stream); a canned response with the
    citizen's name fills the textarea as text; a note and a category typed into the page come
    back as text."""
    w, h = world, world.h
    tab = await open_tab(w, tabs, "ani")
    page = tab.page
    ticket = w.tickets["tw2"]
    url = f"{h.base}/console/tickets/{ticket['number']}"
    await page.goto(url)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await h.post_whatsapp(inbound_params(TW_LIVE, phone=PHONES["tw2"], ProfileName=TW2_NAME))
    await h.drain_inbound()
    await tab.shows("#timeline .msg-in .msg-body", TW_LIVE)
    await tab.clean("timeline after the live swap")

    status, _ = await h.api("POST", f"/api/v1/tickets/{ticket['id']}/viewing",
                            json={"state": "typing"}, headers=w.bearer("rina"))  # fmt: skip
    assert status == 200
    await tab.shows("#others", AGENT_NAME)
    await tab.clean("a colleague typing")

    greeting = f"Halo {TW2_NAME}, tiket {ticket['number']}."
    await page.locator("#canned").select_option("salam")
    await expect(page.locator("#reply-text")).to_have_value(greeting)
    await page.locator("#reply-text").fill("")
    await tab.clean("canned response")
    note = evil("pagenote")
    await page.locator("#note-text").fill(note)
    await page.locator("#note-text").press("Control+Enter")
    await tab.shows("#timeline .note .msg-body", note)
    await tab.clean("a note typed into the page")
    category = evil("pagecat", 80)
    await page.locator("#category").fill(category)
    await page.locator("#category").press("Enter")
    await tab.shows("#ticket-header dd", category)
    await expect(page.locator("#category")).to_have_value(category)
    await tab.clean("a category typed into the page")
    await page.goto(f"{url}?canned=salam")
    await expect(page.locator("#reply-text")).to_have_value(greeting)
    await tab.clean("canned response filled in by the server")


async def test_search_echoes_and_lists_as_text(world: World, tabs: list[Tab]) -> None:
    """Search: the query and the filters come back as the fields' values; citizens found are
    listed by name as text; the unit filter and column show the configured name as text."""
    w = world
    tab = await open_tab(w, tabs, "ani")
    page = tab.page
    q = evil("searchq", 200)
    asked = {"q": q, "from": IMG, "to": SVG, "channel": ATTR, "status": SCRIPT, "unit": DIALOG}
    await page.goto(f"{w.h.base}/console/search?{urlencode(asked)}")
    await expect(page.locator("#sq")).to_have_value(q)
    await expect(page.locator("#search-q")).to_have_value(q)
    await tab.clean("search with markup in every parameter")
    for key, word in (("tw2", "tw2name"), ("cloud", "clname"), ("tg", "tgname")):
        await page.goto(f"{w.h.base}/console/search?{urlencode({'q': word})}")
        await tab.shows("table.tickets .citizen", w.names[key])
        await tab.clean(f"search for {word}")
    await page.goto(f"{w.h.base}/console/search?status=open")
    await tab.shows("table.tickets td", UNIT_NAME)
    assert UNIT_NAME in await page.locator("#s-unit").inner_text()
    await tab.clean("search listing")


async def test_dashboard_dead_letters_live_alerts_and_charts(world: World, tabs: list[Tab]) -> None:
    """The dashboard shows the dead letter's reason (the provider's words), the unit and the
    agent by name as text; when the alerts fire, the live fragment is swapped in with the
    source's error (the provider's words again) as text; the charts name the units as text."""
    w, h = world, world.h
    tab = await open_tab(w, tabs, "sari")
    page = tab.page
    await page.goto(f"{h.base}/console/dashboard?window={quote(SVG)}")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await tab.shows(".dead-error", w.dead_reason)
    await tab.shows("#units-table th", UNIT_NAME)
    await tab.shows("#agents-table th", AGENT_NAME)
    await tab.clean("dashboard")
    await expect(page.locator(".alert-msg")).to_have_count(0)

    h.clock.advance(120)  # the Cloud API has been failing for two minutes
    fired = await h.observer().tick()
    assert {t.rule for t in fired} == {"src", "dead"}
    await tab.shows(".alert-msg", GRAPH_DOWN)
    await tab.clean("dashboard after the live swap")
    await page.goto(f"{h.base}/console/dashboard")  # the tick sampled the backlog
    await tab.shows("#chart-backlog svg .legend text", UNIT_NAME)
    await page.locator("#numbers-backlog summary").click()
    await tab.shows("#chart-backlog table th", UNIT_NAME)
    await tab.clean("dashboard with its charts")


async def test_reports_labels_and_echoed_dates(world: World, tabs: list[Tab]) -> None:
    """Reports: the unit's and the categories' rows (configured, typed by an agent) as text;
    a date that is not one is echoed in the error as text."""
    w = world
    tab = await open_tab(w, tabs, "sari")
    page = tab.page
    await page.goto(f"{w.h.base}/console/reports")
    await tab.shows("section[data-group=unit] tbody th", UNIT_NAME)
    await tab.shows("section[data-group=category] tbody th", RULE_CATEGORY)
    await tab.shows("section[data-group=category] tbody th", CATEGORY)
    await tab.clean("reports")
    asked = urlencode({"from": IMG, "to": "2026-01-31", "group": ATTR})
    await page.goto(f"{w.h.base}/console/reports?{asked}")
    await tab.shows(".flash-error", IMG)
    await tab.clean("reports with a bad date")


async def test_login_404_and_query_strings(world: World, tabs: list[Tab]) -> None:
    """The login form keeps ``next`` and a failed user name as values; a ticket reference
    that is markup gets the 404 page; the language links carry the query, escaped."""
    w = world
    tab = await open_tab(w, tabs, None)
    page = tab.page
    nxt = "/console/search?" + urlencode({"q": evil("nextq", 150)})
    await page.goto(f"{w.h.base}/login?{urlencode({'next': nxt})}")
    await expect(page.locator("input[name=next]")).to_have_value(nxt)
    await tab.clean("login with next")
    user = evil("user", 64)  # the form keeps 64 characters
    await page.locator("#username").fill(user)
    await page.locator("#password").fill("wrong-password")
    await page.locator("#password").press("Enter")
    await expect(page.locator("#login-error")).to_be_visible()
    await expect(page.locator("#username")).to_have_value(user)
    await tab.clean("failed login")

    tab = await open_tab(w, tabs, "ani")
    page = tab.page
    await page.goto(f"{w.h.base}/console/tickets/{quote(IMG + SVG, safe='')}?x={quote(ATTR)}")
    await expect(page.locator("h1")).to_be_visible()
    await tab.clean("404 page")
    await page.goto(f"{w.h.base}/console?{urlencode({'q': SVG, 'lang': IMG})}")
    href = await page.locator(".langs a[hreflang=en]").get_attribute("href")
    assert (href or "").startswith("/console?"), href
    await tab.clean("queue with markup in the query")


async def test_public_form_pages(world: World, tabs: list[Tab]) -> None:
    """The public form re-renders what the citizen typed as the fields' values after an
    error; the status and thank-you pages echo their query as values or not at all."""
    w = world
    tab = await open_tab(w, tabs, None)
    page = tab.page
    await page.goto(f"{w.h.base}/lapor?lang={quote(IMG)}")
    await tab.clean("form")
    name, text = evil("formname", 100), evil("formtext", 3000)
    await page.locator("#name").fill(name)
    await page.locator("#email").fill(ATTR)
    await page.locator("#message").fill(text)
    await page.locator("form.lapor-form button[type=submit]").click()
    await expect(page.locator("#error-summary")).to_be_visible()
    await expect(page.locator("#name")).to_have_value(name)
    await expect(page.locator("#message")).to_have_value(text)
    await expect(page.locator("#email")).to_have_value(ATTR)
    await tab.clean("form re-rendered with its errors")
    await page.goto(f"{w.h.base}/lapor/status?{urlencode({'nomor': IMG, 'kontak': SVG + ATTR})}")
    await expect(page.locator("#status-result")).to_be_visible()
    await expect(page.locator("#kontak")).to_have_value(SVG + ATTR)
    await tab.clean("status page")
    await page.goto(f"{w.h.base}/lapor/terima-kasih?{urlencode({'ref': IMG})}")
    await tab.clean("thank-you page")


async def test_demo_overview(world: World, tabs: list[Tab]) -> None:
    """Demo mode's read-only overview (escaped by hand in ``hub/web/demo_page.py``) lists the
    same names and texts as text."""
    w = world
    runner = web.AppRunner(build_app(w.h.hub, demo=True), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        tab = await open_tab(w, tabs, None)
        await tab.page.goto(f"http://127.0.0.1:{port}/")
        for text in (TW_NAME, TW_BODY, CL_NAME, CL_TEXT, TG_TEXT, PO_NAME, WEB_TEXT):
            await tab.shows("main .t", text)
        # names and texts are <bdi>s, the hub's words outside them in blocks of their own
        await tab.clean("demo overview")
    finally:
        await runner.cleanup()


async def test_account_names_cannot_carry_markup(tmp_path: Path) -> None:
    """Account names are shown on the dashboard and in its chart (channel · account): the
    settings refuse anything but ``[a-z0-9_-]``, so no markup can get there."""
    for name in (IMG, SVG, "wa1<b>", f"wa{RLO}1"):
        telegram = {name: {"bot_token": TG_BOT, "webhook_secret": TG_SECRET}}
        with pytest.raises(ValidationError):
            make_settings("redis://127.0.0.1:9/0", NOWHERE, tmp_path,
                          channels__telegram__accounts=telegram)  # fmt: skip


async def test_the_fields_arrived_through_their_channels(world: World) -> None:
    """A guard for the pages above: what no page shows arrived too (the mail's subject, the
    Telegram user name), and nh3 kept no script, handler or javascript: link of the mail."""
    mail = await world.h.ticket(world.tickets["mail"]["id"])
    [m] = [m for m in mail["messages"] if m["direction"] == "in"]
    assert m["meta"]["subject"] == MAIL_SUBJECT
    tags = re.findall(r"<(/?[a-z0-9]+)([^>]*)>", m["meta"]["html"])
    assert {t for t, _ in tags} == {"p", "/p", "img", "a", "/a"}, tags
    assert not any("on" in attrs or "javascript" in attrs for _, attrs in tags), tags
    tg = await world.h.ticket(world.tickets["tg"]["id"])
    assert any(m.get("meta", {}).get("username") == "xss_user" for m in tg["messages"])
