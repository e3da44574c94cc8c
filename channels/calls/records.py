"""One call as the call center logged it, and its translation into a hub ``Message``.

Every log format (``cdr_csv``'s Master.csv, ``queue_log``, a JSON-lines export) is parsed into
a ``CallRecord``; ``to_message`` turns a record into a message of kind ``"call"`` on the
caller's phone identity (``phone:+62…``), the same identity WhatsApp uses, so calls and chats
of one citizen meet on one contact.

Identity rules: the citizen is the caller of an inbound call and the callee of an outbound one.
A withheld, anonymous or invalid number never becomes a phone identity: the sender is
``call:withheld:<call id>``, unique per call, so two strangers who both hid their number are
never merged (and the reply address is empty: nobody can be called back).

Dedupe: ``provider_id`` is the call id plus the record type (``cdr``, ``queue``, ``export``)
and, for CDRs with ``newcdrcolumns``, the sequence number, because one call yields one record
per log and Asterisk may write several CDRs for one uniqueid (transfers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Final

from hub.identity import InvalidIdentity, normalize_phone, phone_identity
from hub.ids import new_id
from hub.model import Message
from hub.text import isolate

DISPOSITIONS: Final = frozenset(
    {"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION", "ABANDONED"}
)
DIRECTIONS: Final = frozenset({"in", "out"})
WITHHELD_NAMES: Final = frozenset(
    {"", "anonymous", "withheld", "unknown", "private", "restricted", "unavailable", "s"}
)


class RecordError(ValueError):
    """A log line (or export entry) cannot be understood; the text says why, never the line."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call. Times are UTC epoch seconds (``None`` when it did not happen: an unanswered
    call has no ``answered_at``); durations are whole seconds."""

    call_id: str  # Asterisk uniqueid, or a stable digest when the log has none
    direction: str  # "in" | "out"
    caller: str  # the number as logged ("0812…", "anonymous", "")
    callee: str
    disposition: str  # one of DISPOSITIONS
    record_type: str = "cdr"  # "cdr" | "queue" | "export": part of the dedupe key
    queue: str = ""
    agent: str = ""
    offered_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    wait_s: int = 0
    talk_s: int = 0
    wrapup_s: int = 0
    wrapup_code: str = ""
    notes: str = ""
    recording: str = ""
    linkedid: str = ""
    caller_name: str = ""
    sequence: str = ""  # CDR sequence (newcdrcolumns), part of the dedupe key
    synthetic_id: bool = False  # call_id is our digest, not the platform's uniqueid
    extra: dict[str, str] = field(default_factory=dict)  # format-specific details

    def __post_init__(self) -> None:
        if not self.call_id:
            raise RecordError("missing call id")
        if any(ch.isspace() for ch in self.call_id):  # it names the withheld caller's identity
            raise RecordError("call id has whitespace")
        if self.direction not in DIRECTIONS:
            raise RecordError(f"direction must be in|out, got {self.direction[:12]!r}")
        if self.disposition not in DISPOSITIONS:
            raise RecordError(f"unknown disposition {self.disposition[:20]!r}")
        for name in ("wait_s", "talk_s", "wrapup_s"):
            if getattr(self, name) < 0:
                raise RecordError(f"negative {name}")

    @property
    def abandoned(self) -> bool:
        return self.disposition == "ABANDONED"

    @property
    def provider_id(self) -> str:
        pid = f"{self.call_id}:{self.record_type}"
        return f"{pid}:{self.sequence}" if self.sequence else pid

    @property
    def transferred_to(self) -> str:
        return self.extra.get("transferred_to", "")

    @property
    def citizen_number(self) -> str:
        return self.caller if self.direction == "in" else self.callee


RECORD_FIELDS: Final = tuple(
    f.name for f in fields(CallRecord) if f.name not in ("extra", "synthetic_id")
)
"""The field names, as the JSON-lines export spells them (see ``channels.calls.jsonl``)."""


def duration_text(seconds: int) -> str:
    """``35`` → ``35 dtk``; ``252`` → ``4 mnt 12 dtk``; ``120`` → ``2 mnt``; ``3720`` →
    ``1 jam 2 mnt``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} dtk"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours} jam")
    if minutes:
        parts.append(f"{minutes} mnt")
    if secs and not hours:
        parts.append(f"{secs} dtk")
    return " ".join(parts)


