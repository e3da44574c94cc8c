"""What the hub needs from its infrastructure, as Protocols: the core never imports adapters.

The Redis adapters in ``adapters/`` implement these; the composition root (``hub.runtime``)
wires them in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub.model import DeliveryState, Message


def ticket_id(cid: str, n: str | int) -> str:
    return f"{cid}.{n}"


def split_ticket_id(tid: str) -> tuple[str, str]:
    cid, sep, n = tid.rpartition(".")
    if not sep or not cid or not n.isdigit():
        raise KeyError(tid)
    return cid, n


@dataclass(frozen=True, slots=True)
class Applied:
    """What happened to one inbound message in the store."""

    outcome: str  # new | reopened | appended | dup:<original outcome>
    contact_id: str
    message_id: str
    ticket_n: str
    number: str
    ack_reply: str

    @property
    def ticket_id(self) -> str:
        return ticket_id(self.contact_id, self.ticket_n)

    @property
    def duplicate(self) -> bool:
        return self.outcome.startswith("dup:")

    @property
    def opened_ticket(self) -> bool:
        return self.outcome.removeprefix("dup:") == "new"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message goes: the ticket a thread hint names (if any), else the contact's
    ticket; and for a new ticket its unit and what the routing rules said of it."""

    unit: str = "general"
    category: str = ""
    priority: str = "normal"
    ticket_n: str = ""  # a ticket of this contact named by a thread hint
    foreign_sender: bool = False  # the sender is another contact's identity


@dataclass(frozen=True, slots=True)
class Claim:
    go: bool
    state: str
    attempts: int = 0
    reply: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StreamEntry:
    stream: str
    id: str
    fields: dict[str, str]
    deliveries: int = 1


class TicketStore(Protocol):
    async def resolve_contacts(self, identities: Sequence[str]) -> list[str]: ...

    async def apply_messages(
        self,
        items: Sequence[tuple[str, Message, Route]],
        reopen_window_ms: int,
        texts: Mapping[str, str] | None = None,
    ) -> list[Applied]: ...

    async def add_event(
        self, tid: str, event: dict[str, Any], fields: dict[str, str] | None = None
    ) -> bool: ...

    async def assign_numbers(
        self, applied: Sequence[Applied], with_fields: Collection[str] = ()
    ) -> dict[str, str]: ...

    async def index_numbers(self, numbers: dict[str, str]) -> None: ...

    async def find_threads(self, hints: Iterable[str]) -> dict[str, str]: ...

    async def remember_threads(self, pairs: Iterable[tuple[str, str]]) -> None: ...

    async def reindex(self, ticket_ids: Iterable[str]) -> dict[str, dict[str, str]]: ...

    async def add_reply(
        self, tid: str, reply_id: str, record: dict[str, Any], kind: str, author: str
    ) -> tuple[int, str]: ...

    async def claim_reply(self, cid: str, reply_id: str, stale_ms: int = 120_000) -> Claim: ...

    async def set_reply_state(
        self,
        cid: str,
        reply_id: str,
        state: DeliveryState,
        provider_id: str = "",
        error_code: str = "",
        error_message: str = "",
        force: bool = False,
    ) -> str: ...

    async def map_provider_id(self, channel: str, provider_id: str, cid: str, rid: str) -> None: ...

    async def lookup_provider_id(
        self, channel: str, provider_id: str
    ) -> tuple[str, str] | None: ...

    async def park_early_status(self, channel: str, provider_id: str, payload: str) -> None: ...

    async def take_early_statuses(self, channel: str, provider_id: str) -> list[str]: ...

    async def resolve_ticket_ref(self, ref: str) -> str | None: ...

    async def set_ticket_status(
        self, tid: str, status: str, actor: str = "api"
    ) -> tuple[str, str]: ...

    async def get_ticket(self, tid: str, with_raw: bool = False) -> dict[str, Any] | None: ...

    async def get_ticket_fields(self, tid: str) -> dict[str, str]: ...

    async def get_entry(self, cid: str, entry_id: str) -> dict[str, str]: ...

    async def list_tickets(
        self, filters: dict[str, str], limit: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]: ...

    async def get_contact(self, cid: str) -> dict[str, Any] | None: ...

    async def find_contact(self, identity: str) -> str | None:
        """The contact an identity belongs to, without creating one."""
        ...

    async def set_open_ticket(self, cid: str, n: str) -> None: ...

    async def merge_contacts(self, into: str, other: str, actor: str) -> list[str]: ...

    async def unmerge_contacts(self, into: str, other: str, actor: str) -> list[str]: ...

    async def record_outbound(
        self, cid: str, entry_id: str, record: dict[str, Any], at_ms: int, author: str
    ) -> tuple[bool, str]: ...

    async def recent_outbound(self, cid: str, limit: int = 20) -> list[dict[str, str]]: ...

    async def retract_message(
        self, cid: str, dedupe_key: str, now_ms: int
    ) -> tuple[str, str, bool] | None: ...

    async def link_identity(self, cid: str, identity: str) -> str: ...

    async def open_counts(self, units: Sequence[str]) -> dict[str, int]: ...

    async def open_ticket_facts(self, limit: int = 20_000) -> list[dict[str, str]]: ...

    async def ticket_facts(self, tids: Sequence[str]) -> list[dict[str, str]]: ...

    async def tickets_created_between(self, since_ms: int, until_ms: int) -> list[str]: ...


