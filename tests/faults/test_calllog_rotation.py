"""The call-log tailer against logrotate's real sequences (found by fault 5,
``test_source_faults.py::test_call_log_rotated_and_truncated_mid_read``), step by step with
``poll_once`` on real files and the real Redis position store; the platform writes through an
open O_APPEND descriptor, as Asterisk's logger does.

1. ``create`` rotation: the tailer at the end of the renamed file saw the new, empty one and
   switched to it, so what the platform still wrote to the renamed file before reopening its
   log (logrotate's ``postrotate``) was never read.
2. copytruncate while the tailer was in the middle of the file: it started again at 0 of the
   truncated file, and the rest of the old content, which is in logrotate's copy, was lost.
3. copytruncate, then the file grew past the tailer's offset before it looked again: its size
   no longer showed the truncation, and the tailer went on at its old offset in the new
   content (losing everything before it, and reading from the middle of a line when the
   lines differ in length).
4. copytruncate, then a rename rotation before the tailer noticed the truncation: after the
   copy it must go on with the file that was truncated, not with the new one at the path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.redis_log_position import RedisLogPosition
from channels.calls.jsonl import JsonlParser, to_jsonl
from channels.calls.records import CallRecord
from channels.calls.tailer import LogTailer, StatelessSource, TailConfig
from tests.helpers import redis_client

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def positions(redis_url: str) -> AsyncIterator[RedisLogPosition]:
    r = redis_client(redis_url)
    yield RedisLogPosition(r)
    await r.aclose()


class Platform:
    """Writes call lines through an open O_APPEND descriptor; numbers them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, k: int = 1, note: str = "") -> list[str]:
        ids = []
        for _ in range(k):
            rec = CallRecord(
                f"c{self.n:05d}", "in", "081234567890", "1500630", "ANSWERED",
                record_type="export", notes=note * (self.n % 7),
            )  # fmt: skip
            os.write(self.fd, (to_jsonl(rec) + "\n").encode())
            ids.append(rec.call_id)
            self.n += 1
        return ids

    def reopen(self) -> None:
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        os.close(self.fd)


class Sink:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, records: list[CallRecord]) -> None:
        self.ids.extend(r.call_id for r in records)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cdr"
    d.mkdir()
    return d


async def drain(t: LogTailer) -> None:
    """Poll until a step delivers nothing and has nothing more to do at once."""
    for _ in range(200):
        if await t.poll_once() == 0 and not t.more:
            return
    raise AssertionError("tailer never went quiet")


def tailer(path: Path, positions: RedisLogPosition, sink: Sink, name: str) -> LogTailer:
    source = StatelessSource(JsonlParser().parse_line)
    return LogTailer(name, path, source, positions, sink, TailConfig(max_lines=5))


async def test_create_rotation_waits_until_the_platform_reopens(
    log_dir: Path, positions: RedisLogPosition
) -> None:
    path = log_dir / "export.jsonl"
    platform, sink = Platform(path), Sink()
    t = tailer(path, positions, sink, "rot:create")
    try:
        written = platform.write(7)
        await drain(t)
        path.rename(log_dir / "export.jsonl.1")  # logrotate: rename, create an empty one
        path.touch()
        written += platform.write(2)  # still the renamed file: no reload yet
        await drain(t)  # the tailer saw the new, empty file
        written += platform.write(3)  # ... and the platform still writes to the old one
        platform.reopen()  # postrotate: the platform reopens its log
        written += platform.write(4)
        await drain(t)
        assert sink.ids == written
    finally:
        platform.close()
        t.close()


async def test_copytruncate_mid_read_finishes_from_the_copy(
    log_dir: Path, positions: RedisLogPosition
) -> None:
    path = log_dir / "export.jsonl"
    platform, sink = Platform(path), Sink()
    t = tailer(path, positions, sink, "rot:copytruncate")
    try:
        written = platform.write(23, note="x")
        assert await t.poll_once() == 5  # in the middle of the file
        shutil.copyfile(path, log_dir / "export.jsonl.1")
        lost = platform.write(2)  # between the copy and the truncate: in neither file
        os.truncate(path, 0)
        written += platform.write(6)
        await drain(t)
        assert sink.ids == [i for i in written if i not in lost]
        assert await positions.get("rot:copytruncate") == (path.stat().st_ino, path.stat().st_size)
    finally:
        platform.close()
        t.close()


async def test_truncation_is_seen_when_the_file_grew_back_past_the_offset(
    log_dir: Path, positions: RedisLogPosition
) -> None:
    path = log_dir / "export.jsonl"
    platform, sink = Platform(path), Sink()
    t = tailer(path, positions, sink, "rot:regrow")
    try:
        written = platform.write(8, note="y")
        assert await t.poll_once() == 5
        shutil.copyfile(path, log_dir / "export.jsonl.1")
        os.truncate(path, 0)
        written += platform.write(12, note="y")  # longer than before: size says nothing
        assert path.stat().st_size > t.position[1]
        await drain(t)
        assert sink.ids == written
        assert t.bad_lines == 0
    finally:
        platform.close()
        t.close()


async def test_copytruncate_then_rename_before_the_tailer_looked(
    log_dir: Path, positions: RedisLogPosition
) -> None:
    path = log_dir / "export.jsonl"
    platform, sink = Platform(path), Sink()
    t = tailer(path, positions, sink, "rot:both")
    try:
        written = platform.write(12, note="z")
        assert await t.poll_once() == 5
        shutil.copyfile(path, log_dir / "export.jsonl.1")  # copytruncate ...
        os.truncate(path, 0)
        written += platform.write(4, note="z")
        path.rename(log_dir / "export.jsonl.2")  # ... then a create rotation
        path.touch()
        platform.reopen()
        written += platform.write(3, note="z")
        await drain(t)
        assert sink.ids == written
    finally:
        platform.close()
        t.close()
