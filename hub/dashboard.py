"""What a supervisor sees at a glance: load per channel account, backlog and waiting times per
unit, SLA timers at risk, agents and their load, failures waiting for a replay.

One snapshot is a handful of pipelined reads (queue heads, index intersections, per-minute
counters, stream lengths) plus the SLA timers of the open tickets, so the dashboard and the
alert rules read the same numbers. Built on demand, on each request.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from hub.channelset import ChannelSet
from hub.clock import Clock
from hub.load_stats import INBOUND, OPENED, LoadStats
from hub.percentile import percentile
from hub.ports import Ops, QueueStore, TicketStore
from hub.sla import SlaEngine, SlaTimers, TicketFacts

DAY_S = 86_400.0
ATTENTION_ROWS = 50


@dataclass(frozen=True, slots=True)
class Backlog:
    """Where citizens wait, for one channel account or one unit."""

    waiting: int  # in the queue, no agent holds them
    open: int  # waiting or held
    oldest_waiting_s: float  # 0 when nothing waits
    sla_at_risk: int
    sla_breached: int
    first_response_median_s: float | None  # tickets opened in the last 24 hours
    first_responses: int  # how many of those were answered (the median's sample)


@dataclass(frozen=True, slots=True)
class ChannelRow:
    channel: str
    account: str
    inbound_per_min: float  # over the last 15 minutes
    inbound_last_hour: int
    opened_last_hour: int
    last_inbound_at: float | None
    backlog: Backlog


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit: str
    waiting: int
    open: int
    oldest_waiting_s: float
    sla_at_risk: int
    sla_breached: int
    first_response_median_s: float | None
    first_responses: int


@dataclass(frozen=True, slots=True)
class AgentRow:
    name: str
    presence: str  # online | away | offline
    holding: int
    load: int  # holding weighted by channel (a call counts more)
    capacity: int

    @property
    def occupancy(self) -> float:
        return min(1.0, self.load / self.capacity) if self.capacity else 0.0


@dataclass(frozen=True, slots=True)
class AttentionRow:
    """An open ticket whose SLA timer is at risk or breached: what a supervisor acts on."""

    ticket_id: str
    number: str
    unit: str
    channel: str
    assignee: str
    timer: str  # first_response | resolution
    state: str  # at_risk | breached
    due: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    channels: list[ChannelRow]
    units: list[UnitRow]
    agents: list[AgentRow]
    dead_letters: dict[str, int]  # stream → entries waiting for a replay
    by_channel: dict[str, Backlog] = field(default_factory=dict)  # every account summed
    attention: list[AttentionRow] = field(default_factory=list)  # most overdue first

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["agents"] = [{**asdict(a), "occupancy": round(a.occupancy, 3)} for a in self.agents]
        return out


@dataclass(slots=True)
class _Tally:
    open: int = 0
    waiting: int = 0
    oldest_ms: float = math.inf
    at_risk: int = 0
    breached: int = 0
    response_s: list[float] = field(default_factory=list)

    def backlog(self, now: float) -> Backlog:
        oldest = max(0.0, now - self.oldest_ms / 1000) if self.waiting else 0.0
        median = percentile(self.response_s, 50)
        return Backlog(
            self.waiting, self.open, oldest, self.at_risk, self.breached, median,
            len(self.response_s),
        )  # fmt: skip


def facts_of(row: dict[str, str]) -> TicketFacts:
    def ts(name: str) -> float | None:
        raw = row.get(name)
        return float(raw) / 1000 if raw else None

    return TicketFacts(
        unit=row.get("unit", "general"),
        channel=row.get("channel", ""),
        priority=row.get("priority", "normal"),
        created_at=float(row.get("created_at", "0")) / 1000,
        first_response_at=ts("first_response_at"),
        resolved_at=ts("resolved_at"),
        status=row.get("status", "open"),
    )


def _attention(row: dict[str, str], timers: SlaTimers) -> list[AttentionRow]:
    return [
        AttentionRow(
            row["id"],
            row.get("number", ""),
            row.get("unit", "general"),
            row.get("channel", ""),
            row.get("assignee", ""),
            timer,
            state,
            due,
        )
        for timer, state, due in (
            ("first_response", timers.first_response_state, timers.first_response_due),
            ("resolution", timers.resolution_state, timers.resolution_due),
        )
        if state in ("at_risk", "breached")
    ]


def first_response_s(row: dict[str, str]) -> float | None:
    """Wall-clock seconds from the citizen's first message to the first officer reply; None
    when there is none yet, or the ticket was merged into another (counted there)."""
    if row.get("merged_into") or not row.get("first_response_at"):
        return None
    return max(0.0, (int(row["first_response_at"]) - int(row["created_at"])) / 1000)


class Dashboard:
    def __init__(
        self,
        store: TicketStore,
        queue: QueueStore,
        load: LoadStats,
        ops: Ops,
        channels: ChannelSet,
        sla: SlaEngine,
        clock: Clock,
        units: list[str],
        streams: list[tuple[str, str]],
        capacity: int,
        weights: dict[str, int],
    ) -> None:
        self.store, self.queue, self.load, self.ops = store, queue, load, ops
        self.channels, self.sla, self.clock = channels, sla, clock
        self.units, self.streams = units, streams
        self.capacity, self.weights = capacity, weights

    async def snapshot(self) -> Snapshot:
        now = self.clock.now()
        # Sequential reads: each is one pipelined round trip, and typed.
        waiting = await self.queue.waiting_counts(self.units)
        oldest = await self.queue.oldest_waiting(self.units)
        since = await self.queue.waiting_since(self.units)
        open_counts = await self.store.open_counts(self.units)
        open_facts = await self.store.open_ticket_facts()
        recent = await self.store.ticket_facts(
            await self.store.tickets_created_between(int((now - DAY_S) * 1000), int(now * 1000))
        )
        rates = await self.load.per_minute(INBOUND, now, 15)
        hour_in = await self.load.port.minutes(INBOUND, now - 3600, now)
        hour_opened = await self.load.port.minutes(OPENED, now - 3600, now)
        by_channel: dict[str, _Tally] = {}
        by_account: dict[str, _Tally] = {}
        by_unit: dict[str, _Tally] = {}

        def tallies(row: dict[str, str]) -> list[_Tally]:
            channel, account = row.get("channel", ""), row.get("account", "")
            return [
                by_channel.setdefault(channel, _Tally()),
                by_account.setdefault(f"{channel}/{account}", _Tally()),
                by_unit.setdefault(row.get("unit", "general"), _Tally()),
            ]

        attention: list[AttentionRow] = []
        for row in open_facts:
            timers = self.sla.timers(facts_of(row), now)
            attention += _attention(row, timers)
            waited_ms = since.get(row["id"])
            for t in tallies(row):
                t.open += 1
                t.at_risk += timers.at_risk and not timers.breached
                t.breached += timers.breached
                if waited_ms is not None:
                    t.waiting += 1
                    t.oldest_ms = min(t.oldest_ms, waited_ms)
        for row in recent:
            seconds = first_response_s(row)
            if seconds is not None:
                for t in tallies(row):
                    t.response_s.append(seconds)
        opened: Counter[str] = Counter()
        for opened_subject, counts in hour_opened.items():
            opened[opened_subject.split("|")[0]] += int(sum(counts.values()))
        channels = []
        for ch in sorted(self.channels, key=lambda c: (c.name, c.account)):
            subject = f"{ch.name}/{ch.account}"
            per_minute = hour_in.get(subject, {})
            channels.append(
                ChannelRow(
                    ch.name,
                    ch.account,
                    round(rates.get(subject, 0.0), 2),
                    int(sum(per_minute.values())),
                    opened.get(subject, 0),
                    max(per_minute) * 60.0 if per_minute else None,
                    by_account.get(subject, _Tally()).backlog(now),
                )
            )
        units = []
        for u in self.units:
            b = by_unit.get(u, _Tally()).backlog(now)
            units.append(
                UnitRow(
                    u,
                    waiting.get(u, 0),  # exact counts: the tallies stop at the read limit
                    open_counts.get(u, 0),
                    max(0.0, now - oldest[u] / 1000) if u in oldest else 0.0,
                    b.sla_at_risk,
                    b.sla_breached,
                    b.first_response_median_s,
                    b.first_responses,
                )
            )
        return Snapshot(
            now,
            channels,
            units,
            await self._agents(),
            await self._dead_letters(),
            {name: t.backlog(now) for name, t in sorted(by_channel.items())},
            sorted(attention, key=lambda a: (a.due, a.ticket_id))[:ATTENTION_ROWS],
        )

    async def response_times(self, since: float, until: float) -> dict[str, list[float]]:
        """First-response times of the tickets opened in [since, until), per channel, for
        the distribution chart (tickets not answered yet are not in it)."""
        rows = await self.store.ticket_facts(
            await self.store.tickets_created_between(int(since * 1000), int(until * 1000))
        )
        out: dict[str, list[float]] = {}
        for row in rows:
            seconds = first_response_s(row)
            if seconds is not None:
                out.setdefault(row.get("channel", ""), []).append(seconds)
        return out

    async def _agents(self) -> list[AgentRow]:
        presence = await self.queue.presence()
        rows = []
        for name, state in sorted(presence.items()):
            held = await self.queue.held_by(name)
            load = 0
            for tid in held:
                fields = await self.store.get_ticket_fields(tid)
                load += self.weights.get(fields.get("channel", ""), 1)
            rows.append(AgentRow(name, state, len(held), load, self.capacity))
        return rows

    async def _dead_letters(self) -> dict[str, int]:
        out = {}
        for stream, group in self.streams:
            stats = await self.ops.stream_stats(stream, group)
            out[stream] = stats.get("dead", 0)
        return out
