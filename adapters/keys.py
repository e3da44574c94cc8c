"""Every Redis key the hub uses, in one place, with hash tags chosen for Redis Cluster.

Per-contact state shares the ``{<contact id>}`` tag so that one Lua script can update a
contact's tickets, messages and dedupe set atomically; an inbound shard, its dead letters and
its lease share the shard's tag; ticket indexes share ``{tickets}``.
"""

from __future__ import annotations

PREFIX = "hub"


def identity(ident: str) -> str:
    return f"{PREFIX}:id:{{{ident}}}"


def contact(cid: str) -> str:
    return f"{PREFIX}:c:{{{cid}}}"


def ticket(cid: str, n: str | int) -> str:
    return f"{contact(cid)}:t:{n}"


def ticket_log(cid: str, n: str | int) -> str:
    return f"{ticket(cid, n)}:log"


def entry(cid: str, entry_id: str) -> str:
    """A message or reply on a contact's timeline."""
    return f"{contact(cid)}:m:{entry_id}"


def contact_tickets(cid: str) -> str:
    return f"{contact(cid)}:tickets"


def contact_identities(cid: str) -> str:
    return f"{contact(cid)}:ids"


def thread(hint: str) -> str:
    """A thread hint (``email-msgid:<…>``, ``portal-request:123``) → the ticket it joined."""
    return f"{PREFIX}:thr:{{{hint}}}"


def inbound_stream(shard: int) -> str:
    return f"{PREFIX}:in:{{s{shard}}}"


def dead_letters(stream: str) -> str:
    return f"{stream}:dead"


def lease(stream: str) -> str:
    return f"{stream}:lease"


def outbox_stream(channel: str) -> str:
    return f"{PREFIX}:out:{{{channel}}}"


def outbox_delayed(channel: str) -> str:
    return f"{outbox_stream(channel)}:delayed"


def provider_ref(channel: str, provider_id: str) -> str:
    """Maps a provider's message id (e.g. Twilio's SM…) back to the reply it names."""
    return f"{PREFIX}:pid:{{{channel}:{provider_id}}}"


def early_statuses(channel: str, provider_id: str) -> str:
    return f"{provider_ref(channel, provider_id)}:early"


def ticket_seq(year: int) -> str:
    return f"{PREFIX}:{{tickets}}:seq:{year}"


def ticket_numbers() -> str:
    return f"{PREFIX}:{{tickets}}:numbers"


def ticket_index(kind: str = "all", value: str = "") -> str:
    return f"{PREFIX}:{{tickets}}:ix:{kind}" + (f":{value}" if value else "")


def heartbeat(role: str) -> str:
    return f"{PREFIX}:{{ops}}:hb:{role}"


DISPATCH_GROUP = "dispatch"
SEND_GROUP = "send"


# -- ticket search (adapters/redis_search.py) ------------------------------------------------
# Every search key shares the ``{search}`` tag, so one index write is one pipeline to one node.
# Each is a ZSET of ticket ids scored by the last activity (ms) that put the term there.


def search_word(token: str) -> str:
    """Tickets whose message text contains this normalized token."""
    return f"{PREFIX}:{{search}}:w:{token}"


def search_name(token: str) -> str:
    """Tickets whose citizen's display name contains this normalized token."""
    return f"{PREFIX}:{{search}}:n:{token}"


def search_identity(ident: str) -> str:
    """Tickets that received a message from this identity (``phone:+62…``, ``email:…``)."""
    return f"{PREFIX}:{{search}}:i:{ident}"


def search_seq(seq: str) -> str:
    """Tickets whose number ends in this sequence (``KMN-2026-000123`` → ``123``)."""
    return f"{PREFIX}:{{search}}:s:{seq}"


# -- archiving of closed tickets (adapters/redis_archive.py) ---------------------------------
# Under ``{tickets}`` with the numbers and the list indexes, so that an archived ticket leaves
# the indexes and gets its record in one atomic step.


def archive_records() -> str:
    """``t:<ticket id>`` and ``n:<number>`` → where the archived ticket is (JSON);
    ``f:<file>`` → the bytes of that archive file that are committed."""
    return f"{PREFIX}:{{tickets}}:archive"


def archive_pending() -> str:
    """Ticket id → its archive plan (JSON), from its file's commit until its keys are gone."""
    return f"{PREFIX}:{{tickets}}:archive:pending"


def archive_reports() -> str:
    """``YYYY-MM`` → that month's report (JSON), saved before any of its tickets is archived."""
    return f"{PREFIX}:{{tickets}}:archive:reports"
