"""Supervisors' alerts: hand-checked scenarios with explicit timestamps (no clock, no sleeps),
the state's JSON round trip, the settings' validation, and the Telegram notifier against the
fake Bot API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from channels.telegram_alerts import TelegramAlertNotifier
from hub.alerts import (
    AlertEngine,
    AlertRule,
    AlertsSection,
    AlertState,
    AlertTransition,
    ChannelLoad,
    LoadSnapshot,
    SourceHealth,
    TelegramAlerts,
    UnitLoad,
    in_active_hours,
)
from hub.demo.fake_telegram import FakeTelegram, Scripted

JAKARTA = ZoneInfo("Asia/Jakarta")
TOKEN = "123456:AAE-alerts_token_value"
CHAT = "-1001234567890"
MIN = 60.0

# PTB 22.2+ builds RetryAfter by reading its own deprecated int ``retry_after``; see
# tests/telegram/test_telegram_channel.py.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Deprecated since version v22.2.*retry_after:telegram.warnings.PTBDeprecationWarning"
)


def jkt(hour: int, minute: int = 0, day: int = 27) -> float:
    """An instant given in Jakarta wall time (June 2025), as the hub's epoch seconds."""
    return datetime(2025, 6, day, hour, minute, tzinfo=JAKARTA).timestamp()


T0 = jkt(10)


def unit(name: str, waiting: int = 0, oldest_s: float = 0.0, breached: int = 0) -> UnitLoad:
    return UnitLoad(
        unit=name,
        waiting=waiting,
        open=waiting,
        oldest_waiting_s=oldest_s,
        sla_breached=breached,
        sla_at_risk=0,
    )


def snap(
    at: float,
    units: Sequence[UnitLoad] = (),
    channels: Sequence[ChannelLoad] = (),
    dead: int = 0,
    sources: Sequence[SourceHealth] = (),
) -> LoadSnapshot:
    return LoadSnapshot(
        at=at, channels=list(channels), units=list(units), dead_letters=dead, sources=list(sources)
    )


def wa(last: float | None, account: str = "wa1", recent: int = 0) -> ChannelLoad:
    return ChannelLoad("whatsapp", account, inbound_last_15m=recent, last_inbound_at=last)


class Run:
    """An engine and its state, stepped through snapshots as the hub's loop would."""

    def __init__(self, *rules: AlertRule) -> None:
        self.engine = AlertEngine(AlertsSection(rules=list(rules)))
        self.state: dict[str, AlertState] = {}

    def step(self, snapshot: LoadSnapshot) -> list[AlertTransition]:
        self.state, transitions = self.engine.evaluate(snapshot, self.state)
        return transitions


def kinds(transitions: list[AlertTransition]) -> list[tuple[str, str]]:
    return [(t.kind, t.key) for t in transitions]


BACKLOG = AlertRule(name="backlog", kind="backlog_above", threshold=50)


# -- firing once, clearing once ---------------------------------------------------------------


def test_backlog_fires_once_stays_quiet_and_clears_once() -> None:
    run = Run(BACKLOG)
    assert run.step(snap(T0, [unit("hi_upah", 50)])) == []  # at the threshold: not above
    (fired,) = run.step(snap(T0 + 15, [unit("hi_upah", 63)]))
    assert fired.kind == "fired"
    assert fired.key == "backlog:unit hi_upah"
    assert fired.rule == "backlog"
    assert fired.subject == "unit hi_upah"
    assert fired.at == T0 + 15
    assert fired.value == 63
    assert fired.severity == "warning"
    assert fired.message_id == "Antrean unit hi_upah: 63 tiket menunggu (ambang 50)"
    assert fired.message_en == "Unit hi_upah queue: 63 tickets waiting (threshold 50)"
    for i in range(10):
        assert run.step(snap(T0 + 30 + 15 * i, [unit("hi_upah", 60 + i)])) == []
    st = run.state["backlog:unit hi_upah"]
    assert st.firing
    assert st.fired_at == T0 + 15
    assert st.value == 69
    (cleared,) = run.step(snap(T0 + 200, [unit("hi_upah", 12)]))
    assert cleared.kind == "cleared"
    assert cleared.key == fired.key
    assert cleared.value == 12
    assert cleared.message_id == "Antrean unit hi_upah: 12 tiket menunggu (ambang 50)"
    for i in range(5):
        assert run.step(snap(T0 + 215 + 15 * i, [unit("hi_upah", 10)])) == []
    assert not run.state["backlog:unit hi_upah"].firing


