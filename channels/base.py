"""The small interface every channel implements, and the typed errors it raises.

``verify`` and ``parse`` are pure (no I/O) so that the webhook handler can run them before it
touches Redis; ``send`` maps every provider failure to either a result (the provider refused:
final) or a ``TransientSendError`` (try again, maybe after ``retry_after``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from hub.model import DeliveryResult, Message, OutboundReply, StatusUpdate


class ChannelError(Exception):
    """Base of the errors a channel raises on purpose."""


class SignatureError(ChannelError):
    """The request is not from the provider (forged, missing or stale signature). ``status``
    is the HTTP answer: 403, or 401 where a protocol says so (a stale timestamp)."""

    status = 403


class PayloadError(ChannelError):
    """The request is from the provider's side but cannot be understood; the text says why."""


class TransientSendError(ChannelError):
    """The send may succeed later (timeout, 5xx, 429); ``retry_after`` is a hint in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.code = code


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """A webhook call, framework-neutral. ``url`` is the public URL rebuilt from config."""

    url: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    form: Sequence[tuple[str, str]] = ()
    content_type: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True, slots=True)
class ParsedInbound:
    messages: list[Message] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WindowRule:
    """When free text may be sent; outside it only a template may be."""

    free_text_hours: float
    template_required_outside: bool = True
    attachments: bool = False  # the channel can send files with a reply


@runtime_checkable
class Channel(Protocol):
    name: str
    account: str
    window: WindowRule

    def verify(self, request: InboundRequest) -> None:
        """Raise SignatureError unless the provider signed this exact request."""

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        """Translate a verified request; raise PayloadError with a reason if malformed."""

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        """Translate a verified delivery-status callback; raise PayloadError if malformed."""

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        """Deliver one reply; a refusal is a result, a passing failure raises."""

    async def aclose(self) -> None:
        """Release HTTP sessions."""
