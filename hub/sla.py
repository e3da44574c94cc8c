"""Service levels: when a ticket's first reply and its resolution are due, and how it stands.

A citizen who writes on Friday afternoon is not wronged by the weekend: targets count the
ministry's business hours (its PTSP service hours, minus public holidays and cuti bersama),
unless a policy says its clock runs around the clock (urgent tickets). Everything here is
pure arithmetic on unix timestamps: the caller passes ``now``, so the same facts always give
the same answer, in a test, in a report computed a month later, and on every hub process.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from hub.config_base import _Section

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WILDCARD: Final = "*"

SlaPriority = Literal["*", "urgent", "high", "normal", "low"]
TICKET_STATUSES = ("open", "resolved", "closed")
TimerState = Literal["pending", "at_risk", "breached", "met", "missed"]

_RANGE = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
# Hand-written boundaries ("at risk at exactly 80 %") must not be lost to the last bit of a
# float product such as 0.8 * 14_400; a microsecond is far below anything an agent sees.
_EPSILON_S = 1e-6

# Hari libur nasional and cuti bersama, from the SKB 3 Menteri (Menteri Agama, Menteri
# Ketenagakerjaan, Menteri PANRB): for 2025 No. 1017/2/2 Tahun 2024 as amended by No. 933/1/3
# Tahun 2025 (cuti bersama 18 August, HUT RI ke-80); for 2026 No. 1497/2/5 Tahun 2025.
# Holidays on a weekend are listed too: harmless, and the list reads like the decree.
# The SKB for a year appears in the autumn before it; add it to [sla.hours] holidays then,
# or these defaults stop covering the calendar after 2026.
DEFAULT_HOLIDAYS: tuple[date, ...] = (
    # 2025
    date(2025, 1, 1),  # Tahun Baru Masehi
    date(2025, 1, 27),  # Isra Mikraj
    date(2025, 1, 28),  # cuti bersama Imlek
    date(2025, 1, 29),  # Tahun Baru Imlek 2576
    date(2025, 3, 28),  # cuti bersama Nyepi
    date(2025, 3, 29),  # Nyepi (Tahun Baru Saka 1947)
    date(2025, 3, 31),  # Idulfitri 1446 H
    date(2025, 4, 1),  # Idulfitri 1446 H
    date(2025, 4, 2),  # cuti bersama Idulfitri
    date(2025, 4, 3),  # cuti bersama Idulfitri
    date(2025, 4, 4),  # cuti bersama Idulfitri
    date(2025, 4, 7),  # cuti bersama Idulfitri
    date(2025, 4, 18),  # Wafat Yesus Kristus
    date(2025, 4, 20),  # Paskah
    date(2025, 5, 1),  # Hari Buruh Internasional
    date(2025, 5, 12),  # Waisak 2569 BE
    date(2025, 5, 13),  # cuti bersama Waisak
    date(2025, 5, 29),  # Kenaikan Yesus Kristus
    date(2025, 5, 30),  # cuti bersama Kenaikan Yesus Kristus
    date(2025, 6, 1),  # Hari Lahir Pancasila
    date(2025, 6, 6),  # Iduladha 1446 H
    date(2025, 6, 9),  # cuti bersama Iduladha
    date(2025, 6, 27),  # Tahun Baru Islam 1447 H
    date(2025, 8, 17),  # Proklamasi Kemerdekaan
    date(2025, 8, 18),  # cuti bersama HUT RI ke-80
    date(2025, 9, 5),  # Maulid Nabi Muhammad SAW
    date(2025, 12, 25),  # Kelahiran Yesus Kristus
    date(2025, 12, 26),  # cuti bersama Natal
    # 2026
    date(2026, 1, 1),  # Tahun Baru Masehi
    date(2026, 1, 16),  # Isra Mikraj
    date(2026, 2, 16),  # cuti bersama Imlek
    date(2026, 2, 17),  # Tahun Baru Imlek 2577
    date(2026, 3, 18),  # cuti bersama Nyepi
    date(2026, 3, 19),  # Nyepi (Tahun Baru Saka 1948)
    date(2026, 3, 20),  # cuti bersama Idulfitri
    date(2026, 3, 21),  # Idulfitri 1447 H
    date(2026, 3, 22),  # Idulfitri 1447 H
    date(2026, 3, 23),  # cuti bersama Idulfitri
    date(2026, 3, 24),  # cuti bersama Idulfitri
    date(2026, 4, 3),  # Wafat Yesus Kristus
    date(2026, 4, 5),  # Paskah
    date(2026, 5, 1),  # Hari Buruh Internasional
    date(2026, 5, 14),  # Kenaikan Yesus Kristus
    date(2026, 5, 15),  # cuti bersama Kenaikan Yesus Kristus
    date(2026, 5, 27),  # Iduladha 1447 H
    date(2026, 5, 28),  # cuti bersama Iduladha
    date(2026, 5, 31),  # Waisak 2570 BE
    date(2026, 6, 1),  # Hari Lahir Pancasila
    date(2026, 6, 16),  # Tahun Baru Islam 1448 H
    date(2026, 8, 17),  # Proklamasi Kemerdekaan
    date(2026, 8, 25),  # Maulid Nabi Muhammad SAW
    date(2026, 12, 24),  # cuti bersama Natal
    date(2026, 12, 25),  # Kelahiran Yesus Kristus
)


def parse_range(text: str) -> tuple[int, int]:
    """``"08:00-16:30"`` as seconds after local midnight. ``24:00`` may end a range, so a day
    can be open to its very end; a range never crosses midnight (give each day its own)."""
    m = _RANGE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r}: expected HH:MM-HH:MM, e.g. 08:00-16:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{text!r}: times run from 00:00 to 24:00")
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start >= end:
        raise ValueError(
            f"{text!r}: the range must end after it starts "
            "(a range cannot cross midnight: split it between two days)"
        )
    return start, end


def _default_weekly() -> dict[str, list[str]]:
    return {
        "mon": ["08:00-16:00"],
        "tue": ["08:00-16:00"],
        "wed": ["08:00-16:00"],
        "thu": ["08:00-16:00"],
        "fri": ["08:00-16:30"],
    }


class BusinessHours(_Section):
    """When the ministry's officers are at work: the only time a business-hours clock runs."""

    timezone: str = Field(default="Asia/Jakarta", description="IANA zone the ranges are read in")
    weekly: dict[str, list[str]] = Field(
        default_factory=_default_weekly,
        description='Open ranges per day, "mon".."sun", as "HH:MM-HH:MM"; a missing or empty '
        "day is closed. Default: the PTSP service hours, Mon-Thu 08:00-16:00, Fri 08:00-16:30",
    )
    holidays: list[date] = Field(
        default_factory=lambda: list(DEFAULT_HOLIDAYS),
        description="Public holidays and cuti bersama (ISO dates): closed all day",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name such as Asia/Jakarta"
            ) from None
        return v

    @field_validator("weekly")
    @classmethod
    def _well_formed(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - set(DAYS))
        if unknown:
            raise ValueError(f"unknown day(s) {unknown}; use {', '.join(DAYS)}")
        for day, ranges in v.items():
            parsed: list[tuple[int, int, str]] = []
            for text in ranges:
                try:
                    parsed.append((*parse_range(text), text))
                except ValueError as exc:
                    raise ValueError(f"{day}: {exc}") from None
            parsed.sort()
            for (_, end1, text1), (start2, _, text2) in itertools.pairwise(parsed):
                if start2 < end1:
                    raise ValueError(f"{day}: {text1} and {text2} overlap")
        if not any(v.values()):
            raise ValueError("no day has opening hours: a business-hours clock would never run")
        return v