def test_for_minutes_debounce() -> None:
    run = Run(AlertRule(name="backlog", kind="backlog_above", threshold=50, for_minutes=5))
    # A 2-minute spike under a 5-minute debounce never fires.
    for s in range(0, 121, 15):
        assert run.step(snap(T0 + s, [unit("hi_upah", 80)])) == []
    assert run.state["backlog:unit hi_upah"].pending_since == T0
    assert run.step(snap(T0 + 135, [unit("hi_upah", 20)])) == []
    assert run.state["backlog:unit hi_upah"].pending_since is None
    # Flapping around the threshold restarts the debounce each time.
    for k in range(6):
        base = T0 + 200 + k * 240
        assert run.step(snap(base, [unit("hi_upah", 80)])) == []
        assert run.step(snap(base + 200, [unit("hi_upah", 80)])) == []
        assert run.step(snap(base + 220, [unit("hi_upah", 40)])) == []
    # Held for 5 minutes: fires exactly once, at the evaluation that reaches 5 minutes.
    start = T0 + 3000
    assert run.step(snap(start, [unit("hi_upah", 80)])) == []
    assert run.step(snap(start + 299, [unit("hi_upah", 80)])) == []
    (fired,) = run.step(snap(start + 300, [unit("hi_upah", 81)]))
    assert fired.kind == "fired"
    assert fired.at == start + 300
    assert run.step(snap(start + 315, [unit("hi_upah", 81)])) == []


def test_clear_for_minutes_hysteresis() -> None:
    rule = AlertRule(name="backlog", kind="backlog_above", threshold=50, clear_for_minutes=5)
    run = Run(rule)
    assert kinds(run.step(snap(T0, [unit("hi_upah", 70)]))) == [("fired", "backlog:unit hi_upah")]
    # Below for 3 minutes, then back above: neither cleared nor fired again.
    for s in range(60, 241, 60):
        assert run.step(snap(T0 + s, [unit("hi_upah", 45)])) == []
    assert run.state["backlog:unit hi_upah"].clearing_since == T0 + 60
    assert run.state["backlog:unit hi_upah"].firing
    assert run.step(snap(T0 + 270, [unit("hi_upah", 55)])) == []
    assert run.state["backlog:unit hi_upah"].clearing_since is None
    # Below for 5 minutes: cleared once.
    clear_start = T0 + 300
    for s in range(0, 300, 30):
        assert run.step(snap(clear_start + s, [unit("hi_upah", 30)])) == []
    (cleared,) = run.step(snap(clear_start + 300, [unit("hi_upah", 30)]))
    assert cleared.kind == "cleared"
    assert run.step(snap(clear_start + 330, [unit("hi_upah", 30)])) == []


def test_units_are_independent_subjects() -> None:
    run = Run(BACKLOG, AlertRule(name="k3-sla", kind="sla_breached_above", unit="k3", threshold=2))
    t = run.step(snap(T0, [unit("hi_upah", 63), unit("k3", 10, breached=5), unit("ppid", 3)]))
    assert kinds(t) == [("fired", "backlog:unit hi_upah"), ("fired", "k3-sla:unit k3")]
    assert t[1].message_id == "Unit k3: 5 tiket melewati SLA (ambang 2)"
    # k3 crosses the backlog threshold later: its own alert; hi_upah's stays quiet.
    t = run.step(snap(T0 + 15, [unit("hi_upah", 64), unit("k3", 51, breached=5), unit("ppid", 3)]))
    assert kinds(t) == [("fired", "backlog:unit k3")]
    t = run.step(snap(T0 + 30, [unit("hi_upah", 10), unit("k3", 52, breached=5), unit("ppid", 3)]))
    assert kinds(t) == [("cleared", "backlog:unit hi_upah")]
    assert run.state["backlog:unit k3"].firing
    assert "k3-sla:unit hi_upah" not in run.state  # the k3 rule never looks at other units


def test_unit_glob_filter() -> None:
    run = Run(AlertRule(name="b", kind="backlog_above", unit="hi_*", threshold=1))
    t = run.step(snap(T0, [unit("hi_upah", 5), unit("k3", 5)]))
    assert kinds(t) == [("fired", "b:unit hi_upah")]


