"""The shared channel contract for e-mail: replies to a real aiosmtpd server on loopback (the
channel logs in with its password), mail in through the MIME parser the IMAP and SMTP
intakes use, on a recorded mail (e-mail has no webhook, so no provider signature)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.base import Channel, InboundRequest
from channels.email.channel import EmailChannel
from channels.email.parse import parse_mail
from hub.model import Message
from tests.channel_contract import NOW, ChannelContract, Outcome, Provider
from tests.email.test_smtp_out import Accounts, Recording, controller

pytestmark = pytest.mark.timeout(30)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "email" / "plain_utf8.eml"
ADDRESS = "ppid@kemnaker.go.id"  # also the login Accounts() accepts, with "app-password"


class CountingRecording(Recording):
    """Recording that also counts the recipients offered to it (refused ones too) by a
    client that logged in: a send that skipped AUTH is not counted."""

    def __init__(self, rcpt_reply: str = "", data_reply: str = "") -> None:
        super().__init__(rcpt_reply, data_reply)
        self.rcpts = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if session.authenticated:
            with self.lock:
                self.rcpts += 1
        return await super().handle_RCPT(server, session, envelope, address, options)


def handler(outcome: Outcome) -> CountingRecording:
    """The relay's answer: 451 to DATA (try later), or 550 to RCPT (no such user: final)."""
    if outcome == "transient":
        return CountingRecording(data_reply="451 4.3.0 Try again later")
    if outcome == "refused":
        return CountingRecording(rcpt_reply="550 5.1.1 No such user")
    return CountingRecording()


class TestEmailContract(ChannelContract):
    registry_key = "email:smtp"
    account_name = "ppid"

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        return {
            "address": ADDRESS,
            "display_name": "PPID Kemnaker",
            "imap_host": "127.0.0.1",
            "imap_username": ADDRESS,
            "imap_password": "imap-Pa55word-for-the-contract",
            "smtp_host": "127.0.0.1",
            "smtp_port": urlsplit(provider_url).port,
            "smtp_security": "none",
            "smtp_username": ADDRESS,
            "smtp_password": "app-password",
            "smtp_timeout_seconds": 5,
        }

    def valid_request(self) -> InboundRequest | None:
        return None  # mail arrives by IMAP or SMTP, never by webhook

    def parsed_messages(self, channel: Channel) -> list[Message]:
        """The recorded mail through the intake's parser."""
        return self.parse_body(channel, FIXTURE.read_bytes())

    def parse_body(self, channel: Channel, body: bytes) -> list[Message]:
        """A raw mail through the parser the intakes use, with the account's settings."""
        assert isinstance(channel, EmailChannel)
        parsed = parse_mail(
            body,
            channel.account,
            NOW,
            max_attachment_bytes=channel.settings.max_attachment_bytes,
            own_addresses=(channel.settings.address,),
        )
        return [parsed.message]

    def absurd_bodies(self) -> list[Any]:
        mail = FIXTURE.read_bytes()
        return [
            pytest.param(
                mail.replace(b"Date: Mon, 5 Jan 2026", b"Date: Mon, 5 Jan 99999"), id="date-year"
            ),
            pytest.param(
                mail.replace(b"Subject: ", b"Subject: " + b"x" * 100_000), id="subject-100k"
            ),
        ]

    @asynccontextmanager
    async def provider(self, outcome: Outcome) -> AsyncIterator[Provider]:
        relay = handler(outcome)
        # The Controller runs aiosmtpd in its own thread; starting it waits for it to answer.
        # AUTH is offered on the plain connection and the channel logs in with its password
        # (the channel gives aiosmtplib no TLS context for a self-signed test certificate).
        c = await asyncio.to_thread(
            controller, relay, authenticator=Accounts(), auth_require_tls=False
        )
        channel = self.build_channel(f"smtp://127.0.0.1:{c.port}")
        try:
            yield Provider(channel, lambda: relay.rcpts)
        finally:
            await channel.aclose()
            await asyncio.to_thread(c.stop)
