"""The composition root: settings in, a running hub out. The only hub module that imports
concrete adapters and channels.

One process can play every role (the default, and what ``make run`` does) or only some of
them (``--role web``, ``--role dispatcher``, ``--role sender``, ``--role intake``,
``--role observer``) to scale out against a shared Redis. Every role's loop runs on the same
asyncio loop as the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters import keys
from adapters.blob_store import FileBlobStore
from adapters.redis_alerts import RedisAlertStore
from adapters.redis_archive import RedisArchive
from adapters.redis_bus import InboundPublisher, Outbox, PipelinedGets, StreamGroup
from adapters.redis_cluster_client import ClusterClient
from adapters.redis_events import RedisEvents
from adapters.redis_lease import RedisLease
from adapters.redis_log_position import RedisLogPosition
from adapters.redis_mail_state import RedisMailState
from adapters.redis_ops import RedisOps
from adapters.redis_portal_cursor import RedisPortalCursor
from adapters.redis_queue import RedisQueue
from adapters.redis_rate_limit import RedisRateLimit
from adapters.redis_retry_queue import RedisRetryQueue
from adapters.redis_roster import RedisRoster
from adapters.redis_search import RedisSearchIndex
from adapters.redis_server import EmbeddedRedis
from adapters.redis_stats import RedisStats
from adapters.redis_store import RedisStore
from adapters.redis_users import RedisUsers
from channels import load_channel_class
from channels.portal.poller import PortalPoller
from channels.telegram_alerts import TelegramAlertNotifier
from hub.ack import Acknowledger
from hub.alert_board import AlertBoard
from hub.alerts import AlertEngine
from hub.archive import ArchiveFiles, ArchivePolicy, Archiver
from hub.auth import AuthService
from hub.call_intake import call_tailers
from hub.channelset import ChannelSet, TemplateSpec
from hub.clock import Clock, SystemClock
from hub.dashboard import Dashboard
from hub.dispatcher import Dispatcher, DispatchOptions
from hub.ids import new_id
from hub.intake import IntakeRunner, Poller
from hub.live import LiveFeed
from hub.load_stats import LoadStats
from hub.mail_intake import ImapPoller, MailIntake, SmtpListener, SmtpQuotas
from hub.metrics import HubMetrics
from hub.observer import Observer
from hub.queue import QueueService
from hub.replies import ReplyService
from hub.routing import Router
from hub.search import SearchPort
from hub.sender import Sender, SenderOptions, StatusService
from hub.settings import ContentTemplate, Settings
from hub.sla import SlaEngine, years_without_holidays
from hub.source_health import PORTAL, HealthReporter
from hub.status_mirror import StatusMirror
from hub.ticket_actions import TicketActions

ROLE_RESTART_S = 1.0  # a role whose run() failed starts again after this

log = structlog.get_logger("hub.runtime")
# web: webhooks, console, API; dispatcher: inbound streams to tickets (and the queue keeper);
# sender: outboxes to providers; intake: pulled sources (IMAP, portal, call log) and the SMTP
# listener; observer: alerts, backlog samples, SLA escalation (one evaluates, under a lease).
ROLES = frozenset({"web", "dispatcher", "sender", "intake", "observer"})


def _templates(acct: Any) -> dict[str, TemplateSpec]:
    """An account's approved templates (Twilio's Content API, Meta's message templates)."""
    return {
        name: TemplateSpec(
            name,
            t.content_sid if isinstance(t, ContentTemplate) else t.name,
            t.description,
            t.language,
            tuple(t.variables),
        )
        for name, t in getattr(acct, "templates", {}).items()
    }


def build_channels(settings: Settings) -> ChannelSet:
    """Every enabled account of every channel, as channel objects from the registry."""
    cs = ChannelSet()
    c = settings.channels
    timeout, region = settings.outbox.send_timeout_s, settings.hub.default_region
    sections: list[tuple[Any, Callable[[Any], str], dict[str, Any]]] = [
        (c.whatsapp, lambda a: f"whatsapp:{a.provider}",
         {"window_hours": c.whatsapp.window_hours, "default_region": region,
          "send_timeout_s": timeout}),
        (c.email, lambda a: "email:smtp", {"send_timeout_s": timeout}),
        (c.portal, lambda a: "portal:bantuan", {"default_region": region}),
        (c.call, lambda a: "call:dialer", {"send_timeout_s": timeout}),
        (c.telegram, lambda a: "telegram:bot",
         {"default_region": region, "send_timeout_s": timeout}),
        (c.instagram, lambda a: "instagram:meta", {"send_timeout_s": timeout}),
    ]  # fmt: skip
    for section, registry_key, extra in sections:
        if not section.enabled:
            continue
        for name, acct in section.accounts.items():
            cls: Any = load_channel_class(registry_key(acct))
            ch = cls(account=name, settings=acct, **extra)
            cs.add(ch, _templates(acct), getattr(acct, "ack_language", None), acct.unit)
    web = settings.channels.web
    if web is not None and web.enabled:  # the web form: no channel object (it cannot send)
        cs.units[("web", "lapor")] = web.unit
    return cs