def test_oldest_waiting_in_minutes() -> None:
    run = Run(AlertRule(name="oldest", kind="oldest_waiting_above", threshold=30))
    assert run.step(snap(T0, [unit("ppid", 2, oldest_s=30 * MIN)])) == []
    (fired,) = run.step(snap(T0 + 15, [unit("ppid", 2, oldest_s=31.5 * MIN)]))
    assert fired.value == pytest.approx(31.5)
    assert fired.message_id == (
        "Unit ppid: tiket terlama sudah menunggu 31.5 menit (ambang 30 menit)"
    )
    # Nothing waiting is nothing old, whatever the counter says.
    (cleared,) = run.step(snap(T0 + 30, [unit("ppid", 0, oldest_s=45 * MIN)]))
    assert cleared.kind == "cleared"


def test_a_vanished_subject_clears_through_hysteresis_then_is_forgotten() -> None:
    run = Run(AlertRule(name="backlog", kind="backlog_above", threshold=50, clear_for_minutes=1))
    run.step(snap(T0, [unit("hi_upah", 70)]))
    assert run.step(snap(T0 + 30, [])) == []  # gone since T0 + 30: cleared a minute later
    assert run.step(snap(T0 + 60, [])) == []
    (cleared,) = run.step(snap(T0 + 90, []))
    assert cleared.kind == "cleared"
    assert cleared.message_id == "Unit hi_upah: tidak lagi dilaporkan oleh hub"
    assert run.state == {}


def test_removed_rule_clears_its_firing_alerts() -> None:
    old = Run(BACKLOG)
    old.step(snap(T0, [unit("hi_upah", 70)]))
    new = Run(AlertRule(name="dead", kind="dead_letters"))
    new.state = old.state
    t = new.step(snap(T0 + 15, [unit("hi_upah", 70)]))
    assert kinds(t) == [("cleared", "backlog:unit hi_upah")]
    assert t[0].severity == "info"
    assert "backlog:unit hi_upah" not in new.state
    assert new.step(snap(T0 + 30, [unit("hi_upah", 70)])) == []


def test_evaluate_does_not_modify_the_given_state() -> None:
    run = Run(BACKLOG)
    run.step(snap(T0, [unit("hi_upah", 70)]))
    before = {k: v.to_dict() for k, v in run.state.items()}
    given = dict(run.state)
    run.engine.evaluate(snap(T0 + 15, [unit("hi_upah", 10)]), given)
    assert {k: v.to_dict() for k, v in given.items()} == before


# -- channel silence and active hours ---------------------------------------------------------

SILENT = AlertRule(
    name="wa-silent",
    kind="channel_silent",
    channel="whatsapp",
    threshold=60,
    active_hours="08:00-20:00",
)


def test_channel_silent_inside_active_hours() -> None:
    run = Run(SILENT)
    last = jkt(9)
    assert run.step(snap(jkt(9, 59), channels=[wa(last)])) == []
    assert run.step(snap(jkt(10), channels=[wa(last)])) == []  # exactly 60 min: not above
    (fired,) = run.step(snap(jkt(10, 1), channels=[wa(last)]))
    assert fired.key == "wa-silent:whatsapp/wa1"
    assert fired.message_id == (
        "Kanal whatsapp/wa1: tidak ada pesan masuk selama 61 menit (ambang 60 menit)"
    )
    assert fired.message_en == (
        "Channel whatsapp/wa1: no inbound messages for 61 min (threshold 60 min)"
    )
    assert run.step(snap(jkt(10, 30), channels=[wa(last)])) == []
    (cleared,) = run.step(snap(jkt(10, 45), channels=[wa(jkt(10, 40))]))
    assert cleared.kind == "cleared"
    assert cleared.message_id == "Kanal whatsapp/wa1: pesan masuk kembali"


def test_channel_silent_clears_at_the_end_of_active_hours_and_sleeps_at_night() -> None:
    rule = SILENT.model_copy(update={"clear_for_minutes": 30})
    run = Run(rule)
    last = jkt(18)
    assert kinds(run.step(snap(jkt(19, 30), channels=[wa(last)]))) == [
        ("fired", "wa-silent:whatsapp/wa1")
    ]
    (cleared,) = run.step(snap(jkt(20), channels=[wa(last)]))  # no 30-minute hysteresis
    assert cleared.kind == "cleared"
    assert cleared.message_id == "Kanal whatsapp/wa1: di luar jam aktif 08:00-20:00"
    assert cleared.message_en == "Channel whatsapp/wa1: outside active hours 08:00-20:00"
    for hour in (21, 23, 2, 5, 7):
        day = 27 if hour > 20 else 28
        assert run.step(snap(jkt(hour, 30, day=day), channels=[wa(last)])) == []
    # The night's silence does not count: at 08:30 the channel has been quiet 30 min, not 14 h.
    assert run.step(snap(jkt(8, 30, day=28), channels=[wa(last)])) == []
    assert run.state["wa-silent:whatsapp/wa1"].value == pytest.approx(30)
    assert run.step(snap(jkt(9, 0, day=28), channels=[wa(last)])) == []
    (fired,) = run.step(snap(jkt(9, 1, day=28), channels=[wa(last)]))
    assert fired.kind == "fired"


