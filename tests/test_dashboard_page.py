"""The supervisors' dashboard page: its numbers over HTTP against a hand-checked scenario, who
may see it, escaping of configured names in tables and SVG, the dead-letter replay form, the
server-made charts on known inputs, and, in headless Chromium, the page following the load a
simulator sends without a reload (with the screenshots for the docs)."""

from __future__ import annotations

import itertools
import os
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser as Chromium
from playwright.async_api import Page, expect

from hub import charts
from hub.demo import simulate
from hub.demo.fake_telegram import FakeTelegram
from hub.demo.fake_twilio import Scripted
from hub.load_stats import INBOUND
from hub.settings import DEFAULT_UNITS
from hub.web.i18n import TABLES
from tests.browser.test_console_browser import _login, _page, browser
from tests.helpers import HubHarness, eventually, inbound_params
from tests.test_console_pages import Browser

__all__ = ["browser"]  # the Chromium fixture, shared with the console's browser tests

MON_0900 = 1_789_956_000.0  # Monday 21 September 2026, 09:00 WIB
MINUTE, HOUR = 60.0, 3600.0
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
ID, EN = TABLES["id"], TABLES["en"]
SVG = "{http://www.w3.org/2000/svg}"
Factory = Callable[..., Awaitable[HubHarness]]
ROUTES = ("/console/dashboard", "/console/dashboard/live", "/console/dashboard/charts")
SHOTS = os.environ.get("HUB_SCREENSHOTS", "")
TG_TOKEN = "123456:ABCdefGhIjkl-dashboard"
ANSWERED = 10  # citizens answered earlier in the browser scenario


@pytest.fixture
async def hub_h(harness_factory: Factory) -> HubHarness:
    """A hub with a unit whose configured name is markup, a rule routing to it, a backlog
    alert rule, one supervisor and one agent."""
    h = await harness_factory(
        units={**DEFAULT_UNITS, "evil": {"name_id": XSS, "name_en": XSS}},
        routing=[{"keywords": ["racun"], "unit": "evil"}],
        alerts__rules=[{"name": "antrean", "kind": "backlog_above", "threshold": 1}],
    )
    await h.hub.auth.create_user("sari", "password-sari-1", "supervisor", [], "Sari Wijaya")
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani Lestari")
    return h


@pytest.fixture
async def signed_in(hub_h: HubHarness) -> AsyncIterator[Callable[[str, str], Awaitable[Browser]]]:
    made: list[Browser] = []

    async def sign_in(username: str, password: str) -> Browser:
        b = Browser(hub_h)
        made.append(b)
        status, _, _ = await b.login(username, password)
        assert status == 303
        return b

    yield sign_in
    for b in made:
        await b.close()


def _xml(markup: str) -> ET.Element:
    """Parse markup the hub made (the point is to prove it well-formed, not to trust it)."""
    return ET.fromstring(markup)  # noqa: S314 - our own output, in a test


def _row(html: str, attr: str) -> str:
    m = re.search(rf"<tr {attr}[^>]*>(.*?)</tr>", html, re.S)
    assert m, f"no row {attr} on the page"
    return m.group(1)


def _cell(row: str, key: str) -> str:
    m = re.search(rf'data-k="{key}"[^>]*>\s*([^<]*?)\s*<', row)
    assert m, f"no cell {key}"
    return unescape(m.group(1))


def _tile(html: str, kpi: str) -> str:
    m = re.search(rf'id="kpi-{kpi}">.*?<span class="kpi-value">([^<]*)</span>', html, re.S)
    assert m, f"no tile {kpi}"
    return unescape(m.group(1))


def _alert(html: str) -> str:
    m = re.search(r'<span class="alert-msg">([^<]*)</span>', html)
    assert m, "no alert on the page"
    return unescape(m.group(1))


def _flash(html: str) -> tuple[str, str]:
    m = re.search(r'<div class="flash flash-(\w+)"[^>]*>\s*<span class="flash-text">([^<]*)', html)
    assert m, "no flash on the page"
    return m.group(1), unescape(m.group(2))


