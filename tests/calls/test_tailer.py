"""The call-log tailer on real files in tmp_path with the real Redis position store: appends,
partial lines, rotation, truncation, restarts, failing callbacks, bad lines. Driven step by
step with ``poll_once`` (no sleeps); ``run(stop)`` once with an Event."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from adapters.redis_log_position import RedisLogPosition, position_key
from adapters.scripts import AnyRedis
from channels.calls.jsonl import JsonlParser, to_jsonl
from channels.calls.queue_log import QueueLogParser
from channels.calls.records import CallRecord
from channels.calls.tailer import LineSource, LogTailer, StatelessSource, TailConfig
from tests.helpers import redis_client

pytestmark = pytest.mark.timeout(30)
FIX = Path(__file__).parent.parent / "fixtures" / "calls"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AnyRedis]:
    r = redis_client(redis_url)
    yield r
    await r.aclose()


_OPENED: list[LogTailer] = []


@pytest.fixture(autouse=True)
def _close_tailers() -> Iterator[None]:
    """Every tailer a test made has its file closed afterwards."""
    yield
    while _OPENED:
        _OPENED.pop().close()


@pytest.fixture
def positions(redis: AnyRedis) -> RedisLogPosition:
    return RedisLogPosition(redis)


class Sink:
    """The hub's side of the callback: records ids; can fail on demand."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.fail = 0
        self.calls = 0
        self.enough = asyncio.Event()
        self.want = 0

    async def __call__(self, records: list[CallRecord]) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise ConnectionError("stream unavailable")
        self.ids.extend(r.call_id for r in records)
        if self.want and len(self.ids) >= self.want:
            self.enough.set()


def jl(i: int) -> str:
    rec = CallRecord(f"c{i}", "in", "081234567890", "1500630", "ANSWERED", record_type="export")
    return to_jsonl(rec) + "\n"


def write(path: Path, text: str | bytes, mode: str = "a") -> None:
    data = text.encode() if isinstance(text, str) else text
    with path.open(mode + "b") as f:
        f.write(data)


def tailer(
    path: Path,
    positions: RedisLogPosition,
    sink: Sink,
    source: LineSource | None = None,
    **cfg: int,
) -> LogTailer:
    src = source or StatelessSource(JsonlParser().parse_line)
    t = LogTailer("call:test", path, src, positions, sink, TailConfig(**cfg))
    _OPENED.append(t)
    return t


async def drain(t: LogTailer, close: bool = False) -> None:
    for _ in range(50):
        n = await t.poll_once()
        if n == 0 and not t.more:
            if close:
                t.close()
            return
    raise AssertionError("tailer never went quiet")


async def test_appends_picked_up(tmp_path: Path, positions: RedisLogPosition) -> None:
    """New lines appended to the file are delivered, and the position follows them."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0) + jl(1))
    sink = Sink()
    t = tailer(p, positions, sink)
    assert await t.poll_once() == 2
    write(p, jl(2))
    await drain(t)
    assert sink.ids == ["c0", "c1", "c2"]
    assert await positions.get("call:test") == (p.stat().st_ino, p.stat().st_size)


async def test_missing_file_waits(tmp_path: Path, positions: RedisLogPosition) -> None:
    """No file yet: nothing happens until it appears."""
    p = tmp_path / "calls.jsonl"
    sink = Sink()
    t = tailer(p, positions, sink)
    assert await t.poll_once() == 0
    write(p, jl(0))
    await drain(t)
    assert sink.ids == ["c0"]


async def test_partial_line_held_back(tmp_path: Path, positions: RedisLogPosition) -> None:
    """A last line without its newline is not consumed until the newline arrives."""
    p = tmp_path / "calls.jsonl"
    line = jl(1)
    write(p, jl(0) + line[:20])
    sink = Sink()
    t = tailer(p, positions, sink)
    await drain(t)
    assert sink.ids == ["c0"]
    assert await positions.get("call:test") == (p.stat().st_ino, len(jl(0)))
    write(p, line[20:])
    await drain(t)
    assert sink.ids == ["c0", "c1"]
    assert t.bad_lines == 0


async def test_rotation_loses_nothing_reads_nothing_twice(
    tmp_path: Path, positions: RedisLogPosition
) -> None:
    """Rename + new file: the old file is finished, then the new one read from 0."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0) + jl(1))
    sink = Sink()
    t = tailer(p, positions, sink)
    await drain(t)
    write(p, jl(2))  # written before rotation, not yet read
    p.rename(tmp_path / "calls.jsonl.1")
    write(p, jl(3) + jl(4))
    with capture_logs() as logs:
        await drain(t)
    assert sink.ids == ["c0", "c1", "c2", "c3", "c4"]
    assert any(e["event"] == "calllog.rotated" for e in logs)
    assert await positions.get("call:test") == (p.stat().st_ino, p.stat().st_size)


