"""IMAP intake: every mail in a mailbox handed to the hub once, in UID order, losing none.

The position is (UIDVALIDITY, last UID) per account, kept in a ``MailboxState`` (Redis in
production). It moves forward only after ``on_message(raw, uid)`` returned, which the hub does
only once the mail is durably on its inbound stream; a crash between the two re-reads the mail
and the hub's dedupe on the Message-ID drops the copy. So: restarts, reconnects and callback
failures lose nothing; a changed UIDVALIDITY (the server renumbered the mailbox) restarts from
UID 1 and relies on the same dedupe.

Rules checked on Dovecot (../shared/protocols.md §4): read UIDVALIDITY and UIDNEXT from SELECT
(never STATUS the selected mailbox); ``UID SEARCH UID last+1:*`` and keep only uid > last (the
server answers ``N:*`` with the highest UID even when it is below N); fetch with BODY.PEEK so
the mail stays unread for people using the mailbox.

Waiting: IDLE, re-issued every ``idle_renew`` seconds (servers drop IDLE after 30 minutes), or
polling every ``poll_interval`` when the server lacks IDLE (or ``use_idle`` is off). Errors
(refused, TLS, login, timeout, dropped connection) reconnect with exponential backoff and
jitter and log ``mailbox.unreachable`` with the account name and error type: never the
password. ``stop()`` ends it cleanly (a mail being handed over is let finish, within a grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from aioimaplib import aioimaplib  # type: ignore[import-untyped,unused-ignore]

log = structlog.get_logger("channels.email.imap")

T = TypeVar("T")
OnImapMessage = Callable[[bytes, int], Awaitable[None]]
"""``on_message(raw, uid)``: return only once the mail is durably accepted; raise otherwise
(the position stays, and the same mail is offered again after a backoff)."""

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE)
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.IGNORECASE)
_FETCH_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_FETCH_LINE = re.compile(rb"^\d+ FETCH ", re.IGNORECASE)


class MailboxState(Protocol):
    """Where each account's intake stands: ``(uidvalidity, last_uid)``."""

    async def get(self, mailbox: str) -> tuple[int, int] | None: ...

    async def set(self, mailbox: str, uidvalidity: int, last_uid: int) -> None: ...


class ImapError(Exception):
    """The server refused or broke the protocol; the text is ours (never the password)."""


class ConnectionLost(ImapError):
    pass


class _Stopping(Exception):
    """stop() was called while a command was in flight: end the session now."""


class HandoverFailed(Exception):
    """``on_message`` (or saving the position) failed for ``uid``: not advanced, retried."""

    def __init__(self, uid: int) -> None:
        super().__init__(f"handover of uid {uid} failed")
        self.uid = uid


@dataclass(frozen=True, slots=True)
class ImapAccount:
    """One mailbox to read. ``name`` is the hub's account name (the state key); ``security``
    is ``tls`` (implicit TLS, port 993) or ``plain`` (no encryption: a local server only)."""

    name: str
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    security: str = "tls"
    mailbox: str = "INBOX"
    use_idle: bool = True
    idle_renew: float = 20 * 60.0
    poll_interval: float = 60.0
    command_timeout: float = 30.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    import_existing: bool = True
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.security not in ("tls", "plain"):
            raise ValueError("security must be tls or plain")
        if not 0 < self.idle_renew < 29 * 60:
            raise ValueError("idle_renew must be below 29 minutes")


