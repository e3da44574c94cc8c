"""Mail into the hub: each mailbox's mails become messages on the inbound stream.

The IMAP intake calls ``on_message`` for each new mail and moves its position only after it
returns, so everything here happens before that: attachments are stored, the message is on
the stream (or, for a bounce, the reply it names is marked failed). A mail that cannot be
read at all is kept in the blob store and logged, and does not block the mailbox.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import structlog

from adapters.blob_store import FileBlobStore
from channels.base import PayloadError
from channels.email.imap import ImapAccount, ImapIntake, MailboxState
from channels.email.parse import parse_mail
from channels.email.smtp_in import IntakeHandler, SmtpIntake
from hub.clock import Clock
from hub.metrics import HubMetrics
from hub.ports import Publisher
from hub.sender import StatusService
from hub.settings import EmailAccount, SmtpIntakeSection
from hub.source_health import IMAP, HealthReporter

log = structlog.get_logger("hub.mail")


class MailIntake:
    def __init__(
        self,
        account: str,
        settings: EmailAccount,
        publisher: Publisher,
        blobs: FileBlobStore,
        statuses: StatusService,
        clock: Clock,
        metrics: HubMetrics,
    ) -> None:
        self.account = account
        self.settings = settings
        self.publisher = publisher
        self.blobs = blobs
        self.statuses = statuses
        self.clock = clock
        self.metrics = metrics

    async def on_message(self, raw: bytes, uid: int = 0) -> None:
        try:
            parsed = parse_mail(
                raw, self.account, self.clock.now(),
                max_attachment_bytes=self.settings.max_attachment_bytes,
                own_addresses=(self.settings.address,),
            )  # fmt: skip
        except PayloadError as exc:
            ref = await self.blobs.put(raw)
            self.metrics.webhook_rejected.labels("email", "malformed").inc()
            log.warning("mail.unreadable", account=self.account, uid=uid, blob=ref, reason=str(exc))
            return
        if parsed.bounce is not None:
            if parsed.bounce.original_message_id:
                await self.statuses.apply([parsed.bounce.status_update(self.account)])
            log.info("mail.bounce", account=self.account, uid=uid, failed=parsed.bounce.failed)
            return
        for _attachment, data in parsed.attachments:
            if data:
                await self.blobs.put(data)
        msg = parsed.message
        context = {k: msg.meta.get(k, "") for k in ("subject", "message_id", "references",
                                                    "in_reply_to")}  # fmt: skip
        msg = replace(msg, meta={**msg.meta, "reply_context": json.dumps(context)})
        entry = await self.publisher.publish(msg)
        self.metrics.inbound.labels("email", self.account).inc()
        log.info("message.received", channel="email", account=self.account, uid=uid,
                 message_id=msg.id, entry=entry)  # fmt: skip


class SmtpListener:
    """The direct SMTP intake: one listening server for every ``intake = "smtp"`` account;
    it answers 250 only after the mail is on the inbound stream (451 otherwise)."""

    def __init__(self, intakes: dict[str, MailIntake], settings: SmtpIntakeSection) -> None:
        self.intakes = intakes
        self.settings = settings
        handler = IntakeHandler(
            {i.settings.address: name for name, i in intakes.items()},
            self._deliver,
            settings.max_message_bytes,
        )
        self.server = SmtpIntake(
            handler, settings.listen_host, settings.listen_port,
            server_hostname=settings.server_hostname or None,
        )  # fmt: skip

    async def _deliver(self, raw: bytes, account: str) -> None:
        await self.intakes[account].on_message(raw)

    async def start(self) -> None:
        await self.server.start()
        log.info("smtp_intake.listening", host=self.settings.listen_host,
                 port=self.settings.listen_port)  # fmt: skip

    async def stop(self) -> None:
        await self.server.stop()


class ImapPoller:
    """One mailbox's IMAP intake, as a poller the intake runner starts and stops."""

    def __init__(
        self, intake: MailIntake, settings: EmailAccount, state: MailboxState,
        metrics: HubMetrics, health: HealthReporter | None = None,
    ) -> None:  # fmt: skip
        self.name = f"email:{intake.account}"
        self.health = health
        self._reports: set[asyncio.Task[None]] = set()
        self.intake = intake
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.imap: ImapIntake | None = None

    def _unreachable(self, mailbox: str, exc: BaseException) -> None:
        self.metrics.intake_unreachable.labels(self.name).inc()
        detail = self.imap.last_error if self.imap is not None else type(exc).__name__
        self._report(False, detail)

    def _connected(self, mailbox: str) -> None:
        self._report(True, "")

    def _report(self, healthy: bool, detail: str) -> None:
        """IMAP's hooks are plain callbacks; the report is a task, kept until it is done."""
        if self.health is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.health.report(f"email/{self.intake.account}", IMAP, healthy, detail)
        )
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        account = ImapAccount(
            name=self.intake.account, host=s.imap_host, username=s.imap_username,
            password=s.imap_password.get_secret_value(), port=s.imap_port,
            security=s.imap_security, mailbox=s.imap_mailbox, use_idle=s.imap_idle,
            idle_renew=s.imap_idle_renew_seconds, poll_interval=s.imap_poll_seconds,
            import_existing=s.imap_import_existing,
        )  # fmt: skip
        self.imap = ImapIntake(
            account, self.state, self.intake.on_message, on_unreachable=self._unreachable,
            on_connected=self._connected,
        )  # fmt: skip
        self.imap.start()
        try:
            await stop.wait()
        finally:
            await self.imap.stop()