def test_channel_silent_across_midnight() -> None:
    rule = AlertRule(
        name="night-wa",
        kind="channel_silent",
        channel="whatsapp",
        threshold=60,
        active_hours="20:00-06:00",
    )
    for (hour, minute), active in {
        (19, 59): False,
        (20, 0): True,
        (23, 59): True,
        (0, 0): True,
        (5, 59): True,
        (6, 0): False,
        (12, 0): False,
    }.items():
        assert in_active_hours(rule, jkt(hour, minute)) is active, (hour, minute)
    run = Run(rule)
    # Silent all afternoon: nothing (outside), and at 20:30 the window is only 30 min old.
    assert run.step(snap(jkt(15), channels=[wa(jkt(12))])) == []
    assert run.step(snap(jkt(20, 30), channels=[wa(jkt(12))])) == []
    (fired,) = run.step(snap(jkt(21, 1), channels=[wa(jkt(12))]))
    assert fired.value == pytest.approx(61)
    # Still silent past midnight: the window opened yesterday at 20:00; no new transition.
    assert run.step(snap(jkt(2, 0, day=28), channels=[wa(jkt(12))])) == []
    assert run.state["night-wa:whatsapp/wa1"].value == pytest.approx(360)
    (cleared,) = run.step(snap(jkt(6, 0, day=28), channels=[wa(jkt(12))]))
    assert cleared.kind == "cleared"
    assert "di luar jam aktif 20:00-06:00" in cleared.message_id
    # A message at 00:30 and silence after: fires at 01:31 within the same night's window.
    run2 = Run(rule)
    assert run2.step(snap(jkt(1, 30, day=28), channels=[wa(jkt(0, 30, day=28))])) == []
    (fired2,) = run2.step(snap(jkt(1, 31, day=28), channels=[wa(jkt(0, 30, day=28))]))
    assert fired2.kind == "fired"


def test_channel_never_heard_from_is_silent_since_first_seen() -> None:
    run = Run(SILENT)
    assert run.step(snap(jkt(10), channels=[wa(None)])) == []
    assert run.state["wa-silent:whatsapp/wa1"].first_seen == jkt(10)
    assert run.step(snap(jkt(11), channels=[wa(None)])) == []
    assert run.state["wa-silent:whatsapp/wa1"].first_seen == jkt(10)
    (fired,) = run.step(snap(jkt(11, 1), channels=[wa(None)]))
    assert fired.value == pytest.approx(61)
    # Inbound counted in the last 15 minutes beats a missing timestamp.
    (cleared,) = run.step(snap(jkt(11, 2), channels=[wa(None, recent=2)]))
    assert cleared.kind == "cleared"


def test_channel_filter_and_accounts() -> None:
    run = Run(SILENT.model_copy(update={"account": "wa1"}))
    t = run.step(
        snap(
            jkt(12),
            channels=[
                wa(jkt(9)),
                wa(jkt(9), account="wa2"),
                ChannelLoad("email", "ppid", 0, jkt(9)),
            ],
        )
    )
    assert kinds(t) == [("fired", "wa-silent:whatsapp/wa1")]


# -- dead letters and sources -----------------------------------------------------------------


def test_dead_letters() -> None:
    run = Run(AlertRule(name="dead", kind="dead_letters", severity="critical"))
    assert run.step(snap(T0, dead=0)) == []
    (fired,) = run.step(snap(T0 + 15, dead=1))
    assert fired.key == "dead:hub"
    assert fired.severity == "critical"
    assert fired.message_id == "Dead letter: 1 pesan tidak dapat diproses (ambang 0)"
    assert fired.message_en == "Dead letters: 1 message could not be processed (threshold 0)"
    assert run.step(snap(T0 + 30, dead=3)) == []
    (cleared,) = run.step(snap(T0 + 45, dead=0))
    assert cleared.kind == "cleared"
    assert run.step(snap(T0 + 60, dead=0)) == []