class Publisher(Protocol):
    async def publish(self, msg: Message) -> str: ...


class Group(Protocol):
    """One consumer group on one stream."""

    stream: str

    async def ensure(self) -> None: ...

    async def read_new(
        self, count: int, block_ms: int | None, ack: Sequence[str] = ()
    ) -> list[StreamEntry]:
        """New entries; ``ack``: entries to acknowledge first, in the same round trip."""
        ...

    async def claim_idle(self, min_idle_ms: int, count: int) -> list[StreamEntry]: ...

    async def retake_pending(self, count: int) -> list[StreamEntry]:
        """The oldest pending entries, taken over without counting a delivery."""
        ...

    async def count_failed_delivery(self, entry_id: str, deliveries: int) -> None:
        """Attempt ``deliveries`` of a pending entry failed: the next one is ``deliveries + 1``."""
        ...

    async def ack(self, ids: Sequence[str]) -> None: ...

    async def trim_processed(self, keep_ms: int, now_ms: int, exact: bool = False) -> int: ...

    async def dead_letter(self, entry: StreamEntry, error: str) -> None: ...

    async def hold_lease(self, owner: str, ttl_ms: int) -> bool: ...

    async def release_lease(self, owner: str) -> None: ...


class Roster(Protocol):
    """Live members of a role (heartbeats in the store), e.g. the dispatcher processes."""

    async def beat(self, member: str, ttl_ms: int) -> int: ...

    async def leave(self, member: str) -> None: ...


class OutboxQueue(Protocol):
    async def enqueue(self, channel: str, contact_id: str, reply_id: str) -> str: ...

    async def schedule_retry(
        self, channel: str, contact_id: str, reply_id: str, due_ms: int
    ) -> None: ...

    async def move_due(self, channel: str, now_ms: int, limit: int = 500) -> int: ...

    async def next_due_ms(self, channel: str) -> int | None: ...


class Ops(Protocol):
    async def ping(self) -> bool: ...

    async def stream_stats(self, stream: str, group: str) -> dict[str, int]: ...

    async def dead_letters(self, stream: str, count: int = 100) -> list[dict[str, str]]: ...

    async def replay_dead_letter(self, stream: str, dead_id: str) -> str | None: ...


class EventBus(Protocol):
    async def publish(self, event: dict[str, Any]) -> str: ...

    async def since(self, last_id: str, count: int = 500) -> list[tuple[str, dict[str, Any]]]: ...

    async def wait(
        self, last_id: str, block_ms: int, count: int = 500
    ) -> list[tuple[str, dict[str, Any]]]: ...

    async def last_id(self) -> str: ...


class QueueStore(Protocol):
    async def enqueue(self, tid: str, unit: str, score: int) -> str: ...

    async def claim(
        self, agent: str, units: list[str], lease_ms: int, tid: str = "", now_ms: int = 0
    ) -> tuple[str, str]: ...

    async def release(
        self, tid: str, agent: str = "", mode: str = "requeue", unit: str = "", score: str = ""
    ) -> tuple[str, str]: ...

    async def renew(self, tid: str, agent: str, lease_ms: int, now_ms: int = 0) -> bool: ...

    async def expire(self, now_ms: int, limit: int = 500) -> list[tuple[str, str]]: ...

    async def holder(self, tid: str) -> tuple[str, int] | None: ...

    async def held_by(self, agent: str) -> list[str]: ...

    async def waiting(self, unit: str, offset: int = 0, limit: int = 50) -> list[str]: ...

    async def waiting_counts(self, units: list[str]) -> dict[str, int]: ...

    async def oldest_waiting(self, units: list[str]) -> dict[str, int]: ...

    async def waiting_since(self, units: list[str], limit: int = 20_000) -> dict[str, int]: ...

    async def unit_of(self, tid: str) -> str | None: ...

    async def set_presence(self, agent: str, state: str, ttl_s: int) -> None: ...

    async def presence(self) -> dict[str, str]: ...

    async def rr_next(self, unit: str, candidates: list[str]) -> str: ...

    async def mark_viewer(self, tid: str, agent: str, state: str, ttl_s: int) -> None: ...

    async def viewers(self, tid: str) -> dict[str, str]: ...


