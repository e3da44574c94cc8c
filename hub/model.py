"""The normalized message and the reply: what every channel translates to and from.

Channels produce these; the hub stores and routes them; adapters serialize them. They carry no
behaviour beyond (de)serialization so that every layer can agree on them without importing
each other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class DeliveryState(StrEnum):
    """Reply states, ranked so that late status callbacks never move a reply backwards."""

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    DELIVERED = "delivered"
    READ = "read"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def final(self) -> bool:
        return self in (DeliveryState.FAILED, DeliveryState.READ)


_RANK = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENDING: 1,
    DeliveryState.RETRYING: 1,
    DeliveryState.SENT: 2,
    DeliveryState.UNDELIVERED: 3,
    DeliveryState.FAILED: 3,
    DeliveryState.DELIVERED: 4,
    DeliveryState.READ: 5,
}


@dataclass(frozen=True, slots=True)
class Attachment:
    url: str
    content_type: str
    name: str = ""
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    address: str = ""
    label: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound message, normalized. ``provider_id`` is the dedupe key within its account."""

    id: str
    channel: str
    account: str
    provider_id: str
    sender: str  # identity key, e.g. "phone:+6281234567890"
    reply_address: str  # where a reply goes on this channel, e.g. "+6281234567890"
    received_at: float
    kind: str = "text"  # text, media, location, button, ...
    text: str = ""
    display_name: str = ""
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    thread_hints: tuple[str, ...] = ()
    provider_ts: float | None = None
    meta: dict[str, str] = field(default_factory=dict)
    raw: str = ""  # the provider payload as received, kept for audit

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> Message:
        d: dict[str, Any] = json.loads(data)
        d["attachments"] = tuple(Attachment(**a) for a in d.get("attachments", ()))
        loc = d.get("location")
        d["location"] = Location(**loc) if loc else None
        d["thread_hints"] = tuple(d.get("thread_hints", ()))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A provider's delivery report about a reply it was given."""

    channel: str
    account: str
    provider_id: str
    state: DeliveryState
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class Template:
    """A provider-approved template, for channels that need one outside a window."""

    name: str
    provider_ref: str  # Twilio's ContentSid; the template's name at Meta
    variables: dict[str, str] = field(default_factory=dict)
    language: str = ""  # Meta wants the approved language with the name ("id", "en_US")


@dataclass(frozen=True, slots=True)
class OutFile:
    name: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutboundReply:
    """What a channel sender needs to deliver one reply; built by the hub from the ticket."""

    reply_id: str
    ticket_id: str
    channel: str
    account: str
    to: str
    text: str = ""
    template: Template | None = None
    attempt: int = 1
    status_callback_url: str = ""
    ticket_number: str = ""
    automatic: bool = False  # the hub's own acknowledgement (e-mail marks it Auto-Submitted)
    # What the channel said about the thread when the citizen last wrote (the e-mail's
    # Message-ID, References and Subject, say), so a reply threads in the citizen's client.
    context: dict[str, Any] = field(default_factory=dict)
    files: tuple[OutFile, ...] = ()  # attachments, read from the blob store by the sender
    # A provider message tag the hub decided on: "HUMAN_AGENT" for an agent's Instagram reply
    # between 24 hours and 7 days after the citizen's last message.
    message_tag: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The provider's answer to a send: accepted (with its id) or refused (with its code)."""

    accepted: bool
    provider_id: str = ""
    state: DeliveryState = DeliveryState.SENT
    error_code: str = ""
    error_message: str = ""
    # Ids a later inbound message may quote to name this reply's thread (an e-mail's
    # Message-ID): the hub maps them to the ticket.
    thread_hints: tuple[str, ...] = ()
    # The provider ids of the further parts when the channel had to split the reply
    # (Instagram's 1000-character limit): their echoes and read receipts name this reply too.
    part_ids: tuple[str, ...] = ()