def test_source_unreachable() -> None:
    run = Run(AlertRule(name="src", kind="source_unreachable", threshold=5, channel="imap"))
    down = SourceHealth("ppid-mailbox", "imap", False, T0, "LOGIN failed: authentication")
    api = SourceHealth("twilio", "provider_api", False, T0 - 3600, "HTTP 503")
    assert run.step(snap(T0 + 4 * MIN, sources=[down, api])) == []
    assert run.step(snap(T0 + 5 * MIN, sources=[down, api])) == []  # exactly 5: not above
    (fired,) = run.step(snap(T0 + 6 * MIN, sources=[down, api]))
    assert fired.key == "src:source ppid-mailbox"  # the provider API is not an imap source
    assert fired.message_id == (
        "Sumber ppid-mailbox tidak dapat dijangkau selama 6 menit "
        "(imap: LOGIN failed: authentication)"
    )
    assert fired.message_en == (
        "Source ppid-mailbox unreachable for 6 min (imap: LOGIN failed: authentication)"
    )
    assert run.step(snap(T0 + 20 * MIN, sources=[down, api])) == []
    up = SourceHealth("ppid-mailbox", "imap", True, T0 + 21 * MIN, "")
    (cleared,) = run.step(snap(T0 + 21 * MIN, sources=[up, api]))
    assert cleared.kind == "cleared"
    assert cleared.message_id == "Sumber ppid-mailbox dapat dijangkau kembali"
    assert cleared.message_en == "Source ppid-mailbox is reachable again"


RLO, FSI, PDI = "\u202e", "\u2068", "\u2069"


def test_outside_words_in_alert_texts_are_isolated() -> None:
    """A right-to-left override in a source's error text or a name comes back wrapped in
    FSI … PDI, with the hub's own words after it outside the isolate; plain values are left
    as they are."""
    detail_run = Run(AlertRule(name="src", kind="source_unreachable", threshold=5))
    evil = f"HTTP 503 {RLO}gnp.exe"
    down = SourceHealth("graph", "provider_api", False, T0, evil)
    (fired,) = detail_run.step(snap(T0 + 6 * MIN, sources=[down]))
    isolated = f"{FSI}provider_api: {evil}{PDI}"
    assert fired.message_id == f"Sumber graph tidak dapat dijangkau selama 6 menit ({isolated})"
    assert fired.message_en == f"Source graph unreachable for 6 min ({isolated})"
    (active,) = detail_run.engine.active_alerts(detail_run.state)
    assert active.message_en.endswith(f"({isolated})")
    assert active.message_en.rindex(PDI) == len(active.message_en) - 2  # then only ")"

    name = f"hi{RLO}upah"
    unit_run = Run(BACKLOG, AlertRule(name="oldest", kind="oldest_waiting_above", threshold=30))
    b, o = unit_run.step(snap(T0, [unit(name, 63, oldest_s=31 * MIN)]))
    assert b.message_id == f"Antrean unit {FSI}{name}{PDI}: 63 tiket menunggu (ambang 50)"
    assert b.message_en == f"Unit {FSI}{name}{PDI} queue: 63 tickets waiting (threshold 50)"
    assert o.message_en.startswith(f"Unit {FSI}{name}{PDI}: the oldest ticket has waited")
    for text in (b.message_id, b.message_en, o.message_id, o.message_en, fired.message_id):
        words_after = text[text.rindex(PDI) + 1 :]
        assert words_after  # the hub's words, outside the isolate
        assert RLO not in words_after
        assert text.count(FSI) == text.count(PDI) == 1

    silent = Run(AlertRule(name="quiet", kind="channel_silent", threshold=30))
    (s_fired,) = silent.step(snap(T0, channels=[wa(T0 - 40 * MIN, account=f"wa{RLO}1")]))
    assert s_fired.message_en.startswith(f"Channel {FSI}whatsapp/wa{RLO}1{PDI}: no inbound")
    (plain,) = Run(BACKLOG).step(snap(T0, [unit("hi_upah", 63)]))
    assert FSI not in plain.message_id + plain.message_en


# -- persistence ------------------------------------------------------------------------------

RULES = [
    AlertRule(name="backlog", kind="backlog_above", threshold=50, for_minutes=2),
    AlertRule(name="calm", kind="backlog_above", threshold=50, clear_for_minutes=3),
    SILENT,
    AlertRule(name="dead", kind="dead_letters"),
    AlertRule(name="src", kind="source_unreachable", threshold=1),
]


