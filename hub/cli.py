"""The command line: ``python -m hub run | simulate | user | archive | check-config``.

``run`` plays every role in one process by default (what ``make run`` does, with ``--demo``);
``--role`` picks some of them for scaling out against a shared Redis (``--role intake
--role observer``: roles combine in one process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from pathlib import Path
from typing import Any

import structlog

from hub import logging as hub_logging
from hub.clock import Clock, SystemClock
from hub.runtime import ROLES
from hub.settings import (
    CloudWhatsAppAccount,
    ConfigError,
    Settings,
    TwilioWhatsAppAccount,
    load_settings,
)

DEFAULT_CONFIG = "config/hub.toml"
GC_GEN0_THRESHOLD = 10_000
ROLE_ALIASES = {"poller": "intake"}  # the pollers (IMAP, portal, call log) are the intake role


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hub", description="Kemnaker contact hub")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", aliases=["serve"], help="start the hub")
    run.add_argument("--config", default=DEFAULT_CONFIG)
    run.add_argument(
        "--role",
        action="append",
        choices=[*sorted(ROLES), *ROLE_ALIASES],
        help="run only these roles (repeatable: --role intake --role observer; poller = intake;"
        " observer = alerts, backlog samples, SLA escalation, one evaluating per deployment"
        " under a lease: keep it out of a busy dispatcher's process); default: all",
    )
    run.add_argument("--demo", action="store_true", help="fake Twilio, simulated citizens")
    sim = sub.add_parser("simulate", help="post signed WhatsApp webhooks from citizens")
    sim.add_argument("--config", default=DEFAULT_CONFIG)
    sim.add_argument("--url", default="", help="the hub's base URL (default: from config)")
    sim.add_argument("--citizens", type=int, default=5)
    sim.add_argument("--messages", type=int, default=2, help="messages per citizen")
    sim.add_argument("--account", default=None, help="WhatsApp account name (default: first)")
    sim.add_argument("--seed", type=int, default=None)
    usr = sub.add_parser("user", help="manage console accounts (creates the first admin)")
    usr_sub = usr.add_subparsers(dest="user_command", required=True)
    add = usr_sub.add_parser("add", help="create an account; the password is read from stdin")
    add.add_argument("--config", default=DEFAULT_CONFIG)
    add.add_argument("username")
    add.add_argument("--role", choices=["agent", "supervisor", "admin"], default="agent")
    add.add_argument("--unit", action="append", default=[], help="repeatable")
    add.add_argument("--name", default="", help="display name")
    tg = sub.add_parser("telegram-webhook", help="point a Telegram bot at this hub (setWebhook)")
    tg.add_argument("--config", default=DEFAULT_CONFIG)
    tg.add_argument("account", help="the [channels.telegram.accounts.<name>] to configure")
    arc = sub.add_parser(
        "archive", help="move closed tickets past retention.archive_closed_after_days to files"
    )
    arc.add_argument("--config", default=DEFAULT_CONFIG)
    arc.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    arc.add_argument(
        "--days", type=int, default=None, help="this cut instead of the configured one (days)"
    )
    chk = sub.add_parser("check-config", help="validate a configuration file and exit")
    chk.add_argument("--config", default=DEFAULT_CONFIG)
    return p


def _load(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _banner(settings: Settings, demo: bool, fake_url: str, redis_url: str) -> str:
    h = settings.hub
    base = f"http://{h.listen_host}:{h.listen_port}"
    lines = [
        "",
        "  Kemnaker contact hub is up",
        f"  {'overview (demo)' if demo else 'health'}:  {base}/{'' if demo else 'readyz'}",
        f"  API:              {base}/api/v1/tickets   (OpenAPI: {base}/api/v1/openapi.json)",
        f"  metrics:          {base}/metrics",
        f"  redis:            {redis_url}",
    ]
    c = settings.channels
    for name in c.whatsapp.accounts:
        lines.append(f"  WhatsApp webhook: {h.public_url}/webhooks/whatsapp/{name}")
    for name in c.instagram.accounts:
        lines.append(f"  Instagram hook:   {h.public_url}/webhooks/instagram/{name}")
    for name in c.telegram.accounts:
        lines.append(f"  Telegram webhook: {h.public_url}/webhooks/telegram/{name}")
    if settings.channels.web is not None and settings.channels.web.enabled:
        lines.append(f"  complaint form:   {base}/lapor   (status: {base}/lapor/status)")
    if demo:
        token = settings.api.tokens[0].token.get_secret_value() if settings.api.tokens else ""
        lines += [
            f"  agent console:    {base}/console   (sign in as "
            + ", ".join(
                f"{u.username} / {u.password.get_secret_value()}" for u in settings.demo.users
            )
            + ")",
            f"  fake Twilio:      {fake_url}/_fake/messages",
        ]
        for name, p in settings.channels.portal.accounts.items():
            lines.append(f"  portal webhook:   {h.public_url}/webhooks/portal/{name}")
            lines.append(f"  fake portal:      {p.api_base_url}/api/v1/events")
        lines += [
            f"  demo API token:   {token}",
            f"  try:  curl -H 'Authorization: Bearer {token}' {base}/api/v1/tickets",
            "  more citizens:    .venv/bin/python -m hub simulate --config config/demo.toml",
        ]
    return "\n".join(lines) + "\n"


async def _chat_fakes(settings: Settings) -> list[Any]:
    """The demo's stand-ins for Meta's Graph API and Telegram's Bot API, when accounts use
    them: they answer sends and, like Meta, post signed statuses and echoes back."""
    from hub.demo.fake_graph import FakeGraph, WebhookTarget
    from hub.demo.fake_telegram import FakeTelegram

    c, public = settings.channels, settings.hub.public_url
    fakes: list[Any] = []
    cloud = [(n, a) for n, a in c.whatsapp.accounts.items() if isinstance(a, CloudWhatsAppAccount)]
    meta = [*cloud, *c.instagram.accounts.items()]
    if meta:
        graph = FakeGraph({a.access_token.get_secret_value() for _, a in meta})
        for name, a in cloud:
            graph.webhooks[a.phone_number_id] = WebhookTarget(
                f"{public}/webhooks/whatsapp/{name}", a.app_secret.get_secret_value()
            )
        for name, ig in c.instagram.accounts.items():
            graph.webhooks[ig.ig_account_id] = WebhookTarget(
                f"{public}/webhooks/instagram/{name}", ig.app_secret.get_secret_value()
            )
        await graph.start(settings.demo.fake_graph_port)
        fakes.append(graph)
    if c.telegram.accounts:
        tokens = {a.bot_token.get_secret_value() for a in c.telegram.accounts.values()}
        if settings.alerts.telegram is not None:  # the supervisors' group, same fake
            tokens.add(settings.alerts.telegram.bot_token.get_secret_value())
        bot = FakeTelegram(tokens)
        await bot.start(settings.demo.fake_telegram_port)
        fakes.append(bot)
    return fakes


async def serve(settings: Settings, roles: frozenset[str], demo: bool) -> None:
    from hub.demo.fake_portal import FakePortal
    from hub.demo.fake_twilio import FakeTwilio

    fake: FakeTwilio | None = None
    portal: FakePortal | None = None
    chat_fakes: list[Any] = []
    if demo:
        accounts = {
            a.account_sid: a.auth_token.get_secret_value()
            for a in settings.channels.whatsapp.accounts.values()
            if isinstance(a, TwilioWhatsAppAccount)
        }
        fake = FakeTwilio(accounts, auto_callbacks=("sent", "delivered", "read"))
        await fake.start(settings.demo.fake_twilio_port)
        portals = settings.channels.portal.accounts
        if settings.channels.portal.enabled and portals:  # one fake for the first account
            portal = FakePortal(next(iter(portals.values())).api_token.get_secret_value())
            await portal.start(settings.demo.fake_portal_port)
        chat_fakes = await _chat_fakes(settings)
    try:
        await _serve_hub(settings, roles, demo, fake)
    finally:
        for chat_fake in chat_fakes:
            await chat_fake.stop()
        if portal is not None:
            await portal.stop()
        if fake is not None:
            await fake.stop()


async def _serve_hub(settings: Settings, roles: frozenset[str], demo: bool, fake: Any) -> None:
    from aiohttp import web

    from hub.demo.simulate import run as simulate
    from hub.runtime import Hub
    from hub.web.app import build_app

    log = structlog.get_logger("hub.cli")
    hub = Hub(settings, roles)
    await hub.start()
    runner: web.AppRunner | None = None
    try:
        if demo:
            for u in settings.demo.users:
                if await hub.users.get(u.username) is None:
                    await hub.auth.create_user(
                        u.username,
                        u.password.get_secret_value(),
                        u.role,
                        u.units or ["general"],
                        u.display_name,
                    )
        if "web" in roles:
            runner = web.AppRunner(build_app(hub, demo), access_log=None, shutdown_timeout=10)
            await runner.setup()
            await web.TCPSite(runner, settings.hub.listen_host, settings.hub.listen_port).start()
        elif settings.hub.ops_port:
            from hub.web.ops import ops_app

            runner = web.AppRunner(ops_app(hub), access_log=None, shutdown_timeout=5)
            await runner.setup()
            await web.TCPSite(runner, settings.hub.listen_host, settings.hub.ops_port).start()
        _settle_gc()
        print(_banner(settings, demo, fake.base_url if fake else "", hub.redis_url), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sim: asyncio.Task[list[int]] | None = None
        if demo and settings.demo.citizens and "web" in roles:
            base = f"http://{settings.hub.listen_host}:{settings.hub.listen_port}"
            sim = asyncio.create_task(simulate(settings, base, settings.demo.citizens, 2))
        await stop.wait()
        log.info("hub.stopping")
        if sim is not None:
            sim.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sim
    finally:
        if runner is not None:
            await runner.cleanup()  # stop taking webhooks first; providers retry elsewhere
        await hub.stop()


def _settle_gc() -> None:
    """Once started: what start-up built (modules, settings, channels, the app, pools) lives
    as long as the process, so it leaves the cyclic collector's generations (``gc.freeze``)
    instead of being traversed by every full collection (~50 ms each for ~100k objects);
    and the youngest generation is collected every 10,000 net allocations instead of 700
    (each webhook allocates a few hundred objects, nearly all freed by reference counting)."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)


