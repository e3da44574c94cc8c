"""Pulled sources are polled by exactly one process: two real hub processes with the poller
role (``python -m hub run --role poller``), one IMAP mailbox on a real Dovecot and one call
log on disk. Each source's lease (``hub:lease:{intake:<poller>}``) names one process, only
that process polls it, and every mail and call reaches the inbound streams once. When the
holder is killed (SIGKILL: no release), the other process takes the source over after the
lease's TTL and goes on from the stored position: nothing is lost and nothing doubled.

Runs on the worker's Redis, a cluster with ``HUB_TEST_REDIS=cluster``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from adapters import keys
from adapters.redis_log_position import position_key as log_position
from adapters.redis_mail_state import position_key as mail_position
from adapters.redis_server import free_port
from adapters.scripts import AnyRedis, as_text
from tests import redis_cluster
from tests.email import conftest as mail
from tests.email.conftest import PASSWORD, USER, Appender, Dovecot, make_mail
from tests.helpers import eventually, redis_client

pytestmark = pytest.mark.timeout(180)
# The e-mail tests' fixtures: a real Dovecot for this worker, a fresh mailbox, IMAP APPEND.
tls_files, dovecot, mailbox, append = mail.tls_files, mail.dovecot, mail.mailbox, mail.append
ROOT = Path(__file__).resolve().parent.parent
SHARDS = 2
POLLERS = ("email:ppid", "call:hotline:0:jsonl")


def _config(redis_url: str, data_dir: Path, imap: Dovecot, box: str, log: Path) -> dict:
    return {
        "hub": {
            "public_url": f"http://127.0.0.1:{free_port()}",
            "data_dir": str(data_dir),
            "log_format": "json",
            "log_level": "info",
        },
        "redis": {
            "url": redis_url,
            "inbound_shards": SHARDS,
            "cluster": redis_cluster.is_cluster_url(redis_url),
        },
        "channels": {
            "email": {
                "accounts": {
                    "ppid": {
                        "address": "ppid@kemnaker.go.id",
                        "imap_host": "127.0.0.1",
                        "imap_port": imap.port,
                        "imap_security": "plain",
                        "imap_username": USER,
                        "imap_password": PASSWORD,
                        "imap_mailbox": box,
                        "imap_poll_seconds": 0.2,
                        "smtp_host": "127.0.0.1",
                        "smtp_port": free_port(),
                        "smtp_security": "none",
                    }
                }
            },
            "call": {
                "accounts": {
                    "hotline": {
                        "logs": [{"kind": "jsonl", "path": str(log), "poll_interval": 0.05}]
                    }
                }
            },
        },
    }


class Poller:
    """One ``python -m hub run --role poller`` process; its JSON log lines in a file."""

    def __init__(self, name: str, config: Path, logfile: Path) -> None:
        self.name, self.config, self.logfile = name, config, logfile
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.logfile.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", "run", "--config", str(self.config),
                "--role", "poller",
                cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each log line as it happens
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def events(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.logfile.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and rec.get("event") == event:
                    out.append(rec)
        return out

    def started(self) -> Counter[str]:
        """How many times this process took each source's lease and started polling it."""
        return Counter(e["poller"] for e in self.events("intake.started"))

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(sig)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AnyRedis]:
    r = redis_client(redis_url)
    yield r
    await r.aclose()


async def _holders(redis: AnyRedis) -> dict[str, int]:
    """Source → the pid of the process whose owner id its lease holds (owner = host:pid:…)."""
    out = {}
    for name in POLLERS:
        raw = await redis.get(f"hub:lease:{{intake:{name}}}")
        if raw is not None:
            out[name] = int(as_text(raw).split(":")[1])
    return out


async def _inbound(redis: AnyRedis) -> list[str]:
    """Provider ids of every entry on the inbound streams (duplicates kept)."""
    ids = []
    for shard in range(SHARDS):
        for _eid, fields in await redis.xrange(keys.inbound_stream(shard)):
            m = json.loads(as_text(fields.get(b"m", fields.get("m"))))
            ids.append(f"{m['channel']}:{m['provider_id']}")
    return ids


