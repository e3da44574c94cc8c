"""What a supervisor sees at a glance: load per channel account, backlog and waiting times per
unit, SLA timers at risk, agents and their load, failures waiting for a replay.

One snapshot is a handful of pipelined reads (queue heads, index intersections, per-minute
counters, stream lengths) plus the SLA timers of the open tickets, so the dashboard and the
alert rules read the same numbers. Built on demand, on each request.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from hub.channelset import ChannelSet
from hub.clock import Clock
from hub.load_stats import INBOUND, OPENED, LoadStats
from hub.ports import Ops, QueueStore, TicketStore
from hub.sla import SlaEngine, TicketFacts


@dataclass(frozen=True, slots=True)
class ChannelRow:
    channel: str
    account: str
    inbound_per_min: float  # over the last 15 minutes
    inbound_last_hour: int
    opened_last_hour: int
    last_inbound_at: float | None


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit: str
    waiting: int
    open: int
    oldest_waiting_s: float
    sla_at_risk: int
    sla_breached: int
    first_response_median_s: float | None  # tickets answered in the last 24 hours


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
class Snapshot:
    at: float
    channels: list[ChannelRow]
    units: list[UnitRow]
    agents: list[AgentRow]
    dead_letters: dict[str, int]  # stream → entries waiting for a replay
    sla_by_channel: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["agents"] = [{**asdict(a), "occupancy": round(a.occupancy, 3)} for a in self.agents]
        return out


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
        open_counts = await self.store.open_counts(self.units)
        open_facts = await self.store.open_ticket_facts()
        rates = await self.load.per_minute(INBOUND, now, 15)
        hour_in = await self.load.port.minutes(INBOUND, now - 3600, now)
        hour_opened = await self.load.port.minutes(OPENED, now - 3600, now)
        at_risk: Counter[str] = Counter()
        breached: Counter[str] = Counter()
        by_channel: dict[str, dict[str, int]] = {}
        for row in open_facts:
            timers = self.sla.timers(facts_of(row), now)
            unit, channel_name = row.get("unit", "general"), row.get("channel", "")
            c = by_channel.setdefault(channel_name, {"at_risk": 0, "breached": 0})
            if timers.breached:
                breached[unit] += 1
                c["breached"] += 1
            elif timers.at_risk:
                at_risk[unit] += 1
                c["at_risk"] += 1
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
                )
            )
        units = [
            UnitRow(
                u,
                waiting.get(u, 0),
                open_counts.get(u, 0),
                max(0.0, now - oldest[u] / 1000) if u in oldest else 0.0,
                at_risk[u],
                breached[u],
                None,
            )
            for u in self.units
        ]
        return Snapshot(
            now,
            channels,
            units,
            await self._agents(),
            await self._dead_letters(),
            by_channel,
        )

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
