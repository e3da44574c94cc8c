"""What a supervisor sees at a glance: load per channel account, backlog and waiting times per
unit, SLA timers at risk, agents and their load, failures waiting for a replay.

One snapshot is a handful of pipelined reads (queue heads, index intersections, per-minute
counters, stream lengths) plus the SLA timers of the open tickets, so the dashboard and the
alert rules read the same numbers. Built on demand, on each request, from Redis.

What grows with the open tickets (their facts and SLA timers, the tickets opened in the last
24 hours, every waiting ticket's channel) is the *tally*. Two things keep it affordable with
100k open tickets (docs/performance.md):

* SLA timers are not recomputed for a ticket whose states cannot have moved since they were
  last computed (``SlaMemo``: exact, per process).
* A tally that took longer than ``SHARE_ABOVE_S`` to build is shared through Redis for a
  while proportional to its cost (``SHARE_FACTOR`` times, at most ``SHARE_MAX_AGE_S``), so
  every web process, the observer and /metrics show the same numbers and the work is done
  once per deployment, not once per request. Below that cost (every small deployment, every
  test) nothing is shared: each snapshot is built afresh. The cheap, exact parts (unit
  counts, oldest waiting, agents, dead letters, rates) are always read fresh.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

from hub.channelset import ChannelSet
from hub.clock import Clock
from hub.load_stats import INBOUND, OPENED, LoadStats
from hub.percentile import percentile
from hub.ports import Ops, QueueStore, TicketStore
from hub.sla import SlaEngine, TicketFacts

log = structlog.get_logger("hub.dashboard")

DAY_S = 86_400.0
ATTENTION_ROWS = 50
YIELD_EVERY = 250  # rows of a pass over the open tickets between two turns of the event loop
SHARE_ABOVE_S = 0.5  # a tally cheaper than this is never shared: always fresh
CHART_SHARE_ABOVE_S = 0.15  # the same for a chart's data (hours and days, not seconds, matter)
SHARE_FACTOR = 5.0  # a shared tally serves for this many times what it cost to build ...
SHARE_MAX_AGE_S = 30.0  # ... and never longer than this
TALLY_CACHE = "dashboard:tally"


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

    def as_json(self) -> list[Any]:
        """Compact, for the shared tally: the response times only as their median and count."""
        oldest = None if self.oldest_ms == math.inf else self.oldest_ms
        median = percentile(self.response_s, 50)
        return [self.open, self.waiting, oldest, self.at_risk, self.breached, median,
                len(self.response_s)]  # fmt: skip

    @classmethod
    def from_json(cls, row: list[Any]) -> _Tally:
        """A tally that answers the same ``backlog`` as the one serialized (the median and
        its count are what ``backlog`` reads of the response times)."""
        open_, waiting, oldest, at_risk, breached, median, n = row
        responses = [] if median is None else [float(median)] * int(n)
        return cls(int(open_), int(waiting), math.inf if oldest is None else float(oldest),
                   int(at_risk), int(breached), responses)  # fmt: skip


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


@dataclass(frozen=True, slots=True)
class TimerStates:
    """The part of ``SlaTimers`` the dashboard reads."""

    first_response_state: str
    first_response_due: float
    resolution_state: str
    resolution_due: float

    @property
    def at_risk(self) -> bool:
        return "at_risk" in (self.first_response_state, self.resolution_state)

    @property
    def breached(self) -> bool:
        return "breached" in (self.first_response_state, self.resolution_state)


def _attention(row: dict[str, str], timers: TimerStates) -> list[AttentionRow]:
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


@dataclass(frozen=True, slots=True)
class _Seen:
    """One ticket's timers as last computed, and until when each state is sure to hold."""

    at: float
    fr_state: str
    fr_due: float
    fr_risk_at: float  # a pending timer is at risk from about here (inf: not pending)
    res_state: str
    res_due: float
    res_risk_at: float


