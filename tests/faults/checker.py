"""The checker: reads back through the hub's API what it holds, and compares it with what the
load generator sent and what the fake providers were asked to send.

Inbound: every planned message the hub answered 2xx for must be on exactly one ticket (found
once: not lost, not duplicated), each citizen's messages on that citizen's one ticket (not on
the wrong ticket) and in the citizen's order. Outbound (acknowledgements and agents' replies):
each in a final state (sent, delivered, read, failed, undelivered), and seen by the provider
at most once per attempt the hub recorded (a reply the hub re-sends after a crash mid-send is
a new attempt; anything above that is the hub sending twice).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hub.demo.fake_graph import FakeGraph
from hub.demo.fake_telegram import FakeTelegram
from hub.demo.fake_twilio import FakeTwilio
from tests.faults.loadgen import Outcome, Planned

FINAL = frozenset({"sent", "delivered", "read", "failed", "undelivered"})


@dataclass(frozen=True)
class ProviderSend:
    """One send a fake provider accepted (or saw, with ``accepted=False``)."""

    channel: str
    to: str
    text: str


def provider_sends(
    twilio: FakeTwilio | None = None,
    graph: FakeGraph | None = None,
    telegram: FakeTelegram | None = None,
) -> list[ProviderSend]:
    """Every send the fakes accepted: what the citizens' phones would show."""
    out: list[ProviderSend] = []
    if twilio is not None:
        out += [
            ProviderSend("twilio", s.params.get("To", ""), s.params.get("Body", ""))
            for s in twilio.sent
        ]
    if graph is not None:
        out += [
            ProviderSend(
                "graph", str(c.body.get("to", "")), str(c.body.get("text", {}).get("body"))
            )
            for c in graph.sent
        ]
    if telegram is not None:
        out += [
            ProviderSend("telegram", c.params.get("chat_id", ""), c.params.get("text", ""))
            for c in telegram.sent
        ]
    return out


@dataclass
class Report:
    planned: int = 0
    sent: int = 0  # planned messages the hub answered 2xx for
    unacked: int = 0  # planned messages that never got a 2xx (the provider gave up)
    found: int = 0  # distinct planned messages on tickets
    lost: int = 0  # answered 2xx, not on any ticket
    duplicated: int = 0  # copies beyond the first
    out_of_order: int = 0  # citizens whose messages are not in their sending order
    wrong_ticket: int = 0  # messages not on their citizen's one ticket
    unexpected: int = 0  # inbound messages on tickets that nobody planned
    tickets: int = 0
    replies: int = 0
    replies_not_final: int = 0  # queued, sending or retrying
    replies_unsent: int = 0  # "sent" but the provider never saw it
    replies_resent: int = 0  # seen more than once by the provider, within its attempts
    replies_oversent: int = 0  # seen more often than the hub made attempts: a double send
    provider_sends: int = 0
    states: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, what: str, example: str) -> None:
        ex = self.examples.setdefault(what, [])
        if len(ex) < 5:
            ex.append(example)

    @property
    def inbound_ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.out_of_order == 0
            and self.wrong_ticket == 0
            and self.unexpected == 0
            and self.unacked == 0
        )

    @property
    def replies_ok(self) -> bool:
        return self.replies_not_final == self.replies_oversent == self.replies_unsent == 0

    def figures(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("examples", "states") and not k.startswith("_")
        } | {"reply_states": dict(self.states)}

    def __str__(self) -> str:
        return f"{self.figures()} examples={self.examples}"


