"""Send one composed reply with aiosmtplib, and say what happened in the hub's terms.

The outbox retries what may succeed later and marks the rest failed, so every outcome maps to
one of three: accepted (``DeliveryResult(accepted=True, provider_id=<Message-ID>)``, the id the
hub records and a later bounce names); refused for good (a 5xx reply: ``accepted=False`` with
``error_code="smtp-<code>"``); or ``TransientSendError`` (no connection, a timeout, a 4xx
reply, a dropped session, and failed authentication, which is the hub's configuration and not
the citizen's address: retried, then dead-lettered and replayable once fixed).

The envelope sender is the account's address, so bounces come back to the mailbox the hub
reads, where ``dsn`` recognises them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses

import aiosmtplib

from channels.base import TransientSendError
from hub.model import DeliveryResult, DeliveryState


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to submit. ``security``: ``starttls`` (port 587), ``tls`` (implicit TLS,
    465) or ``none`` (a local relay on a trusted network only)."""

    hostname: str
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError("security must be starttls, tls or none")


def _refused(code: int, message: str) -> DeliveryResult:
    return DeliveryResult(
        accepted=False,
        state=DeliveryState.FAILED,
        error_code=f"smtp-{code}",
        error_message=" ".join(str(message).split())[:500],
    )


async def send(
    msg: EmailMessage,
    server: SmtpServer,
    *,
    sender: str | None = None,
    recipients: list[str] | None = None,
) -> DeliveryResult:
    """Submit ``msg`` (which must carry a Message-ID). ``sender`` defaults to the From address
    and ``recipients`` to To/Cc, as aiosmtplib does."""
    message_id = str(msg.get("Message-ID", "")).strip()
    if not message_id:
        raise ValueError("the message has no Message-ID (build it with compose.build_reply)")
    if sender is None:
        found = getaddresses([str(v) for v in msg.get_all("From", [])])
        sender = found[0][1] if found else None
    try:
        await aiosmtplib.send(
            msg,
            sender=sender,
            recipients=recipients,
            hostname=server.hostname,
            port=server.port,
            use_tls=server.security == "tls",
            start_tls=server.security == "starttls",
            username=server.username or None,
            password=server.password or None,
            timeout=server.timeout,
            tls_context=server.tls_context,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        if any(400 <= c < 500 for c in codes) or not codes:
            raise TransientSendError("recipient temporarily refused", code="smtp-4xx") from None
        first = exc.recipients[0]
        return _refused(first.code, first.message)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise TransientSendError(f"authentication failed ({exc.code})", code="smtp-auth") from None
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            return _refused(exc.code, exc.message)
        raise TransientSendError(f"server answered {exc.code}", code=f"smtp-{exc.code}") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TransientSendError(f"smtp failed: {type(exc).__name__}", code="smtp-conn") from None
    return DeliveryResult(accepted=True, provider_id=message_id, state=DeliveryState.SENT)
