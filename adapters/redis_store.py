"""The ticket store on Redis: contacts, tickets, timelines, replies and their delivery states.

Each write that must be atomic is one Lua script on one contact's hash tag, so the same code
runs on a single Redis and on Redis Cluster. Work that spans tags (ticket numbers, indexes,
provider-id lookups) is derived and idempotent: redoing it after a crash converges to the same
state, which is what lets the dispatcher ack only after everything is written.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from adapters import keys
from adapters.redis_bus import Command, Pipeliner, message_json
from adapters.scripts import AnyRedis, Script, Scripts, as_text
from hub.clock import Clock, SystemClock
from hub.ids import new_id, ticket_number
from hub.model import DeliveryState, Message
from hub.ports import Applied, Claim, Route, split_ticket_id, ticket_id

JAKARTA = ZoneInfo("Asia/Jakarta")
STATUSES = ("open", "resolved", "closed")
INDEXED = ("status", "channel", "unit", "assignee")
FACT_FIELDS = (
    "created_at", "status", "unit", "channel", "account", "priority", "category", "number",
    "first_response_at", "first_response_by", "resolved_at", "closed_at", "reopen_count",
    "reopened_at", "assignee", "merged_into", "sla_first_response", "sla_resolution",
)  # fmt: skip
REINDEX_FIELDS = ("created_at", "updated_at", "ix", "priority", *INDEXED)
TAKE_EARLY_LUA = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return items
"""


class AppliedBatch(list[Applied]):
    """What ``RedisStore.apply_messages`` answers: the ``Applied`` of each message, in order,
    and ``rows``: each ticket's ``REINDEX_FIELDS`` as the batch's script calls left them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, Sequence[Any]] = {}


class NumberedBatch(dict[str, str]):
    """What ``RedisStore.assign_numbers`` answers: ticket id → the number it was given, and
    ``fields``: the hashes read with them (ticket id → fields)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, dict[str, str]] = {}


FACTS_CHUNK = 500  # tickets per round trip when reading many tickets' facts


