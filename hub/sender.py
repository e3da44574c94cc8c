"""The sender: replies leave the outbox through their channel, at most once per attempt.

A reply is claimed in the store before the provider is called (so two senders never send the
same reply), retried with exponential backoff and jitter on timeouts, 5xx and 429 (honouring
Retry-After), failed with the provider's code on a refusal, and dead-lettered when its attempts
run out. Retries wait in a delayed set, not in a sleeping task, so a restart loses none.

Throughput: replies are handled concurrently (``outbox.concurrency``), and the store's
pipeliner lets their Redis steps share round trips. A sent reply costs three: the claim; then
its state, its provider id and its parked statuses, in that order in one pipeline; then its
console event and its XACK, once the state is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from channels.base import TransientSendError
from hub.channelset import ChannelSet
from hub.metrics import HubMetrics
from hub.model import DeliveryState, OutboundReply, OutFile, StatusUpdate, Template
from hub.ports import BlobReader, EventBus, Group, OutboxQueue, StreamEntry, TicketStore
from hub.settings import OutboxSection
from hub.source_health import PROVIDER, HealthReporter

log = structlog.get_logger("hub.sender")
TRIM_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class SenderOptions:
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    claim_idle_ms: int
    block_ms: int
    concurrency: int
    stale_sending_ms: int
    retention_ms: int = 24 * 3600 * 1000

    @classmethod
    def from_settings(cls, s: OutboxSection, retention_hours: float = 24.0) -> SenderOptions:
        return cls(
            s.max_attempts,
            s.backoff_base_s,
            s.backoff_max_s,
            s.claim_idle_ms,
            s.block_ms,
            s.concurrency,
            int(s.send_timeout_s * 1000 * 2),
            int(retention_hours * 3600 * 1000),
        )


def _forget(holding: set[str], entry_id: str, _task: object) -> None:
    holding.discard(entry_id)


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Full-jitter exponential backoff, never sooner than the provider's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class Sender:
    def __init__(
        self,
        store: TicketStore,
        outbox: OutboxQueue,
        groups: Mapping[str, Group],
        channels: ChannelSet,
        options: SenderOptions,
        public_url: str,
        metrics: HubMetrics,
        events: EventBus | None = None,
        blobs: BlobReader | None = None,
        health: HealthReporter | None = None,
    ) -> None:
        self.health = health
        self.events = events
        self.blobs = blobs
        self.store = store
        self.outbox = outbox
        self.groups = groups
        self.channels = channels
        self.opt = options
        self.public_url = public_url
        self.metrics = metrics
        self.heartbeat = 0.0
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(options.concurrency)
        self._counters: dict[tuple[str, str], Any] = {}

    def _counter(self, channel: str, outcome: str) -> Any:
        """``metrics.sends.labels(channel, outcome)``, looked up once per pair."""
        c = self._counters.get((channel, outcome))
        if c is None:
            c = self._counters[(channel, outcome)] = self.metrics.sends.labels(channel, outcome)
        return c

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def run(self) -> None:
        for g in self.groups.values():
            await g.ensure()
        async with asyncio.TaskGroup() as tg:
            for channel, g in self.groups.items():
                tg.create_task(self._work(channel, g), name=f"send:{channel}")

    async def _work(self, channel: str, group: Group) -> None:
        last_claim = last_trim = 0.0
        inflight: set[asyncio.Task[None]] = set()
        holding: set[str] = set()  # entry ids this process is working on, or waiting to
        while not self._stop.is_set():
            self.heartbeat = time.time()
            try:
                now_ms = int(time.time() * 1000)
                # due retries back to the stream, then the next one's due time: one round trip
                _, due = await asyncio.gather(
                    self.outbox.move_due(channel, now_ms), self.outbox.next_due_ms(channel)
                )
                entries: list[StreamEntry] = []
                if time.monotonic() - last_trim >= TRIM_EVERY_S:
                    last_trim = time.monotonic()
                    await group.trim_processed(self.opt.retention_ms, now_ms)
                if time.monotonic() - last_claim >= self.opt.claim_idle_ms / 2000:
                    last_claim = time.monotonic()
                    entries += await group.claim_idle(self.opt.claim_idle_ms, 100)
                block = self._block_ms(due, now_ms)
                entries += await group.read_new(self.opt.concurrency, block)
                for e in entries:
                    if e.id in holding:  # our own slow entry, not a dead consumer's
                        continue
                    holding.add(e.id)
                    await self._slots.acquire()
                    t = asyncio.create_task(self._guarded(channel, group, e))
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)
                    t.add_done_callback(functools.partial(_forget, holding, e.id))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("sender.loop_failed", channel=channel, error=repr(exc)[:300])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
        if inflight:  # graceful stop: let started sends finish and record their result
            await asyncio.gather(*inflight, return_exceptions=True)

    def _block_ms(self, due: int | None, now_ms: int) -> int:
        """Block on the stream, but wake up when the next delayed retry falls due."""
        if due is None:
            return self.opt.block_ms
        return max(1, min(self.opt.block_ms, due - now_ms))

    async def _guarded(self, channel: str, group: Group, e: StreamEntry) -> None:
        try:
            await self.handle(channel, group, e)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("sender.entry_failed", channel=channel, entry=e.id, error=repr(exc)[:300])
        finally:
            self._slots.release()

    async def handle(self, channel: str, group: Group, e: StreamEntry) -> None:
        cid, _, rid = e.fields.get("r", "").partition("|")
        if not cid or not rid:
            await group.dead_letter(e, "outbox entry without a reply reference")
            return
        claim = await self.store.claim_reply(cid, rid, self.opt.stale_sending_ms)
        if not claim.go:
            log.debug("reply.skipped", reply_id=rid, state=claim.state)
            if claim.state != "busy":
                await group.ack([e.id])
            # "busy": another sender holds it, or held it and died mid-send. Leave the entry
            # pending: the holder acks it when done; if it died, the entry is reclaimed again
            # until the claim is stale (stale_sending_ms) and the reply is sent once more.
            # Acking it here would strand the reply in "sending" for good.
            return
        rec: dict[str, Any] = claim.reply or {}
        if claim.state == "sending":
            log.warning(
                "reply.resent_after_crash", reply_id=rid, channel=channel, attempt=claim.attempts
            )
        ch = self.channels.get(rec.get("channel", ""), rec.get("account", ""))
        if ch is None:
            await self.store.set_reply_state(
                cid, rid, DeliveryState.FAILED, error_code="channel_unavailable", force=True
            )
            await group.ack([e.id])
            return
        tpl = rec.get("template")
        reply = OutboundReply(
            reply_id=rid,
            ticket_id=rec.get("ticket_id", ""),
            channel=ch.name,
            account=ch.account,
            to=rec.get("to", ""),
            text=rec.get("text", ""),
            template=Template(**tpl) if tpl else None,
            attempt=claim.attempts,
            status_callback_url=f"{self.public_url}/webhooks/{ch.name}/{ch.account}/status",
            ticket_number=rec.get("ticket_number", ""),
            automatic=rec.get("kind") == "auto",
            context=rec.get("context") or {},
            files=await self._files(rec),
            message_tag=str(rec.get("message_tag", "")),
        )
        source = f"{ch.name}/{ch.account}"
        try:
            result = await ch.send(reply)
        except TransientSendError as exc:
            if self.health is not None:
                await self.health.report(source, PROVIDER, False, str(exc))
            await self._retry_or_dead(
                channel, group, e, cid, rid, claim.attempts, exc, reply.ticket_id
            )
            return
        if self.health is not None:  # an answer, even a refusal, is a provider that answers
            await self.health.report(source, PROVIDER, True)
        if result.accepted:
            # One round trip (the store's pipeliner): the state forced to sent, then the
            # provider ids mapped, then the parked statuses taken. ``gather`` starts the three
            # in this order within one loop turn and each queues its command at once, so they
            # share one pipeline, on one connection, in this order (the mapping and the parked
            # list share a hash tag: on a cluster too). So the provider id names the reply
            # before parked statuses are taken (a status arriving in between either finds the
            # mapping or is parked and taken here), and a status that finds the mapping finds
            # the state already sent (tests/test_sender_round_trips.py pins the order).
            early = (
                await asyncio.gather(
                    self.store.set_reply_state(
                        cid, rid, result.state, provider_id=result.provider_id, force=True
                    ),
                    *(self.store.map_provider_id(ch.name, pid, cid, rid)
                      for pid in (result.provider_id, *result.part_ids)),
                    self.store.take_early_statuses(ch.name, result.provider_id),
                )
            )[-1]  # fmt: skip
            if result.thread_hints and reply.ticket_id:
                await self.store.remember_threads((h, reply.ticket_id) for h in result.thread_hints)
            if early:  # parked statuses only move it forward from sent
                await self._apply_parked(early, cid, rid)
            # acked once its state is recorded, never before (a reply acked with its state
            # unwritten would stay "sending" for good)
            await asyncio.gather(
                announce_state(
                    self.events, self.store, cid, rid, result.state.value, reply.ticket_id
                ),
                group.ack([e.id]),
            )
            self._counter(channel, "sent").inc()
            log.info(
                "reply.sent",
                reply_id=rid,
                channel=channel,
                attempt=claim.attempts,
                provider_id=result.provider_id,
            )
            return
        # A reply refused half-way (Instagram's later part) still owns the parts that
        # went out: their echoes and read receipts must name it.
        for pid in (result.provider_id, *result.part_ids):
            if pid:
                await self.store.map_provider_id(ch.name, pid, cid, rid)
        await self.store.set_reply_state(
            cid,
            rid,
            DeliveryState.FAILED,
            error_code=result.error_code,
            error_message=result.error_message,
            force=True,
        )
        await announce_state(self.events, self.store, cid, rid, "failed", reply.ticket_id)
        self._counter(channel, "failed").inc()
        log.warning(
            "reply.failed",
            reply_id=rid,
            channel=channel,
            attempt=claim.attempts,
            error_code=result.error_code,
        )
        await group.ack([e.id])

    async def _files(self, rec: dict[str, Any]) -> tuple[OutFile, ...]:
        if not rec.get("attachments") or self.blobs is None:
            return ()
        return tuple(
            [
                OutFile(a["name"], a["content_type"], await self.blobs.get(a["ref"]))
                for a in rec["attachments"]
            ]
        )

    async def _retry_or_dead(
        self,
        channel: str,
        group: Group,
        e: StreamEntry,
        cid: str,
        rid: str,
        attempts: int,
        exc: TransientSendError,
        tid: str = "",
    ) -> None:
        bound = log.bind(reply_id=rid, channel=channel, attempt=attempts, reason=str(exc))
        if attempts >= self.opt.max_attempts:
            await self.store.set_reply_state(
                cid,
                rid,
                DeliveryState.FAILED,
                error_code=exc.code or "retries_exhausted",
                error_message=f"gave up after {attempts} attempts: {exc}",
                force=True,
            )
            await asyncio.gather(  # concurrently: the console event says what is written
                group.dead_letter(e, f"gave up after {attempts} attempts: {exc}"),
                announce_state(self.events, self.store, cid, rid, "failed", tid),
            )
            self._counter(channel, "dead_lettered").inc()
            self.metrics.dead_lettered.labels(group.stream).inc()
            bound.error("reply.dead_lettered")
            return
        delay = backoff_seconds(
            attempts, self.opt.backoff_base_s, self.opt.backoff_max_s, exc.retry_after
        )
        await self.store.set_reply_state(
            cid,
            rid,
            DeliveryState.RETRYING,
            error_code=exc.code,
            error_message=str(exc),
            force=True,
        )
        # the retry scheduled before the entry is acked (never an acked entry without one)
        await self.outbox.schedule_retry(channel, cid, rid, int((time.time() + delay) * 1000))
        await asyncio.gather(
            group.ack([e.id]), announce_state(self.events, self.store, cid, rid, "retrying", tid)
        )
        self._counter(channel, "retry").inc()
        bound.warning("reply.retry_scheduled", delay_s=round(delay, 2))

    async def _apply_early(self, channel: str, provider_id: str, cid: str, rid: str) -> None:
        await self._apply_parked(
            await self.store.take_early_statuses(channel, provider_id), cid, rid
        )

    async def _apply_parked(self, early: Sequence[str], cid: str, rid: str) -> None:
        for raw in early:
            d = json.loads(raw)
            await self.store.set_reply_state(
                cid,
                rid,
                DeliveryState(d["state"]),
                error_code=d.get("error_code", ""),
                error_message=d.get("error_message", ""),
            )


async def announce_state(
    events: EventBus | None, store: TicketStore, cid: str, rid: str, state: str, tid: str = ""
) -> None:
    """Tell the consoles that a reply changed state (sent, delivered, read, failed...).
    ``tid``: the reply's ticket when the caller knows it (else it is read from the reply)."""
    if events is None:
        return
    if not tid:
        tid = f"{cid}.{(await store.get_entry(cid, rid)).get('ticket', '')}"
    await events.publish({"type": "reply.state", "ticket_id": tid, "reply_id": rid, "state": state})


