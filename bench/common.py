"""What the dispatcher and outbox benchmarks share: child processes stopped however the run
ends, their own redis-server, realistic inbound messages (Twilio webhooks parsed by the real
channel), a progress poller on a consumer group, redis-benchmark of any command, py-spy, and
the figures table. Self-contained on purpose: the webhook benchmark evolves on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from redis.asyncio import Redis

from channels.base import InboundRequest
from hub.demo.simulate import FOLLOW_UPS, TOPICS, Citizen, twilio_params
from hub.model import Message
from hub.settings import Settings

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "wa1"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-wa1"
WA_NUMBER = "+628119521150"
FORM = "application/x-www-form-urlencoded"


async def start_redis(procs: Procs, tmp: Path) -> tuple[int, asyncio.subprocess.Process, Redis]:
    """A redis-server of the run's own, no persistence, on a free loopback port."""
    port = free_port()
    proc = await procs.start(
        "redis",
        shutil.which("redis-server") or "redis-server",
        *("--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"),
        *("--dir", str(tmp), "--daemonize", "no"),
    )
    await wait_port(port, proc)
    return port, proc, Redis(host=HOST, port=port)


def bench_toml(redis_url: str, data_dir: Path, log_level: str, twilio_url: str, extra: str) -> str:
    """Production defaults except what a bench must set (where Redis and the fake are)."""
    return f"""
[hub]
public_url = "http://{HOST}:{free_port()}"
listen_host = "{HOST}"
data_dir = "{data_dir}"
log_format = "json"
log_level = "{log_level}"

[redis]
url = "{redis_url}"

[channels.whatsapp.accounts.{ACCOUNT}]
number = "{WA_NUMBER}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
api_base_url = "{twilio_url}"
{extra}
"""


@dataclass(frozen=True, slots=True)
class Mix:
    """What the inbound messages look like: ``citizens`` active at a time, a share of
    messages from brand-new citizens (each opens a ticket), a share of provider retries of a
    recent webhook (same MessageSid: must be stored once)."""

    n: int
    citizens: int = 5000
    open_share: float = 0.1
    dup_share: float = 0.01


def whatsapp_messages(settings: Settings, mix: Mix, rnd: random.Random) -> list[Message]:
    """``mix.n`` inbound messages as the webhook makes them: Twilio's form fields, parsed by
    the real channel (E.164, identity, kind, raw payload kept), stamped as received now."""
    from hub.runtime import build_channels

    ch: Any = build_channels(settings).get("whatsapp", ACCOUNT)
    url = f"{settings.hub.public_url}/webhooks/whatsapp/{ACCOUNT}"
    active: deque[Citizen] = deque()
    taken: set[str] = set()
    recent: deque[bytes] = deque(maxlen=50)
    out: list[Message] = []
    for _ in range(mix.n):
        if recent and rnd.random() < mix.dup_share:
            body = rnd.choice(recent)  # a provider retry: the same webhook again
        else:
            if not active or rnd.random() < mix.open_share:
                c = make_citizens(1, rnd, taken)[0]
                active.append(c)
                if len(active) > mix.citizens:
                    active.popleft()
                text = rnd.choice(TOPICS)
            else:
                c = rnd.choice(active)
                text = rnd.choice(FOLLOW_UPS)
            body = urlencode(twilio_params(ACCOUNT_SID, WA_NUMBER, c, text)).encode()
            recent.append(body)
        req = InboundRequest(
            url=url,
            headers={"content-type": FORM},
            body=body,
            form=[(k, v[0]) for k, v in _qs(body).items()],
            content_type=FORM,
        )
        out.extend(ch.parse(req, time.time()).messages)
    return out