# -- over HTTP --------------------------------------------------------------------------------


async def test_live_fragment_has_the_scenarios_numbers(
    hub_h: HubHarness, signed_in: Callable[[str, str], Awaitable[Browser]]
) -> None:
    """Two citizens on wa1, one on wa2, at 09:00; ten minutes later the tiles, the channel
    and unit rows, the agents and the alert banner say so, in Indonesian, then in English."""
    h = hub_h
    h.clock.t = MON_0900
    await h.post_whatsapp(inbound_params("THR belum dibayar", phone="+6281234567890"))
    await h.post_whatsapp(inbound_params("PHK sepihak", phone="+6281234567891"))
    await h.post_whatsapp(inbound_params("Gaji di bawah UMK", phone="+6281234567892"), "wa2")
    await h.drain_inbound()
    held = next(t for t in await h.tickets() if t["account"] == "wa1")
    ani = await signed_in("ani", "password-ani-1")  # signing in puts her online
    status, _, _ = await ani.post(f"/console/tickets/{held['number']}/claim", {})
    assert status == 303
    h.clock.t = MON_0900 + 10 * MINUTE
    [fired] = await h.observer().tick()
    assert fired.key == "antrean:unit general"

    cap = h.settings.console.agent_capacity
    sari = await signed_in("sari", "password-sari-1")
    status, html, r = await sari.get("/console/dashboard/live")
    assert status == 200
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert _tile(html, "waiting") == "2"
    assert _tile(html, "oldest") == "10 mnt"
    # signing in put Sari online too: online counts the busy, busy is Ani alone
    assert (_tile(html, "online"), _tile(html, "busy"), _tile(html, "away")) == ("2", "1", "0")
    assert 'data-agent="sari" data-state="online"' in html
    assert _tile(html, "inbound") == "0.2"  # 3 messages over 15 minutes
    wa1 = _row(html, 'data-subject="whatsapp/wa1"')
    got = {k: _cell(wa1, k) for k in ("inbound_last_hour", "opened_last_hour", "open")}
    assert got == {"inbound_last_hour": "2", "opened_last_hour": "2", "open": "2"}
    assert _cell(wa1, "first_response") == ID["dash.none"]  # nobody answered yet
    wa2 = _row(html, 'data-subject="whatsapp/wa2"')
    assert (_cell(wa2, "inbound_last_hour"), _cell(wa2, "oldest_waiting")) == ("1", "10 mnt")
    assert (_cell(wa1, "waiting"), _cell(wa2, "waiting")) == ("1", "1")
    general = _row(html, 'data-unit="general"')
    assert (_cell(general, "waiting"), _cell(general, "open")) == ("2", "3")
    assert _cell(general, "opened_last_hour") == "3"
    ani_row = _row(html, 'data-agent="ani" data-state="busy"')
    assert (_cell(ani_row, "holding"), _cell(ani_row, "load")) == ("1", f"1 / {cap}")
    assert ID["dash.state.busy"] in ani_row
    assert re.search(r'class="alert alert-warning"[^>]*data-key="antrean:unit general"', html)
    assert _alert(html) == "Antrean unit general: 2 tiket menunggu (ambang 1)"

    status, html, _ = await sari.get("/console/dashboard/live?lang=en")
    assert EN["dash.kpi.waiting"] in html
    assert _tile(html, "oldest") == "10 min"
    assert _alert(html) == "Unit general queue: 2 tickets waiting (threshold 1)"

    # 15:30: 6.5 of 8 business hours gone, every first response at risk: listed, linked
    h.clock.t = MON_0900 + 6.5 * HOUR
    _, html, _ = await sari.get("/console/dashboard/live?lang=id")
    assert _tile(html, "at-risk") == "3"
    rows = re.findall(r'<tr data-ticket="([^"]+)">(.*?)</tr>', html, re.S)
    assert sorted(tid for tid, _ in rows) == sorted(t["id"] for t in await h.tickets())
    row = dict(rows)[held["id"]]
    assert f'href="/console/tickets/{held["number"]}"' in row
    assert ID["dash.sla.at_risk"] in row
    assert "Ani Lestari" in row  # who holds it


