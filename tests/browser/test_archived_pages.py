"""Archived tickets in the console, in headless Chromium (Debian's, as in the console test): the
ticket page of an archived ticket answers 410 Gone and says so (in Indonesian by default, in
English when asked), other units' people get the plain 404; the report page for a period that
only partly covers an archived month answers 409 with the clear message and its form kept,
not a broken page, and the whole archived month is served from its saved report.

The hub and its tickets are those of ``tests/test_archive.py`` (a manual clock, 1 December
2026, a 30-day cut): ticket A of September is archived before the browser opens.
"""

from __future__ import annotations

from playwright.async_api import Browser, ConsoleMessage, Page, expect

from hub.web.i18n import Translator
from hub.web.i18n_reports import ID as REPORTS_ID
from tests.browser.test_console_browser import _login, _page, browser
from tests.helpers import HubHarness
from tests.test_archive import DEC_01, Factory, _harness, _scenario

__all__ = ["browser"]  # fixture: Chromium

T = Translator("id")


async def _archived(harness_factory: Factory) -> tuple[HubHarness, dict[str, str], str]:
    """The scenario of tests/test_archive.py with A archived; A's number."""
    h = await _harness(harness_factory)
    ids = await _scenario(h)
    number = (await h.ticket(ids["A"]))["number"]
    result = await h.hub.make_archiver().run_once()
    assert [t for t, _ in result.archived] == [ids["A"]]
    await h.hub.auth.create_user("sri", "password-sri-1", "supervisor", [], "Sri Wahyuni")
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani Lestari")
    await h.hub.auth.create_user("eko", "password-eko-1", "agent", ["vokasi"], "Eko Prasetyo")
    return h, ids, number


def _watch(page: Page) -> list[str]:
    """Script errors and CSP violations (console errors other than the status line Chromium
    logs for a 4xx document, which is what these pages answer)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and "the server responded with a status of 4" not in msg.text:
            errors.append(msg.text)

    page.on("console", on_console)
    return errors


async def test_archived_ticket_page_answers_410_and_says_so(
    harness_factory: Factory, browser: Browser
) -> None:
    h, ids, number = await _archived(harness_factory)
    dialogs: list[str] = []
    page = await _page(browser, dialogs)
    errors = _watch(page)

    # the agent follows an old link to the ticket (by number), signing in on the way
    await page.goto(h.base + f"/console/tickets/{number}")
    await _login(page, h, "ani", "password-ani-1")
    await expect(page).to_have_url(h.base + f"/console/tickets/{number}")
    heading = page.get_by_role("heading", name="Tiket diarsipkan", level=1)
    await expect(heading).to_be_visible()
    at = T.when_full(DEC_01)
    await expect(page.locator("main p").first).to_have_text(
        f"Tiket {number} sudah diarsipkan ({at}) ke berkas 2026-09.jsonl.gz. Supervisor dapat "
        "membacanya lewat ekspor tiket dengan ?archived=1."
    )
    await expect(page.get_by_role("link", name="Kembali ke antrean")).to_have_attribute(
        "href", "/console"
    )
    response = await page.reload()
    assert response is not None
    assert response.status == 410
    assert (await page.evaluate("document.documentElement.lang")) == "id"
    # by its id too; and in English when asked
    response = await page.goto(h.base + f"/console/tickets/{ids['A']}")
    assert response is not None
    assert response.status == 410
    await expect(heading).to_be_visible()
    response = await page.goto(h.base + f"/console/tickets/{number}?lang=en")
    assert response is not None
    assert response.status == 410
    await expect(page.get_by_role("heading", name="Ticket archived", level=1)).to_be_visible()
    await expect(page.locator("main p").first).to_contain_text(f"Ticket {number} was archived (")
    await expect(page.locator("main p").first).to_contain_text("2026-09.jsonl.gz")
    # a ticket still in Redis opens as usual
    response = await page.goto(h.base + f"/console/tickets/{ids['B']}?lang=id")
    assert response is not None
    assert response.status == 200
    assert dialogs == []
    assert errors == []
    await page.context.close()

    # someone of another unit learns nothing about it: the plain 404
    other = await _page(browser, dialogs)
    other_errors = _watch(other)
    await other.goto(h.base + f"/console/tickets/{number}")
    await _login(other, h, "eko", "password-eko-1")
    await expect(other.get_by_role("heading", name="Tidak ditemukan", level=1)).to_be_visible()
    response = await other.reload()
    assert response is not None
    assert response.status == 404
    await expect(other.get_by_text("diarsipkan")).to_have_count(0)
    await expect(other.get_by_text("2026-09.jsonl.gz")).to_have_count(0)
    assert other_errors == []
    await other.context.close()


async def test_report_over_an_archived_month_answers_409_clearly(
    harness_factory: Factory, browser: Browser
) -> None:
    h, _, _ = await _archived(harness_factory)
    dialogs: list[str] = []
    page = await _page(browser, dialogs)
    errors = _watch(page)
    part = "/console/reports?from=2026-09-21&to=2026-10-05"

    await page.goto(h.base + part)
    await _login(page, h, "sri", "password-sri-1")
    await expect(page).to_have_url(h.base + part)
    response = await page.reload()
    assert response is not None
    assert response.status == 409
    # the page is whole: heading, navigation, the form with the period asked, and the message
    await expect(page.get_by_role("heading", name="Laporan layanan", level=1)).to_be_visible()
    await expect(page.locator(".mainnav a[aria-current=page]")).to_have_text("Laporan")
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text(REPORTS_ID["reports.err.archived"].format(months="2026-09"))
    await expect(alert).to_have_class("flash flash-error")
    await expect(page.locator("#r-from")).to_have_value("2026-09-21")
    await expect(page.locator("#r-to")).to_have_value("2026-10-05")
    await expect(page.locator("section.report-section")).to_have_count(0)
    await expect(page.locator("table.report-table")).to_have_count(0)
    await expect(page.locator(".report-period")).to_have_count(0)
    await expect(page.get_by_role("link", name="Unduh CSV")).to_have_count(0)
    assert "Traceback" not in await page.content()

    # as the message says: the whole month is served (from its saved report)
    await page.get_by_label("Dari tanggal").fill("2026-09-01")
    await page.get_by_label("Sampai tanggal").fill("2026-09-30")
    async with page.expect_navigation() as nav:
        await page.get_by_role("button", name="Tampilkan").click()
    response = await nav.value
    assert response is not None
    assert response.status == 200
    await expect(page).to_have_url(h.base + "/console/reports?from=2026-09-01&to=2026-09-30&group=")
    await expect(page.get_by_role("alert")).to_have_count(0)
    await expect(page.locator(".report-period")).to_contain_text(
        "Periode 2026-09-01 s.d. 2026-09-30 (WIB)"
    )
    overall = page.locator("section[data-group=overall] tbody tr td")
    await expect(overall.first).to_have_text("3")  # A (archived), B and C, all of September
    assert dialogs == []
    assert errors == []
    await page.context.close()
