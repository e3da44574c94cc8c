"""Redis memory per ticket and per message, measured on the store's real write path.

One run (``bench/run memory``) starts its own redis-server on a free port (no persistence),
with deploy/redis.conf's memory-encoding settings (``--redis-defaults``: Redis's own), and:

1. **check**: ``--check`` tickets through the real dispatcher (``Dispatcher.apply``), then the
   same through the bulk filler below; both must leave the same keys (kind, count, encoding)
   and the same bytes per ticket.
2. **encodings**: a small realistic mix (new tickets, acknowledgements read, half of the
   tickets claimed, answered and resolved, follow-ups) under Redis's default encoding
   thresholds and under deploy/redis.conf's, each on an empty server.
3. **scale**: ``--tickets`` new tickets (one WhatsApp message of ``--body-chars`` each, the
   acknowledgement queued, waiting in its unit's queue) by ``--workers`` processes, with
   ``used_memory`` read at each checkpoint (10k, 100k, ...).
4. **life cycle**, on ``--finish`` of those tickets: acknowledgement sent, delivered, read; then
   claimed, answered (reply read) and resolved. Then ``--messages`` follow-ups appended, with
   and without text (what the body itself weighs).
5. **breakdown**: MEMORY USAGE of every key of ``--sample`` tickets by kind, and the shared
   keys (list indexes, queues, numbers, search terms) in full.
6. **floor**: a bare HSET per ticket of the same fields as a real ticket hash (and message
   hash), on an empty server.

The bulk filler calls the store's own methods and Lua scripts (``resolve_contacts``,
``apply_messages``, ``assign_numbers``, ``reindex``, the search index, ``add_reply``,
``queue_enqueue``, ...), many tickets per pipeline, so that 1M tickets take minutes instead
of the dispatcher's hours: what the dispatcher does one round trip per message (the
acknowledgement, the queue entry, live events) goes into pipelines. Its clients pack commands
with hiredis (the same bytes as redis-py's Python packer) and read without per-reply timers.
Bounded streams (the live event log, capped at 100k entries; outboxes and inbound shards,
trimmed after ``redis.stream_retention_hours``) are measured apart and left out of the
per-ticket figures, as are client buffers (``used_memory`` minus ``MEMORY STATS``'s clients).

Internal: ``--worker JSON`` runs one filler job (the orchestrator starts them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection

from adapters import keys
from adapters.redis_events import KEEP as EVENTS_KEEP
from adapters.redis_events import STREAM as EVENTS_STREAM
from adapters.redis_queue import Q, RedisQueue
from adapters.redis_search import RedisSearchIndex
from adapters.redis_stats import RedisStats
from adapters.redis_store import RedisStore
from bench.common import (
    HOST,
    ROOT,
    free_port,
    new_loop_runner,
    say,
    until_interrupted,
    wait_port,
)
from channels.base import InboundRequest
from hub.ack import Acknowledger
from hub.demo.simulate import FOLLOW_UPS, NAMES, TOPICS
from hub.dispatcher import Dispatcher, DispatchOptions
from hub.identity import phone_identity
from hub.ids import new_id
from hub.load_stats import LoadStats
from hub.logging import configure as configure_logging
from hub.model import DeliveryState, Message
from hub.ports import ticket_id
from hub.queue import queue_score
from hub.routing import Router
from hub.runtime import Hub, build_channels
from hub.search import SearchDoc
from hub.settings import Settings

REDIS_CONF = ROOT / "deploy" / "redis.conf"
ACCOUNT_SID = "AC" + "c" * 32
NUMBERS = {"wa1": "+628119521150", "wa2": "+628119521151"}
REOPEN_HOURS = 72.0
# Keyword rules that spread tickets over the seven default units (the example config's style).
RULES: list[dict[str, Any]] = [
    {"keywords": ["THR", "PHK", "pesangon", "upah", "gaji", "UMK"], "unit": "hi_upah",
     "category": "hubungan kerja / upah"},
    {"keywords": ["K3", "kecelakaan"], "unit": "k3", "category": "K3", "priority": "high"},
    {"keywords": ["pelatihan", "magang", "BLK"], "unit": "vokasi", "category": "pelatihan"},
    {"keywords": ["lowongan", "penempatan", "Karirhub"], "unit": "penempatan",
     "category": "penempatan"},
    {"keywords": ["LPK", "akreditasi"], "unit": "kelembagaan", "category": "lembaga"},
    {"keywords": ["informasi publik", "PPID"], "unit": "ppid", "category": "informasi"},
]  # fmt: skip
SUBJECTS = [
    *TOPICS,
    "Saya mau tanya soal akreditasi LPK tempat saya kursus, apakah masih berlaku?",
    "Permohonan informasi publik (PPID) tentang anggaran program padat karya.",
    "Program magang ke Jepang kapan dibuka lagi dan apa syaratnya?",
    "Bagaimana cara mengurus kartu kuning (AK/1) secara online?",
]
# Words citizens use, to pad bodies to a typical length (the search index sees them).
VOCAB = str.split(
    "perusahaan pekerja buruh karyawan kontrak tetap outsourcing lembur cuti hamil sakit "
    "tunjangan bonus potongan slip transfer rekening bank bulan minggu hari tahun kemarin "
    "sekarang besok pabrik kantor cabang pusat daerah provinsi kabupaten kota jakarta bekasi "
    "tangerang bandung surabaya semarang medan makassar batam karawang cikarang bogor depok "
    "hrd atasan manajer mandor direktur pemilik serikat mediasi bipartit tripartit disnaker "
    "pengawas laporan pengaduan keluhan bukti foto surat perjanjian kerja peraturan undang "
    "nomor pasal hak kewajiban jam shift malam libur nasional lebaran natal imlek gajian "
    "telat belum dibayar dipotong sepihak dipecat dirumahkan mengundurkan diri resign "
    "jaminan sosial kesehatan ketenagakerjaan kartu peserta iuran klaim saldo pencairan "
    "online aplikasi website email nomor telepon alamat nama lengkap umur pendidikan smk "
    "sma kuliah sertifikat ijazah kompetensi lulus daftar syarat biaya gratis jadwal"
)


# -- processes (free ports, loops and port waits: bench/common.py; Procs is this one's own) ---


class Procs:
    """Child processes, each stopped with SIGTERM (then SIGKILL) however the run ends; their
    output goes to ``<name>.log`` in ``logdir``."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, name: str, *argv: str, cwd: Path = ROOT) -> asyncio.subprocess.Process:
        with (self.logdir / f"{name}.log").open("wb") as log:
            p = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        self.procs.append((name, p))
        return p

    def tail(self, name: str, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.logdir / f"{name}.log").read_text().splitlines()[-lines:])
        return ""

    async def interrupt(self, name: str, limit_s: float) -> None:
        for n, p in self.procs:
            if n == name and p.returncode is None:
                p.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(p.wait(), limit_s)

    async def stop_all(self) -> None:
        """Last started, first stopped: clients before their Redis."""
        for _name, p in reversed(self.procs):
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(p.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()


# -- what citizens send ------------------------------------------------------------------------


class Corpus:
    """Bodies of about ``chars`` characters: a subject (which routes the ticket) or a
    follow-up, padded with everyday words drawn with a Zipf-like skew."""

    def __init__(self, chars: int, seed: int) -> None:
        self.chars = chars
        self.rnd = random.Random(seed)
        weights = [1 / (i + 1) for i in range(len(VOCAB))]
        self._pad = self.rnd.choices(VOCAB, weights, k=100_003)
        self._i = self.rnd.randrange(len(self._pad))

    def _fill(self, text: str) -> str:
        if self.chars <= 0:
            return ""
        words, n = [text], len(text)
        while n < self.chars:
            w = self._pad[self._i % len(self._pad)]
            self._i += 1
            words.append(w)
            n += len(w) + 1
        return " ".join(words)[: self.chars].rstrip()

    def first(self, i: int) -> str:
        return self._fill(SUBJECTS[i % len(SUBJECTS)])

    def follow_up(self) -> str:
        return self._fill(self.rnd.choice(FOLLOW_UPS))


def phone_of(i: int) -> str:
    return f"+62813{i:08d}"


def name_of(i: int) -> str:
    return NAMES[(i * 7919) % len(NAMES)]


def account_of(i: int) -> str:
    return "wa1" if i % 4 else "wa2"


def twilio_form(i: int, account: str, text: str, sid: str) -> dict[str, str]:
    """The fields Twilio posts for citizen ``i``'s text message (as hub.demo.simulate)."""
    phone = phone_of(i)
    return {
        "SmsMessageSid": sid, "NumMedia": "0", "ProfileName": name_of(i),
        "MessageType": "text", "SmsSid": sid, "WaId": phone.lstrip("+"),
        "SmsStatus": "received", "Body": text, "To": f"whatsapp:{NUMBERS[account]}",
        "NumSegments": "1", "ReferralNumMedia": "0", "MessageSid": sid,
        "AccountSid": ACCOUNT_SID, "From": f"whatsapp:{phone}", "ApiVersion": "2010-04-01",
    }  # fmt: skip


def raw_form(i: int, account: str, text: str, sid: str) -> str:
    """``urlencode(twilio_form(...))``, three times faster (``check_messages`` compares)."""
    phone = phone_of(i)[1:]
    return (
        f"SmsMessageSid={sid}&NumMedia=0&ProfileName={quote_plus(name_of(i))}"
        f"&MessageType=text&SmsSid={sid}&WaId={phone}&SmsStatus=received"
        f"&Body={quote_plus(text)}&To=whatsapp%3A%2B{NUMBERS[account][1:]}&NumSegments=1"
        f"&ReferralNumMedia=0&MessageSid={sid}&AccountSid={ACCOUNT_SID}"
        f"&From=whatsapp%3A%2B{phone}&ApiVersion=2010-04-01"
    )


def make_message(i: int, text: str, at: float, sid: str, account: str = "") -> Message:
    """What the Twilio channel's parser makes of ``twilio_form`` (``check_messages`` proves
    it), without its per-request cost (a quarter of a millisecond: minutes for 1M)."""
    account = account or account_of(i)
    phone = phone_of(i)
    return Message(
        id=new_id(int(at * 1000)),
        channel="whatsapp",
        account=account,
        provider_id=sid,
        sender=phone_identity(phone),
        reply_address=phone,
        received_at=at,
        kind="text",
        text=text,
        display_name=name_of(i),
        meta={"to": f"whatsapp:{NUMBERS[account]}"},
        raw=raw_form(i, account, text, sid),
    )


def check_messages(settings: Settings) -> None:
    """The synthetic messages are the real parser's output (but for the fresh id)."""
    channels = build_channels(settings)
    for i, account in ((41, "wa1"), (42, "wa2")):
        ch = channels.get("whatsapp", account)
        assert ch is not None
        text = Corpus(120, i).first(3) + " ü & 100% = ok?"
        sid = f"SM{7:032x}"
        form = twilio_form(i, account, text, sid)
        assert raw_form(i, account, text, sid) == urlencode(form)
        req = InboundRequest(
            "http://x", {}, urlencode(form).encode(), list(form.items()),
            "application/x-www-form-urlencoded",
        )  # fmt: skip
        real = json.loads(ch.parse(req, 1_700_000_000.5).messages[0].to_json())
        ours = json.loads(make_message(i, text, 1_700_000_000.5, sid, account).to_json())
        real.pop("id"), ours.pop("id")
        if real != ours:
            raise AssertionError(f"synthetic message differs from the parser's:\n{real}\n{ours}")


# -- the hub's parts, on the bench's Redis -----------------------------------------------------


def settings_tree(redis_url: str, data_dir: Path, port: int = 0) -> dict[str, Any]:
    """The bench's hub: two WhatsApp numbers, keyword routing over the seven default units,
    production defaults for everything else."""
    return {
        "hub": {
            "public_url": f"http://{HOST}:{port or 1}",
            "listen_host": HOST,
            "listen_port": port,
            "data_dir": str(data_dir),
            "log_format": "json",
            "log_level": "warning",
            "reopen_window_hours": REOPEN_HOURS,
        },
        "redis": {"url": redis_url},
        "channels": {
            "whatsapp": {
                "accounts": {
                    name: {
                        "number": number,
                        "account_sid": ACCOUNT_SID,
                        "auth_token": f"bench-token-{name}",
                        "api_base_url": f"http://{HOST}:1",
                    }
                    for name, number in NUMBERS.items()
                }
            }
        },
        "routing": RULES,
    }


def bench_settings(redis_url: str, data_dir: Path, port: int = 0) -> Settings:
    return Settings.model_validate(settings_tree(redis_url, data_dir, port))


class HiredisPackConnection(Connection):
    """redis-py's asyncio connection packs commands in Python; hiredis packs the same bytes
    in C (redis-py's sync client does so already). For the filler's millions of commands."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        return [hiredis.pack_command(args)]


WORKER_NAME = "bench-filler"


def fast_client(port: int, name: str = "bench-control") -> Redis:
    """No read timeout: a FLUSHALL of millions of keys, or MEMORY USAGE of a big index, can
    take seconds on a busy machine."""
    pool = ConnectionPool(
        connection_class=HiredisPackConnection, host=HOST, port=port, socket_timeout=None,
        max_connections=16, client_name=name,
    )  # fmt: skip
    return Redis(connection_pool=pool)


@dataclass
class Parts:
    """The adapters and rules the dispatcher writes through."""

    redis: Any
    store: RedisStore
    search: RedisSearchIndex
    queue: RedisQueue
    load: LoadStats
    router: Router
    ack: Acknowledger
    lease_ms: int

    @classmethod
    def of_hub(cls, hub: Hub) -> Parts:
        return cls(
            hub.redis, hub.store, hub.search, hub.queue.queue, hub.load, hub.router,  # type: ignore[arg-type]
            hub.acknowledger, hub.queue.lease_ms,
        )  # fmt: skip

    @classmethod
    def for_settings(cls, settings: Settings, redis: Any) -> Parts:
        channels = build_channels(settings)
        return cls(
            redis,
            RedisStore(redis, settings.hub.ticket_prefix),
            RedisSearchIndex(redis),
            RedisQueue(redis),
            LoadStats(RedisStats(redis)),
            Router(settings.routing, channels, {}),
            Acknowledger(settings.ack, None, channels),  # type: ignore[arg-type]
            int(settings.console.claim_lease_minutes * 60_000),
        )


def real_dispatcher(hub: Hub) -> Dispatcher:
    s = hub.settings
    return Dispatcher(
        hub.store, [], hub.acknowledger, hub.channels,
        DispatchOptions.from_settings(s.dispatcher, s.hub.reopen_window_hours),
        "bench", hub.metrics, hub.router, hub.events, hub.queue, hub.search, hub.load,
    )  # fmt: skip


# -- the bulk filler ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A ticket the filler made, as later steps need it."""

    cid: str
    n: str
    number: str
    unit: str
    channel: str
    account: str
    reply_to: str
    ack: str  # the acknowledgement's reply id ('' for none)

    @property
    def tid(self) -> str:
        return ticket_id(self.cid, self.n)


def _publish(pipe: Any, event: dict[str, Any]) -> None:
    """``RedisEvents.publish``, queued on a pipeline."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    pipe.xadd(EVENTS_STREAM, {"e": data}, maxlen=EVENTS_KEEP, approximate=True)


@dataclass
class Filler:
    """The dispatcher's writes for many messages at once (see the module's docstring)."""

    parts: Parts
    corpus: Corpus
    job: int = 0  # makes provider ids unique across jobs
    streams: bool = True  # live events and outbox entries (bounded: the scale phase skips them)
    _k: int = 0

    def _pipe(self) -> Any:
        return self.parts.redis.pipeline(transaction=False)

    def sid(self) -> str:
        self._k += 1
        return f"SM{self.job:08x}{self._k:024x}"

    def message(self, i: int, text: str, at: float) -> Message:
        return make_message(i, text, at, self.sid())

    async def apply(self, msgs: Sequence[Message], *, queue: bool = True) -> list[Ref]:
        """What ``Dispatcher._apply_messages`` writes: correlation, ticket, number, list
        indexes, search index, the acknowledgement of each new ticket (queued on the outbox),
        live events, the unit's queue, the load counters. Returns the new tickets."""
        p = self.parts
        cids = await p.store.resolve_contacts([m.sender for m in msgs])
        items = [(c, m, p.router.route(m)) for c, m in zip(cids, msgs, strict=True)]
        applied = await p.store.apply_messages(items, int(REOPEN_HOURS * 3600_000))
        numbers = await p.store.assign_numbers(applied)
        await p.store.index_numbers(numbers)
        tickets = await p.store.reindex(a.ticket_id for a in applied)
        number = {a.ticket_id: a.number or numbers.get(a.ticket_id, "") for a in applied}
        await p.search.index(
            [SearchDoc.from_applied(a, m, number[a.ticket_id])
             for a, m in zip(applied, msgs, strict=True)]
        )  # fmt: skip
        pipe = self._pipe()
        now = int(time.time() * 1000)
        new: list[Ref] = []
        for a, m in zip(applied, msgs, strict=True):
            t = tickets.get(a.ticket_id, {})
            unit = t.get("unit", "general")
            if a.opened_ticket:  # Acknowledger.ensure → ReplyService.create → Outbox.enqueue
                rid = f"ack-{a.message_id}"
                record = {
                    "channel": m.channel, "account": m.account, "to": m.reply_address,
                    "kind": "auto", "ticket_id": a.ticket_id, "ticket_number": number[a.ticket_id],
                    "context": {}, "text": p.ack.text_for(m, number[a.ticket_id]),
                }  # fmt: skip
                await p.store.scripts.add_reply(
                    keys=[keys.contact(a.contact_id)],
                    args=[a.ticket_n, rid, json.dumps(record, ensure_ascii=False), now, "auto",
                          "hub"],
                    client=pipe,
                )  # fmt: skip
                if self.streams:
                    pipe.xadd(keys.outbox_stream(m.channel), {"r": f"{a.contact_id}|{rid}"})
                new.append(Ref(a.contact_id, a.ticket_n, number[a.ticket_id], unit, m.channel,
                               m.account, m.reply_address, rid))  # fmt: skip
            if self.streams and not a.duplicate:
                _publish(pipe, {"type": "message.received", "ticket_id": a.ticket_id,
                                "unit": t.get("unit", ""), "channel": m.channel,
                                "message_id": a.message_id})  # fmt: skip
            opened = a.outcome.removeprefix("dup:") in ("new", "reopened")
            if queue and opened and t.get("status") == "open" and not t.get("assignee"):
                score = queue_score(t.get("priority", "normal"), int(m.received_at * 1000))
                await p.queue.scripts.queue_enqueue(
                    keys=[Q], args=[a.ticket_id, unit, score], client=pipe
                )
                if self.streams:
                    _publish(pipe, {"type": "queue.waiting", "ticket_id": a.ticket_id,
                                    "unit": unit})  # fmt: skip
        await pipe.execute()
        await p.load.record(applied, msgs, {tid: t.get("unit", "general")
                                            for tid, t in tickets.items()})  # fmt: skip
        return new

    async def open_tickets(self, citizens: Sequence[int], at: Callable[[int], float]) -> list[Ref]:
        """Each citizen opens a ticket with one message (received at ``at(i)``)."""
        return await self.apply([self.message(i, self.corpus.first(i), at(i)) for i in citizens])

    async def follow_ups(self, citizens: Sequence[int], at: float | None = None) -> None:
        now = time.time() if at is None else at
        await self.apply([self.message(i, self.corpus.follow_up(), now) for i in citizens])

    async def deliver(self, replies: Sequence[tuple[str, str]]) -> None:
        """What the sender and Twilio's callbacks write: claimed, Twilio's id mapped to the
        reply, sent → delivered → read; the outbox entry acked (then trimmed)."""
        store = self.parts.store
        now = int(time.time() * 1000)
        pipe = self._pipe()
        for cid, rid in replies:
            await store.scripts.claim_reply(
                keys=[keys.entry(cid, rid)], args=[now, 120_000], client=pipe
            )
            pid = self.sid()
            pipe.set(keys.provider_ref("whatsapp", pid), f"{cid}|{rid}")
            for st in (DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.READ):
                await store.scripts.set_reply_state(
                    keys=[keys.entry(cid, rid)],
                    args=[st.value, st.rank, now, pid if st is DeliveryState.SENT else "", "",
                          "", "1" if st is DeliveryState.SENT else "0"],
                    client=pipe,
                )  # fmt: skip
        await pipe.execute()

    async def claim(self, refs: Sequence[Ref], agent: str) -> None:
        """``QueueService.claim``: the queue's lease, the audit entry and the assignee."""
        p = self.parts
        now = int(time.time() * 1000)
        pipe = self._pipe()
        for ref in refs:
            await p.queue.scripts.queue_claim(
                keys=[Q], args=[agent, now, p.lease_ms, ref.tid], client=pipe
            )
            eid = new_id(now)
            event = {"type": "claimed", "actor": agent, "agent": agent, "id": eid, "at": now}
            await p.store.scripts.add_event(
                keys=[keys.contact(ref.cid)],
                args=[ref.n, eid, json.dumps(event, ensure_ascii=False), now, "assignee", agent],
                client=pipe,
            )
            if self.streams:
                _publish(pipe, {"type": "ticket.claimed", "ticket_id": ref.tid, "agent": agent})
        await pipe.execute()
        await p.store.reindex(r.tid for r in refs)

    async def answer(self, refs: Sequence[Ref], agent: str, deliver: bool = True) -> None:
        """``ReplyService.create`` for an agent's text reply, then (``deliver``) the sender."""
        p = self.parts
        now = int(time.time() * 1000)
        pipe = self._pipe()
        replies = []
        for ref in refs:
            rid = new_id(now)
            record = {
                "channel": ref.channel, "account": ref.account, "to": ref.reply_to,
                "kind": "agent", "ticket_id": ref.tid, "ticket_number": ref.number,
                "context": {}, "text": self.corpus.follow_up(),
            }  # fmt: skip
            await p.store.scripts.add_reply(
                keys=[keys.contact(ref.cid)],
                args=[ref.n, rid, json.dumps(record, ensure_ascii=False), now, "agent", agent],
                client=pipe,
            )
            if self.streams:
                pipe.xadd(keys.outbox_stream(ref.channel), {"r": f"{ref.cid}|{rid}"})
            replies.append((ref.cid, rid))
        await pipe.execute()
        if deliver:
            await self.deliver(replies)

    async def resolve(self, refs: Sequence[Ref], agent: str) -> None:
        """``TicketActions.set_status(resolved)``: status and audit entry, indexes, out of
        the queue and off the agent's desk."""
        p = self.parts
        now = int(time.time() * 1000)
        pipe = self._pipe()
        for ref in refs:
            event = {"type": "status", "status": "resolved", "actor": agent, "at": now}
            await p.store.scripts.set_ticket_status(
                keys=[keys.contact(ref.cid)],
                args=[ref.n, "resolved", now, new_id(now), json.dumps(event, ensure_ascii=False)],
                client=pipe,
            )
            await p.queue.scripts.queue_release(
                keys=[Q], args=[ref.tid, "", "drop", "", ""], client=pipe
            )
            if self.streams:
                _publish(pipe, {"type": "ticket.status", "ticket_id": ref.tid,
                                "status": "resolved", "by": agent})  # fmt: skip
        await pipe.execute()
        await p.store.reindex(r.tid for r in refs)