async def test_first_response_median_shows_in_seconds_and_minutes(
    hub_h: HubHarness, signed_in: Callable[[str, str], Awaitable[Browser]]
) -> None:
    """An answer 45 seconds after the citizen wrote reads "45 dtk", not "just now"."""
    h = hub_h
    h.clock.t = MON_0900
    await h.post_whatsapp(inbound_params("Halo", phone="+6281234567890"))
    await h.drain_inbound()
    [t] = await h.tickets()
    h.clock.t = MON_0900 + 45
    status, _ = await h.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Baik"})
    assert status == 202
    sari = await signed_in("sari", "password-sari-1")
    _, html, _ = await sari.get("/console/dashboard/live")
    assert _cell(_row(html, 'data-subject="whatsapp/wa1"'), "first_response") == "45 dtk"
    assert _cell(_row(html, 'data-unit="general"'), "first_response") == "45 dtk"


async def test_agents_get_403_and_strangers_the_login(
    hub_h: HubHarness, signed_in: Callable[[str, str], Awaitable[Browser]]
) -> None:
    ani = await signed_in("ani", "password-ani-1")
    for path in ROUTES:
        status, html, _ = await ani.get(path)
        assert status == 403, path
        assert ID["dash.forbidden"] in html
    status, html, _ = await ani.post(
        "/console/dead-letters/replay", {"stream": hub_h.hub.inbound_streams()[0], "id": "1-0"}
    )
    assert status == 403
    assert ID["dash.forbidden"] in html
    _, queue, _ = await ani.get("/console")
    assert 'href="/console/dashboard"' not in queue  # no link to a page they cannot open

    stranger = Browser(hub_h)
    try:
        for path in (*ROUTES, "/console/dashboard?window=week"):
            status, _, r = await stranger.get(path)
            assert status == 303, path
            assert r.headers["Location"].startswith("/login?next=")
    finally:
        await stranger.close()


async def test_markup_in_a_unit_name_is_text_in_tables_and_charts(
    hub_h: HubHarness, signed_in: Callable[[str, str], Awaitable[Browser]]
) -> None:
    """A configured unit name is shown as typed, in the unit table and in the backlog chart's
    legend, hover titles and number table: never as markup."""
    h = hub_h
    await h.post_whatsapp(inbound_params("Ada racun di pabrik", phone="+6281234567890"))
    await h.drain_inbound()
    await h.observer().tick()  # samples the backlog the chart draws
    sari = await signed_in("sari", "password-sari-1")
    status, html, _ = await sari.get("/console/dashboard")
    assert status == 200
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    assert f'<th scope="row">{escaped}</th>' in html
    svg = re.search(r'<figure class="chart-card" id="chart-backlog".*?(<svg.*?</svg>)', html, re.S)
    assert svg
    root = _xml(svg.group(1))  # well-formed: the name did not break out
    texts = [el.text or "" for el in root.iter(f"{SVG}text")]
    assert XSS in texts  # the legend, as text
    assert any(XSS in (el.text or "") for el in root.iter(f"{SVG}title"))
    assert not list(root.iter(f"{SVG}script"))
    assert not list(root.iter("script"))


async def test_window_switch_and_a_bad_window_falls_back_to_the_hour(
    hub_h: HubHarness, signed_in: Callable[[str, str], Awaitable[Browser]]
) -> None:
    h = hub_h
    await h.post_whatsapp(inbound_params("Halo"))
    await h.drain_inbound()
    sari = await signed_in("sari", "password-sari-1")
    for asked, shown in (("week", "week"), ("day", "day"), ("decade", "hour"), ("", "hour")):
        status, html, _ = await sari.get(f"/console/dashboard/charts?window={asked}")
        assert status == 200
        assert re.search(rf'id="dashboard-charts"[^>]*data-window="{shown}"', html), asked
        assert re.search(rf'id="window-{shown}" aria-current="true"', html), asked
    _, html, _ = await sari.get("/console/dashboard/charts?window=week")
    load = re.search(r'id="chart-load".*?(<svg.*?</svg>)', html, re.S)
    assert load
    bars = _xml(load.group(1)).iter(f"{SVG}rect")
    assert [b.get("data-value") for b in bars if b.get("class") == "bar"] == ["1"]