class StatusService:
    """Applies providers' delivery reports; late or out-of-order reports never step back."""

    def __init__(
        self, store: TicketStore, metrics: HubMetrics, events: EventBus | None = None
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.events = events

    async def apply(self, updates: Sequence[StatusUpdate]) -> list[str]:
        results = []
        for u in updates:
            ref = await self.store.lookup_provider_id(u.channel, u.provider_id)
            if ref is None:
                payload = json.dumps(
                    {
                        "state": u.state.value,
                        "error_code": u.error_code,
                        "error_message": u.error_message,
                    }
                )
                await self.store.park_early_status(u.channel, u.provider_id, payload)
                ref = await self.store.lookup_provider_id(u.channel, u.provider_id)
                if ref is None:
                    results.append("parked")
                    self.metrics.status_updates.labels(u.channel, "parked").inc()
                    continue
                await self.store.take_early_statuses(u.channel, u.provider_id)
            cid, rid = ref
            r = await self.store.set_reply_state(
                cid, rid, u.state, error_code=u.error_code, error_message=u.error_message
            )
            results.append(r)
            self.metrics.status_updates.labels(u.channel, r).inc()
            if r == "applied":
                await announce_state(self.events, self.store, cid, rid, u.state.value)
            log.info("reply.status", channel=u.channel, reply_id=rid, state=u.state.value, result=r)
        return results