def _qs(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(body.decode(), keep_blank_values=True)


# One atomic snapshot per poll, per stream: the group's last-delivered id, entries read,
# pending count, the stream's length and last id, and the size of an optional delayed set.
GROUP_POLL_LUA = """
local out = {}
for i, s in ipairs(KEYS) do
  local last, read, pending = '0-0', 0, 0
  if redis.call('EXISTS', s) == 1 then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local name, ld, er, pe = nil, nil, nil, nil
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1]
        elseif g[j] == 'last-delivered-id' then ld = g[j + 1]
        elseif g[j] == 'entries-read' then er = g[j + 1]
        elseif g[j] == 'pending' then pe = g[j + 1] end
      end
      if name == ARGV[1] then last, read, pending = ld, er or 0, pe end
    end
  end
  local top = redis.call('XREVRANGE', s, '+', '-', 'COUNT', 1)
  local delayed = 0
  if ARGV[i + 1] ~= '' then delayed = redis.call('ZCARD', ARGV[i + 1]) end
  out[#out + 1] = {last, read, pending, redis.call('XLEN', s), top[1] and top[1][1] or '0-0',
                   delayed}
end
return out
"""


@dataclass
class Snapshot:
    delivered: int  # entries read by the group (sum over streams)
    pending: int
    delayed: int
    caught_up: bool  # every stream's last entry delivered

    @property
    def started(self) -> bool:
        return self.delivered > 0 or self.pending > 0

    @property
    def done(self) -> bool:
        return self.caught_up and self.pending == 0 and self.delayed == 0


class GroupProgress:
    """Watches one consumer group over some streams from outside (one Lua call per poll):
    when it first delivered anything, and when everything was delivered and acked, with no
    retry waiting in the delayed sets. Resolution: one poll interval plus one round trip."""

    def __init__(
        self,
        redis: Redis,
        streams: Sequence[str],
        group: str,
        delayed: Sequence[str] = (),
        interval: float = 0.005,
    ) -> None:
        self.redis: Any = redis
        self.script = redis.register_script(GROUP_POLL_LUA)
        self.streams = list(streams)
        self.group = group
        self.delayed = list(delayed) or [""] * len(self.streams)
        self.interval = interval
        self.first: float | None = None
        self.last = Snapshot(0, 0, 0, False)
        self.polls = 0

    async def poll(self) -> Snapshot:
        reply = await self.script(keys=self.streams, args=[self.group, *self.delayed])
        delivered = pending = delayed = 0
        caught_up = True
        for last, read, pend, _xlen, top, dly in reply:
            delivered += int(read or 0)
            pending += int(pend)
            delayed += int(dly)
            caught_up = caught_up and _id(last) >= _id(top)
        self.polls += 1
        self.last = Snapshot(delivered, pending, delayed, caught_up)
        if self.first is None and self.last.started:
            self.first = time.perf_counter()
        return self.last

    async def wait_done(self, limit_s: float, quiet_polls: int = 3) -> float | None:
        """perf_counter when the group was first seen done (and stayed so for a few polls:
        a retry moving from the delayed set to the stream is atomic, so done is done);
        None on timeout."""
        deadline = time.perf_counter() + limit_s
        done_at: float | None = None
        streak = 0
        while time.perf_counter() < deadline:
            snap = await self.poll()
            if snap.done:
                done_at = done_at or time.perf_counter()
                streak += 1
                if streak >= quiet_polls:
                    return done_at
            else:
                done_at, streak = None, 0
            await asyncio.sleep(self.interval)  # polling another process's progress
        return None


def _id(raw: Any) -> tuple[int, int]:
    s = raw.decode() if isinstance(raw, bytes) else str(raw or "0-0")
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


async def redis_benchmark(port: int, n: int, pipeline: int, *command: str) -> float:
    """requests/s of ``redis-benchmark`` running ``command`` (50 clients); NaN if missing."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return float("nan")
    argv = [exe, "-h", HOST, "-p", str(port), "-n", str(n), "-q", "-r", "100000"]
    argv += ["-P", str(pipeline), *command]
    p = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(p.communicate(), 60)
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()
    found = re.findall(r"([\d.]+) requests per second", out.decode(errors="replace"))
    return float(found[-1]) if found else float("nan")


def proc_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- processes and small helpers -------------------------------------------------------------


def say(msg: str = "") -> None:
    print(msg, flush=True)


async def until_interrupted(run: Awaitable[int]) -> int:
    """``await run``, cancelled by SIGINT or SIGTERM so that it unwinds through its finally
    blocks (every process it started is stopped); 130 then."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await run
    except asyncio.CancelledError:
        say("interrupted; everything started was stopped")
        return 130


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def new_loop_runner(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def make_citizens(n: int, rnd: random.Random, taken: set[str]) -> list[Citizen]:
    """``n`` distinct, valid Indonesian mobiles (+62812 + 8 digits), none already in ``taken``."""
    out: list[Citizen] = []
    while len(out) < n:
        phone = f"+62812{rnd.randrange(10**8):08d}"
        if phone not in taken:
            taken.add(phone)
            out.append(Citizen(f"Warga {len(taken)}", phone))
    return out


class Procs:
    """Child processes, each stopped with SIGTERM (then SIGKILL) however the run ends."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, name: str, *argv: str) -> asyncio.subprocess.Process:
        log = (self.logdir / f"{name}.log").open("wb")
        try:
            p = await asyncio.create_subprocess_exec(
                *argv, cwd=ROOT, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        finally:
            log.close()
        self.procs.append((name, p))
        return p

    def tail(self, name: str, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.logdir / f"{name}.log").read_text().splitlines()[-lines:])
        return ""

    async def stop(self, name: str, sig: int = signal.SIGTERM, limit_s: float = 30) -> None:
        for n, p in self.procs:
            if n == name and p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(sig)
                try:
                    await asyncio.wait_for(p.wait(), limit_s)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    await p.wait()

    async def stop_all(self) -> None:
        """Last started, first stopped."""
        for name, _p in reversed(self.procs):
            await self.stop(name, limit_s=10)


async def wait_port(port: int, proc: asyncio.subprocess.Process, limit_s: float = 20) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
            try:
                _r, w = await asyncio.open_connection(HOST, port)
            except OSError:
                await asyncio.sleep(0.05)  # polling for a port to open
                continue
            w.close()
            await w.wait_closed()
            return


# -- py-spy --------------------------------------------------------------------------------


async def start_profile(procs: Procs, pid: int, name: str = "py-spy") -> Path | None:
    """py-spy (if installed) sampling ``pid`` until SIGINT, as collapsed stacks in a file."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        say("--profile: py-spy not found; not profiling")
        return None
    out = procs.logdir / f"{name}.txt"
    await procs.start(
        name,
        *(exe, "record", "--nonblocking", "--rate", "200", "--format", "raw"),
        *("--pid", str(pid), "--output", str(out)),
    )
    return out


async def stop_profile(procs: Procs, name: str, path: Path | None, top: int) -> None:
    if path is None:
        return
    await procs.stop(name, signal.SIGINT)  # py-spy writes its file on SIGINT
    if path.exists():
        say(f"\nprofile {name} (py-spy, {path}):")
        say(summarize_profile(path, top))


BORING = {
    "<module> (hub/__main__.py)",
    "_run_module_as_main (<frozen runpy>)",
    "_run_code (<frozen runpy>)",
    "main (hub/cli.py)",
    "_run_loop (hub/cli.py)",
    "run (uvloop/__init__.py)",
    "Runner.run (asyncio/runners.py)",
}


def summarize_profile(path: Path, top: int = 25) -> str:
    """Functions by share of samples: inclusive (on the stack) and self (on top)."""
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        for f in set(frames) - BORING:
            incl[f] = incl.get(f, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    if not total:
        return "(no samples)"
    rows = [f"{total} samples; inclusive %, self %, function (file)"]
    for f, k in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        rows.append(f"{100 * k / total:5.1f} {100 * own.get(f, 0) / total:5.1f}  {f[:110]}")
    rows.append("top self:")
    for f, k in sorted(own.items(), key=lambda kv: -kv[1])[: top // 2]:
        rows.append(f"{100 * k / total:5.1f}  {f[:110]}")
    return "\n".join(rows)


# -- the table -----------------------------------------------------------------------------


@dataclass
class Figures:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, metric: str, ours: float, base: float, base_name: str, fmt: str = ",.0f") -> None:
        ok = base and base == base and ours == ours
        ratio = f"{ours / base:.2f}" if ok else "-"
        self.rows.append((metric, format(ours, fmt), f"{format(base, fmt)} {base_name}", ratio))

    def note(self, metric: str, value: str) -> None:
        self.rows.append((metric, value, "", ""))

    def render(self) -> str:
        head = ("metric", "hub", "baseline", "ratio")
        rows = [head, *self.rows]
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "-+-".join("-" * x for x in w)
        out = [" | ".join(c.ljust(w[i]) for i, c in enumerate(head)), line]
        out += [" | ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in self.rows]
        return "\n".join(out)
