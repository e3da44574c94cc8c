"""SLA: business hours, holidays and the timers of a ticket, against instants worked out by
hand on a calendar (every expected value below is a literal date, never the code's output)."""

from __future__ import annotations

import random
import tomllib
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from hub.sla import (
    BusinessCalendar,
    BusinessHours,
    SlaEngine,
    SlaPolicy,
    SlaSection,
    TicketFacts,
)

JKT = ZoneInfo("Asia/Jakarta")
AMS = ZoneInfo("Europe/Amsterdam")
HOUR = 3600.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def wib(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    """A wall-clock instant in Jakarta (WIB, UTC+7) as a unix timestamp."""
    return datetime(y, mo, d, h, mi, s, tzinfo=JKT).timestamp()


def ams(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=AMS).timestamp()


def calendar(**hours: Any) -> BusinessCalendar:
    return BusinessCalendar(BusinessHours.model_validate(hours))


DEFAULT = BusinessCalendar(BusinessHours())  # PTSP hours, 2025-2026 holidays
NO_HOLIDAYS = calendar(holidays=[])
SPLIT = calendar(weekly={d: ["08:00-12:00", "13:00-16:00"] for d in WEEKDAYS}, holidays=[])
ENGINE = SlaEngine(SlaSection())


def ticket(priority: str = "high", created_at: float = 0.0, **kw: Any) -> TicketFacts:
    return TicketFacts(
        unit="general", channel="whatsapp", priority=priority, created_at=created_at, **kw
    )


# --- the calendar -------------------------------------------------------------------------


def test_friday_afternoon_runs_over_the_weekend() -> None:
    """Fri 15:00 + 4 business hours: 1.5 h until Friday's 16:30 close, 2.5 h from Monday
    08:00, so Monday 10:30 (the brief's "11:30" would need a 15:30 Friday close)."""
    assert DEFAULT.add(wib(2025, 1, 10, 15), 4 * HOUR) == wib(2025, 1, 13, 10, 30)
    t = ENGINE.timers(ticket("high", wib(2025, 1, 10, 15)), now=wib(2025, 1, 10, 15))
    assert t.first_response_due == wib(2025, 1, 13, 10, 30)
    # 24 business hours: Fri 1.5 + Mon 8 + Tue 8 = 17.5, then 6.5 h of Wednesday.
    assert t.resolution_due == wib(2025, 1, 15, 14, 30)


def test_saturday_ticket_starts_the_clock_on_monday() -> None:
    """Nothing counts on the weekend: the clock starts at Monday 08:00."""
    sat = wib(2025, 1, 11, 10)
    assert not DEFAULT.is_open(sat)
    assert DEFAULT.next_open(sat) == wib(2025, 1, 13, 8)
    assert DEFAULT.add(sat, HOUR) == wib(2025, 1, 13, 9)
    assert DEFAULT.elapsed(sat, wib(2025, 1, 13, 8)) == 0
    assert DEFAULT.elapsed(sat, wib(2025, 1, 13, 8, 15)) == 15 * 60


def test_closing_time_is_closed_and_a_target_may_end_on_it() -> None:
    """Ranges are half-open: Friday 16:30 is closed, 16:29:59 open; a target running out at
    16:30 is due at 16:30, not at Monday's opening."""
    assert DEFAULT.is_open(wib(2025, 1, 10, 16, 29, 59))
    assert not DEFAULT.is_open(wib(2025, 1, 10, 16, 30))
    assert DEFAULT.next_open(wib(2025, 1, 10, 16, 30)) == wib(2025, 1, 13, 8)
    assert DEFAULT.add(wib(2025, 1, 10, 12, 30), 4 * HOUR) == wib(2025, 1, 10, 16, 30)


def test_zero_seconds_is_the_next_opening() -> None:
    assert DEFAULT.add(wib(2025, 1, 13, 9, 17), 0) == wib(2025, 1, 13, 9, 17)
    assert DEFAULT.add(wib(2025, 1, 11, 10), 0) == wib(2025, 1, 13, 8)
    assert DEFAULT.add(wib(2025, 1, 13, 6), 0) == wib(2025, 1, 13, 8)
    assert DEFAULT.elapsed(wib(2025, 1, 13, 9), wib(2025, 1, 13, 9)) == 0
    assert DEFAULT.elapsed(wib(2025, 1, 13, 10), wib(2025, 1, 13, 9)) == 0


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_bad_durations_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds >= 0"):
        DEFAULT.add(wib(2025, 1, 13, 9), seconds)


def test_a_holiday_monday_pushes_to_tuesday() -> None:
    """18 Aug 2025 (cuti bersama, HUT RI ke-80) is closed: Fri 15:00 + 4 h is Tue 10:30;
    without the holiday list it would be Mon 10:30."""
    assert not DEFAULT.is_open(wib(2025, 8, 18, 10))
    assert DEFAULT.add(wib(2025, 8, 15, 15), 4 * HOUR) == wib(2025, 8, 19, 10, 30)
    assert NO_HOLIDAYS.add(wib(2025, 8, 15, 15), 4 * HOUR) == wib(2025, 8, 18, 10, 30)


def test_split_day_skips_the_lunch_break() -> None:
    """08:00-12:00 and 13:00-16:00: Mon 11:00 + 2 h is 14:00; a ticket at 12:30 starts at
    13:00; 12:00 itself is closed."""
    assert SPLIT.add(wib(2025, 1, 13, 11), 2 * HOUR) == wib(2025, 1, 13, 14)
    assert SPLIT.add(wib(2025, 1, 13, 12, 30), HOUR) == wib(2025, 1, 13, 14)
    assert SPLIT.add(wib(2025, 1, 13, 15), 2 * HOUR) == wib(2025, 1, 14, 9)
    assert SPLIT.is_open(wib(2025, 1, 13, 11, 59, 59))
    assert not SPLIT.is_open(wib(2025, 1, 13, 12))
    assert SPLIT.next_open(wib(2025, 1, 13, 12)) == wib(2025, 1, 13, 13)
    assert SPLIT.elapsed(wib(2025, 1, 13, 11), wib(2025, 1, 13, 14)) == 2 * HOUR


def test_ranges_may_be_listed_in_any_order_and_touch() -> None:
    """Touching ranges make one stretch: 11:00 + 2 h is 13:00 with no gap at noon."""
    touching = calendar(weekly={"mon": ["12:00-16:00", "08:00-12:00"]}, holidays=[])
    assert touching.add(wib(2025, 1, 13, 11), 2 * HOUR) == wib(2025, 1, 13, 13)
    assert touching.is_open(wib(2025, 1, 13, 12))
    # Monday only: 16:00 + 1 h is next Monday 09:00.
    assert touching.add(wib(2025, 1, 13, 16), HOUR) == wib(2025, 1, 20, 9)


def test_idul_fitri_2025_closes_the_office_for_eleven_days() -> None:
    """Thu 27 Mar 2025 15:00: 1 h left that day, then cuti bersama Nyepi (Fri 28), Nyepi (Sat
    29), Sunday, Idulfitri (31 Mar, 1 Apr), cuti bersama (2, 3, 4 Apr), the weekend and cuti
    bersama again (Mon 7 Apr). Office reopens Tue 8 Apr."""
    for day in (28, 31):
        assert not DEFAULT.is_open(wib(2025, 3, day, 10))
    for day in (1, 2, 3, 4, 7):
        assert not DEFAULT.is_open(wib(2025, 4, day, 10))
    assert DEFAULT.elapsed(wib(2025, 3, 27, 16), wib(2025, 4, 8, 8)) == 0
    t = ENGINE.timers(ticket("high", wib(2025, 3, 27, 15)), now=wib(2025, 4, 7, 12))
    # 4 h: 1 h on Thursday, 3 h from Tue 08:00.
    assert t.first_response_due == wib(2025, 4, 8, 11)
    # 24 h: 1 + Tue 8 + Wed 8 = 17, then 7 h of Thursday 10 April.
    assert t.resolution_due == wib(2025, 4, 10, 15)
    assert t.first_response_elapsed_s == HOUR  # a week and a half later, still one hour used
    assert t.first_response_state == "pending"


def test_business_hours_of_2025() -> None:
    """2025 has 52 Mon, Tue, Thu, Fri and 53 Wednesdays. Weekday holidays and cuti bersama:
    6 Mon, 3 Tue, 3 Wed, 4 Thu, 8 Fri. (46 + 49 + 50 + 48) x 8 h + 44 x 8.5 h = 1918 h."""
    year = DEFAULT.elapsed(wib(2025, 1, 1), wib(2026, 1, 1))
    assert year == 1918 * HOUR
    # The last of them ends at 16:00 on Wednesday 31 December.
    assert DEFAULT.add(wib(2025, 1, 1), 1918 * HOUR) == wib(2025, 12, 31, 16)


def test_a_year_is_added_in_weeks() -> None:
    """Long spans end where whole weeks say they end (and return at all: no minute loop)."""
    # Open around the clock except Idulfitri 2025: 364 open days from Mon 6 Jan 2025 end
    # two days after 5 Jan 2026, at the very end of Tue 6 Jan 2026.
    all_day = calendar(
        weekly={d: ["00:00-24:00"] for d in EVERY_DAY},
        holidays=["2025-03-31", "2025-04-01"],
    )
    assert all_day.add(wib(2025, 1, 6), 364 * 86_400) == wib(2026, 1, 7)
    # PTSP hours, no holidays: 52 weeks of 40.5 h from Mon 6 Jan 2025 08:00 end at the
    # close of the 52nd Friday, 2 Jan 2026 (6 Jan 2025 + 51 weeks + 4 days).
    assert NO_HOLIDAYS.add(wib(2025, 1, 6, 8), 52 * 40.5 * HOUR) == wib(2026, 1, 2, 16, 30)
    assert NO_HOLIDAYS.elapsed(wib(2025, 1, 6, 8), wib(2026, 1, 2, 16, 30)) == 52 * 40.5 * HOUR
    # Ten years, no holidays: 520 weeks from Mon 6 Jan 2025 08:00 end on the Friday 519
    # weeks + 4 days = 3637 days later. 6 Jan 2025 to 6 Jan 2035 is 3652 days (2028 and 2032
    # are leap years), so 15 days before 6 Jan 2035: Friday 22 Dec 2034.
    assert NO_HOLIDAYS.add(wib(2025, 1, 6, 8), 520 * 40.5 * HOUR) == wib(2034, 12, 22, 16, 30)


def test_daylight_saving_is_honoured_where_a_zone_has_it() -> None:
    """Jakarta has no DST, but the calendar is written for any zone: Amsterdam's night of
    30 March 2025 has 23 hours, and office hours stay 09:00-17:00 wall time across it."""
    office = calendar(
        timezone="Europe/Amsterdam", weekly={d: ["09:00-17:00"] for d in WEEKDAYS}, holidays=[]
    )
    # Three weeks of 40 h from Mon 17 Mar 09:00 (CET) end Fri 4 Apr 17:00 (CEST).
    assert office.add(ams(2025, 3, 17, 9), 120 * HOUR) == ams(2025, 4, 4, 17)
    all_day = calendar(
        timezone="Europe/Amsterdam", weekly={d: ["00:00-24:00"] for d in EVERY_DAY}, holidays=[]
    )
    assert all_day.elapsed(ams(2025, 3, 24), ams(2025, 3, 31)) == 7 * 86_400 - HOUR
    assert all_day.add(ams(2025, 3, 29, 12), 86_400) == ams(2025, 3, 30, 13)


# --- property: elapsed and add are inverses ----------------------------------------------


def reference_elapsed(hours: BusinessHours, start: float, end: float) -> float:
    """Independent, slow and obvious: every day, every range, clipped (no week skipping)."""
    tz = ZoneInfo(hours.timezone)
    total = 0.0
    day = datetime.fromtimestamp(start, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end, tz).date()
    while day <= last:
        if day not in hours.holidays:
            for text in hours.weekly.get(EVERY_DAY[day.weekday()], []):
                a_txt, b_txt = text.split("-")
                midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
                a = midnight + timedelta(hours=int(a_txt[:2]), minutes=int(a_txt[3:]))
                b = midnight + timedelta(hours=int(b_txt[:2]), minutes=int(b_txt[3:]))
                lo, hi = max(a.timestamp(), start), min(b.timestamp(), end)
                total += max(0.0, hi - lo)
        day += timedelta(days=1)
    return total


@pytest.mark.parametrize(
    "hours",
    [
        BusinessHours(),
        BusinessHours(weekly={d: ["08:00-12:00", "13:00-16:00"] for d in WEEKDAYS}),
        BusinessHours(weekly={"sat": ["22:00-24:00"], "sun": ["00:00-02:00"]}, holidays=[]),
    ],
    ids=["ptsp", "split", "weekend-night"],
)
def test_elapsed_inverts_add(hours: BusinessHours) -> None:
    cal = BusinessCalendar(hours)
    rng = random.Random(20250331)
    lo, hi = wib(2024, 12, 1), wib(2026, 12, 31)
    for _ in range(300):
        start = rng.uniform(lo, hi)
        seconds = rng.choice([0.0, rng.uniform(0, 4 * HOUR), rng.uniform(0, 900 * HOUR)])
        due = cal.add(start, seconds)
        assert due >= start
        assert cal.elapsed(start, due) == pytest.approx(seconds, abs=1e-3)
        if seconds > 1:
            assert cal.is_open(due - 1e-3)  # the last business second ends at due
        else:
            assert cal.is_open(due)
        end = start + rng.uniform(0, 120 * 86_400)
        spent = cal.elapsed(start, end)
        assert spent == pytest.approx(reference_elapsed(hours, start, end), abs=1e-3)
        if spent == 0:  # closed all along: the next opening is not before end
            assert cal.next_open(start) >= end
            continue
        back = cal.add(start, spent)  # the earliest instant with that much business time
        assert back <= end + 1e-3
        assert cal.elapsed(back, end) == pytest.approx(0, abs=1e-3)
        if cal.is_open(end):
            assert back == pytest.approx(end, abs=1e-3)


# --- timers -------------------------------------------------------------------------------


def test_at_risk_at_exactly_eighty_percent() -> None:
    """High priority, 4 business hours from Mon 08:00: 80 % is 3 h 12 min, so 11:12."""
    t0 = wib(2025, 1, 13, 8)
    states = {
        wib(2025, 1, 13, 11, 11, 59): "pending",
        wib(2025, 1, 13, 11, 12): "at_risk",
        wib(2025, 1, 13, 12): "at_risk",  # due, not yet past it
        wib(2025, 1, 13, 12, 0, 1): "breached",
    }
    for now, state in states.items():
        t = ENGINE.timers(ticket("high", t0), now)
        assert t.first_response_state == state, datetime.fromtimestamp(now, JKT)
        assert t.resolution_state == "pending"
    at = ENGINE.timers(ticket("high", t0), wib(2025, 1, 13, 11, 12))
    assert at.at_risk
    assert not at.breached
    assert at.first_response_elapsed_s == (3 * 60 + 12) * 60


def test_at_risk_counts_business_time_only() -> None:
    """From Fri 15:00: 1.5 h by Friday's close, so Saturday is still pending (37.5 %); the
    other 1 h 42 min of the 3 h 12 min run out on Monday at 09:42."""
    t0 = wib(2025, 1, 10, 15)
    sat = ENGINE.timers(ticket("high", t0), wib(2025, 1, 11, 12))
    assert sat.first_response_state == "pending"
    assert sat.first_response_elapsed_s == 1.5 * HOUR
    assert ENGINE.timers(ticket("high", t0), wib(2025, 1, 13, 9, 41, 59)).first_response_state == (
        "pending"
    )
    assert ENGINE.timers(ticket("high", t0), wib(2025, 1, 13, 9, 42)).first_response_state == (
        "at_risk"
    )


def test_urgent_runs_around_the_clock() -> None:
    """Urgent: 60 min and 24 h of wall time, weekends and Idulfitri included."""
    t0 = wib(2025, 1, 11, 22, 30)  # a Saturday night
    t = ENGINE.timers(ticket("urgent", t0), wib(2025, 1, 11, 23))
    assert not t.business_hours
    assert t.first_response_due == wib(2025, 1, 11, 23, 30)
    assert t.resolution_due == wib(2025, 1, 12, 22, 30)
    assert t.first_response_elapsed_s == 30 * 60
    assert t.first_response_state == "pending"
    assert ENGINE.timers(ticket("urgent", t0), wib(2025, 1, 11, 23, 18)).first_response_state == (
        "at_risk"
    )
    assert ENGINE.timers(ticket("urgent", t0), wib(2025, 1, 11, 23, 31)).breached
    lebaran = ENGINE.timers(ticket("urgent", wib(2025, 3, 31, 10)), wib(2025, 3, 31, 10))
    assert lebaran.first_response_due == wib(2025, 3, 31, 11)


def test_met_missed_and_breached() -> None:
    """High from Mon 13 Jan 08:00: reply due 12:00; resolution (24 h = three full days)
    due Wed 15 Jan 16:00."""
    t0 = wib(2025, 1, 13, 8)
    later = wib(2025, 1, 20, 9)

    def at(now: float = later, **kw: Any) -> Any:
        return ENGINE.timers(ticket("high", t0, **kw), now)

    assert at(first_response_at=wib(2025, 1, 13, 11)).first_response_state == "met"
    assert at(first_response_at=wib(2025, 1, 13, 12)).first_response_state == "met"
    assert at(first_response_at=wib(2025, 1, 13, 12, 0, 1)).first_response_state == "missed"
    late = at(wib(2025, 1, 13, 13))
    assert late.first_response_state == "breached"
    assert late.breached
    assert late.first_response_elapsed_s == 5 * HOUR

    on_time = at(first_response_at=t0 + 60, resolved_at=wib(2025, 1, 15, 15), status="resolved")
    assert on_time.resolution_due == wib(2025, 1, 15, 16)
    assert on_time.resolution_state == "met"
    assert on_time.resolution_elapsed_s == 23 * HOUR
    assert not on_time.breached
    assert not on_time.at_risk

    overdue = at(first_response_at=t0 + 60, resolved_at=wib(2025, 1, 16, 9), status="closed")
    assert overdue.resolution_state == "missed"
    assert overdue.resolution_elapsed_s == 25 * HOUR
    assert not overdue.breached  # history, not an alarm

    running = at(wib(2025, 1, 15, 16, 0, 1), first_response_at=t0 + 60)
    assert running.resolution_state == "breached"
    assert running.first_response_state == "met"


def test_resolved_without_a_reply_stops_the_first_response_timer() -> None:
    """A ticket resolved at Mon 10:00 with no officer reply needed none: both timers met."""
    t = ENGINE.timers(
        ticket("high", wib(2025, 1, 13, 8), resolved_at=wib(2025, 1, 13, 10), status="resolved"),
        wib(2025, 1, 20, 9),
    )
    assert (t.first_response_state, t.resolution_state) == ("met", "met")
    assert t.first_response_elapsed_s == 2 * HOUR


def test_reopened_ticket_counts_from_creation_again() -> None:
    """Resolved Mon 10:00, reopened: the resolution clock runs from Mon 08:00 again and, still
    open on Thursday, is past Wednesday's 16:00 due; a resolution on Thursday 09:00 (the
    latest) misses it by an hour."""
    t0 = wib(2025, 1, 13, 8)
    reopened = ENGINE.timers(
        ticket("high", t0, resolved_at=wib(2025, 1, 13, 10), status="open"), wib(2025, 1, 16, 9)
    )
    assert reopened.resolution_state == "breached"
    assert reopened.resolution_elapsed_s == 25 * HOUR
    assert reopened.first_response_state == "met"
    again = ENGINE.timers(
        ticket("high", t0, resolved_at=wib(2025, 1, 16, 9), status="resolved"), wib(2025, 1, 20, 9)
    )
    assert again.resolution_state == "missed"


def test_ticket_facts_are_checked() -> None:
    with pytest.raises(ValueError, match="needs resolved_at"):
        ticket(status="closed")
    with pytest.raises(ValueError, match="status must be"):
        ticket(status="pending")


def test_as_dict_carries_every_field_and_the_flags() -> None:
    t0 = wib(2025, 1, 13, 8)
    d = ENGINE.timers(ticket("high", t0), wib(2025, 1, 13, 11, 12)).as_dict()
    assert d == {
        "policy": "high",
        "business_hours": True,
        "first_response_due": wib(2025, 1, 13, 12),
        "resolution_due": wib(2025, 1, 15, 16),
        "first_response_state": "at_risk",
        "resolution_state": "pending",
        "first_response_elapsed_s": 11_520.0,
        "resolution_elapsed_s": 11_520.0,
        "first_response_target_s": 14_400.0,
        "resolution_target_s": 86_400.0,
        "at_risk": True,
        "breached": False,
    }


# --- policies -----------------------------------------------------------------------------


def policy(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "first_response_minutes": 60, "resolution_hours": 8, **kw}


def test_most_specific_policy_wins_and_ties_go_to_the_first() -> None:
    engine = SlaEngine(
        SlaSection.model_validate(
            {
                "policies": [
                    policy("all"),
                    policy("k3", unit="k3"),
                    policy("k3-high", unit="k3", priority="high"),
                    policy("calls", channel="call"),
                    policy("urgent", priority="urgent"),
                ]
            }
        )
    )

    def name(unit: str, channel: str, priority: str) -> str:
        return engine.policy_for(unit, channel, priority).name

    assert name("k3", "whatsapp", "high") == "k3-high"  # unit + priority beats unit
    assert name("k3", "call", "high") == "k3-high"  # two fields beat either one
    assert name("k3", "whatsapp", "normal") == "k3"  # unit beats *
    assert name("general", "whatsapp", "normal") == "all"
    assert name("k3", "call", "normal") == "k3"  # one field each: listed first wins
    assert name("general", "call", "urgent") == "calls"
    assert name("general", "email", "urgent") == "urgent"


def test_default_policies() -> None:
    def pick(priority: str) -> SlaPolicy:
        return ENGINE.policy_for("general", "whatsapp", priority)

    assert (pick("urgent").first_response_minutes, pick("urgent").business_hours) == (60, False)
    assert (pick("high").first_response_minutes, pick("high").resolution_hours) == (240, 24)
    assert (pick("normal").first_response_minutes, pick("normal").resolution_hours) == (480, 40)
    assert (pick("low").first_response_minutes, pick("low").resolution_hours) == (960, 80)
    assert pick("").name == "default"
    assert pick("").specificity == 0
    unnamed = SlaPolicy(unit="k3", first_response_minutes=30, resolution_hours=1)
    assert unnamed.label == "unit=k3 channel=* priority=*"


def test_toml_with_iso_dates_loads() -> None:
    tree = tomllib.loads(
        """
        [sla]
        at_risk_fraction = 0.75
        [sla.hours]
        weekly = { mon = ["08:00-12:00", "13:00-16:00"], fri = ["08:00-11:30", "13:30-16:30"] }
        holidays = [2025-03-31, "2025-04-01"]
        [[sla.policies]]
        first_response_minutes = 120
        resolution_hours = 16
        [[sla.policies]]
        unit = "ppid"
        first_response_minutes = 480
        resolution_hours = 80
        """
    )
    section = SlaSection.model_validate(tree["sla"])
    assert section.hours.holidays == [date(2025, 3, 31), date(2025, 4, 1)]
    assert section.hours.timezone == "Asia/Jakarta"
    assert SlaEngine(section).policy_for("ppid", "email", "normal").resolution_hours == 80


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        (
            {"weekly": {"mon": ["08:00-12:00", "11:00-13:00"]}},
            "mon: 08:00-12:00 and 11:00-13:00 overlap",
        ),
        ({"weekly": {"monday": ["08:00-16:00"]}}, "unknown day(s) ['monday']"),
        (
            {"weekly": {"tue": ["16:00-08:00"]}},
            "tue: '16:00-08:00': the range must end after it starts",
        ),
        ({"weekly": {"tue": ["08:00-08:00"]}}, "must end after it starts"),
        ({"weekly": {"wed": ["8:00-16:00"]}}, "expected HH:MM-HH:MM"),
        ({"weekly": {"wed": ["08:00-24:30"]}}, "times run from 00:00 to 24:00"),
        ({"weekly": {"mon": [], "tue": []}}, "no day has opening hours"),
        ({"timezone": "Asia/Jakrta"}, "unknown time zone 'Asia/Jakrta'"),
        ({"timezone": "../../etc/passwd"}, "unknown time zone"),
        ({"holidays": ["2025-02-30"]}, "holidays.0"),
        ({"weekends": []}, "weekends"),
    ],
)
def test_bad_business_hours_are_refused(hours: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        BusinessHours.model_validate(hours)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"policies": [policy("normal", priority="normal")]}, "no catch-all policy"),
        ({"policies": []}, "no catch-all policy"),
        (
            {"policies": [policy("a"), policy("k3", unit="k3"), policy("k3 again", unit="k3")]},
            "policies[2] matches the same unit, channel and priority as policies[1]",
        ),
        ({"at_risk_fraction": 1.0}, "at_risk_fraction"),
        ({"at_risk_fraction": 0}, "at_risk_fraction"),
        ({"policies": [policy("a", priority="critical")]}, "policies.0.priority"),
        ({"policies": [policy("a", first_response_minutes=0)]}, "first_response_minutes"),
        ({"policies": [policy("a", resolution_hours=-1)]}, "resolution_hours"),
        (
            {"policies": [policy("a", first_response_minutes=600, resolution_hours=8)]},
            "first_response_minutes exceeds resolution_hours",
        ),
        ({"policies": [policy("a", unit="")]}, "policies.0.unit"),
        ({"hours": {"timezone": "Mars/Olympus"}}, "hours.timezone"),
    ],
)
def test_bad_sla_sections_are_refused(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        SlaSection.model_validate(section)
    assert message in str(info.value)


def test_defaults_are_valid_and_frozen() -> None:
    s = SlaSection()
    assert s.enabled
    assert s.at_risk_fraction == 0.8
    assert s.hours.weekly["fri"] == ["08:00-16:30"]
    assert "sat" not in s.hours.weekly
    assert date(2026, 3, 20) in s.hours.holidays  # cuti bersama Idulfitri 1447 H
    with pytest.raises(ValidationError):
        s.enabled = False


def test_years_without_holidays_warns_ahead_of_the_new_year() -> None:
    from hub.sla import BusinessHours, years_without_holidays

    hours = BusinessHours()  # the defaults list 2025 and 2026
    jun_2026 = datetime(2026, 6, 1, 9, tzinfo=JKT).timestamp()
    nov_2026 = datetime(2026, 11, 23, 9, tzinfo=JKT).timestamp()
    assert years_without_holidays(hours, jun_2026) == []
    assert years_without_holidays(hours, nov_2026) == [2027]  # the 2027 SKB is due
    with_2027 = BusinessHours(holidays=[*hours.holidays, date(2027, 1, 1)])
    assert years_without_holidays(with_2027, nov_2026) == []
