"""E-mail end to end on real servers: Dovecot in, aiosmtpd out, the hub in between."""

from __future__ import annotations

import asyncio
import email
import threading
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.redis_server import free_port
from tests.email.conftest import PASSWORD, USER, Appender, Dovecot
from tests.helpers import HubHarness, eventually

pytestmark = pytest.mark.timeout(60)


class Outbox:
    """The hub's SMTP relay: records every mail and wakes the test's loop."""

    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
        with self.lock:
            self.mails.append(msg)  # type: ignore[arg-type]
        self.loop.call_soon_threadsafe(self.arrived.set)
        return "250 2.0.0 Ok: queued"

    async def wait_for(self, n: int) -> list[EmailMessage]:
        async with asyncio.timeout(30):
            while len(self.mails) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.mails


@pytest.fixture
async def relay() -> Any:
    out = Outbox()
    c = Controller(out, hostname="127.0.0.1", port=free_port())
    c.start()
    yield out, c.port
    c.stop()


def citizen_mail(subject: str, body: str, msgid: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Siti Rahayu <siti@warga.test>"
    msg["To"] = "ppid@kemnaker.go.id"
    msg["Subject"] = subject
    msg["Message-ID"] = msgid
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
async def mail_hub(
    harness_factory: Any, dovecot: Dovecot, mailbox: str, relay: Any
) -> Iterator[tuple[HubHarness, Outbox]]:
    out, smtp_port = relay
    account = {
        "address": "ppid@kemnaker.go.id", "display_name": "PPID Kemnaker",
        "imap_host": "127.0.0.1", "imap_port": dovecot.port, "imap_security": "plain",
        "imap_username": USER, "imap_password": PASSWORD, "imap_mailbox": mailbox,
        "imap_poll_seconds": 1, "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
        "smtp_security": "none",
    }  # fmt: skip
    h = await harness_factory(workers=True, channels__email__accounts={"ppid": account})
    return h, out


async def _inbound_texts(h: HubHarness, tid: str) -> list[str]:
    full = await h.ticket(tid)
    return [m.get("text", "").strip() for m in full["messages"] if m["direction"] == "in"]


async def test_mail_opens_ticket_threads_replies_and_bounces(
    mail_hub: tuple[HubHarness, Outbox], append: Appender, mailbox: str
) -> None:
    """A citizen's mail becomes a ticket with an auto-submitted, threaded acknowledgement;
    a reply with a new subject joins the ticket; an agent's reply threads; a bounce marks it
    failed without opening a ticket."""
    h, out = mail_hub
    await append(
        mailbox, citizen_mail("Upah lembur", "Upah lembur belum dibayar.", "<c1@warga.test>")
    )
    [ack] = await out.wait_for(1)
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<c1@warga.test>"
    assert ack["To"] == "Siti Rahayu <siti@warga.test>" or "siti@warga.test" in ack["To"]
    [t] = await h.tickets()
    assert t["number"] in ack["Subject"]
    assert ack["Subject"].startswith("Re: Upah lembur")

    await append(mailbox, citizen_mail("Subjek lain", "Ini lampiran tambahan.", "<c2@warga.test>",
                                       In_Reply_To=ack["Message-ID"]))  # fmt: skip

    async def joined() -> bool:
        return await _inbound_texts(h, t["id"]) == ["Upah lembur belum dibayar.",
                                                     "Ini lampiran tambahan."]  # fmt: skip

    await eventually(joined, limit_s=20, every_s=0.05)
    assert len(await h.tickets()) == 1

    status, body = await h.api("POST", f"/api/v1/tickets/{t['id']}/replies",
                               json={"text": "Mohon kirim slip gaji."})  # fmt: skip
    assert status == 202, body
    mails = await out.wait_for(2)
    agent_reply = mails[1]
    assert agent_reply["In-Reply-To"] == "<c2@warga.test>"
    assert "<c2@warga.test>" in agent_reply["References"]
    assert "Auto-Submitted" not in agent_reply
    assert "Mohon kirim slip gaji." in agent_reply.get_body(("plain",)).get_content()

    bounce = (
        "From: MAILER-DAEMON@mx.warga.test\r\nTo: ppid@kemnaker.go.id\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@mx.warga.test>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.warga.test\r\n\r\n"
        "Final-Recipient: rfc822; siti@warga.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {agent_reply['Message-ID']}\r\n"
        "Subject: Re: Subjek lain\r\n\r\n--B--\r\n"
    ).encode()
    await append(mailbox, bounce)

    async def failed() -> bool:
        full = await h.ticket(t["id"])
        return any(m.get("state") == "failed" and m.get("error_code") == "smtp-5.1.1"
                   for m in full["messages"] if m["direction"] == "out")  # fmt: skip

    await eventually(failed, limit_s=20, every_s=0.05)
    assert len(await h.tickets()) == 1  # the bounce opened nothing
    assert len(out.mails) == 2  # and got no acknowledgement


async def test_auto_replies_and_lists_get_no_acknowledgement(
    mail_hub: tuple[HubHarness, Outbox], append: Appender, mailbox: str
) -> None:
    """An out-of-office or a list mail opens a ticket but the hub does not answer it."""
    h, out = mail_hub
    await append(mailbox, citizen_mail("Cuti", "Saya sedang cuti.", "<ooo@warga.test>",
                                       Auto_Submitted="auto-replied"))  # fmt: skip
    await append(mailbox, citizen_mail("Buletin", "Berita.", "<list@warga.test>",
                                       List_Id="<buletin.warga.test>"))  # fmt: skip

    async def stored() -> bool:
        ts = await h.tickets()
        return len(ts) >= 1 and sum(int(t["msg_count"]) for t in ts) == 2

    await eventually(stored, limit_s=20, every_s=0.05)
    # acknowledgements are created when the message is applied: there are none to send
    for t in await h.tickets():
        full = await h.ticket(t["id"])
        assert [m for m in full["messages"] if m["direction"] == "out"] == []
    assert out.mails == []


async def test_direct_smtp_intake_accepts_only_after_storing(
    harness_factory: Any, relay: Any
) -> None:
    """Mail forwarded to the hub's SMTP listener becomes a ticket; 250 comes after the
    stream write, and an address the hub does not serve is refused with 550."""
    import aiosmtplib

    out, smtp_port = relay
    listen = free_port()
    account = {
        "address": "ppid@kemnaker.go.id", "intake": "smtp", "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port, "smtp_security": "none",
    }  # fmt: skip
    h = await harness_factory(
        workers=True,
        channels__email__accounts={"ppid": account},
        channels__email__smtp_intake={"enabled": True, "listen_port": listen},
    )
    raw = citizen_mail("Lowongan", "Info lowongan kerja?", "<direct-1@warga.test>")
    errors, _ = await aiosmtplib.send(
        raw, sender="siti@warga.test", recipients=["ppid@kemnaker.go.id"],
        hostname="127.0.0.1", port=listen, start_tls=False,
    )  # fmt: skip
    assert errors == {}
    [ack] = await out.wait_for(1)
    assert ack["In-Reply-To"] == "<direct-1@warga.test>"
    assert len(await h.tickets()) == 1
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await aiosmtplib.send(
            raw, sender="siti@warga.test", recipients=["orang@lain.test"],
            hostname="127.0.0.1", port=listen, start_tls=False,
        )  # fmt: skip


async def test_agent_reply_carries_an_uploaded_file(
    mail_hub: tuple[HubHarness, Outbox], append: Appender, mailbox: str
) -> None:
    """A file uploaded to the hub goes out attached to the e-mail reply."""
    h, out = mail_hub
    await append(mailbox, citizen_mail("Formulir", "Mohon formulirnya.", "<f1@warga.test>"))
    await out.wait_for(1)
    [t] = await h.tickets()
    pdf = b"%PDF-1.4 formulir pengaduan"
    status, up = await h.api(
        "POST", "/api/v1/attachments", params={"name": "formulir.pdf"}, data=pdf,
        headers={"Content-Type": "application/pdf"},
    )  # fmt: skip
    assert status == 201, up
    status, body = await h.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies",
        json={"text": "Terlampir formulirnya.",
              "attachments": [{"ref": up["ref"], "name": "formulir.pdf",
                               "content_type": "application/pdf"}]},
    )  # fmt: skip
    assert status == 202, body
    mails = await out.wait_for(2)
    [part] = list(mails[1].iter_attachments())
    assert part.get_filename() == "formulir.pdf"
    assert part.get_content() == pdf


