"""The Redis side of archiving closed tickets (``hub.archive`` decides, this executes).

Where each step writes, and why in this order (crash-safe, see ``hub.archive``):

- ``begin``: one atomic step on ``{tickets}`` records how many bytes of an archive file are
  committed together with the plans of the tickets they hold (``keys.archive_pending``);
- ``delete_ticket``: one script on the contact's tag (``adapters/lua/archive_ticket.lua``)
  deletes the ticket, its log, its entries and its dedupe marks, only if the ticket is still
  what the file holds;
- ``finish``: the search terms (one atomic step on ``{search}``), thread hints and provider
  ids (each on its own tag, deleted only while they still name this ticket), then one atomic
  step on ``{tickets}``: the record (``keys.archive_records``), the number leaves
  ``keys.ticket_numbers``, the ticket leaves every list index, the plan is done.

Every key is named directly from the plan: no KEYS or SCAN over the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from adapters import keys
from adapters.redis_bus import Command, Pipeliner
from adapters.redis_queue import Q
from adapters.redis_store import STATUSES
from adapters.scripts import AnyRedis, Script, Scripts, as_text
from hub.ports import split_ticket_id
from hub.search import number_seq

DEL_IF_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
INDEXED = ("status", "channel", "unit", "assignee")


def _record_field(ref: str) -> str:
    """A ticket id has a dot (``<contact>.<n>``); a number does not (``KMN-2026-000123``)."""
    return f"t:{ref}" if "." in ref else f"n:{ref.upper()}"


class RedisArchive:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.pipe = Pipeliner.of(redis)
        self.scripts = Scripts(redis)
        source = (resources.files("adapters") / "lua" / "archive_ticket.lua").read_text("utf-8")
        self._delete = Script(redis, source)
        self._del_if = Script(redis, DEL_IF_LUA)

    async def candidates(self, status: str, before_ms: int, offset: int, limit: int) -> list[str]:
        got = await self.redis.zrangebyscore(
            keys.ticket_index("status", status), "-inf", before_ms, start=offset, num=limit
        )
        return [as_text(t) for t in got]

    async def ticket_fields(self, tids: Sequence[str]) -> dict[str, dict[str, str]]:
        if not tids:
            return {}
        rows = await self.pipe.many([("HGETALL", keys.ticket(*split_ticket_id(t))) for t in tids])
        return {
            t: {as_text(k): as_text(v) for k, v in row.items()}
            for t, row in zip(tids, rows, strict=True)
        }

    async def queued(self, tids: Sequence[str]) -> set[str]:
        if not tids:
            return set()
        where, lease = await self.pipe.many(
            [("HMGET", f"{Q}:where", *tids), ("HMGET", f"{Q}:lease", *tids)]
        )
        return {t for t, w, h in zip(tids, where, lease, strict=True) if w or h}

    async def known(self, tids: Sequence[str]) -> set[str]:
        if not tids:
            return set()
        done, pending = await self.pipe.many(
            [
                ("HMGET", keys.archive_records(), *(f"t:{t}" for t in tids)),
                ("HMGET", keys.archive_pending(), *tids),
            ]
        )
        return {t for t, d, p in zip(tids, done, pending, strict=True) if d or p}

    async def lookup(self, ref: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(keys.archive_records(), _record_field(ref.strip()))
        return dict(json.loads(raw)) if raw else None

    async def committed_size(self, name: str) -> int | None:
        raw = await self.redis.hget(keys.archive_records(), f"f:{name}")
        return int(raw) if raw is not None else None

    async def start_file(self, name: str) -> None:
        await self.redis.hsetnx(keys.archive_records(), f"f:{name}", 0)

    async def begin(self, name: str, size: int, plans: dict[str, dict[str, Any]]) -> None:
        flat = [x for tid, plan in plans.items() for x in (tid, json.dumps(plan))]
        await self.scripts.atomic(
            ("HSET", keys.archive_records(), f"f:{name}", size),
            ("HSET", keys.archive_pending(), *flat),
        )

    async def pending(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(keys.archive_pending())
        return {as_text(k): json.loads(v) for k, v in raw.items()}

    async def delete_ticket(self, tid: str, plan: dict[str, Any]) -> str:
        cid, n = split_ticket_id(tid)
        fp = plan["fingerprint"]
        dedupe = [x for key, eid in plan["dedupe"] for x in (key, eid)]
        args = [n, fp["updated_at"], fp["status"], fp["log_len"], *dedupe]
        return as_text(await self._delete(keys=[keys.contact(cid)], args=args))

    async def finish(self, tid: str, plan: dict[str, Any]) -> None:
        cid = split_ticket_id(tid)[0]
        terms = plan["terms"]
        search = [keys.search_word(w) for w in terms["words"]]
        search += [keys.search_name(w) for w in terms["names"]]
        search += [keys.search_identity(i) for i in terms["identities"]]
        if seq := number_seq(plan["number"]):
            search.append(keys.search_seq(seq))
        if search:
            await self.scripts.atomic(*(("ZREM", k, tid) for k in dict.fromkeys(search)))
        guarded: list[Command] = [
            self.pipe.script_command(self._del_if, [keys.thread(h)], [tid]) for h in plan["hints"]
        ]
        guarded += [
            self.pipe.script_command(self._del_if, [keys.provider_ref(ch, pid)], [f"{cid}|{eid}"])
            for ch, pid, eid in plan["provider_ids"]
        ]
        if guarded:
            await self.pipe.many(guarded)
        record = json.dumps(plan["record"])
        steps: list[tuple[Any, ...]] = [("HSET", keys.archive_records(), f"t:{tid}", record)]
        if plan["number"]:
            steps.append(("HSET", keys.archive_records(), f"n:{plan['number']}", record))
            steps.append(("HDEL", keys.ticket_numbers(), plan["number"]))
        steps.append(("ZREM", keys.ticket_index(), tid))
        for status in STATUSES:
            steps.append(("ZREM", keys.ticket_index("status", status), tid))
        for field, value in plan["ix"].items():
            if field in INDEXED and value and field != "status":
                steps.append(("ZREM", keys.ticket_index(field, value), tid))
        steps.append(("HDEL", keys.archive_pending(), tid))
        await self.scripts.atomic(*steps)

    async def abandon(self, tid: str) -> None:
        await self.redis.hdel(keys.archive_pending(), tid)

    async def saved_reports(self, months: Sequence[str]) -> dict[str, str]:
        if not months:
            return {}
        got = await self.redis.hmget(keys.archive_reports(), list(months))
        return {m: as_text(r) for m, r in zip(months, got, strict=True) if r is not None}

    async def save_report(self, month: str, report_json: str) -> bool:
        """First writer wins: a month's saved report is never replaced (its tickets may be
        gone by then, and a newer one would count fewer)."""
        return bool(await self.redis.hsetnx(keys.archive_reports(), month, report_json))
