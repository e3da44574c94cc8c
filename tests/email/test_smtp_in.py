"""Direct SMTP intake (aiosmtpd in the test's event loop), driven by aiosmtplib as the relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from adapters.redis_server import free_port
from channels.email.parse import parse_mail
from channels.email.smtp_in import IntakeHandler, SmtpIntake
from tests.email.conftest import make_mail

pytestmark = pytest.mark.timeout(30)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "email"
ADDRESSES = {
    "ppid@kemnaker.go.id": "ppid",
    "pengaduan@kemnaker.go.id": "pengaduan",
    "PPID-Alias@kemnaker.go.id": "ppid",
}


class Hub:
    """The hub's side: records (account, raw); may fail or hold the handover."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.fail = False
        self.entered = asyncio.Event()
        self.release: asyncio.Event | None = None

    async def __call__(self, raw: bytes, account: str) -> None:
        self.entered.set()
        if self.release is not None:
            await self.release.wait()
        if self.fail:
            raise ConnectionError("redis is down")
        self.got.append((account, raw))


@pytest.fixture
async def hub() -> Hub:
    return Hub()


@pytest.fixture
async def server(hub: Hub) -> AsyncIterator[SmtpIntake]:
    intake = SmtpIntake(
        IntakeHandler(ADDRESSES, hub, max_message_bytes=64 * 1024), "127.0.0.1", free_port()
    )
    await intake.start()
    yield intake
    await intake.stop()


async def relay(
    server: SmtpIntake, raw: bytes, to: list[str], sender: str = "relay@example.id"
) -> None:
    await aiosmtplib.send(
        raw, sender=sender, recipients=to, hostname="127.0.0.1", port=server.port, timeout=10
    )


async def test_mail_is_handed_over_with_its_envelope_sender(server: SmtpIntake, hub: Hub) -> None:
    """A mail for a served address reaches the callback once, Return-Path prepended."""
    raw = make_mail(1)
    await relay(server, raw, ["ppid@kemnaker.go.id"], sender="warga@example.id")
    ((account, got),) = hub.got
    assert account == "ppid"
    assert got.startswith(b"Return-Path: <warga@example.id>\r\n")
    assert got.endswith(raw)
    assert (
        parse_mail(got, account, 0.0).message.provider_id
        == parse_mail(raw, account, 0.0).message.provider_id
    )


async def test_250_only_after_the_callback_returned(server: SmtpIntake, hub: Hub) -> None:
    """The relay's send does not complete while the hub is still taking the mail."""
    hub.release = asyncio.Event()
    send = asyncio.create_task(relay(server, make_mail(1), ["ppid@kemnaker.go.id"]))
    await hub.entered.wait()
    assert not send.done()
    assert hub.got == []
    hub.release.set()
    await send
    assert len(hub.got) == 1


async def test_unknown_recipient_is_refused_with_550(server: SmtpIntake, hub: Hub) -> None:
    """RCPT for an address the hub does not serve: 550, and nothing is handed over."""
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as err:
        await relay(server, make_mail(1), ["orang.lain@kemnaker.go.id"])
    assert err.value.recipients[0].code == 550
    assert hub.got == []


async def test_failed_handover_answers_451(server: SmtpIntake, hub: Hub) -> None:
    """The hub could not take it: 451, so the relay keeps the mail and retries."""
    hub.fail = True
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await relay(server, make_mail(1), ["ppid@kemnaker.go.id"])
    assert err.value.code == 451
    hub.fail = False
    await relay(server, make_mail(1), ["ppid@kemnaker.go.id"])
    assert len(hub.got) == 1


async def test_too_big_mail_is_refused_with_552(server: SmtpIntake, hub: Hub) -> None:
    """Above the size limit: 552, nothing handed over."""
    big = make_mail(1) + b"x" * (70 * 1024) + b"\r\n"
    with pytest.raises(aiosmtplib.SMTPResponseException) as err:
        await relay(server, big, ["ppid@kemnaker.go.id"])
    assert err.value.code == 552
    assert hub.got == []


async def test_one_handover_per_account(server: SmtpIntake, hub: Hub) -> None:
    """Addressed to two accounts (and an alias of one): one handover per account."""
    to = ["ppid@kemnaker.go.id", "ppid-alias@KEMNAKER.go.id", "pengaduan@kemnaker.go.id"]
    await relay(server, make_mail(1), to)
    assert [a for a, _ in hub.got] == ["ppid", "pengaduan"]


async def test_bounce_with_null_sender_is_recognised(server: SmtpIntake, hub: Hub) -> None:
    """A DSN relayed with MAIL FROM:<> parses as a bounce with a null sender."""
    raw = (FIXTURES / "dsn_bounce.eml").read_bytes().split(b"\r\n", 1)[1]  # drop its Return-Path
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10) as client:
        await client.mail("")  # MAIL FROM:<>, as MTAs send bounces
        await client.rcpt("ppid@kemnaker.go.id")
        await client.data(raw)
    ((account, got),) = hub.got
    assert got.startswith(b"Return-Path: <>\r\n")
    parsed = parse_mail(got, account, 0.0)
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == "<176809680000.4242.1234567890@kemnaker.go.id>"
    assert parsed.auto_submitted