def check(
    plan: Sequence[Planned],
    outcomes: Mapping[str, Outcome],
    tickets: Iterable[Mapping[str, Any]],
    sends: Sequence[ProviderSend] = (),
    kinds: Collection[str] = ("text",),
) -> Report:
    """Compare the plan (and what got a 2xx) with the hub's tickets and the providers' sends.

    ``kinds``: the kinds of inbound message the plan is made of (``("call",)`` for a call
    log's records); inbound messages of other kinds (media, calls) are not looked at."""
    rep = Report(planned=len(plan), provider_sends=len(sends))
    by_id = {(p.channel, p.account, p.provider_id): p for p in plan}
    seen: Counter[str] = Counter()
    ticket_of: dict[str, set[str]] = defaultdict(set)  # contact → tickets holding its messages
    order: dict[str, list[int]] = defaultdict(list)  # contact → seqs in timeline order
    sent_texts = Counter(s.text for s in sends)
    for t in tickets:
        rep.tickets += 1
        for m in t.get("messages", []):
            if m.get("direction") == "in" and m.get("kind", "text") in kinds:
                p = by_id.get((m.get("channel"), m.get("account"), m.get("provider_id")))
                if p is None:
                    rep.unexpected += 1
                    rep.note("unexpected", f"{t['id']}: {m.get('provider_id')}")
                    continue
                seen[p.key] += 1
                ticket_of[p.contact].add(str(t["id"]))
                order[p.contact].append(p.seq)
            elif m.get("direction") == "out":
                _reply(rep, t, m, sent_texts)
    for p in plan:
        acked = outcomes[p.key].acked
        rep.sent += acked
        rep.unacked += not acked
        if seen[p.key]:
            rep.found += 1
            rep.duplicated += seen[p.key] - 1
            if seen[p.key] > 1:
                rep.note("duplicated", p.key)
        elif acked:
            rep.lost += 1
            rep.note("lost", p.key)
    owners: Counter[str] = Counter()
    for contact, tids in ticket_of.items():
        owners.update(tids)
        if len(tids) > 1:  # nobody resolves tickets during a fault run: one per citizen
            rep.wrong_ticket += sum(1 for p in plan if p.contact == contact) - 1
            rep.note("wrong_ticket", f"{contact} on {sorted(tids)}")
        seqs = order[contact]
        if seqs != sorted(seqs):
            rep.out_of_order += 1
            rep.note("out_of_order", f"{contact}: {seqs}")
    shared = [tid for tid, n in owners.items() if n > 1]  # one ticket, two citizens
    rep.wrong_ticket += len(shared)
    for tid in shared:
        rep.note("wrong_ticket", f"{tid} holds several citizens")
    return rep


def _reply(rep: Report, t: Mapping[str, Any], m: Mapping[str, Any], sent: Counter[str]) -> None:
    if "state" not in m:  # a note or an audit entry, not a reply
        return
    rep.replies += 1
    state = str(m["state"])
    rep.states[state] += 1
    attempts = int(m.get("attempts") or 0)
    seen = sent[str(m.get("text", ""))]
    if state not in FINAL:
        rep.replies_not_final += 1
        rep.note("not_final", f"{t['id']} {m['id']} {state} attempts={attempts}")
    if state in ("sent", "delivered", "read") and seen == 0:
        rep.replies_unsent += 1
        rep.note("unsent", f"{t['id']} {m['id']}")
    if seen > max(attempts, 1):
        rep.replies_oversent += 1
        rep.note("oversent", f"{t['id']} {m['id']} seen={seen} attempts={attempts}")
    elif seen > 1:
        rep.replies_resent += 1


async def read_tickets(
    base_url: str, token: str, concurrency: int = 16, limit_s: float = 120.0
) -> list[dict[str, Any]]:
    """Every ticket with its timeline, through the API (GET /api/v1/tickets, then each)."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    sem = asyncio.Semaphore(concurrency)
    async with (
        asyncio.timeout(limit_s),
        aiohttp.ClientSession(headers=headers, timeout=timeout) as s,
    ):
        ids: list[str] = []
        offset, total = 0, 1
        while offset < total:
            async with s.get(
                f"{base_url}/api/v1/tickets", params={"limit": "200", "offset": str(offset)}
            ) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            total = int(page["total"])
            ids += [t["id"] for t in page["items"]]
            offset += 200
            if not page["items"]:
                break

        async def one(tid: str) -> dict[str, Any]:
            async with sem, s.get(f"{base_url}/api/v1/tickets/{tid}") as r:
                assert r.status == 200, await r.text()
                return dict(await r.json())

        return list(await asyncio.gather(*(one(t) for t in dict.fromkeys(ids))))
