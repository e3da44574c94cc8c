"""Tail a call log on disk and hand its records to the hub, losing none and repeating none.

``LogTailer`` is a hub ``Poller`` (``name``, ``async run(stop)``), meant to run under the
``IntakeRunner``'s lease (one reader per log). It polls every ``poll_interval`` seconds
(no inotify), reading at most ``max_lines`` lines / ``max_bytes`` bytes per step;
``poll_once()`` is one step (tests drive it directly).

Position. ``(inode, offset)`` per log in a ``LogPosition`` store (Redis in production,
``adapters.redis_log_position``). It moves forward only after ``on_records(records)`` has
returned for every record up to that offset; ``on_records`` returns only when the records
are durable (on the hub's inbound stream). If it raises, nothing moves: the same batch is
offered again on the next step (the hub's dedupe on ``provider_id`` absorbs a batch it had in
fact taken before a crash). For a stateful source (``queue_log``) the position is held at the
first line of the oldest call still in progress, and a second entry ``<name>:delivered``
records how far records were delivered, so that a restart re-reads those calls' first lines and
drops the records it had delivered already (see ``channels.calls.queue_log``).

Files. A partial last line is never consumed until its newline arrives. Rotation (a new inode
at the path): the old file, still open, is read to its end, then the new one from 0
(``calllog.rotated``); after a restart the old file is looked up by inode next to the path
(``Master.csv.1``, ``queue_log-20260101``…) to finish it. Truncation (the file is shorter than
the offset, same inode: copytruncate): start again at 0 (``calllog.truncated``). A line that
cannot be parsed is skipped and counted (``bad_lines``), logged as ``calllog.bad_line`` with its
line number and reason, never its content (it holds phone numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import structlog

from channels.calls.records import CallRecord, RecordError

log = structlog.get_logger("channels.calls.tailer")

OnRecords = Callable[[list[CallRecord]], Awaitable[None]]
"""``on_records(records)``: return only once every record is durably accepted; raise
otherwise (the position stays and the same records are offered again)."""


class LogPosition(Protocol):
    """Where each log's tailer stands: ``(inode, offset)`` by name."""

    async def get(self, name: str) -> tuple[int, int] | None: ...

    async def set(self, name: str, inode: int, offset: int) -> None:
        """Move forward; ignored if it would move back within the same inode."""

    async def reset(self, name: str, inode: int, offset: int) -> None:
        """Set unconditionally (after a truncation the same inode restarts at 0)."""


class LineSource(Protocol):
    """Turns lines into records; ``stateful`` sources hold calls across lines."""

    stateful: bool

    def feed(self, line: str, offset: int) -> CallRecord | None: ...

    def hold_from(self) -> int | None: ...

    def rebase(self) -> None: ...


