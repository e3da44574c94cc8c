"""The supervisors' watchman: every ``evaluate_every_s`` it reads the live numbers, samples
the backlog for the charts, evaluates the alert rules, announces what fired or cleared, and
escalates tickets whose SLA timers are at risk or breached.

One observer evaluates per deployment (a Redis lease, like the pollers), in the processes
with the ``observer`` role (``--role observer``; every role by default); if its process dies
another takes over, starting from the state the last one saved. Every step is idempotent
against that saved state: the alert transitions are computed from it and saved with the
notifications still owed before anything is announced; an escalation is recorded on the
ticket with a flag that says it was done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from hub.alert_board import OUTBOX_MAX_AGE_S, AlertBoard, BoardState
from hub.alerts import (
    AlertEngine,
    AlertTransition,
    ChannelLoad,
    LoadSnapshot,
    SourceHealth,
    UnitLoad,
)
from hub.clock import Clock
from hub.dashboard import YIELD_EVERY, Dashboard, Snapshot, TimerStates, facts_of
from hub.intake import Lease
from hub.load_stats import LoadStats
from hub.ports import EventBus, TicketStore
from hub.sla import SlaEngine, SlaTimers
from hub.source_health import HealthReporter

log = structlog.get_logger("hub.observer")

# Ticket fields that remember how far each timer was escalated ("at_risk", then "breached").
ESCALATION_FIELDS = {"first_response": "sla_first_response", "resolution": "sla_resolution"}
_LEVEL = {"": 0, "at_risk": 1, "breached": 2}


class Notifier(Protocol):
    async def send(self, transition: AlertTransition) -> bool: ...


@dataclass(frozen=True, slots=True)
class Escalation:
    ticket_id: str
    unit: str
    timer: str  # first_response | resolution
    state: str  # at_risk | breached
    due: float


def escalations(row: dict[str, str], timers: SlaTimers | TimerStates) -> list[Escalation]:
    """What this open ticket's timers call for that was not done yet: each timer escalates
    once on reaching at_risk and once on breaching (a ticket found already breached skips
    the at-risk step)."""
    out = []
    for timer, state, due in (
        ("first_response", timers.first_response_state, timers.first_response_due),
        ("resolution", timers.resolution_state, timers.resolution_due),
    ):
        done = _LEVEL.get(row.get(ESCALATION_FIELDS[timer], ""), 0)
        if state in ("at_risk", "breached") and _LEVEL[state] > done:
            out.append(Escalation(row["id"], row.get("unit", "general"), timer, state, due))
    return out


def load_snapshot(snap: Snapshot, sources: Sequence[SourceHealth]) -> LoadSnapshot:
    """The dashboard's numbers as the alert engine reads them: both see the same figures."""
    return LoadSnapshot(
        at=snap.at,
        channels=[
            ChannelLoad(c.channel, c.account, round(c.inbound_per_min * 15), c.last_inbound_at)
            for c in snap.channels
        ],
        units=[
            UnitLoad(u.unit, u.waiting, u.open, u.oldest_waiting_s, u.sla_breached, u.sla_at_risk)
            for u in snap.units
        ],
        dead_letters=sum(snap.dead_letters.values()),
        sources=list(sources),
    )


class Observer:
    def __init__(
        self,
        engine: AlertEngine,
        board: AlertBoard,
        dashboard: Dashboard,
        load: LoadStats,
        health: HealthReporter,
        store: TicketStore,
        sla: SlaEngine,
        events: EventBus,
        clock: Clock,
        notifier: Notifier | None = None,
        every_s: float = 15.0,
        escalate: bool = True,
    ) -> None:
        self.engine, self.board, self.dashboard, self.load = engine, board, dashboard, load
        self.health, self.store, self.sla, self.events = health, store, sla, events
        self.clock, self.notifier, self.every_s = clock, notifier, every_s
        self.escalate = escalate
        self._stop = asyncio.Event()
        self.ticks = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self, lease: Lease, owner: str) -> None:
        ttl_ms = int(max(self.every_s * 3, 15) * 1000)
        while not self._stop.is_set():
            try:
                if await lease.hold(owner, ttl_ms):
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: try again next round, never die
                log.warning("observer.tick_failed", error=repr(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every_s)
        with contextlib.suppress(Exception):
            await lease.release(owner)

    async def tick(self) -> list[AlertTransition]:
        """One round; returns the transitions announced (delivered or not) this round."""
        snap = await self.dashboard.snapshot()
        now = snap.at
        await self.load.sample_backlog({u.unit: u.waiting for u in snap.units}, now)
        state = await self.board.load()
        new_alerts, transitions = self.engine.evaluate(
            load_snapshot(snap, await self.health.all()), state.alerts
        )
        state.alerts = new_alerts
        state.outbox += transitions
        await self.board.save(state)  # owed before announced: a crash re-announces, not loses
        for tr in transitions:
            log.warning(f"alert.{tr.kind}", key=tr.key, rule=tr.rule, severity=tr.severity)
            await self.events.publish(
                {"type": f"alert.{tr.kind}", "key": tr.key, "rule": tr.rule,
                 "severity": tr.severity, "subject": tr.subject, "at": tr.at}
            )  # fmt: skip
        if state.outbox:
            await self._announce(state, now)
        if self.escalate:
            await self._escalate(now)
        self.ticks += 1
        return transitions

    async def _announce(self, state: BoardState, now: float) -> None:
        """In order; when Telegram refuses one, it and everything after it wait for the next
        round (a RESOLVED must never arrive before its FIRING)."""
        owed: list[AlertTransition] = []
        for i, tr in enumerate(state.outbox):
            if now - tr.at > OUTBOX_MAX_AGE_S:
                log.warning("alert.announcement_dropped", key=tr.key, kind=tr.kind)
                continue
            if self.notifier is not None and not await self.notifier.send(tr):
                owed = state.outbox[i:]
                break
        if owed != state.outbox:
            state.outbox = owed
            await self.board.save(state)

    async def _escalate(self, now: float) -> None:
        for i, row in enumerate(await self.store.open_ticket_facts()):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                # the pass may share its process with other roles (a dispatcher's batches,
                # webhooks): they must not wait for it
                await asyncio.sleep(0)
            try:
                # the dashboard's memo: a ticket whose states cannot have moved since the
                # last pass is not walked through the business calendar again
                timers = self.dashboard.memo.states(facts_of(row), now)
            except ValueError:
                continue  # an inconsistent row (a status without resolved_at): not ours
            for esc in escalations(row, timers):
                await self.store.add_event(
                    esc.ticket_id,
                    {"type": "sla_escalated", "actor": "hub", "timer": esc.timer,
                     "state": esc.state, "due": int(esc.due * 1000)},
                    {ESCALATION_FIELDS[esc.timer]: esc.state},
                )  # fmt: skip
                await self.events.publish(
                    {"type": "ticket.sla", "ticket_id": esc.ticket_id, "unit": esc.unit,
                     "timer": esc.timer, "state": esc.state, "due": esc.due}
                )  # fmt: skip
                log.info(
                    "ticket.sla_escalated", ticket_id=esc.ticket_id, timer=esc.timer,
                    state=esc.state,
                )  # fmt: skip
