"""Asterisk ``cdr_csv`` (``Master.csv``) lines → ``CallRecord`` (../shared/protocols.md §6).

Columns, in order: the 16 base columns (``BASE_COLUMNS``), then ``uniqueid`` and ``userfield``
when ``loguniqueid`` / ``loguserfield`` are on, then ``peeraccount``, ``linkedid``,
``sequence`` with ``newcdrcolumns``. Configure the exact list (``CdrFormat.columns``) or let
the parser pick it by the field count: 16 base, 18 with uniqueid+userfield, 19 base +
newcdrcolumns, 21 all. 17 and 20 are ambiguous (only one of uniqueid / userfield): configure.

Strings are double-quoted with ``""`` escapes (the csv module); dates ``%Y-%m-%d %H:%M:%S``
in the PBX's local time zone (``CdrFormat.timezone``, Asia/Jakarta by default) or UTC with
``usegmtime``; an unanswered call has an empty ``answer``. ``clid`` is ``"Name" <0812…>``.

A line without a uniqueid gets a stable digest of its start, channels and numbers as its call
id (``synthetic_id``), so re-reading it gives the same dedupe key. Direction: ``dcontext`` in
``outbound_contexts`` → out, in ``inbound_contexts`` → in; otherwise a short internal
extension calling a long number is out, anything else in.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from channels.calls.records import CallRecord, RecordError

BASE_COLUMNS: Final = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
)  # fmt: skip
UNIQUE_COLUMNS: Final = ("uniqueid", "userfield")
NEW_COLUMNS: Final = ("peeraccount", "linkedid", "sequence")

BY_COUNT: Final[dict[int, tuple[str, ...]]] = {
    16: BASE_COLUMNS,
    18: BASE_COLUMNS + UNIQUE_COLUMNS,
    19: BASE_COLUMNS + NEW_COLUMNS,
    21: BASE_COLUMNS + UNIQUE_COLUMNS + NEW_COLUMNS,
}
CDR_DISPOSITIONS: Final = frozenset({"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"})
_CLID = re.compile(r'^\s*(?:"(?P<q>.*)"|(?P<bare>[^<]*?))\s*<(?P<num>[^>]*)>\s*$', re.DOTALL)
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]{6,}(?:;\d+)?$")
_DATE = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class CdrFormat:
    columns: tuple[str, ...] | None = None  # None: detect by the number of fields
    timezone: str = "Asia/Jakarta"
    usegmtime: bool = False
    inbound_contexts: frozenset[str] = frozenset()
    outbound_contexts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.columns is not None:
            missing = {"src", "dst", "start", "end", "disposition"} - set(self.columns)
            if missing:
                raise ValueError(f"cdr columns lack {sorted(missing)}")
        ZoneInfo(self.timezone)  # fail at configuration time, not on the first line


def parse_clid(clid: str) -> tuple[str, str]:
    """``"Budi" <081234567890>`` → ``("Budi", "081234567890")``; a bare value is a number if
    it has digits only (and ``+``), otherwise a name."""
    m = _CLID.match(clid)
    if m:
        name = m.group("q") if m.group("q") is not None else (m.group("bare") or "")
        return name.replace('\\"', '"').strip(), m.group("num").strip()
    s = clid.strip()
    if s.lstrip("+").isdigit():
        return "", s
    return s, ""


class CdrParser:
    """Parse one ``Master.csv`` line at a time (stateless)."""

    stateful = False

    def __init__(self, fmt: CdrFormat | None = None) -> None:
        self.fmt = fmt or CdrFormat()
        self._tz: tzinfo = UTC if self.fmt.usegmtime else ZoneInfo(self.fmt.timezone)

    def parse_line(self, line: str) -> CallRecord:
        try:
            rows = list(csv.reader([line], strict=True))
        except csv.Error as exc:
            raise RecordError(f"bad csv: {exc}") from None
        if len(rows) != 1:
            raise RecordError("not one csv row")
        values = rows[0]
        columns = self.fmt.columns or BY_COUNT.get(len(values))
        if columns is None:
            raise RecordError(f"{len(values)} fields: configure the cdr columns")
        if len(values) != len(columns):
            raise RecordError(f"{len(values)} fields, expected {len(columns)}")
        row = dict(zip(columns, values, strict=True))
        return self._record(row)

    def _time(self, row: dict[str, str], name: str, required: bool) -> float | None:
        raw = row.get(name, "").strip()
        if not raw:
            if required:
                raise RecordError(f"empty {name}")
            return None
        try:
            dt = datetime.strptime(raw, _DATE)
        except ValueError:
            raise RecordError(f"bad {name} time") from None
        return dt.replace(tzinfo=self._tz).timestamp()

    @staticmethod
    def _int(row: dict[str, str], name: str) -> int:
        raw = row.get(name, "").strip()
        if not raw:
            return 0
        try:
            value = int(raw)
        except ValueError:
            raise RecordError(f"bad {name}") from None
        if value < 0:
            raise RecordError(f"negative {name}")
        return value

    def _direction(self, row: dict[str, str], caller: str, callee: str) -> str:
        ctx = row.get("dcontext", "")
        if ctx in self.fmt.outbound_contexts:
            return "out"
        if ctx in self.fmt.inbound_contexts:
            return "in"
        if caller.isdigit() and len(caller) <= 6 and len(callee.lstrip("+")) > 6:
            return "out"
        return "in"

    def _record(self, row: dict[str, str]) -> CallRecord:
        disposition = row["disposition"].strip().upper()
        if disposition not in CDR_DISPOSITIONS:
            raise RecordError(f"unknown disposition {disposition[:20]!r}")
        start = self._time(row, "start", True)
        answer = self._time(row, "answer", False)
        end = self._time(row, "end", True)
        assert start is not None
        assert end is not None
        if end < start:
            raise RecordError("end before start")
        duration = self._int(row, "duration")
        billsec = self._int(row, "billsec")
        name, clid_number = parse_clid(row.get("clid", ""))
        caller = row["src"].strip() or clid_number
        callee = row["dst"].strip()
        direction = self._direction(row, caller, callee)
        uniqueid = row.get("uniqueid", "").strip()
        if uniqueid:
            call_id, synthetic = uniqueid, False
        else:
            basis = "|".join(
                row.get(k, "") for k in ("start", "channel", "dstchannel", "src", "dst", "dcontext")
            )
            call_id = "cdr-" + hashlib.sha256(basis.encode()).hexdigest()[:20]
            synthetic = True
        queue = ""
        if row.get("lastapp", "").strip().lower() == "queue":
            queue = row.get("lastdata", "").split(",")[0].strip()
        agent = ""
        if answer is not None:
            agent = _CHANNEL_SUFFIX.sub("", row.get("dstchannel", "").strip())
        wait = int(answer - start) if answer is not None else duration
        extra = {
            k: row[k].strip()
            for k in ("accountcode", "dcontext", "channel", "dstchannel", "lastapp",
                      "amaflags", "userfield", "peeraccount")
            if row.get(k, "").strip()
        }  # fmt: skip
        extra["duration"] = str(duration)
        return CallRecord(
            call_id=call_id,
            direction=direction,
            caller=caller,
            callee=callee,
            disposition=disposition,
            record_type="cdr",
            queue=queue,
            agent=agent,
            offered_at=start,
            answered_at=answer,
            ended_at=end,
            wait_s=max(0, wait),
            talk_s=billsec,
            linkedid=row.get("linkedid", "").strip(),
            caller_name=name,
            sequence=row.get("sequence", "").strip(),
            synthetic_id=synthetic,
            extra=extra,
        )
