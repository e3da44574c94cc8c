"""The reports the Ombudsman (Ombudsman RI) and the ministry ask for: per period, per unit, per
channel and per category, how many tickets came in and how they were handled.

Where the numbers come from: the ticket hashes in the store (``created_at``,
``first_response_at``, ``resolved_at``, ``reopen_count``, ...), the same fields the SLA timers
and the dashboard read. Nothing is counted in memory or scraped from logs, so a report is the
same on every hub process, survives restarts, and can be recomputed a year later.

Which tickets: those *created* in the period (Jakarta days, half-open ``[since, until)``),
a cohort. A ticket merged into another (``merged_into`` set) is left out everywhere: the
citizen's case lives on in the ticket it was merged into, which is counted once.

Definitions, per row (one row per group: overall, unit, channel, category, unit × channel):

- ``created``: tickets of the cohort. ``resolved``: those whose last resolution (or closing,
  for a ticket closed without one) came before the period's end; ``open_at_end`` the rest.
  The hub keeps a ticket's latest transitions, not its whole history, so a ticket reopened
  after the period counts as open at its end.
- ``reopened``: tickets the citizen reopened (``reopen_count`` > 0), whenever it happened;
  ``resolved_once``: tickets resolved at least once (only those can be reopened);
  ``reopen_rate`` = reopened / resolved_once.
- First-response time: wall-clock seconds from creation to the first officer reply (the
  automatic acknowledgement does not count), over tickets that have one. Resolution time:
  creation to the last resolution, over tickets resolved or closed by the report's moment.
  Wall clock, not business hours: what the citizen waited. The SLA columns carry the
  business-hours view.
- Median and p90 are nearest-rank percentiles (see ``percentile``): always a time some
  ticket really had, so an auditor can point at it.
- SLA: each ticket's timers (``hub.sla``) read at the report's moment (``as_of``).
  Compliance = met / (met + missed) over finished timers; ``breached`` counts the timers still
  running past their due time (unanswered, unresolved tickets that are already late).

Times and SLA columns describe how the period's tickets fared as of ``as_of``, so the report
of a past period still fills in while its last tickets are being answered; it says as of when.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.dashboard import facts_of
from hub.percentile import percentile
from hub.ports import TicketStore
from hub.sla import SlaEngine, TimerState

JAKARTA = ZoneInfo("Asia/Jakarta")
GROUPS = ("overall", "unit", "channel", "category", "unit_channel")
MAX_DAYS = 400
CHUNK = 1000  # ticket facts read per store call: bounded memory and round trips
# A spreadsheet runs a cell starting with these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class PeriodError(ValueError):
    """A period that cannot be reported on: the message says why in English (the API), the
    code and values let the console say it in the reader's language."""

    def __init__(self, code: str, message: str, **values: str | int) -> None:
        super().__init__(message)
        self.code = code
        self.values = values


