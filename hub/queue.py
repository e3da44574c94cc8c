"""The shared queue: who works which ticket, and in what order tickets are taken.

Waiting tickets are ordered by priority, then by how long they have waited. An agent claims
atomically (a lease in Redis, renewed while the agent works; a lapsed lease puts the ticket
back in its place). Units choose a policy: ``manual`` (agents pull), ``round_robin`` or
``least_loaded`` (the hub offers tickets to online agents within their capacity, where a call
weighs more than a chat), and waiting tickets are offered again the moment an agent frees up.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog

from hub.accounts import Principal, User
from hub.errors import Refusal
from hub.ports import EventBus, QueueStore, TicketStore
from hub.settings import Settings

log = structlog.get_logger("hub.queue")
PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
PRESENCE_TTL_S = 90


def queue_score(priority: str, since_ms: int) -> int:
    """Lower is served first: priority dominates, then waiting time."""
    return PRIORITY_RANK.get(priority, 2) * 10**13 + since_ms


class QueueError(Refusal):
    """A claim or transfer that cannot happen (someone else holds it, unknown unit, ...)."""


@dataclass(frozen=True, slots=True)
class ClaimResult:
    ticket_id: str
    agent: str


def waiting_event(tid: str, unit: str) -> dict[str, str]:
    return {"type": "queue.waiting", "ticket_id": tid, "unit": unit}


class QueueService:
    def __init__(
        self,
        settings: Settings,
        queue: QueueStore,
        store: TicketStore,
        events: EventBus,
        users: Any,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.events = events
        self.users = users
        self.lease_ms = int(settings.console.claim_lease_minutes * 60_000)

    def units_for(self, who: Principal) -> list[str]:
        return sorted(self.settings.units) if who.sees_all_units else list(who.units)

    # -- arrivals --------------------------------------------------------------------------

    async def ticket_waiting(self, tid: str, unit: str, priority: str, since_ms: int) -> None:
        """A new or reopened ticket enters its unit's queue (and is offered, by policy)."""
        if await self.enter(tid, unit, priority, since_ms):
            await self.events.publish(waiting_event(tid, unit))
            await self.offer(unit)

    async def enter(self, tid: str, unit: str, priority: str, since_ms: int) -> bool:
        """``ticket_waiting`` without its announcement and offer: True if the ticket now
        waits, and the caller publishes ``waiting_event`` and offers the unit (the
        dispatcher, with its batch's other events in one call)."""
        state = await self.queue.enqueue(tid, unit, queue_score(priority, since_ms))
        return bool(state == "waiting")

    # -- claims --------------------------------------------------------------------------

    async def claim_next(self, who: Principal) -> ClaimResult | None:
        units = self.units_for(who)
        status, tid = await self.queue.claim(who.name, units, self.lease_ms)
        if status == "empty":
            return None
        await self._assigned(tid, who.name, who.name, "claimed")
        return ClaimResult(tid, who.name)

    async def claim(self, who: Principal, tid: str, unit: str) -> ClaimResult:
        if not who.can_see(unit):
            raise QueueError("forbidden", "this ticket belongs to another unit", 403)
        status, other = await self.queue.claim(who.name, [], self.lease_ms, tid)
        if status == "taken":
            raise QueueError("claimed_by_other", f"{other} is working on this ticket")
        if status == "missing":  # open but not queued (e.g. from before the queue existed)
            fields = await self.store.get_ticket_fields(tid)
            if fields.get("status") != "open":
                raise QueueError("not_open", "only open tickets can be claimed")
            await self.queue.enqueue(tid, unit, queue_score(fields.get("priority", ""), 0))
            status, other = await self.queue.claim(who.name, [], self.lease_ms, tid)
            if status != "ok":
                raise QueueError("claimed_by_other", f"{other} is working on this ticket")
        await self._assigned(tid, who.name, who.name, "claimed")
        return ClaimResult(tid, who.name)

    async def ensure_holder(self, who: Principal, tid: str, unit: str) -> None:
        """Before an agent acts on a ticket: theirs, or free (then it becomes theirs)."""
        held = await self.queue.holder(tid)
        now_ms = int(time.time() * 1000)
        if held and held[0] == who.name:
            await self.queue.renew(tid, who.name, self.lease_ms)
            return
        if held and held[1] > now_ms and not who.is_supervisor:
            raise QueueError("claimed_by_other", f"{held[0]} is working on this ticket")
        if not held or held[1] <= now_ms:
            await self.claim(who, tid, unit)

    async def release(self, who: Principal, tid: str) -> None:
        status, holder = await self.queue.release(tid, "" if who.is_supervisor else who.name)
        if status == "not_holder":
            raise QueueError("not_holder", f"{holder} holds this ticket, not you")
        await self.store.add_event(
            tid, {"type": "released", "actor": who.name, "from": holder}, {"assignee": ""}
        )
        await self.events.publish({"type": "ticket.released", "ticket_id": tid, "by": who.name})
        await self.offer(await self.queue.unit_of(tid) or "general")

    async def transfer(
        self, who: Principal, tid: str, unit: str | None = None, agent: str | None = None
    ) -> None:
        if unit is not None and unit not in self.settings.units:
            raise QueueError("unknown_unit", f"no unit {unit!r}", 400)
        fields = await self.store.get_ticket_fields(tid)
        target_unit = unit or fields.get("unit", "general")
        if agent:
            got = await self.users.get(agent)
            if got is None or got[0].disabled:
                raise QueueError("unknown_agent", f"no active agent {agent!r}", 400)
            user: User = got[0]
            if user.role == "agent" and target_unit not in user.units:
                raise QueueError("agent_not_in_unit", f"{agent} is not in unit {target_unit}", 400)
        score = str(queue_score(fields.get("priority", "normal"), int(time.time() * 1000)))
        await self.queue.release(tid, "", "requeue", target_unit, score)
        await self.store.add_event(
            tid,
            {
                "type": "transferred",
                "actor": who.name,
                "unit": target_unit,
                "agent": agent or "",
                "from_unit": fields.get("unit", ""),
            },
            {"unit": target_unit, "assignee": ""},
        )
        if agent:
            status, _ = await self.queue.claim(agent, [], self.lease_ms, tid)
            if status == "ok":
                await self._assigned(tid, agent, who.name, "assigned")
        await self.events.publish(
            {"type": "ticket.transferred", "ticket_id": tid, "unit": target_unit, "agent": agent}
        )
        await self.offer(target_unit)

    async def done(self, tid: str) -> None:
        """Resolved or closed: out of the queue and off its agent's desk."""
        _, holder = await self.queue.release(tid, "", "drop")
        if holder:
            await self.offer_to_agent(holder)

    async def _assigned(self, tid: str, agent: str, actor: str, kind: str) -> None:
        await self.store.add_event(
            tid, {"type": kind, "actor": actor, "agent": agent}, {"assignee": agent}
        )
        await self.events.publish({"type": f"ticket.{kind}", "ticket_id": tid, "agent": agent})
        log.info("ticket.claimed", ticket_id=tid, agent=agent, by=actor)

    # -- lapsed claims and presence --------------------------------------------------------

    async def expire_leases(self) -> int:
        lapsed = await self.queue.expire(int(time.time() * 1000))
        for tid, agent in lapsed:
            await self.store.add_event(
                tid, {"type": "lease_expired", "actor": "hub", "agent": agent}, {"assignee": ""}
            )
            await self.events.publish({"type": "ticket.released", "ticket_id": tid, "by": "hub"})
            await self.offer(await self.queue.unit_of(tid) or "general")
        return len(lapsed)

    async def set_presence(self, who: Principal, state: str) -> None:
        await self.queue.set_presence(who.name, state, PRESENCE_TTL_S)
        await self.events.publish({"type": "agent.presence", "agent": who.name, "state": state})
        if state == "online":
            await self.offer_to_agent(who.name)

    # -- push policies ---------------------------------------------------------------------

    async def load_of(self, agent: str) -> int:
        return (await self.loads_of([agent]))[agent]

    async def loads_of(self, agents: list[str]) -> dict[str, int]:
        """Each agent's load: what they hold, weighted by channel. The holdings and the held
        tickets' channels are read concurrently, not one round trip per ticket."""
        weights = self.settings.console.channel_weights
        held = await asyncio.gather(*(self.queue.held_by(a) for a in agents))
        tids = sorted({t for h in held for t in h})
        fields = await asyncio.gather(*(self.store.get_ticket_fields(t) for t in tids))
        channel = {t: f.get("channel", "") for t, f in zip(tids, fields, strict=True)}
        return {
            a: sum(weights.get(channel.get(t, ""), 1) for t in h)
            for a, h in zip(agents, held, strict=True)
        }

    async def offer_to_agent(self, agent: str) -> None:
        got = await self.users.get(agent)
        if got is None:
            return
        for unit in got[0].units:
            await self.offer(unit)

    async def offer(self, unit: str) -> int:
        """Push waiting tickets of a round-robin or least-loaded unit to online agents."""
        cfg = self.settings.units.get(unit)
        if cfg is None or cfg.policy == "manual":
            return 0
        cap = self.settings.console.agent_capacity
        weights = self.settings.console.channel_weights
        presence = await self.queue.presence()
        members = [
            u
            for u in await self.users.all()
            if not u.disabled and unit in u.units and presence.get(u.username) == "online"
        ]
        if not members:
            return 0
        # The members' loads are read once, then kept up to date with what this call gives.
        loads = await self.loads_of([u.username for u in members])
        given = 0
        for tid in await self.queue.waiting(unit, 0, 50):
            channel = (await self.store.get_ticket_fields(tid)).get("channel", "")
            need = weights.get(channel, 1)
            fits = [name for name, load in loads.items() if load + need <= cap]
            if not fits:
                break
            if cfg.policy == "round_robin":
                agent = await self.queue.rr_next(unit, fits)
            else:
                agent = min(fits, key=lambda n: (loads[n], n))
            status, _ = await self.queue.claim(agent, [], self.lease_ms, tid)
            if status == "ok":
                await self._assigned(tid, agent, "hub", "assigned")
                loads[agent] += need
                given += 1
        return given
