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
(``Master.csv.1``, ``queue_log-20260101``…) to finish it. The switch waits until the new file
has data (``calllog.rotation_pending`` until then): between logrotate's ``create`` and the
platform reopening its log (``postrotate``), lines still go to the renamed file, and a tailer
that had moved on would never read them. Truncation (copytruncate: same inode, and either
shorter than the offset or no longer holding, just before the offset, the bytes read there,
``TAIL_BYTES`` of them, so a file that grew back past the offset is noticed too): the rest of
the file is read from logrotate's copy next to it (the sibling holding those same bytes at the
offset) if there is one, then the truncated file from 0 (``calllog.truncated``). Lines written
between logrotate's copy and its truncate are in neither file: copytruncate loses them, and no
reader can help that (docs/reliability.md, fault 5). A line that cannot be parsed is skipped
and counted (``bad_lines``), logged as ``calllog.bad_line`` with its line number and reason,
never its content (it holds phone numbers).
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

TAIL_BYTES = 256
"""How many bytes before the offset identify where the tailer stands in a file (a call line
carries its call id and times, so these never repeat at the same offset of another file)."""

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
        self._truncated_fh: BinaryIO | None = None  # read from 0 once its copy is finished
        self._inode = 0
        self._offset = 0  # after the last consumed line
        self._tail = b""  # the file's bytes just before _offset (up to TAIL_BYTES)
        self._next_tail = b""  # the same for the end of the last batch read
        self._pending_rotation = 0  # the new file's inode we are waiting on (logged once)
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

    def _siblings(self) -> list[Path]:
        """Files next to the log named after it (``Master.csv.1``, ``queue_log-20260101``)."""
        out: list[Path] = []
        with contextlib.suppress(OSError):
            for p in self.path.parent.iterdir():
                if p.name != self.path.name and p.name.startswith(self.path.name):
                    with contextlib.suppress(OSError):
                        if p.is_file():
                            out.append(p)
        return out

    def _find_rotated(self, inode: int) -> Path | None:
        for p in self._siblings():
            with contextlib.suppress(OSError):
                if p.stat().st_ino == inode:
                    return p
        return None

    def _find_copy(self) -> Path | None:
        """copytruncate's copy of the file just truncated: a sibling that holds, just before
        our offset, the bytes we read there."""
        tail, offset = self._tail, self._offset
        if not tail:
            return None
        for p in self._siblings():
            with contextlib.suppress(OSError), p.open("rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_ino == self._inode or st.st_size < offset:
                    continue
                if os.pread(fh.fileno(), len(tail), offset - len(tail)) == tail:
                    return p
        return None

    def _open_at(self, p: Path, offset: int) -> tuple[int, int]:
        """Open ``p``; returns (inode, size). Counts the lines before ``offset``."""
        fh = p.open("rb")
        st = os.fstat(fh.fileno())
        self._close()
        self._fh, self._inode = fh, st.st_ino
        self._offset, self._lineno, self._tail = offset, 0, b""
        if 0 < offset <= st.st_size:
            left = offset
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                self._lineno += chunk.count(b"\n")
                left -= len(chunk)
            n = min(offset, TAIL_BYTES)
            self._tail = os.pread(fh.fileno(), n, offset - n)
        return st.st_ino, st.st_size

    def close(self) -> None:
        """Close the open files (``run`` does this when it ends)."""
        self._close()
        if self._truncated_fh is not None:
            self._truncated_fh.close()
            self._truncated_fh = None

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _read(self) -> list[_Line] | None:
        """The next complete lines from the offset (sets ``_next_tail`` for their end); None
        if the bytes before the offset changed: the file was truncated and written again."""
        assert self._fh is not None
        fh, cfg = self._fh, self.config
        tail = self._tail
        if tail and os.pread(fh.fileno(), len(tail), self._offset - len(tail)) != tail:
            return None
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
                    end = pos + nl + 1
                    n = min(end, TAIL_BYTES)
                    self._next_tail = os.pread(fh.fileno(), n, end - n)
                    return [_Line(self._offset, end, None)]
                pos += len(chunk)
        self.more = len(lines) == cfg.max_lines or (bool(lines) and len(data) == cfg.max_bytes)
        if lines:
            self._next_tail = (tail + data[:start])[-TAIL_BYTES:]
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

    def _rotation_step(self) -> tuple[str, int]:
        """At the end of the old file, a new one at the path: ("switch", unterminated bytes
        left in the old one), "more" (complete lines were added to the old file meanwhile),
        or "pending" (the new file is still empty: the platform may not have reopened its log
        yet, and what it writes until then goes to the old file). The new file is looked at
        first: a platform writes to it only after its last write to the old one."""
        assert self._fh is not None
        try:
            new_size = self.path.stat().st_size
        except FileNotFoundError:
            return "pending", 0
        left = os.pread(self._fh.fileno(), self.config.max_bytes, self._offset)
        if b"\n" in left:
            return "more", 0
        if new_size == 0:
            return "pending", 0
        return "switch", len(left)

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
        """The open file was truncated in place. If logrotate's copy is next to it, finish
        that copy from the same offset first (it holds the same bytes: no rebase), then the
        truncated file, still open, from 0 (``_from_copy``); otherwise start the truncated
        file again at 0."""
        copy = await asyncio.to_thread(self._find_copy)
        log.warning(
            "calllog.truncated", log=self.name, offset=self._offset,
            copy=copy.name if copy is not None else None,
        )  # fmt: skip
        if copy is not None and self._truncated_fh is None:
            truncated, self._fh = self._fh, None
            try:
                await asyncio.to_thread(self._open_at, copy, self._offset)
            except OSError:
                self._fh = truncated  # the copy went away: as if there were none
            else:
                self._truncated_fh = truncated
                await self._commit(self._offset, reset=False)
                return
        self._offset, self._lineno, self._tail = 0, 0, b""
        self.source.rebase()
        await self._commit(0, reset=True)

    async def _from_copy(self) -> None:
        """The copy is read to its end: go on with the file it was copied from, at 0 (not
        with the file at the path: that one may have been rotated meanwhile)."""
        assert self._fh is not None
        assert self._truncated_fh is not None
        left = await asyncio.to_thread(self._leftover)
        if left > 0:
            self.bad_lines += 1
            log.warning(
                "calllog.bad_line", log=self.name, line=self._lineno + 1, reason="unterminated"
            )
        self._close()
        self._fh, self._truncated_fh = self._truncated_fh, None
        self._inode = os.fstat(self._fh.fileno()).st_ino
        self._offset, self._lineno, self._tail = 0, 0, b""
        log.info("calllog.copy_finished", log=self.name, unterminated_bytes=left)
        self.source.rebase()
        await self._commit(0, reset=False)

    async def _rotated(self) -> bool:
        """Move on to the new file at the path once the old one is finished; returns whether
        there is something to do at once (False: wait for the next poll)."""
        assert self._fh is not None
        step, left = await asyncio.to_thread(self._rotation_step)
        if step == "more":
            return True
        if step == "pending":
            with contextlib.suppress(OSError):
                new_inode = self.path.stat().st_ino
                if new_inode != self._pending_rotation:
                    self._pending_rotation = new_inode
                    log.info("calllog.rotation_pending", log=self.name, offset=self._offset)
            return False
        if left > 0:
            self.bad_lines += 1
            log.warning(
                "calllog.bad_line", log=self.name, line=self._lineno + 1, reason="unterminated"
            )
        await asyncio.to_thread(self._open_at, self.path, 0)
        log.info("calllog.rotated", log=self.name, unterminated_bytes=left)
        self.source.rebase()
        await self._commit(0, reset=False)
        return True

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
        if lines is None:
            await self._truncated()
            self.more = True
            return 0
        if not lines:
            if self._truncated_fh is not None:  # a copy, read to its end
                await self._from_copy()
                self.more = True
                return 0
            self.more = False
            change = await asyncio.to_thread(self._check_file)
            if change == "truncated":
                await self._truncated()
                self.more = True
            elif change == "rotated":
                self.more = await self._rotated()
            return 0
        records = self._parse(lines)
        self._offset, self._tail = lines[-1].end, self._next_tail
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
