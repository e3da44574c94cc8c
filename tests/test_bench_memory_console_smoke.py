"""The memory and console benchmarks at a tiny size, so that they cannot rot (nothing here is
timed), and what the console's performance work changed: a long timeline shows its latest
entries and all of them on demand, and the dashboard's shared tally."""

from __future__ import annotations

import re
import time

import pytest

from hub.dashboard import Shared, SlaMemo, facts_of
from hub.sla import SlaEngine, SlaSection
from hub.web.console.timeline import LATEST
from tests.bench_process import run_bench
from tests.helpers import HubHarness, inbound_params
from tests.test_console_pages import Browser


def _bench(name: str, *args: str) -> str:
    """``bench/run <name>`` as it runs: its own process, its own Redis and children."""
    got = run_bench(f"bench.{name}", *args, timeout_s=280)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    return got.stdout


@pytest.mark.timeout(300)  # a bench at a tiny size: about 20 s, more on a busy machine
def test_memory_bench_runs_small() -> None:
    out = _bench(
        "memory", "--tickets", "400", "--checkpoints", "200", "--messages", "60", "--finish",
        "40", "--check", "40", "--encodings-n", "40", "--sample", "20", "--floor-n", "100",
        "--batch", "100", "--workers", "2",
    )  # fmt: skip
    assert "same kinds of keys, counts and encodings: yes" in out
    assert re.search(r"a new ticket \(its first message.*\): [\d,]+ B", out), out
    assert "floor: a bare HSET of a real ticket hash" in out
    assert "hub:c:{<cid>}:t:<n>" in out  # the breakdown by kind of key


@pytest.mark.timeout(300)
def test_console_bench_runs_small() -> None:
    out = _bench(
        "console", "--open", "300", "--resolved", "20", "--agents", "3", "--held", "2",
        "--long", "130", "--requests", "2", "--workers", "1",
    )  # fmt: skip
    for page in ("queue page", "ticket page, 130 entries", "search page", "dashboard page"):
        assert re.search(rf"^{re.escape(page)}\s+\|", out, re.M), out


async def test_a_long_timeline_shows_its_latest_entries_and_all_on_demand(
    harness: HubHarness,
) -> None:
    h = harness
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani")
    await h.post_whatsapp(inbound_params("Halo, THR saya belum dibayar"))
    await h.drain_inbound()
    [t] = await h.tickets()
    for i in range(LATEST + 20):
        await h.hub.store.add_event(t["id"], {"type": "note", "actor": "ani", "text": f"cat-{i}"})
    b = Browser(h)
    try:
        await b.login("ani", "password-ani-1")
        page = f"/console/tickets/{t['number']}"
        _, html, _ = await b.get(page)
        assert html.count('<li class="note"') == LATEST  # the latest: notes 20..119
        assert "cat-20<" in html
        assert "cat-19<" not in html
        assert "Halo" not in html
        assert 'href="?all=1"' in html
        _, html, _ = await b.get(page + "?all=1")
        assert html.count('<li class="note"') == LATEST + 20
        assert "Halo" in html
        assert 'href="?all=1"' not in html
        # The live refresh keeps what its page shows (the page is its Referer).
        _, frag, _ = await b.get(page + "/timeline")
        assert frag.count('<li class="note"') == LATEST
        async with b.s.get(
            h.base + page + "/timeline", headers={"Referer": h.base + page + "?all=1"}
        ) as r:
            assert (await r.text()).count('<li class="note"') == LATEST + 20
    finally:
        await b.close()


async def test_a_costly_tally_is_shared_and_a_cheap_one_never(harness: HubHarness) -> None:
    h = harness
    dash = h.hub.dashboard
    assert dash.cache is not None  # the stats adapter keeps it
    await h.post_whatsapp(inbound_params("Halo"))
    await h.drain_inbound()
    await dash.snapshot()  # a handful of tickets: counted afresh, not shared
    assert await dash.cache.get_shared("dashboard:tally") is None
    # A tally that cost a second serves for five (SHARE_FACTOR), to every process.
    value = {"by_channel": {}, "by_account": {}, "by_unit": {}, "attention": [],
             "open_counts": {"general": 41}}  # fmt: skip
    shared = Shared(h.clock.now(), time.time(), 1.0, value)
    await dash.cache.put_shared("dashboard:tally", shared.to_json(), 60)
    snap = await dash.snapshot()
    assert next(u.open for u in snap.units if u.unit == "general") == 41
    # Past its age (here on the hub's clock) the next snapshot counts afresh; the count was
    # cheap, so the shared copy goes: nobody keeps serving it.
    h.clock.t += 3600
    snap = await dash.snapshot()
    assert next(u.open for u in snap.units if u.unit == "general") == 1
    assert await dash.cache.get_shared("dashboard:tally") is None


def test_sla_memo_agrees_with_the_engine_as_time_passes() -> None:
    engine = SlaEngine(SlaSection())
    memo = SlaMemo(engine)
    start = 1_789_956_000.0  # Monday 2026-09-21 09:00 WIB
    rows = [
        {"id": f"t{i}", "unit": u, "channel": "whatsapp", "priority": p,
         "created_at": str(int((start + i * 1789) * 1000)), "status": "open"}
        for i, (u, p) in enumerate([("general", "normal"), ("k3", "high"),
                                    ("general", "urgent"), ("ppid", "low")] * 5)
    ]  # fmt: skip
    rows[3]["first_response_at"] = str(int((start + 7200) * 1000))
    for step in range(0, 21 * 86400, 997):  # three weeks, about every 17 minutes
        now = start + step
        for row in rows:
            f = facts_of(row)
            want = engine.timers(f, now)
            got = memo.states(f, now)
            assert (got.first_response_state, got.resolution_state) == (
                want.first_response_state,
                want.resolution_state,
            ), (row["id"], now)
            assert (got.first_response_due, got.resolution_due) == (
                want.first_response_due,
                want.resolution_due,
            )