def _moved(state: str, due: float, risk_at: float, now: float) -> str | None:
    """A timer's state at ``now`` from its state at an earlier instant, when that is certain
    without the clock: done stays done, breached stays breached, at risk stays at risk until
    due, pending stays pending until shortly before ``risk_at``. None: ask the engine."""
    if state in ("met", "missed", "breached"):
        return state
    if now > due:  # the engine's first test for a running timer, on the same due instant
        return "breached"
    if state == "at_risk":
        return state  # elapsed business time never decreases
    if now < risk_at - 1.0:  # a second's margin for the float error of add() vs elapsed()
        return state
    return None


class SlaMemo:
    """``SlaEngine.timers`` for the open tickets, at a ``now`` that moves between snapshots,
    without recomputing a ticket whose states cannot have moved (``_moved``): the business
    calendar walk is the dominant cost of a snapshot, and most tickets' states hold for
    hours. Exact: the engine decides whenever a state could change. Per process."""

    LIMIT = 60_000  # tickets remembered (3 times the open facts a count reads); then anew

    def __init__(self, sla: SlaEngine) -> None:
        self.sla = sla
        self._seen: dict[TicketFacts, _Seen] = {}

    def states(self, facts: TicketFacts, now: float) -> TimerStates:
        seen = self._seen.get(facts)
        if seen is not None and now >= seen.at:
            fr = _moved(seen.fr_state, seen.fr_due, seen.fr_risk_at, now)
            res = _moved(seen.res_state, seen.res_due, seen.res_risk_at, now)
            if fr is not None and res is not None:
                return TimerStates(fr, seen.fr_due, res, seen.res_due)
        t = self.sla.timers(facts, now)
        fr_risk = res_risk = math.inf
        if "pending" in (t.first_response_state, t.resolution_state):
            clock = self.sla.clock_for(self.sla.policy_for(facts.unit, facts.channel,
                                                           facts.priority))  # fmt: skip
            frac = self.sla.section.at_risk_fraction
            if t.first_response_state == "pending":
                fr_risk = clock.add(facts.created_at, frac * t.first_response_target_s)
            if t.resolution_state == "pending":
                res_risk = clock.add(facts.created_at, frac * t.resolution_target_s)
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen[facts] = _Seen(
            now, t.first_response_state, t.first_response_due, fr_risk,
            t.resolution_state, t.resolution_due, res_risk,
        )  # fmt: skip
        return TimerStates(
            t.first_response_state, t.first_response_due, t.resolution_state, t.resolution_due
        )


@runtime_checkable
class SharedCache(Protocol):
    """A small document every hub process reads (``adapters/redis_stats.py``)."""

    async def get_shared(self, name: str) -> str | None: ...

    async def put_shared(self, name: str, value: str, ttl_s: float) -> None: ...

    async def lock_shared(self, name: str, ttl_s: float) -> bool:
        """True for one caller until ``ttl_s`` passes or ``put_shared`` of ``name``."""
        ...

    async def drop_shared(self, name: str) -> None: ...


@dataclass(slots=True)
class Tallies:
    """What a snapshot counts ticket by ticket: open tickets' SLA timers, waiting tickets'
    channels, first responses of the last 24 hours, the tickets needing attention."""

    by_channel: dict[str, _Tally] = field(default_factory=dict)
    by_account: dict[str, _Tally] = field(default_factory=dict)
    by_unit: dict[str, _Tally] = field(default_factory=dict)
    attention: list[AttentionRow] = field(default_factory=list)
    open_counts: dict[str, int] = field(default_factory=dict)  # exact, per unit

    def tallies(self, row: dict[str, str]) -> list[_Tally]:
        channel, account = row.get("channel", ""), row.get("account", "")
        return [
            self.by_channel.setdefault(channel, _Tally()),
            self.by_account.setdefault(f"{channel}/{account}", _Tally()),
            self.by_unit.setdefault(row.get("unit", "general"), _Tally()),
        ]

    def as_value(self) -> dict[str, Any]:
        return {
            "by_channel": {k: t.as_json() for k, t in self.by_channel.items()},
            "by_account": {k: t.as_json() for k, t in self.by_account.items()},
            "by_unit": {k: t.as_json() for k, t in self.by_unit.items()},
            "attention": [asdict(a) for a in self.attention],
            "open_counts": self.open_counts,
        }

    @classmethod
    def from_value(cls, d: dict[str, Any]) -> Tallies:
        return cls(
            {k: _Tally.from_json(v) for k, v in d["by_channel"].items()},
            {k: _Tally.from_json(v) for k, v in d["by_account"].items()},
            {k: _Tally.from_json(v) for k, v in d["by_unit"].items()},
            [AttentionRow(**a) for a in d["attention"]],
            {k: int(v) for k, v in d["open_counts"].items()},
        )