@dataclass
class Hub:
    settings: Settings
    roles: frozenset[str] = ROLES
    clock: Clock = field(default_factory=SystemClock)
    metrics: HubMetrics = field(default_factory=HubMetrics)

    def __post_init__(self) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.embedded: EmbeddedRedis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dispatcher: Dispatcher | None = None
        self.intake: IntakeRunner | None = None
        self.smtp_listener: SmtpListener | None = None
        self._mirror_stop = asyncio.Event()
        self.sender: Sender | None = None
        self.observer: Observer | None = None
        self.notifier: TelegramAlertNotifier | None = None
        self.archiver: Archiver | None = None

    @property
    def redis_url(self) -> str:
        return self.embedded.url if self.embedded else self.settings.redis.url

    def inbound_streams(self) -> list[str]:
        return [keys.inbound_stream(i) for i in range(self.settings.redis.inbound_shards)]

    def outbox_streams(self) -> dict[str, str]:
        return {name: keys.outbox_stream(name) for name in sorted(self.channels.names())}

    async def start(self) -> None:
        s = self.settings
        if not s.redis.url:
            self.embedded = EmbeddedRedis(
                s.hub.data_dir, s.redis.server_binary, s.redis.embedded_port, s.redis.appendfsync
            )
            await self.embedded.start()
        timeout = max(5.0, max(s.dispatcher.block_ms, s.outbox.block_ms) / 1000 + 5)
        self.redis: Redis | RedisCluster
        if s.redis.cluster:
            self.redis = ClusterClient.from_url(
                self.redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=5,
                health_check_interval=30,
                max_connections=256,
            )
        else:
            # A blocking pool: under a burst, callers wait for a connection instead of failing
            # (a failure here would turn into 503s for webhooks that Redis could have taken).
            # One immediate retry on a connection error: after Redis restarts, every pooled
            # connection is dead and would fail its next command (a 500 from the API, a 503
            # to a provider) although Redis is back. Not on timeouts (a frozen Redis must
            # not double the wait before a webhook's 503).
            pool = BlockingConnectionPool.from_url(
                self.redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=5,
                health_check_interval=30,
                max_connections=128,
                timeout=10,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
            self.redis = Redis.from_pool(pool)  # owns the pool: aclose() closes it
        self.store = RedisStore(self.redis, s.hub.ticket_prefix, self.clock)
        self.search: SearchPort = RedisSearchIndex(self.redis)
        self.load = LoadStats(RedisStats(self.redis))
        self.blobs = FileBlobStore(s.hub.data_dir / "blobs")
        self.publisher = InboundPublisher(self.redis, s.redis.inbound_shards)
        self.outbox = Outbox(self.redis)
        self.ops = RedisOps(self.redis)
        # Limit lookups (GET) join the loop turn's pipeline: every webhook checks its
        # client's forger quota before reading the body, so this is on the hot path.
        self.rate_limit = RedisRateLimit(cast(Any, PipelinedGets(self.redis)))
        self.channels = build_channels(s)
        self.replies = ReplyService(self.store, self.outbox, self.channels, self.clock)
        self.events = RedisEvents(self.redis)
        self.statuses = StatusService(self.store, self.metrics, self.events)
        self.acknowledger = Acknowledger(s.ack, self.replies, self.channels)
        self.users = RedisUsers(self.redis)
        self.auth = AuthService(s, self.users)
        self.queue = QueueService(s, RedisQueue(self.redis), self.store, self.events, self.users)
        self.router = Router(
            s.routing,
            self.channels,
            {name: a.unit for name, a in s.channels.call.accounts.items()},
        )
        self.live = LiveFeed(self.events, self.store)
        self.status_mirror = StatusMirror(
            self.channels, self.clock, RedisRetryQueue(self.redis, "portal-status"),
            s.outbox.max_attempts, s.outbox.backoff_base_s, s.outbox.backoff_max_s,
        )  # fmt: skip
        self.actions = TicketActions(
            s, self.store, self.queue, self.events, self.replies, self.channels,
            status_listeners=[self.status_mirror.on_status],
        )  # fmt: skip
        self.sla = SlaEngine(s.sla)
        missing = years_without_holidays(s.sla.hours, self.clock.now())
        if s.sla.enabled and missing:
            log.warning("sla.holidays_missing", years=missing,
                        hint="add the SKB 3 Menteri holidays to [sla.hours] holidays")  # fmt: skip
        # Archived tickets: every role may look one up (410 Gone, the archived document).
        self.archive = RedisArchive(self.redis)
        self.archive_files = ArchiveFiles(s.archive_dir)
        alert_store = RedisAlertStore(self.redis)
        self.health = HealthReporter(alert_store, self.clock)
        self.alert_board = AlertBoard(AlertEngine(s.alerts), alert_store)
        self.dashboard = Dashboard(
            self.store, self.queue.queue, self.load, self.ops, self.channels, self.sla,
            self.clock, sorted(s.units),
            [(st, keys.DISPATCH_GROUP) for st in self.inbound_streams()]
            + [(st, keys.SEND_GROUP) for st in self.outbox_streams().values()],
            s.console.agent_capacity, dict(s.console.channel_weights),
        )  # fmt: skip
        if "dispatcher" in self.roles:
            groups = [
                StreamGroup(self.redis, st, keys.DISPATCH_GROUP, self.owner)
                for st in self.inbound_streams()
            ]
            self.dispatcher = Dispatcher(
                self.store,
                groups,
                self.acknowledger,
                self.channels,
                DispatchOptions.from_settings(
                    s.dispatcher, s.hub.reopen_window_hours, s.redis.stream_retention_hours
                ),
                self.owner,
                self.metrics,
                self.router,
                self.events,
                self.queue,
                self.search,
                self.load,
                RedisRoster(self.redis, "dispatcher"),
            )
            self._tasks.append(self._role_task("dispatcher", self.dispatcher))
            self._tasks.append(asyncio.create_task(self._keep_queue(), name="queue-keeper"))
        if "sender" in self.roles:
            sgroups = {
                ch: StreamGroup(self.redis, st, keys.SEND_GROUP, self.owner)
                for ch, st in self.outbox_streams().items()
            }
            self.sender = Sender(
                self.store,
                self.outbox,
                sgroups,
                self.channels,
                SenderOptions.from_settings(s.outbox, s.redis.stream_retention_hours),
                s.hub.public_url,
                self.metrics,
                self.events,
                self.blobs,
                self.health,
            )
            self._tasks.append(self._role_task("sender", self.sender))
            self._tasks.append(
                asyncio.create_task(self.status_mirror.run(self._mirror_stop), name="status-mirror")
            )
        if "intake" in self.roles:
            await self._start_intake()
        if "observer" in self.roles:
            self._start_observer()
            if s.retention.archive_closed_after_days > 0:
                self._start_archiver()
        log.info(
            "hub.started",
            roles=sorted(self.roles),
            owner=self.owner,
            embedded_redis=self.embedded is not None,
        )

    def _role_task(self, name: str, worker: Dispatcher | Sender) -> asyncio.Task[None]:
        """``worker.run()`` as a task that outlives a failure of its start (the consumer groups are
        created first: a Redis that is slow or failing over at that moment raised out of the
        task, and the role stayed dead and silent until the process stopped). Logged, then
        started again after a pause, until the hub stops."""

        async def keep() -> None:
            while True:
                try:
                    await worker.run()
                    return
                except Exception as exc:
                    log.error("role.failed", role=name, error=repr(exc)[:300])
                    await worker.pause(ROLE_RESTART_S)
                    if worker.stopping:
                        return
                    log.info("role.restarted", role=name)

        return asyncio.create_task(keep(), name=name)

    async def _start_intake(self) -> None:
        """Pulled sources (IMAP mailboxes, the portal's event list) are polled under a lease,
        one process each; the SMTP listener, if enabled, runs in every intake process (put
        them behind the MTA's relay list)."""
        mail = self.settings.channels.email
        if not mail.enabled:
            mail = mail.model_copy(update={"accounts": {}})
        intakes = {
            name: MailIntake(name, acct, self.publisher, self.blobs, self.statuses,
                             self.clock, self.metrics)
            for name, acct in mail.accounts.items()
        }  # fmt: skip
        state = RedisMailState(self.redis)
        pollers: list[Poller] = [
            ImapPoller(intakes[name], acct, state, self.metrics, self.health)
            for name, acct in mail.accounts.items()
            if acct.intake == "imap"
        ]
        positions = RedisLogPosition(self.redis)
        if self.settings.channels.call.enabled:
            for name, cacct in self.settings.channels.call.accounts.items():
                pollers += call_tailers(
                    name, cacct.logs, positions, self.publisher, self.clock, self.metrics,
                    self.settings.hub.default_region, self.statuses,
                )  # fmt: skip
        cursors = RedisPortalCursor(self.redis)
        for name, pacct in self.settings.channels.portal.accounts.items():
            ch = self.channels.get("portal", name)
            if pacct.poll and self.settings.channels.portal.enabled and ch is not None:
                pollers.append(
                    PortalPoller(
                        ch,  # type: ignore[arg-type]
                        cursors,
                        self.publisher.publish,
                        on_health=functools.partial(self.health.report, f"portal/{name}", PORTAL),
                    )
                )
        if pollers:
            self.intake = IntakeRunner(
                pollers, lambda n: RedisLease(self.redis, f"intake:{n}"), self.owner
            )
            self._tasks.append(asyncio.create_task(self.intake.run(), name="intake"))
        smtp = {n: i for n, i in intakes.items() if mail.accounts[n].intake == "smtp"}
        if mail.smtp_intake.enabled and smtp:
            quotas = SmtpQuotas(self.rate_limit, mail.smtp_intake, self.clock, self.metrics)
            self.smtp_listener = SmtpListener(smtp, mail.smtp_intake, quotas)
            await self.smtp_listener.start()

    def _start_observer(self) -> None:
        """Alerts, backlog samples and SLA escalation, in the observer role: any number of
        processes may have it, one evaluates at a time (a lease; another takes over when its
        holder dies). Its own role so that its pass over the open tickets (every
        ``alerts.evaluate_every_s``) need not share a loop with a busy dispatcher."""
        tg = self.settings.alerts.telegram
        if tg is not None and tg.enabled:
            self.notifier = TelegramAlertNotifier(tg)
        self.observer = Observer(
            self.alert_board.engine, self.alert_board, self.dashboard, self.load, self.health,
            self.store, self.sla, self.events, self.clock, self.notifier,
            self.settings.alerts.evaluate_every_s, escalate=self.settings.sla.enabled,
        )  # fmt: skip
        self._tasks.append(
            asyncio.create_task(
                self.observer.run(RedisLease(self.redis, "observer"), self.owner), name="observer"
            )
        )

    def make_archiver(self, days: int | None = None) -> Archiver:
        """The archiving job on this hub's parts (``days`` overrides the setting: the CLI)."""
        r = self.settings.retention
        policy = ArchivePolicy(
            r.archive_closed_after_days if days is None else days,
            int(self.settings.hub.reopen_window_hours * 3_600_000),
        )
        return Archiver(
            self.store, self.archive, self.archive_files, policy, self.sla, self.clock,
            self.metrics, sorted(self.settings.units), r.batch_size, r.max_per_run,
            r.every_minutes * 60,
        )  # fmt: skip

    def _start_archiver(self) -> None:
        """Closed tickets past ``retention.archive_closed_after_days`` leave Redis for the
        archive files (hub/archive.py): in the observer role, one process at a time (its own
        lease, so a long pass never delays the alerts)."""
        self.archiver = self.make_archiver()
        self._tasks.append(
            asyncio.create_task(
                self.archiver.run(RedisLease(self.redis, "archive"), self.owner), name="archive"
            )
        )

    async def _keep_queue(self) -> None:
        """Lapsed claims go back to the queue; runs beside the dispatcher."""
        while self.dispatcher is not None and not self.dispatcher.stopping:
            try:
                await self.queue.expire_leases()
            except Exception as exc:
                log.warning("queue.keeper_failed", error=repr(exc)[:200])
            await self.dispatcher.pause(5.0)

    def workers_alive(self, max_age_s: float) -> dict[str, bool]:
        import time

        now = time.time()
        out = {}
        for name, w in (("dispatcher", self.dispatcher), ("sender", self.sender)):
            if w is not None:
                task_ok = any(t.get_name() == name and not t.done() for t in self._tasks)
                out[name] = task_ok and now - w.heartbeat < max_age_s
        if self.observer is not None:
            # its loop survives any failed round; a stand-by (not holding the lease) is alive too
            out["observer"] = any(t.get_name() == "observer" and not t.done() for t in self._tasks)
        return out

    async def stop(self) -> None:
        """Graceful: workers finish what they started; the rest stays pending for others."""
        for w in (self.dispatcher, self.sender, self.intake, self.observer, self.archiver):
            if w is not None:
                w.stop()
        self._mirror_stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=30)
            for t in pending:
                t.cancel()
            for t in done | pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self.smtp_listener is not None:
            await self.smtp_listener.stop()
        await self.live.aclose()
        await self.status_mirror.drain()
        await self.channels.aclose()
        if self.notifier is not None:
            await self.notifier.aclose()
        await self.redis.aclose()
        if self.embedded is not None:
            await self.embedded.stop()
        log.info("hub.stopped")
