"""The console in a real browser: Debian's chromium, headless, driven by Playwright, against a
hub whose dispatcher and sender run in the background (as in production).

Never ``playwright install``: the browser is the system's ``/usr/bin/chromium`` (Debian
package ``chromium``). Screenshots of the login, queue and ticket pages are written to
``docs/`` on every run, at 1280×800.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

from tests.helpers import SID1, HubHarness, eventually, inbound_params

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The screenshots in docs/ are retaken with `make screenshots` (HUB_SCREENSHOTS=docs); a plain
# test run still takes them (so a broken page shows up) but into a temporary directory.
DOCS = Path(os.environ.get("HUB_SCREENSHOTS") or tempfile.mkdtemp(prefix="hub-shots-"))
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
VIEWPORT = {"width": 1280, "height": 800}
Factory = Callable[..., Awaitable[HubHarness]]

expect.set_options(timeout=10_000)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed: run `make test`, which installs it")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


async def _hub(harness_factory: Factory) -> HubHarness:
    h = await harness_factory(
        workers=True,
        routing=[
            {"keywords": ["pelatihan", "magang"], "unit": "vokasi", "category": "Pelatihan",
             "priority": "high"}
        ],
        canned={
            "cek": {
                "title_id": "Sedang dicek",
                "title_en": "Being checked",
                "text_id": "Halo {name}, tiket {ticket_number} sedang kami cek. Salam, {agent}.",
                "text_en": "Hello {name}, we are checking ticket {ticket_number}. {agent}.",
            }
        },
    )  # fmt: skip
    await h.hub.auth.create_user(
        "ani", "password-ani-1", "agent", ["general", "vokasi"], "Ani Lestari"
    )
    return h


async def _page(browser: Browser, dialogs: list[str]) -> Page:
    ctx = await browser.new_context(
        viewport=VIEWPORT, locale="id-ID", timezone_id="Asia/Jakarta"
    )  # fmt: skip
    page = await ctx.new_page()

    async def on_dialog(d: Dialog) -> None:
        dialogs.append(d.message)
        await d.dismiss()

    page.on("dialog", on_dialog)
    return page


async def _login(page: Page, h: HubHarness, username: str, password: str) -> None:
    await page.get_by_label("Nama pengguna").fill(username)
    await page.get_by_label("Kata sandi").fill(password)
    await page.get_by_label("Kata sandi").press("Enter")


async def test_agent_works_a_ticket_live(harness_factory: Factory, browser: Browser) -> None:
    h = await _hub(harness_factory)
    dialogs: list[str] = []
    errors: list[str] = []
    page = await _page(browser, dialogs)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # sign in through the form (the console sends us there first)
    await page.goto(h.base + "/console")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await expect(page.get_by_role("heading", name="Masuk ke konsol petugas")).to_be_visible()
    await page.screenshot(path=str(DOCS / "console-login.png"))
    await _login(page, h, "ani", "password-ani-1")
    await expect(page).to_have_url(h.base + "/console")
    await expect(page.get_by_role("button", name="Ambil tiket berikutnya")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")

    # citizens write; the queue shows them without a reload
    await page.evaluate("window.__samePage = true")
    await h.post_whatsapp(inbound_params("Selamat siang, THR saya tahun ini belum dibayar."))
    await expect(page.locator("#queue tr", has_text="Siti Rahayu")).to_be_visible()
    await h.post_whatsapp(
        inbound_params(XSS, phone="+6281311112222", ProfileName="Budi Santoso")
    )  # fmt: skip
    await h.post_whatsapp(
        inbound_params("Info pelatihan las gratis di BLK Bekasi?", phone="+6285712345678",
                       ProfileName="Dewi Anggraini")
    )  # fmt: skip
    await expect(page.locator("#queue tr", has_text="Budi Santoso")).to_be_visible()
    await expect(page.locator("#queue tr", has_text="Dewi Anggraini")).to_be_visible()
    assert await page.evaluate("window.__samePage === true")
    await expect(page.locator("#waiting-total")).to_have_text("3 tiket menunggu")

    # claim next from the keyboard: the high-priority ticket first
    await page.keyboard.press("n")
    await expect(page).to_have_url(re.compile(r"/console/tickets/KMN-\d{4}-\d{6}$"))
    await expect(page.locator("#timeline")).to_contain_text("Info pelatihan las gratis")
    await expect(page.locator("#ticket-claim")).to_contain_text("Dipegang Anda")
    await page.get_by_role("link", name="Kembali ke antrean").click()
    await page.get_by_role("button", name="Ambil tiket berikutnya").click()
    await expect(page.locator("#timeline")).to_contain_text("THR saya tahun ini belum dibayar")
    number = page.url.rsplit("/", 1)[1]

    # a canned response, then our own words; Ctrl+Enter sends
    await page.get_by_label("Jawaban siap pakai").select_option("cek")
    reply_box = page.locator("#reply-text")
    await expect(reply_box).to_have_value(
        f"Halo Siti Rahayu, tiket {number} sedang kami cek. Salam, Ani Lestari."
    )
    await reply_box.fill("")
    await page.keyboard.press("Escape")
    await page.keyboard.press("r")
    await expect(reply_box).to_be_focused()
    text = "Baik Ibu Siti, kami hubungi perusahaan Anda hari ini."
    await page.keyboard.type(text)
    await page.keyboard.press("Control+Enter")
    await expect(page.locator(".flash-ok")).to_contain_text("Balasan masuk antrean pengiriman.")
    state = page.locator(".msg-out", has_text=text).locator(".state")
    await expect(state).to_have_attribute("data-state", "sent")
    await expect(state).to_have_text("Terkirim")

    # Twilio reports delivery: the badge follows without a reload
    sent = next(s for s in h.fake.sent if s.params.get("Body") == text)
    assert await h.fake.status_callback(sent.params["StatusCallback"], SID1, sent, "delivered")
    await expect(state).to_have_attribute("data-state", "delivered")
    await expect(state).to_have_text("Diterima")
    await page.locator("#note-text").fill("Perusahaan: PT Sinar Jaya, Bekasi. Cek ke pengawas.")
    await page.get_by_role("button", name="Simpan catatan").click()
    await expect(page.locator(".note").last).to_contain_text("PT Sinar Jaya")
    await page.get_by_role("button", name="Tutup pesan").click()
    await expect(page.locator(".flash-ok")).to_have_count(0)
    await page.screenshot(path=str(DOCS / "console-ticket.png"))

    # the queue: two tickets held, one waiting
    await page.keyboard.press("q")
    await expect(page.locator("#queue .mine-list li")).to_have_count(2)
    await expect(page.locator("#waiting-total")).to_have_text("1 tiket menunggu")
    await page.screenshot(path=str(DOCS / "console-queue.png"))

    # resolve
    await page.locator("#queue .mine-list a", has_text=number).click()
    await page.get_by_role("button", name="Tandai selesai").click()
    await expect(page.locator("#ticket-status")).to_have_text("Selesai")
    assert (await h.ticket(number))["status"] == "resolved"

    # the citizen's markup is text: visible as typed, never run
    await page.goto(h.base + "/console")
    await page.locator("#queue tr", has_text="Budi Santoso").locator("a").click()
    body = page.locator(".msg-in .msg-body")
    await expect(body).to_have_text(XSS)
    assert await page.locator("#timeline img, #timeline script").count() == 0

    # English on request, remembered
    await page.get_by_role("link", name="EN").click()
    await expect(page.get_by_role("button", name="Claim ticket")).to_be_visible()
    await page.goto(h.base + "/console")
    await expect(page.get_by_role("button", name="Claim next ticket")).to_be_visible()

    assert dialogs == []
    assert errors == []


async def test_colleagues_see_each_other_view_and_type(
    harness_factory: Factory, browser: Browser
) -> None:
    h = await _hub(harness_factory)
    await h.hub.auth.create_user("rina", "password-rina-1", "agent", ["general"], "Rina")
    await h.post_whatsapp(inbound_params("Kartu prakerja saya tidak bisa login"))

    async def numbered() -> str:
        items = await h.tickets()
        return str(items[0].get("number", "")) if items else ""

    number = await eventually(numbered)
    dialogs: list[str] = []
    ani, rina = await _page(browser, dialogs), await _page(browser, dialogs)
    for page, user, pw in ((ani, "ani", "password-ani-1"), (rina, "rina", "password-rina-1")):
        await page.goto(f"{h.base}/console/tickets/{number}")
        await _login(page, h, user, pw)
        await expect(page.locator("#timeline")).to_contain_text("Kartu prakerja")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(ani.locator("#others")).to_have_text("Rina sedang melihat tiket ini")
    await rina.locator("#reply-text").press_sequentially("Mohon kirim")
    await expect(ani.locator("#others")).to_have_text("Rina sedang mengetik…")
    # a note from one shows up in the other's timeline live
    await ani.locator("#note-text").fill("Sudah diteruskan ke tim Prakerja")
    await ani.keyboard.press("Control+Enter")
    await expect(rina.locator("#timeline .note")).to_contain_text("Sudah diteruskan")
    assert dialogs == []


async def test_agent_merges_two_tickets_through_the_page(
    harness_factory: Factory, browser: Browser
) -> None:
    """An agent merges one ticket into another from the keyboard and sees one timeline."""
    h = await _hub(harness_factory)
    await h.post_whatsapp(inbound_params("Gaji bulan lalu belum dibayar penuh."))
    await h.post_whatsapp(
        inbound_params("Ini nomor baru saya, soal gaji yang sama.", phone="+6285712345678",
                       ProfileName="Siti (nomor kedua)")
    )  # fmt: skip

    async def numbered() -> list[str]:
        items = await h.tickets()
        nums = [str(t.get("number", "")) for t in items]
        return sorted(nums) if len(nums) == 2 and all(nums) else []

    first, second = await eventually(numbered)
    dialogs: list[str] = []
    errors: list[str] = []
    page = await _page(browser, dialogs)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{h.base}/console/tickets/{second}")
    await _login(page, h, "ani", "password-ani-1")
    await expect(page.locator("#timeline")).to_contain_text("nomor baru saya")

    # the merge is behind a disclosure and a confirmation box: both work from the keyboard
    number_box = page.get_by_label("Nomor tiket tujuan")
    await expect(number_box).to_be_hidden()
    await page.locator("#merge-ticket summary").focus()
    await page.keyboard.press("Enter")
    await number_box.fill(first)
    await page.keyboard.press("Tab")
    await page.keyboard.press("Space")
    await expect(page.locator("#merge-ticket input[name=confirm]")).to_be_checked()
    await page.get_by_role("button", name="Gabungkan tiket").click()

    await expect(page).to_have_url(f"{h.base}/console/tickets/{first}")
    await expect(page.locator(".flash-ok")).to_contain_text(f"Tiket {second} digabung")
    merged = page.locator(".msg-in", has_text="nomor baru saya")
    await expect(merged.locator(".from-ticket")).to_have_text(f"dari {second}")
    await expect(page.locator(".msg-in", has_text="Gaji bulan lalu")).to_be_visible()
    event = page.locator("#timeline .event", has_text=f"menggabungkan tiket {second} ke tiket ini")
    await expect(event).to_contain_text("Ani Lestari")
    await page.locator("#merge-ticket summary").click()
    await page.get_by_role("button", name="Tutup pesan").click()
    await page.screenshot(path=str(DOCS / "console-merge.png"))
    assert (await h.ticket(second))["status"] == "closed"
    assert dialogs == []
    assert errors == []