def backoff_delay(attempt: int, base: float, cap: float, rnd: Callable[[], float]) -> float:
    """Exponential backoff with equal jitter: in [e/2, e] with e = min(cap, base·2^(n-1)), so
    retries spread out but still grow."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rnd() * ceiling / 2


def search_uids(lines: Sequence[Any]) -> tuple[list[int], bool]:
    """UIDs in a UID SEARCH answer, and whether the server slipped an EXISTS into it."""
    uids: list[int] = []
    saw_exists = False
    for line in lines[:-1]:  # the last line is the tagged status text
        if not isinstance(line, bytes | bytearray):
            continue
        tokens = bytes(line).split()
        if tokens and tokens[0].upper() == b"SEARCH":
            tokens = tokens[1:]
        if len(tokens) == 2 and tokens[1].upper() == b"EXISTS":
            saw_exists = True
            continue
        if tokens and all(t.isdigit() for t in tokens):
            uids.extend(int(t) for t in tokens)
    return uids, saw_exists


def fetched_body(lines: Sequence[Any], uid: int) -> bytes | None:
    """The message bytes for ``uid`` in a UID FETCH answer; None if it was expunged."""
    for i, item in enumerate(lines):
        if not isinstance(item, bytearray) or i == 0:
            continue
        head = lines[i - 1]
        if not isinstance(head, bytes) or not _FETCH_LINE.match(head):
            continue
        tail = lines[i + 1] if i + 1 < len(lines) and isinstance(lines[i + 1], bytes) else b""
        found = _FETCH_UID.search(head) or _FETCH_UID.search(tail)
        if found is None or int(found.group(1)) == uid:
            return bytes(item)
    return None


class ImapIntake:
    """One account's intake, run as an asyncio task: ``start()``, ``stop()``."""

    def __init__(
        self,
        account: ImapAccount,
        state: MailboxState,
        on_message: OnImapMessage,
        *,
        on_unreachable: Callable[[str, BaseException], None] | None = None,
        on_connected: Callable[[str], None] | None = None,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        self.account = account
        self.state = state
        self.on_message = on_message
        self.on_unreachable = on_unreachable
        self.on_connected = on_connected
        self._rnd = rnd
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        # Observable state (for /metrics, /readyz and tests).
        self.connected = False
        self.idling = False
        self.idle_count = 0
        self.connects = 0
        self.failures = 0  # consecutive connection failures, reset once a session is up
        self.handover_failures = 0  # consecutive, reset by a successful handover
        self.last_error = ""
        self.uidvalidity: int | None = None
        self.last_uid = 0

    def __repr__(self) -> str:  # never the password
        a = self.account
        return f"ImapIntake(account={a.name!r}, host={a.host!r}, mailbox={a.mailbox!r})"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name=f"imap:{self.account.name}")
        return self._task

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking mail; a handover in progress may finish within ``grace`` seconds."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked at every state change."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        a = self.account
        while not self._stop.is_set():
            try:
                await self._session()
            except _Stopping:
                break
            except HandoverFailed as exc:
                # Counted apart from connection failures, which a reconnect resets: a hub
                # that keeps refusing (Redis down) must still see the retries slow down.
                self.handover_failures += 1
                delay = self._delay(self.handover_failures)
                self.last_error = f"handover failed: {type(exc.__cause__).__name__}"
                log.warning(
                    "mailbox.handover_failed",
                    mailbox=a.name,
                    uid=exc.uid,
                    error=type(exc.__cause__).__name__,
                    attempt=self.handover_failures,
                    retry_in=round(delay, 3),
                )
            except Exception as exc:  # aioimaplib raises many kinds; all mean "reconnect"
                self.failures += 1
                delay = self._delay(self.failures)
                self.last_error = self._describe(exc)
                log.warning(
                    "mailbox.unreachable",
                    mailbox=a.name,
                    host=a.host,
                    port=a.port,
                    error=self.last_error,
                    attempt=self.failures,
                    retry_in=round(delay, 3),
                )
                if self.on_unreachable is not None:
                    with contextlib.suppress(Exception):  # a metrics hook must not stop intake
                        self.on_unreachable(a.name, exc)
            else:
                break  # the session returns only when stopping
            await self._notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        log.info("mailbox.stopped", mailbox=a.name)

    def _delay(self, attempt: int) -> float:
        a = self.account
        return backoff_delay(attempt, a.backoff_base, a.backoff_max, self._rnd)

    def _describe(self, exc: BaseException) -> str:
        """Error type, plus the text only for errors whose text we know to be safe (aioimaplib
        puts a command, which may be LOGIN with its password, in some of its errors)."""
        text = type(exc).__name__
        if isinstance(exc, ImapError | OSError):
            text += f": {exc}"
        password = self.account.password
        return text.replace(password, "***") if password else text

    async def _session(self) -> None:
        a = self.account
        lost = asyncio.Event()
        context: ssl.SSLContext | None = None
        if a.security == "tls":
            context = a.tls_context or ssl.create_default_context()
        client = aioimaplib.IMAP4(
            host=a.host,
            port=a.port,
            timeout=a.command_timeout,
            conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=context,
        )
        try:
            await self._call(client.wait_hello_from_server(), lost)
            resp = await self._call(client.login(a.username, a.password), lost)
            if resp.result != "OK":
                raise ImapError("login refused")
            resp = await self._call(client.select(a.mailbox), lost)
            if resp.result != "OK":
                raise ImapError(f"cannot select {a.mailbox!r}")
            uidvalidity, uidnext = self._select_numbers(resp.lines)
            last = await self._start_position(client, lost, uidvalidity, uidnext)
            self.connected, self.failures = True, 0
            if self.on_connected is not None:
                with contextlib.suppress(Exception):  # a health hook must not stop intake
                    self.on_connected(a.name)
            self.connects += 1
            self.uidvalidity, self.last_uid = uidvalidity, last
            log.info("mailbox.connected", mailbox=a.name, uidvalidity=uidvalidity, last_uid=last)
            await self._notify()
            idle = a.use_idle and bool(client.has_capability("IDLE"))
            while not self._stop.is_set():
                last = await self._drain(client, lost, uidvalidity, last)
                if self._stop.is_set():
                    break
                if idle:
                    await self._idle(client, lost)
                else:
                    await self._poll_wait(lost)
        finally:
            self.connected = self.idling = False
            await self._close(client, lost)
            await self._notify()

    @staticmethod
    def _select_numbers(lines: Sequence[Any]) -> tuple[int, int | None]:
        uidvalidity: int | None = None
        uidnext: int | None = None
        for line in lines:
            if isinstance(line, bytes | bytearray):
                if m := _UIDVALIDITY.search(line):
                    uidvalidity = int(m.group(1))
                if m := _UIDNEXT.search(line):
                    uidnext = int(m.group(1))
        if uidvalidity is None:
            raise ImapError("SELECT gave no UIDVALIDITY")
        return uidvalidity, uidnext

    async def _start_position(
        self, client: Any, lost: asyncio.Event, uidvalidity: int, uidnext: int | None
    ) -> int:
        a = self.account
        pos = await self.state.get(a.name)
        if pos is not None and pos[0] == uidvalidity:
            return pos[1]
        if pos is not None:
            log.warning(
                "mailbox.uidvalidity_changed",
                mailbox=a.name,
                old=pos[0],
                new=uidvalidity,
                action="resync from uid 1",
            )
            last = 0
        elif a.import_existing:
            last = 0
        elif uidnext is not None:
            last = max(0, uidnext - 1)
        else:
            resp = await self._call(client.uid_search("ALL", charset=None), lost)
            last = max(search_uids(resp.lines)[0], default=0)
        await self.state.set(a.name, uidvalidity, last)
        return last

    async def _drain(self, client: Any, lost: asyncio.Event, uidvalidity: int, last: int) -> int:
        """Hand over every mail above ``last``; search again while new mail keeps arriving."""
        a = self.account
        while not self._stop.is_set():
            resp = await self._call(client.uid_search("UID", f"{last + 1}:*", charset=None), lost)
            if resp.result != "OK":
                raise ImapError("UID SEARCH failed")
            found, saw_exists = search_uids(resp.lines)
            uids = sorted({u for u in found if u > last})
            for uid in uids:
                if self._stop.is_set():
                    return last
                fetch = client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
                resp = await self._call(fetch, lost)
                if resp.result != "OK":
                    raise ImapError(f"UID FETCH {uid} failed")
                raw = fetched_body(resp.lines, uid)
                if raw is None:
                    log.info("mailbox.message_vanished", mailbox=a.name, uid=uid)
                else:
                    try:
                        await self.on_message(raw, uid)
                        await self.state.set(a.name, uidvalidity, uid)
                    except Exception as exc:
                        raise HandoverFailed(uid) from exc
                    self.handover_failures = 0
                last = self.last_uid = uid
                await self._notify()
            if not uids and not saw_exists:
                return last
        return last

    async def _idle(self, client: Any, lost: asyncio.Event) -> None:
        """One IDLE: until the server reports a change, ``idle_renew`` passes, or stop."""
        a = self.account
        idle_task = await self._call(client.idle_start(timeout=a.idle_renew), lost)
        self.idling = True
        self.idle_count += 1
        await self._notify()
        push = asyncio.ensure_future(client.wait_server_push(timeout=a.idle_renew + 60))
        waits = {push, asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(lost.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            self.idling = False
        if lost.is_set():
            raise ConnectionLost("connection lost during IDLE")
        pushed = (
            push.result() if push.done() and not push.cancelled() and not push.exception() else []
        )
        if any(isinstance(x, bytes) and x.upper().startswith(b"BYE") for x in pushed):
            raise ConnectionLost("server said BYE")
        client.idle_done()
        lost_wait = asyncio.ensure_future(lost.wait())
        try:  # not _call: ending IDLE must complete even when stopping
            await asyncio.wait(
                {idle_task, lost_wait},
                timeout=a.command_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            lost_wait.cancel()
        if not idle_task.done():
            raise ConnectionLost("IDLE did not end")
        await self._notify()

    async def _poll_wait(self, lost: asyncio.Event) -> None:
        waits = {asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(lost.wait())}
        try:
            await asyncio.wait(waits, timeout=self.account.poll_interval)
        finally:
            for w in waits:
                w.cancel()
        if lost.is_set():
            raise ConnectionLost("connection lost while polling")

    async def _call(self, aw: Awaitable[T], lost: asyncio.Event) -> T:
        """Await one client call, but give up at once if the connection drops (aioimaplib
        would wait for its command timeout) or ``stop()`` is called."""
        if lost.is_set() or self._stop.is_set():
            if asyncio.iscoroutine(aw):
                aw.close()
            raise _Stopping() if self._stop.is_set() else ConnectionLost("connection lost")
        task = asyncio.ensure_future(aw)
        guards = {asyncio.ensure_future(lost.wait()), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait({task, *guards}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for g in guards:
                g.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.cancelled():
            raise _Stopping() if self._stop.is_set() else ConnectionLost("connection lost")
        return task.result()

    async def _close(self, client: Any, lost: asyncio.Event) -> None:
        with contextlib.suppress(Exception):
            if not lost.is_set() and client.protocol.state in ("AUTH", "SELECTED"):
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(client.logout(), 2.0)
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()
        pending = [client._client_task, *client.tasks, *client.protocol.tasks]
        for t in pending:
            if not t.done():
                t.cancel()
        for t in pending:
            with contextlib.suppress(BaseException):
                await t
