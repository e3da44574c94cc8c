"""A TCP relay between the hub's IMAP poller and Dovecot that drops the connection at a chosen
moment of the IMAP conversation: the fault of docs/reliability.md, fault 5.

It reads the bytes it relays (plain IMAP, no TLS), knows for each connection whether the
poller waits in IDLE (Dovecot answered ``+ idling`` and no ``DONE`` followed) and what answers
its last command, and, once armed with a mode, aborts both sides of the next connection that
reaches that moment:

- ``idle``: the poller waits in IDLE (at once if it already does when armed);
- ``idle_exists``: in IDLE, right after relaying a ``* N EXISTS`` push (a mail was delivered,
  the poller was woken, and the connection is gone before its DONE);
- ``fetch``: in the middle of a ``UID FETCH`` answer's literal (half the mail relayed);
- ``fetch_head``: right after the ``* N FETCH (... {size}`` line, before any of the mail.

An abort is a TCP reset to both sides (``transport.abort()``), as when a NAT or a load
balancer drops a connection or the server's process dies. Every cut is recorded (``cuts``)
with how many bytes of the moment's answer had been relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from dataclasses import dataclass, field

from adapters.redis_server import free_port

MODES = ("idle", "idle_exists", "fetch", "fetch_head")

_IDLING = re.compile(rb"^\+ [^\r\n]*\r\n", re.MULTILINE)
_EXISTS = re.compile(rb"^\* \d+ EXISTS\r\n", re.MULTILINE | re.IGNORECASE)
_FETCH_LITERAL = re.compile(rb"^\* \d+ FETCH \([^\r\n]*\{(\d+)\}\r\n", re.MULTILINE | re.IGNORECASE)
_IDLE_CMD = re.compile(rb"^\S+ IDLE\r\n", re.MULTILINE | re.IGNORECASE)
_DONE = re.compile(rb"^DONE\r\n", re.MULTILINE | re.IGNORECASE)
_FETCH_CMD = re.compile(rb"^\S+ UID FETCH ", re.MULTILINE | re.IGNORECASE)


@dataclass
class Cut:
    mode: str
    at: float  # time.monotonic()
    connection: int  # the how-manieth connection the proxy relayed
    relayed: int  # bytes of the answer relayed before the cut (fetch: of the literal)
    size: int = 0  # fetch: the literal's size


@dataclass(eq=False)
class _Conn:
    n: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    command: str = ""  # "idle" | "fetch" | "": what the poller's last command was
    answers: bytearray = field(default_factory=bytearray)  # server → client since that command
    idling_from: int = -1  # offset in answers after "+ idling"; -1: not in IDLE


class CuttingProxy:
    def __init__(self, target_port: int, source: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.source = source  # the address it connects to Dovecot from
        self.port = free_port()
        self.connections = 0
        self.cuts: list[Cut] = []
        self.cut_event = asyncio.Event()
        self.idle_seen = asyncio.Event()  # since the last arm(): a poller waits in IDLE
        self._connected = asyncio.Event()
        self._armed: str | None = None
        self._server: asyncio.Server | None = None
        self._live: set[_Conn] = set()
        self.trail: deque[str] = deque(maxlen=60)  # what happened lately, for a failure message
        self._t0 = time.monotonic()

    def _note(self, conn: _Conn | None, what: str) -> None:
        n = conn.n if conn is not None else "-"
        self.trail.append(f"{time.monotonic() - self._t0:.3f} #{n} {what}")

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for c in list(self._live):
            c.client.transport.abort()
            c.server.transport.abort()

    def arm(self, mode: str) -> None:
        """Cut the next connection that reaches ``mode``'s moment (one cut per arming)."""
        assert mode in MODES, mode
        self._armed = mode
        self._note(None, f"armed {mode}")
        self.idle_seen.clear()
        for c in list(self._live):
            if c.idling_from >= 0:
                self.idle_seen.set()
                if mode == "idle":  # it waits in IDLE right now
                    self._cut(c, mode, 0, 0)
                    return

    async def cut(self, mode: str, limit_s: float) -> Cut:
        """Arm ``mode`` and wait until the cut happened."""
        before = len(self.cuts)
        self.arm(mode)
        return await self.wait_cut(before, limit_s)

    async def wait_cut(self, before: int, limit_s: float) -> Cut:
        """Until there are more than ``before`` cuts; returns the next one."""
        try:
            async with asyncio.timeout(limit_s):
                while len(self.cuts) == before:
                    self.cut_event.clear()
                    await self.cut_event.wait()
        except TimeoutError:
            raise AssertionError(
                f"no cut ({self._armed}) in {limit_s} s; lately:\n" + "\n".join(self.trail)
            ) from None
        return self.cuts[before]

    async def wait_idle(self, limit_s: float) -> None:
        """Until a poller waits in IDLE (since the last ``arm``)."""
        try:
            async with asyncio.timeout(limit_s):
                await self.idle_seen.wait()
        except TimeoutError:
            raise AssertionError(
                f"no poller in IDLE in {limit_s} s; lately:\n" + "\n".join(self.trail)
            ) from None

    async def wait_connections(self, n: int, limit_s: float) -> None:
        """Until the proxy has relayed ``n`` connections (the poller reconnected)."""
        async with asyncio.timeout(limit_s):
            while self.connections < n:
                self._connected.clear()
                await self._connected.wait()

    def _cut(self, conn: _Conn, mode: str, relayed: int, size: int) -> None:
        self._note(conn, f"cut {mode}")
        self._armed = None
        conn.client.transport.abort()
        conn.server.transport.abort()
        self.cuts.append(Cut(mode, time.monotonic(), conn.n, relayed, size))
        self.cut_event.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(
                "127.0.0.1", self.target_port, local_addr=(self.source, 0)
            )
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        writer.transport.set_write_buffer_limits(high=0)  # drain() waits until all is sent
        conn = _Conn(self.connections, writer, up_w)
        self._note(conn, "connected")
        self._live.add(conn)
        self._connected.set()
        try:
            await asyncio.gather(self._upstream(conn, reader), self._downstream(conn, up_r))
        finally:
            self._live.discard(conn)

    async def _upstream(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        """Poller → Dovecot: relayed as is; notes the command whose answer comes next."""
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if _IDLE_CMD.search(data):
                    conn.command, conn.idling_from = "idle", -1
                    conn.answers.clear()
                    self._note(conn, "IDLE")
                elif _FETCH_CMD.search(data):
                    conn.command, conn.idling_from = "fetch", -1
                    conn.answers.clear()
                elif _DONE.search(data):
                    conn.command, conn.idling_from = "", -1
                    conn.answers.clear()
                    self._note(conn, "DONE")
                conn.server.write(data)
                await conn.server.drain()
        self._note(conn, "closed by the poller")
        conn.server.transport.abort()

    async def _downstream(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        """Dovecot → poller: relayed up to the moment the armed mode names, then both cut."""
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                start = len(conn.answers)
                if conn.command:
                    conn.answers += data
                idle = conn.command == "idle" and conn.idling_from < 0
                if idle and (m := _IDLING.search(conn.answers)):
                    conn.idling_from = m.end()
                    self.idle_seen.set()
                    self._note(conn, "idling")
                if conn.idling_from >= 0 and _EXISTS.search(data):
                    self._note(conn, "EXISTS in IDLE")
                mode = self._armed
                cut = self._cut_at(mode, conn) if mode is not None else None
                if cut is None:
                    conn.client.write(data)
                    await conn.client.drain()
                    continue
                assert mode is not None
                at, relayed, size = cut
                if at > start:
                    conn.client.write(bytes(conn.answers[start:at]))
                    with contextlib.suppress(OSError):
                        await conn.client.drain()
                self._cut(conn, mode, relayed, size)
                return
        self._note(conn, "closed by the server")
        conn.client.transport.abort()

    @staticmethod
    def _cut_at(mode: str, conn: _Conn) -> tuple[int, int, int] | None:
        """Where in ``conn.answers`` to cut for ``mode``: (offset, relayed, size) or None yet."""
        buf = conn.answers
        if mode in ("idle", "idle_exists"):
            if conn.idling_from < 0:
                return None
            if mode == "idle":
                return conn.idling_from, conn.idling_from, 0
            e = _EXISTS.search(buf, conn.idling_from)
            return (e.end(), e.end(), 0) if e else None
        if conn.command != "fetch" or not (m := _FETCH_LITERAL.search(buf)):
            return None
        size = int(m.group(1))
        if mode == "fetch_head":
            return m.end(), 0, size
        half = max(1, size // 2)
        if len(buf) < m.end() + half:
            return None
        return m.end() + half, half, size