def scenario() -> list[LoadSnapshot]:
    out = []
    for i in range(80):  # 19:00 to 20:19: the active hours end on the way
        at = jkt(19, 0) + i * 60.0
        waiting = 70 if 3 <= i < 20 or i == 25 else 20
        healthy = not (10 <= i < 30)
        out.append(
            snap(
                at,
                units=[unit("hi_upah", waiting), unit("k3", 60 if i > 30 else 0)],
                channels=[wa(None), wa(jkt(18), account="wa2")],
                dead=1 if 15 <= i < 18 else 0,
                sources=[SourceHealth("mbox", "imap", healthy, jkt(19, 10), "timeout")],
            )
        )
    return out


def test_state_round_trips_through_json_and_survives_a_restart() -> None:
    section = AlertsSection(rules=RULES)
    straight: list[AlertTransition] = []
    state: dict[str, AlertState] = {}
    engine = AlertEngine(section)
    for s in scenario():
        state, t = engine.evaluate(s, state)
        straight += t
    assert {t.kind for t in straight} == {"fired", "cleared"}
    assert len(straight) >= 8

    restarted: list[AlertTransition] = []
    stored = "{}"
    for s in scenario():  # every evaluation by a fresh engine, the state loaded from JSON
        loaded = {k: AlertState.from_dict(v) for k, v in json.loads(stored).items()}
        new_state, t = AlertEngine(AlertsSection(rules=RULES)).evaluate(s, loaded)
        restarted += t
        stored = json.dumps({k: v.to_dict() for k, v in new_state.items()})
    assert restarted == straight
    assert json.loads(stored) == {k: v.to_dict() for k, v in state.items()}


def test_alert_state_dict_shape() -> None:
    st = AlertState(
        subject="whatsapp/wa1",
        firing=True,
        pending_since=1.5,
        fired_at=2.0,
        value=61.0,
        first_seen=0.0,
        detail="x",
    )
    d = st.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert AlertState.from_dict(d) == st
    assert AlertState.from_dict({**d, "added_by_a_newer_hub": 1}) == st
    assert AlertState.from_dict({"subject": "hub"}) == AlertState(subject="hub")
    for bad in (
        {},
        {"subject": 3},
        {"subject": "x", "firing": "yes"},
        {"subject": "x", "fired_at": "1"},
    ):
        with pytest.raises(ValueError, match="alert state"):
            AlertState.from_dict(bad)


# -- the dashboard ----------------------------------------------------------------------------


def test_active_alerts_most_severe_first() -> None:
    run = Run(
        AlertRule(name="backlog", kind="backlog_above", threshold=50, clear_for_minutes=5),
        AlertRule(name="dead", kind="dead_letters", severity="critical"),
    )
    run.step(snap(T0, [unit("hi_upah", 63)]))
    run.step(snap(T0 + 15, [unit("hi_upah", 63), unit("k3", 70)], dead=2))
    run.step(snap(T0 + 30, [unit("hi_upah", 10), unit("k3", 70)], dead=2))
    active = run.engine.active_alerts(run.state)
    assert [a.key for a in active] == ["dead:hub", "backlog:unit hi_upah", "backlog:unit k3"]
    dead, hi, k3 = active
    assert dead.severity == "critical"
    assert dead.fired_at == T0 + 15
    assert hi.clearing is True  # below the threshold, waiting out clear_for_minutes
    assert hi.value == 10
    assert k3.clearing is False
    assert k3.threshold == 50
    assert k3.kind == "backlog_above"
    assert k3.message_id == "Antrean unit k3: 70 tiket menunggu (ambang 50)"
    assert k3.message_en == "Unit k3 queue: 70 tickets waiting (threshold 50)"
    # A rule no longer configured is not shown (the next evaluation clears it).
    assert AlertEngine(AlertsSection(rules=[])).active_alerts(run.state) == []


# -- settings ---------------------------------------------------------------------------------