@dataclass(frozen=True, slots=True)
class Shared:
    """A value one process built, as every process reads it back."""

    at: float  # the hub's clock when built
    wall: float  # time.time() when built: the age across processes
    cost_s: float  # how long building took
    value: Any  # JSON

    def age_s(self, now: float) -> float:
        return max(time.time() - self.wall, abs(now - self.at))

    def max_age_s(self) -> float:
        return min(SHARE_MAX_AGE_S, SHARE_FACTOR * self.cost_s)

    def to_json(self) -> str:
        return json.dumps(
            {"at": self.at, "wall": self.wall, "cost_s": self.cost_s, "value": self.value},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> Shared | None:
        try:
            d = json.loads(raw)
            return cls(float(d["at"]), float(d["wall"]), float(d["cost_s"]), d["value"])
        except (ValueError, KeyError, TypeError):
            return None


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("dashboard.rebuild_failed", error=repr(exc)[:300])


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
        cache: SharedCache | None = None,
    ) -> None:
        self.store, self.queue, self.load, self.ops = store, queue, load, ops
        self.channels, self.sla, self.clock = channels, sla, clock
        self.units, self.streams = units, streams
        self.capacity, self.weights = capacity, weights
        self.memo = SlaMemo(sla)
        self._rebuilding: dict[str, asyncio.Task[dict[str, Any]]] = {}
        # The stats adapter keeps the shared tally unless another cache is given.
        self.cache = cache or (load.port if isinstance(load.port, SharedCache) else None)

    async def snapshot(self) -> Snapshot:
        now = self.clock.now()
        # Sequential reads: each is one pipelined round trip, and typed.
        waiting = await self.queue.waiting_counts(self.units)
        oldest = await self.queue.oldest_waiting(self.units)
        tallied = await self.tallies(now)
        open_counts = tallied.open_counts
        rates = await self.load.per_minute(INBOUND, now, 15)
        hour_in = await self.load.port.minutes(INBOUND, now - 3600, now)
        hour_opened = await self.load.port.minutes(OPENED, now - 3600, now)
        by_account, by_unit = tallied.by_account, tallied.by_unit
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
            {name: t.backlog(now) for name, t in sorted(tallied.by_channel.items())},
            tallied.attention,
        )

    async def tallies(self, now: float) -> Tallies:
        value = await self._shared(TALLY_CACHE, now, lambda: self._count(now))
        return Tallies.from_value(value)

    async def _shared(
        self,
        name: str,
        now: float,
        build: Callable[[], Awaitable[dict[str, Any]]],
        above_s: float = SHARE_ABOVE_S,
    ) -> dict[str, Any]:
        """``build()``'s value, or the shared copy while it is fresh enough for what it cost;
        past that, still the shared copy (for up to ``SHARE_MAX_AGE_S`` more) while one
        process, the one that takes the lock, builds anew in the background. So only a cold
        start waits for an expensive build, and it is done once per deployment."""
        if self.cache is None:
            return await build()
        raw = await self.cache.get_shared(name)
        cached = Shared.from_json(raw) if raw else None
        if cached is not None:
            age = cached.age_s(now)
            if age <= cached.max_age_s():
                return dict(cached.value)
            if age <= cached.max_age_s() + SHARE_MAX_AGE_S:
                if name not in self._rebuilding and await self.cache.lock_shared(
                    name, max(5.0, 3 * cached.cost_s)
                ):
                    task = asyncio.create_task(
                        self._build_and_share(name, now, build, above_s, True)
                    )
                    task.add_done_callback(_log_failure)
                    self._rebuilding[name] = task
                return dict(cached.value)
        return await self._build_and_share(name, now, build, above_s, cached is not None)

    async def _build_and_share(
        self,
        name: str,
        now: float,
        build: Callable[[], Awaitable[dict[str, Any]]],
        above_s: float,
        stale: bool = False,
    ) -> dict[str, Any]:
        try:
            wall, started = time.time(), time.perf_counter()
            value = await build()
            cost = time.perf_counter() - started
            if self.cache is not None and cost >= above_s:
                shared = Shared(now, wall, cost, value)
                await self.cache.put_shared(name, shared.to_json(), 4 * SHARE_MAX_AGE_S)
            elif self.cache is not None and stale:
                # Cheap again (fewer tickets, a quieter machine): nobody should keep serving
                # the old shared copy; every snapshot is fresh from now on.
                await self.cache.drop_shared(name)
            return value
        finally:
            if self._rebuilding.get(name) is asyncio.current_task():
                del self._rebuilding[name]

    async def _count(self, now: float) -> dict[str, Any]:
        open_counts = await self.store.open_counts(self.units)  # an intersection per unit
        since = await self.queue.waiting_since(self.units)
        open_facts = await self.store.open_ticket_facts()
        recent = await self.store.ticket_facts(
            await self.store.tickets_created_between(int((now - DAY_S) * 1000), int(now * 1000))
        )
        out = Tallies(open_counts=open_counts)
        attention: list[AttentionRow] = []
        for i, row in enumerate(open_facts):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                # let the process's other work in (requests; in the observer's process, the
                # dispatcher's batches): a thousand rows are about 50 ms of CPU
                await asyncio.sleep(0)
            timers = self.memo.states(facts_of(row), now)
            if timers.at_risk or timers.breached:
                attention += _attention(row, timers)
            waited_ms = since.get(row["id"])
            for t in out.tallies(row):
                t.open += 1
                t.at_risk += timers.at_risk and not timers.breached
                t.breached += timers.breached
                if waited_ms is not None:
                    t.waiting += 1
                    t.oldest_ms = min(t.oldest_ms, waited_ms)
        for row in recent:
            seconds = first_response_s(row)
            if seconds is not None:
                for t in out.tallies(row):
                    t.response_s.append(seconds)
        out.attention = sorted(attention, key=lambda a: (a.due, a.ticket_id))[:ATTENTION_ROWS]
        return out.as_value()

    async def response_times(self, since: float, until: float) -> dict[str, list[float]]:
        """First-response times of the tickets opened in [since, until), per channel, for
        the distribution chart (tickets not answered yet are not in it). Shared like the
        tally when costly (a week holds tens of thousands of tickets)."""
        name = f"dashboard:response:{round(until - since)}"
        got = await self._shared(
            name, until, lambda: self._response_times(since, until), CHART_SHARE_ABOVE_S
        )
        return {k: [float(x) for x in v] for k, v in got.items()}

    async def _response_times(self, since: float, until: float) -> dict[str, Any]:
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
        """Every agent's load from what they hold: one concurrent read of the holdings, one
        of the held tickets' channels (not one round trip per ticket)."""
        presence = await self.queue.presence()
        names = sorted(presence)
        held = await asyncio.gather(*(self.queue.held_by(n) for n in names))
        tids = sorted({t for h in held for t in h})
        fields = await asyncio.gather(*(self.store.get_ticket_fields(t) for t in tids))
        channel = {t: f.get("channel", "") for t, f in zip(tids, fields, strict=True)}
        rows = []
        for name, h in zip(names, held, strict=True):
            load = sum(self.weights.get(channel.get(t, ""), 1) for t in h)
            rows.append(AgentRow(name, presence[name], len(h), load, self.capacity))
        return rows

    async def _dead_letters(self) -> dict[str, int]:
        out = {}
        for stream, group in self.streams:
            stats = await self.ops.stream_stats(stream, group)
            out[stream] = stats.get("dead", 0)
        return out