_UNANSWERED = {
    "NO ANSWER": "tidak dijawab",
    "BUSY": "sibuk",
    "FAILED": "gagal",
    "CONGESTION": "gagal (jaringan padat)",
}


def summary(record: CallRecord) -> str:
    """A short line in Bahasa Indonesia for the ticket timeline. The log's own words (agent,
    transfer target, wrap-up code, notes) are isolated (``hub.alerts.isolate``): a
    right-to-left override in one cannot reorder the rest of the line."""
    if record.abandoned:
        text = f"Panggilan tidak terjawab (ditinggalkan setelah {duration_text(record.wait_s)})"
    else:
        way = "masuk" if record.direction == "in" else "keluar"
        if record.disposition == "ANSWERED":
            who = f" oleh agen {isolate(record.agent)}" if record.agent else ""
            parts = [f"Panggilan {way} dijawab{who}"]
            if record.direction == "in" and record.wait_s:
                parts.append(f"antre {duration_text(record.wait_s)}")
            parts.append(f"bicara {duration_text(record.talk_s)}")
            text = ", ".join(parts)
        else:
            text = f"Panggilan {way} {_UNANSWERED[record.disposition]}"
    if record.transferred_to:
        text += f", dialihkan ke {isolate(record.transferred_to)}"
    if record.wrapup_code:
        text += f". Kode penyelesaian: {isolate(record.wrapup_code)}"
    if record.notes:
        text += f". Catatan agen: {isolate(record.notes)}"
    return text


def _num(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else str(v)


def record_meta(record: CallRecord) -> dict[str, str]:
    """Every field as a string, plus ``abandoned`` (and ``callback`` for abandoned calls)."""
    meta: dict[str, str] = {}
    for name in RECORD_FIELDS:
        v = getattr(record, name)
        meta[name] = _num(v) if isinstance(v, float) or v is None else str(v)
    for k, v in record.extra.items():
        meta.setdefault(k, v)
    meta["abandoned"] = "1" if record.abandoned else "0"
    if record.abandoned:
        meta["callback"] = "1"
    return meta


def to_message(
    record: CallRecord, account: str, received_at: float, default_region: str = "ID"
) -> Message:
    """The hub message for one call (kind ``call``, channel ``call``)."""
    number = record.citizen_number
    e164 = ""
    if number.strip().lower() not in WITHHELD_NAMES:
        try:
            e164 = normalize_phone(number, default_region)
        except InvalidIdentity:
            e164 = ""
    sender = phone_identity(e164) if e164 else f"call:withheld:{record.call_id}"
    hints: list[str] = []
    if not record.synthetic_id:
        hints.append(f"call-id:{record.call_id}")
    if record.linkedid:
        hints.append(f"call-linkedid:{record.linkedid}")
    name = record.caller_name if record.direction == "in" else ""
    if name and "".join(ch for ch in name if ch.isdigit()) == "".join(
        ch for ch in number if ch.isdigit()
    ):
        name = ""  # Asterisk puts the number in the name when there is none
    return Message(
        id=new_id(int(received_at * 1000)),
        channel="call",
        account=account,
        provider_id=record.provider_id,
        sender=sender,
        reply_address=e164,
        received_at=received_at,
        kind="call",
        text=summary(record),
        display_name=name,
        thread_hints=tuple(hints),
        provider_ts=record.offered_at if record.offered_at is not None else record.ended_at,
        meta=record_meta(record),
    )
