"""Supervisors' alerts: threshold rules from the configuration, evaluated against a snapshot of
the hub's load, shown on the dashboard and sent to a Telegram group.

The engine is pure: it reads a ``LoadSnapshot`` (built from Redis by the caller) and the
previous ``AlertState`` per alert, and returns the new states plus the transitions to announce.
It never reads the wall clock (``snapshot.at`` is "now") and never does I/O, so every scenario
is testable with explicit timestamps and the state can live in Redis between evaluations (and
across restarts and hub instances).

No alert storm: an alert fires once when its condition has held for ``for_minutes``, stays
quiet while it keeps holding, and clears once when the condition has been false for
``clear_for_minutes``. A rule with wildcards is one alert per matching subject (per unit, per
channel account, per source), keyed ``f"{rule.name}:{subject}"``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from hub.config_base import BotToken, _Section
from hub.text import isolate

JAKARTA = ZoneInfo("Asia/Jakarta")

AlertKind = Literal[
    "backlog_above",
    "oldest_waiting_above",
    "channel_silent",
    "dead_letters",
    "source_unreachable",
    "sla_breached_above",
]
Severity = Literal["info", "warning", "critical"]
TransitionKind = Literal["fired", "cleared"]

UNIT_KINDS = frozenset({"backlog_above", "oldest_waiting_above", "sla_breached_above"})
# channel/account filter channels for channel_silent; for source_unreachable they filter the
# source's kind and name (a source has no channel, and two more fields would be one too many).
FILTERED_BY_CHANNEL = frozenset({"channel_silent", "source_unreachable"})
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}

_HHMM = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_ACTIVE_HOURS = re.compile(rf"^({_HHMM})-({_HHMM})$")


# -- settings ---------------------------------------------------------------------------------


class AlertRule(_Section):
    """One threshold rule. Wildcard filters make it one alert per matching subject."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")] = Field(
        description="Unique; the alert's key is '<name>:<subject>'"
    )
    kind: AlertKind
    threshold: float = Field(
        default=0,
        ge=0,
        description="Tickets for backlog_above and sla_breached_above, minutes for "
        "oldest_waiting_above, channel_silent and source_unreachable, a count for "
        "dead_letters; the condition is 'measured value > threshold'",
    )
    unit: str = Field(
        default="*",
        min_length=1,
        description="Unit name or glob (backlog_above, oldest_waiting_above, "
        "sla_breached_above only)",
    )
    channel: str = Field(
        default="*",
        min_length=1,
        description="Channel name or glob (channel_silent); the source's kind, e.g. 'imap' "
        "(source_unreachable)",
    )
    account: str = Field(
        default="*",
        min_length=1,
        description="Account name or glob (channel_silent); the source's name (source_unreachable)",
    )
    for_minutes: float = Field(
        default=0, ge=0, description="The condition must hold this long before firing (debounce)"
    )
    clear_for_minutes: float = Field(
        default=0,
        ge=0,
        description="The condition must be false this long before clearing (hysteresis)",
    )
    active_hours: str = Field(
        default="",
        description="'HH:MM-HH:MM' in Asia/Jakarta, may cross midnight ('20:00-06:00'); "
        "outside it the rule never fires and a firing alert clears at once. Empty: always",
    )
    severity: Severity = "warning"

    @field_validator("active_hours")
    @classmethod
    def _hours_shape(cls, v: str) -> str:
        if not v:
            return v
        m = _ACTIVE_HOURS.fullmatch(v.strip())
        if m is None:
            raise ValueError("active_hours must be 'HH:MM-HH:MM' (00:00-23:59), or empty")
        if m.group(1) == m.group(2):
            raise ValueError("active_hours: start equals end; leave it empty for always")
        return v.strip()

    @model_validator(mode="after")
    def _filters_apply(self) -> AlertRule:
        # A filter the kind ignores would be ignored silently (the rule wider than it reads).
        if self.unit != "*" and self.kind not in UNIT_KINDS:
            raise ValueError(f"unit does not apply to {self.kind} rules")
        if self.kind not in FILTERED_BY_CHANNEL:
            for key in ("channel", "account"):
                if getattr(self, key) != "*":
                    raise ValueError(f"{key} does not apply to {self.kind} rules")
        return self

    def active_window(self) -> tuple[int, int] | None:
        """(start, end) in minutes of the day, or None when the rule is always active."""
        if not self.active_hours:
            return None
        start, end = self.active_hours.split("-")
        return _minutes(start), _minutes(end)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class TelegramAlerts(_Section):
    """The supervisors' Telegram group that receives FIRING/RESOLVED messages."""

    # A malformed token would otherwise be echoed in the validation error.
    model_config = ConfigDict(hide_input_in_errors=True)

    enabled: bool = False
    bot_token: BotToken = Field(description="From @BotFather, e.g. 123456:ABC-...")
    chat_id: str = Field(
        description="The group's numeric id, e.g. -1001234567890 (add the bot to the group)"
    )
    api_base_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://")
    language: Literal["id", "en"] = "id"

    @field_validator("chat_id")
    @classmethod
    def _chat_shape(cls, v: str) -> str:
        if not re.fullmatch(r"-?[0-9]{1,20}", v):
            raise ValueError("chat_id must be a numeric Telegram chat id, e.g. -1001234567890")
        return v


