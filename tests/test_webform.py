"""The web form (/lapor): submission to ticket, validation, spam checks, rate limits, and the
status page, against a hub whose dispatcher runs in the background."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from tests.helpers import HubHarness, eventually, inbound_params

Factory = Callable[..., Awaitable[HubHarness]]
SECRET = "test-web-form-secret-0123"
PHONE = "+6281234567890"
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


async def _hub(factory: Factory, **web: Any) -> HubHarness:
    cfg = {"form_secret": SECRET, "min_fill_seconds": 0, **web}
    return await factory(
        workers=True,
        channels__web=cfg,
        routing=[{"categories": ["k3"], "unit": "k3", "category": "K3"}],
    )


async def _get(h: HubHarness, path: str, **params: str) -> tuple[int, str, dict[str, str]]:
    assert h.session is not None
    async with h.session.get(h.base + path, params=params, allow_redirects=False) as r:
        return r.status, await r.text(), dict(r.headers)


async def _submit(h: HubHarness, **fields: str) -> tuple[int, str, dict[str, str]]:
    _, page, _ = await _get(h, "/lapor")
    token = re.search(r'name="token" value="([^"]+)"', page)
    assert token is not None
    data = {
        "token": token.group(1),
        "name": "Siti Rahayu",
        "phone": "0812-3456-7890",
        "email": "",
        "category": "k3",
        "message": "Pekerja jatuh dari perancah, tidak ada APD.",
        "consent": "yes",
        "website": "",
    }
    data.update(fields)
    assert h.session is not None
    async with h.session.post(h.base + "/lapor", data=data, allow_redirects=False) as r:
        return r.status, await r.text(), dict(r.headers)


async def _published(h: HubHarness) -> int:
    return sum([int(await h.hub.redis.xlen(s)) for s in h.hub.inbound_streams()])


async def test_submission_becomes_a_ticket_on_the_phones_contact(harness_factory: Factory) -> None:
    """A valid form → 303 to the thank-you page → a "web" ticket routed by its category; a
    WhatsApp message from the same phone joins that contact (and its open ticket)."""
    h = await _hub(harness_factory)
    status, page, _ = await _get(h, "/lapor")
    assert status == 200
    assert '<html lang="id">' in page
    assert "Kirim pengaduan" in page
    assert '<html lang="en">' in (await _get(h, "/lapor", lang="en"))[1]
    status, _, headers = await _submit(h)
    assert status == 303
    location = headers["Location"]
    assert location.startswith("/lapor/terima-kasih?ref=")
    status, page, _ = await _get(h, location)
    assert status == 200
    assert "Pengaduan Anda diterima" in page
    assert location.split("=", 1)[1] in page
    tickets = await eventually(h.tickets)
    t = await h.ticket(tickets[0]["id"])
    assert (t["channel"], t["unit"], t["status"]) == ("web", "k3", "open")
    assert t["messages"][0]["text"].startswith("Pekerja jatuh")
    assert t["messages"][0]["meta"]["category"] == "k3"
    contact = t["contact_id"]
    assert await h.post_whatsapp(inbound_params("Ada kabar?", phone=PHONE)) == (200, _twiml())

    async def joined() -> bool:
        got = await h.ticket(t["id"])
        return len([m for m in got["messages"] if m["direction"] == "in"]) == 2

    await eventually(joined)
    assert [x["contact_id"] for x in await h.tickets()] == [contact]


def _twiml() -> str:
    return '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def test_missing_contact_and_bad_fields_are_named(harness_factory: Factory) -> None:
    """Neither phone nor e-mail → 400 with the field error, the summary links to the field,
    the answers are kept (escaped), and nothing is stored."""
    h = await _hub(harness_factory)
    status, page, _ = await _submit(h, phone="", email="", message=XSS)
    assert status == 400
    assert "Isi nomor HP atau e-mail" in page
    assert 'href="#phone"' in page
    assert 'id="phone-error"' in page
    assert 'aria-describedby="phone-hint phone-error"' in page
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    status, page, _ = await _submit(h, phone="12", email="nope", category="x", consent="")
    assert status == 400
    for text in ("Nomor HP tidak valid", "e-mail tidak valid", "Pilih kategori",
                 "Centang persetujuan"):  # fmt: skip
        assert text in page
    status, page, _ = await _submit(h, message="http://a.id http://b.id www.c.id")
    assert status == 400
    assert "Terlalu banyak tautan" in page
    assert await _published(h) == 0


async def test_honeypot_and_too_fast_are_refused(harness_factory: Factory) -> None:
    """A filled honeypot, a forged token, or a form sent before min_fill_seconds: refused,
    nothing stored."""
    h = await _hub(harness_factory)
    status, page, _ = await _submit(h, website="http://spam.example")
    assert status == 400
    assert "tidak dapat diterima" in page
    status, _, _ = await _submit(h, token="1.forged")
    assert status == 400
    slow = await _hub(harness_factory, min_fill_seconds=3600)
    status, page, _ = await _submit(slow)
    assert status == 400
    assert "tidak dapat diterima" in page
    assert await _published(h) == 0
    assert await _published(slow) == 0


async def test_rate_limits_per_contact_and_per_ip(harness_factory: Factory) -> None:
    """Over the limit for one phone (any notation) → 429 with Retry-After; per IP likewise."""
    h = await _hub(harness_factory, rate_per_contact_per_hour=2, rate_per_ip_per_hour=5)
    assert (await _submit(h))[0] == 303
    assert (await _submit(h, phone="", email="Siti@Example.ID"))[0] == 303
    assert (await _submit(h, phone="+62 812 3456 7890"))[0] == 303
    status, page, headers = await _submit(h)
    assert status == 429
    assert "Terlalu banyak permintaan" in page
    assert 0 < int(headers["Retry-After"]) <= 3601
    assert (await _submit(h, phone="081398765432"))[0] == 303  # 4th POST from this IP
    status, _, headers = await _submit(h, phone="081311112222")
    assert status == 429
    assert "Retry-After" in headers
    assert await _published(h) == 4


async def test_status_page_needs_the_right_contact(harness_factory: Factory) -> None:
    """The status shows only with the ticket's own phone (any notation); a wrong contact or
    number gets the same generic not-found; echoed input is escaped."""
    h = await _hub(harness_factory)
    assert (await _submit(h))[0] == 303
    tickets = await eventually(h.tickets)
    number = tickets[0]["number"]
    assert number
    status, page, _ = await _get(h, "/lapor/status", nomor=number, kontak="0812 3456 7890")
    assert status == 200
    assert "Sedang diproses" in page
    assert number in page
    assert "Keselamatan" in page or "K3" in page
    status, page, _ = await _get(h, "/lapor/status", nomor=number, kontak="0812 3456 7890",
                                 lang="en")  # fmt: skip
    assert "Being handled" in page
    await h.api("POST", f"/api/v1/tickets/{tickets[0]['id']}/status", json={"status": "resolved"})
    got = await _get(h, "/lapor/status", nomor=number, kontak=PHONE)
    assert "Selesai ditangani" in got[1]
    not_found = []
    for nomor, kontak in ((number, "081399998888"), (number, "x@y.id"),
                          ("KMN-2020-999999", PHONE), (tickets[0]["id"], PHONE)):  # fmt: skip
        status, page, _ = await _get(h, "/lapor/status", nomor=nomor, kontak=kontak)
        assert status == 404
        not_found.append(re.search(r'id="status-result">\s*<p>([^<]+)</p>', page))
    assert all(m is not None for m in not_found)
    assert len({m.group(1) for m in not_found if m}) == 1
    status, page, _ = await _get(h, "/lapor/status", nomor=XSS, kontak=XSS)
    assert status == 404
    assert "<script>" not in page
    assert "&lt;SCRIPT&gt;" in page


async def test_thank_you_page_escapes_and_status_is_rate_limited(
    harness_factory: Factory,
) -> None:
    """A hostile ref is not echoed; status look-ups are limited per IP; security headers."""
    h = await _hub(harness_factory, rate_per_ip_per_hour=2)
    status, page, headers = await _get(h, "/lapor/terima-kasih", ref=XSS)
    assert status == 200
    assert "<script>" not in page
    assert "<img" not in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for _ in range(2):
        assert (await _get(h, "/lapor/status", nomor="KMN-2026-000001", kontak=PHONE))[0] == 404
    status, page, headers = await _get(h, "/lapor/status", nomor="KMN-2026-000001", kontak=PHONE)
    assert status == 429
    assert "Retry-After" in headers
    assert not await h.hub.redis.keys(f"*{PHONE}*")  # rate-limit keys hash their bucket


async def test_form_is_off_without_its_section(harness_factory: Factory) -> None:
    """No [channels.web]: no form."""
    h = await harness_factory()
    status, _, _ = await _get(h, "/lapor")
    assert status == 404


async def test_forged_tokens_of_any_shape_are_refused_not_crashed(
    harness_factory: Factory,
) -> None:
    """Superscript digits, 5000 digits, non-ASCII: each a refusal with the form again, never a
    500 (``int("²")`` and ``compare_digest`` on non-ASCII strings both raise)."""
    h = await _hub(harness_factory)
    for token in ("\u00b2.abc", "9" * 5000 + ".x", "1.\u00e9\u00e9", "12.\u00b2"):
        status, page, _ = await _submit(h, token=token)
        assert status == 400, (token[:10], status)
        assert "<form" in page
    assert await _published(h) == 0