async def test_replay_form_puts_a_dead_letter_back_and_refuses_a_bad_stream(
    hub_h: HubHarness, signed_in: Callable[[str, str], Awaitable[Browser]]
) -> None:
    """A reply out of attempts is listed with a Replay button; the form puts it back on its
    stream (then it is sent once); an unknown stream or a malformed id changes nothing."""
    h = hub_h
    await h.post_whatsapp(inbound_params("Gaji di bawah UMK"))
    await h.drain_inbound()
    await h.drain_outbox()  # the acknowledgement
    [t] = await h.tickets()
    h.fake.sent.clear()
    h.fake.script.extend(Scripted(status=503) for _ in range(3))
    status, _ = await h.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    assert status == 202
    for _ in range(3):
        await h.drain_outbox(include_delayed=True)
    outbox = h.hub.outbox_streams()["whatsapp"]
    [dead] = await h.hub.ops.dead_letters(outbox)

    sari = await signed_in("sari", "password-sari-1")
    _, html, _ = await sari.get("/console/dashboard/live")
    assert _cell(_row(html, f'data-stream="{outbox}"'), "dead") == "1"
    assert f'name="id" value="{dead["id"]}"' in html
    assert "gave up after 3 attempts" in _row(html, f'data-dead="{dead["id"]}"')

    for form in (
        {"stream": "hub:nope", "id": dead["id"]},
        {"stream": outbox, "id": "1-0; DROP"},
        {"stream": outbox, "id": ""},
    ):
        status, _, r = await sari.post("/console/dead-letters/replay", form)
        assert status == 303
        _, page, _ = await sari.get(r.headers["Location"].split("#")[0])
        assert _flash(page) == ("error", ID["dash.replay_bad"])
    assert len(await h.hub.ops.dead_letters(outbox)) == 1
    status, _, _ = await sari.post(
        "/console/dead-letters/replay", {"stream": outbox, "id": dead["id"]}, csrf=False
    )
    assert status == 403  # no CSRF token, no replay
    assert len(await h.hub.ops.dead_letters(outbox)) == 1

    status, _, r = await sari.post(
        "/console/dead-letters/replay", {"stream": outbox, "id": dead["id"], "back": "//evil.x"}
    )
    assert (status, r.headers["Location"]) == (303, "/console/dashboard")
    _, page, _ = await sari.get("/console/dashboard")
    kind, text = _flash(page)
    assert kind == "ok"
    assert dead["id"] in text
    assert await h.hub.ops.dead_letters(outbox) == []
    assert await h.drain_outbox() == 1
    assert [s.params["Body"] for s in h.fake.sent] == ["Halo"]
    status, _, r = await sari.post("/console/dead-letters/replay", {"stream": outbox, **dead})
    _, page, _ = await sari.get("/console/dashboard")
    assert _flash(page) == ("error", ID["dash.replay_gone"].format(id=dead["id"]))


# -- the charts, on known inputs --------------------------------------------------------------

WORDS = charts.Words(no_data="Belum ada data", total="Jumlah", other="Lainnya")
HOUR_STARTS = [int(MON_0900) - 3600 + i * 60 for i in range(60)]