async def refs_of(r: Any, citizens: Sequence[int]) -> list[Ref]:
    """The open (else latest) ticket of each citizen, read back from Redis."""
    out: list[Ref] = []
    for start in range(0, len(citizens), 2000):
        chunk = citizens[start : start + 2000]
        pipe = r.pipeline(transaction=False)
        for i in chunk:
            pipe.get(keys.identity(phone_identity(phone_of(i))))
        cids = [c.decode() for c in await pipe.execute() if c]
        pipe = r.pipeline(transaction=False)
        for cid in cids:
            pipe.zrevrange(keys.contact_tickets(cid), 0, 0)
        ns = [(cid, got[0].decode()) for cid, got in zip(cids, await pipe.execute(), strict=True)
              if got]  # fmt: skip
        pipe = r.pipeline(transaction=False)
        fields = ["number", "unit", "reply_channel", "reply_account", "reply_to", "ack_reply"]
        for cid, n in ns:
            pipe.hmget(keys.ticket(cid, n), fields)
        for (cid, n), row in zip(ns, await pipe.execute(), strict=True):
            v = [x.decode() if x else "" for x in row]
            out.append(Ref(cid, n, v[0], v[1], v[2], v[3], v[4], v[5]))
    return out


# -- jobs: run in worker processes, or in process ----------------------------------------------


