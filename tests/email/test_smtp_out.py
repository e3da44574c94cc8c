"""Sending replies with aiosmtplib to a real aiosmtpd server, and mapping its answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from adapters.redis_server import free_port
from channels.base import TransientSendError
from channels.email.compose import build_reply
from channels.email.smtp_out import SmtpServer, send
from hub.model import DeliveryState
from tests.email.conftest import TlsFiles

pytestmark = pytest.mark.timeout(30)


class Recording:
    """Records what it accepts; answers ``rcpt_reply`` / ``data_reply`` when given."""

    def __init__(self, rcpt_reply: str = "", data_reply: str = "") -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.received: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()  # the Controller runs in its own thread

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        content = envelope.original_content or b""
        with self.lock:
            self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 2.0.0 Ok: queued"


def controller(handler: Any, **kw: Any) -> Controller:
    c = Controller(handler, hostname="127.0.0.1", port=free_port(), **kw)
    c.start()
    return c


@pytest.fixture
def servers() -> Iterator[list[Controller]]:
    made: list[Controller] = []
    yield made
    for c in made:
        c.stop()


def reply() -> tuple[Any, str]:
    composed = build_reply(
        from_address="ppid@kemnaker.go.id",
        to_address="warga@example.id",
        subject="Pertanyaan",
        text="Jawaban kami.",
        ticket_number="KMN-2026-000123",
        parent_message_id="<citizen-1@example.id>",
    )
    return composed.message, composed.message_id


def plain(c: Controller, **kw: Any) -> SmtpServer:
    return SmtpServer(hostname="127.0.0.1", port=c.port, security="none", timeout=5, **kw)


async def test_accepted_send_records_the_message(servers: list[Controller]) -> None:
    """250: accepted, with the Message-ID as provider id; the server has the exact mail."""
    handler = Recording()
    c = controller(handler)
    servers.append(c)
    msg, mid = reply()
    result = await send(msg, plain(c))
    assert (result.accepted, result.provider_id, result.state) == (True, mid, DeliveryState.SENT)
    ((mail_from, rcpts, content),) = handler.received
    assert (mail_from, rcpts) == ("ppid@kemnaker.go.id", ["warga@example.id"])
    got = message_from_bytes(content)
    assert got["Message-ID"] == mid
    assert got["In-Reply-To"] == "<citizen-1@example.id>"


async def test_451_is_transient(servers: list[Controller]) -> None:
    """A 4xx answer to DATA: try again later."""
    c = controller(Recording(data_reply="451 4.3.0 Try again later"))
    servers.append(c)
    with pytest.raises(TransientSendError) as err:
        await send(reply()[0], plain(c))
    assert err.value.code == "smtp-451"


async def test_450_recipient_is_transient(servers: list[Controller]) -> None:
    """A 4xx answer to RCPT (greylisting): try again later."""
    c = controller(Recording(rcpt_reply="450 4.2.0 Greylisted"))
    servers.append(c)
    with pytest.raises(TransientSendError):
        await send(reply()[0], plain(c))


async def test_550_recipient_is_a_refusal(servers: list[Controller]) -> None:
    """A 5xx answer to RCPT: the reply failed for good, with the SMTP code."""
    c = controller(Recording(rcpt_reply="550 5.1.1 No such user"))
    servers.append(c)
    result = await send(reply()[0], plain(c))
    assert (result.accepted, result.state, result.error_code) == (
        False,
        DeliveryState.FAILED,
        "smtp-550",
    )
    assert "No such user" in result.error_message


async def test_554_data_is_a_refusal(servers: list[Controller]) -> None:
    """A 5xx answer to DATA (content rejected): failed for good."""
    c = controller(Recording(data_reply="554 5.7.1 Rejected as spam"))
    servers.append(c)
    result = await send(reply()[0], plain(c))
    assert (result.accepted, result.error_code) == (False, "smtp-554")


async def test_connection_refused_is_transient() -> None:
    """Nobody listening: try again later."""
    server = SmtpServer(hostname="127.0.0.1", port=free_port(), security="none", timeout=5)
    with pytest.raises(TransientSendError) as err:
        await send(reply()[0], server)
    assert err.value.code == "smtp-conn"


async def test_silent_server_times_out_as_transient() -> None:
    """A server that never greets: the timeout is a passing failure."""
    never = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransientSendError):
            await send(
                reply()[0],
                SmtpServer(hostname="127.0.0.1", port=port, security="none", timeout=0.3),
            )
    finally:
        never.set()
        srv.close()
        await srv.wait_closed()


class Accounts:
    """aiosmtpd authenticator: one user, one password."""

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"ppid@kemnaker.go.id",
            b"app-password",
        )
        return AuthResult(success=ok, handled=False)


async def test_starttls_and_login(servers: list[Controller], tls_files: TlsFiles) -> None:
    """STARTTLS with the certificate checked, then AUTH; the mail is delivered."""
    handler = Recording()
    c = controller(
        handler,
        tls_context=tls_files.server_context(),
        require_starttls=True,
        authenticator=Accounts(),
        auth_required=True,
    )
    servers.append(c)
    server = SmtpServer(
        hostname="127.0.0.1",
        port=c.port,
        security="starttls",
        username="ppid@kemnaker.go.id",
        password="app-password",
        timeout=5,
        tls_context=tls_files.client_context(),
    )
    msg, mid = reply()
    assert (await send(msg, server)).provider_id == mid
    assert len(handler.received) == 1
    assert "app-password" not in repr(server)


async def test_wrong_password_is_transient(servers: list[Controller], tls_files: TlsFiles) -> None:
    """535 is the hub's configuration, not the citizen's address: retried, not failed."""
    c = controller(
        Recording(),
        tls_context=tls_files.server_context(),
        require_starttls=True,
        authenticator=Accounts(),
        auth_required=True,
    )
    servers.append(c)
    server = SmtpServer(
        hostname="127.0.0.1",
        port=c.port,
        security="starttls",
        username="ppid@kemnaker.go.id",
        password="wrong",
        timeout=5,
        tls_context=tls_files.client_context(),
    )
    with pytest.raises(TransientSendError) as err:
        await send(reply()[0], server)
    assert err.value.code == "smtp-auth"