async def test_console_composer_attaches_files_to_email_replies(
    mail_hub: tuple[HubHarness, Outbox], append: Appender, mailbox: str
) -> None:
    """On an e-mail ticket the console's composer takes files and sends them attached."""
    import aiohttp

    h, out = mail_hub
    await h.hub.auth.create_user("ani", "kata-sandi-rahasia-1", "agent", ["general"])
    await append(mailbox, citizen_mail("Dokumen", "Butuh formulir.", "<d1@warga.test>"))
    await out.wait_for(1)
    [t] = await h.tickets()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(
            h.base + "/api/v1/session", json={"username": "ani", "password": "kata-sandi-rahasia-1"}
        ) as r:
            csrf = (await r.json())["csrf_token"]  # fmt: skip
        async with s.get(f"{h.base}/console/tickets/{t['number']}") as r:
            assert 'type="file"' in await r.text()
        form = aiohttp.FormData()
        form.add_field("csrf_token", csrf)
        form.add_field("text", "Terlampir.")
        form.add_field("files", b"isi formulir", filename="formulir.txt",
                       content_type="text/plain")  # fmt: skip
        async with s.post(f"{h.base}/console/tickets/{t['number']}/reply", data=form) as r:
            assert r.status == 200  # redirected back to the ticket
    mails = await out.wait_for(2)
    [part] = list(mails[1].iter_attachments())
    assert (part.get_filename(), part.get_content()) == ("formulir.txt", "isi formulir")


async def test_mailbox_health_feeds_the_source_alerts(
    mail_hub: tuple[HubHarness, Outbox], harness_factory: Any
) -> None:
    """A mailbox that answers is healthy; one that refuses connections is reported down
    with the error, which is what the source_unreachable rule reads."""
    h, _ = mail_hub

    async def health(name: str) -> Any:
        return next((s for s in await h.hub.health.all() if s.name == name), None)

    assert (await eventually(lambda: health("email/ppid"))).healthy is True
    down = {
        "address": "pengaduan@kemnaker.go.id", "imap_host": "127.0.0.1",
        "imap_port": free_port(), "imap_security": "plain", "imap_username": USER,
        "imap_password": PASSWORD, "smtp_host": "127.0.0.1", "smtp_port": free_port(),
        "smtp_security": "none",
    }  # fmt: skip
    await harness_factory(workers=True, channels__email__accounts={"down": down})
    source = await eventually(lambda: health("email/down"))
    assert (source.kind, source.healthy) == ("imap", False)
    assert "ConnectionRefused" in source.detail or "OSError" in source.detail
    assert PASSWORD not in source.detail
