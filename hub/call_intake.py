"""Calls into the hub: each record of the call center's logs becomes a message of kind
"call" on the caller's contact (the same E.164 phone as WhatsApp).

The tailer moves its position only after ``on_records`` returned, i.e. after every record of
the batch is on the inbound stream; a repeat after a crash is absorbed by the dispatcher's
dedupe on the record's provider id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from channels.calls.callbacks import callback_status
from channels.calls.cdr_csv import CdrFormat, CdrParser
from channels.calls.jsonl import JsonlParser
from channels.calls.queue_log import QueueLogParser
from channels.calls.records import CallRecord, to_message
from channels.calls.tailer import LineSource, LogPosition, LogTailer, StatelessSource, TailConfig
from hub.clock import Clock
from hub.metrics import HubMetrics
from hub.model import StatusUpdate
from hub.ports import Publisher
from hub.settings import CallLog


class StatusSink(Protocol):
    async def apply(self, updates: Sequence[StatusUpdate]) -> list[str]: ...


def _source(log: CallLog) -> LineSource:
    if log.kind == "cdr_csv":
        fmt = CdrFormat(
            columns=tuple(log.columns) or None, timezone=log.timezone, usegmtime=log.usegmtime,
            inbound_contexts=frozenset(log.inbound_contexts),
            outbound_contexts=frozenset(log.outbound_contexts),
        )  # fmt: skip
        return StatelessSource(CdrParser(fmt).parse_line)
    if log.kind == "jsonl":
        return StatelessSource(JsonlParser().parse_line)
    return QueueLogParser()


def call_tailers(
    account: str,
    logs: list[CallLog],
    positions: LogPosition,
    publisher: Publisher,
    clock: Clock,
    metrics: HubMetrics,
    region: str = "ID",
    statuses: StatusSink | None = None,
) -> list[LogTailer]:
    """One tailer per configured log of the account, each a poller for the intake runner.

    A call is never acknowledged automatically (``no_autoreply``: a reply to a call is a
    callback request, and a callback only for "we got it" would waste an agent's call). An
    outbound record naming a callback id (``channels.calls.callbacks``) is published like any
    call (it belongs on the timeline) and also sets the state of the reply that asked for it.
    """

    async def on_records(records: list[CallRecord]) -> None:
        for r in records:
            msg = to_message(r, account, clock.now(), region)
            msg = dataclasses.replace(msg, meta={**msg.meta, "no_autoreply": "call"})
            await publisher.publish(msg)
            metrics.inbound.labels("call", account).inc()
            if statuses is not None and (update := callback_status(r, account)) is not None:
                await statuses.apply([update])

    return [
        LogTailer(
            f"call:{account}:{i}:{log.kind}",
            log.path,
            _source(log),
            positions,
            on_records,
            TailConfig(poll_interval=log.poll_interval, max_lines=log.max_lines),
        )
        for i, log in enumerate(logs)
    ]