class SlaPolicy(_Section):
    """Targets for the tickets it matches; "*" matches anything, and the policy naming the
    most fields wins (see SlaEngine.policy_for)."""

    unit: str = Field(default=WILDCARD, min_length=1, description='a unit kerja, or "*"')
    channel: str = Field(
        default=WILDCARD, min_length=1, description='whatsapp, email, call, ... or "*"'
    )
    priority: SlaPriority = WILDCARD
    first_response_minutes: float = Field(
        gt=0, description="until an officer's first reply (the automatic ack does not count)"
    )
    resolution_hours: float = Field(gt=0, description="from creation until resolved")
    business_hours: bool = Field(
        default=True, description="count business hours only; false: the clock runs 24/7"
    )
    name: str = ""

    @model_validator(mode="after")
    def _response_before_resolution(self) -> SlaPolicy:
        if self.first_response_minutes > self.resolution_hours * 60:
            raise ValueError(
                "first_response_minutes exceeds resolution_hours: resolving a ticket "
                "ends its first-response timer, so that target could never be the binding one"
            )
        return self

    @property
    def specificity(self) -> int:
        return sum(v != WILDCARD for v in (self.unit, self.channel, self.priority))

    @property
    def label(self) -> str:
        """The name, or the match itself, so that reports never show a blank policy."""
        return self.name or f"unit={self.unit} channel={self.channel} priority={self.priority}"

    def matches(self, unit: str, channel: str, priority: str) -> bool:
        return all(
            want in (WILDCARD, have)
            for want, have in (
                (self.unit, unit),
                (self.channel, channel),
                (self.priority, priority),
            )
        )


