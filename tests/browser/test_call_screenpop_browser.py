"""The screen pop in a real browser: a call rings, and the agent on the queue page sees who is
calling with links to the caller's open tickets (Debian's chromium, as in the console test)."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, expect

from tests.browser.test_console_browser import _login, _page, browser
from tests.calls.test_call_events import SECRET, _event, post_call_event
from tests.helpers import HubHarness, eventually, inbound_params

__all__ = ["browser"]  # the fixture, shared with the console test


async def test_ringing_call_pops_the_callers_tickets(
    harness_factory: Any, browser: Browser
) -> None:
    h: HubHarness = await harness_factory(
        workers=True,
        channels__call__accounts={"hotline": {"unit": "general", "events_secret": SECRET}},
    )
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani Lestari")
    await h.post_whatsapp(inbound_params("THR saya belum dibayar", phone="+6281234567890"))

    async def numbered() -> list[dict[str, Any]] | None:
        ts = await h.tickets()
        return ts if ts and ts[0].get("number") else None

    [ticket] = await eventually(numbered)
    errors: list[str] = []
    page = await _page(browser, [])
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(h.base + "/console")
    await _login(page, h, "ani", "password-ani-1")
    await expect(page).to_have_url(h.base + "/console")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    pop = page.locator("#screenpop")
    await expect(pop).to_be_hidden()

    # the phone rings for ani: the banner names the masked caller and links the open ticket
    status, _ = await post_call_event(h, _event(agent="SIP/ani"))
    assert status == 200
    await expect(pop).to_be_visible()
    await expect(pop).to_contain_text("Panggilan masuk dari +6281*******90")
    await expect(pop).to_contain_text("untuk Anda")
    await expect(pop).to_contain_text("Antrean pengaduan")
    link = pop.get_by_role("link", name=ticket["number"])
    await expect(link).to_have_attribute("href", f"/console/tickets/{ticket['number']}")
    await expect(pop).not_to_contain_text("81234567890")

    # keyboard: the banner is in the tab order; Esc closes it
    await pop.locator(".screenpop-card").focus()
    await expect(pop.locator(".screenpop-card")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(pop).to_be_hidden()

    # a caller the hub has never seen: "new caller", no links; the close button works
    status, _ = await post_call_event(h, _event(caller="085698765432", call_id="c-2"))
    assert status == 200
    await expect(pop).to_contain_text("Pelapor baru")
    await expect(pop).not_to_contain_text("untuk Anda")
    await expect(pop.get_by_role("link")).to_have_count(0)
    await pop.get_by_role("button", name="Tutup pemberitahuan panggilan").click()
    await expect(pop).to_be_hidden()

    # ringing again for the citizen, then the link opens their ticket
    await post_call_event(h, _event(call_id="c-3"))
    await pop.get_by_role("link", name=ticket["number"]).click()
    await expect(page).to_have_url(re.compile(rf"/console/tickets/{ticket['number']}$"))
    await expect(page.locator("#timeline")).to_contain_text("THR saya belum dibayar")
    assert errors == []
