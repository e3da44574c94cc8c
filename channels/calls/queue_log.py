"""Asterisk ``queue_log`` lines folded into one ``CallRecord`` per queued call.

Line: ``epoch|uniqueid|queue|agent|EVENT|data…`` (../shared/protocols.md §6). Events used:

========================  ====================================  =============================
event                     data                                  effect
========================  ====================================  =============================
DID                       did                                   callee (the number dialled)
ENTERQUEUE                url|callerid                          opens the call; caller
RINGNOANSWER              ringtime (ms)                         counts an agent not answering
CONNECT                   holdtime|bridged uniqueid|ringtime    answered by ``agent``
COMPLETEAGENT/-CALLER     holdtime|calltime|origposition        ends: ANSWERED (who hung up)
TRANSFER                  extension|context|holdtime|calltime   ends: ANSWERED, transferred
ABANDON                   position|origposition|waittime        ends: ABANDONED
EXITWITHTIMEOUT/-EMPTY    position|origposition|waittime        ends: ABANDONED (exit_reason)
EXITWITHKEY               key|position|origposition|waittime    ends: ABANDONED (exit_reason)
========================  ====================================  =============================

Lines with uniqueid ``NONE`` (member and queue events) and other events are ignored. A call's
record is produced by its ending event; until then it is held in memory (bounded:
``max_calls`` open calls, each at most ``max_age_s`` old by the log's own clock; past either
bound the oldest is dropped and ``calllog.call_evicted`` logged).

Restarts. The open calls live only in memory, so a restart would lose the events logged
before it for calls still in progress. The correlator therefore reports ``hold_from()``: the
file offset of the first line of the oldest open call. The tailer commits its position no
further than that, and commits separately how far it has *delivered* (a high-water mark); after
a restart it re-reads from the committed offset, rebuilding the open calls, and drops the
records of calls that ended at or before the high-water mark (already delivered). Nothing is
lost and nothing delivered twice. Across a rotation (or truncation) the open calls are carried
over in memory but no longer pin the position (their first lines are in the old file): a
restart in that window loses their earlier events; their ending events still yield a record
(times derived from the durations; the caller number may then be missing → withheld).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import structlog

from channels.calls.records import CallRecord, RecordError

log = structlog.get_logger("channels.calls.queue_log")

_ENDS_ANSWERED: Final = frozenset({"COMPLETEAGENT", "COMPLETECALLER", "TRANSFER"})
_ENDS_ABANDONED: Final = frozenset({"ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"})
_TRACKED: Final = (
    frozenset({"DID", "ENTERQUEUE", "RINGNOANSWER", "CONNECT"}) | _ENDS_ANSWERED | _ENDS_ABANDONED
)


@dataclass(slots=True)
class _Open:
    uniqueid: str
    first_offset: int | None
    first_epoch: float
    queue: str = ""
    caller: str = ""
    callee: str = ""
    agent: str = ""
    offered_at: float | None = None
    answered_at: float | None = None
    wait_s: int = 0
    ring_no_answer: int = 0
    agents_tried: list[str] = field(default_factory=list)


def _int(value: str, what: str) -> int:
    try:
        n = int(value.strip() or "0")
    except ValueError:
        raise RecordError(f"bad {what}") from None
    if n < 0:
        raise RecordError(f"negative {what}")
    if n >= 10**9:  # seconds (or ms of ringing): more would overflow the times derived from it
        raise RecordError(f"{what} is not a plausible duration")
    return n


def _arg(data: list[str], i: int) -> str:
    return data[i] if i < len(data) else ""


class QueueLogParser:
    """Stateful: ``feed`` lines in file order; a record comes out when a call ends."""

    stateful = True

    def __init__(
        self, max_calls: int = 10_000, max_age_s: float = 6 * 3600, direction: str = "in"
    ) -> None:
        self.max_calls = max_calls
        self.max_age_s = max_age_s
        self.direction = direction
        self._open: dict[str, _Open] = {}  # insertion order = order of first lines
        self.evicted = 0

    @property
    def open_calls(self) -> int:
        return len(self._open)

    def hold_from(self) -> int | None:
        """The offset of the first line of the oldest open call in this file (or None)."""
        offsets = [c.first_offset for c in self._open.values() if c.first_offset is not None]
        return min(offsets) if offsets else None

    def rebase(self) -> None:
        """A new file (rotation, truncation): the open calls' first lines are not in it."""
        for c in self._open.values():
            c.first_offset = None

    def _evict(self, now: float) -> None:
        while self._open:
            uid, oldest = next(iter(self._open.items()))
            too_many = len(self._open) >= self.max_calls
            if not too_many and oldest.first_epoch >= now - self.max_age_s:
                return
            del self._open[uid]
            self.evicted += 1
            log.warning(
                "calllog.call_evicted",
                uniqueid=uid,
                reason="max_calls" if too_many else "max_age",
            )

    def feed(self, line: str, offset: int = 0) -> CallRecord | None:
        """One line (without its newline) that starts at ``offset`` in the current file."""
        parts = line.rstrip("\r").split("|")
        if len(parts) < 5:
            raise RecordError(f"{len(parts)} fields, expected at least 5")
        raw_epoch, uid, queue, agent, event = (p.strip() for p in parts[:5])
        data = parts[5:]
        try:
            epoch = float(raw_epoch)
        except ValueError:
            raise RecordError("bad epoch") from None
        if not 0 <= epoch < 10**11:  # also false for nan; inf would make every time inf
            raise RecordError("epoch is not a plausible unix time")
        if not uid or uid == "NONE" or event not in _TRACKED:
            return None
        call = self._open.get(uid)
        if call is None:
            self._evict(epoch)
            call = _Open(uniqueid=uid, first_offset=offset, first_epoch=epoch)
            self._open[uid] = call
        if queue and queue != "NONE":
            call.queue = queue
        if event == "DID":
            call.callee = _arg(data, 0).strip()
        elif event == "ENTERQUEUE":
            call.offered_at = epoch
            call.caller = _arg(data, 1).strip()
        elif event == "RINGNOANSWER":
            call.ring_no_answer += 1
            if agent and agent != "NONE":
                call.agents_tried.append(agent)
        elif event == "CONNECT":
            call.answered_at = epoch
            call.wait_s = _int(_arg(data, 0), "holdtime")
            call.agent = agent
        elif event in _ENDS_ANSWERED:
            return self._finish_answered(call, event, agent, epoch, data)
        else:
            return self._finish_abandoned(call, event, epoch, data)
        return None

    def _base(self, call: _Open) -> dict[str, str]:
        extra = {}
        if call.ring_no_answer:
            extra["ring_no_answer"] = str(call.ring_no_answer)
            extra["agents_tried"] = ",".join(call.agents_tried)
        return extra

    def _finish_answered(
        self, call: _Open, event: str, agent: str, epoch: float, data: list[str]
    ) -> CallRecord:
        extra = self._base(call)
        if event == "TRANSFER":
            ext, ctx = _arg(data, 0).strip(), _arg(data, 1).strip()
            hold, talk = _int(_arg(data, 2), "holdtime"), _int(_arg(data, 3), "calltime")
            extra["transferred_to"] = f"{ext}@{ctx}" if ctx else ext
            extra["hangup_by"] = "transfer"
        else:
            hold, talk = _int(_arg(data, 0), "holdtime"), _int(_arg(data, 1), "calltime")
            extra["hangup_by"] = "agent" if event == "COMPLETEAGENT" else "caller"
        del self._open[call.uniqueid]
        answered = call.answered_at if call.answered_at is not None else epoch - talk
        offered = call.offered_at if call.offered_at is not None else answered - hold
        return CallRecord(
            call_id=call.uniqueid,
            direction=self.direction,
            caller=call.caller,
            callee=call.callee or call.queue,
            disposition="ANSWERED",
            record_type="queue",
            queue=call.queue,
            agent=call.agent or (agent if agent != "NONE" else ""),
            offered_at=offered,
            answered_at=answered,
            ended_at=epoch,
            wait_s=hold,
            talk_s=talk,
            extra=extra,
        )

    def _finish_abandoned(
        self, call: _Open, event: str, epoch: float, data: list[str]
    ) -> CallRecord:
        extra = self._base(call)
        if event == "EXITWITHKEY":
            waited = _int(_arg(data, 3), "waittime")
            extra["exit_key"] = _arg(data, 0).strip()
        else:
            waited = _int(_arg(data, 2), "waittime")
        extra["exit_reason"] = {
            "ABANDON": "caller_hangup",
            "EXITWITHTIMEOUT": "timeout",
            "EXITEMPTY": "no_agents",
            "EXITWITHKEY": "key",
        }[event]
        extra["position"] = _arg(data, 1 if event == "EXITWITHKEY" else 0).strip()
        del self._open[call.uniqueid]
        return CallRecord(
            call_id=call.uniqueid,
            direction=self.direction,
            caller=call.caller,
            callee=call.callee or call.queue,
            disposition="ABANDONED",
            record_type="queue",
            queue=call.queue,
            offered_at=call.offered_at if call.offered_at is not None else epoch - waited,
            ended_at=epoch,
            wait_s=waited,
            extra=extra,
        )