def _default_policies() -> list[SlaPolicy]:
    # Business hours are 40.5 a week (8 a day, 8.5 on Friday): "a business day" below is
    # 8 of them. Urgent tickets (a worker's safety, an unpaid wage before Lebaran, ...) are
    # promised within the hour whatever the clock says; the others follow the office.
    return [
        SlaPolicy(
            priority="urgent",
            first_response_minutes=60,
            resolution_hours=24,
            business_hours=False,
            name="urgent",
        ),
        # The same morning or afternoon; three business days to settle.
        SlaPolicy(priority="high", first_response_minutes=240, resolution_hours=24, name="high"),
        # Within a business day; settled within a working week.
        SlaPolicy(
            priority="normal", first_response_minutes=480, resolution_hours=40, name="normal"
        ),
        # Two business days; ten to settle, the term UU 14/2008 (KIP) gives a public body to
        # answer an information request.
        SlaPolicy(priority="low", first_response_minutes=960, resolution_hours=80, name="low"),
        # Anything else (a priority the hub does not know): treated as normal.
        SlaPolicy(first_response_minutes=480, resolution_hours=40, name="default"),
    ]


class SlaSection(_Section):
    """[sla]: the business hours every business-hours policy shares, and the policies."""

    enabled: bool = Field(default=True, description="false: the hub computes and shows no SLA")
    at_risk_fraction: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="a timer is at risk once this share of its target elapsed",
    )
    hours: BusinessHours = Field(default_factory=lambda: BusinessHours())
    policies: list[SlaPolicy] = Field(default_factory=_default_policies)

    @model_validator(mode="after")
    def _every_ticket_has_a_policy(self) -> SlaSection:
        if not any(p.specificity == 0 for p in self.policies):
            raise ValueError(
                'policies: no catch-all policy (unit, channel and priority all "*"); '
                "without one a ticket could match no policy and have no SLA"
            )
        seen: dict[tuple[str, str, str], int] = {}
        for i, p in enumerate(self.policies):
            key = (p.unit, p.channel, p.priority)
            if key in seen:
                raise ValueError(
                    f"policies[{i}] matches the same unit, channel and priority as "
                    f"policies[{seen[key]}], which always wins: it would never apply"
                )
            seen[key] = i
        return self


def years_without_holidays(hours: BusinessHours, now: float) -> list[int]:
    """This year, and from October the next, when no holiday of theirs is configured: the
    SKB for a year is published in the autumn before it, and a business-hours clock without
    it counts Idulfitri as working days."""
    today = datetime.fromtimestamp(now, ZoneInfo(hours.timezone)).date()
    years = [today.year] + ([today.year + 1] if today.month >= 10 else [])
    listed = {d.year for d in hours.holidays}
    return [y for y in years if y not in listed]


class SlaClock(Protocol):
    """What a timer needs from a clock; business hours and 24/7 answer alike."""

    def add(self, start: float, seconds: float) -> float: ...
    def elapsed(self, start: float, end: float) -> float: ...
    def is_open(self, t: float) -> bool: ...
    def next_open(self, t: float) -> float: ...


def _check(start: float, seconds: float) -> None:
    if not (math.isfinite(start) and math.isfinite(seconds)) or seconds < 0:
        raise ValueError(f"need a finite start and seconds >= 0, got {start!r}, {seconds!r}")


class AlwaysOpen:
    """The clock of 24/7 policies: wall time, no hours, no holidays."""

    def add(self, start: float, seconds: float) -> float:
        _check(start, seconds)
        return start + seconds

    def elapsed(self, start: float, end: float) -> float:
        return max(0.0, end - start)

    def is_open(self, t: float) -> bool:
        return True

    def next_open(self, t: float) -> float:
        return t