async def _caught_up(redis: AnyRedis, last_uid: int, log: Path) -> bool:
    """The pollers' stored positions: the mailbox at ``last_uid``, the call log at its end."""
    mail = await redis.hmget(mail_position("ppid"), ["last_uid"])
    pos = await redis.hmget(log_position(POLLERS[1]), ["offset"])
    return (
        mail[0] is not None
        and int(as_text(mail[0])) == last_uid
        and pos[0] is not None
        and int(as_text(pos[0])) == log.stat().st_size
    )


def _call(n: int) -> str:
    return json.dumps({
        "call_id": f"17724181{n:02d}.1{n:02d}", "direction": "in", "caller": f"0812345678{n:02d}",
        "callee": "1500630", "queue": "layanan", "offered_at": 1772418100 + n * 60,
        "answered_at": 1772418110 + n * 60, "ended_at": 1772418200 + n * 60, "wait_s": 10,
        "talk_s": 90, "disposition": "ANSWERED",
    }) + "\n"  # fmt: skip


async def test_two_poller_processes_poll_each_source_once(
    redis: AnyRedis,
    redis_url: str,
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    tmp_path: Path,
) -> None:
    log = tmp_path / "calls.jsonl"
    log.write_text("")
    procs = []
    for name in ("a", "b"):
        cfg = tmp_path / f"{name}.toml"
        conf = _config(redis_url, tmp_path / f"data-{name}", dovecot, mailbox, log)
        cfg.write_text(tomli_w.dumps(conf))
        procs.append(Poller(name, cfg, tmp_path / f"{name}.log"))
    await asyncio.gather(*(p.start() for p in procs))
    try:
        pids = {p.pid: p for p in procs}

        async def both_sources_held() -> dict[str, int] | None:
            held = await _holders(redis)
            return held if len(held) == len(POLLERS) else None

        holders = await eventually(both_sources_held, limit_s=60)
        assert set(holders.values()) <= set(pids)

        await append(mailbox, *(make_mail(i, f"Keluhan {i}") for i in range(3)))
        with log.open("a") as f:
            f.writelines(_call(i) for i in range(3))

        async def six_in() -> list[str] | None:
            ids = await _inbound(redis)
            return ids if len(ids) >= 6 else None

        first = await eventually(six_in, limit_s=60)
        # Nothing in flight: the positions are past the first items (recorded after each item
        # is published and logged; a takeover re-reads what was published but not yet
        # recorded, by design: the dispatcher dedupes it).
        await eventually(lambda: _caught_up(redis, 3, log), limit_s=30)
        # Each source was started by exactly one process: the lease holder.
        for name, pid in holders.items():
            assert pids[pid].started()[name] == 1, name
            other = next(p for p in procs if p.pid != pid)
            assert other.started()[name] == 0, name
        # The mails were fetched by the holder of the mailbox only.
        email_holder = pids[holders["email:ppid"]]
        assert len(email_holder.events("message.received")) == 3
        assert all(not p.events("message.received") for p in procs if p is not email_holder)

        # SIGKILL the mailbox's holder: no release; the survivor takes over after the TTL.
        await email_holder.stop(signal.SIGKILL)
        survivor = next(p for p in procs if p is not email_holder)
        await append(mailbox, *(make_mail(i, f"Keluhan {i}") for i in range(3, 5)))
        with log.open("a") as f:
            f.writelines(_call(i) for i in range(3, 5))

        async def survivor_holds_both() -> bool:
            return await _holders(redis) == dict.fromkeys(POLLERS, survivor.pid)

        await eventually(survivor_holds_both, limit_s=60)

        async def ten_in() -> list[str] | None:
            ids = await _inbound(redis)
            return ids if len(ids) >= 10 else None

        await eventually(ten_in, limit_s=60)

        # The survivor's positions are past everything: no late duplicate can still come.
        await eventually(lambda: _caught_up(redis, 5, log), limit_s=30)
        ids = await _inbound(redis)
        assert len(ids) == len(set(ids)) == 10, Counter(ids).most_common(3)
        assert set(first) < set(ids)
        assert survivor.started()["email:ppid"] == 1
    finally:
        await asyncio.gather(*(p.stop() for p in procs))
        for p in procs:  # shown if the test failed
            print(f"--- {p.name} (pid {p.pid}):")
            print(p.logfile.read_text(errors="replace")[-6000:])
