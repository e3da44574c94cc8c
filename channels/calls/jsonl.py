"""A JSON-lines call export → ``CallRecord``: one JSON object per line, the same fields.

Field names (also in tests/fixtures/calls/README.md):

=============  ========  ============================================================
field          required  value
=============  ========  ============================================================
call_id        yes       the platform's call id (Asterisk uniqueid)
direction      yes       ``in`` or ``out``
caller         yes*      number as dialled / presented (``0812…``, ``+62…``,
                         ``anonymous``); *may be empty or absent (withheld)
callee         no        number called (the hotline for inbound calls)
disposition    yes       ANSWERED, NO ANSWER, BUSY, FAILED, CONGESTION, ABANDONED
queue          no        queue name
agent          no        agent id or name
offered_at     no        epoch seconds (number) or ISO 8601 with offset
answered_at    no        idem; null/absent when unanswered
ended_at       no        idem
wait_s         no        whole seconds in queue (int, default 0)
talk_s         no        whole seconds talking
wrapup_s       no        whole seconds of after-call work
wrapup_code    no        the agent's disposition code
notes          no        agent notes (free text)
recording      no        recording reference (file name or URL)
linkedid       no        Asterisk linkedid (ties legs of one call)
caller_name    no        caller id name
sequence       no        sequence number when one call has several entries
record_type    no        part of the dedupe key; default ``export``
=============  ========  ============================================================

Other keys are kept as strings in ``CallRecord.extra`` (and so in the message's meta).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from channels.calls.records import RECORD_FIELDS, CallRecord, RecordError
from channels.json_input import without_lone_surrogates

_TIMES = ("offered_at", "answered_at", "ended_at")
_SECONDS = ("wait_s", "talk_s", "wrapup_s")
_TEXT = tuple(f for f in RECORD_FIELDS if f not in _TIMES + _SECONDS)


def _time(v: Any, name: str) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise RecordError(f"bad {name}")
    if isinstance(v, int | float):
        if not 0 <= v < 10**11:  # also false for NaN and infinities; no float() of 10**400
            raise RecordError(f"{name} is not a plausible epoch")
        return float(v)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise RecordError(f"bad {name}") from None
        if dt.tzinfo is None:
            raise RecordError(f"{name} has no UTC offset")
        return dt.timestamp()
    raise RecordError(f"bad {name}")


def _seconds(v: Any, name: str) -> int:
    if v is None or v == "":
        return 0
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise RecordError(f"bad {name}")
    try:
        seconds = float(v)
    except (ValueError, OverflowError):  # an int too large for a float, say 10**400
        raise RecordError(f"bad {name}") from None
    if not math.isfinite(seconds) or seconds >= 10**9:
        raise RecordError(f"{name} is not a plausible duration")
    return int(seconds)


class JsonlParser:
    """Parse one export line at a time (stateless)."""

    stateful = False

    def parse_line(self, line: str) -> CallRecord:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # also an integer of more than 4300 digits
            raise RecordError("not json") from None
        if not isinstance(obj, dict):
            raise RecordError("not a json object")
        obj = without_lone_surrogates(obj)
        for name in ("call_id", "direction", "disposition"):
            if not obj.get(name):
                raise RecordError(f"missing {name}")
        kw: dict[str, Any] = {}
        for name in _TEXT:
            v = obj.get(name)
            if v is None:
                continue
            if not isinstance(v, str | int | float) or isinstance(v, bool):
                raise RecordError(f"bad {name}")
            kw[name] = str(v)
        kw.setdefault("caller", "")
        kw.setdefault("callee", "")
        kw.setdefault("record_type", "export")
        kw["disposition"] = kw["disposition"].upper()
        for name in _TIMES:
            kw[name] = _time(obj.get(name), name)
        for name in _SECONDS:
            kw[name] = _seconds(obj.get(name), name)
        extra = {
            k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in obj.items()
            if k not in RECORD_FIELDS and v is not None
        }
        return CallRecord(**kw, extra=extra)


def to_jsonl(record: CallRecord) -> str:
    """One export line for ``record`` (round-trips through ``JsonlParser``)."""
    obj: dict[str, Any] = {name: getattr(record, name) for name in RECORD_FIELDS}
    obj.update({k: v for k, v in record.extra.items() if k not in obj})
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