class UserStore(Protocol):
    async def create(self, user: Any, password_hash: str) -> bool: ...

    async def update(self, username: str, **fields: Any) -> None: ...

    async def get(self, username: str) -> tuple[Any, str] | None: ...

    async def all(self) -> list[Any]: ...

    async def failures(self, username: str) -> int: ...

    async def record_failure(self, username: str, window_s: int) -> int: ...

    async def clear_failures(self, username: str) -> None: ...

    async def create_session(self, username: str, ttl_s: int) -> tuple[str, str]: ...

    async def session(self, sid: str, ttl_s: int) -> tuple[str, str] | None: ...

    async def end_session(self, sid: str) -> None: ...

    async def create_token(self, username: str, label: str) -> str: ...

    async def token_user(self, token: str) -> str | None: ...

    async def revoke_token(self, token: str) -> bool: ...


class BlobReader(Protocol):
    async def get(self, ref: str) -> bytes: ...


class StatsPort(Protocol):
    """Per-minute counters and samples (``adapters/redis_stats.py``)."""

    async def incr(self, metric: str, counts: Iterable[tuple[str, float, int]]) -> None: ...

    async def sample(self, metric: str, values: dict[str, float], at: float) -> None: ...

    async def minutes(
        self, metric: str, since: float, until: float
    ) -> dict[str, dict[int, float]]: ...


class AlertStore(Protocol):
    """The alert engine's saved document and the sources' health
    (``adapters/redis_alerts.py``)."""

    async def load(self) -> dict[str, Any]: ...

    async def save(self, doc: dict[str, Any]) -> None: ...

    async def set_health(
        self, name: str, kind: str, healthy: bool, since: float, detail: str
    ) -> bool: ...

    async def health(self) -> dict[str, dict[str, Any]]: ...

    async def forget_health(self, names: list[str]) -> None: ...


class ArchiveStore(Protocol):
    """The Redis side of archiving closed tickets (``hub.archive``; adapters/redis_archive.py).
    A *plan* is the JSON-able dict ``hub.archive.plan_of`` builds for one ticket: where its
    document went and everything its keys' removal needs once the ticket itself is gone."""

    async def candidates(self, status: str, before_ms: int, offset: int, limit: int) -> list[str]:
        """Ticket ids in that status whose last activity is at most ``before_ms``, oldest
        first, from the status index (``offset`` skips those already refused this run)."""
        ...

    async def ticket_fields(self, tids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Each ticket's fields ({} for a ticket that no longer exists)."""
        ...

    async def queued(self, tids: Sequence[str]) -> set[str]:
        """Those waiting in a unit queue or held by an agent."""
        ...

    async def known(self, tids: Sequence[str]) -> set[str]:
        """Those already archived or half-way (a record or a pending plan)."""
        ...

    async def lookup(self, ref: str) -> dict[str, Any] | None:
        """An archived ticket's record, by ticket id or number."""
        ...

    async def committed_size(self, name: str) -> int | None:
        """Bytes of archive file ``name`` that are committed (None: none recorded)."""
        ...

    async def start_file(self, name: str) -> None:
        """Record a new archive file as committed at 0 bytes (before its first write)."""
        ...

    async def begin(self, name: str, size: int, plans: dict[str, dict[str, Any]]) -> None:
        """The file's new committed size and the plans of the tickets it now holds, at once."""
        ...

    async def pending(self) -> dict[str, dict[str, Any]]: ...

    async def delete_ticket(self, tid: str, plan: dict[str, Any]) -> str:
        """The ticket's own keys, if unchanged: ``deleted`` | ``gone`` | ``changed``."""
        ...

    async def finish(self, tid: str, plan: dict[str, Any]) -> None:
        """Everything else that named the ticket, then its record (idempotent)."""
        ...

    async def abandon(self, tid: str) -> None:
        """Forget a plan whose ticket changed: it stays in Redis."""
        ...

    async def saved_reports(self, months: Sequence[str]) -> dict[str, str]: ...

    async def save_report(self, month: str, report_json: str) -> bool: ...