async def test_truncation_restarts_at_zero(tmp_path: Path, positions: RedisLogPosition) -> None:
    """A file shorter than the offset (copytruncate) is read again from 0."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0) + jl(1) + jl(2))
    sink = Sink()
    t = tailer(p, positions, sink)
    await drain(t)
    write(p, jl(3), mode="w")  # truncate and write one line: same inode, shorter
    with capture_logs() as logs:
        await drain(t)
    assert sink.ids == ["c0", "c1", "c2", "c3"]
    assert [e["event"] for e in logs if e["event"].startswith("calllog.")] == ["calllog.truncated"]
    assert await positions.get("call:test") == (p.stat().st_ino, len(jl(3)))


async def test_restart_reads_nothing_twice(tmp_path: Path, positions: RedisLogPosition) -> None:
    """A new tailer with the same position store resumes where the old one committed."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0) + jl(1))
    sink = Sink()
    await drain(tailer(p, positions, sink), close=True)
    write(p, jl(2) + jl(3))
    await drain(tailer(p, positions, sink), close=True)
    assert sink.ids == ["c0", "c1", "c2", "c3"]


async def test_restart_after_rotation_finishes_old_file(
    tmp_path: Path, positions: RedisLogPosition
) -> None:
    """Down while the log rotated: the old file is found by inode and finished first."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0) + jl(1))
    sink = Sink()
    t1 = tailer(p, positions, sink, max_lines=1)
    assert await t1.poll_once() == 1
    t1.close()
    p.rename(tmp_path / "calls.jsonl-20260302")
    write(p, jl(2))
    await drain(tailer(p, positions, sink), close=True)
    assert sink.ids == ["c0", "c1", "c2"]


async def test_failing_callback_does_not_advance(
    tmp_path: Path, positions: RedisLogPosition
) -> None:
    """A callback that raises leaves the position; the same records are offered again."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0))
    sink = Sink()
    t = tailer(p, positions, sink)
    await drain(t)
    before = await positions.get("call:test")
    write(p, jl(1) + jl(2))
    sink.fail = 2
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await t.poll_once()
        assert await positions.get("call:test") == before
    assert await t.poll_once() == 2
    assert sink.ids == ["c0", "c1", "c2"]
    assert await positions.get("call:test") == (p.stat().st_ino, p.stat().st_size)
    # a crash instead of a retry: a new tailer re-reads from the committed position
    write(p, jl(3))
    sink.fail = 1
    with pytest.raises(ConnectionError):
        await t.poll_once()
    await drain(tailer(p, positions, sink), close=True)
    assert sink.ids == ["c0", "c1", "c2", "c3"]


