"""Ticket search on plain Redis (no RediSearch): an inverted index of sorted sets.

Index: one ZSET per term under the ``{search}`` hash tag (``keys.search_word`` for message
text, ``search_name`` for display names, ``search_identity`` for sender identities,
``search_seq`` for ticket number sequences), member = ticket id, score = the latest message
time that brought the term to the ticket. Writes are ``ZADD GT`` (a batch's in one script
call), so indexing a message again (a redelivery, a replay after a crash) changes nothing, and
an older message never lowers a score.

Query: every condition is a set of ticket ids — a word (its text ∪ name ∪ number-sequence
sets), a list-index filter (``keys.ticket_index(field, value)``), the creation-date range
(``keys.ticket_index()`` by score) — and the answer is their intersection. The smallest set
(by ZCARD/ZCOUNT) drives: at most ``candidate_cap`` of its most recent ids are fetched, and
every other condition is checked for just those ids with ZMSCORE. No command names keys of
two hash tags (``{search}`` and ``{tickets}`` are intersected here, in Python), so this runs
unchanged on Redis Cluster. Exact lookups (ticket number, ticket id, phone, e-mail) start from
the existing identity and number keys instead of the index.

Results are ranked by the ticket's last activity (its score in the status index, which
``RedisStore.reindex`` keeps at ``updated_at``), newest first.

Limits: when the driving set holds more than ``candidate_cap`` ids, only its most recent
``candidate_cap`` are considered, so ``total`` then counts matches among those (a lower
bound); a common word plus a narrow filter drives from the filter and stays exact. No query,
or one list filter alone, pages that index directly: exact, like ``list_tickets``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters import keys
from adapters.redis_bus import Pipeliner
from adapters.redis_store import STATUSES
from adapters.scripts import AnyRedis, Scripts, as_text
from hub.ports import split_ticket_id, ticket_id
from hub.search import (
    MAX_NAME_TOKENS,
    ParsedQuery,
    SearchDoc,
    SearchQuery,
    number_seq,
    parse_query,
    tokenize,
)

SEARCH_TAG = "hub:{search}"  # names the slot of every search key (keys.search_*)
_WORD, _NAME = keys.search_word(""), keys.search_name("")
_IDENTITY, _SEQ = keys.search_identity(""), keys.search_seq("")


@functools.lru_cache(maxsize=8192)
def _name_keys(display_name: str) -> tuple[str, ...]:
    """A display name's term keys: a citizen's name comes with each of their messages."""
    return tuple(_NAME + tok for tok in tokenize(display_name, MAX_NAME_TOKENS))


CANDIDATE_CAP = 5000
"""Most ids read from the driving set of one query. 5000 ids × (one ZMSCORE per other key)
stays in the low milliseconds on Redis and bounds a query's memory and reply size; an agent
pages through far fewer."""


@dataclass(frozen=True, slots=True)
class _Cond:
    """Ticket ids in any of ``keys`` with a score in [lo, hi)."""

    keys: tuple[str, ...]
    lo: float = -math.inf
    hi: float = math.inf

    @property
    def ranged(self) -> bool:
        return self.lo != -math.inf or self.hi != math.inf

    def holds(self, score: Any) -> bool:
        return score is not None and self.lo <= float(score) < self.hi


class RedisSearchIndex:
    def __init__(self, redis: AnyRedis, candidate_cap: int = CANDIDATE_CAP) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.cap = candidate_cap
        self.pipe = Pipeliner.of(redis)
        self._script = Scripts(redis).search_index

    # -- writing ---------------------------------------------------------------------------

    async def index(self, entries: Sequence[SearchDoc]) -> None:
        """One script call writes the batch (``adapters/lua/search_index.lua``: ``ZADD GT``
        of each message's score and ticket on each of its term keys): one command for the
        whole batch, in the loop turn's pipeline (``Pipeliner``), instead of one per term."""
        rows: list[list[str]] = []
        for d in entries:
            row = [d.ticket_id, str(int(d.created_at_ms))]
            row += [_WORD + tok for tok in tokenize(d.text)]
            row += _name_keys(d.display_name)
            row += [_IDENTITY + ident for ident in d.identities]
            if seq := number_seq(d.number):
                row.append(_SEQ + seq)
            if len(row) > 2:
                rows.append(row)
        if rows:
            data = json.dumps(rows, ensure_ascii=False)
            await self.pipe.script(self._script, [SEARCH_TAG], [data])

    # -- reading ---------------------------------------------------------------------------

    async def search(self, query: SearchQuery) -> tuple[list[str], int]:
        parsed = parse_query(query.q)
        conds = [_Cond((keys.ticket_index(f, v),)) for f, v in query.filters().items()]
        if query.units is not None:
            if not query.units:
                return [], 0
            conds.append(_Cond(tuple(keys.ticket_index("unit", u) for u in query.units)))
        if (span := query.created_range_ms()) is not None:
            conds.append(_Cond((keys.ticket_index(),), span[0], span[1]))
        if parsed.kind == "words":
            if not parsed.tokens:  # only stopwords or one-letter words: nothing to match
                return [], 0
            conds += [_Cond(self._word_keys(t)) for t in parsed.tokens]
        if parsed.kind == "all":
            if not conds:  # every ticket, newest first
                return await self._page(keys.ticket_index(), query)
            if len(conds) == 1 and len(conds[0].keys) == 1 and not conds[0].ranged:
                # One filter alone: its index is already ordered by activity; exact total.
                return await self._page(conds[0].keys[0], query)
        if parsed.kind in ("all", "words"):
            candidates, driver = await self._drive(conds)
            conds = [c for c in conds if c is not driver]  # its ids meet it by construction
        else:
            candidates = await self._exact(parsed)
        ranked = await self._check_and_rank(candidates, conds)
        return ranked[query.offset : query.offset + query.limit], len(ranked)

    @staticmethod
    def _word_keys(token: str) -> tuple[str, ...]:
        ks = [keys.search_word(token), keys.search_name(token)]
        if token.isdigit() and (seq := number_seq(token)):
            ks.append(keys.search_seq(seq))
        return tuple(ks)

    async def _page(self, key: str, query: SearchQuery) -> tuple[list[str], int]:
        """A page straight off one index zset, highest score first, with its exact size."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(key)
        pipe.zrevrange(key, query.offset, query.offset + query.limit - 1)
        total, tids = await pipe.execute()
        return [as_text(t) for t in tids], int(total)

    async def _drive(self, conds: list[_Cond]) -> tuple[list[str], _Cond]:
        """The smallest condition and its (at most ``cap`` most recent) ids."""
        pipe = self.redis.pipeline(transaction=False)
        for c in conds:
            for k in c.keys:
                if c.ranged:
                    pipe.zcount(k, _bound(c.lo), _below(c.hi))
                else:
                    pipe.zcard(k)
        counts = iter(await pipe.execute())
        key_sizes = [[int(next(counts)) for _ in c.keys] for c in conds]
        sizes = [sum(n) for n in key_sizes]
        driver = conds[sizes.index(min(sizes))]
        if min(sizes) == 0:
            return [], driver
        # Only the driver's non-empty keys; one key's order is already by score.
        ks = [k for k, n in zip(driver.keys, key_sizes[conds.index(driver)], strict=True) if n]
        scores = len(ks) > 1
        pipe = self.redis.pipeline(transaction=False)
        for k in ks:
            if driver.ranged:
                pipe.zrevrangebyscore(
                    k,
                    _below(driver.hi),
                    _bound(driver.lo),
                    start=0,
                    num=self.cap,
                    withscores=scores,
                )
            else:
                pipe.zrevrange(k, 0, self.cap - 1, withscores=scores)
        rows = await pipe.execute()
        if not scores:
            return [as_text(m) for m in rows[0]], driver
        best: dict[str, float] = {}
        for got in rows:
            for member, score in got:
                tid = as_text(member)
                best[tid] = max(float(score), best.get(tid, float(score)))
        return sorted(best, key=lambda t: best[t], reverse=True)[: self.cap], driver

    async def _exact(self, parsed: ParsedQuery) -> list[str]:
        """Ticket number, ticket id, phone or e-mail: the tickets they name."""
        if parsed.kind == "number":
            raw = await self.redis.hget(keys.ticket_numbers(), parsed.value)
            return [as_text(raw)] if raw else []
        if parsed.kind == "ticket_id":
            cid, n = split_ticket_id(parsed.value)
            return [parsed.value] if await self.redis.exists(keys.ticket(cid, n)) else []
        # phone / email: the contact the identity names (all its tickets, indexed or not),
        # plus tickets the index saw from that identity (e.g. before contacts were merged).
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.identity(parsed.value))
        pipe.zrevrange(keys.search_identity(parsed.value), 0, self.cap - 1)
        cid_raw, seen = await pipe.execute()
        found: dict[str, None] = {}
        if cid_raw:
            cid = as_text(cid_raw)
            for n in await self.redis.zrevrange(keys.contact_tickets(cid), 0, self.cap - 1):
                found.setdefault(ticket_id(cid, as_text(n)))
        for tid in seen:
            found.setdefault(as_text(tid))
        return list(found)[: self.cap]

    async def _check_and_rank(self, candidates: list[str], conds: list[_Cond]) -> list[str]:
        """The candidates meeting every condition, by last activity, newest first. The ids go
        to Redis as bytes (redis-py packs bytes 2-3 times faster than text: 5000 ids in a
        ZMSCORE are most of a query's time), and the creation index, the ranking's fallback,
        is asked only about the ids no status index holds (normally none)."""
        if not candidates:
            return []
        members = [t.encode() for t in candidates]
        status_keys = [keys.ticket_index("status", s) for s in STATUSES]
        pipe = self.redis.pipeline(transaction=False)
        for c in conds:
            for k in c.keys:
                pipe.zmscore(k, members)
        for k in status_keys:
            pipe.zmscore(k, members)
        replies = iter(await pipe.execute())
        ok = [True] * len(candidates)
        for c in conds:
            met = [False] * len(candidates)
            for _ in c.keys:
                for i, score in enumerate(next(replies)):
                    met[i] = met[i] or c.holds(score)
            ok = [a and b for a, b in zip(ok, met, strict=True)]
        activity: list[float | None] = [None] * len(candidates)
        for _ in status_keys:  # status indexes hold updated_at; each ticket is in one
            for i, score in enumerate(next(replies)):
                if score is not None and activity[i] is None:
                    activity[i] = float(score)
        missing = [i for i, a in enumerate(activity) if a is None and ok[i]]
        if missing:  # the all-index holds created_at
            got = await self.redis.zmscore(keys.ticket_index(), [members[i] for i in missing])
            for i, score in zip(missing, got, strict=True):
                activity[i] = float(score) if score is not None else 0.0
        kept = [(activity[i] or 0.0, tid) for i, tid in enumerate(candidates) if ok[i]]
        kept.sort(reverse=True)
        return [tid for _, tid in kept]

    async def summaries(self, ticket_ids: Sequence[str]) -> list[dict[str, Any]]:
        pipe = self.redis.pipeline(transaction=False)
        for tid in ticket_ids:
            cid, n = split_ticket_id(tid)
            pipe.hgetall(keys.ticket(cid, n))
        out = []
        for tid, row in zip(ticket_ids, await pipe.execute(), strict=True):
            if not row:
                continue
            t = {as_text(k): as_text(v) for k, v in row.items()}
            t.pop("ix", None)
            t["id"] = tid
            t["contact_id"] = split_ticket_id(tid)[0]
            out.append(t)
        return out


def _bound(v: float) -> str:
    """A score bound in Redis's syntax (inclusive)."""
    return "+inf" if v == math.inf else "-inf" if v == -math.inf else str(int(v))


def _below(v: float) -> str:
    """An exclusive upper bound."""
    return "+inf" if v == math.inf else f"({int(v)}"