def _svg(chart: charts.Chart) -> ET.Element:
    root = _xml(chart.svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label")
    assert root.get("viewBox", "").startswith("0 0 800 ")
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text
    return root


def _bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


def test_bar_heights_are_proportional_and_each_bar_says_its_number() -> None:
    values = [0.0] * 60
    values[10], values[20], values[30] = 2.0, 4.0, 8.0
    chart = charts.time_chart("Masuk", "pesan", HOUR_STARTS, 60, [("WA · wa1", values)], WORDS)
    bars = _bars(_svg(chart))
    assert [b.get("data-value") for b in bars] == ["2", "4", "8"]
    heights = [float(b.get("height", "0")) for b in bars]
    assert heights[1] == pytest.approx(2 * heights[0], abs=0.02)
    assert heights[2] == pytest.approx(4 * heights[0], abs=0.02)
    titles = [b.find(f"{SVG}title").text for b in bars]  # type: ignore[union-attr]
    assert titles[2] == "08:30 · WA · wa1: 8"  # 09:00 WIB minus an hour, plus 30 minutes
    assert chart.table.head == ["Time", "WA · wa1", "Jumlah"]
    assert len(chart.table.rows) == 60
    assert chart.table.rows[30] == ["08:30", "8", "8"]


def test_stacked_segments_sit_on_each_other() -> None:
    a, b = [0.0] * 60, [0.0] * 60
    a[5], b[5] = 3.0, 1.0
    root = _svg(charts.time_chart("x", "y", HOUR_STARTS, 60, [("A", a), ("B", b)], WORDS))
    lower, upper = _bars(root)
    assert float(lower.get("y", "0")) == pytest.approx(
        float(upper.get("y", "0")) + float(upper.get("height", "0")), abs=0.02
    )
    assert lower.get("fill") != upper.get("fill")


def test_y_ticks_are_round_and_cover_the_top() -> None:
    assert charts.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert charts.nice_ticks(100) == [0, 25, 50, 75, 100]
    assert charts.nice_ticks(1234) == [0, 500, 1000, 1500]
    assert charts.nice_ticks(0) == [0, 1]
    assert charts.nice_ticks(0.3) == [0, 1]
    for top in (1, 3, 9, 13, 47, 99, 101, 250, 999, 10_001):
        ticks = charts.nice_ticks(top)
        assert ticks[0] == 0
        assert ticks[-1] >= top
        steps = {b - a for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1
        assert steps.pop() % 1 == 0
        assert 2 <= len(ticks) <= 7


def test_time_axis_ticks_fall_on_round_jakarta_times() -> None:
    hour = charts.time_ticks(HOUR_STARTS, 60)
    assert [charts.tick_label(HOUR_STARTS[i], 600, WORDS) for i in hour] == [
        "08:00", "08:10", "08:20", "08:30", "08:40", "08:50",
    ]  # fmt: skip
    week_starts = [int(MON_0900) - 167 * 3600 + i * 3600 for i in range(168)]
    week = charts.time_ticks(week_starts, 3600)
    labels = [charts.tick_label(week_starts[i], 86_400, WORDS) for i in week]
    assert labels == ["Tue 15", "Wed 16", "Thu 17", "Fri 18", "Sat 19", "Sun 20", "Mon 21"]
    root = _svg(charts.time_chart("x", "y", week_starts, 3600, [("A", [1.0] * 168)], WORDS))
    axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "x-axis")
    assert [t.text for t in axis.iter(f"{SVG}text")] == labels
    ys = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "y-axis")
    assert [t.text for t in ys.iter(f"{SVG}text")] == ["0", "1"]


def test_empty_data_draws_a_no_data_chart() -> None:
    for chart in (
        charts.time_chart("Masuk", "pesan", HOUR_STARTS, 60, [], WORDS),
        charts.time_chart("Antrean", "tiket", HOUR_STARTS, 60, [], WORDS, kind="lines"),
        charts.response_chart("R", "tiket", "Waktu", [str(i) for i in range(8)], [], WORDS),
        charts.response_chart(
            "R", "tiket", "Waktu", [str(i) for i in range(8)], [("WA", [])], WORDS
        ),
    ):
        root = _svg(chart)
        assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "no-data"] == [
            "Belum ada data"
        ]
        assert _bars(root) == []
        assert chart.table.rows == []


