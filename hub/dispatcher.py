"""The dispatcher: inbound stream entries become messages on tickets, once and in order.

Each inbound shard is worked by one dispatcher at a time (a lease in Redis), and a sender's
messages always land on the same shard, so one citizen's messages are applied in the order
they arrived. A batch is applied with a few pipelined round trips (contacts, tickets, numbers,
indexes), then acked; a crash before the ack leaves the entries pending, and whoever holds the
shard next reclaims them. The store's scripts dedupe on the provider's message id, so applying
an entry twice changes nothing. Entries that keep failing go to the shard's dead-letter stream.

Latency and throughput: a batch's time is its dependent round trips, each waiting its turn on
a loop shared with the other shards and the sender, so they are few. Contacts, then the
messages; then, together, the list indexes (their fields came with the messages' answer), the
load counters and, when the batch opened tickets, their numbers (with the new tickets'
hashes, for their acknowledgements) followed by what shows or sends a number: the
acknowledgements, the search terms, the console events and the queue. The store's pipeliner
lets concurrent steps share round trips. The batch is acknowledged with the shard's next read
(one pipeline), and the lease is renewed every sixth of its time, not per batch: a batch that
opens no ticket costs four round trips, read included. Per message the client sends two
script calls (contact, message); the indexes, the search terms and the console events of a
batch are one script call each, on their own hash tag (cluster-safe). Logs: one
``dispatch.batch`` line per batch at info; ``message.applied`` per message is at debug
(``message.duplicate`` stays at info: redeliveries are rare and worth seeing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import structlog

from hub.ack import Acknowledger
from hub.channelset import ChannelSet
from hub.load_stats import LoadStats
from hub.metrics import HubMetrics
from hub.model import Message
from hub.ports import (
    Applied,
    EventBus,
    Group,
    Roster,
    Route,
    StreamEntry,
    TicketStore,
    split_ticket_id,
)
from hub.queue import QueueService, waiting_event
from hub.routing import Router
from hub.search import SearchDoc, SearchPort
from hub.settings import DispatcherSection
from hub.side_events import SIDE_KINDS, SideEvents

log = structlog.get_logger("hub.dispatcher")
TRIM_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    batch_size: int
    block_ms: int
    claim_idle_ms: int
    lease_ms: int
    max_deliveries: int
    reopen_window_ms: int
    retention_ms: int = 24 * 3600 * 1000

    @classmethod
    def from_settings(
        cls, s: DispatcherSection, reopen_window_hours: float, retention_hours: float = 24.0
    ) -> DispatchOptions:
        return cls(
            s.batch_size,
            s.block_ms,
            s.claim_idle_ms,
            s.lease_ms,
            s.max_deliveries,
            int(reopen_window_hours * 3600 * 1000),
            int(retention_hours * 3600 * 1000),
        )


class Dispatcher:
    def __init__(
        self,
        store: TicketStore,
        groups: Sequence[Group],
        acknowledger: Acknowledger,
        channels: ChannelSet,
        options: DispatchOptions,
        owner: str,
        metrics: HubMetrics,
        router: Router,
        events: EventBus,
        queue: QueueService | None = None,
        search: SearchPort | None = None,
        stats: LoadStats | None = None,
        roster: Roster | None = None,
    ) -> None:
        self.search = search
        self.stats = stats
        self.router = router
        self.events = events
        self.queue = queue
        self.store = store
        self.groups = list(groups)
        self.ack = acknowledger
        self.channels = channels
        self.opt = options
        self.owner = owner
        self.metrics = metrics
        self.heartbeat = 0.0
        self._stop = asyncio.Event()
        self.side = SideEvents(store, events)
        # Scale-out: with a roster of the live dispatchers, each holds at most its fair share
        # of the shards, ceil(shards / dispatchers); one that joins gets shards handed over.
        self.roster = roster
        self.share = len(self.groups)
        self.holding: set[str] = set()

    async def run(self) -> None:
        for g in self.groups:
            await g.ensure()
        if self.roster is not None:
            await self._beat()  # know the share before taking any shard
        async with asyncio.TaskGroup() as tg:
            if self.roster is not None:
                tg.create_task(self._keep_roster(), name="dispatch:roster")
            for g in self.groups:
                tg.create_task(self._work_shard(g), name=f"dispatch:{g.stream}")

    async def _beat(self) -> None:
        assert self.roster is not None
        try:
            # forgotten when its leases lapse too: a dead dispatcher delays no takeover
            alive = await self.roster.beat(self.owner, self.opt.lease_ms)
        except Exception as exc:
            log.warning("dispatcher.roster_failed", error=repr(exc)[:200])
            return
        share = -(-len(self.groups) // max(1, alive))
        if share != self.share:
            log.info("dispatcher.share", share=share, dispatchers=alive, shards=len(self.groups))
        self.share = share

    async def _keep_roster(self) -> None:
        assert self.roster is not None
        try:
            while not self._stop.is_set():
                await self._pause(self.opt.lease_ms / 3000)
                if not self._stop.is_set():
                    await self._beat()
        finally:
            with contextlib.suppress(Exception):
                await self.roster.leave(self.owner)

    def _within_share(self, stream: str, held: bool) -> bool:
        """May this dispatcher hold (or try for) ``stream``? Counted without awaiting, so
        the shard tasks of one process never overshoot the share between round trips."""
        if held:
            if len(self.holding) > self.share:
                self.holding.discard(stream)
                return False
            return True
        self.holding.discard(stream)
        if len(self.holding) >= self.share:
            return False
        self.holding.add(stream)  # reserved before the lease round trip
        return True

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def pause(self, seconds: float) -> None:
        await self._pause(seconds)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _work_shard(self, group: Group) -> None:
        held = resync = False
        retries = 0  # resyncs in a row that left a failed entry pending
        last_claim = last_trim = renewed = 0.0
        # The lease is renewed every sixth of its time, not every batch (a round trip less
        # per batch): a read blocks at most a third, so a batch starts with at least half of
        # the lease left.
        renew_every = self.opt.lease_ms / 6000
        read_block = max(1, min(self.opt.block_ms, self.opt.lease_ms // 3))
        applied: list[str] = []  # entries applied, acknowledged with the next read
        while not self._stop.is_set():
            self.heartbeat = time.time()
            try:
                if not self._within_share(group.stream, held):
                    applied = await _ack_now(group, applied)
                    if held:  # another dispatcher joined: hand over (nothing is in flight)
                        log.info("dispatcher.lease_handed_over", stream=group.stream)
                        await group.release_lease(self.owner)
                    held = False
                    await self._pause(self.opt.lease_ms / 3000)
                    continue
                if not held or time.monotonic() - renewed >= renew_every:
                    applied = await _ack_now(group, applied)  # applied under the lease
                    if not await group.hold_lease(self.owner, self.opt.lease_ms):
                        self.holding.discard(group.stream)
                        if held:
                            log.warning("dispatcher.lease_lost", stream=group.stream)
                        held = False
                        await self._pause(self.opt.lease_ms / 3000)
                        continue
                    renewed = time.monotonic()
                min_idle = self.opt.claim_idle_ms
                if not held:
                    # The previous holder let its lease lapse: everything it read and did not
                    # ack is ours now, before any newer entry, so order per citizen holds.
                    # (Counted as a delivery: it may have died of one of them.)
                    log.info("dispatcher.lease_taken", stream=group.stream, owner=self.owner)
                    held, last_claim, min_idle, resync = True, 0.0, 0, False
                if resync:
                    # Entries are pending that must go before any newer one: an entry that
                    # failed and the later ones of its citizen (``process``), or those of a
                    # read whose answer was lost (a round trip that failed may have been
                    # carried out by Redis all the same). Take them all back, oldest first,
                    # without counting a delivery; until that works, read nothing new.
                    if not await self._resync(group):
                        retries += 1
                        await self._pause(self._retry_pause(retries))
                        continue
                    resync, retries = False, 0
                now = time.monotonic()
                if now - last_claim >= self.opt.claim_idle_ms / 2000:
                    last_claim = now
                    applied = await _ack_now(group, applied)
                    while reclaimed := await group.claim_idle(min_idle, self.opt.batch_size):
                        log.info("dispatcher.reclaimed", stream=group.stream, count=len(reclaimed))
                        if await self.process(group, reclaimed):
                            resync = True
                            break
                        if len(reclaimed) < self.opt.batch_size:
                            break
                    if resync:
                        await self._pause(self._retry_pause(retries))
                        continue
                if now - last_trim >= TRIM_EVERY_S:
                    last_trim = now
                    await group.trim_processed(self.opt.retention_ms, int(time.time() * 1000))
                entries = await group.read_new(self.opt.batch_size, read_block, applied)
                applied = []
                if entries and await self.process(group, entries, applied):
                    resync = True
                    applied = await _ack_now(group, applied)
                    await self._pause(self._retry_pause(retries))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("dispatcher.loop_failed", stream=group.stream, error=repr(exc)[:300])
                # Entries applied and not yet acknowledged stay pending: the resync applies
                # them again (a no-op: deduped) and acknowledges them.
                applied, resync = [], True
                await self._pause(1.0)
        self.holding.discard(group.stream)
        with contextlib.suppress(Exception):
            await _ack_now(group, applied)
        with contextlib.suppress(Exception):
            await group.release_lease(self.owner)

    def _retry_pause(self, retries: int) -> float:
        """Before the next attempt at a failed entry (its shard reads nothing new meanwhile):
        1 s, then doubling up to ``claim_idle_ms``, so that a failure lasting seconds with
        Redis reachable (a failover's READONLY, OOM) spends a healthy entry's deliveries over
        about 15 s (5 attempts) instead of 4, while a poison entry still leaves soon."""
        return float(min(2**retries, max(1.0, self.opt.claim_idle_ms / 1000)))

    async def _resync(self, group: Group) -> bool:
        """Apply the shard's pending entries, oldest first, taken back without counting a
        delivery (``Group.retake_pending``); False if a failure left some pending again."""
        log.info("dispatcher.resync", stream=group.stream)
        while entries := await group.retake_pending(self.opt.batch_size):
            if await self.process(group, entries):
                return False
            if len(entries) < self.opt.batch_size:
                break
        return True

    async def process(
        self, group: Group, entries: Sequence[StreamEntry], ack_later: list[str] | None = None
    ) -> bool:
        """Apply a batch; on failure, entry by entry, so one poison entry cannot block others.
        The batch's entries are acknowledged once applied, or, given ``ack_later``, added to
        it for the caller to acknowledge with its next read (``Group.read_new``).

        Once an entry fails there, the later entries of the same citizen (the sender, the
        shard key) are left pending with it, neither applied nor acked: applied now, they
        would overtake it. True when that happened: the caller must then apply the pending
        entries (``Group.retake_pending``) before reading newer ones. The failed attempt is
        counted as a delivery; after ``max_deliveries`` the entry is dead-lettered and the
        citizen's later entries go on."""
        ready: list[tuple[StreamEntry, Message]] = []
        for e in entries:
            if e.deliveries > self.opt.max_deliveries:
                await self._dead(group, e, "delivered too many times without success")
                continue
            try:
                ready.append((e, Message.from_json(e.fields["m"])))
            except Exception as exc:
                await self._dead(group, e, f"unreadable entry: {exc!r}"[:300])
        if not ready:
            return False
        start = time.perf_counter()
        held_back: set[str] = set()  # citizens (senders) whose entry failed in this batch
        try:
            texts = {m.id: e.fields["m"] for e, m in ready}
            applied = await self.apply([m for _, m in ready], texts)
            if ack_later is None:
                await group.ack([e.id for e, _ in ready])
            else:
                ack_later += [e.id for e, _ in ready]
            outcomes = Counter(a.outcome.split(":")[0] for a in applied)
            log.info(
                "dispatch.batch",
                stream=group.stream,
                entries=len(ready),
                ms=round((time.perf_counter() - start) * 1000, 1),
                **outcomes,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("dispatcher.batch_failed", stream=group.stream, error=repr(exc)[:300])
            for e, m in ready:
                if m.sender in held_back:
                    log.info("dispatcher.entry_held_back", stream=group.stream, entry=e.id)
                    continue
                try:
                    await self.apply([m])
                    await group.ack([e.id])
                except asyncio.CancelledError:
                    raise
                except Exception as one_exc:
                    log.error(
                        "dispatcher.entry_failed",
                        stream=group.stream,
                        entry=e.id,
                        message_id=m.id,
                        deliveries=e.deliveries,
                        error=repr(one_exc)[:300],
                    )
                    if not await self._failed(group, e, repr(one_exc)):
                        held_back.add(m.sender)
        self.metrics.dispatch_seconds.observe(time.perf_counter() - start)
        return bool(held_back)

    async def _failed(self, group: Group, e: StreamEntry, error: str) -> bool:
        """An attempt at ``e`` failed: dead-letter it if that was its last (True: it is out of
        the way), else count the attempt as a delivery (False: it stays pending). If Redis
        takes neither (unreachable: no fault of the entry's), the entry stays pending and is
        tried again, uncounted."""
        try:
            if e.deliveries >= self.opt.max_deliveries:
                await self._dead(group, e, error)
                return True
            await group.count_failed_delivery(e.id, e.deliveries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("dispatcher.count_failed", stream=group.stream, error=repr(exc)[:300])
        return False

    async def _dead(self, group: Group, e: StreamEntry, error: str) -> None:
        await group.dead_letter(e, error)
        self.metrics.dead_lettered.labels(group.stream).inc()
        log.error("dispatcher.dead_lettered", stream=group.stream, entry=e.id, error=error[:200])

    async def _ack_needed(self, a: Applied) -> bool:
        """A redelivered first message re-sends its acknowledgement only if it never left:
        the enqueue may have been lost with a crash between storing the reply and XADD."""
        if not a.duplicate or not a.ack_reply:
            return True
        entry = await self.store.get_entry(a.contact_id, a.ack_reply)
        return entry.get("state") == "queued"

    async def _routes(
        self, cids: Sequence[str], msgs: Sequence[Message]
    ) -> list[tuple[str, Message, Route]]:
        """Where each message goes. A thread hint the hub knows (an e-mail it stored or sent,
        a portal request) names the ticket, whoever sends; a ticket number quoted in a subject
        counts only from that ticket's own contact, so strangers cannot write into it."""
        hints = [h for m in msgs for h in m.thread_hints]
        known = await self.store.find_threads(hints) if hints else {}
        out = []
        for cid, m in zip(cids, msgs, strict=True):
            route = self.router.route(m)
            target = next(
                (known[h] for h in m.thread_hints
                 if h in known and not h.startswith("ticket-number:")),
                None,
            ) or next(
                (known[h] for h in m.thread_hints
                 if h in known and split_ticket_id(known[h])[0] == cid),
                None,
            )  # fmt: skip
            if target is None:
                out.append((cid, m, route))
                continue
            tcid, tn = split_ticket_id(target)
            out.append((tcid, m, replace(route, ticket_n=tn, foreign_sender=tcid != cid)))
        return out

    async def _ensure_ack(
        self, a: Applied, m: Message, number: str, fields: dict[str, str] | None
    ) -> None:
        if await self._ack_needed(a):
            await self.ack.ensure(a, m, number, fields)

    async def apply(
        self, msgs: Sequence[Message], texts: Mapping[str, str] | None = None
    ) -> list[Applied]:
        """Correlate and store; every step is idempotent, so a retry converges. Side events
        (echoes, retractions, reactions) follow the batch's messages: a retraction may name a
        message of the same batch. ``texts``: message id → its JSON as read from the stream,
        stored as it is (``TicketStore.apply_messages``)."""
        all_cids = await self.store.resolve_contacts([m.sender for m in msgs])
        side = [(c, m) for c, m in zip(all_cids, msgs, strict=True) if m.kind in SIDE_KINDS]
        if side:
            pairs = [
                (c, m) for c, m in zip(all_cids, msgs, strict=True) if m.kind not in SIDE_KINDS
            ]
            cids, msgs = [c for c, _ in pairs], [m for _, m in pairs]
        else:
            cids = all_cids
        applied = await self._apply_messages(cids, msgs, texts) if msgs else []
        self._count(applied, msgs)
        for cid, m in side:
            outcome = await self.side.apply(cid, m)
            self.metrics.dispatched.labels(outcome.split(":")[0]).inc()
            log.info("side_event.applied", channel=m.channel, message_id=m.id, outcome=outcome)
        return applied

    async def _apply_messages(
        self, cids: Sequence[str], msgs: Sequence[Message], texts: Mapping[str, str] | None
    ) -> list[Applied]:
        items = await self._routes(cids, msgs)
        applied = await self.store.apply_messages(items, self.opt.reopen_window_ms, texts)
        hints = [
            (h, a.ticket_id) for a, m in zip(applied, msgs, strict=True) for h in m.thread_hints
        ]
        if hints:
            await self.store.remember_threads(hints)
        # The list indexes' fields come with the apply's answer: the index write, the load
        # counters and what needs the new tickets' numbers start together (for a batch that
        # opens no ticket, all in one round trip).
        tickets, indexed = await self._reindex(applied)
        work: list[Awaitable[Any]] = [indexed, self._numbered(applied, msgs, tickets)]
        if self.stats is not None:
            units = {tid: t.get("unit", "general") for tid, t in tickets.items()}
            work.append(self.stats.record(applied, msgs, units))
        await _gather(work)
        for a, m in zip(applied, msgs, strict=True):
            if m.meta.get("shared_phone_is_sender") == "true":
                await self.side.link_shared_phone(a.contact_id, a.ticket_id, m)
        return applied

    async def _numbered(
        self, applied: Sequence[Applied], msgs: Sequence[Message], tickets: dict[str, Any]
    ) -> None:
        """Number the new tickets, then what shows or sends their numbers: acknowledgements,
        the number lookup, the search index, the console events and the queue (a console
        told of a new ticket finds it numbered). The new tickets' hashes are read with their
        numbers: their acknowledgements need them, and would read them a round trip later."""
        opened = {a.ticket_id for a in applied if a.opened_ticket} if self.ack.enabled else ()
        numbers = await self.store.assign_numbers(applied, opened)
        fields: dict[str, dict[str, str]] = getattr(numbers, "fields", {})
        acks: dict[str, tuple[Applied, Message, str, dict[str, str] | None]] = {}
        debug = _debug_enabled()  # no per-message call (nor its dict) when filtered out
        for a, m in zip(applied, msgs, strict=True):
            if a.duplicate:
                log.info(
                    "message.duplicate",
                    channel=m.channel,
                    message_id=a.message_id,
                    ticket_id=a.ticket_id,
                    ticket_number=a.number or numbers.get(a.ticket_id, ""),
                    outcome=a.outcome,
                )
            elif debug:
                log.debug(
                    "message.applied",
                    channel=m.channel,
                    message_id=a.message_id,
                    ticket_id=a.ticket_id,
                    ticket_number=a.number or numbers.get(a.ticket_id, ""),
                    outcome=a.outcome,
                )
            if a.opened_ticket:
                number = a.number or numbers.get(a.ticket_id, "")
                acks.setdefault(a.message_id, (a, m, number, fields.get(a.ticket_id)))
        # Each acknowledgement is two round trips; the rest is one and independent of them
        # and of each other.
        work: list[Awaitable[Any]] = [self._ensure_ack(*item) for item in acks.values()]
        work.append(self.store.index_numbers(numbers))
        if self.search is not None:  # idempotent, so duplicates are indexed again harmlessly
            docs = [
                SearchDoc.from_applied(a, m, a.number or numbers.get(a.ticket_id, ""))
                for a, m in zip(applied, msgs, strict=True)
            ]
            work.append(self.search.index(docs))
        work.append(self._announce(applied, msgs, tickets))
        await _gather(work)

    def _count(self, applied: Sequence[Applied], msgs: Sequence[Message]) -> None:
        """The dispatch metrics, per batch rather than per message."""
        for outcome, n in Counter(a.outcome.split(":")[0] for a in applied).items():
            self.metrics.dispatched.labels(outcome).inc(n)
        opened = Counter(
            m.channel for a, m in zip(applied, msgs, strict=True) if a.outcome == "new"
        )
        for channel, n in opened.items():
            self.metrics.tickets_opened.labels(channel).inc(n)

    async def _reindex(
        self, applied: Sequence[Applied]
    ) -> tuple[dict[str, dict[str, str]], Awaitable[Any]]:
        """The batch's tickets' indexed fields, and their list indexes' write, started. A
        store whose ``apply_messages`` answered those fields too
        (``adapters.redis_store.AppliedBatch``) has them without reading the tickets again,
        and its write is one command for the batch, awaited with the batch's other work."""
        rows = getattr(applied, "rows", None)
        start = getattr(self.store, "start_reindex_rows", None)
        if rows is not None and start is not None:
            return cast(tuple[dict[str, dict[str, str]], Awaitable[Any]], start(rows))
        return await self.store.reindex(a.ticket_id for a in applied), _nothing()

    async def _announce(
        self, applied: Sequence[Applied], msgs: Sequence[Message], tickets: dict[str, Any]
    ) -> None:
        """Put new and reopened tickets in their unit's queue, then tell the consoles: the
        batch's ``message.received`` events, in the order of the messages, each ticket's
        ``queue.waiting`` after its messages', in one call (a bus without ``publish_many``:
        one by one, a ticket's in order); then offer the units' waiting tickets, by policy."""
        events: list[dict[str, Any]] = [
            {
                "type": "message.received",
                "ticket_id": a.ticket_id,
                "unit": tickets.get(a.ticket_id, {}).get("unit", ""),
                "channel": m.channel,
                "message_id": a.message_id,
            }
            for a, m in zip(applied, msgs, strict=True)
            if not a.duplicate
        ]
        waiting: dict[str, tuple[str, str, int]] = {}
        if self.queue is not None:
            for a, m in zip(applied, msgs, strict=True):
                t = tickets.get(a.ticket_id, {})
                opened = a.outcome.removeprefix("dup:") in ("new", "reopened")
                if opened and t.get("status") == "open" and not t.get("assignee"):
                    waiting.setdefault(  # its first (opening) message
                        a.ticket_id,
                        (t.get("unit", "general"), t.get("priority", "normal"),
                         int(m.received_at * 1000)),
                    )  # fmt: skip
        queue = self.queue
        units: set[str] = set()
        if queue is not None and waiting:
            entered = await asyncio.gather(
                *(queue.enter(tid, *w) for tid, w in waiting.items()), return_exceptions=True
            )
            _raise_first(entered)
            for (tid, (unit, _, _)), now_waiting in zip(waiting.items(), entered, strict=True):
                if now_waiting:
                    events.append(waiting_event(tid, unit))
                    units.add(unit)
        many = getattr(self.events, "publish_many", None)
        if many is not None:
            await many(events)
        else:
            per_ticket: dict[str, list[dict[str, Any]]] = {}
            for e in events:
                per_ticket.setdefault(e["ticket_id"], []).append(e)
            await _gather([self._publish_in_order(evs) for evs in per_ticket.values()])
        if queue is not None:
            await _gather([queue.offer(unit) for unit in sorted(units)])

    async def _publish_in_order(self, events: Sequence[dict[str, Any]]) -> None:
        for e in events:
            await self.events.publish(e)


async def _nothing() -> None:
    return None


async def _ack_now(group: Group, ids: list[str]) -> list[str]:
    """Acknowledge entries applied and held for the next read, before the shard does
    anything else (claims, resyncs, a lease renewal, stopping); the empty list to hold next."""
    await group.ack(ids)
    return []


async def _gather(work: Sequence[Awaitable[Any]]) -> None:
    """Await all of ``work`` concurrently; the first error is raised once all have finished
    (none is left running behind the batch's failure, so a retry never races it)."""
    _raise_first(await asyncio.gather(*work, return_exceptions=True))


def _debug_enabled() -> bool:
    check = getattr(log, "is_enabled_for", None)  # structlog's filtering loggers have it
    return True if check is None else bool(check(logging.DEBUG))


def _raise_first(results: Sequence[Any]) -> None:
    for r in results:
        if isinstance(r, asyncio.CancelledError):
            raise r
    for r in results:
        if isinstance(r, BaseException):
            raise r
