"""The small interface every channel implements, and the typed errors it raises.

``verify`` and ``parse`` are pure (no I/O) so that the webhook handler can run them before it
touches Redis; ``send`` maps every provider failure to either a result (the provider refused:
final) or a ``TransientSendError`` (try again, maybe after ``retry_after``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    # Meta's rule for Instagram: after the free-text window, a human agent (never an automatic
    # reply) may still answer until this many hours after the citizen's last message, with
    # the HUMAN_AGENT message tag. 0: no such extension.
    human_agent_hours: float = 0.0


@runtime_checkable
class SubscriptionHandshake(Protocol):
    """A channel whose provider proves the webhook URL with a GET first (Meta's
    ``hub.mode=subscribe&hub.verify_token=...&hub.challenge=...``)."""

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        """The body to answer 200 with (the challenge); SignatureError if the token is wrong,
        PayloadError if the request is not a subscription handshake."""
        ...


@runtime_checkable
class MediaSource(Protocol):
    """A channel whose inbound attachments are references the hub must fetch with the
    account's credentials (a WhatsApp Cloud media id, a Telegram file id)."""

    def owns_media(self, ref: str) -> bool:
        """Whether ``ref`` (an Attachment.url this channel produced) is fetched through it."""
        ...

    async def fetch_media(self, ref: str, max_bytes: int) -> tuple[bytes, str]:
        """The bytes and content type ("" if the provider does not say: the type recorded at
        intake stands); PayloadError if gone or above ``max_bytes``,
        TransientSendError if the provider cannot answer now."""
        ...


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