def test_response_histogram_buckets_and_totals() -> None:
    times = [
        ("WhatsApp", [10.0, 299.0, 300.0, 3599.0, 3600.0, 90_000.0, 400_000.0]),
        ("E-mail", [60.0, 20_000.0]),
    ]
    names = [f"b{i}" for i in range(8)]
    chart = charts.response_chart("Respons", "tiket", "Waktu respons", names, times, WORDS)
    root = _svg(chart)
    assert chart.table.rows == [
        ["b0", "2", "1", "3"], ["b1", "1", "0", "1"], ["b2", "1", "0", "1"],
        ["b3", "1", "0", "1"], ["b4", "0", "1", "1"], ["b5", "0", "0", "0"],
        ["b6", "1", "0", "1"], ["b7", "1", "0", "1"],
    ]  # fmt: skip
    totals = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "total"]
    assert totals == ["3", "1", "1", "1", "1", "1", "1"]  # none on the empty bucket
    axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "x-axis")
    assert [t.text for t in axis.iter(f"{SVG}text")] == names
    with pytest.raises(ValueError, match="8 bucket names"):
        charts.response_chart("R", "t", "W", names[:3], times, WORDS)


def test_lines_carry_a_hover_title_per_bucket() -> None:
    root = _svg(
        charts.time_chart(
            "Antrean", "tiket", HOUR_STARTS, 60, [("Umum", [float(i % 4) for i in range(60)])],
            WORDS, kind="lines",
        )
    )  # fmt: skip
    [line] = list(root.iter(f"{SVG}polyline"))
    assert len(line.get("points", "").split()) == 60
    hits = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "hit"]
    assert len(hits) == 60
    assert hits[3].find(f"{SVG}title").text == "08:03 — Umum: 3"  # type: ignore[union-attr]


def test_many_series_fold_into_other_and_labels_are_escaped() -> None:
    series = [(f"<b>{i}</b>", [float(i)] * 60) for i in range(10)]
    chart = charts.time_chart("a < b & c", "y", HOUR_STARTS, 60, series, WORDS)
    root = _svg(chart)
    assert root.get("aria-label") == "a < b & c"
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    names = [t.text for t in legend.iter(f"{SVG}text")]
    assert names == [*(f"<b>{i}</b>" for i in range(4, 10)), "Lainnya"]
    assert chart.table.rows[0][-2:] == [str(0 + 1 + 2 + 3), str(sum(range(10)))]
    assert "<b>" not in chart.svg


# -- in Chromium ------------------------------------------------------------------------------