async def run_job(parts: Parts, job: dict[str, Any]) -> dict[str, Any]:
    """One filler job. ``kind``: open (citizens first..first+count-1), follow (``count``
    follow-ups to random citizens below ``population``), life (deliver acks, claim, answer,
    resolve ``citizens``)."""
    filler = Filler(parts, Corpus(job.get("body_chars", 120), job["seed"]), job["id"],
                    job.get("streams", True))  # fmt: skip
    batch = job.get("batch", 1000)
    t0, c0 = time.perf_counter(), time.process_time()
    kind = job["kind"]
    if kind == "open":
        first, count = job["first"], job["count"]
        now, span = job.get("now") or time.time(), job.get("span_s", 0.0)
        total = job.get("population") or (first + count)

        def at(i: int) -> float:  # citizen i's first message, spread evenly over ``span``
            return now - span * (1 - i / total)

        for start in range(first, first + count, batch):
            await filler.open_tickets(range(start, min(first + count, start + batch)), at)
    elif kind == "follow":
        rnd = random.Random(job["seed"])
        who = [rnd.randrange(job["population"]) for _ in range(job["count"])]
        for start in range(0, len(who), batch):
            await filler.follow_ups(who[start : start + batch])
    elif kind == "life":
        refs = await refs_of(parts.redis, job["citizens"])
        for start in range(0, len(refs), batch):
            chunk = refs[start : start + batch]
            steps = job["steps"]
            if "ack" in steps:
                await filler.deliver([(r.cid, r.ack) for r in chunk if r.ack])
            if "claim" in steps:
                await filler.claim(chunk, job.get("agent", "ani"))
            if "answer" in steps:
                await filler.answer(chunk, job.get("agent", "ani"))
            if "resolve" in steps:
                await filler.resolve(chunk, job.get("agent", "ani"))
    else:
        raise ValueError(kind)
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}


