"""The observer on a real Redis with a manual clock: alerts fire once and clear once across
evaluations and restarts, reach the Telegram group in order even through an outage, the
backlog is sampled for the charts, SLA escalations happen once per level, and a provider that
stops answering becomes a source_unreachable alert."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from channels.telegram_alerts import TelegramAlertNotifier
from hub.alerts import TelegramAlerts
from hub.demo.fake_telegram import FakeTelegram
from hub.demo.fake_telegram import Scripted as TgScripted
from hub.demo.fake_twilio import Scripted as TwilioScripted
from hub.load_stats import BACKLOG
from tests.helpers import HubHarness, inbound_params
from tests.test_console_pages import Browser

MON_0900 = 1_789_956_000.0  # Monday 21 September 2026, 09:00 WIB
MINUTE, HOUR = 60.0, 3600.0
TOKEN = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789"
CHAT = "-1001234567890"
Factory = Callable[..., Awaitable[HubHarness]]

BACKLOG_RULE = {
    "name": "backlog", "kind": "backlog_above", "threshold": 1, "clear_for_minutes": 5,
}  # fmt: skip


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    f = FakeTelegram(tokens={TOKEN})
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def notifier(telegram: FakeTelegram) -> AsyncIterator[TelegramAlertNotifier]:
    settings = TelegramAlerts.model_validate(
        {"enabled": True, "bot_token": TOKEN, "chat_id": CHAT, "api_base_url": telegram.base_url}
    )
    n = TelegramAlertNotifier(settings, timeout_s=0.5)
    yield n
    await n.aclose()


async def _citizens(h: HubHarness, *phones: str) -> None:
    for phone in phones:
        await h.post_whatsapp(inbound_params("THR belum dibayar", phone=phone))
    await h.drain_inbound()


async def _events(h: HubHarness, prefix: str) -> list[dict[str, Any]]:
    return [ev for _, ev in await h.hub.events.since("0") if ev["type"].startswith(prefix)]


async def test_backlog_alert_fires_once_and_clears_once_across_a_restart(
    harness_factory: Factory, notifier: TelegramAlertNotifier, telegram: FakeTelegram
) -> None:
    h = await harness_factory(alerts__rules=[BACKLOG_RULE])
    h.clock.t = MON_0900
    obs = h.observer(notifier)
    assert await obs.tick() == []

    await _citizens(h, "+6281234567890", "+6281234567891")
    [fired] = await obs.tick()
    assert (fired.kind, fired.key, fired.value) == ("fired", "backlog:unit general", 2)
    [active] = await h.hub.alert_board.active()
    assert (active.rule, active.subject, active.clearing) == ("backlog", "unit general", False)
    assert [c.params["text"] for c in telegram.sent] == [
        "\U0001f7e0 AKTIF [backlog] Antrean unit general: 2 tiket menunggu (ambang 1)"
    ]

    h.clock.advance(MINUTE)
    assert await obs.tick() == []  # still above: nothing new to say
    # A restarted observer starts from the state in Redis: no second FIRING.
    obs = h.observer(notifier)
    h.clock.advance(MINUTE)
    assert await obs.tick() == []
    assert len(telegram.sent) == 1

    # One is taken by an agent: 1 waiting is not above 1. Hysteresis: 5 minutes to clear.
    [t, _] = await h.tickets()
    await h.hub.queue.queue.claim("ani", ["general"], 600_000, t["id"])
    assert await obs.tick() == []
    [active] = await h.hub.alert_board.active()
    assert active.clearing is True
    h.clock.advance(5 * MINUTE)
    [cleared] = await obs.tick()
    assert cleared.kind == "cleared"
    assert await h.hub.alert_board.active() == []
    h.clock.advance(MINUTE)
    assert await obs.tick() == []
    texts = [c.params["text"] for c in telegram.sent]
    assert len(texts) == 2
    assert texts[1].startswith("\u2705 PULIH [backlog] Antrean unit general")
    assert [ev["type"] for ev in await _events(h, "alert.")] == ["alert.fired", "alert.cleared"]


async def test_announcements_wait_out_a_telegram_outage_in_order(
    harness_factory: Factory, notifier: TelegramAlertNotifier, telegram: FakeTelegram
) -> None:
    rule = {**BACKLOG_RULE, "clear_for_minutes": 0}
    h = await harness_factory(alerts__rules=[rule])
    h.clock.t = MON_0900
    obs = h.observer(notifier)
    await _citizens(h, "+6281234567890", "+6281234567891")
    telegram.script.append(TgScripted(500, "Internal Server Error"))
    [fired] = await obs.tick()
    assert fired.kind == "fired"
    assert telegram.sent == []
    assert [t.kind for t in (await h.hub.alert_board.load()).outbox] == ["fired"]

    # Meanwhile the backlog went down: the RESOLVED is owed too, and goes after the FIRING.
    [t, _] = await h.tickets()
    await h.hub.queue.queue.claim("ani", ["general"], 600_000, t["id"])
    h.clock.advance(MINUTE)
    [cleared] = await obs.tick()
    assert cleared.kind == "cleared"
    texts = [c.params["text"] for c in telegram.sent]
    assert [text.split(" ")[1] for text in texts] == ["AKTIF", "PULIH"]
    assert (await h.hub.alert_board.load()).outbox == []


async def test_announcements_older_than_an_hour_are_dropped(
    harness_factory: Factory, notifier: TelegramAlertNotifier, telegram: FakeTelegram
) -> None:
    h = await harness_factory(alerts__rules=[BACKLOG_RULE])
    h.clock.t = MON_0900
    obs = h.observer(notifier)
    await _citizens(h, "+6281234567890", "+6281234567891")
    telegram.script.append(TgScripted(500, "Internal Server Error"))
    await obs.tick()
    h.clock.advance(61 * MINUTE)
    assert await obs.tick() == []
    assert telegram.sent == []  # an hour-old FIRING is noise; the dashboard still shows it
    assert (await h.hub.alert_board.load()).outbox == []
    assert len(await h.hub.alert_board.active()) == 1


async def test_backlog_is_sampled_for_the_charts(harness_factory: Factory) -> None:
    h = await harness_factory(alerts__rules=[])
    h.clock.t = MON_0900
    await _citizens(h, "+6281234567890", "+6281234567891")
    await h.observer().tick()
    series = await h.hub.load.series(BACKLOG, "hour", h.clock.now(), peak=True)
    assert series.values["general"][-1] == 2
    assert sum(series.values["general"]) == 2  # one minute sampled, the rest empty


async def test_sla_escalation_once_per_level(harness_factory: Factory) -> None:
    """8 business hours for a first response (08:00-16:00 on weekdays): 7 on Monday from
    09:00, at risk at 80% (6.4 h: Monday 15:24), due Tuesday 08:00 + 1 h = 09:00."""
    h = await harness_factory(alerts__rules=[])
    h.clock.t = MON_0900
    await _citizens(h, "+6281234567890")
    obs = h.observer()
    h.clock.t = MON_0900 + 6 * HOUR
    await obs.tick()
    assert await _events(h, "ticket.sla") == []

    h.clock.t = MON_0900 + 6.5 * HOUR  # 15:30
    await obs.tick()
    await obs.tick()  # nothing new: escalated once
    [t] = await h.tickets()
    assert [
        (ev["ticket_id"], ev["timer"], ev["state"]) for ev in await _events(h, "ticket.sla")
    ] == [(t["id"], "first_response", "at_risk")]
    h.clock.t = MON_0900 + 25.5 * HOUR  # Tuesday 10:30
    await obs.tick()
    await obs.tick()
    ticket = await h.ticket(t["id"])
    escalated = [m for m in ticket["messages"] if m.get("type") == "sla_escalated"]
    assert [(e["timer"], e["state"], e["actor"]) for e in escalated] == [
        ("first_response", "at_risk", "hub"),
        ("first_response", "breached", "hub"),
    ]
    assert escalated[1]["due"] == int((MON_0900 + 24 * HOUR) * 1000)
    assert ticket["sla_first_response"] == "breached"

    # Agents see it in their queue and on the ticket's timeline.
    await h.hub.auth.create_user("ani", "password-ani-1", "agent", ["general"], "Ani")
    b = Browser(h)
    try:
        await b.login("ani", "password-ani-1")
        _, queue, _ = await b.get("/console/queue")
        _, page, _ = await b.get(f"/console/tickets/{t['number']}")
    finally:
        await b.close()
    assert '<span class="chip sla-breached">SLA terlewati</span>' in queue
    assert "SLA hampir terlewati: respons pertama jatuh tempo" in page
    assert "SLA terlewati: respons pertama jatuh tempo" in page


async def test_sla_escalation_off_when_sla_is_disabled(harness_factory: Factory) -> None:
    h = await harness_factory(alerts__rules=[], sla__enabled=False)
    h.clock.t = MON_0900
    await _citizens(h, "+6281234567890")
    h.clock.t = MON_0900 + 30 * HOUR
    await h.observer().tick()
    assert await _events(h, "ticket.sla") == []


async def test_a_provider_that_stops_answering_is_a_source_alert(harness_factory: Factory) -> None:
    rule = {"name": "providers", "kind": "source_unreachable", "threshold": 5,
            "severity": "critical"}  # fmt: skip
    h = await harness_factory(alerts__rules=[rule])
    h.clock.t = MON_0900
    obs = h.observer()
    await _citizens(h, "+6281234567890")
    [t] = await h.tickets()
    for _ in range(3):  # the acknowledgement and two replies all meet a failing Twilio
        h.fake.script.append(TwilioScripted(503, message="Service Unavailable"))
    for text in ("Baik", "Kami cek"):
        status, _ = await h.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": text})
        assert status == 202
    await h.drain_outbox()
    [source] = await h.hub.health.all()
    assert (source.name, source.kind, source.healthy, source.since) == (
        "whatsapp/wa1", "provider", False, MON_0900,
    )  # fmt: skip
    assert await obs.tick() == []  # down for 0 minutes: not yet

    h.clock.advance(6 * MINUTE)
    [fired] = await obs.tick()
    assert (fired.kind, fired.subject, fired.severity) == (
        "fired",
        "source whatsapp/wa1",
        "critical",
    )
    assert "Source whatsapp/wa1 unreachable for 6 min" in fired.message_en

    await h.drain_outbox(include_delayed=True)  # Twilio answers again
    [source] = await h.hub.health.all()
    assert source.healthy
    assert source.since == h.clock.now()
    [cleared] = await obs.tick()
    assert cleared.kind == "cleared"
    assert cleared.message_en == "Source whatsapp/wa1 is reachable again"


async def _scrape(h: HubHarness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    assert h.session is not None
    async with h.session.get(h.base + "/metrics") as r:
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def test_prometheus_gauges_follow_the_dashboard(harness_factory: Factory) -> None:
    h = await harness_factory(alerts__rules=[{**BACKLOG_RULE, "clear_for_minutes": 0}])
    h.clock.t = MON_0900
    await _citizens(h, "+6281234567890", "+6281234567891")
    await h.hub.health.report("email/ppid", "imap", False, "ConnectionRefusedError")
    h.clock.advance(10 * MINUTE)
    await h.observer().tick()
    m = await _scrape(h)
    unit = (("unit", "general"),)
    wa1 = (("account", "wa1"), ("channel", "whatsapp"))
    assert m[("hub_unit_waiting", unit)] == 2
    assert m[("hub_unit_open", unit)] == 2
    assert m[("hub_unit_oldest_waiting_seconds", unit)] == 600
    assert m[("hub_channel_waiting", wa1)] == 2
    assert m[("hub_channel_inbound_per_minute", wa1)] == round(2 / 15, 2)  # 15-min average
    assert ("hub_unit_first_response_median_seconds", unit) not in m  # nothing answered yet
    firing = (("rule", "backlog"), ("severity", "warning"), ("subject", "unit general"))
    assert m[("hub_alert_firing", firing)] == 1
    assert m[("hub_source_up", (("kind", "imap"), ("source", "email/ppid")))] == 0

    # The backlog goes down and the alert clears: its series leaves the scrape.
    for t in await h.tickets():
        await h.hub.queue.queue.claim("ani", ["general"], 600_000, t["id"])
    await h.observer().tick()
    m = await _scrape(h)
    assert m[("hub_unit_waiting", unit)] == 0
    assert not any(name == "hub_alert_firing" for name, _ in m)
