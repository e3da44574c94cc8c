"""Webhook → acked ticket: how fast the hub takes WhatsApp webhooks and turns them into tickets,
next to what the same load generator gets from a bare aiohttp handler and what the same Redis
does with ``redis-benchmark`` XADDs. See bench/README.md for what each figure means.

One run (``bench/run``, ~1 minute on 2 cores) starts, on 127.0.0.1 only:
  * its own redis-server (free port, no persistence), shared by the XADD baseline and the hub;
  * a bare aiohttp server (separate process) answering 200 "ok";
  * a fake Twilio (separate process) so the hub's acknowledgements can be sent;
  * the hub itself: ``python -m hub run --config <generated toml>`` (web+dispatcher+sender);
and stops all of them on the way out, on error or SIGTERM too.

Internal modes (used by the orchestrator): ``--serve bare|fake-twilio --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from redis.asyncio import Redis

from adapters import keys
from hub.demo.simulate import FOLLOW_UPS, TOPICS, Citizen, sign, twilio_params
from hub.settings import load_settings

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "wa1"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-wa1"
API_TOKEN = "bench-api-token-0123456789abcdef"
WA_NUMBER = "+628119521150"
FORM = "application/x-www-form-urlencoded"


# -- small helpers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when there is nothing to rank."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


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


def parse_id(raw: bytes | str | None) -> tuple[int, int]:
    s = raw.decode() if isinstance(raw, bytes) else str(raw or "0-0")
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


# -- the requests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Req:
    sid: str
    body: bytes
    headers: dict[str, str]
    first: bool  # the citizen's first message: it opens a ticket
    citizen: Citizen


def make_citizens(n: int, rnd: random.Random, taken: set[str]) -> list[Citizen]:
    """``n`` distinct, valid Indonesian mobiles (+62812 + 8 digits), none already in ``taken``."""
    out: list[Citizen] = []
    while len(out) < n:
        phone = f"+62812{rnd.randrange(10**8):08d}"
        if phone not in taken:
            taken.add(phone)
            out.append(Citizen(f"Warga {len(taken)}", phone))
    return out


def make_requests(
    n: int, pick: Callable[[], Citizen], seen: set[str], signed_url: str, rnd: random.Random
) -> list[Req]:
    """Signed Twilio inbound-message webhooks, signed over ``public_url + path`` as the hub
    verifies them. A citizen not in ``seen`` opens a ticket with a topic; later messages
    follow up on it (appended to the open ticket)."""
    out = []
    for _ in range(n):
        c = pick()
        first = c.phone not in seen
        seen.add(c.phone)
        p = twilio_params(ACCOUNT_SID, WA_NUMBER, c, rnd.choice(TOPICS if first else FOLLOW_UPS))
        headers = {"Content-Type": FORM, "X-Twilio-Signature": sign(AUTH_TOKEN, signed_url, p)}
        out.append(Req(p["MessageSid"], urlencode(p).encode(), headers, first, c))
    return out


def from_pool(pool: Sequence[Citizen], rnd: random.Random) -> Callable[[], Citizen]:
    return lambda: rnd.choice(pool)


def mixed(
    known: Sequence[Citizen], new_share: float, rnd: random.Random, taken: set[str]
) -> Callable[[], Citizen]:
    """A share of brand-new citizens (each opens a ticket); the rest are known citizens."""

    def pick() -> Citizen:
        if not known or rnd.random() < new_share:
            return make_citizens(1, rnd, taken)[0]
        return rnd.choice(known)

    return pick


# -- the load generator ----------------------------------------------------------------------


@dataclass
class LoadResult:
    sent_at: dict[str, float] = field(default_factory=dict)  # sid → perf_counter at POST
    answered_at: dict[str, float] = field(default_factory=dict)  # sid → at the 200
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    late: int = 0  # open loop: sends that left >5 ms after their slot
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.answered_at)

    @property
    def rate(self) -> float:
        return self.ok / (self.finished - self.started) if self.finished > self.started else 0.0

    def latencies_ms(self) -> list[float]:
        return [(t - self.sent_at[s]) * 1000 for s, t in self.answered_at.items()]


async def _post(session: aiohttp.ClientSession, url: str, r: Req, res: LoadResult) -> None:
    res.sent_at[r.sid] = time.perf_counter()
    try:
        async with session.post(url, data=r.body, headers=r.headers) as resp:
            await resp.read()
            res.statuses[resp.status] = res.statuses.get(resp.status, 0) + 1
            if resp.status == 200:
                res.answered_at[r.sid] = time.perf_counter()
    except (aiohttp.ClientError, OSError, TimeoutError):
        res.errors += 1


@contextlib.asynccontextmanager
async def client(concurrency: int) -> AsyncIterator[aiohttp.ClientSession]:
    conn = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        yield session


async def closed_loop(
    url: str, reqs: Sequence[Req], concurrency: int, seconds: float
) -> LoadResult:
    """``concurrency`` requests always in flight, until ``reqs`` run out or time is up."""
    res = LoadResult()
    it = iter(reqs)
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        for r in it:
            if time.perf_counter() >= deadline:
                return
            await _post(session, url, r, res)

    async with client(concurrency) as session:
        res.started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        res.finished = time.perf_counter()
    return res


async def open_loop(url: str, reqs: Sequence[Req], rate: float, concurrency: int) -> LoadResult:
    """One request every 1/rate s on a fixed schedule (at most ``concurrency`` in flight)."""
    res = LoadResult()
    sem = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    async with client(concurrency) as session:

        async def one(r: Req) -> None:
            try:
                await _post(session, url, r, res)
            finally:
                sem.release()

        res.started = t0 = time.perf_counter()
        for i, r in enumerate(reqs):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the schedule, not synchronisation
            elif delay < -0.005:
                res.late += 1
            await sem.acquire()
            t = asyncio.create_task(one(r))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        res.finished = time.perf_counter()
    return res


# -- the ack tracker -----------------------------------------------------------------------


# One atomic snapshot per poll: for each inbound shard, the entries added after the cursor
# (id and MessageSid only), the dispatch group's last-delivered-id and its pending summary.
POLL_LUA = """
local out = {}
for i, s in ipairs(KEYS) do
  local ids = {}
  for _, e in ipairs(redis.call('XRANGE', s, ARGV[i + 1], '+', 'COUNT', 10000)) do
    local f, sid = e[2], ''
    for j = 1, #f, 2 do
      if f[j] == 'm' then sid = string.match(f[j + 1], '"provider_id":"([^"]+)"') or '' end
    end
    ids[#ids + 1] = e[1]
    ids[#ids + 1] = sid
  end
  local last = ''
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    local name, ld = nil, nil
    for j = 1, #g, 2 do
      if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then
        ld = g[j + 1] end
    end
    if name == ARGV[1] then last = ld end
  end
  local p = redis.call('XPENDING', s, ARGV[1])
  out[#out + 1] = {last, p[1], p[2] or '', ids}
end
return out
"""


class AckTracker:
    """When was each message's inbound stream entry acked by the dispatcher?

    Every ``interval`` s, one Lua call (an atomic snapshot, one round trip, cheap for both
    sides) returns for each inbound shard: the entries added since the last poll (entry id and
    MessageSid), the ``dispatch`` group's last-delivered-id (XINFO GROUPS) and its pending
    summary (XPENDING). An entry is acked iff it was delivered (id <= last-delivered-id) and is
    not pending (id < the smallest pending id). The dispatcher acks a batch only after applying
    it to tickets (and queueing the acknowledgement), so "acked" means "on its ticket". The
    first poll that sees an entry acked stamps it: resolution one poll interval + one RTT.
    """

    def __init__(self, redis: Redis, streams: Sequence[str], interval: float) -> None:
        self.redis: Any = redis
        self.script = redis.register_script(POLL_LUA)
        self.streams = list(streams)
        self.interval = interval
        self.cursor = dict.fromkeys(self.streams, "-")
        self.queue: dict[str, deque[tuple[tuple[int, int], str]]] = {
            s: deque() for s in self.streams
        }
        self.acked_at: dict[str, float] = {}
        self.seen = 0
        self.max_backlog = 0
        self.polls = 0
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()

    @property
    def backlog(self) -> int:
        return sum(len(q) for q in self.queue.values())

    async def poll(self) -> None:
        args = [keys.DISPATCH_GROUP, *(self.cursor[s] for s in self.streams)]
        reply = await self.script(keys=self.streams, args=args)
        now = time.perf_counter()
        self.polls += 1
        for s, (last_raw, pending, lowest_raw, ids) in zip(self.streams, reply, strict=True):
            q = self.queue[s]
            for i in range(0, len(ids), 2):
                q.append((parse_id(ids[i]), ids[i + 1].decode()))
            if ids:
                self.cursor[s] = "(" + ids[-2].decode()
                self.seen += len(ids) // 2
            if not last_raw:
                continue  # no dispatch group yet
            last = parse_id(last_raw)
            lowest = parse_id(lowest_raw) if int(pending) else None
            while q and q[0][0] <= last and (lowest is None or q[0][0] < lowest):
                self.acked_at[q.popleft()[1]] = now
        self.max_backlog = max(self.max_backlog, self.backlog)
        self._changed.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def stop(self) -> None:
        self._stop.set()

    async def wait_acked(self, sids: Iterable[str], limit_s: float) -> bool:
        """Until every sid is acked (re-checked after each poll), or ``limit_s`` passes."""
        todo = set(sids)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                while todo - self.acked_at.keys():
                    self._changed.clear()
                    await self._changed.wait()
                return True
        return not (todo - self.acked_at.keys())


# -- processes -----------------------------------------------------------------------------


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

    async def interrupt(self, name: str, limit_s: float) -> None:
        for n, p in self.procs:
            if n == name and p.returncode is None:
                p.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(p.wait(), limit_s)

    async def stop_all(self) -> None:
        """Last started, first stopped: the hub drains before its Redis goes away."""
        for _name, p in reversed(self.procs):
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(p.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()


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


async def wait_ready(url: str, proc: asyncio.subprocess.Process, limit_s: float = 30) -> None:
    async with aiohttp.ClientSession() as s, asyncio.timeout(limit_s):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"hub exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)  # polling readiness


# -- baselines -----------------------------------------------------------------------------


async def redis_benchmark(port: int, pipeline: int, n: int) -> tuple[float, str]:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return float("nan"), "redis-benchmark not found (Debian: redis-tools)"
    argv = [exe, "-h", HOST, "-p", str(port), "-n", str(n), "-q"]
    if pipeline > 1:
        argv += ["-P", str(pipeline)]
    argv += ["XADD", "benchstream", "*", "f", "v"]
    p = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(p.communicate(), 60)
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()
    text = out.decode(errors="replace").replace("\r", "\n")
    found = re.findall(r"([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", text)
    if not found:
        return float("nan"), text.strip()[-200:]
    rps, p50 = found[-1]
    return float(rps), f"p50 {p50} ms" if p50 else ""


async def serve_bare(port: int) -> None:
    from aiohttp import web

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp/{account}", ok)
    await serve_app(app, port)


async def serve_fake_twilio(port: int) -> None:
    from hub.demo.fake_twilio import FakeTwilio

    fake = FakeTwilio({ACCOUNT_SID: AUTH_TOKEN})  # no status callbacks: see README
    await fake.start(port)
    try:
        await until_signalled()
    finally:
        await fake.stop()


async def serve_app(app: Any, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    try:
        await until_signalled()
    finally:
        await runner.cleanup()


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- the hub -------------------------------------------------------------------------------


def hub_toml(port: int, redis_url: str, twilio_url: str, data_dir: Path, log_level: str) -> str:
    """Production defaults for everything the bench does not have to set."""
    return f"""
[hub]
public_url = "http://{HOST}:{port}"
listen_host = "{HOST}"
listen_port = {port}
data_dir = "{data_dir}"
log_format = "json"
log_level = "{log_level}"

[redis]
url = "{redis_url}"

[api]
tokens = [{{ name = "bench", token = "{API_TOKEN}" }}]

[channels.whatsapp.accounts.{ACCOUNT}]
number = "{WA_NUMBER}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
api_base_url = "{twilio_url}"
"""


@dataclass
class Phase:
    name: str
    load: LoadResult
    acked_at: dict[str, float]
    hub_cpu: float
    redis_cpu: float
    self_cpu: float
    tickets_opened: int
    max_backlog: int
    complete: bool

    @property
    def e2e_ms(self) -> dict[str, float]:
        """Webhook → acked, per MessageSid, for the accepted messages seen acked."""
        sent = self.load.sent_at
        return {s: (t - sent[s]) * 1000 for s, t in self.acked_at.items() if s in sent}

    @property
    def last_ack(self) -> float:
        return max(self.acked_at.values(), default=float("nan"))

    @property
    def e2e_rate(self) -> float:
        n = len(self.acked_at)
        return n / (self.last_ack - self.load.started) if n else 0.0

    def per_msg_us(self, cpu: float) -> float:
        return cpu / self.load.ok * 1e6 if self.load.ok else float("nan")


async def count_tickets(r: Any) -> int:
    return int(await r.zcard(keys.ticket_index()))


async def run_phase(
    name: str,
    go: Callable[[], Any],
    tracker: AckTracker,
    r: Any,
    pids: dict[str, int],
    drain_s: float,
) -> Phase:
    tickets0 = await count_tickets(r)
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    self0 = time.process_time()
    tracker.max_backlog = tracker.backlog
    load: LoadResult = await go()
    complete = await tracker.wait_acked(load.answered_at, drain_s)
    cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
    return Phase(
        name,
        load,
        {s: tracker.acked_at[s] for s in load.answered_at if s in tracker.acked_at},
        cpu1["hub"] - cpu0["hub"],
        cpu1["redis"] - cpu0["redis"],
        time.process_time() - self0,
        await count_tickets(r) - tickets0,
        tracker.max_backlog,
        complete,
    )


async def start_profile(procs: Procs, pid: int) -> Path | None:
    """py-spy (if installed) sampling the hub until SIGINT, as collapsed stacks in a file."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        say("--profile: py-spy not found (.venv/bin/pip install py-spy); not profiling")
        return None
    out = procs.logdir / "hub-profile.txt"
    await procs.start(
        "py-spy",
        *(exe, "record", "--nonblocking", "--rate", "200", "--format", "raw"),
        *("--pid", str(pid), "--output", str(out)),
    )
    return out


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


def by_second(ph: Phase) -> str:
    """Per second of sending: webhook → acked p50/p99 (ms) of the messages sent then."""
    buckets: dict[int, list[float]] = {}
    for sid, at in ph.load.sent_at.items():
        if sid in ph.acked_at:
            b = int(at - ph.load.started)
            buckets.setdefault(b, []).append((ph.acked_at[sid] - at) * 1000)
    return "  ".join(f"{b}s:{pct(v, 50):.0f}/{pct(v, 99):.0f}" for b, v in sorted(buckets.items()))


# -- the run -------------------------------------------------------------------------------


@dataclass
class Figures:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, metric: str, hub: float, base: float, base_name: str, fmt: str = ".0f") -> None:
        ratio = f"{hub / base:.2f}" if base and base == base and hub == hub else "-"
        self.rows.append((metric, format(hub, fmt), f"{format(base, fmt)} {base_name}", ratio))

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


def say(msg: str) -> None:
    print(msg, flush=True)


async def bench(args: argparse.Namespace) -> int:
    rnd = random.Random(args.seed)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    procs = Procs(tmp)
    ok = False
    redis: Any = None
    tracker_task: asyncio.Task[None] | None = None
    try:
        # redis-server, and the XADD baselines against it
        rport = free_port()
        rproc = await procs.start(
            "redis",
            shutil.which("redis-server") or "redis-server",
            *("--port", str(rport), "--bind", HOST, "--save", "", "--appendonly", "no"),
            *("--dir", str(tmp), "--daemonize", "no"),
        )
        await wait_port(rport, rproc)
        redis = Redis(host=HOST, port=rport)
        say(f"redis-server {rport}; temp dir {tmp}")
        xadd1, note1 = await redis_benchmark(rport, 1, args.xadd_n)
        xadd16, note16 = await redis_benchmark(rport, 16, args.xadd_n)
        say(f"redis-benchmark XADD: {xadd1:,.0f} req/s ({note1}); -P 16: {xadd16:,.0f} ({note16})")
        await redis.flushall()

        # the bare aiohttp handler, through the same load generator
        me = [sys.executable, "-m", "bench.webhook_to_ticket"]
        bport = free_port()
        bproc = await procs.start("bare", *me, "--serve", "bare", "--port", str(bport))
        await wait_port(bport, bproc)
        taken: set[str] = set()
        path = f"/webhooks/whatsapp/{ACCOUNT}"
        pool = from_pool(make_citizens(args.citizens, rnd, taken), rnd)
        bare_reqs = make_requests(args.burst_n, pool, set(), f"http://x{path}", rnd)
        await closed_loop(f"http://{HOST}:{bport}{path}", bare_reqs[:500], args.concurrency, 5)
        bare = await closed_loop(
            f"http://{HOST}:{bport}{path}", bare_reqs, args.concurrency, args.burst_s
        )
        bare_lat = bare.latencies_ms()
        say(
            f"bare aiohttp, {args.concurrency} in flight: {bare.rate:,.0f} req/s, "
            f"p50 {pct(bare_lat, 50):.1f} ms, p99 {pct(bare_lat, 99):.1f} ms"
        )

        # fake Twilio and the hub
        tport, hport = free_port(), free_port()
        tproc = await procs.start(
            "fake-twilio", *me, "--serve", "fake-twilio", "--port", str(tport)
        )
        await wait_port(tport, tproc)
        cfg = tmp / "hub.toml"
        cfg.write_text(
            hub_toml(
                hport,
                f"redis://{HOST}:{rport}/0",
                f"http://{HOST}:{tport}",
                tmp / "hub",
                args.hub_log_level,
            )
        )
        hproc = await procs.start("hub", sys.executable, "-m", "hub", "run", "--config", str(cfg))
        await wait_ready(f"http://{HOST}:{hport}/readyz", hproc)
        settings = load_settings(cfg)
        shards = [keys.inbound_stream(i) for i in range(settings.redis.inbound_shards)]
        say(f"hub up on {hport} (pid {hproc.pid}), inbound shards: {', '.join(shards)}")
        tracker = AckTracker(redis, shards, args.poll_ms / 1000)
        tracker_task = asyncio.create_task(tracker.run())
        pids = {"hub": hproc.pid, "redis": rproc.pid}
        hub_url = f"http://{HOST}:{hport}{path}"
        signed = settings.hub.public_url + path  # the URL the hub verifies signatures on

        pool = from_pool(make_citizens(args.citizens, rnd, taken), rnd)
        burst_reqs = make_requests(args.burst_n, pool, set(), signed, rnd)
        profile = await start_profile(procs, hproc.pid) if args.profile else None
        burst = await run_phase(
            "burst",
            lambda: closed_loop(hub_url, burst_reqs, args.concurrency, args.burst_s),
            tracker, redis, pids, args.drain_s,
        )  # fmt: skip
        lat = burst.load.latencies_ms()
        say(
            f"hub burst, {args.concurrency} in flight: {burst.load.ok:,} accepted at "
            f"{burst.load.rate:,.0f} msg/s (p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms);"
            f" acked at {burst.e2e_rate:,.0f} msg/s end to end, backlog peak "
            f"{burst.max_backlog:,}, {burst.tickets_opened:,} tickets opened"
        )

        rate = args.rate or max(100.0, min(1000.0, round(burst.e2e_rate * 0.5, -1)))
        n_steady = int(rate * args.steady_s)
        known = list(
            dict.fromkeys(r.citizen for r in burst_reqs if r.sid in burst.load.answered_at)
        )
        steady_reqs = make_requests(
            n_steady,
            mixed(known, args.new_share, rnd, taken),
            {c.phone for c in known},
            signed,
            rnd,
        )
        steady = await run_phase(
            "steady",
            lambda: open_loop(hub_url, steady_reqs, rate, args.concurrency),
            tracker, redis, pids, args.drain_s,
        )  # fmt: skip
        say(
            f"hub steady {rate:,.0f} msg/s for {args.steady_s:g} s: {steady.load.ok:,} accepted, "
            f"{steady.load.late} sent late, {steady.tickets_opened:,} tickets opened"
        )
        if profile is not None:
            await procs.interrupt("py-spy", 30)  # py-spy writes its file on SIGINT
        tracker.stop()  # the tracker's polling must not load the box during the bare run
        await tracker_task
        bare_steady = await open_loop(
            f"http://{HOST}:{bport}{path}", bare_reqs[:n_steady], rate, args.concurrency
        )

        # everything accounted for?
        problems = []
        for ph in (burst, steady):
            bad = {k: v for k, v in ph.load.statuses.items() if k != 200}
            if bad or ph.load.errors:
                problems.append(f"{ph.name}: non-200 {bad}, client errors {ph.load.errors}")
            if not ph.complete:
                missing = ph.load.ok - len(ph.acked_at)
                problems.append(f"{ph.name}: {missing} accepted messages not acked in time")
        accepted = burst.load.ok + steady.load.ok
        stored = sum([await redis.xlen(s) for s in shards])
        dead = sum([await redis.xlen(keys.dead_letters(s)) for s in shards])
        applied = 0
        async for k in redis.scan_iter(match="hub:c:{*}:seen", count=1000):
            applied += await redis.hlen(k)
        if stored != accepted or applied != accepted or dead:
            problems.append(
                f"accepted {accepted}, in streams {stored}, on tickets {applied}, dead {dead}"
            )
        opened = await count_tickets(redis)
        acks_sent = await sent_acks(f"http://{HOST}:{tport}", opened, args.drain_s)
        say(
            f"check: {accepted:,} accepted = {stored:,} in streams = {applied:,} on tickets; "
            f"{dead} dead letters; {opened:,} tickets, {acks_sent:,} acknowledgements sent "
            "to fake Twilio"
        )

        f = Figures()
        f.add("webhook accept, closed loop (msg/s)", burst.load.rate, bare.rate, "bare aiohttp")
        f.add("  POST p50 at saturation (ms)", pct(lat, 50), pct(bare_lat, 50), "bare", ".1f")
        f.add("  POST p99 at saturation (ms)", pct(lat, 99), pct(bare_lat, 99), "bare", ".1f")
        f.add("webhook→acked ticket (msg/s)", burst.e2e_rate, bare.rate, "bare aiohttp")
        f.add("  same, vs redis XADD (msg/s)", burst.e2e_rate, xadd1, "XADD -P1")
        f.add("  same, vs redis XADD pipelined (msg/s)", burst.e2e_rate, xadd16, "XADD -P16")
        slat, blat = steady.load.latencies_ms(), bare_steady.latencies_ms()
        sr = f"@{rate:.0f}/s"
        f.add(f"POST p50 {sr} (ms)", pct(slat, 50), pct(blat, 50), "bare", ".1f")
        f.add(f"POST p99 {sr} (ms)", pct(slat, 99), pct(blat, 99), "bare", ".1f")
        e2e_by_sid = steady.e2e_ms
        e2e = list(e2e_by_sid.values())
        firsts = {r.sid for r in steady_reqs if r.first}
        e2e_new = [x for sid, x in e2e_by_sid.items() if sid in firsts]
        e2e_old = [x for sid, x in e2e_by_sid.items() if sid not in firsts]
        f.add(f"webhook→acked p50 {sr} (ms)", pct(e2e, 50), pct(blat, 50), "bare POST", ".1f")
        f.add(f"webhook→acked p99 {sr} (ms)", pct(e2e, 99), pct(blat, 99), "bare POST", ".1f")
        f.note(f"webhook→acked max {sr} (ms)", f"{max(e2e, default=float('nan')):.1f}")
        f.note(
            f"  opening a ticket ({len(e2e_new)}) p50/p99 (ms)",
            f"{pct(e2e_new, 50):.1f} / {pct(e2e_new, 99):.1f}",
        )
        f.note(
            f"  appended to one ({len(e2e_old)}) p50/p99 (ms)",
            f"{pct(e2e_old, 50):.1f} / {pct(e2e_old, 99):.1f}",
        )
        b = burst
        f.note("hub CPU per message, burst (µs)", f"{b.per_msg_us(b.hub_cpu):.0f}")
        f.note("redis CPU per message, burst (µs)", f"{b.per_msg_us(b.redis_cpu):.0f}")
        f.note("load generator CPU per message (µs)", f"{b.per_msg_us(b.self_cpu):.0f}")
        f.note("ack poll interval (ms)", f"{args.poll_ms:g} ({tracker.polls:,} polls)")
        f.note("whole run so far (s)", f"{time.perf_counter() - t_start:.0f}")
        say(f"steady e2e p50/p99 ms by second of sending: {by_second(steady)}")
        say("")
        say(f.render())
        if profile is not None and profile.exists():
            say(f"\nhub profile, burst and steady phases (py-spy, {profile}):")
            say(summarize_profile(profile))
        if problems:
            say("\nPROBLEMS:\n  " + "\n  ".join(problems))
            say("hub log tail:\n" + procs.tail("hub"))
        ok = not problems
        return 0 if ok else 1
    finally:
        if tracker_task is not None:
            tracker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await tracker_task
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.aclose()
        await procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"logs kept in {tmp}")


async def sent_acks(twilio_url: str, expected: int, limit_s: float) -> int:
    """How many acknowledgements the fake Twilio accepted (waits for ``expected``)."""
    n = 0
    async with aiohttp.ClientSession() as s:
        deadline = time.perf_counter() + limit_s
        while True:
            async with s.get(f"{twilio_url}/_fake/messages") as r:
                n = len(await r.json())
            if n >= expected or time.perf_counter() > deadline:
                return n
            await asyncio.sleep(0.2)  # polling the fake's record


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight (closed loop)")
    p.add_argument("--citizens", type=int, default=2000, help="distinct phones, burst phase")
    p.add_argument(
        "--new-share", type=float, default=0.1, help="steady phase: share of new citizens"
    )
    p.add_argument("--burst-n", type=int, default=20_000, help="messages in the closed-loop phase")
    p.add_argument("--burst-s", type=float, default=12.0, help="time cap of the closed-loop phase")
    p.add_argument("--rate", type=float, default=0.0, help="steady msg/s (0: half the burst e2e)")
    p.add_argument("--steady-s", type=float, default=10.0, help="length of the steady phase")
    p.add_argument("--drain-s", type=float, default=30.0, help="wait at most this for acks")
    p.add_argument("--xadd-n", type=int, default=100_000, help="redis-benchmark -n")
    p.add_argument("--poll-ms", type=float, default=2.0, help="ack tracker poll interval")
    p.add_argument("--hub-log-level", default="info", choices=["debug", "info", "warning"])
    p.add_argument("--profile", action="store_true", help="py-spy the hub (needs py-spy)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    p.add_argument("--serve", choices=["bare", "fake-twilio"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p


async def _main(args: argparse.Namespace) -> int:
    if args.serve == "bare":
        await serve_bare(args.port)
        return 0
    if args.serve == "fake-twilio":
        await serve_fake_twilio(args.port)
        return 0
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)  # unwind through the finally blocks
    try:
        return await bench(args)
    except asyncio.CancelledError:
        say("interrupted; everything started was stopped")
        return 130


def main() -> int:
    args = _parser().parse_args()
    return int(new_loop_runner(_main(args)))


if __name__ == "__main__":
    sys.exit(main())
