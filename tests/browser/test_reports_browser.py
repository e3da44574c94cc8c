"""The supervisors' reports page in headless Chromium (Debian's, as in the console test), on the
hand-checked week of ``tests/test_reports.py`` read on its manual clock (Wednesday 10:00):
the figures in the tables, the period/group form, the CSV behind "Unduh CSV", and the page
as printed (navigation and form gone, tables kept). An agent gets the 403 page.

Screenshots ``reports.png`` (screen, full page) and ``reports-print.png`` (print media) are
written only when ``HUB_SCREENSHOTS`` names a directory (``make screenshots``).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Locator, Page, expect

from hub.reports import CSV_COLUMNS
from hub.web.i18n import Translator
from tests.browser.test_console_browser import _login, _page, browser
from tests.helpers import HubHarness
from tests.test_reports import EXPECTED, bot, played

__all__ = ["bot", "browser", "played"]  # fixtures: Chromium, the fake bot, the played week

SHOTS = os.environ.get("HUB_SCREENSHOTS", "")
MONDAY = "/console/reports?from=2026-09-21&to=2026-09-21"
T = Translator("id")
# The page's columns, left to right, as named in the CSV.
SHOWN = (
    "created", "resolved", "open_at_end", "reopened", "reopen_rate",
    "first_response_median_s", "first_response_p90_s", "first_response_compliance",
    "first_response_breached",
    "resolution_median_s", "resolution_p90_s", "resolution_compliance", "resolution_breached",
)  # fmt: skip
# Hand-checked (module docstring of tests/test_reports.py), as the page writes them:
# 6 tickets, A resolved, A reopened of A B C resolved once; first responses 10 min (A),
# 1 h (B), 23 h (C), 23.5 h (E), 43.5 h (F): median C, p90 F; resolutions 4 h (A), 24.5 h (B),
# 47 h (C); 4 of 5 first responses and 2 of 3 resolutions on time; D and F still running late.
OVERALL_SHOWN = ["6", "1", "5", "1", "33,3 %", "23 j 0 mnt", "1 hr 19 j", "80,0 %", "1",
                 "1 hr 0 j", "1 hr 23 j", "66,7 %", "2"]  # fmt: skip


def _rendered(name: str, raw: str) -> str:
    """A CSV cell as the page shows it: shares as Indonesian percentages, times coarse."""
    if name in ("reopen_rate", "first_response_compliance", "resolution_compliance"):
        return "—" if raw == "" else f"{float(raw) * 100:.1f} %".replace(".", ",")
    if name.endswith("_s"):
        if raw == "":
            return "—"
        return f"{int(float(raw))} dtk" if float(raw) < 60 else T.duration(float(raw))
    return raw


def _expected_cells(row: dict[str, str]) -> list[str]:
    return [_rendered(c, row[c]) for c in SHOWN]


async def _table(section: Locator) -> dict[str, list[str]]:
    """A section's rows from the DOM: data-key → the cells' texts."""
    out: dict[str, list[str]] = {}
    for tr in await section.locator("tbody tr").all():
        key = await tr.get_attribute("data-key")
        assert key is not None
        out[key] = [c.strip() for c in await tr.locator("td").all_text_contents()]
    return out


def _parse(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return list(reader)


async def _style(page: Page, selector: str, prop: str) -> str:
    return str(
        await page.locator(selector).first.evaluate(
            "(el, p) => getComputedStyle(el).getPropertyValue(p)", prop
        )
    )


async def test_supervisor_reads_downloads_and_prints_the_report(
    played: tuple[HubHarness, dict[str, str]], browser: Browser
) -> None:
    h, _ = played
    await h.hub.auth.create_user("sri", "password-sri-1", "supervisor", [], "Sri Wahyuni")
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani Lestari")
    dialogs: list[str] = []
    errors: list[str] = []
    page = await _page(browser, dialogs)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: ConsoleMessage) -> None:  # CSP violations are logged as errors
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)

    # sign in on the way to Monday's report
    await page.goto(h.base + MONDAY)
    await _login(page, h, "sri", "password-sri-1")
    await expect(page).to_have_url(h.base + MONDAY)
    await expect(page.get_by_role("heading", name="Laporan layanan", level=1)).to_be_visible()
    await expect(page.locator(".report-period")).to_have_text(
        "Periode 2026-09-21 s.d. 2026-09-21 (WIB) · data per 23 Sep 2026 10:00:00 WIB"
    )
    await expect(page.locator(".mainnav a[aria-current=page]")).to_have_text("Laporan")
    await expect(page.locator("#r-from")).to_have_value("2026-09-21")
    await expect(page.locator("#r-to")).to_have_value("2026-09-21")
    await expect(page.locator("#r-group")).to_have_value("")
    sections = page.locator("section.report-section")
    await expect(sections).to_have_count(4)
    assert [await s.get_attribute("data-group") for s in await sections.all()] == [
        "overall", "unit", "channel", "category",
    ]  # fmt: skip

    # the figures: all tickets as hand-checked, every other row as its hand-checked CSV values
    overall = page.locator("section[data-group=overall] tbody tr")
    await expect(overall.locator("th")).to_have_text("Semua tiket")
    await expect(overall.locator("td")).to_have_text(OVERALL_SHOWN)
    unit = page.locator("section[data-group=unit]")
    await expect(unit.locator("tbody tr")).to_have_count(len(h.settings.units))
    await expect(unit.locator("tr[data-key=k3] th")).to_have_text("Bina Pengujian K3")
    await expect(unit.locator("tr[data-key=hi_upah] td").first).to_have_text("0")
    channel = page.locator("section[data-group=channel]")
    await expect(channel.locator("tr[data-key=telegram] th")).to_have_text("Telegram")
    category = page.locator("section[data-group=category]")
    await expect(category.locator('tr[data-key=""] th')).to_have_text("(tanpa kategori)")
    shown = {g: await _table(page.locator(f"section[data-group={g}]")) for g in
             ("overall", "unit", "channel", "category")}  # fmt: skip
    for (group, key), values in EXPECTED.items():
        want = _expected_cells(dict(zip(CSV_COLUMNS[4:], values, strict=True)))
        assert shown[group][key] == want, (group, key)
    labels = await unit.locator("tbody th").all_text_contents()
    assert labels == sorted(labels, key=str.casefold)  # the reader's alphabetical order

    # "Unduh CSV": the link, its download, and the same URL fetched with the session
    link = page.get_by_role("link", name="Unduh CSV")
    await expect(link).to_have_attribute(
        "href", "/api/v1/reports.csv?from=2026-09-21&to=2026-09-21"
    )
    async with page.expect_download() as caught:
        await link.click()
    download = await caught.value
    assert download.suggested_filename == "laporan-2026-09-21_2026-09-21.csv"
    saved = Path(await download.path())
    r = await page.request.get(h.base + (await link.get_attribute("href") or ""))
    assert r.status == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert saved.read_bytes() == await r.body()  # what the link saves is what we parse
    text = await r.text()
    lines = _parse(text)
    got = {(x["group"], x["key"]): tuple(x[c] for c in CSV_COLUMNS[4:]) for x in lines}
    for group_key, values in EXPECTED.items():
        assert got[group_key] == values, group_key
    assert {(x["period_from"], x["period_to"]) for x in lines} == {("2026-09-21", "2026-09-21")}

    if SHOTS:
        await page.mouse.move(0, 0)  # no hover highlight in the picture
        await page.screenshot(path=str(Path(SHOTS) / "reports.png"), full_page=True)

    # on paper: no navigation, no form, no CSV link; the tables and the period stay
    for selector in (".topbar", ".report-form", "footer.help"):
        await expect(page.locator(selector)).to_be_visible()
    await page.emulate_media(media="print")
    for selector in (".topbar", ".report-form", "footer.help"):
        await expect(page.locator(selector)).to_be_hidden()
        assert await _style(page, selector, "display") == "none", selector
    for hidden in (page.locator("nav.mainnav"), link, page.locator("#r-from")):
        await expect(hidden).to_be_hidden()
    await expect(page.locator(".report-period")).to_be_visible()
    tables = page.locator("table.report-table")
    await expect(tables).to_have_count(4)
    for table in await tables.all():
        await expect(table).to_be_visible()
        assert await table.evaluate("el => getComputedStyle(el).display") == "table"
        assert await table.evaluate("el => getComputedStyle(el).visibility") == "visible"
    assert await _style(page, ".report-scroll", "overflow-x") == "visible"  # nothing cut off
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / "reports-print.png"), full_page=True)
    await page.emulate_media(media="screen")
    await expect(page.locator(".report-form")).to_be_visible()

    # Monday to Wednesday, per channel: the page follows the form
    await page.get_by_label("Sampai tanggal").fill("2026-09-23")
    await page.get_by_label("Kelompokkan menurut").select_option("channel")
    await page.get_by_role("button", name="Tampilkan").click()
    week = "/console/reports?from=2026-09-21&to=2026-09-23&group=channel"
    await expect(page).to_have_url(h.base + week)
    await expect(page.locator(".report-period")).to_contain_text(
        "Periode 2026-09-21 s.d. 2026-09-23 (WIB)"
    )
    await expect(sections).to_have_count(1)
    await expect(sections).to_have_attribute("data-group", "channel")
    await expect(page.locator("#r-to")).to_have_value("2026-09-23")
    await expect(page.locator("#r-group")).to_have_value("channel")
    # H (Tuesday) joins WhatsApp; B (Tue) and C (Wed) were resolved before the period's end
    volumes = "td:nth-child(-n+4)"  # created, resolved, open at the end
    await expect(channel.locator(f"tr[data-key=whatsapp] {volumes}")).to_have_text(["4", "2", "2"])
    await expect(channel.locator(f"tr[data-key=telegram] {volumes}")).to_have_text(["3", "1", "2"])
    await expect(link).to_have_attribute(
        "href", "/api/v1/reports.csv?from=2026-09-21&to=2026-09-23&group=channel"
    )
    r = await page.request.get(h.base + (await link.get_attribute("href") or ""))
    assert (r.status, r.headers["content-type"]) == (200, "text/csv; charset=utf-8")
    assert r.headers["content-disposition"] == (
        'attachment; filename="laporan-2026-09-21_2026-09-23-channel.csv"'
    )
    lines = _parse(await r.text())
    assert {(x["group"], x["period_from"], x["period_to"]) for x in lines} == {
        ("channel", "2026-09-21", "2026-09-23")
    }
    shown_week = await _table(channel)
    assert {x["key"]: _expected_cells(x) for x in lines} == shown_week

    assert dialogs == []
    assert errors == []

    # an agent signs in on the way to the reports: the 403 page, and no link to it
    agent = await _page(browser, dialogs)
    await agent.goto(h.base + "/console/reports")
    await _login(agent, h, "ani", "password-ani-1")
    await expect(agent.get_by_role("heading", name="Khusus supervisor")).to_be_visible()
    response = await agent.reload()
    assert response is not None
    assert response.status == 403
    await expect(agent.locator("table.report-table")).to_have_count(0)
    await expect(agent.locator('a[href="/console/reports"]')).to_have_count(0)
    await agent.context.close()
    await page.context.close()