class RedisStore:
    def __init__(
        self, redis: AnyRedis, ticket_prefix: str = "KMN", clock: Clock | None = None
    ) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.scripts = Scripts(redis)
        # The dispatcher's and the sender's commands go through the shared pipeliner:
        # concurrent steps (a batch's acknowledgements, the sender's replies) share round trips.
        self.pipe = Pipeliner.of(redis)
        self._take_early = Script(redis, TAKE_EARLY_LUA)
        self.ticket_prefix = ticket_prefix
        self.clock = clock or SystemClock()

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    # -- inbound correlation (used by the dispatcher, batched) ---------------------------

    async def resolve_contacts(self, identities: Sequence[str]) -> list[str]:
        """Identity → contact id, creating contacts for identities never seen."""
        unique = list(dict.fromkeys(identities))
        script = self.scripts.resolve_contact
        replies = await self.pipe.many(
            [self.pipe.script_command(script, [keys.identity(i)], [new_id()]) for i in unique]
        )
        cids = {i: as_text(r[0]) for i, r in zip(unique, replies, strict=True)}
        return [cids[i] for i in identities]

    async def apply_messages(
        self,
        items: Sequence[tuple[str, Message, Route]],
        reopen_window_ms: int,
        texts: Mapping[str, str] | None = None,
    ) -> list[Applied]:
        """Store (contact id, message, route) triples in order, one script call each, all in
        one round trip. The answer is an ``AppliedBatch``: it also carries each ticket's
        indexed fields as the batch left them, for ``reindex_rows`` (no round trip to read
        the tickets again). ``texts``: message id → the message's JSON as the inbound stream
        holds it (``message_json`` of the same message): stored as it is, not encoded again."""
        script = self.scripts.apply_message
        texts = texts or {}
        commands = [
            self.pipe.script_command(
                script,
                [keys.contact(cid)],
                [
                    msg.id,
                    f"{msg.channel}:{msg.account}:{msg.provider_id}",
                    texts.get(msg.id) or message_json(msg),
                    int(msg.received_at * 1000),
                    reopen_window_ms,
                    msg.channel,
                    msg.account,
                    msg.reply_address,
                    msg.display_name,
                    "" if route.foreign_sender else msg.sender,
                    route.unit,
                    route.category,
                    route.priority,
                    route.ticket_n,
                    msg.meta.get("reply_context", ""),
                ],
            )
            for cid, msg, route in items
        ]
        out = AppliedBatch()
        rows = out.rows
        for (cid, _msg, _route), r in zip(items, await self.pipe.many(commands), strict=True):
            a = Applied(
                as_text(r[0]), cid, as_text(r[1]), as_text(r[2]), as_text(r[3]), as_text(r[4])
            )
            out.append(a)
            rows[a.ticket_id] = r[5]  # a later message of the same ticket: its newer state
        return out

    async def assign_numbers(
        self, applied: Sequence[Applied], with_fields: Collection[str] = ()
    ) -> dict[str, str]:
        """Give human numbers (KMN-2026-000123) to tickets that have none yet: one INCRBY
        takes the batch's numbers, one round trip gives them. The answer is a
        ``NumberedBatch``: ``fields`` has the whole hash, number included, of the tickets in
        ``with_fields`` (read in that same round trip: what their acknowledgements need).
        The number → ticket lookup is written by ``index_numbers``, which nothing in the
        batch waits for."""
        out = NumberedBatch()
        todo = {a.ticket_id: a for a in applied if not a.number}
        if not todo:
            return out
        year = datetime.fromtimestamp(self.clock.now(), JAKARTA).year
        top = int(await self.pipe.one("INCRBY", keys.ticket_seq(year), len(todo)))
        script = self.scripts.assign_number
        commands: list[Command] = []
        for i, a in enumerate(todo.values()):
            key = keys.ticket(a.contact_id, a.ticket_n)
            number = ticket_number(self.ticket_prefix, year, top - len(todo) + 1 + i)
            commands.append(self.pipe.script_command(script, [key], [number]))
            if a.ticket_id in with_fields:
                commands.append(("HGETALL", key))
        replies = iter(await self.pipe.many(commands))
        for tid in todo:
            out[tid] = as_text(next(replies)[0])
            if tid in with_fields:
                out.fields[tid] = {as_text(k): as_text(v) for k, v in next(replies).items()}
        return out

    async def index_numbers(self, numbers: dict[str, str]) -> None:
        """Number → ticket id, for a number quoted in a subject or typed in a search."""
        if numbers:
            flat = [x for tid, number in numbers.items() for x in (number, tid)]
            await self.pipe.one("HSET", keys.ticket_numbers(), *flat)

    async def find_threads(self, hints: Iterable[str]) -> dict[str, str]:
        """Thread hints (an e-mail Message-ID, a portal request id, a ticket number) → the
        ticket they belong to, for those the hub has seen."""
        wanted = list(dict.fromkeys(hints))
        if not wanted:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for h in wanted:
            if h.startswith("ticket-number:"):
                pipe.hget(keys.ticket_numbers(), h.removeprefix("ticket-number:"))
            else:
                pipe.get(keys.thread(h))
        return {h: as_text(v) for h, v in zip(wanted, await pipe.execute(), strict=True) if v}

    async def remember_threads(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Hint → ticket, first writer wins (a later mail quoting it joins the same ticket)."""
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for hint, tid in pairs:
            if not hint.startswith("ticket-number:"):
                pipe.set(keys.thread(hint), tid, nx=True)
                n += 1
        if n:
            await pipe.execute()

    async def reindex(self, ticket_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """Bring the list indexes in line with each ticket's fields (idempotent); returns
        each ticket's indexed fields (status, channel, unit, assignee, priority)."""
        tids = list(dict.fromkeys(ticket_ids))
        if not tids:
            return {}
        rows = await self.pipe.many(
            [("HMGET", keys.ticket(*split_ticket_id(tid)), *REINDEX_FIELDS) for tid in tids]
        )
        return await self.reindex_rows(dict(zip(tids, rows, strict=True)))

    async def reindex_rows(self, rows: dict[str, Sequence[Any]]) -> dict[str, dict[str, str]]:
        """``reindex`` from the tickets' fields already read (``REINDEX_FIELDS`` per ticket
        id): the index writes of the whole batch in one script call on ``{tickets}``
        (``adapters/lua/index_tickets.lua``), and the changed tickets' ``ix``."""
        seen, written = self.start_reindex_rows(rows)
        await written
        return seen

    def start_reindex_rows(
        self, rows: dict[str, Sequence[Any]]
    ) -> tuple[dict[str, dict[str, str]], asyncio.Future[list[Any]]]:
        """``reindex_rows``, the write queued on the loop turn's pipeline and not awaited:
        the indexed fields now, the write's future to await with other work."""
        created_all: list[str] = []
        adds: dict[str, list[str]] = {}
        rems: dict[str, list[str]] = {}
        ix_writes: list[Command] = []
        seen: dict[str, dict[str, str]] = {}
        for tid, row in rows.items():
            if row[0] is None:
                continue
            created = as_text(row[0])
            updated = as_text(row[1]) if row[1] else created
            old = json.loads(row[2]) if row[2] else {}
            new = {f: as_text(v) for f, v in zip(INDEXED, row[4:], strict=True) if v}
            seen[tid] = {**new, "priority": as_text(row[3] or b"normal"), "created_at": created}
            created_all += [created, tid]
            for field, value in old.items():
                if new.get(field) != value:
                    rems.setdefault(keys.ticket_index(field, value), []).append(tid)
            for field, value in new.items():
                adds.setdefault(keys.ticket_index(field, value), []).extend((updated, tid))
            if new != old:
                ix = json.dumps(new, sort_keys=True)
                ix_writes.append(("HSET", keys.ticket(*split_ticket_id(tid)), "ix", ix))
        if not seen:
            return seen, self.pipe.many([])
        batch = {
            "nx": created_all,
            "rem": [[k, *members] for k, members in rems.items()],
            "add": [[k, *pairs] for k, pairs in adds.items()],
        }
        write = self.pipe.script_command(
            self.scripts.index_tickets, [keys.ticket_index()], [json.dumps(batch)]
        )
        return seen, self.pipe.many([write, *ix_writes])

    async def open_counts(self, units: Sequence[str]) -> dict[str, int]:
        """Open tickets per unit (waiting or held), from the list indexes (one slot)."""
        pipe = self.redis.pipeline(transaction=False)
        for u in units:
            pipe.zintercard(2, [keys.ticket_index("status", "open"), keys.ticket_index("unit", u)])
        return {u: int(n) for u, n in zip(units, await pipe.execute(), strict=True)}

    async def open_ticket_facts(self, limit: int = 20_000) -> list[dict[str, str]]:
        """The fields SLA timers need, for every open ticket (newest activity first)."""
        tids = [
            as_text(t)
            for t in await self.redis.zrevrange(keys.ticket_index("status", "open"), 0, limit - 1)
        ]
        return await self.ticket_facts(tids)

    async def ticket_facts(self, tids: Sequence[str]) -> list[dict[str, str]]:
        """Report and SLA fields of these tickets (missing ones are skipped)."""
        fields = FACT_FIELDS
        out: list[dict[str, str]] = []
        # Through the pipeliner (packed by hiredis, not by redis-py in Python: 20k tickets
        # were seconds of a loop that also dispatches), a few hundred at a time, so that the
        # process's other work (a batch of messages, a request) goes on between them.
        for start in range(0, len(tids), FACTS_CHUNK):
            chunk = tids[start : start + FACTS_CHUNK]
            commands = [("HMGET", keys.ticket(*split_ticket_id(tid)), *fields) for tid in chunk]
            for tid, row in zip(chunk, await self.pipe.many(commands), strict=True):
                if row[0] is None:
                    continue
                fact = {f: as_text(v) for f, v in zip(fields, row, strict=True) if v is not None}
                fact["id"] = tid
                out.append(fact)
        return out

    async def tickets_created_between(self, since_ms: int, until_ms: int) -> list[str]:
        rows = await self.redis.zrangebyscore(keys.ticket_index(), since_ms, f"({until_ms}")
        return [as_text(r) for r in rows]

    # -- replies ---------------------------------------------------------------------

    async def add_reply(
        self, tid: str, reply_id: str, record: dict[str, Any], kind: str, author: str
    ) -> tuple[int, str]:
        cid, n = split_ticket_id(tid)
        created, state = await self.pipe.script(
            self.scripts.add_reply,
            [keys.contact(cid)],
            [
                n,
                reply_id,
                json.dumps(record, ensure_ascii=False),
                self._now_ms(),
                kind,
                author,
            ],
        )
        return int(created), as_text(state)

    async def claim_reply(self, cid: str, reply_id: str, stale_ms: int = 120_000) -> Claim:
        r = await self.pipe.script(
            self.scripts.claim_reply, [keys.entry(cid, reply_id)], [self._now_ms(), stale_ms]
        )
        if as_text(r[0]) != "go":
            return Claim(go=False, state=as_text(r[1]))
        return Claim(go=True, state=as_text(r[3]), attempts=int(r[1]), reply=json.loads(r[2]))

    async def set_reply_state(
        self,
        cid: str,
        reply_id: str,
        state: DeliveryState,
        provider_id: str = "",
        error_code: str = "",
        error_message: str = "",
        force: bool = False,
    ) -> str:
        r = await self.pipe.script(
            self.scripts.set_reply_state,
            [keys.entry(cid, reply_id)],
            [
                state.value,
                state.rank,
                self._now_ms(),
                provider_id,
                error_code,
                error_message,
                "1" if force else "0",
            ],
        )
        return as_text(r[0])

    async def map_provider_id(self, channel: str, provider_id: str, cid: str, rid: str) -> None:
        await self.pipe.one("SET", keys.provider_ref(channel, provider_id), f"{cid}|{rid}")

    async def lookup_provider_id(self, channel: str, provider_id: str) -> tuple[str, str] | None:
        raw = await self.pipe.one("GET", keys.provider_ref(channel, provider_id))
        if raw is None:
            return None
        cid, _, rid = as_text(raw).partition("|")
        return cid, rid

    async def park_early_status(self, channel: str, provider_id: str, payload: str) -> None:
        """A status that beat the send's answer waits here until the reply knows its id."""
        k = keys.early_statuses(channel, provider_id)
        await self.scripts.atomic(("RPUSH", k, payload), ("EXPIRE", k, 86400))  # one key

    async def take_early_statuses(self, channel: str, provider_id: str) -> list[str]:
        """The parked statuses, taken atomically (LRANGE and DEL in one script)."""
        k = keys.early_statuses(channel, provider_id)
        return [as_text(i) for i in await self.pipe.script(self._take_early, [k], [])]

    # -- what a channel reports besides messages: echoes, retractions, linked identities --

    async def record_outbound(
        self, cid: str, entry_id: str, record: dict[str, Any], at_ms: int, author: str
    ) -> tuple[bool, str]:
        """An outbound message sent outside the hub, on the contact's current ticket (the
        open one, else the latest, else a new resolved one). Idempotent on ``entry_id``."""
        r = await self.scripts.record_outbound(
            keys=[keys.contact(cid)],
            args=[
                "",
                entry_id,
                json.dumps(record, ensure_ascii=False),
                at_ms,
                author,
                record.get("channel", ""),
                record.get("account", ""),
            ],
        )
        return bool(int(r[0])), as_text(r[1])

    async def recent_outbound(self, cid: str, limit: int = 20) -> list[dict[str, str]]:
        """The last outbound entries of the contact's current ticket, newest first, with
        their text: how an echo that beat the send's answer is recognised as the hub's own."""
        n = await self.redis.get(f"{keys.contact(cid)}:open")
        if n is None:
            return []
        log = await self.redis.lrange(keys.ticket_log(cid, as_text(n)), -limit, -1)
        pipe = self.redis.pipeline(transaction=False)
        for eid in log:
            pipe.hgetall(keys.entry(cid, as_text(eid)))
        out = []
        for eid, row in zip(reversed(log), reversed(await pipe.execute()), strict=True):
            fields = {as_text(k): as_text(v) for k, v in row.items()}
            if fields.get("dir") != "out":
                continue
            body = json.loads(fields.get("json") or "{}")
            out.append(
                {
                    "id": as_text(eid),
                    "state": fields.get("state", ""),
                    "at": fields.get("at", "0"),
                    "channel": str(body.get("channel", "")),
                    "text": str(body.get("text", "")),
                    "provider_id": fields.get("provider_id", ""),
                }
            )
        return out

    async def retract_message(
        self, cid: str, dedupe_key: str, now_ms: int
    ) -> tuple[str, str, bool] | None:
        """Blank a message the citizen deleted; (message id, ticket n, changed now)."""
        r = await self.scripts.retract_message(keys=[keys.contact(cid)], args=[dedupe_key, now_ms])
        if not r:
            return None
        return as_text(r[0]), as_text(r[1]), bool(int(r[2]))

    async def link_identity(self, cid: str, identity: str) -> str:
        """Give ``identity`` to ``cid`` unless a contact has it; the contact that owns it.
        Two idempotent steps (the identity key and the contact live on different slots)."""
        if await self.redis.set(keys.identity(identity), cid, nx=True):
            await self.redis.sadd(keys.contact_identities(cid), identity)
            return cid
        owner = await self.redis.get(keys.identity(identity))
        owner_id = as_text(owner) if owner is not None else cid
        if owner_id == cid:  # a retry after the first step: finish the second
            await self.redis.sadd(keys.contact_identities(cid), identity)
        return owner_id

    # -- tickets -------------------------------------------------------------------------

    async def resolve_ticket_ref(self, ref: str) -> str | None:
        """A ticket id (``<contact>.<n>``) or a human number (``KMN-2026-000123``)."""
        if "-" in ref and ref[:1].isalpha() and ref.split("-")[0].isupper():
            raw = await self.redis.hget(keys.ticket_numbers(), ref)
            return as_text(raw) if raw else None
        try:
            cid, n = split_ticket_id(ref)
        except KeyError:
            return None
        return ref if await self.redis.exists(keys.ticket(cid, n)) else None

    async def set_ticket_status(self, tid: str, status: str, actor: str = "api") -> tuple[str, str]:
        cid, n = split_ticket_id(tid)
        now = self._now_ms()
        event = {"type": "status", "status": status, "actor": actor, "at": now}
        r = await self.scripts.set_ticket_status(
            keys=[keys.contact(cid)],
            args=[n, status, now, new_id(now), json.dumps(event, ensure_ascii=False)],
        )
        await self.reindex([tid])
        return as_text(r[0]), as_text(r[1])

    async def _timeline(self, tid: str, with_raw: bool) -> list[dict[str, Any]]:
        cid, n = split_ticket_id(tid)
        log = await self.redis.lrange(keys.ticket_log(cid, n), 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for eid in log:
            pipe.hgetall(keys.entry(cid, as_text(eid)))
        return [
            _timeline_entry(
                as_text(eid), {as_text(k): as_text(v) for k, v in row.items()}, with_raw
            )
            for eid, row in zip(log, await pipe.execute(), strict=True)
        ]

    async def get_ticket(self, tid: str, with_raw: bool = False) -> dict[str, Any] | None:
        """A ticket with one timeline: its own entries and those of tickets merged into it."""
        cid, n = split_ticket_id(tid)
        fields = await self.redis.hgetall(keys.ticket(cid, n))
        if not fields:
            return None
        ticket: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
        ticket.pop("ix", None)
        ticket["id"] = tid
        ticket["contact_id"] = cid
        entries = await self._timeline(tid, with_raw)
        merged = json.loads(ticket.get("merged_from") or "[]")
        for src in merged:
            for e in await self._timeline(src, with_raw):
                entries.append({**e, "from_ticket": src})
        if merged:
            entries.sort(key=lambda e: e["at"])  # stable: ties keep log order
        ticket["merged_from"] = merged
        ticket["messages"] = entries
        return ticket

    async def set_open_ticket(self, cid: str, n: str) -> None:
        """Point a contact's new messages at ticket ``n`` (after merging into it)."""
        await self.redis.set(f"{keys.contact(cid)}:open", n)

    # -- contact merges: identities move, an audit trail on both sides -------------------

    async def merge_contacts(self, into: str, other: str, actor: str) -> list[str]:
        """Every identity of ``other`` now names ``into``; returns the identities moved."""
        idents = sorted(
            as_text(i) for i in await self.redis.smembers(keys.contact_identities(other))
        )
        now = self._now_ms()
        for ident in idents:
            await self.redis.set(keys.identity(ident), into)
        # each side in one atomic step on its own hash tag (MULTI/EXEC, cluster-safe)
        steps: list[tuple[Any, ...]] = []
        if idents:
            steps.append(("SADD", keys.contact_identities(into), *idents))
            origin = [w for i in idents for w in (i, other)]
            steps.append(("HSET", f"{keys.contact(into)}:origin", *origin))
        steps.append(("SADD", f"{keys.contact(into)}:absorbed", other))
        audit: dict[str, Any] = {"type": "merged", "other": other, "identities": idents}
        audit |= {"actor": actor, "at": now}
        steps.append(("RPUSH", f"{keys.contact(into)}:audit", json.dumps(audit)))
        await self.scripts.atomic(*steps)
        await self.scripts.atomic(
            ("HSET", keys.contact(other), "merged_into", into),
            (
                "RPUSH",
                f"{keys.contact(other)}:audit",
                json.dumps({"type": "merged_into", "into": into, "actor": actor, "at": now}),
            ),
        )
        return idents

    async def unmerge_contacts(self, into: str, other: str, actor: str) -> list[str]:
        """Undo ``merge_contacts``: the identities that came from ``other`` go back to it."""
        origin = {
            as_text(k): as_text(v)
            for k, v in (await self.redis.hgetall(f"{keys.contact(into)}:origin")).items()
        }
        idents = sorted(i for i, src in origin.items() if src == other)
        now = self._now_ms()
        for ident in idents:
            await self.redis.set(keys.identity(ident), other)
        steps: list[tuple[Any, ...]] = []
        if idents:
            steps.append(("SREM", keys.contact_identities(into), *idents))
            steps.append(("HDEL", f"{keys.contact(into)}:origin", *idents))
        steps.append(("SREM", f"{keys.contact(into)}:absorbed", other))
        audit: dict[str, Any] = {"type": "unmerged", "other": other, "identities": idents}
        audit |= {"actor": actor, "at": now}
        steps.append(("RPUSH", f"{keys.contact(into)}:audit", json.dumps(audit)))
        await self.scripts.atomic(*steps)
        await self.scripts.atomic(
            ("HDEL", keys.contact(other), "merged_into"),
            (
                "RPUSH",
                f"{keys.contact(other)}:audit",
                json.dumps({"type": "unmerged_from", "into": into, "actor": actor, "at": now}),
            ),
        )
        return idents

    async def add_event(
        self, tid: str, event: dict[str, Any], fields: dict[str, str] | None = None
    ) -> bool:
        """Append an audit entry to the ticket's timeline and apply ``fields`` with it."""
        cid, n = split_ticket_id(tid)
        flat: list[str] = []
        for k, v in (fields or {}).items():
            flat += [k, v]
        eid = event.setdefault("id", new_id(self._now_ms()))
        event.setdefault("at", self._now_ms())
        r = await self.scripts.add_event(
            keys=[keys.contact(cid)],
            args=[n, eid, json.dumps(event, ensure_ascii=False), self._now_ms(), *flat],
        )
        if fields:
            await self.reindex([tid])
        return int(r) > 0

    async def get_ticket_fields(self, tid: str) -> dict[str, str]:
        cid, n = split_ticket_id(tid)
        raw = await self.pipe.one("HGETALL", keys.ticket(cid, n))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def get_entry(self, cid: str, entry_id: str) -> dict[str, str]:
        raw = await self.pipe.one("HGETALL", keys.entry(cid, entry_id))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def list_tickets(
        self, filters: dict[str, str], limit: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        ix = [keys.ticket_index(f, v) for f, v in filters.items() if v]
        if not ix:
            src = keys.ticket_index()
            total = await self.redis.zcard(src)
            tids = await self.redis.zrevrange(src, offset, offset + limit - 1)
        elif len(ix) == 1:
            total = await self.redis.zcard(ix[0])
            tids = await self.redis.zrevrange(ix[0], offset, offset + limit - 1)
        else:
            rows = await self.redis.zinter(ix, withscores=True, aggregate="MAX")
            rows.sort(key=lambda r: r[1], reverse=True)
            total = len(rows)
            tids = [r[0] for r in rows[offset : offset + limit]]
        pipe = self.redis.pipeline(transaction=False)
        for tid in tids:
            cid, n = split_ticket_id(as_text(tid))
            pipe.hgetall(keys.ticket(cid, n))
        out = []
        for tid, row in zip(tids, await pipe.execute(), strict=True):
            t = {as_text(k): as_text(v) for k, v in row.items()}
            t.pop("ix", None)
            t["id"] = as_text(tid)
            t["contact_id"] = split_ticket_id(as_text(tid))[0]
            out.append(t)
        return out, int(total)

    async def find_contact(self, identity: str) -> str | None:
        raw = await self.redis.get(keys.identity(identity))
        return as_text(raw) if raw else None

    async def get_contact(self, cid: str) -> dict[str, Any] | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.contact(cid))
        pipe.smembers(keys.contact_identities(cid))
        pipe.zrevrange(keys.contact_tickets(cid), 0, -1)
        fields, idents, tickets = await pipe.execute()
        if not fields:
            return None
        contact: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
        contact["id"] = cid
        contact["identities"] = [_identity_view(as_text(i)) for i in sorted(idents)]
        contact["tickets"] = [ticket_id(cid, as_text(n)) for n in tickets]
        absorbed = sorted(
            as_text(a) for a in await self.redis.smembers(f"{keys.contact(cid)}:absorbed")
        )
        for other in absorbed:
            got = await self.redis.zrevrange(keys.contact_tickets(other), 0, -1)
            contact["tickets"] += [ticket_id(other, as_text(n)) for n in got]
        contact["merged_contacts"] = absorbed
        audit = await self.redis.lrange(f"{keys.contact(cid)}:audit", 0, -1)
        contact["audit"] = [json.loads(a) for a in audit]
        return contact


def _identity_view(ident: str) -> dict[str, Any]:
    kind, _, value = ident.partition(":")
    reachable = {
        "phone": ["whatsapp", "call"],
        "email": ["email"],
        "telegram": ["telegram"],
        "instagram": ["instagram"],
    }.get(kind, [])
    return {"kind": kind, "value": value, "channels": reachable}


def _timeline_entry(eid: str, row: dict[str, str], with_raw: bool) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(row.get("json", "{}"))
    if not with_raw:
        body.pop("raw", None)
    entry: dict[str, Any] = {"id": eid, "direction": row.get("dir", ""), **body}
    entry["at"] = datetime.fromtimestamp(int(float(row.get("at", "0"))) / 1000, UTC).isoformat()
    if "retracted_at" in row:
        at = int(row["retracted_at"]) / 1000
        entry["retracted_at"] = datetime.fromtimestamp(at, UTC).isoformat()
    if row.get("dir") == "out":
        for f in (
            "state",
            "attempts",
            "kind",
            "author",
            "provider_id",
            "error_code",
            "error_message",
        ):
            if f in row:
                entry[f] = int(row[f]) if f == "attempts" else row[f]
    return entry
