"""Mail into the hub: each mailbox's mails become messages on the inbound stream.

The IMAP intake calls ``on_message`` for each new mail and moves its position only after it
returns, so everything here happens before that: attachments are stored, the message is on
the stream (or, for a bounce, the reply it names is marked failed). A mail that cannot be
read at all is kept in the blob store and logged, and does not block the mailbox.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

import structlog

from adapters.blob_store import FileBlobStore
from channels.base import PayloadError
from channels.email.imap import ImapAccount, ImapIntake, MailboxState
from channels.email.parse import parse_mail
from channels.email.smtp_in import IntakeHandler, QuotaExceeded, SmtpIntake, SmtpQuota
from hub.clock import Clock
from hub.logging import mask_text
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


class RateLimiter(Protocol):
    """Fixed-window counters (``adapters.redis_rate_limit.RedisRateLimit``): each answers 0
    if within ``limit``, else the seconds until the window ends."""

    async def over(self, bucket: str, limit: int, window_s: int, now_s: float) -> int: ...

    async def hit(self, bucket: str, limit: int, window_s: int, now_s: float) -> int: ...


QUOTA_LOOKUP_S = 1.0
"""Bound on the quota checks of one MAIL FROM; past it (Redis frozen) the mail is let in."""


def client_bucket(ip: str) -> str:
    """The quota's key for a client: its address, an IPv4-mapped IPv6 address as IPv4, and
    an IPv6 client by its /64 (one host usually holds a whole /64)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def _exempt(ip: str, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in n for n in networks)


class SmtpQuotas:
    """Per client IP and per envelope sender quotas of the SMTP intake, checked at MAIL FROM
    (``channels.email.smtp_in.SmtpQuota``). A message is counted against both only when it is
    within both, so a sender past its quota does not use up its relay's (one MTA relays every
    sender); the null sender of bounces has no sender quota, only the IP's. If the limiter
    cannot answer in time, the mail is let in (fail open): the handover that follows still
    answers 451 if Redis is really away."""

    def __init__(
        self, limiter: RateLimiter, settings: SmtpIntakeSection, clock: Clock, metrics: HubMetrics
    ) -> None:
        self.limiter = limiter
        self.settings = settings
        self.clock = clock
        self.metrics = metrics

    def _buckets(self, ip: str, sender: str) -> list[tuple[QuotaExceeded, str, int]]:
        s = self.settings
        out: list[tuple[QuotaExceeded, str, int]] = []
        if s.rate_per_ip_per_window > 0 and not _exempt(ip, s.rate_ip_exempt):
            out.append(("ip", f"smtp:ip:{client_bucket(ip)}", s.rate_per_ip_per_window))
        address = sender.strip().lower()
        if address and s.rate_per_sender_per_window > 0:
            out.append(("sender", f"smtp:sender:{address}", s.rate_per_sender_per_window))
        return out

    async def __call__(self, ip: str, sender: str) -> QuotaExceeded | None:
        buckets = self._buckets(ip, sender)
        if not buckets:
            return None
        window = self.settings.rate_window_seconds
        now = self.clock.now()
        try:
            async with asyncio.timeout(QUOTA_LOOKUP_S):
                for by, bucket, limit in buckets:  # look first, without counting
                    if wait := await self.limiter.over(bucket, limit, window, now):
                        return self._refused(by, ip, sender, wait)
                for by, bucket, limit in buckets:  # within both: count (atomic per bucket)
                    if wait := await self.limiter.hit(bucket, limit, window, now):
                        return self._refused(by, ip, sender, wait)
        except Exception as exc:  # the limiter is a guard, not a gate: let the mail in
            log.warning("smtp.rate_limit_unavailable", error=type(exc).__name__)
        return None

    def _refused(self, by: QuotaExceeded, ip: str, sender: str, wait: int) -> QuotaExceeded:
        self.metrics.smtp_rate_limited.labels(by).inc()
        log.info("smtp.rate_limited", by=by, sender=mask_text(sender), ip=ip, retry_in_s=wait)
        return by


class SmtpListener:
    """The direct SMTP intake: one listening server for every ``intake = "smtp"`` account;
    it answers 250 only after the mail is on the inbound stream (451 otherwise), and 451
    4.7.1 at MAIL FROM to a client or sender past its ``quota``."""

    def __init__(
        self,
        intakes: dict[str, MailIntake],
        settings: SmtpIntakeSection,
        quota: SmtpQuota | None = None,
    ) -> None:
        self.intakes = intakes
        self.settings = settings
        handler = IntakeHandler(
            {i.settings.address: name for name, i in intakes.items()},
            self._deliver,
            settings.max_message_bytes,
            quota=quota,
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
