"""The console's server-rendered pages over real HTTP (no browser): sign-in, CSRF, unit
isolation, escaping of citizens' text, language, and the ticket forms end to end."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from yarl import URL

from hub.web.i18n import TABLES
from tests.helpers import HubHarness, inbound_params

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
Factory = Callable[..., Awaitable[HubHarness]]


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert m, f"no field {name!r} in the page"
    return unescape(m.group(1))


def _meta_csrf(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
    assert m
    return m.group(1)


class Browser:
    """A cookie-keeping client that does not follow redirects (so tests see them)."""

    def __init__(self, h: HubHarness) -> None:
        self.h = h
        self.s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.s.get(self.h.base + path, allow_redirects=False) as r:
            return r.status, await r.text(), r

    async def post(
        self, path: str, data: dict[str, str], csrf: bool = True
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        form = {"csrf_token": self.csrf, **data} if csrf else data
        async with self.s.post(self.h.base + path, data=form, allow_redirects=False) as r:
            return r.status, await r.text(), r

    async def login(
        self, username: str, password: str, next_url: str = ""
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        _, html, _ = await self.get("/login" + (f"?next={next_url}" if next_url else ""))
        got = await self.post(
            "/login",
            {"username": username, "password": password, "next": _field(html, "next"),
             "csrf_token": _field(html, "csrf_token")},
            csrf=False,
        )  # fmt: skip
        if got[0] == 303:
            _, page, _ = await self.get("/console")
            self.csrf = _meta_csrf(page)
        return got

    async def close(self) -> None:
        await self.s.close()


@pytest.fixture
async def hub_h(harness_factory: Factory) -> HubHarness:
    h = await harness_factory(
        canned={
            "thanks": {
                "title_id": "Terima kasih",
                "title_en": "Thanks",
                "text_id": "Terima kasih {name}, tiket {ticket_number} ditangani {agent}.",
                "text_en": "Thank you {name}, ticket {ticket_number} is handled by {agent}.",
            }
        }
    )
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani Lestari")
    await h.hub.auth.create_user("budi", "password-budi-1", "agent", ["k3"], "Budi")
    return h


@pytest.fixture
async def browsers(hub_h: HubHarness) -> AsyncIterator[Callable[[], Browser]]:
    made: list[Browser] = []

    def make() -> Browser:
        b = Browser(hub_h)
        made.append(b)
        return b

    yield make
    for b in made:
        await b.close()


async def _ticket(h: HubHarness, body: str = "THR saya belum dibayar", **kw: str) -> str:
    status, _ = await h.post_whatsapp(inbound_params(body, **kw))
    assert status == 200
    await h.drain_inbound()
    tickets = await h.tickets()
    return str(tickets[0]["number"])


async def test_login_page_renders(hub_h: HubHarness, browsers: Callable[[], Browser]) -> None:
    b = browsers()
    status, html, r = await b.get("/login")
    assert status == 200
    assert '<html lang="id">' in html
    assert "Masuk ke konsol petugas" in html
    assert 'name="csrf_token"' in html
    assert 'autocomplete="current-password"' in html
    assert "hub_login_csrf" in r.cookies
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    # unauthenticated console pages send people to the form, remembering where they were
    status, _, r = await b.get("/console/search?q=x")
    assert status == 303
    assert parse_qs(urlsplit(r.headers["Location"]).query) == {"next": ["/console/search?q=x"]}


async def test_bad_password_is_401_with_message_then_login_works(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    b = browsers()
    status, html, _ = await b.login("ani", "wrong-password")
    assert status == 401
    assert "Nama pengguna atau kata sandi salah." in html
    assert 'value="ani"' in html  # the username is kept, the password is not
    status, _, r = await b.login("ani", "password-ani-1", "/console/search")
    assert status == 303
    assert r.headers["Location"] == "/console/search"
    assert "hub_session" in r.cookies
    status, html, _ = await b.get("/console")
    assert status == 200
    assert "Ambil tiket berikutnya" in html
    assert "Ani Lestari" in html
    # signing in made the agent available
    assert (await hub_h.hub.queue.queue.presence())["ani"] == "online"


async def test_login_needs_its_form_token(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    b = browsers()
    await b.get("/login")
    status, html, _ = await b.post(
        "/login", {"username": "ani", "password": "password-ani-1", "csrf_token": "forged"}
    )
    assert status == 403
    assert "Formulir kedaluwarsa" in html
    status, _, _ = await b.post(
        "/login", {"username": "ani", "password": "password-ani-1"}, csrf=False
    )
    assert status == 403


async def test_lockout_after_five_failures(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    b = browsers()
    for _ in range(5):
        status, html, _ = await b.login("ani", "nope-nope-nope")
        assert status == 401
        assert "kata sandi salah" in html
    status, html, _ = await b.login("ani", "password-ani-1")
    assert status == 401
    assert "Terlalu banyak percobaan gagal" in html


async def test_unsafe_redirect_targets_are_ignored(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    b = browsers()
    status, _, r = await b.login("ani", "password-ani-1", "//evil.example/x")
    assert status == 303
    assert r.headers["Location"] == "/console"


async def test_console_form_without_csrf_is_403(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    b = browsers()
    await b.login("ani", "password-ani-1")
    status, _, _ = await b.post("/console/claim-next", {}, csrf=False)
    assert status == 403
    status, _, _ = await b.post("/console/claim-next", {"csrf_token": "not-the-token"})
    assert status == 403
    status, _, r = await b.post("/console/claim-next", {})
    assert status == 303
    assert r.headers["Location"] == "/console"
    _, html, _ = await b.get("/console")
    assert "Tidak ada tiket yang menunggu." in html


async def test_logout_ends_the_session(hub_h: HubHarness, browsers: Callable[[], Browser]) -> None:
    b = browsers()
    await b.login("ani", "password-ani-1")
    sid = b.s.cookie_jar.filter_cookies(URL(hub_h.base))["hub_session"].value
    status, _, _ = await b.post("/logout", {}, csrf=False)
    assert status == 403  # logging someone out is a state change too
    status, _, r = await b.post("/logout", {})
    assert status == 303
    assert r.headers["Location"] == "/login?bye=1"
    status, _, r = await b.get("/console")
    assert status == 303
    assert r.headers["Location"].startswith("/login")
    assert await hub_h.hub.auth.from_session(sid) is None
    _, html, _ = await b.get("/login?bye=1")
    assert "Anda telah keluar." in html


async def test_other_units_tickets_are_404(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    number = await _ticket(hub_h)
    budi = browsers()
    await budi.login("budi", "password-budi-1")
    for path in (f"/console/tickets/{number}", f"/console/tickets/{number}/timeline"):
        status, html, _ = await budi.get(path)
        assert status == 404, path
        assert "THR saya" not in html
    status, _, _ = await budi.post(f"/console/tickets/{number}/note", {"text": "hi"})
    assert status == 404
    _, html, _ = await budi.get("/console")
    assert number not in html
    ani = browsers()
    await ani.login("ani", "password-ani-1")
    status, html, _ = await ani.get(f"/console/tickets/{number}")
    assert status == 200
    assert "THR saya belum dibayar" in html


async def test_citizen_text_is_escaped(hub_h: HubHarness, browsers: Callable[[], Browser]) -> None:
    number = await _ticket(hub_h, XSS, ProfileName='<b onmouseover="x()">Budi</b>')
    b = browsers()
    await b.login("ani", "password-ani-1")
    for path in ("/console", f"/console/tickets/{number}", f"/console/tickets/{number}/timeline"):
        status, html, _ = await b.get(path)
        assert status == 200
        assert "<script>alert" not in html, path
        assert "<img src=x" not in html, path
        assert "<b onmouseover" not in html, path
        assert "&lt;b onmouseover=&#34;x()&#34;&gt;Budi&lt;/b&gt;" in html, path
    _, html, _ = await b.get(f"/console/tickets/{number}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    # the only script on the page is the console's own file
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert len(scripts) == 1
    assert 'src="/static/console.js?v=' in scripts[0]


async def test_language_switch_is_remembered(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    b = browsers()
    status, html, r = await b.get("/login?lang=en")
    assert status == 200
    assert '<html lang="en">' in html
    assert "Sign in to the agent console" in html
    assert r.cookies["hub_lang"].value == "en"
    await b.login("ani", "password-ani-1")
    _, html, _ = await b.get("/console")
    assert "Claim next ticket" in html
    assert "Ambil tiket" not in html
    _, html, _ = await b.get("/console?lang=id")
    assert "Ambil tiket berikutnya" in html


def test_translation_tables_match() -> None:
    assert set(TABLES["id"]) == set(TABLES["en"])
    for lang, table in TABLES.items():
        for key, text in table.items():
            assert not set(text) & set("<>"), (lang, key)


async def test_ticket_forms_end_to_end(hub_h: HubHarness, browsers: Callable[[], Browser]) -> None:
    await _ticket(hub_h)
    b = browsers()
    await b.login("ani", "password-ani-1")
    status, _, r = await b.post("/console/claim-next", {})
    assert status == 303
    page = r.headers["Location"]
    number = page.rsplit("/", 1)[1]
    assert number.startswith("KMN-")
    _, html, _ = await b.get(page)
    assert "THR saya belum dibayar" in html
    assert "Dipegang Anda sampai" in html  # the claim is shown
    assert "Jendela WhatsApp terbuka" in html
    # canned response filled in server-side
    _, html, _ = await b.get(page + "?canned=thanks")
    assert f"Terima kasih Siti Rahayu, tiket {number} ditangani Ani Lestari." in html

    status, _, r = await b.post(page + "/reply", {"text": "Baik, kami cek ke perusahaan."})
    assert status == 303
    assert r.headers["Location"] == page
    _, html, _ = await b.get(page)
    assert "Balasan masuk antrean pengiriman." in html
    assert "Baik, kami cek ke perusahaan." in html
    assert 'data-state="queued"' in html
    await hub_h.drain_outbox()
    _, html, _ = await b.get(page + "/timeline")
    assert html.count('data-state="sent"') == 2  # the acknowledgement and ours

    await b.post(page + "/note", {"text": "Perusahaan PT <Maju>"})
    await b.post(page + "/priority", {"priority": "high"})
    await b.post(page + "/category", {"category": "THR"})
    status, _, _ = await b.post(page + "/note", {"text": "   "})
    assert status == 303
    _, html, _ = await b.get(page)
    assert "Catatan tidak boleh kosong." in html
    assert "Perusahaan PT &lt;Maju&gt;" in html
    assert "Ani Lestari mengubah prioritas menjadi Tinggi" in html

    await b.post(page + "/status", {"status": "resolved"})
    _, html, _ = await b.get(page)
    assert 'id="ticket-status">Selesai<' in html
    assert "Buka kembali" in html
    ticket = await hub_h.ticket(number)
    assert ticket["status"] == "resolved"
    assert ticket["priority"] == "high"
    assert ticket["category"] == "THR"
    kinds = [m.get("type") for m in ticket["messages"] if m["direction"] == "event"]
    assert kinds == ["claimed", "note", "priority", "category", "status"]


async def test_closed_window_offers_templates_only(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    number = await _ticket(hub_h)
    b = browsers()
    await b.login("ani", "password-ani-1")
    page = f"/console/tickets/{number}"
    hub_h.clock.advance(23 * 3600)
    _, html, _ = await b.get(page)
    assert "Jendela WhatsApp segera tertutup" in html
    assert re.search(r"sisa (01:00:00|00:59:59)", html)
    hub_h.clock.advance(2 * 3600)
    _, html, _ = await b.get(page)
    assert "Jendela WhatsApp tertutup" in html
    assert 'id="reply-text"' not in html
    assert 'name="template" value="follow_up"' in html
    status, _, _ = await b.post(page + "/reply", {"text": "halo"})
    assert status == 303
    _, html, _ = await b.get(page)
    assert "Jendela 24 jam sudah tertutup" in html
    await b.post(page + "/reply", {"template": "follow_up"})
    _, html, _ = await b.get(page)
    assert "Templat: follow_up" in html


async def test_transfer_out_of_my_units_goes_back_to_the_queue(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    number = await _ticket(hub_h)
    b = browsers()
    await b.login("ani", "password-ani-1")
    status, _, r = await b.post(f"/console/tickets/{number}/transfer", {})
    assert r.headers["Location"] == f"/console/tickets/{number}"
    status, _, r = await b.post(f"/console/tickets/{number}/transfer", {"unit": "k3"})
    assert status == 303
    assert r.headers["Location"] == "/console"
    budi = browsers()
    await budi.login("budi", "password-budi-1")
    status, html, _ = await budi.get(f"/console/tickets/{number}")
    assert status == 200
    assert "mengalihkan tiket ke unit Bina Pengujian K3" in html


async def test_search_page_finds_by_number(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    number = await _ticket(hub_h)
    b = browsers()
    await b.login("ani", "password-ani-1")
    status, html, _ = await b.get(f"/console/search?q={number}")
    assert status == 200
    assert "1 tiket ditemukan" in html
    assert "Siti Rahayu" in html
    _, html, _ = await b.get("/console/search?status=open")
    assert number in html
    budi = browsers()
    await budi.login("budi", "password-budi-1")
    _, html, _ = await budi.get(f"/console/search?q={number}")
    assert "Tidak ada tiket yang cocok." in html


async def test_search_without_an_index_falls_back_to_the_lists(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    number = await _ticket(hub_h)
    hub_h.hub.search = None  # type: ignore[assignment]  # a hub from before the search index
    b = browsers()
    await b.login("ani", "password-ani-1")
    _, html, _ = await b.get(f"/console/search?q={number.lower()}")
    assert "1 tiket ditemukan" in html
    assert "pencarian sederhana" in html
    _, html, _ = await b.get("/console/search?q=siti&status=open&channel=whatsapp")
    assert number in html
    _, html, _ = await b.get("/console/search?q=siti&status=resolved")
    assert "Tidak ada tiket yang cocok." in html
    _, html, _ = await b.get("/console/search?from=2000-01-01&to=2000-01-02")
    assert "Tidak ada tiket yang cocok." in html


# -- merges ------------------------------------------------------------------------------

SECOND_PHONE = "+6285712345678"


async def _new_ticket(h: HubHarness, body: str, **kw: str) -> str:
    before = {t["number"] for t in await h.tickets()}
    await _ticket(h, body, **kw)
    return next(str(t["number"]) for t in await h.tickets() if t["number"] not in before)


async def _two_tickets(h: HubHarness) -> tuple[str, str]:
    first = await _new_ticket(h, "THR saya belum dibayar")
    second = await _new_ticket(h, "Soal THR juga", phone=SECOND_PHONE, ProfileName="Budi Santoso")
    return first, second


def _flash(html: str) -> tuple[str, str, str]:
    m = re.search(
        r'<div class="flash flash-(\w+)"[^>]*data-code="([^"]*)">\s*'
        r'<span class="flash-text">([^<]*)</span>',
        html,
    )
    assert m, "no flash on the page"
    return m.group(1), m.group(2), unescape(m.group(3))


async def test_merge_ticket_form_moves_the_timeline(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    """Merging this ticket into another closes it and shows it on the target, marked."""
    a, b = await _two_tickets(hub_h)
    ani = browsers()
    await ani.login("ani", "password-ani-1")
    page_a, page_b = f"/console/tickets/{a}", f"/console/tickets/{b}"
    _, html, _ = await ani.get(page_a)
    assert 'action="/console/tickets/' + a + '/merge"' in html
    assert "Gabungkan ke tiket lain…" in html
    status, _, _ = await ani.post(page_a + "/merge", {"number": b, "confirm": "1"}, csrf=False)
    assert status == 403
    status, _, r = await ani.post(page_a + "/merge", {"number": b})
    assert r.headers["Location"] == page_a  # the confirmation box is the second step
    _, html, _ = await ani.get(page_a)
    assert _flash(html) == ("error", "confirm", "Centang konfirmasi dulu sebelum menggabungkan.")

    status, _, r = await ani.post(page_a + "/merge", {"number": b.lower(), "confirm": "1"})
    assert status == 303
    assert r.headers["Location"] == page_b
    _, html, _ = await ani.get(page_b)
    assert _flash(html) == ("ok", "ticket_merged", f"Tiket {a} digabung ke tiket ini.")
    assert "THR saya belum dibayar" in html
    assert f'<span class="from-ticket">dari {a}</span>' in html
    assert f"Ani Lestari menggabungkan tiket {a} ke tiket ini" in html
    _, html, _ = await ani.get(page_b + "/timeline?lang=en")
    assert f'<span class="from-ticket">from {a}</span>' in html
    _, html, _ = await ani.get(page_a + "?lang=id")
    assert 'id="ticket-status">Ditutup<' in html
    assert f'Tiket ini sudah digabung ke <a href="{page_b}">{b}</a>' in html
    assert 'id="merge-ticket"' not in html  # a closed ticket offers no merge
    assert (await hub_h.ticket(a))["merged_into"] == (await hub_h.ticket(b))["id"]


async def test_merge_ticket_form_explains_refusals(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    """Merging into itself, into a closed ticket or an unknown number is refused in words."""
    a, b = await _two_tickets(hub_h)
    ani = browsers()
    await ani.login("ani", "password-ani-1")
    page_a = f"/console/tickets/{a}"
    unknown = "KMN-2000-999999"
    cases = [
        (a, "same_ticket", "Tiket tidak bisa digabung ke dirinya sendiri."),
        (unknown, "not_found", f"Tiket {unknown} tidak ditemukan di unit kerja Anda."),
        (b, "ticket_closed", f"Tiket {b} sudah ditutup; gabungkan ke tiket yang terbuka "
                             "atau selesai."),
    ]  # fmt: skip
    for number, code, text in cases:
        if code == "ticket_closed":
            await ani.post(f"/console/tickets/{b}/status", {"status": "closed"})
        status, _, r = await ani.post(page_a + "/merge", {"number": number, "confirm": "1"})
        assert (status, r.headers["Location"]) == (303, page_a), code
        _, html, _ = await ani.get(page_a)
        assert _flash(html) == ("error", code, text)
    await ani.get(page_a + "?lang=en")  # the flash is written in the language of the post
    await ani.post(page_a + "/merge", {"number": b, "confirm": "1"})
    _, html, _ = await ani.get(page_a)
    assert _flash(html)[2] == f"Ticket {b} is closed; merge into an open or resolved ticket."
    assert "merged_into" not in await hub_h.ticket(a)


async def test_merge_and_unmerge_contact_forms(
    hub_h: HubHarness, browsers: Callable[[], Browser]
) -> None:
    """Another ticket's citizen merges into this one, audited, and the un-merge undoes it."""
    a, b = await _two_tickets(hub_h)
    other = str((await hub_h.ticket(b))["contact_id"])
    ani = browsers()
    await ani.login("ani", "password-ani-1")
    page_a = f"/console/tickets/{a}"
    status, _, r = await ani.post(page_a + "/merge-contact", {"number": b, "confirm": "1"})
    assert (status, r.headers["Location"]) == (303, page_a)
    _, html, _ = await ani.get(page_a)
    assert _flash(html) == ("ok", "contact_merged", "Kontak digabung ke pelapor ini.")
    assert SECOND_PHONE in html
    assert f'name="contact" value="{other}"' in html
    assert 'aria-label="Pisahkan Budi Santoso"' in html
    audit_line = "Ani Lestari menggabungkan Budi Santoso ke kontak ini</span> <span class="
    assert f'{audit_line}"muted">({SECOND_PHONE})</span>' in html
    assert re.search(r'<time title="\d+ \w+ \d{4} \d\d:\d\d:\d\d WIB">', html)

    status, _, _ = await ani.post(page_a + "/unmerge-contact", {"contact": other}, csrf=False)
    assert status == 403
    status, _, r = await ani.post(page_a + "/unmerge-contact", {"contact": other})
    assert (status, r.headers["Location"]) == (303, page_a)
    _, html, _ = await ani.get(page_a)
    assert _flash(html) == ("ok", "contact_unmerged", "Penggabungan kontak dibatalkan.")
    assert f'name="contact" value="{other}"' not in html
    audit = re.findall(r'<li class="audit-(\w+)">', html)
    assert audit == ["unmerged", "merged"]  # newest first
    await ani.get(page_a + "?lang=en")
    await ani.post(page_a + "/unmerge-contact", {"contact": other})
    _, html, _ = await ani.get(page_a)
    assert _flash(html) == ("error", "not_merged", "That contact is not merged into this citizen.")
    assert "Merge history" in html
    assert "Ani Lestari un-merged Budi Santoso" in html
    await ani.post(page_a + "/merge-contact", {"number": a, "confirm": "1"})
    _, html, _ = await ani.get(page_a)
    assert _flash(html)[1] == "same_contact"
