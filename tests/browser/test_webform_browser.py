"""The public complaint form in headless Chromium, driven with the keyboard only, on a phone-
sized viewport: fill, send, thank-you page, then the ticket's status page.

A screenshot ``docs/webform.png`` is written only when ``HUB_SCREENSHOTS`` names a directory.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.browser.test_console_browser import browser  # noqa: F401  (the shared fixture)
from tests.helpers import HubHarness, eventually

Factory = Callable[..., Awaitable[HubHarness]]
MOBILE = {"width": 390, "height": 844}


async def _tab_to(page: Page, element_id: str, limit: int = 20) -> None:
    """Press Tab until the element has the focus (as a keyboard user would)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} never got the focus with Tab")


async def test_citizen_files_a_complaint_with_the_keyboard(
    harness_factory: Factory,
    browser: Browser,  # noqa: F811
) -> None:
    h = await harness_factory(
        workers=True,
        channels__web={"form_secret": "browser-form-secret-0123", "min_fill_seconds": 0},
    )
    ctx = await browser.new_context(viewport=MOBILE, locale="id-ID", timezone_id="Asia/Jakarta")
    page = await ctx.new_page()
    await page.goto(h.base + "/lapor")
    await expect(page.locator("html")).to_have_attribute("lang", "id")

    # A first try without any contact: the error summary takes the focus and links the field.
    await _tab_to(page, "name")
    await page.keyboard.type("Budi Santoso")
    await _tab_to(page, "category")
    await page.keyboard.type("Kes")  # type-ahead picks "Keselamatan dan kesehatan kerja (K3)"
    await page.keyboard.press("Tab")
    await expect(page.locator("#message")).to_be_focused()
    await page.keyboard.type("Tidak ada alat pelindung diri di pabrik kami.")
    await _tab_to(page, "consent")
    await page.keyboard.press("Space")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    summary = page.locator("#error-summary")
    await expect(summary).to_be_focused()
    await expect(summary).to_contain_text("Isi nomor HP atau e-mail")
    await expect(page.locator("#phone")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#message")).to_have_value(
        "Tidak ada alat pelindung diri di pabrik kami."
    )

    # Follow the summary's link to the field, give a phone number, send again.
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("#phone")).to_be_focused()
    await page.keyboard.type("0812 1111 2222")
    await _tab_to(page, "consent")
    if not await page.locator("#consent").is_checked():
        await page.keyboard.press("Space")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("Terima kasih")
    await expect(page.get_by_role("status")).to_contain_text("Pengaduan Anda diterima")

    tickets = await eventually(h.tickets)
    number = tickets[0]["number"]
    await page.get_by_role("link", name="Cek status pengaduan").first.focus()
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/lapor/status")
    await expect(page.locator("h1")).to_have_text("Cek status pengaduan")
    await _tab_to(page, "nomor")
    await page.keyboard.type(number)
    await page.keyboard.press("Tab")
    await page.keyboard.type("+6281211112222")
    await page.keyboard.press("Enter")
    result = page.locator("#status-result")
    await expect(result).to_contain_text(number)
    await expect(result).to_contain_text("Sedang diproses")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= MOBILE["width"], "the page scrolls sideways on a phone"

    if os.environ.get("HUB_SCREENSHOTS"):
        await page.goto(h.base + "/lapor")
        out = Path(os.environ["HUB_SCREENSHOTS"]) / "webform.png"
        await page.screenshot(path=str(out), full_page=True)
    await ctx.close()