async def test_bad_lines_skipped_and_counted(tmp_path: Path, positions: RedisLogPosition) -> None:
    """Unparseable, non-UTF-8 and overlong lines are skipped, counted, logged without content."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0) + "garbage 081299990000\n" + jl(1) + "\n")
    write(p, b"\xff\xfe\n" + b"x" * 5000 + b"\n" + jl(2).encode())
    sink = Sink()
    t = tailer(p, positions, sink, max_bytes=4096)
    with capture_logs() as logs:
        await drain(t)
    assert sink.ids == ["c0", "c1", "c2"]
    assert t.bad_lines == 3
    bad = [e for e in logs if e["event"] == "calllog.bad_line"]
    assert [(e["line"], e["reason"]) for e in bad] == [
        (2, "not json"),
        (5, "not utf-8"),
        (6, "line too long"),
    ]
    assert "0812" not in repr(logs)


async def test_batches_are_bounded(tmp_path: Path, positions: RedisLogPosition) -> None:
    """At most max_lines per step; ``more`` says there is more to read."""
    p = tmp_path / "calls.jsonl"
    write(p, "".join(jl(i) for i in range(5)))
    sink = Sink()
    t = tailer(p, positions, sink, max_lines=2)
    assert await t.poll_once() == 2
    assert t.more
    await drain(t)
    assert sink.ids == [f"c{i}" for i in range(5)]
    assert sink.calls == 3


async def test_queue_log_restart_mid_call(tmp_path: Path, positions: RedisLogPosition) -> None:
    """queue_log: the position waits at the oldest open call's first line, so a restart
    rebuilds in-progress calls and does not deliver finished ones again."""
    src = (FIX / "queue_log").read_text().splitlines(keepends=True)
    p = tmp_path / "queue_log"
    write(p, "".join(src[:10]))  # up to the ABANDON of .102; .101 and .103 still open
    sink = Sink()
    t1 = tailer(p, positions, sink, source=QueueLogParser())
    await drain(t1, close=True)
    assert sink.ids == ["1772417710.102"]
    first_open = len("".join(src[:1]).encode())  # the DID line of .101
    assert await positions.get("call:test") == (p.stat().st_ino, first_open)
    assert await positions.get("call:test:delivered") == (p.stat().st_ino, p.stat().st_size)

    got: list[CallRecord] = []

    async def keep(records: list[CallRecord]) -> None:
        got.extend(records)

    t2 = LogTailer("call:test", p, QueueLogParser(), positions, keep)
    write(p, "".join(src[10:]))
    await drain(t2, close=True)
    assert [r.call_id for r in got] == ["1772417800.103", "1772417700.101", "1772417900.104"]
    assert got[1].caller == "081234567890"  # rebuilt from the replayed ENTERQUEUE
    assert t2.replayed_skipped == 1
    assert await positions.get("call:test") == (p.stat().st_ino, p.stat().st_size)


async def test_run_until_stopped(tmp_path: Path, positions: RedisLogPosition) -> None:
    """run(stop) polls until the Event is set, then returns."""
    p = tmp_path / "calls.jsonl"
    write(p, jl(0) + jl(1))
    sink = Sink()
    sink.want = 3
    sink.fail = 1  # the first attempt fails: run backs off and retries
    t = LogTailer(
        "call:test",
        p,
        StatelessSource(JsonlParser().parse_line),
        positions,
        sink,
        TailConfig(poll_interval=0.01, max_backoff=0.02),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(t.run(stop))
    write(p, jl(2))
    await asyncio.wait_for(sink.enough.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sink.ids == ["c0", "c1", "c2"]


async def test_redis_position_guard(redis: AnyRedis, positions: RedisLogPosition) -> None:
    """Forward only within an inode; a new inode replaces; reset may go back."""
    assert await positions.get("a") is None
    await positions.set("a", 7, 100)
    await positions.set("a", 7, 50)
    assert await positions.get("a") == (7, 100)
    await positions.set("a", 8, 10)
    assert await positions.get("a") == (8, 10)
    await positions.reset("a", 8, 0)
    assert await positions.get("a") == (8, 0)
    assert await redis.exists(position_key("a")) == 1
    assert position_key("a") == "hub:{calllog}:pos:a"
    assert os.sep not in position_key("a")