def test_default_rules() -> None:
    section = AlertsSection()
    by_name = {r.name: r for r in section.rules}
    assert list(by_name) == [
        "backlog",
        "oldest-waiting",
        "dead-letters",
        "source-unreachable",
        "whatsapp-silent",
    ]
    assert by_name["backlog"].threshold == 50
    assert by_name["backlog"].for_minutes == 5
    assert by_name["oldest-waiting"].threshold == 30
    assert by_name["dead-letters"].threshold == 0
    assert by_name["source-unreachable"].threshold == 5
    silent = by_name["whatsapp-silent"]
    assert (silent.channel, silent.threshold, silent.active_hours) == (
        "whatsapp",
        60,
        "08:00-20:00",
    )
    assert section.telegram is None
    assert section.evaluate_every_s == 15
    # The defaults evaluate without surprises on a quiet hub.
    engine = AlertEngine(section)
    assert engine.evaluate(snap(T0, [unit("general")], [wa(T0 - 60)]), {})[1] == []


def test_rules_load_from_config_shaped_data() -> None:
    section = AlertsSection.model_validate(
        {
            "evaluate_every_s": 30,
            "rules": [
                {"name": "b", "kind": "backlog_above", "threshold": 10, "unit": "hi_upah"},
                {"name": "night", "kind": "channel_silent", "active_hours": "20:00-06:00"},
            ],
            "telegram": {"enabled": True, "bot_token": TOKEN, "chat_id": CHAT},
        }
    )
    assert [r.name for r in section.rules] == ["b", "night"]
    assert section.telegram is not None
    assert section.telegram.language == "id"
    assert TOKEN not in repr(section)


def rule_error(**kwargs: Any) -> str:
    data: dict[str, Any] = {"name": "r", "kind": "backlog_above", **kwargs}
    with pytest.raises(ValidationError) as info:
        AlertRule.model_validate(data)
    return str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"name": "Backlog!"}, "name"),
        ({"name": ""}, "name"),
        ({"kind": "backlog"}, "kind"),
        ({"threshold": -1}, "threshold"),
        ({"for_minutes": -1}, "for_minutes"),
        ({"severity": "page"}, "severity"),
        ({"active_hours": "8:00-20:00"}, "HH:MM-HH:MM"),
        ({"active_hours": "08:00"}, "HH:MM-HH:MM"),
        ({"active_hours": "24:00-06:00"}, "HH:MM-HH:MM"),
        ({"active_hours": "08:60-20:00"}, "HH:MM-HH:MM"),
        ({"active_hours": "08:00-08:00"}, "start equals end"),
        ({"kind": "dead_letters", "unit": "k3"}, "unit does not apply"),
        ({"channel": "whatsapp"}, "channel does not apply"),
        ({"kind": "dead_letters", "account": "wa1"}, "account does not apply"),
        ({"treshold": 5}, "treshold"),
    ],
)
def test_rule_validation(kwargs: dict[str, Any], expected: str) -> None:
    assert expected in rule_error(**kwargs)


def test_rule_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="'backlog' is used twice"):
        AlertsSection(rules=[BACKLOG, BACKLOG.model_copy(update={"threshold": 10})])


def test_rule_is_frozen() -> None:
    with pytest.raises(ValidationError):
        BACKLOG.threshold = 5


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"bot_token": "not-a-token-Zq9secret"}, "bot_token"),
        ({"chat_id": "@supervisors"}, "chat_id"),
        ({"chat_id": ""}, "chat_id"),
        ({"api_base_url": "api.telegram.org"}, "api_base_url"),
        ({"language": "jv"}, "language"),
        ({"tokne": "x"}, "tokne"),
    ],
)
def test_telegram_settings_validation(kwargs: dict[str, Any], expected: str) -> None:
    data = {"bot_token": TOKEN, "chat_id": CHAT, **kwargs}
    with pytest.raises(ValidationError) as info:
        TelegramAlerts.model_validate(data)
    assert expected in str(info.value)
    assert "Zq9secret" not in str(info.value)
    assert TOKEN not in str(info.value)


# -- the Telegram notifier --------------------------------------------------------------------


def transition(kind: str = "fired", severity: str = "critical") -> AlertTransition:
    return AlertTransition(
        key="backlog:unit hi_upah",
        rule="backlog",
        subject="unit hi_upah",
        kind=kind,  # type: ignore[arg-type]
        at=T0,
        value=63,
        message_id="Antrean unit hi_upah: 63 tiket menunggu (ambang 50)",
        message_en="Unit hi_upah queue: 63 tickets waiting (threshold 50)",
        severity=severity,  # type: ignore[arg-type]
    )