class BusinessCalendar:
    """Business time as a sequence of open intervals, walked day by day.

    Each day's ranges are read as local wall-clock times and turned into instants through
    the zone, so a daylight-saving change (Indonesia has none, but the code does not assume
    it) shortens or lengthens exactly the interval it falls in. Long spans skip whole weeks
    at once when a week holds no holiday and every one of its days is 24 hours long (its
    business time is then the weekly sum), so a year costs ~52 steps, not one per minute.
    """

    def __init__(self, hours: BusinessHours) -> None:
        self.tz = ZoneInfo(hours.timezone)
        days: list[tuple[tuple[int, int], ...]] = []
        for day in DAYS:
            merged: list[tuple[int, int]] = []
            for start, end in sorted(parse_range(r) for r in hours.weekly.get(day, [])):
                if merged and start <= merged[-1][1]:  # touching ranges: one interval
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
            days.append(tuple(merged))
        self._days = tuple(days)
        self._week_s = float(sum(end - start for day in days for start, end in day))
        if self._week_s <= 0:
            raise ValueError("business hours with no open range: the clock would never run")
        self._holidays = sorted(set(hours.holidays))
        self._holiday_set = frozenset(self._holidays)

    def _at(self, d: date, seconds: int) -> float:
        # Aware datetime + timedelta is wall-clock arithmetic; timestamp() then applies the
        # offset in force at that wall time.
        return (datetime.combine(d, time(), self.tz) + timedelta(seconds=seconds)).timestamp()

    def _local_date(self, t: float) -> date:
        return datetime.fromtimestamp(t, self.tz).date()

    def _open_on(self, d: date) -> list[tuple[float, float]]:
        if d in self._holiday_set:
            return []
        return [(self._at(d, s), self._at(d, e)) for s, e in self._days[d.weekday()]]

    def _plain_week(self, d: date) -> bool:
        """Whether the 7 days from d hold exactly the weekly business time: no holiday, and
        no offset change (checked at every midnight, so a change undone within the week
        is caught too)."""
        i = bisect.bisect_left(self._holidays, d)
        if i < len(self._holidays) and self._holidays[i] < d + _WEEK:
            return False
        t0 = self._at(d, 0)
        return all(self._at(d + k * _DAY, 0) - t0 == k * 86_400 for k in range(1, 8))

    def is_open(self, t: float) -> bool:
        return any(a <= t < b for a, b in self._open_on(self._local_date(t)))

    def next_open(self, t: float) -> float:
        """t itself when open, else the next opening (ranges are half-open: at 16:00 a
        08:00-16:00 day is closed)."""
        return self.add(t, 0.0)

    def add(self, start: float, seconds: float) -> float:
        """When ``seconds`` of business time have passed since ``start``. A clock started
        while closed starts at the next opening; a target that runs out exactly at closing
        time is due at closing, not at the next opening."""
        _check(start, seconds)
        remaining = float(seconds)
        d = self._local_date(start)
        first = True
        while True:
            if not first:  # d starts at local midnight, after start: whole weeks may go
                while remaining > self._week_s and self._plain_week(d):
                    remaining -= self._week_s
                    d += _WEEK
            for a, b in self._open_on(d):
                if b <= start:
                    continue
                a = max(a, start)
                if remaining <= b - a:
                    return a + remaining
                remaining -= b - a
            first = False
            d += _DAY

    def elapsed(self, start: float, end: float) -> float:
        """Business seconds in [start, end]; 0 when end is not after start."""
        if not end > start:
            return 0.0
        total = 0.0
        d = self._local_date(start)
        first = True
        while True:
            if not first:
                while self._at(d + _WEEK, 0) <= end and self._plain_week(d):
                    total += self._week_s
                    d += _WEEK
            for a, b in self._open_on(d):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            first = False
            d += _DAY
            if self._at(d, 0) >= end:
                return total


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What the timers depend on, and nothing else.

    ``resolved_at`` is when the ticket last left "open": its latest resolution, or the moment
    it was closed directly (spam, a merge). A reopened ticket is "open" again; its resolution
    clock runs from ``created_at`` once more (time spent resolved included: the citizen was
    not helped after all) and stops at the next, latest resolution. ``first_response_at`` is
    the first officer reply ever; reopening does not restart it.
    """

    unit: str
    channel: str
    priority: str
    created_at: float
    first_response_at: float | None = None
    resolved_at: float | None = None
    status: str = "open"  # open, resolved or closed: checked, as rows from Redis are str

    def __post_init__(self) -> None:
        if self.status not in TICKET_STATUSES:
            raise ValueError(f"status must be open, resolved or closed, not {self.status!r}")
        if self.status != "open" and self.resolved_at is None:
            raise ValueError(
                f"a {self.status} ticket needs resolved_at: when it stopped being open"
            )


@dataclass(frozen=True, slots=True)
class SlaTimers:
    """How a ticket stands against its policy at one instant.

    States: pending, at_risk (``at_risk_fraction`` of the target elapsed), breached (still
    running and past due), met (done by the due instant, inclusive), missed (done, late).
    Elapsed and target seconds are counted by the policy's clock (business seconds for a
    business-hours policy), so elapsed / target is the share of the promise used.
    """

    policy: str
    business_hours: bool
    first_response_due: float
    resolution_due: float
    first_response_state: TimerState
    resolution_state: TimerState
    first_response_elapsed_s: float
    resolution_elapsed_s: float
    first_response_target_s: float
    resolution_target_s: float

    @property
    def at_risk(self) -> bool:
        """A running timer close to its due instant (not yet past it)."""
        return "at_risk" in (self.first_response_state, self.resolution_state)

    @property
    def breached(self) -> bool:
        """A running timer past due: something to act on now. A missed (finished, late)
        timer is history for reports, not an alarm, so it does not count."""
        return "breached" in (self.first_response_state, self.resolution_state)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["at_risk"] = self.at_risk
        out["breached"] = self.breached
        return out


class SlaEngine:
    """Picks a ticket's policy and reads its timers. ``section.enabled`` is for the caller
    to honour (whether to show or alert); the engine computes regardless."""

    def __init__(self, section: SlaSection) -> None:
        self.section = section
        self.calendar = BusinessCalendar(section.hours)
        self.always = AlwaysOpen()
        # Most specific first; sorted() is stable, so equal specificity keeps config order.
        self._ranked = sorted(section.policies, key=lambda p: -p.specificity)

    def policy_for(self, unit: str, channel: str, priority: str) -> SlaPolicy:
        """The matching policy naming the most of unit, channel and priority; ties go to
        the one listed first. The required catch-all guarantees an answer."""
        for p in self._ranked:
            if p.matches(unit, channel, priority):
                return p
        raise LookupError("no catch-all SLA policy")  # SlaSection's validation prevents it

    def clock_for(self, policy: SlaPolicy) -> SlaClock:
        return self.calendar if policy.business_hours else self.always

    def timers(self, t: TicketFacts, now: float) -> SlaTimers:
        policy = self.policy_for(t.unit, t.channel, t.priority)
        clock = self.clock_for(policy)
        resolved = t.resolved_at if t.status != "open" else None
        # A ticket resolved (or closed) without a reply needed none: its first-response
        # timer stops there too, and stays stopped if the ticket is reopened (what the
        # citizen is owed then is a resolution, which the resolution timer tracks).
        responded = t.first_response_at if t.first_response_at is not None else t.resolved_at
        fr_target = policy.first_response_minutes * 60
        res_target = policy.resolution_hours * 3600
        fr_due, fr_state, fr_elapsed = self._timer(clock, t.created_at, fr_target, responded, now)
        res_due, res_state, res_elapsed = self._timer(
            clock, t.created_at, res_target, resolved, now
        )
        return SlaTimers(
            policy=policy.label,
            business_hours=policy.business_hours,
            first_response_due=fr_due,
            resolution_due=res_due,
            first_response_state=fr_state,
            resolution_state=res_state,
            first_response_elapsed_s=fr_elapsed,
            resolution_elapsed_s=res_elapsed,
            first_response_target_s=fr_target,
            resolution_target_s=res_target,
        )

    def _timer(
        self, clock: SlaClock, start: float, target_s: float, done_at: float | None, now: float
    ) -> tuple[float, TimerState, float]:
        due = clock.add(start, target_s)
        if done_at is not None:
            return due, ("met" if done_at <= due else "missed"), clock.elapsed(start, done_at)
        elapsed = clock.elapsed(start, now)
        if now > due:
            return due, "breached", elapsed
        if elapsed >= self.section.at_risk_fraction * target_s - _EPSILON_S:
            return due, "at_risk", elapsed
        return due, "pending", elapsed