def default_rules() -> list[AlertRule]:
    """What a hub watches when the configuration names no rules."""
    return [
        AlertRule(
            name="backlog",
            kind="backlog_above",
            threshold=50,
            for_minutes=5,
            clear_for_minutes=5,
        ),
        AlertRule(
            name="oldest-waiting",
            kind="oldest_waiting_above",
            threshold=30,
            clear_for_minutes=5,
        ),
        AlertRule(name="dead-letters", kind="dead_letters", threshold=0, severity="critical"),
        AlertRule(
            name="source-unreachable",
            kind="source_unreachable",
            threshold=5,
            severity="critical",
        ),
        AlertRule(
            name="whatsapp-silent",
            kind="channel_silent",
            channel="whatsapp",
            threshold=60,
            active_hours="08:00-20:00",
        ),
    ]


class AlertsSection(_Section):
    rules: list[AlertRule] = Field(
        default_factory=default_rules,
        description="Configured rules replace the defaults entirely; [] turns alerts off",
    )
    telegram: TelegramAlerts | None = None
    evaluate_every_s: float = Field(default=15.0, gt=0)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, v: list[AlertRule]) -> list[AlertRule]:
        seen: set[str] = set()
        for rule in v:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice; names must be unique")
            seen.add(rule.name)
        return v


# -- the snapshot the engine reads ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelLoad:
    channel: str
    account: str
    inbound_last_15m: int
    last_inbound_at: float | None  # None: nothing received that the hub remembers


@dataclass(frozen=True, slots=True)
class UnitLoad:
    unit: str
    waiting: int
    open: int
    oldest_waiting_s: float
    sla_breached: int
    sla_at_risk: int


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """Something the hub pulls from or depends on: an IMAP mailbox, a provider API."""

    name: str
    kind: str
    healthy: bool
    since: float  # when it entered its current health
    detail: str


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    at: float  # "now" for the engine: it never reads a clock of its own
    channels: list[ChannelLoad] = field(default_factory=list)
    units: list[UnitLoad] = field(default_factory=list)
    dead_letters: int = 0
    sources: list[SourceHealth] = field(default_factory=list)