def tg_settings(base: str, **kwargs: Any) -> TelegramAlerts:
    data = {"enabled": True, "bot_token": TOKEN, "chat_id": CHAT, "api_base_url": base, **kwargs}
    return TelegramAlerts.model_validate(data)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    f = FakeTelegram(tokens={TOKEN})
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def notifier(fake: FakeTelegram) -> AsyncIterator[TelegramAlertNotifier]:
    n = TelegramAlertNotifier(tg_settings(fake.base_url), timeout_s=0.5)
    yield n
    await n.aclose()


async def test_notifier_sends_fired_and_resolved_in_indonesian(
    notifier: TelegramAlertNotifier, fake: FakeTelegram
) -> None:
    assert await notifier.send(transition("fired", "critical")) is True
    assert await notifier.send(transition("cleared", "critical")) is True
    first, second = fake.of("sendMessage")
    assert first.params["chat_id"] == CHAT
    assert first.params["text"] == (
        "\U0001f534 AKTIF [backlog] Antrean unit hi_upah: 63 tiket menunggu (ambang 50)"
    )
    assert second.params["chat_id"] == CHAT
    assert second.params["text"].startswith("\u2705 PULIH [backlog] Antrean unit hi_upah")
    assert "parse_mode" not in first.params  # plain text: names with _ or < cannot break it
    assert len(fake.of("getMe")) == 1


async def test_notifier_in_english(fake: FakeTelegram) -> None:
    n = TelegramAlertNotifier(tg_settings(fake.base_url, language="en"), timeout_s=0.5)
    try:
        assert await n.send(transition("fired", "warning"))
        assert await n.send(transition("cleared", "warning"))
    finally:
        await n.aclose()
    texts = [c.params["text"] for c in fake.sent]
    assert texts == [
        "\U0001f7e0 FIRING [backlog] Unit hi_upah queue: 63 tickets waiting (threshold 50)",
        "\u2705 RESOLVED [backlog] Unit hi_upah queue: 63 tickets waiting (threshold 50)",
    ]


async def test_notifier_500_returns_false_and_recovers(
    notifier: TelegramAlertNotifier, fake: FakeTelegram
) -> None:
    fake.script.append(Scripted(500, "Internal Server Error"))
    assert await notifier.send(transition()) is False
    assert await notifier.send(transition()) is True
    assert len(fake.sent) == 1


@pytest.mark.parametrize(
    "step",
    [
        Scripted(429, "Too Many Requests: retry after 3", retry_after=3),
        Scripted(400, "Bad Request: chat not found"),
        Scripted(403, "Forbidden: bot was kicked from the group chat"),
    ],
)
async def test_notifier_refusals_return_false(
    notifier: TelegramAlertNotifier, fake: FakeTelegram, step: Scripted
) -> None:
    fake.script.append(step)
    assert await notifier.send(transition()) is False
    assert fake.sent == []


async def test_notifier_timeout_returns_false(
    notifier: TelegramAlertNotifier, fake: FakeTelegram
) -> None:
    assert await notifier.send(transition())  # initialized, so the hang hits sendMessage
    fake.script.append(Scripted(hang_s=5.0))
    assert await notifier.send(transition()) is False


async def test_notifier_unreachable_or_wrong_token_returns_false_without_the_token() -> None:
    n = TelegramAlertNotifier(tg_settings("http://127.0.0.1:9"), timeout_s=0.5)
    try:
        with capture_logs() as logs:
            assert await n.send(transition()) is False
    finally:
        await n.aclose()
    assert logs
    assert logs[0]["event"] == "alert_telegram_failed"
    assert TOKEN not in repr(logs)
    assert TOKEN not in repr(n)
    assert TOKEN not in repr(n.settings)


async def test_notifier_wrong_token_returns_false(fake: FakeTelegram) -> None:
    other = "999:BBB-another_token"
    n = TelegramAlertNotifier(tg_settings(fake.base_url, bot_token=other), timeout_s=0.5)
    try:
        with capture_logs() as logs:
            assert await n.send(transition()) is False
    finally:
        await n.aclose()
    assert fake.sent == []
    assert other not in repr(logs)


async def test_disabled_notifier_sends_nothing(fake: FakeTelegram) -> None:
    n = TelegramAlertNotifier(tg_settings(fake.base_url, enabled=False))
    assert await n.send(transition()) is False
    await n.aclose()
    assert fake.calls == []


async def test_notifier_aclose_is_idempotent(notifier: TelegramAlertNotifier) -> None:
    assert await notifier.send(transition())
    await notifier.aclose()
    await notifier.aclose()
