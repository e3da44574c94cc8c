"""Load for the pulled sources (fault 5): mail delivered into a real Dovecot mailbox, and a call
log on disk that the telephony platform appends to, rotates and truncates.

Both produce ``tests.faults.loadgen.Planned`` messages and ``Outcome``s, so the checker
(``tests.faults.checker.check``) judges them like the webhooks: a mail is "acked" once Dovecot
answered its APPEND with OK (it is in the mailbox), a call once its line is in the log file.

- ``MailLoad``: citizens write mails (one address each, a unique Message-ID per mail); a
  citizen's next mail is appended only after the previous one is in the mailbox, so UID order
  is the citizen's order. Appends go straight to Dovecot over a few persistent connections
  of their own (never through the proxy the test cuts).
- ``CallLogWriter``: the platform writing a JSON-lines call log with an open file descriptor
  (O_APPEND), as Asterisk's logger does, and logrotate acting on it: ``rotate`` (rename, a new
  empty file, the writer reopens the path only after ``reopen_after`` more lines, as between
  logrotate's ``create`` and its ``postrotate`` reload) and ``copytruncate`` (copy, then
  truncate the file in place; the lines written between the two, ``window``, are in neither
  file: copytruncate's own loss, measured).
- ``SmtpSink``: the hub's SMTP relay for e-mail acknowledgements, recording what it was sent.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import random
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aioimaplib import aioimaplib  # type: ignore[import-untyped,unused-ignore]
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.redis_server import free_port
from tests.faults.checker import ProviderSend
from tests.faults.loadgen import CONNECTION_ERROR, TIMEOUT, Attempt, Outcome, Planned

# -- mail ------------------------------------------------------------------------------------


def plan_mails(n: int, contacts: int, account: str, run: str = "") -> list[Planned]:
    """``n`` mails from ``contacts`` citizens, interleaved like ``loadgen.plan_messages``."""
    run = run or secrets.token_hex(3)
    out = []
    for j in range(n):
        c, seq = j % contacts, j // contacts
        contact = f"c{c:04d}"
        addr = f"warga.{run}.{contact}@warga.test"
        msgid = f"<fault-{run}-{contact}-{seq:04d}@warga.test>"
        text = f"fault-run {run} {contact} #{seq:04d} THR belum dibayar"
        raw = (
            f"From: Warga {contact} <{addr}>\r\n"
            f"To: ppid@kemnaker.go.id\r\n"
            f"Subject: Pengaduan {contact} nomor {seq}\r\n"
            f"Message-ID: {msgid}\r\n"
            f"Date: Mon, 5 Jan 2026 09:00:00 +0700\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"\r\n"
            f"{text}\r\n"
        ).encode()
        key = f"{contact}#{seq:03d}"
        out.append(Planned(key, contact, seq, "email", account, msgid, text, "", raw, ()))
    return out


@dataclass
class MailLoad:
    """Appends ``plan`` to ``mailbox`` on Dovecot at ``port`` on the schedule ``offsets``."""

    port: int
    user: str
    password: str
    mailbox: str
    plan: Sequence[Planned]
    offsets: Sequence[float] | None = None
    connections: int = 3
    command_timeout_s: float = 30.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    acked: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0

    def __post_init__(self) -> None:
        self.outcomes = {p.key: Outcome() for p in self.plan}
        self._changed = asyncio.Event()
        self._pool: asyncio.Queue[Any] = asyncio.Queue()
        self._go = asyncio.Event()  # cleared by hold(): no new mail for a moment
        self._go.set()
        self._held_at = 0.0
        self._lost: dict[int, asyncio.Event] = {}
        self._wall_start = 0.0

    def hold(self) -> None:
        """Append nothing new until ``release()`` (appends in progress finish); the rest of
        the schedule moves by as long as the hold lasted."""
        if self._go.is_set():
            self._held_at = time.monotonic()
            self._go.clear()

    def release(self) -> None:
        if not self._go.is_set():
            self.started_at += time.monotonic() - self._held_at
            self._go.set()

    async def _connect(self) -> Any:
        lost = asyncio.Event()  # aioimaplib leaves a command waiting on a dead connection
        client = aioimaplib.IMAP4(
            "127.0.0.1", self.port, timeout=self.command_timeout_s,
            conn_lost_cb=lambda _exc: lost.set(),
        )  # fmt: skip
        self._lost[id(client)] = lost
        await client.wait_hello_from_server()
        resp = await client.login(self.user, self.password)
        assert resp.result == "OK", resp
        return client

    async def run(self) -> MailLoad:
        self.started_at = self._wall_start = time.monotonic()
        for _ in range(self.connections):
            self._pool.put_nowait(await self._connect())
        offsets = self.offsets or [0.0] * len(self.plan)
        chains: dict[str, list[tuple[float, Planned]]] = {}
        for at, p in zip(offsets, self.plan, strict=True):
            chains.setdefault(p.contact, []).append((at, p))
        try:
            async with asyncio.TaskGroup() as tg:
                for chain in chains.values():
                    tg.create_task(self._chain(chain))
        finally:
            while not self._pool.empty():
                _close(self._pool.get_nowait())
        self.finished_at = time.monotonic()
        return self

    async def _chain(self, chain: list[tuple[float, Planned]]) -> None:
        for at, p in sorted(chain, key=lambda x: x[1].seq):
            while (delay := self.started_at + at - time.monotonic()) > 0 or not self._go.is_set():
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._go.wait()  # a hold moves started_at: look at the delay again
            await self._deliver(p)

    async def _deliver(self, p: Planned) -> None:
        out = self.outcomes[p.key]
        n = 0
        while True:
            n += 1
            status = await self._append(p)
            out.attempts += 1
            if status == 200:
                out.acked = True
                self.acked += 1
                self._changed.set()
                return
            if n >= 20:
                out.gave_up = True
                return
            await asyncio.sleep(min(1.0, 0.05 * 2 ** (n - 1)) * random.uniform(0.5, 1))

    async def _append(self, p: Planned) -> int:
        """One APPEND on a pooled connection: 200 (OK), 500 (NO/BAD), or a connection error
        (the connection is replaced). A retry after a lost answer may append the mail twice;
        the hub's dedupe on the Message-ID must absorb that."""
        while True:  # a hold also stops mails already waiting for a connection
            await self._go.wait()
            client = await self._pool.get()
            if self._go.is_set():
                break
            self._pool.put_nowait(client)
        t0 = time.monotonic()
        status = CONNECTION_ERROR
        try:
            append = asyncio.ensure_future(client.append(p.body, mailbox=self.mailbox))
            lost = asyncio.ensure_future(self._lost[id(client)].wait())
            try:
                await asyncio.wait(
                    {append, lost}, timeout=self.command_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
            finally:
                lost.cancel()
                if not append.done():
                    append.cancel()
            if append.cancelled():
                raise ConnectionError("connection lost") if lost.done() else TimeoutError()
            resp = append.result()
            status = 200 if resp.result == "OK" else 500
        except TimeoutError:
            status = TIMEOUT
        except Exception:
            status = CONNECTION_ERROR
        finally:
            self.attempts.append(Attempt(p.key, t0, time.monotonic() - t0, status))
            if status in (200, 500):
                self._pool.put_nowait(client)
            else:
                _close(client)
                try:
                    self._pool.put_nowait(await self._connect())
                except Exception:
                    self._pool.put_nowait(client)  # the next use fails and reconnects again
        return status

    async def wait_acked(self, k: int, limit_s: float = 60.0) -> None:
        async with asyncio.timeout(limit_s):
            while self.acked < k:
                self._changed.clear()
                await self._changed.wait()

    def summary(self) -> dict[str, object]:
        c = Counter(a.status for a in self.attempts)
        return {
            "planned": len(self.plan),
            "acked": self.acked,
            "requests": len(self.attempts),
            "retries": len(self.attempts) - self.acked,
            "2xx": c[200],
            "5xx": c[500],
            "conn_errors": c[CONNECTION_ERROR],
            "timeouts": c[TIMEOUT],
            "rejected_4xx": 0,
            "gave_up": sum(o.gave_up for o in self.outcomes.values()),
            "max_latency_s": round(max((a.latency_s for a in self.attempts), default=0.0), 3),
            "duration_s": round(self.finished_at - self._wall_start, 2),
        }


def _close(client: Any) -> None:
    for t in [client._client_task, *client.tasks, *client.protocol.tasks]:
        if not t.done():
            t.cancel()
    transport = getattr(client.protocol, "transport", None)
    if transport is not None:
        transport.close()


class SmtpSink:
    """The hub's SMTP relay (aiosmtpd, in a thread): records each mail's recipient and text."""

    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
        with self._lock:
            self.mails.append(msg)
        return "250 2.0.0 Ok: queued"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def sends(self) -> list[ProviderSend]:
        """What the citizens' mailboxes would show, as the checker compares replies."""
        with self._lock:
            mails = list(self.mails)
        out = []
        for m in mails:
            body = m.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            text = str(text).replace("\r\n", "\n").rstrip("\n")  # SMTP's line ends
            out.append(ProviderSend("smtp", str(m.get("To", "")), text))
        return out


# -- call log --------------------------------------------------------------------------------


def plan_calls(n: int, contacts: int, account: str, run: str = "") -> list[Planned]:
    """``n`` answered inbound calls from ``contacts`` citizens (one phone each), interleaved;
    ``body`` is the call's JSON line (with its newline)."""
    run = run or secrets.token_hex(3)
    now = int(time.time())
    out = []
    for j in range(n):
        c, seq = j % contacts, j // contacts
        contact = f"c{c:04d}"
        call_id = f"fault-{run}-{c:04d}-{seq:04d}"
        line = {
            "call_id": call_id, "direction": "in", "caller": f"0813{80_000_000 + c:08d}",
            "callee": "1500630", "disposition": "ANSWERED", "queue": "pengaduan",
            "agent": f"agen{c % 7:02d}", "offered_at": now + j, "answered_at": now + j + 5,
            "ended_at": now + j + 65, "wait_s": 5, "talk_s": 60, "wrapup_code": "THR",
            "notes": f"fault-run {run} {contact} #{seq:04d}",
        }  # fmt: skip
        body = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        key = f"{contact}#{seq:03d}"
        out.append(
            Planned(key, contact, seq, "call", account, f"{call_id}:export", "", "", body, ())
        )
    return out


@dataclass
class Rotation:
    kind: str  # "rotate" | "copytruncate"
    at: float  # time.monotonic() of the rename / the copy
    rotated_to: str
    lines_before: int  # lines written before the fault
    window: list[str] = field(default_factory=list)  # keys written in the fault's window
    done_at: float = 0.0  # the reopen / the truncate
    regrow: bool = False  # copytruncate: a burst right after the truncate (see copytruncate)
    regrown: list[str] = field(default_factory=list)  # keys of that burst


@dataclass
class CallLogWriter:
    """Appends ``plan``'s lines to ``path`` on the schedule ``offsets``, through one open
    O_APPEND descriptor, and plays logrotate on request (see the module's docstring)."""

    path: Path
    plan: Sequence[Planned]
    offsets: Sequence[float] | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    written: int = 0
    rotations: list[Rotation] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0

    def __post_init__(self) -> None:
        self.outcomes = {p.key: Outcome() for p in self.plan}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._changed = asyncio.Event()
        self._open: Rotation | None = None  # a fault whose window is still open
        self._window_left = 0
        self._go = asyncio.Event()  # cleared by hold(): the platform has a quiet moment
        self._go.set()
        self._held_at = 0.0
        self._wall_start = 0.0
        self._regrow: tuple[Rotation, int] | None = None  # a burst until the file passes this

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def run(self) -> CallLogWriter:
        self.started_at = self._wall_start = time.monotonic()
        offsets = self.offsets or [0.0] * len(self.plan)
        try:
            for at, p in zip(offsets, self.plan, strict=True):
                while self._regrow is None and (
                    (delay := self.started_at + at - time.monotonic()) > 0 or not self._go.is_set()
                ):
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await self._go.wait()  # a hold moves started_at: look at the delay again
                self._write(p)
            if self._open is not None:  # the load ended inside a window: close it now
                self._end_window()
        finally:
            self.close()
            self.finished_at = time.monotonic()
            self._changed.set()
        return self

    def _write(self, p: Planned) -> None:
        assert os.write(self._fd, p.body) == len(p.body)  # one write: never a torn line
        out = self.outcomes[p.key]
        out.attempts += 1
        out.acked = True
        self.written += 1
        if self._regrow is not None:
            rot, target = self._regrow
            rot.regrown.append(p.key)
            if os.fstat(self._fd).st_size > target:
                self._regrow = None
        elif self._open is not None:
            self._open.window.append(p.key)
            self._window_left -= 1
            if self._window_left <= 0:
                self._end_window()
        self._changed.set()

    def _end_window(self) -> None:
        rot = self._open
        assert rot is not None
        if rot.kind == "rotate":  # postrotate: the platform reopens its log at the path
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.close(self._fd)
            self._fd = fd
        else:  # copytruncate's second half
            size = os.fstat(self._fd).st_size
            os.truncate(self.path, 0)
            if rot.regrow:
                self._regrow = (rot, size)
        rot.done_at = time.monotonic()
        self._open = None
        self._changed.set()

    def _next_name(self) -> Path:
        return self.path.with_name(f"{self.path.name}.{len(self.rotations) + 1}")

    def rotate(self, reopen_after: int) -> Rotation:
        """logrotate ``create``: rename the log, create an empty one at the path; the
        platform writes ``reopen_after`` more lines to the renamed file, then reopens."""
        assert self._open is None
        old = self._next_name()
        os.rename(self.path, old)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        return self._begin("rotate", old, reopen_after)

    def copytruncate(self, window: int, regrow: bool = False) -> Rotation:
        """logrotate ``copytruncate``: copy the log, then (after ``window`` more lines, which
        land in the original only) truncate it to 0 in place. ``regrow``: right after the
        truncate, a burst of calls makes the file longer than it was before the truncate
        (its size alone no longer shows that it was truncated)."""
        assert self._open is None
        copy = self._next_name()
        shutil.copyfile(self.path, copy)
        return self._begin("copytruncate", copy, window, regrow)

    def hold(self) -> None:
        """Write nothing until ``release()``; the rest of the schedule moves by as long as
        the hold lasted (a quiet moment on the lines, not a backlog)."""
        if self._go.is_set():
            self._held_at = time.monotonic()
            self._go.clear()

    def release(self) -> None:
        if not self._go.is_set():
            self.started_at += time.monotonic() - self._held_at
            self._go.set()

    def _begin(self, kind: str, name: Path, window: int, regrow: bool = False) -> Rotation:
        rot = Rotation(kind, time.monotonic(), name.name, self.written, regrow=regrow)
        self.rotations.append(rot)
        self._open = rot
        self._window_left = window
        if window <= 0:
            self._end_window()
        return rot

    @property
    def in_window(self) -> bool:
        return self._open is not None

    async def wait_written(self, k: int, limit_s: float = 60.0) -> None:
        async with asyncio.timeout(limit_s):
            while self.written < k:
                self._changed.clear()
                await self._changed.wait()

    async def wait_window_closed(self, limit_s: float = 60.0) -> None:
        async with asyncio.timeout(limit_s):
            while self._open is not None:
                self._changed.clear()
                await self._changed.wait()

    def summary(self) -> dict[str, object]:
        return {
            "planned": len(self.plan),
            "acked": self.written,
            "requests": self.written,
            "retries": 0,
            "2xx": self.written,
            "5xx": 0,
            "conn_errors": 0,
            "timeouts": 0,
            "rejected_4xx": 0,
            "gave_up": 0,
            "max_latency_s": 0.0,
            "duration_s": round(self.finished_at - self._wall_start, 2),
        }