@dataclass(frozen=True, slots=True)
class Period:
    """Whole Jakarta days, ``first`` to ``last`` inclusive."""

    first: date
    last: date

    @property
    def since(self) -> float:
        return _midnight(self.first)

    @property
    def until(self) -> float:
        return _midnight(self.last + timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def label(self) -> str:
        """For file names: ``2026-09-01_2026-09-30``."""
        return f"{self.first.isoformat()}_{self.last.isoformat()}"


def _midnight(d: date) -> float:
    return datetime.combine(d, time(), JAKARTA).timestamp()


def _day(raw: str, name: str) -> date:
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise PeriodError(
            "bad_date", f"{name} must be a date as YYYY-MM-DD, not {raw!r}", name=name, raw=raw
        ) from None


def parse_period(raw_from: str | None, raw_to: str | None, now: float) -> Period:
    """``from``/``to`` as asked, with defaults a supervisor expects: nothing given is the
    current month so far; ``from`` alone runs to today (or is that one day, if in the
    future); ``to`` alone starts on the first of its month."""
    today = datetime.fromtimestamp(now, JAKARTA).date()
    raw_from, raw_to = (raw_from or "").strip(), (raw_to or "").strip()
    if raw_to:
        last = _day(raw_to, "to")
        first = _day(raw_from, "from") if raw_from else last.replace(day=1)
    elif raw_from:
        first = _day(raw_from, "from")
        last = max(first, today)
    else:
        first, last = today.replace(day=1), today
    if last < first:
        raise PeriodError(
            "reversed", f"to ({last}) is before from ({first})", first=str(first), last=str(last)
        )
    period = Period(first, last)
    if period.days > MAX_DAYS:
        raise PeriodError(
            "too_long",
            f"the period spans {period.days} days; at most {MAX_DAYS} at once",
            days=period.days,
            max=MAX_DAYS,
        )
    return period


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One group's numbers. Times in seconds; None where there is nothing to measure."""

    group: str  # overall | unit | channel | category | unit_channel
    key: str  # the unit, channel, category ("" = none set), "unit/channel"; "" for overall
    created: int = 0
    resolved: int = 0
    open_at_end: int = 0
    reopened: int = 0
    resolved_once: int = 0
    first_response_count: int = 0
    first_response_median_s: float | None = None
    first_response_p90_s: float | None = None
    resolution_count: int = 0
    resolution_median_s: float | None = None
    resolution_p90_s: float | None = None
    first_response_met: int = 0
    first_response_missed: int = 0
    first_response_breached: int = 0
    resolution_met: int = 0
    resolution_missed: int = 0
    resolution_breached: int = 0

    @property
    def reopen_rate(self) -> float | None:
        return _share(self.reopened, self.resolved_once)

    @property
    def first_response_compliance(self) -> float | None:
        return _share(self.first_response_met, self.first_response_met + self.first_response_missed)

    @property
    def resolution_compliance(self) -> float | None:
        return _share(self.resolution_met, self.resolution_met + self.resolution_missed)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("reopen_rate", "first_response_compliance", "resolution_compliance"):
            value = getattr(self, name)
            out[name] = None if value is None else round(value, 4)
        return out


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    as_of: float
    rows: list[ReportRow]

    def group(self, name: str) -> list[ReportRow]:
        return [r for r in self.rows if r.group == name]

    def row(self, group: str, key: str = "") -> ReportRow | None:
        return next((r for r in self.rows if (r.group, r.key) == (group, key)), None)

    def as_dict(self, groups: Sequence[str] = GROUPS) -> dict[str, Any]:
        return {
            "from": self.period.first.isoformat(),
            "to": self.period.last.isoformat(),
            "since": self.period.since,
            "until": self.period.until,
            "as_of": self.as_of,
            "timezone": "Asia/Jakarta",
            "percentiles": "nearest-rank",
            "rows": [r.as_dict() for r in self.rows if r.group in groups],
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one ticket contributes to the rows it belongs to."""

    unit: str
    channel: str
    category: str
    resolved_in_period: bool
    reopened: bool
    resolved_once: bool
    first_response_s: float | None
    resolution_s: float | None
    first_response_state: TimerState
    resolution_state: TimerState

    def keys(self) -> dict[str, str]:
        return {
            "overall": "",
            "unit": self.unit,
            "channel": self.channel,
            "category": self.category,
            "unit_channel": f"{self.unit}/{self.channel}",
        }


def _ms(row: Mapping[str, str], name: str) -> float | None:
    raw = row.get(name)
    try:
        return float(raw) / 1000 if raw else None
    except ValueError:
        return None


def finished_at(row: Mapping[str, str]) -> float | None:
    """When the ticket last stopped being open, or None while it is open. A resolved ticket
    stopped at its (latest) resolution. A closed one at its resolution if that came after its
    latest opening (resolved, then closed by the reopen window or by hand), else when it was
    closed (spam, a duplicate: closed straight from open)."""
    status = row.get("status", "open")
    resolved, closed = _ms(row, "resolved_at"), _ms(row, "closed_at")
    if status == "resolved":
        return resolved
    if status != "closed":
        return None
    opened = max(_ms(row, "created_at") or 0.0, _ms(row, "reopened_at") or 0.0)
    if resolved is not None and resolved >= opened:
        return resolved
    return closed if closed is not None else resolved


def outcome(row: Mapping[str, str], sla: SlaEngine, until: float, as_of: float) -> Outcome | None:
    """One ticket's part in a report (None for a ticket merged into another)."""
    if row.get("merged_into"):
        return None
    created = _ms(row, "created_at") or 0.0
    done = finished_at(row)
    # The SLA engine wants "when it left open" for every finished ticket, closed ones too.
    facts_row = {**row, "resolved_at": str(int(done * 1000)) if done is not None else ""}
    if done is None:
        facts_row["status"] = "open"
    timers = sla.timers(facts_of(facts_row), as_of)
    responded = _ms(row, "first_response_at")
    return Outcome(
        unit=row.get("unit", "general"),
        channel=row.get("channel", ""),
        category=row.get("category", ""),
        resolved_in_period=done is not None and done < until,
        reopened=int(row.get("reopen_count") or 0) > 0,
        resolved_once=bool(row.get("resolved_at")),
        first_response_s=max(0.0, responded - created) if responded is not None else None,
        resolution_s=max(0.0, done - created) if done is not None else None,
        first_response_state=timers.first_response_state,
        resolution_state=timers.resolution_state,
    )


@dataclass(slots=True)
class _Tally:
    created: int = 0
    resolved: int = 0
    reopened: int = 0
    resolved_once: int = 0
    first_response_s: list[float] = field(default_factory=list)
    resolution_s: list[float] = field(default_factory=list)
    first_response: Counter[str] = field(default_factory=Counter)
    resolution: Counter[str] = field(default_factory=Counter)

    def add(self, o: Outcome) -> None:
        self.created += 1
        self.resolved += o.resolved_in_period
        self.reopened += o.reopened
        self.resolved_once += o.resolved_once
        if o.first_response_s is not None:
            self.first_response_s.append(o.first_response_s)
        if o.resolution_s is not None:
            self.resolution_s.append(o.resolution_s)
        self.first_response[o.first_response_state] += 1
        self.resolution[o.resolution_state] += 1

    def row(self, group: str, key: str) -> ReportRow:
        fr, res = self.first_response_s, self.resolution_s
        return ReportRow(
            group=group,
            key=key,
            created=self.created,
            resolved=self.resolved,
            open_at_end=self.created - self.resolved,
            reopened=self.reopened,
            resolved_once=self.resolved_once,
            first_response_count=len(fr),
            first_response_median_s=percentile(fr, 50),
            first_response_p90_s=percentile(fr, 90),
            resolution_count=len(res),
            resolution_median_s=percentile(res, 50),
            resolution_p90_s=percentile(res, 90),
            first_response_met=self.first_response["met"],
            first_response_missed=self.first_response["missed"],
            first_response_breached=self.first_response["breached"],
            resolution_met=self.resolution["met"],
            resolution_missed=self.resolution["missed"],
            resolution_breached=self.resolution["breached"],
        )


class ReportBuilder:
    """Adds tickets' facts rows a chunk at a time, so a long period never holds them all."""

    def __init__(
        self, sla: SlaEngine, period: Period, as_of: float, units: Sequence[str] = ()
    ) -> None:
        self.sla, self.period, self.as_of = sla, period, as_of
        self._tallies: dict[tuple[str, str], _Tally] = {("overall", ""): _Tally()}
        for unit in units:  # configured units get a row even without tickets: a visible zero
            self._tallies[("unit", unit)] = _Tally()

    def add(self, rows: Iterable[Mapping[str, str]]) -> None:
        for row in rows:
            o = outcome(row, self.sla, self.period.until, self.as_of)
            if o is None:
                continue
            for group, key in o.keys().items():
                self._tallies.setdefault((group, key), _Tally()).add(o)

    def report(self) -> Report:
        order = {g: i for i, g in enumerate(GROUPS)}
        keys = sorted(self._tallies, key=lambda gk: (order[gk[0]], gk[1]))
        return Report(self.period, self.as_of, [self._tallies[k].row(*k) for k in keys])


def build_report(
    rows: Iterable[Mapping[str, str]],
    sla: SlaEngine,
    period: Period,
    as_of: float,
    units: Sequence[str] = (),
) -> Report:
    builder = ReportBuilder(sla, period, as_of, units)
    builder.add(rows)
    return builder.report()


async def load_report(
    store: TicketStore, sla: SlaEngine, period: Period, as_of: float, units: Sequence[str] = ()
) -> Report:
    """The report from the store's ticket index and fact fields, read in chunks."""
    tids = await store.tickets_created_between(int(period.since * 1000), int(period.until * 1000))
    builder = ReportBuilder(sla, period, as_of, units)
    for start in range(0, len(tids), CHUNK):
        builder.add(await store.ticket_facts(tids[start : start + CHUNK]))
    return builder.report()


# -- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "period_from", "period_to", "group", "key", "created", "resolved", "open_at_end",
    "reopened", "resolved_once", "reopen_rate",
    "first_response_count", "first_response_median_s", "first_response_p90_s",
    "first_response_met", "first_response_missed", "first_response_breached",
    "first_response_compliance",
    "resolution_count", "resolution_median_s", "resolution_p90_s",
    "resolution_met", "resolution_missed", "resolution_breached", "resolution_compliance",
)  # fmt: skip


def csv_number(value: float | None) -> str:
    """A number as a spreadsheet reads it: no exponent, no trailing zeros, at most four
    decimals (times are whole milliseconds, shares are rounded to four); "" for no data, so
    that "nothing to measure" never reads as 0."""
    if value is None:
        return ""
    text = f"{round(value, 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def csv_text(value: str) -> str:
    """Text that a spreadsheet shows as text: a leading formula character gets a quote."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def report_csv(report: Report, groups: Sequence[str] = GROUPS) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    w.writeheader()
    for r in report.rows:
        if r.group not in groups:
            continue
        d = r.as_dict()
        line = {c: csv_number(d[c]) for c in CSV_COLUMNS[4:]}
        w.writerow(
            {
                "period_from": report.period.first.isoformat(),
                "period_to": report.period.last.isoformat(),
                "group": r.group,
                "key": csv_text(r.key),
                **line,
            }
        )
    return out.getvalue()


# -- one ticket's audit trail ------------------------------------------------------------------

TIMELINE_COLUMNS = ("at", "kind", "actor", "summary", "state", "entry_id", "from_ticket")
_NOT_DETAILS = frozenset({"id", "at", "type", "actor", "direction", "from_ticket", "text"})


def jakarta_iso(stamp: Any) -> str:
    """A stored ISO instant as Jakarta local time (``2026-09-21T09:10:00+07:00``)."""
    try:
        return datetime.fromisoformat(str(stamp)).astimezone(JAKARTA).isoformat("T", "seconds")
    except ValueError:
        return str(stamp or "")


def _summary_of_event(e: Mapping[str, Any]) -> str:
    """A note's text, else the event's details as ``name=value`` pairs in a stable order."""
    if e.get("type") == "note":
        return str(e.get("text", ""))
    parts = [f"{k}={e[k]}" for k in sorted(e) if k not in _NOT_DETAILS and e[k] not in (None, "")]
    return "; ".join(parts)


def timeline_row(e: Mapping[str, Any]) -> dict[str, str]:
    """One timeline entry as a flat record: a message, a reply (with its delivery state) or
    an audit event (status, note, category, transfer, merge, ...)."""
    direction = e.get("direction")
    if direction == "in":
        names = [str(a.get("name", "")) for a in e.get("attachments") or [] if isinstance(a, dict)]
        text = str(e.get("text", "")) + (f" [attachments: {', '.join(names)}]" if names else "")
        kind, actor = "message", str(e.get("display_name") or e.get("reply_address") or "")
        summary, state = text, "retracted" if e.get("retracted") else ""
    elif direction == "out":
        tpl = e.get("template") if isinstance(e.get("template"), dict) else None
        kind = {"auto": "auto_reply", "external": "external_reply"}.get(str(e.get("kind")), "reply")
        actor, state = str(e.get("author", "")), str(e.get("state", ""))
        summary = str(e.get("text") or "") or (f"template: {tpl.get('name', '')}" if tpl else "")
    else:
        kind, actor = str(e.get("type", "event")), str(e.get("actor", ""))
        summary, state = _summary_of_event(e), ""
    return {
        "at": jakarta_iso(e.get("at")),
        "kind": kind,
        "actor": actor,
        "summary": summary,
        "state": state,
        "entry_id": str(e.get("id", "")),
        "from_ticket": str(e.get("from_ticket", "")),
    }


def timeline_csv(entries: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=TIMELINE_COLUMNS, lineterminator="\r\n")
    w.writeheader()
    for e in entries:
        row = timeline_row(e)
        w.writerow({k: csv_text(v) for k, v in row.items()})
    return out.getvalue()


def report_from_dict(data: Mapping[str, Any]) -> Report:
    """A ``Report`` back from its ``as_dict()`` (every group): how a saved monthly report
    (``hub.archive``) is served again once the month's tickets may have left Redis."""
    names = set(ReportRow.__dataclass_fields__)
    rows = [ReportRow(**{k: v for k, v in r.items() if k in names}) for r in data["rows"]]
    period = Period(date.fromisoformat(data["from"]), date.fromisoformat(data["to"]))
    return Report(period, float(data["as_of"]), rows)


def export_document(ticket: Mapping[str, Any], exported_at: float, by: str) -> dict[str, Any]:
    """Everything the hub holds on one ticket (``TicketStore.get_ticket``), as one document:
    its fields and its timeline (messages, replies with delivery states, notes, status and
    other audit events, merged tickets' entries included). One builder for the export
    endpoint and the archive, so an archived ticket reads exactly like an exported one."""
    fields = dict(ticket)
    entries: list[dict[str, Any]] = fields.pop("messages", [])
    return {
        "ticket": fields,
        "timeline": entries,
        "exported_at": datetime.fromtimestamp(exported_at, UTC).isoformat(),
        "exported_by": by,
    }