async def _history(h: HubHarness, now: float) -> None:
    """A week of load behind the live numbers, for the charts: office hours busier than
    nights, as the counters and the observer's backlog samples would have recorded it."""
    rnd = random.Random(21)
    subjects = {"whatsapp/wa1": 1.0, "whatsapp/wa2": 0.45, "telegram/kemnaker": 0.3}
    units = {"general": 1.0, "hi_upah": 0.6, "vokasi": 0.35}
    counts: list[tuple[str, float, int]] = []
    for minute in range(7 * 24 * 60, 0, -1):
        at = now - minute * MINUTE
        hour = (int(at // 3600) + 7) % 24  # WIB
        busy = 1.0 if 8 <= hour < 16 else 0.25 if 6 <= hour < 21 else 0.05
        for subject, share in subjects.items():
            n = sum(rnd.random() < busy * share * 0.9 for _ in range(2))
            if n:
                counts.append((subject, at, n))
        if minute <= 24 * 60 or minute % 15 == 0:
            level = busy * 10
            await h.hub.load.sample_backlog(
                {u: round(level * s + rnd.random() * 2) for u, s in units.items()}, at
            )
    await h.hub.load.port.incr(INBOUND, counts)


async def _answered(h: HubHarness, now: float) -> None:
    """Citizens who wrote earlier today and were answered after a while: the response-time
    distribution has something to show."""
    delays = [90, 240, 420, 600, 1100, 1500, 2700, 4000, 7200, 16_000][:ANSWERED]
    for i, delay in enumerate(delays):
        h.clock.t = now - 6 * HOUR + i * 900
        account = "wa2" if i % 3 == 0 else "wa1"
        phone = f"+62813000000{i:02d}"
        await h.post_whatsapp(inbound_params("Mohon info JHT", phone=phone), account)

        async def opened(phone: str = phone) -> list[dict[str, Any]]:
            return [t for t in await h.tickets() if t["reply_to"].endswith(phone)]

        [t] = await eventually(opened)
        h.clock.t += delay
        status, _ = await h.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Baik"})
        assert status == 202
    h.clock.t = now


async def _dead_letter(h: HubHarness) -> str:
    """A reply the provider kept refusing (503): dead-lettered after its attempts."""

    async def all_sent() -> bool:  # each citizen's acknowledgement and answer
        return len(h.fake.sent) == 2 * ANSWERED

    await eventually(all_sent)  # before the script, or an acknowledgement would take a 503
    h.fake.script.extend(Scripted(status=503) for _ in range(3))
    [t, *_] = await h.tickets()
    status, _ = await h.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    assert status == 202
    outbox = h.hub.outbox_streams()["whatsapp"]
    [dead] = await eventually(lambda: h.hub.ops.dead_letters(outbox), limit_s=15)
    return str(dead["id"])


def _account(snap: dict[str, Any], account: str) -> dict[str, Any]:
    return dict(next(c for c in snap["channels"] if c["account"] == account))


async def _numbers(h: HubHarness) -> dict[str, Any]:
    status, snap = await h.api("GET", "/api/v1/dashboard")
    assert status == 200
    return dict(snap)


@pytest.fixture
async def telegram_bot() -> AsyncIterator[FakeTelegram]:
    bot = FakeTelegram({TG_TOKEN})
    await bot.start()
    yield bot
    await bot.stop()


async def test_dashboard_follows_the_simulator_live(
    harness_factory: Factory, browser: Chromium, telegram_bot: FakeTelegram
) -> None:
    """A supervisor keeps the dashboard open; the demo simulator's citizens write on WhatsApp
    and Telegram; the tiles and the channel rows follow without a reload. Then a dead letter
    is replayed from the page, and the charts switch to the week."""
    h = await harness_factory(
        workers=True,
        channels__telegram__accounts={
            "kemnaker": {"bot_token": TG_TOKEN, "webhook_secret": "tg-secret-dashboard-01",
                         "api_base_url": telegram_bot.base_url}
        },
        routing=[
            {"keywords": ["upah", "gaji", "thr", "phk", "pesangon", "pkwt"], "unit": "hi_upah"},
            {"keywords": ["pelatihan", "blk"], "unit": "vokasi"},
        ],
        alerts__rules=[
            {"name": "antrean", "kind": "backlog_above", "threshold": 2, "severity": "warning"},
            {"name": "gagal-kirim", "kind": "dead_letters", "severity": "critical"},
        ],
    )  # fmt: skip
    await h.hub.auth.create_user("sari", "password-sari-1", "supervisor", [], "Sari Wijaya")
    for name, display in (("ani", "Ani Lestari"), ("budi", "Budi Santoso"), ("dewi", "Dewi")):
        await h.hub.auth.create_user(name, f"password-{name}-1", "agent", ["general"], display)
    now = h.clock.t
    await _history(h, now)
    await _answered(h, now)
    dead_id = await _dead_letter(h)
    queue = h.hub.queue.queue
    for name, state in (("ani", "online"), ("budi", "online"), ("dewi", "away")):
        await queue.set_presence(name, state, 600)
    [first, *_] = await h.tickets()
    await queue.claim("ani", ["general"], 600_000, first["id"])
    await h.observer().tick()

    errors: list[str] = []
    page = await _page(browser, [])
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(h.base + "/console/dashboard")
    await _login(page, h, "sari", "password-sari-1")
    await expect(page).to_have_url(h.base + "/console/dashboard")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator(".alert-critical")).to_be_visible()
    await page.evaluate("window.__samePage = true")
    waiting = page.locator("#kpi-waiting .kpi-value")
    wa1_in = page.locator('tr[data-subject="whatsapp/wa1"] [data-k="inbound_last_hour"]')
    tg_in = page.locator('tr[data-subject="telegram/kemnaker"] [data-k="inbound_last_hour"]')
    before = await _numbers(h)
    tg_before = _account(before, "kemnaker")
    await expect(tg_in).to_have_text(str(tg_before["inbound_last_hour"]))

    statuses = await simulate.run(h.settings, h.base, 4, 1, seed=7)
    assert statuses
    assert all(s == 200 for s in statuses)

    # the first event-driven refresh: the page moves without being asked
    await expect(wa1_in).not_to_have_text(str(_account(before, "wa1")["inbound_last_hour"]))

    async def page_agrees() -> bool:
        """Once the hub has applied every message, the page shows the hub's numbers. Polled:
        the last refresh may come from the page's timer rather than an event."""
        snap = await _numbers(h)
        grown = (
            _account(snap, "wa1")["inbound_last_hour"]
            - _account(before, "wa1")["inbound_last_hour"]
        )
        want = [
            str(_account(snap, "wa1")["inbound_last_hour"]),
            str(_account(snap, "kemnaker")["inbound_last_hour"]),
            str(sum(u["waiting"] for u in snap["units"])),
        ]
        shown = [await loc.text_content() for loc in (wa1_in, tg_in, waiting)]
        tg_grew = _account(snap, "kemnaker")["inbound_last_hour"] > tg_before["inbound_last_hour"]
        return grown == 4 and tg_grew and shown == want  # four citizens wrote on wa1

    await eventually(page_agrees, limit_s=25, every_s=0.2)
    assert await page.evaluate("window.__samePage === true")
    await expect(page.locator('tr[data-agent="ani"] .agent-state')).to_have_text("Sibuk")

    # the last 24 hours, without a reload of the page (what the screenshot shows)
    await page.locator("#window-day").click()
    await expect(page.locator("#dashboard-charts")).to_have_attribute("data-window", "day")
    await expect(page).to_have_url(h.base + "/console/dashboard?window=day")
    assert await page.evaluate("window.__samePage === true")
    await expect(page.locator("#chart-response rect.bar").first).to_be_visible()
    if SHOTS:
        await page.mouse.move(0, 0)
        await page.screenshot(path=str(Path(SHOTS) / "dashboard.png"), full_page=True)

    # replay the dead letter from the page: the reply is sent, the row goes away
    await page.locator(f'tr[data-dead="{dead_id}"] button').click()
    await expect(page.locator(".flash-ok")).to_contain_text(dead_id)
    await page.locator(".flash-close").click()
    await expect(page.locator(f'tr[data-dead="{dead_id}"]')).to_have_count(0)
    outbox = h.hub.outbox_streams()["whatsapp"]
    await expect(page.locator(f'tr[data-stream="{outbox}"] [data-k="dead"]')).to_have_text("0")

    # the week
    await page.evaluate("window.__samePage = true")
    await page.locator("#window-week").click()
    await expect(page.locator("#dashboard-charts")).to_have_attribute("data-window", "week")
    await expect(page).to_have_url(h.base + "/console/dashboard?window=week")
    await expect(page.locator("#chart-load .x-axis text")).to_have_count(7)
    assert await page.evaluate("window.__samePage === true")
    await _hover_shows_a_number(page)
    if SHOTS:
        await page.mouse.move(0, 0)  # no hover highlight in the picture
        await page.locator("#dashboard-charts").screenshot(
            path=str(Path(SHOTS) / "dashboard-week.png")
        )
    assert errors == []


async def _hover_shows_a_number(page: Page) -> None:
    """The numbers are in the page for a mouse (``<title>``) and in the table under a chart."""
    bar = page.locator("#chart-load rect.bar").last
    assert re.search(r": \d+$", await bar.locator("title").text_content() or "")
    await page.locator("#numbers-load summary").click()
    await expect(page.locator("#numbers-load table tbody tr")).to_have_count(168)
    await page.locator("#numbers-load summary").click()
    await expect(page.locator("#numbers-load table")).to_be_hidden()