# -- state and transitions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert's memory between evaluations (persisted as JSON by the caller).

    ``pending_since``: since when the condition has held without a break (None while false);
    ``clearing_since``: since when a firing alert's condition has been false;
    ``first_seen``: when the engine first saw the subject (a channel with no inbound at all is
    silent since then); ``detail``: context for messages (a source's kind and error).
    """

    subject: str
    firing: bool = False
    pending_since: float | None = None
    clearing_since: float | None = None
    fired_at: float | None = None
    value: float = 0.0
    first_seen: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "firing": self.firing,
            "pending_since": self.pending_since,
            "clearing_since": self.clearing_since,
            "fired_at": self.fired_at,
            "value": self.value,
            "first_seen": self.first_seen,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertState:
        """Unknown keys are ignored (a newer hub may add some); wrong types raise ValueError."""

        def opt(key: str) -> float | None:
            v = data.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"alert state: {key} must be a number or null")
            return float(v)

        subject = data.get("subject")
        if not isinstance(subject, str):
            raise ValueError("alert state: subject must be a string")
        firing = data.get("firing", False)
        if not isinstance(firing, bool):
            raise ValueError("alert state: firing must be a boolean")
        detail = data.get("detail", "")
        if not isinstance(detail, str):
            raise ValueError("alert state: detail must be a string")
        return cls(
            subject=subject,
            firing=firing,
            pending_since=opt("pending_since"),
            clearing_since=opt("clearing_since"),
            fired_at=opt("fired_at"),
            value=opt("value") or 0.0,
            first_seen=opt("first_seen"),
            detail=detail,
        )


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """Something to announce: an alert started (``fired``) or stopped (``cleared``)."""

    key: str
    rule: str
    subject: str
    kind: TransitionKind
    at: float
    value: float
    message_id: str
    message_en: str
    severity: Severity

    def message(self, language: Literal["id", "en"]) -> str:
        return self.message_id if language == "id" else self.message_en


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """A firing alert as the dashboard shows it."""

    key: str
    rule: str
    kind: AlertKind
    subject: str
    severity: Severity
    fired_at: float
    value: float
    threshold: float
    clearing: bool  # the condition is false, but not yet for clear_for_minutes
    message_id: str
    message_en: str


# -- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Measure:
    holds: bool
    value: float
    detail: str = ""
    first_seen: float | None = None


def _match(pattern: str, value: str) -> bool:
    return pattern == "*" or fnmatch.fnmatchcase(value, pattern)


def _num(v: float) -> str:
    """50.0 -> "50", 30.44 -> "30.4": thresholds and minutes read like people write them."""
    if math.isfinite(v) and abs(v - round(v)) < 0.05:
        return str(round(v))
    return f"{v:.1f}"


def _plural(v: float, word: str) -> str:
    """English only: Indonesian nouns do not change with the count."""
    return f"{_num(v)} {word}" if _num(v) == "1" else f"{_num(v)} {word}s"


def _local_minutes(at: float) -> tuple[datetime, int]:
    local = datetime.fromtimestamp(at, JAKARTA)
    return local, local.hour * 60 + local.minute


def in_active_hours(rule: AlertRule, at: float) -> bool:
    window = rule.active_window()
    if window is None:
        return True
    start, end = window
    _, m = _local_minutes(at)
    if start < end:
        return start <= m < end
    return m >= start or m < end  # crosses midnight


def _window_start(rule: AlertRule, at: float) -> float | None:
    """When the current active window opened (None: always active)."""
    window = rule.active_window()
    if window is None:
        return None
    start, _ = window
    local, m = _local_minutes(at)
    opened = local.replace(hour=start // 60, minute=start % 60, second=0, microsecond=0)
    if m < start:  # a window that crossed midnight opened yesterday
        opened -= timedelta(days=1)
    return opened.timestamp()


class AlertEngine:
    """Evaluates the configured rules; pure, so the caller owns the clock and the storage."""

    def __init__(self, section: AlertsSection) -> None:
        self.section = section
        self._rules = {r.name: r for r in section.rules}

    @property
    def rules(self) -> list[AlertRule]:
        return list(self.section.rules)

    # -- measuring ---------------------------------------------------------------------

    def _measure(
        self, rule: AlertRule, snap: LoadSnapshot, state: dict[str, AlertState]
    ) -> dict[str, _Measure]:
        at = snap.at
        t = rule.threshold
        out: dict[str, _Measure] = {}
        if rule.kind in UNIT_KINDS:
            for u in snap.units:
                if not _match(rule.unit, u.unit):
                    continue
                if rule.kind == "backlog_above":
                    value = float(u.waiting)
                elif rule.kind == "sla_breached_above":
                    value = float(u.sla_breached)
                else:  # oldest_waiting_above, in minutes; nothing waiting is nothing old
                    value = u.oldest_waiting_s / 60 if u.waiting > 0 else 0.0
                out[f"unit {u.unit}"] = _Measure(value > t, value)
        elif rule.kind == "dead_letters":
            value = float(snap.dead_letters)
            out["hub"] = _Measure(value > t, value)
        elif rule.kind == "source_unreachable":
            for s in snap.sources:
                if not (_match(rule.channel, s.kind) and _match(rule.account, s.name)):
                    continue
                down_min = max(0.0, at - s.since) / 60 if not s.healthy else 0.0
                detail = f"{s.kind}: {s.detail}" if s.detail else s.kind
                out[f"source {s.name}"] = _Measure(
                    not s.healthy and down_min > t, down_min, detail=detail
                )
        else:  # channel_silent
            opened = _window_start(rule, at)
            for c in snap.channels:
                if not (_match(rule.channel, c.channel) and _match(rule.account, c.account)):
                    continue
                subject = f"{c.channel}/{c.account}"
                prev = state.get(f"{rule.name}:{subject}")
                first_seen = prev.first_seen if prev and prev.first_seen is not None else at
                if c.inbound_last_15m > 0:
                    quiet_from = at  # the counter is fresher than a missing timestamp
                elif c.last_inbound_at is not None:
                    quiet_from = c.last_inbound_at
                else:
                    quiet_from = first_seen
                # Silence before the window opened is the night's normal silence: count from
                # the opening, or every morning would start with an alert.
                if opened is not None:
                    quiet_from = max(quiet_from, opened)
                silent_min = max(0.0, at - quiet_from) / 60
                out[subject] = _Measure(silent_min > t, silent_min, first_seen=first_seen)
        return out

    # -- evaluating --------------------------------------------------------------------

    def evaluate(
        self, snapshot: LoadSnapshot, state: dict[str, AlertState]
    ) -> tuple[dict[str, AlertState], list[AlertTransition]]:
        """The new state for every alert and the transitions to announce, in rule order.

        ``state`` is not modified. Subjects that vanish from the snapshot count as "condition
        false" (a firing alert clears through its hysteresis, then is forgotten); alerts of
        rules removed from the configuration clear at once.
        """
        at = snapshot.at
        new: dict[str, AlertState] = {}
        transitions: list[AlertTransition] = []
        for rule in self.section.rules:
            measured = self._measure(rule, snapshot, state)
            active = in_active_hours(rule, at)
            prefix = f"{rule.name}:"
            known = {k.removeprefix(prefix) for k in state if k.startswith(prefix)}
            for subject in sorted(known | set(measured)):
                key = prefix + subject
                prev = state.get(key) or AlertState(subject=subject)
                m = measured.get(subject)
                st, tr = self._step(rule, key, prev, m, active, at)
                if tr is not None:
                    transitions.append(tr)
                if m is not None or st.firing or st.pending_since is not None:
                    new[key] = st
        for key, prev in sorted(state.items()):
            name = key.split(":", 1)[0]
            if name in self._rules or not prev.firing:
                continue  # a removed rule's quiet alerts are simply forgotten
            transitions.append(
                AlertTransition(
                    key=key,
                    rule=name,
                    subject=prev.subject,
                    kind="cleared",
                    at=at,
                    value=prev.value,
                    message_id=f"Aturan {isolate(name)} dihapus dari konfigurasi: "
                    f"{isolate(prev.subject)}",
                    message_en=f"Rule {isolate(name)} removed from the configuration: "
                    f"{isolate(prev.subject)}",
                    severity="info",
                )
            )
        return new, transitions

    def _step(
        self,
        rule: AlertRule,
        key: str,
        prev: AlertState,
        m: _Measure | None,
        active: bool,
        at: float,
    ) -> tuple[AlertState, AlertTransition | None]:
        value = m.value if m is not None else prev.value
        st = replace(
            prev,
            value=value,
            detail=m.detail if m is not None and m.detail else prev.detail,
            first_seen=m.first_seen if m is not None else prev.first_seen,
        )
        holds = m is not None and m.holds and active
        if holds:
            pending = st.pending_since if st.pending_since is not None else at
            st = replace(st, clearing_since=None, pending_since=pending)
            if not st.firing and at - pending >= rule.for_minutes * 60:
                st = replace(st, firing=True, fired_at=at)
                return st, self._transition(rule, key, st, "fired", at, gone=False, active=True)
            return st, None
        st = replace(st, pending_since=None)  # a flap restarts the debounce
        if not st.firing:
            return replace(st, clearing_since=None), None
        clearing = st.clearing_since if st.clearing_since is not None else at
        st = replace(st, clearing_since=clearing)
        # Leaving active hours is a clean edge, not noise: no hysteresis.
        if not active or at - clearing >= rule.clear_for_minutes * 60:
            st = replace(st, firing=False, fired_at=None, clearing_since=None)
            return st, self._transition(rule, key, st, "cleared", at, m is None, active)
        return st, None

    def _transition(
        self,
        rule: AlertRule,
        key: str,
        st: AlertState,
        kind: TransitionKind,
        at: float,
        gone: bool,
        active: bool,
    ) -> AlertTransition:
        if kind == "fired":
            msg_id, msg_en = describe(rule, st.subject, st.value, st.detail)
        else:
            label_id, label_en = _label(rule.kind, st.subject)
            if gone:
                msg_id = f"{label_id}: tidak lagi dilaporkan oleh hub"
                msg_en = f"{label_en}: no longer reported by the hub"
            elif not active:
                hours = isolate(rule.active_hours)
                msg_id = f"{label_id}: di luar jam aktif {hours}"
                msg_en = f"{label_en}: outside active hours {hours}"
            else:
                msg_id, msg_en = describe(rule, st.subject, st.value, st.detail, resolved=True)
        return AlertTransition(
            key=key,
            rule=rule.name,
            subject=st.subject,
            kind=kind,
            at=at,
            value=st.value,
            message_id=msg_id,
            message_en=msg_en,
            severity=rule.severity,
        )

    # -- the dashboard -----------------------------------------------------------------

    def active_alerts(self, state: dict[str, AlertState]) -> list[ActiveAlert]:
        """Firing alerts, most severe first, then oldest first."""
        out: list[ActiveAlert] = []
        for key, st in state.items():
            rule = self._rules.get(key.split(":", 1)[0])
            if rule is None or not st.firing:
                continue
            msg_id, msg_en = describe(rule, st.subject, st.value, st.detail)
            out.append(
                ActiveAlert(
                    key=key,
                    rule=rule.name,
                    kind=rule.kind,
                    subject=st.subject,
                    severity=rule.severity,
                    fired_at=st.fired_at if st.fired_at is not None else 0.0,
                    value=st.value,
                    threshold=rule.threshold,
                    clearing=st.clearing_since is not None,
                    message_id=msg_id,
                    message_en=msg_en,
                )
            )
        out.sort(key=lambda a: (SEVERITY_ORDER[a.severity], a.fired_at, a.key))
        return out


def _label(kind: AlertKind, subject: str) -> tuple[str, str]:
    """What the alert is about, as a sentence's subject: (Bahasa Indonesia, English); the
    name in it isolated (``isolate``)."""
    if kind in UNIT_KINDS:
        name = isolate(subject.removeprefix("unit "))
        return f"Unit {name}", f"Unit {name}"
    if kind == "source_unreachable":
        name = isolate(subject.removeprefix("source "))
        return f"Sumber {name}", f"Source {name}"
    if kind == "channel_silent":
        return f"Kanal {isolate(subject)}", f"Channel {isolate(subject)}"
    return "Dead letter", "Dead letters"


def describe(
    rule: AlertRule, subject: str, value: float, detail: str = "", resolved: bool = False
) -> tuple[str, str]:
    """The alert in words, (Bahasa Indonesia, English), for the dashboard and Telegram.

    ``resolved``: the words for a cleared alert, where "unreachable for 0 min" would be odd.
    Every outside value (a name, the source's error ``detail``) is isolated (``isolate``):
    a right-to-left override in it cannot reorder the words after it.
    """
    v, t = _num(value), _num(rule.threshold)
    (label_id, label_en) = _label(rule.kind, subject)
    if rule.kind == "backlog_above":
        name = isolate(subject.removeprefix("unit "))
        return (
            f"Antrean unit {name}: {v} tiket menunggu (ambang {t})",
            f"Unit {name} queue: {_plural(value, 'ticket')} waiting (threshold {t})",
        )
    if rule.kind == "oldest_waiting_above":
        return (
            f"{label_id}: tiket terlama sudah menunggu {v} menit (ambang {t} menit)",
            f"{label_en}: the oldest ticket has waited {v} min (threshold {t} min)",
        )
    if rule.kind == "sla_breached_above":
        return (
            f"{label_id}: {v} tiket melewati SLA (ambang {t})",
            f"{label_en}: {_plural(value, 'ticket')} past their SLA (threshold {t})",
        )
    if rule.kind == "dead_letters":
        return (
            f"Dead letter: {v} pesan tidak dapat diproses (ambang {t})",
            f"Dead letters: {_plural(value, 'message')} could not be processed (threshold {t})",
        )
    if rule.kind == "source_unreachable":
        if resolved:
            return f"{label_id} dapat dijangkau kembali", f"{label_en} is reachable again"
        extra = f" ({isolate(detail)})" if detail else ""
        return (
            f"{label_id} tidak dapat dijangkau selama {v} menit{extra}",
            f"{label_en} unreachable for {v} min{extra}",
        )
    if resolved:
        return f"{label_id}: pesan masuk kembali", f"{label_en}: inbound messages again"
    return (
        f"{label_id}: tidak ada pesan masuk selama {v} menit (ambang {t} menit)",
        f"{label_en}: no inbound messages for {v} min (threshold {t} min)",
    )