async def worker_main(job: dict[str, Any]) -> int:
    configure_logging("json", "warning")
    r = fast_client(job["port"], WORKER_NAME)  # ``settle`` waits for these to go
    try:
        parts = Parts.for_settings(bench_settings(f"redis://{HOST}:{job['port']}/0", Path()), r)
        result = await run_job(parts, job)
        print(json.dumps(result), flush=True)
        return 0
    finally:
        await r.aclose()


async def run_workers(port: int, jobs: Sequence[dict[str, Any]], label: str) -> float:
    """Run jobs, one process each, at once; returns the wall seconds."""
    t0 = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.memory",
            "--worker",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in jobs
    ]
    try:
        outs = await asyncio.gather(
            *(p.communicate(json.dumps({**j, "port": port}).encode())
              for p, j in zip(procs, jobs, strict=True))
        )  # fmt: skip
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
    for p, (_out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"{label} worker failed ({p.returncode}): {err.decode()[-2000:]}")
    return time.perf_counter() - t0


def split(first: int, count: int, ways: int) -> list[tuple[int, int]]:
    step = -(-count // ways)
    return [(s, min(step, first + count - s)) for s in range(first, first + count, step)]


# -- measuring ---------------------------------------------------------------------------------


async def settle(r: Any, limit_s: float = 20.0) -> None:
    """Wait until the workers' connections (and their buffers) are gone and the key table is
    not in the middle of a rehash (both of its tables exist for a while after it grows)."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        clients = as_str(await r.execute_command("CLIENT", "LIST"))
        stats = as_str(await r.execute_command("DEBUG", "HTSTATS", "0"))
        if f"name={WORKER_NAME} " not in clients and "rehashing target" not in stats:
            return
        await asyncio.sleep(0.05)  # polling Redis's state; nothing to wait on instead


@dataclass(frozen=True, slots=True)
class Mem:
    """What Redis holds, in bytes, after ``settle``."""

    data: int  # used_memory without client buffers, bounded streams and the key table's buckets
    streams: int  # live events, outboxes, inbound shards
    buckets: int  # the key table's bucket array: 8 B per slot, slots a power of two
    keys: int


async def measure(r: Any) -> Mem:
    await settle(r)
    stats = await r.memory_stats()
    used = int(stats["total.allocated"])
    clients = int(stats.get("clients.normal", 0)) + int(stats.get("clients.slaves", 0))
    pipe = r.pipeline(transaction=False)
    names = [EVENTS_STREAM, keys.outbox_stream("whatsapp")]
    names += [keys.inbound_stream(i) for i in range(4)]
    for k in names:
        pipe.memory_usage(k, samples=0)
    streams = sum(int(x or 0) for x in await pipe.execute())
    ht = as_str(await r.execute_command("DEBUG", "HTSTATS", "0"))
    slots = sum(int(x) for x in re.findall(r"table size: (\d+)", ht.split("[Expires HT]")[0]))
    buckets = 8 * slots
    return Mem(used - clients - streams - buckets, streams, buckets, int(await r.dbsize()))


def kind_of(key: str) -> str:
    """A key's kind: its name with the contact id, numbers and terms generalised."""
    if key.startswith("hub:{search}:"):
        return "hub:{search}:" + key.split(":", 3)[2] + ":<term>"
    if key.startswith("hub:{stats}:"):
        return "hub:{stats}:<metric>:<hour>"
    if key.startswith("hub:pid:"):
        return "hub:pid:{<channel>:<provider id>}"
    if key.startswith("hub:id:"):
        return "hub:id:{<identity>}"
    k = re.sub(r"^hub:c:\{[^}]*\}", "hub:c:{<cid>}", key)
    k = re.sub(r":m:ack-[^:]+$", ":m:<ack id>", k)
    k = re.sub(r":m:[0-9a-z]{20}$", ":m:<entry id>", k)
    k = re.sub(r":t:\d+", ":t:<n>", k)
    k = re.sub(r":seq:\d{4}$", ":seq:<year>", k)
    k = re.sub(r":(wait|held|viewers):.*$", r":\1:<name>", k)
    return k


def as_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class Census:
    """Keys by kind: how many, their MEMORY USAGE, their encodings."""

    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    encodings: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def differences(self, other: Census, tolerance: float = 0.02) -> list[str]:
        out = []
        for k in sorted(set(self.count) | set(other.count)):
            a, b = self.count.get(k, 0), other.count.get(k, 0)
            if abs(a - b) > max(2, tolerance * max(a, b)):
                out.append(f"{k}: {a} keys vs {b}")
            ea, eb = self.encodings.get(k, set()), other.encodings.get(k, set())
            if ea != eb:
                out.append(f"{k}: encodings {sorted(ea)} vs {sorted(eb)}")
        return out


async def census(r: Any) -> Census:
    """Every key (SCAN): for the small phases."""
    c = Census()
    batch: list[bytes] = []

    async def flush() -> None:
        pipe = r.pipeline(transaction=False)
        for k in batch:
            pipe.memory_usage(k, samples=0)
            pipe.object("encoding", k)
        got = await pipe.execute()
        for k, size, enc in zip(batch, got[::2], got[1::2], strict=True):
            kind = kind_of(k.decode())
            c.count[kind] += 1
            c.bytes[kind] += int(size or 0)
            c.encodings[kind].add(as_str(enc))
        batch.clear()

    async for k in r.scan_iter(count=2000):
        batch.append(k)
        if len(batch) >= 2000:
            await flush()
    if batch:
        await flush()
    return c


async def ticket_keys(r: Any, refs: Sequence[Ref]) -> list[str]:
    """Every key that belongs to these tickets alone: their contact's keys, the ticket and
    its entries, the identity, provider ids, the identity's and number's search keys."""
    out: list[str] = []
    pipe = r.pipeline(transaction=False)
    for ref in refs:
        pipe.lrange(keys.ticket_log(ref.cid, ref.n), 0, -1)
        pipe.smembers(keys.contact_identities(ref.cid))
    got = await pipe.execute()
    pids = r.pipeline(transaction=False)
    entries = []
    for ref, log, idents in zip(refs, got[::2], got[1::2], strict=True):
        base = keys.contact(ref.cid)
        tk = keys.ticket(ref.cid, ref.n)
        out += [base, f"{base}:seen", f"{base}:ids", f"{base}:tickets", f"{base}:open",
                f"{base}:tseq", tk, f"{tk}:log"]  # fmt: skip
        for ident in idents:
            out += [keys.identity(as_str(ident)), keys.search_identity(as_str(ident))]
        if ref.number:
            out.append(keys.search_seq(ref.number.rsplit("-", 1)[-1].lstrip("0")))
        for eid in log:
            ek = keys.entry(ref.cid, as_str(eid))
            out.append(ek)
            entries.append(ek)
            pids.hget(ek, "provider_id")
    for pid in await pids.execute():
        if pid:
            out.append(keys.provider_ref("whatsapp", as_str(pid)))
    return list(dict.fromkeys(out))


async def breakdown(r: Any, refs: Sequence[Ref], n_tickets: int) -> list[tuple[str, str, float]]:
    """(kind, encodings, bytes per ticket): the sampled tickets' own keys, averaged; the
    shared keys (indexes, queues, numbers, search terms) in full, over every ticket."""
    rows: dict[str, list[Any]] = {}
    ks = await ticket_keys(r, refs)
    for start in range(0, len(ks), 2000):
        chunk = ks[start : start + 2000]
        pipe = r.pipeline(transaction=False)
        for k in chunk:
            pipe.memory_usage(k, samples=0)
            pipe.object("encoding", k)
        got = await pipe.execute()
        for k, size, enc in zip(chunk, got[::2], got[1::2], strict=True):
            if size is None:
                continue
            row = rows.setdefault(kind_of(k), [0, set(), len(refs), 0])
            row[0] += int(size)
            row[1].add(as_str(enc))
            row[3] += 1
    shared_patterns = ("hub:{tickets}:*", f"{Q}:*", "hub:{search}:w:*", "hub:{search}:n:*")
    for pattern in shared_patterns:
        async for k in r.scan_iter(match=pattern, count=5000):
            row = rows.setdefault(kind_of(as_str(k)), [0, set(), n_tickets, 0])
            row[0] += int(await r.memory_usage(k, samples=0) or 0)
            row[1].add(as_str(await r.object("encoding", k)))
            row[3] += 1
    out = []
    for kind, (total, encs, per, nkeys) in rows.items():
        shared = per == n_tickets and n_tickets != len(refs)
        label = f"{kind} ({nkeys:,} keys, shared)" if shared and nkeys > 1 else kind
        label += " (shared)" if shared and nkeys == 1 else ""
        out.append((label, ",".join(sorted(encs)), total / per))
    out.sort(key=lambda x: -x[2])
    return out


# -- redis-server ------------------------------------------------------------------------------

REDIS_DEFAULTS = {  # Redis 7.0's own, to compare deploy/redis.conf against
    "hash-max-listpack-entries": "128",
    "hash-max-listpack-value": "64",
    "zset-max-listpack-entries": "128",
    "zset-max-listpack-value": "64",
    "set-max-intset-entries": "512",
    "list-max-listpack-size": "-2",
}


def encoding_settings(path: Path = REDIS_CONF) -> dict[str, str]:
    """deploy/redis.conf's memory-encoding directives (``*-max-listpack-*`` and kin)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        name, _, value = line.partition(" ")
        if re.search(r"-max-(listpack|ziplist|intset)-", name):
            out[name] = value.strip()
    return out


async def start_redis(procs: Procs, tmp: Path, settings: dict[str, str]) -> tuple[int, Any]:
    port = free_port()
    extra = [x for k, v in settings.items() for x in (f"--{k}", v)]
    proc = await procs.start(
        "redis",
        shutil.which("redis-server") or "redis-server",
        *("--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"),
        *("--dir", str(tmp), "--daemonize", "no", "--maxmemory-policy", "noeviction"),
        *("--enable-debug-command", "local"),  # DEBUG HTSTATS: is the key table rehashing?
        *extra,
    )
    await wait_port(port, proc)
    return port, proc


async def set_encodings(r: Any, settings: dict[str, str]) -> None:
    for k, v in settings.items():
        await r.config_set(k, v)


# -- the phases --------------------------------------------------------------------------------


async def fill_real(hub: Hub, n: int, seed: int, body: int) -> None:
    """``n`` tickets through the real dispatcher, 100 messages per batch (its default)."""
    d = real_dispatcher(hub)
    filler = Filler(Parts.of_hub(hub), Corpus(body, seed))
    for start in range(0, n, 100):
        now = time.time()
        await d.apply([filler.message(i, filler.corpus.first(i), now)
                       for i in range(start, min(n, start + 100))])  # fmt: skip


async def fill_mix(parts: Parts, n: int, seed: int, body: int, batch: int) -> None:
    """A small realistic mix, in process: ``n`` new tickets, acknowledgements read, half the
    tickets claimed, answered and resolved, ``n`` follow-ups."""
    await run_job(parts, {"kind": "open", "id": 0, "seed": seed, "first": 0, "count": n,
                          "body_chars": body, "batch": batch})  # fmt: skip
    await run_job(parts, {"kind": "life", "id": 1, "seed": seed, "citizens": list(range(n)),
                          "steps": ["ack"], "batch": batch})  # fmt: skip
    await run_job(parts, {"kind": "life", "id": 2, "seed": seed, "batch": batch,
                          "citizens": list(range(0, n, 2)),
                          "steps": ["claim", "answer", "resolve"]})  # fmt: skip
    await run_job(parts, {"kind": "follow", "id": 3, "seed": seed, "count": n, "population": n,
                          "body_chars": body, "batch": batch})  # fmt: skip


async def bytes_after(r: Any, fill: Callable[[], Any]) -> tuple[float, float, int]:
    """(bytes added by ``fill`` but for the key table's buckets, seconds, keys added)."""
    before = await measure(r)
    t0 = time.perf_counter()
    await fill()
    secs = time.perf_counter() - t0
    after = await measure(r)
    return after.data - before.data, secs, after.keys - before.keys


@dataclass
class Step:
    what: str
    n: int
    bytes_each: float
    keys_each: float
    seconds: float


@dataclass
class Results:
    encodings: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)
    scale: list[tuple[int, Mem, float]] = field(default_factory=list)  # tickets, memory, s
    base: Mem | None = None
    steps: list[Step] = field(default_factory=list)
    rows: list[tuple[str, str, float]] = field(default_factory=list)
    floor: list[tuple[str, int, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def phase_check(hub: Hub, r: Any, args: argparse.Namespace, res: Results) -> None:
    """The bulk filler writes what the dispatcher writes: same kinds of keys, counts,
    encodings, and bytes (MEMORY USAGE of every key; and used_memory)."""
    await fill_real(hub, 200, args.seed + 99, args.body_chars)  # warm-up: scripts, buffers
    out = {}
    for label in ("dispatcher", "bulk filler"):
        await r.flushall()
        if label == "dispatcher":
            added, secs, _ = await bytes_after(
                r, lambda: fill_real(hub, args.check, args.seed, args.body_chars)
            )
        else:
            job = {"kind": "open", "id": 0, "seed": args.seed, "first": 0, "count": args.check,
                   "body_chars": args.body_chars, "batch": args.batch}  # fmt: skip
            added, secs, _ = await bytes_after(
                r,
                lambda j=job: run_job(Parts.of_hub(hub), j),  # type: ignore[misc]
            )
        c = await census(r)
        keyed = sum(b for k, b in c.bytes.items() if k not in STREAM_KINDS) / args.check
        out[label] = (added / args.check, keyed, args.check / secs, c)
    (ru, rk, rr, rc), (bu, bk, br, bc) = out["dispatcher"], out["bulk filler"]
    diff = rc.differences(bc)
    say(f"check, {args.check:,} new tickets: real dispatcher {rk:,.0f} B/ticket by MEMORY USAGE "
        f"({ru:,.0f} by used_memory; {rr:,.0f} tickets/s), bulk filler {bk:,.0f} ({bu:,.0f}; "
        f"{br:,.0f} tickets/s in one process); same kinds of keys, counts and encodings: "
        f"{'yes' if not diff else 'NO'}")  # fmt: skip
    # used_memory moves by a few hundred KB with allocator and buffer noise: only a check of
    # its own past a few thousand tickets; MEMORY USAGE of every key must agree within 2 %.
    if diff or abs(rk - bk) > 0.02 * rk or abs(ru - bu) > max(0.05 * ru, 300_000 / args.check):
        res.problems.append(
            "the bulk filler does not write what the dispatcher writes: "
            + "; ".join(diff[:8]) + f" ({rk:,.0f} vs {bk:,.0f} B/ticket)"
        )  # fmt: skip


STREAM_KINDS = frozenset({EVENTS_STREAM, keys.outbox_stream("whatsapp")})


async def phase_encodings(
    hub: Hub, r: Any, args: argparse.Namespace, res: Results, mine: dict[str, str]
) -> None:
    deploy = {**REDIS_DEFAULTS, **encoding_settings()}
    for label, conf in (("Redis defaults", REDIS_DEFAULTS), ("deploy/redis.conf", deploy)):
        await r.flushall()
        await set_encodings(r, conf)
        n = args.encodings_n
        parts = Parts.for_settings(hub.settings, r)
        added, _, _ = await bytes_after(
            r,
            lambda p=parts, n=n: fill_mix(p, n, args.seed, args.body_chars, args.batch),  # type: ignore[misc]
        )
        c = await census(r)
        res.encodings.append(
            (label, added / n, {k: "/".join(sorted(v)) for k, v in c.encodings.items()})
        )
        say(f"encodings, {label}: {added / n:,.0f} B per ticket of the mix")
    await r.flushall()
    await set_encodings(r, mine)


async def phase_scale(port: int, r: Any, args: argparse.Namespace, res: Results) -> None:
    await r.flushall()
    res.base = await measure(r)
    n, done, fill_s = args.tickets, 0, 0.0
    for cp in sorted({c for c in args.checkpoints if 0 < c < n} | {n}):
        jobs = [{"kind": "open", "id": 0, "seed": args.seed + s, "first": s, "count": c,
                 "body_chars": args.body_chars, "batch": args.batch, "streams": False}
                for s, c in split(done, cp - done, args.workers)]  # fmt: skip
        fill_s += await run_workers(port, jobs, "open")
        done = cp
        m = await measure(r)
        res.scale.append((cp, m, fill_s))
        total = m.data + m.buckets - res.base.data - res.base.buckets
        say(f"  {cp:>9,} tickets: {total / cp:,.0f} B/ticket, {(m.keys - res.base.keys) / cp:.1f} "
            f"keys/ticket ({cp / fill_s:,.0f} tickets/s so far)")  # fmt: skip


async def phase_life(
    port: int, r: Any, args: argparse.Namespace, res: Results, sample: list[int]
) -> None:
    """An agent's work on ``--finish`` tickets (not the sampled ones), then follow-ups; in
    this process (they are few), with the filler's client."""
    n = args.tickets
    rnd = random.Random(args.seed + 1)
    sampled = set(sample)
    life = [i for i in rnd.sample(range(n), min(n, args.finish + len(sampled)))
            if i not in sampled][: args.finish]  # fmt: skip
    fast = fast_client(port)
    try:
        parts = Parts.for_settings(bench_settings(f"redis://{HOST}:{port}/0", Path()), fast)
        for what, step in (("acknowledgement sent, delivered, read", "ack"),
                           ("claimed by an agent", "claim"),
                           ("answered (the reply sent, delivered, read)", "answer"),
                           ("resolved", "resolve")):  # fmt: skip
            if not life:
                break
            job = {"kind": "life", "id": 10, "seed": args.seed, "steps": [step],
                   "citizens": life, "batch": args.batch, "streams": False}  # fmt: skip
            added, secs, nkeys = await bytes_after(r, lambda j=job: run_job(parts, j))  # type: ignore[misc]
            res.steps.append(Step(what, len(life), added / len(life), nkeys / len(life), secs))
            say(f"  {len(life):,} tickets {what}: {added / len(life):+,.0f} B/ticket")
        for label, chars in ((f"follow-up of {args.body_chars} characters", args.body_chars),
                             ("follow-up without text", 0)):  # fmt: skip
            m = args.messages
            if not m:
                break
            job = {"kind": "follow", "id": 100 + chars, "body_chars": chars, "count": m,
                   "seed": args.seed + chars, "population": n, "batch": args.batch,
                   "streams": False}  # fmt: skip
            added, secs, nkeys = await bytes_after(r, lambda j=job: run_job(parts, j))  # type: ignore[misc]
            res.steps.append(Step(label, m, added / m, nkeys / m, secs))
            say(f"  {m:,} messages, {label}: {added / m:,.0f} B/message ({m / secs:,.0f}/s)")
    finally:
        await fast.aclose()


async def phase_floor(r: Any, args: argparse.Namespace, res: Results, ref: Ref) -> None:
    """A bare HSET per ticket of a real ticket hash's fields (and a message hash's)."""
    proto_t = await r.hgetall(keys.ticket(ref.cid, ref.n))
    first_msg = (await r.lrange(keys.ticket_log(ref.cid, ref.n), 0, 0))[0]
    proto_m = await r.hgetall(keys.entry(ref.cid, as_str(first_msg)))
    m = min(args.tickets, args.floor_n)
    for label, proto in (("ticket hash", proto_t), ("message hash", proto_m)):
        await r.flushall()

        async def bare(proto: dict[bytes, bytes] = proto, label: str = label) -> None:
            for start in range(0, m, 5000):
                pipe = r.pipeline(transaction=False)
                for i in range(start, min(m, start + 5000)):
                    pipe.hset(f"floor:{label[0]}:{i:08d}", mapping=proto)
                await pipe.execute()

        added, _, _ = await bytes_after(r, bare)
        res.floor.append((label, len(proto), added / m))
    await r.flushall()


async def run(args: argparse.Namespace) -> int:
    configure_logging("json", "warning")
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-memory-"))
    procs = Procs(tmp)
    hub: Hub | None = None
    ok = False
    mine = REDIS_DEFAULTS if args.redis_defaults else {**REDIS_DEFAULTS, **encoding_settings()}
    res = Results()
    ctl: Redis | None = None
    try:
        port, _rproc = await start_redis(procs, tmp, mine)
        settings = bench_settings(f"redis://{HOST}:{port}/0", tmp / "hub")
        check_messages(settings)
        hub = Hub(settings, frozenset())
        await hub.start()
        r = ctl = fast_client(port, "bench-control")
        info = await r.info("server")
        say(f"redis-server {info['redis_version']} on port {port}, encodings "
            f"({'Redis defaults' if args.redis_defaults else 'deploy/redis.conf'}): "
            + ", ".join(f"{k} {v}" for k, v in mine.items()))  # fmt: skip
        if args.check:
            await phase_check(hub, r, args, res)
        if args.encodings_n:
            await phase_encodings(hub, r, args, res, mine)
        await phase_scale(port, r, args, res)
        rnd = random.Random(args.seed)
        sample = sorted(rnd.sample(range(args.tickets), min(args.tickets, args.sample)))
        if sample:  # fresh tickets, before the life cycle touches some
            res.rows = await breakdown(r, await refs_of(r, sample), args.tickets)
        await phase_life(port, r, args, res, sample)
        await phase_floor(r, args, res, (await refs_of(r, [sample[0] if sample else 0]))[0])
        say()
        report(args, res, time.perf_counter() - t_start)
        if res.problems:
            say("\nPROBLEMS:\n  " + "\n  ".join(res.problems))
        ok = not res.problems
        return 0 if ok else 1
    finally:
        if ctl is not None:
            await ctl.aclose()
        if hub is not None:
            with contextlib.suppress(Exception):
                await hub.stop()
        await procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"redis log kept in {tmp}")


MESSAGE_KINDS = (":m:<entry id>", ":seen", ":log", "hub:{search}:w:")


def report(args: argparse.Namespace, res: Results, elapsed: float) -> None:
    base = res.base
    assert base is not None
    say("scale (used_memory without client buffers and the bounded streams)")
    say(f"  {'tickets':>10} | {'MiB':>8} | {'B/ticket':>8} | {'marginal':>8} | {'keys':>11} | "
        f"key table | fill s")  # fmt: skip
    prev_n, prev_b = 0, 0
    for n, m, secs in res.scale:
        b = m.data + m.buckets - base.data - base.buckets
        say(f"  {n:>10,} | {b / 2**20:>8,.1f} | {b / n:>8,.0f} | "
            f"{(b - prev_b) / (n - prev_n):>8,.0f} | {m.keys - base.keys:>11,} | "
            f"{m.buckets / 2**20:>5,.0f} MiB | {secs:,.0f}")  # fmt: skip
        prev_n, prev_b = n, b
    n, m, _ = res.scale[-1]
    per = (m.data + m.buckets - base.data - base.buckets) / n
    keys_per = (m.keys - base.keys) / n
    say(
        f"  (the key table's buckets: 8 B × the next power of two above the key count, so "
        f"8-16 B per key: here {m.buckets / max(1, m.keys):.1f})"
    )
    say()
    say(f"figures (durable bytes, {args.body_chars}-character WhatsApp messages)")
    say(
        f"  a new ticket (its first message, acknowledgement queued, in its unit's queue): "
        f"{per:,.0f} B, {keys_per:.1f} keys"
    )
    for st in res.steps:
        unit = "message" if "follow-up" in st.what else "ticket"
        sign = "" if unit == "message" else "+"
        say(f"  {st.what}: {sign}{st.bytes_each:,.0f} B per {unit}, {sign}{st.keys_each:.1f} keys "
            f"({st.n:,}, {st.n / st.seconds:,.0f}/s)")  # fmt: skip
    if res.rows:
        msg = sum(x for k, _e, x in res.rows if any(s in k for s in MESSAGE_KINDS))
        total = sum(x for _k, _e, x in res.rows)
        say(
            f"  of a new ticket's {total:,.0f} B by MEMORY USAGE, its first message's keys and "
            f"shares (entry, dedupe, log, search terms) are {msg:,.0f} B: the ticket without "
            f"its message is {total - msg:,.0f} B"
        )
    for label, nfields, b in res.floor:
        say(f"  floor: a bare HSET of a real {label}'s {nfields} fields: {b:,.0f} B")
    if res.encodings:
        say()
        say(
            f"encodings ({args.encodings_n:,} tickets: new, acknowledgement read, half "
            "claimed, answered and resolved, as many follow-ups):"
        )
        for label, b, enc in res.encodings:
            hashes = sorted((k.removeprefix("hub:c:{<cid>}"), v) for k, v in enc.items()
                            if k.startswith("hub:c:{<cid>}:m") or k.endswith(":t:<n>"))  # fmt: skip
            say(f"  {label:<18} {b:>7,.0f} B/ticket  " + ", ".join(f"{k} {v}" for k, v in hashes))
    if res.rows:
        say()
        say(
            f"where a new ticket's bytes go (MEMORY USAGE; own keys averaged over {args.sample:,} "
            "sampled tickets, shared keys in full over all tickets)"
        )
        for kind, enc, b in res.rows:
            say(f"  {b:>8,.1f}  {kind}  [{enc}]")
        say(f"  {sum(x for _k, _e, x in res.rows):>8,.1f}  total (without the key table's buckets)")
    say(f"\nwhole run: {elapsed:,.0f} s")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run memory", description=__doc__.split("\n\n")[0])

    def ints(s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x]

    p.add_argument("--tickets", type=int, default=100_000, help="new tickets (scale phase)")
    p.add_argument("--checkpoints", type=ints, default=[10_000],
                   help="also read used_memory after these many (comma-separated)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="filler processes")
    p.add_argument("--messages", type=int, default=10_000, help="follow-ups appended")
    p.add_argument("--finish", type=int, default=5000, help="tickets taken through the cycle")
    p.add_argument("--body-chars", type=int, default=120, help="message length")
    p.add_argument("--check", type=int, default=1000, help="dispatcher vs filler (0: skip)")
    p.add_argument("--encodings-n", type=int, default=3000, help="defaults vs deploy (0: skip)")
    p.add_argument("--sample", type=int, default=2000, help="tickets sampled for the breakdown")
    p.add_argument("--floor-n", type=int, default=100_000, help="bare HSETs for the floor")
    p.add_argument("--batch", type=int, default=1000, help="messages per pipeline")
    p.add_argument("--redis-defaults", action="store_true", help="Redis's encodings, not deploy's")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (redis log)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


async def _main(args: argparse.Namespace) -> int:
    if args.worker:  # the job comes on stdin (a list of citizens can be long)
        return await worker_main(json.loads(sys.stdin.read()))
    return await until_interrupted(run(args))


def main(argv: Iterable[str] | None = None) -> int:
    return int(new_loop_runner(_main(_parser().parse_args(list(argv) if argv else None))))


if __name__ == "__main__":
    sys.exit(main())
