"""Direct SMTP intake: the site's mail relay forwards the hub's addresses to this server.

For sites that prefer forwarding to polling. SMTP's own handshake gives the guarantee the hub
needs: the relay keeps a mail until we answer 250, so we answer 250 only after the hub's
callback has durably accepted it, 451 when it could not (the relay retries later: no loss),
550 for an address the hub does not serve, 552 above the size limit. Duplicates (a relay that
retries after a lost 250) are removed by the hub's dedupe on the Message-ID. A client or an
envelope sender past the hub's quota gets a temporary 451 4.7.1 at MAIL FROM: the relay keeps
the mail and retries later, so a flood is slowed and nothing is lost.

The server runs in the caller's event loop (not aiosmtpd's Controller thread), so the callback
can use the hub's Redis client. ``Return-Path`` is prepended with the envelope sender, as a
final-delivery MTA does, so loop detection sees a null sender (bounces) the same way as mail
read over IMAP.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

log = structlog.get_logger("channels.email.smtp_in")

OnSmtpMessage = Callable[[bytes, str], Awaitable[None]]
"""``on_message(raw, account)``: return only once the mail is durably accepted; raise if not."""

QuotaExceeded = Literal["ip", "sender"]
SmtpQuota = Callable[[str, str], Awaitable[QuotaExceeded | None]]
"""``quota(client_ip, sender)`` at each MAIL FROM (``sender`` as given, empty for a bounce):
``None`` to take the mail, else which quota it is over; the hub decides and counts."""

QUOTA_REPLIES: dict[QuotaExceeded, str] = {
    "sender": "451 4.7.1 Too many messages from this sender, try again later",
    "ip": "451 4.7.1 Too many messages from this client, try again later",
}


class IntakeHandler:
    """aiosmtpd handler: MAIL within the ``quota`` (if any), RCPT only for configured
    addresses; DATA handed to ``on_message`` once per account it was addressed to, then 250."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        on_message: OnSmtpMessage,
        max_message_bytes: int = 25 * 1024 * 1024,
        quota: SmtpQuota | None = None,
    ) -> None:
        self.addresses = {a.strip().lower(): acct for a, acct in addresses.items()}
        self.on_message = on_message
        self.max_message_bytes = max_message_bytes
        self.quota = quota

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Over a quota: 451 4.7.1, the transaction is not opened, and the client may go on
        with another MAIL on the same connection (another sender may be within its quota)."""
        if self.quota is not None:
            peer = session.peer
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
            exceeded = await self.quota(ip, address)
            if exceeded is not None:
                return QUOTA_REPLIES[exceeded]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.strip().lower() not in self.addresses:
            return "550 5.1.1 Recipient address not served here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")
        if len(raw) > self.max_message_bytes:
            return "552 5.3.4 Message too big"
        sender = (envelope.mail_from or "").strip().strip("<>")
        raw = f"Return-Path: <{sender}>\r\n".encode("utf-8", "replace") + raw
        accounts = list(dict.fromkeys(self.addresses[r.strip().lower()] for r in envelope.rcpt_tos))
        for account in accounts:
            try:
                await self.on_message(raw, account)
            except Exception as exc:  # the relay keeps the mail and retries
                log.warning("smtp_in.handover_failed", account=account, error=type(exc).__name__)
                return "451 4.3.0 Temporary failure, please try again later"
        return "250 2.0.0 Message accepted"


class SmtpIntake:
    """An SMTP server for ``IntakeHandler`` on ``host:port`` in the running event loop."""

    def __init__(
        self,
        handler: IntakeHandler,
        host: str = "127.0.0.1",
        port: int = 2525,
        *,
        server_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        timeout: float = 300.0,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self._kwargs: dict[str, Any] = {
            "data_size_limit": handler.max_message_bytes,
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "hostname": server_hostname or host,
            "tls_context": tls_context,
            "require_starttls": require_starttls,
            "timeout": timeout,
        }
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        return SMTP(self.handler, loop=asyncio.get_running_loop(), **self._kwargs)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        log.info("smtp_in.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