async def _set_telegram_webhook(settings: Settings, account: str) -> int:
    """setWebhook with the account's secret token, at <public_url>/webhooks/telegram/<name>."""
    from channels.telegram import TelegramChannel

    acct = settings.channels.telegram.accounts.get(account)
    if acct is None:
        print(f"hub: no channels.telegram.accounts.{account} in the configuration", file=sys.stderr)
        return 2
    ch = TelegramChannel(account, acct)
    url = f"{settings.hub.public_url}/webhooks/telegram/{account}"
    try:
        await ch.set_webhook(url, acct.webhook_secret.get_secret_value())
    finally:
        await ch.aclose()
    print(f"telegram bot {account}: webhook set to {url}")
    return 0


def _run_user_add(settings: Settings, args: argparse.Namespace) -> int:
    """Create an account against the configured Redis (for the embedded one: start it)."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.username}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")

    async def go() -> int:
        from hub.runtime import Hub

        hub = Hub(settings, frozenset())
        await hub.start()
        try:
            await hub.auth.create_user(
                args.username, password, args.role, args.unit or ["general"], args.name
            )
        except ValueError as exc:
            print(f"hub: {exc}", file=sys.stderr)
            return 2
        finally:
            await hub.stop()
        print(f"created {args.role} {args.username}")
        return 0

    return asyncio.run(go())


async def run_archive(
    settings: Settings, dry_run: bool, days: int | None, clock: Clock | None = None
) -> int:
    """One archiving pass for operators, under the observer's ``archive`` lease (a pass
    already running elsewhere is not raced; a dry run reads only and needs no lease)."""
    from adapters.redis_lease import RedisLease
    from hub.runtime import Hub

    days = settings.retention.archive_closed_after_days if days is None else days
    if days <= 0:
        print("hub: archiving is off (retention.archive_closed_after_days = 0; or --days N)",
              file=sys.stderr)  # fmt: skip
        return 2
    hub = Hub(settings, frozenset(), clock=clock or SystemClock())
    await hub.start()
    lease = RedisLease(hub.redis, "archive")
    try:
        if not dry_run and not await lease.hold(hub.owner, 180_000):
            print("hub: another process is archiving now (lease 'archive'); try later",
                  file=sys.stderr)  # fmt: skip
            return 1
        job = hub.make_archiver(days)
        keep = None if dry_run else (lambda: lease.hold(hub.owner, 180_000))
        result = await job.run_once(dry_run=dry_run, keep=keep)
    finally:
        if not dry_run:
            await lease.release(hub.owner)
        await hub.stop()
    verb = "would archive" if dry_run else "archived"
    for tid, number in result.archived:
        print(f"{verb} {number or '-'} {tid}")
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(result.skipped.items())) or "none"
    print(f"{verb} {len(result.archived)} tickets; skipped: {skipped}; "
          f"changed while archiving: {result.conflicts}; files: "
          f"{', '.join(sorted(result.files)) or '-'} in {settings.archive_dir}")  # fmt: skip
    return 0


def _run_loop(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _load(args.config)
    hub_logging.configure(settings.hub.log_format, settings.hub.log_level, cache=True)
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    if args.command == "user":
        return _run_user_add(settings, args)
    if args.command == "archive":
        return asyncio.run(run_archive(settings, args.dry_run, args.days))
    if args.command == "telegram-webhook":
        return asyncio.run(_set_telegram_webhook(settings, args.account))
    if args.command == "simulate":
        from hub.demo.simulate import run as simulate

        url = args.url or f"http://{settings.hub.listen_host}:{settings.hub.listen_port}"
        codes = asyncio.run(
            simulate(settings, url, args.citizens, args.messages, args.account, args.seed)
        )
        ok = sum(1 for c in codes if c == 200)
        print(f"posted {len(codes)} signed webhooks to {url}: {ok} accepted")
        return 0 if ok == len(codes) else 1
    roles = frozenset(ROLE_ALIASES.get(r, r) for r in args.role) if args.role else ROLES
    Path(settings.hub.data_dir).mkdir(parents=True, exist_ok=True)
    _run_loop(serve(settings, roles, args.demo))
    return 0