class StatelessSource:
    """One line, one record (Master.csv, JSON lines)."""

    stateful = False

    def __init__(self, parse_line: Callable[[str], CallRecord]) -> None:
        self.parse_line = parse_line

    def feed(self, line: str, offset: int) -> CallRecord | None:
        return self.parse_line(line)

    def hold_from(self) -> int | None:
        return None

    def rebase(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class TailConfig:
    poll_interval: float = 1.0
    max_lines: int = 500
    max_bytes: int = 1 << 20  # also the longest line accepted
    max_backoff: float = 60.0


@dataclass(slots=True)
class _Line:
    start: int
    end: int  # offset after the newline
    data: bytes | None  # None: longer than max_bytes


@dataclass(slots=True)
class _Pending:
    inode: int
    end: int
    records: list[CallRecord]


class LogTailer:
    def __init__(
        self,
        name: str,
        path: str | os.PathLike[str],
        source: LineSource,
        positions: LogPosition,
        on_records: OnRecords,
        config: TailConfig | None = None,
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.source = source
        self.positions = positions
        self.on_records = on_records
        self.config = config or TailConfig()
        self._fh: BinaryIO | None = None
        self._inode = 0
        self._offset = 0  # after the last consumed line
        self._lineno = 0  # lines consumed in the current file
        self._delivered: tuple[int, int] | None = None  # high-water (stateful sources)
        self._committed: tuple[int, int] | None = None
        self._pending: _Pending | None = None
        self.more = False  # the last step stopped at a batch limit
        self.bad_lines = 0
        self.delivered = 0
        self.replayed_skipped = 0

    @property
    def _hw_name(self) -> str:
        return f"{self.name}:delivered"

    @property
    def position(self) -> tuple[int, int]:
        """(inode, offset) read so far (may be ahead of the committed one)."""
        return self._inode, self._offset

    # -- files (sync, run in a thread) ----------------------------------------------------

    def _find_rotated(self, inode: int) -> Path | None:
        with contextlib.suppress(OSError):
            for p in self.path.parent.iterdir():
                if p.name != self.path.name and p.name.startswith(self.path.name):
                    with contextlib.suppress(OSError):
                        if p.is_file() and p.stat().st_ino == inode:
                            return p
        return None

    def _open_at(self, p: Path, offset: int) -> tuple[int, int]:
        """Open ``p``; returns (inode, size). Counts the lines before ``offset``."""
        fh = p.open("rb")
        st = os.fstat(fh.fileno())
        self._close()
        self._fh, self._inode = fh, st.st_ino
        self._offset, self._lineno = offset, 0
        if 0 < offset <= st.st_size:
            left = offset
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                self._lineno += chunk.count(b"\n")
                left -= len(chunk)
        return st.st_ino, st.st_size

    def close(self) -> None:
        """Close the open file (``run`` does this when it ends)."""
        self._close()

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _read(self) -> list[_Line]:
        assert self._fh is not None
        fh, cfg = self._fh, self.config
        fh.seek(self._offset)
        data = fh.read(cfg.max_bytes)
        lines: list[_Line] = []
        start = 0
        while len(lines) < cfg.max_lines:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            lines.append(_Line(self._offset + start, self._offset + nl + 1, data[start:nl]))
            start = nl + 1
        if not lines and len(data) == cfg.max_bytes:  # one line longer than the limit
            pos = self._offset + len(data)
            while chunk := fh.read(1 << 16):
                nl = chunk.find(b"\n")
                if nl >= 0:
                    self.more = True
                    return [_Line(self._offset, pos + nl + 1, None)]
                pos += len(chunk)
        self.more = len(lines) == cfg.max_lines or (bool(lines) and len(data) == cfg.max_bytes)
        return lines

    def _check_file(self) -> str:
        """At the end of the open file: "" (nothing), "rotated" or "truncated"."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return ""  # renamed away, the new one not there yet: keep the old one
        if st.st_ino != self._inode:
            return "rotated"
        if st.st_size < self._offset:
            return "truncated"
        return ""

    def _leftover(self) -> int:
        assert self._fh is not None
        return os.fstat(self._fh.fileno()).st_size - self._offset

    # -- steps ----------------------------------------------------------------------------

    async def _start(self) -> bool:
        pos = await self.positions.get(self.name)
        if self.source.stateful:
            self._delivered = await self.positions.get(self._hw_name)
        self._committed = pos
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        if pos is not None and (st is None or st.st_ino != pos[0]):
            old = await asyncio.to_thread(self._find_rotated, pos[0])
            if old is not None:
                _, size = await asyncio.to_thread(self._open_at, old, pos[1])
                if size >= pos[1]:
                    log.info("calllog.resume_rotated", log=self.name, offset=pos[1])
                    return True
                await self._truncated()
                return True
            if st is not None:
                log.warning("calllog.rotated", log=self.name, old_file_found=False)
        if st is None:
            return False
        offset = pos[1] if pos is not None and pos[0] == st.st_ino else 0
        inode, size = await asyncio.to_thread(self._open_at, self.path, offset)
        if size < offset:
            await self._truncated()
        elif pos is None or pos[0] != inode:
            await self._commit(0, reset=False)
        return True

    async def _truncated(self) -> None:
        log.warning("calllog.truncated", log=self.name, offset=self._offset)
        self._offset, self._lineno = 0, 0
        self.source.rebase()
        await self._commit(0, reset=True)

    async def _rotated(self) -> None:
        assert self._fh is not None
        left = await asyncio.to_thread(self._leftover)
        if left > 0:
            self.bad_lines += 1
            log.warning(
                "calllog.bad_line", log=self.name, line=self._lineno + 1, reason="unterminated"
            )
        await asyncio.to_thread(self._open_at, self.path, 0)
        log.info("calllog.rotated", log=self.name, unterminated_bytes=left)
        self.source.rebase()
        await self._commit(0, reset=False)

    async def _commit(self, end: int, reset: bool) -> None:
        inode = self._inode
        hold = self.source.hold_from()
        offset = end if hold is None else min(end, hold)
        if self.source.stateful and (reset or self._delivered != (inode, end)):
            if reset:
                await self.positions.reset(self._hw_name, inode, end)
            else:
                await self.positions.set(self._hw_name, inode, end)
            self._delivered = (inode, end)
        if reset or self._committed != (inode, offset):
            if reset:
                await self.positions.reset(self.name, inode, offset)
            else:
                await self.positions.set(self.name, inode, offset)
            self._committed = (inode, offset)

    async def _deliver(self) -> int:
        p = self._pending
        assert p is not None
        if p.records:
            await self.on_records(list(p.records))
        self.delivered += len(p.records)
        self._pending = None
        await self._commit(p.end, reset=False)
        return len(p.records)

    def _parse(self, lines: list[_Line]) -> list[CallRecord]:
        records: list[CallRecord] = []
        hw = self._delivered
        for ln in lines:
            self._lineno += 1
            reason = ""
            record = None
            if ln.data is None:
                reason = "line too long"
            else:
                try:
                    text = ln.data.decode("utf-8").rstrip("\r")
                    if text.strip():
                        record = self.source.feed(text, ln.start)
                except UnicodeDecodeError:
                    reason = "not utf-8"
                except RecordError as exc:
                    reason = str(exc)
            if reason:
                self.bad_lines += 1
                log.warning("calllog.bad_line", log=self.name, line=self._lineno, reason=reason)
            elif record is not None:
                if hw is not None and hw[0] == self._inode and ln.end <= hw[1]:
                    self.replayed_skipped += 1  # delivered before a restart
                else:
                    records.append(record)
        return records

    async def poll_once(self) -> int:
        """Read what is there (one batch), deliver it, commit; returns records delivered.
        Raises what ``on_records`` or the position store raised (nothing advanced)."""
        if self._pending is not None:
            return await self._deliver()
        if self._fh is None and not await self._start():
            return 0
        lines = await asyncio.to_thread(self._read)
        if not lines:
            self.more = False
            change = await asyncio.to_thread(self._check_file)
            if change == "truncated":
                await self._truncated()
                self.more = True
            elif change == "rotated":
                await self._rotated()
                self.more = True
            return 0
        records = self._parse(lines)
        self._offset = lines[-1].end
        self._pending = _Pending(self._inode, self._offset, records)
        return await self._deliver()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        try:
            while not stop.is_set():
                delay = self.config.poll_interval
                try:
                    await self.poll_once()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    delay = min(self.config.max_backoff, delay * 2**failures)
                    log.warning(
                        "calllog.poll_failed", log=self.name, error=type(exc).__name__,
                        failures=failures, retry_in=delay,
                    )  # fmt: skip
                else:
                    if self.more:
                        await asyncio.sleep(0)
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            self._close()
