"""The supervisors' live numbers against a hand-checked scenario on a manual clock: two
citizens write on Monday 21 September 2026 at 09:00 WIB (business hours 08:00-16:00), the
default policy gives a first response 8 business hours (at risk after 80%: 6.4 hours)."""

from __future__ import annotations

from typing import Any

from tests.helpers import HubHarness, inbound_params

MON_0900 = 1_789_956_000.0  # 2026-09-21 09:00 WIB
HOUR = 3600.0


async def _snapshot(h: HubHarness) -> dict[str, Any]:
    status, body = await h.api("GET", "/api/v1/dashboard")
    assert status == 200, body
    return dict(body)


def _unit(snap: dict[str, Any], unit: str) -> dict[str, Any]:
    return next(u for u in snap["units"] if u["unit"] == unit)


async def test_backlog_oldest_waiting_and_sla_timers(harness: HubHarness) -> None:
    h = harness
    h.clock.t = MON_0900
    await h.post_whatsapp(inbound_params("THR belum dibayar", phone="+6281234567890"))
    await h.post_whatsapp(inbound_params("PHK sepihak", phone="+6281234567891"))
    await h.drain_inbound()
    await h.drain_outbox()  # acknowledgements are automatic: not a first response

    h.clock.t = MON_0900 + 10 * 60
    snap = await _snapshot(h)
    general = _unit(snap, "general")
    assert (general["waiting"], general["open"]) == (2, 2)
    assert general["oldest_waiting_s"] == 600
    assert (general["sla_at_risk"], general["sla_breached"]) == (0, 0)
    [wa1] = [c for c in snap["channels"] if (c["channel"], c["account"]) == ("whatsapp", "wa1")]
    assert wa1["inbound_last_hour"] == 2
    assert wa1["opened_last_hour"] == 2
    assert wa1["inbound_per_min"] == round(2 / 15, 2)
    assert wa1["backlog"] == {
        "waiting": 2, "open": 2, "oldest_waiting_s": 600, "sla_at_risk": 0, "sla_breached": 0,
        "first_response_median_s": None, "first_responses": 0,
    }  # fmt: skip

    # 15:30: 6.5 business hours have passed, more than 80% of 8: both at risk.
    h.clock.t = MON_0900 + 6.5 * HOUR
    snap = await _snapshot(h)
    assert (_unit(snap, "general")["sla_at_risk"], _unit(snap, "general")["sla_breached"]) == (
        2,
        0,
    )
    assert snap["by_channel"]["whatsapp"]["sla_at_risk"] == 2
    # Due at Tuesday 09:00 (7 business hours on Monday, 1 on Tuesday from 08:00).
    assert [(a["timer"], a["state"], a["due"]) for a in snap["attention"]] == [
        ("first_response", "at_risk", MON_0900 + 24 * HOUR)
    ] * 2
    assert snap["by_channel"]["whatsapp"]["sla_breached"] == 0

    # An agent answers one of them: its first-response timer is met.
    tickets = await h.tickets()
    first = next(t for t in tickets if t["number"])
    status, _ = await h.api("POST", f"/api/v1/tickets/{first['id']}/replies", json={"text": "Baik"})
    assert status == 202
    snap = await _snapshot(h)
    assert _unit(snap, "general")["sla_at_risk"] == 1
    # Its first response came 6.5 hours (wall clock) after the citizen wrote.
    assert _unit(snap, "general")["first_response_median_s"] == 6.5 * HOUR
    assert _unit(snap, "general")["first_responses"] == 1
    assert snap["by_channel"]["whatsapp"]["first_response_median_s"] == 6.5 * HOUR

    # Tuesday 09:30: 7 hours on Monday (09:00-16:00) and 1.5 on Tuesday: 8.5 > 8, breached.
    h.clock.t = MON_0900 + 24.5 * HOUR
    snap = await _snapshot(h)
    assert (_unit(snap, "general")["sla_at_risk"], _unit(snap, "general")["sla_breached"]) == (
        0,
        1,
    )
    assert _unit(snap, "general")["oldest_waiting_s"] == 24.5 * HOUR


async def test_agents_and_dead_letters_and_who_may_look(harness: HubHarness) -> None:
    h = harness
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani")
    await h.post_whatsapp(inbound_params("Halo", phone="+6281234567890"))
    await h.drain_inbound()
    await h.hub.queue.queue.set_presence("ani", "online", 60)
    [t] = await h.tickets()
    await h.hub.queue.queue.claim("ani", ["general"], 60_000, t["id"])
    snap = await _snapshot(h)
    [ani] = snap["agents"]
    assert (ani["name"], ani["presence"], ani["holding"], ani["load"]) == ("ani", "online", 1, 1)
    assert ani["occupancy"] == round(1 / h.settings.console.agent_capacity, 3)
    assert _unit(snap, "general")["waiting"] == 0
    assert _unit(snap, "general")["open"] == 1
    [wa1] = [c for c in snap["channels"] if (c["channel"], c["account"]) == ("whatsapp", "wa1")]
    assert (wa1["backlog"]["waiting"], wa1["backlog"]["open"]) == (0, 1)  # held by Ani
    assert all(n == 0 for n in snap["dead_letters"].values())

    token = await h.hub.users.create_token("ani", "cli")
    status, _ = await h.api(
        "GET", "/api/v1/dashboard", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 403  # agents do not see the supervisors' view
