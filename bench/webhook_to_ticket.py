"""Webhook → stream → acked ticket: how fast the hub takes signed WhatsApp (Twilio) webhooks
and turns them into tickets, next to what the same load generator gets from a bare aiohttp
handler, from the ideal ingest handler, and what the same Redis does with ``redis-benchmark``
XADDs. See bench/README.md for what each figure means.

One run starts, on 127.0.0.1 only, and stops on the way out (on error or SIGTERM too):
  * its own redis-server (free port, no persistence);
  * a bare aiohttp server (separate process) answering 200 "ok";
  * the ideal ingest handler (separate process): verify, parse, coalesced XADD;
  * a fake Twilio (separate process) so the hub's acknowledgements can be sent;
  * the hub, per phase: ``python -m hub run --config <generated toml> [--role ...]``;
  * the load generator (``bench.loadgen``), a process per measurement.

Phases (``--phases``, in this order by default):
  ingest  the hub's web role alone vs bare vs ideal, closed loop, several rounds;
  split   web role + dispatcher/sender roles in two processes: burst, then 1,000 msg/s steady;
  single  every role in one process: burst, then steady at half the burst's rate.

Internal modes (used by the orchestrator): ``--serve bare|ideal|fake-twilio --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import pickle
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from redis.asyncio import Redis

from adapters import keys
from bench.common import (
    ACCOUNT,
    ACCOUNT_SID,
    AUTH_TOKEN,
    FORM,
    HOST,
    ROOT,
    WA_NUMBER,
    cpu_seconds,
    free_port,
    make_citizens,
    new_loop_runner,
    say,
    summarize_profile,
    until_interrupted,
    wait_port,
)
from bench.loadgen import Result, Spec
from hub.demo.simulate import FOLLOW_UPS, TOPICS, Citizen, sign, twilio_params
from hub.settings import load_settings

API_TOKEN = "bench-api-token-0123456789abcdef"
PATH = f"/webhooks/whatsapp/{ACCOUNT}"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
PHASES = ("ingest", "split", "single")
DEFAULT_PHASES = ("split", "single")  # ingest has its own entry in bench/run: bench.ingest


# -- small helpers -------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when there is nothing to rank."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


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
        headers = {
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "Content-Type": FORM,
            "X-Twilio-Signature": sign(AUTH_TOKEN, signed_url, p),
        }
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
    cpu_s: float = 0.0  # the load generator's CPU time while sending

    @property
    def ok(self) -> int:
        return len(self.answered_at)

    @property
    def rate(self) -> float:
        return self.ok / (self.finished - self.started) if self.finished > self.started else 0.0

    def latencies_ms(self) -> list[float]:
        return [(t - self.sent_at[s]) * 1000 for s, t in self.answered_at.items()]

    def non_200(self) -> dict[int, int]:
        return {k: v for k, v in self.statuses.items() if k != 200}


@dataclass
class LoadGen:
    """Runs ``bench.loadgen`` in a process of its own (so the orchestrator's ack tracker and
    the generator do not share a loop), the same way for every server under test."""

    procs: Procs
    client: str
    concurrency: int
    runs: int = 0

    async def run(
        self,
        port: int,
        reqs: Sequence[Req],
        *,
        mode: str = "closed",
        seconds: float = 12.0,
        rate: float = 0.0,
        warmup: Sequence[Req] = (),
        started: asyncio.Event | None = None,
    ) -> LoadResult:
        self.runs += 1
        spec = Spec(
            host=HOST,
            port=port,
            path=PATH,
            requests=[(r.headers, r.body) for r in reqs],
            mode=mode,
            concurrency=self.concurrency,
            seconds=seconds,
            rate=rate,
            client=self.client,
            warmup=[(r.headers, r.body) for r in warmup],
        )
        spec_path = self.procs.logdir / f"load-{self.runs}.spec"
        out_path = self.procs.logdir / f"load-{self.runs}.result"
        spec_path.write_bytes(pickle.dumps(spec))
        name = f"loadgen-{self.runs}"
        p = await self.procs.start(
            name, sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)
        )
        if started is not None:
            started.set()
        limit = seconds + 60 if mode == "closed" else len(reqs) / rate + 60
        try:
            rc = await asyncio.wait_for(p.wait(), limit + len(warmup) / 100)
        except TimeoutError:
            await self.procs.stop(name)
            raise RuntimeError(f"load generator stuck:\n{self.procs.tail(name)}") from None
        if rc != 0 or not out_path.exists():
            raise RuntimeError(f"load generator exited with {rc}:\n{self.procs.tail(name)}")
        raw: Result = pickle.loads(out_path.read_bytes())  # noqa: S301 - our own file
        spec_path.unlink()
        out_path.unlink()
        res = LoadResult(
            statuses=raw.statuses,
            errors=raw.errors,
            late=raw.late,
            started=raw.started,
            finished=raw.finished,
            cpu_s=raw.cpu_s,
        )
        for r, sent, answered in zip(reqs, raw.sent_at, raw.answered_at, strict=True):
            if sent:
                res.sent_at[r.sid] = sent
            if answered:
                res.answered_at[r.sid] = answered
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
  local last, p = '', {0, false}
  -- the stream and its group exist once the hub's dispatcher has started (it may not yet)
  if redis.call('EXISTS', s) == 1 then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local name, ld = nil, nil
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then
          ld = g[j + 1] end
      end
      if name == ARGV[1] then last = ld end
    end
    if last ~= '' then p = redis.call('XPENDING', s, ARGV[1]) end
  end
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

    async def start(self, name: str, *argv: str, cwd: Path = ROOT) -> asyncio.subprocess.Process:
        log = (self.logdir / f"{name}.log").open("wb")
        try:
            p = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, stdout=log, stderr=asyncio.subprocess.STDOUT
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

    async def stop(self, name: str) -> None:
        """SIGTERM (SIGKILL after 10 s) to the running processes called ``name``."""
        for n, p in self.procs:
            if n == name and p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(p.wait(), 10)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    await p.wait()

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


async def wait_log(
    path: Path, needle: str, proc: asyncio.subprocess.Process, limit_s: float = 30
) -> None:
    """Until ``needle`` appears in the process's log (a role without an HTTP server)."""
    async with asyncio.timeout(limit_s):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"{path.stem} exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                if needle in path.read_text(errors="replace"):
                    return
            await asyncio.sleep(0.1)  # polling the log


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


class CoalescingXadd:
    """The ideal shape of the ingest write: the XADDs of one loop turn in one pipeline, each
    caller waiting for its own entry id."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.pending: list[tuple[str, str, asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    def add(self, stream: str, value: str) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((stream, value, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.flush())
        return fut

    async def flush(self) -> None:
        await asyncio.sleep(0)  # the other handlers of this loop turn add theirs
        while self.pending:
            batch, self.pending = self.pending, []
            pipe = self.redis.pipeline(transaction=False)
            for stream, value, _ in batch:
                pipe.xadd(stream, {"m": value})
            try:
                ids = await pipe.execute()
            except Exception as exc:
                for *_, fut in batch:
                    fut.set_exception(exc)
                continue
            for (*_, fut), eid in zip(batch, ids, strict=True):
                fut.set_result(eid)


IDEAL_STREAMS = [f"bench:ideal:{{s{i}}}" for i in range(4)]


async def serve_ideal(port: int, redis_url: str, signed_url: str) -> None:
    """The minimal handler that still does the job: verify the Twilio signature (one HMAC over
    the configured URL), parse the form, XADD (coalesced) to the sender's shard, answer after
    the XADD with the same empty TwiML as the hub. No logging, no metrics, no middleware."""
    from aiohttp import web

    token = AUTH_TOKEN.encode()
    redis = Redis.from_url(redis_url)
    xadd = CoalescingXadd(redis)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        s = signed_url + "".join(k + form[k] for k in sorted(form))
        mac = base64.b64encode(hmac.new(token, s.encode(), hashlib.sha1).digest())
        if not hmac.compare_digest(mac, request.headers.get("X-Twilio-Signature", "").encode()):
            return web.Response(status=403, text="bad signature")
        shard = zlib.crc32(form.get("From", "").encode()) % len(IDEAL_STREAMS)
        await xadd.add(IDEAL_STREAMS[shard], json.dumps(form, ensure_ascii=False))
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp/{account}", handle)
    try:
        await serve_app(app, port)
    finally:
        await redis.aclose()


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


def hub_toml(
    port: int,
    redis_url: str,
    twilio_url: str,
    data_dir: Path,
    log_level: str,
    listen_port: int = 0,
) -> str:
    """Production defaults for everything the bench does not have to set. ``listen_port``
    (default ``port``): where it listens, when that is not the port of its public URL."""
    return f"""
[hub]
public_url = "http://{HOST}:{port}"
listen_host = "{HOST}"
listen_port = {listen_port or port}
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
    cpu: dict[str, float]  # CPU seconds over the phase, per process name (and "loadgen")
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
    go: Callable[[], Awaitable[LoadResult]],
    tracker: AckTracker,
    r: Any,
    pids: dict[str, int],
    drain_s: float,
) -> Phase:
    tickets0 = await count_tickets(r)
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    tracker.max_backlog = tracker.backlog
    load = await go()
    complete = await tracker.wait_acked(load.answered_at, drain_s)
    cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
    cpu["loadgen"] = load.cpu_s
    return Phase(
        name,
        load,
        {s: tracker.acked_at[s] for s in load.answered_at if s in tracker.acked_at},
        cpu,
        await count_tickets(r) - tickets0,
        tracker.max_backlog,
        complete,
    )


async def start_profile(procs: Procs, pid: int, name: str = "py-spy") -> Path | None:
    """py-spy (if installed) sampling process ``pid`` until SIGINT (``stop_profile``), as
    collapsed stacks in ``<name>.txt`` in the run's directory."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        say("--profile: py-spy not found (.venv/bin/pip install py-spy); not profiling")
        return None
    out = procs.logdir / f"{name}.txt"
    await procs.start(
        name,
        *(exe, "record", "--nonblocking", "--rate", "200", "--format", "raw"),
        *("--pid", str(pid), "--output", str(out)),
    )
    return out


async def stop_profile(procs: Procs, name: str, path: Path | None) -> None:
    if path is None:
        return
    await procs.interrupt(name, 30)  # py-spy writes its file on SIGINT
    if path.exists():
        say(f"\nprofile {name} (py-spy, {path}):")
        say(summarize_profile(path))


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

    def row(self, metric: str, value: str) -> None:
        """A row whose value spans the table (its own medians and ratios)."""
        self.rows.append((metric, value, "\0", ""))

    def section(self, title: str) -> None:
        self.rows.append((title, "\0", "", ""))

    def render(self) -> str:
        head = ("metric", "hub", "baseline", "ratio")
        plain = [r for r in self.rows if "\0" not in r]
        w = [max(len(r[i]) for r in [head, *plain]) for i in range(4)]
        w[0] = max([w[0], *(len(r[0]) for r in self.rows if r[2] == "\0")])
        line = "-+-".join("-" * x for x in w)
        out = [" | ".join(c.ljust(w[i]) for i, c in enumerate(head)), line]
        for r in self.rows:
            if r[1] == "\0":
                out += ["", f"== {r[0]}"]
            elif r[2] == "\0":
                out.append(f"{r[0].ljust(w[0])} | {r[1]}")
            else:
                out.append(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
        return "\n".join(out)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], fmt: str = ".2f") -> str:
    """``median (min–max, n runs)``, or the one value."""
    if len(values) < 2:
        return format(values[0], fmt) if values else "-"
    return f"{format(median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


@dataclass
class Ingest:
    """One closed-loop run against one server of the ingest phase."""

    target: str
    load: LoadResult
    server_cpu_s: float
    redis_cpu_s: float

    def per_msg_us(self, cpu: float) -> float:
        return cpu / self.load.ok * 1e6 if self.load.ok else float("nan")


class Bench:
    """The run: its processes, its Redis, its requests; one method per phase."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rnd = random.Random(args.seed)
        self.t_start = time.perf_counter()
        self.tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
        self.procs = Procs(self.tmp)
        self.loadgen = LoadGen(self.procs, args.client, args.concurrency)
        self.redis: Any = None
        self.taken: set[str] = set()
        self.problems: list[str] = []
        self.figures = Figures()
        self.bare_rates: list[float] = []
        self.hport = free_port()
        self.signed = f"http://{HOST}:{self.hport}{PATH}"  # the URL every request is signed on
        self.me = [sys.executable, "-m", "bench.webhook_to_ticket"]
        self.hubs = 0

    # -- shared pieces ---------------------------------------------------------------------

    def requests(self, n: int, pool: Sequence[Citizen], seen: set[str] | None = None) -> list[Req]:
        return make_requests(n, from_pool(pool, self.rnd), set() if seen is None else seen,
                             self.signed, self.rnd)  # fmt: skip

    async def setup(self) -> None:
        args = self.args
        self.rport = free_port()
        self.rproc = await self.procs.start(
            "redis",
            shutil.which("redis-server") or "redis-server",
            *("--port", str(self.rport), "--bind", HOST, "--save", "", "--appendonly", "no"),
            *("--dir", str(self.tmp), "--daemonize", "no"),
        )
        await wait_port(self.rport, self.rproc)
        self.redis_url = f"redis://{HOST}:{self.rport}/0"
        self.redis = Redis(host=HOST, port=self.rport)
        say(f"redis-server {self.rport}; temp dir {self.tmp}; load generator: {args.client}, "
            f"{args.concurrency} connections")  # fmt: skip
        self.xadd1 = self.xadd16 = float("nan")
        if args.xadd_n:
            self.xadd1, note1 = await redis_benchmark(self.rport, 1, args.xadd_n)
            self.xadd16, note16 = await redis_benchmark(self.rport, 16, args.xadd_n)
            say(f"redis-benchmark XADD: {self.xadd1:,.0f} req/s ({note1}); "
                f"-P 16: {self.xadd16:,.0f} ({note16})")  # fmt: skip
            await self.redis.flushall()
        self.bport = free_port()
        self.bproc = await self.procs.start(
            "bare", *self.me, "--serve", "bare", "--port", str(self.bport)
        )
        await wait_port(self.bport, self.bproc)
        self.tport = free_port()
        tproc = await self.procs.start(
            "fake-twilio", *self.me, "--serve", "fake-twilio", "--port", str(self.tport)
        )
        await wait_port(self.tport, tproc)
        self.cfg = self.tmp / "hub.toml"
        self.cfg.write_text(
            hub_toml(
                self.hport,
                self.redis_url,
                f"http://{HOST}:{self.tport}",
                self.tmp / "hub",
                args.hub_log_level,
            )
        )
        settings = load_settings(self.cfg)
        assert settings.hub.public_url + PATH == self.signed
        self.shards = [keys.inbound_stream(i) for i in range(settings.redis.inbound_shards)]
        self.warm = self.requests(500, make_citizens(200, self.rnd, self.taken))

    async def start_hub(
        self, name: str, roles: Sequence[str], tree: Path = ROOT, cfg: Path | None = None,
        port: int = 0,
    ) -> asyncio.subprocess.Process:  # fmt: skip
        """``python -m hub run`` with ``roles``; from the source tree ``tree`` (``-m`` puts
        the working directory first on the path), with ``cfg`` listening on ``port``."""
        argv = [sys.executable, "-m", "hub", "run", "--config", str(cfg or self.cfg)]
        for r in roles:
            argv += ["--role", r]
        p = await self.procs.start(name, *argv, cwd=tree)
        if not roles or "web" in roles:
            await wait_ready(f"http://{HOST}:{port or self.hport}/readyz", p)
        else:
            await wait_log(self.procs.logdir / f"{name}.log", '"hub.started"', p)
        return p

    async def bare_rate(self) -> float:
        """The bare handler's closed-loop rate: measured in the ingest rounds, or once here."""
        if not self.bare_rates:
            pool = make_citizens(self.args.citizens, self.rnd, self.taken)
            res = await self.loadgen.run(self.bport, self.requests(self.args.burst_n, pool),
                                         seconds=self.args.burst_s, warmup=self.warm)  # fmt: skip
            self.bare_rates.append(res.rate)
            lat = res.latencies_ms()
            say(f"bare aiohttp: {res.rate:,.0f} req/s, p50 {pct(lat, 50):.1f} ms, "
                f"p99 {pct(lat, 99):.1f} ms")  # fmt: skip
        return median(self.bare_rates)

    async def stream_total(self, streams: Sequence[str]) -> int:
        return sum([int(await self.redis.xlen(s)) for s in streams])

    async def reset(self) -> None:
        """Between phases: nothing of one phase's data is seen by the next hub."""
        await self.redis.flushall()

    # -- phase: ingest ---------------------------------------------------------------------

    async def ingest(self) -> None:
        """Webhooks in, messages on the stream, nothing else: the bare handler, the ideal
        handler and the hub's web role (a process of its own), one after another, each round
        in the same order; the ratios of each round are side by side on the same machine."""
        args = self.args
        iport = free_port()
        iproc = await self.procs.start(
            "ideal", *self.me, "--serve", "ideal", "--port", str(iport),
            "--redis-url", self.redis_url, "--signed-url", self.signed,
        )  # fmt: skip
        await wait_port(iport, iproc)
        web = await self.start_hub("hub-web-ingest", ["web"])
        say(f"ingest: bare on {self.bport}, ideal on {iport}, hub --role web on {self.hport}")
        reqs = self.requests(args.ingest_n, make_citizens(args.citizens, self.rnd, self.taken))
        targets = [("bare", self.bport, self.bproc.pid), ("ideal", iport, iproc.pid),
                   ("hub", self.hport, web.pid)]  # fmt: skip
        others: list[str] = []  # the same hub from other source trees (--tree)
        for tree in args.tree:
            # On its own port, with the same public URL (every request is signed for it) and
            # the same streams.
            name = tree.resolve().name
            if name in {"hub", "bare", "ideal", *others}:
                name = f"{name}-{len(others) + 1}"
            oport = free_port()
            ocfg = self.tmp / f"hub-{name}.toml"
            ocfg.write_text(self.cfg.read_text().replace(
                f"listen_port = {self.hport}", f"listen_port = {oport}"))  # fmt: skip
            old = await self.start_hub(f"hub-web-{name}", ["web"], tree, ocfg, oport)
            say(f"ingest: the hub from {tree} ('{name}') on {oport}")
            targets.append((name, oport, old.pid))
            others.append(name)
        profile = None
        if args.profile:
            profile = await start_profile(self.procs, web.pid, "profile-hub-web-ingest")
        runs: dict[str, list[Ingest]] = {t: [] for t, _, _ in targets}
        sent = dict.fromkeys(runs, 0)
        for rnd in range(args.ingest_rounds):
            line = []
            for target, port, pid in targets:
                await self.loadgen.run(port, self.warm)  # connections, pools, caches
                c0, r0 = cpu_seconds(pid), cpu_seconds(self.rproc.pid)
                res = await self.loadgen.run(port, reqs, seconds=args.ingest_s)
                run = Ingest(target, res, cpu_seconds(pid) - c0, cpu_seconds(self.rproc.pid) - r0)
                runs[target].append(run)
                sent[target] += res.ok + len(self.warm)
                if res.non_200() or res.errors:
                    self.problems.append(f"ingest {target}: non-200 {res.non_200()}, "
                                         f"client errors {res.errors}")  # fmt: skip
                line.append(f"{target} {res.rate:,.0f}")
            bare, ideal, hub = (runs[t][-1].load.rate for t in ("bare", "ideal", "hub"))
            extra = "".join(f", {t}/bare {runs[t][-1].load.rate / bare:.2f}" for t in others)
            say(
                f"ingest round {rnd + 1}: " + ", ".join(line) + f" msg/s; hub/bare "
                f"{hub / bare:.2f}, ideal/bare {ideal / bare:.2f}, hub/ideal {hub / ideal:.2f}"
                + extra
            )
        await stop_profile(self.procs, "profile-hub-web-ingest", profile)
        self.bare_rates += [r.load.rate for r in runs["bare"]]
        in_hub, in_ideal = (
            await self.stream_total(self.shards),
            await self.stream_total(IDEAL_STREAMS),
        )
        hub_sent = sent["hub"] + sum(sent[t] for t in others)  # the same streams
        if in_hub != hub_sent or in_ideal != sent["ideal"]:
            self.problems.append(
                f"ingest: hub accepted {hub_sent}, on its streams {in_hub}; "
                f"ideal accepted {sent['ideal']}, on its streams {in_ideal}"
            )
        say(f"ingest check: hub {hub_sent:,} accepted = {in_hub:,} on the streams; "
            f"ideal {sent['ideal']:,} = {in_ideal:,}")  # fmt: skip
        for t in others:
            await self.procs.stop(f"hub-web-{t}")
        await self.procs.stop("hub-web-ingest")
        await self.procs.stop("ideal")
        await self.reset()

        f = self.figures
        f.section(f"ingest: hub --role web alone, closed loop, {args.ingest_rounds} round(s); "
                  "median (min–max)")  # fmt: skip
        rate = {t: [r.load.rate for r in v] for t, v in runs.items()}

        def ratio(a: str, b: str) -> list[float]:
            return [x / y for x, y in zip(rate[a], rate[b], strict=True)]

        names = ["hub", "bare", "ideal", *others]
        f.row("accepted msg/s: " + " / ".join(names),
              " / ".join(spread(rate[t], ",.0f") for t in names))  # fmt: skip
        f.row("  hub ÷ bare (target ≥ 0.35)", spread(ratio("hub", "bare")))
        for t in others:
            f.row(f"  {t} ÷ bare", spread(ratio(t, "bare")))
            f.row(f"  hub ÷ {t}", spread(ratio("hub", t)))
        f.row("  ideal ÷ bare", spread(ratio("ideal", "bare")))
        f.row("  hub ÷ ideal", spread(ratio("hub", "ideal")))
        cpu = {t: [r.per_msg_us(r.server_cpu_s) for r in v] for t, v in runs.items()}
        by_cpu = [b / h for b, h in zip(cpu["bare"], cpu["hub"], strict=True)]
        f.row("  hub ÷ bare by server CPU per message", spread(by_cpu))
        for t in others:
            by_cpu = [b / h for b, h in zip(cpu["bare"], cpu[t], strict=True)]
            f.row(f"  {t} ÷ bare by server CPU per message", spread(by_cpu))
        for t in names:
            lat = [pct(r.load.latencies_ms(), 50) for r in runs[t]]
            lat99 = [pct(r.load.latencies_ms(), 99) for r in runs[t]]
            f.row(f"  {t} POST p50 / p99 (ms)", f"{spread(lat, '.1f')} / {spread(lat99, '.1f')}")
        for t in names:
            rcpu = [r.per_msg_us(r.redis_cpu_s) for r in runs[t]]
            gen = [r.per_msg_us(r.load.cpu_s) for r in runs[t]]
            f.row(
                f"  {t}: CPU µs/msg server / redis / load generator",
                f"{spread(cpu[t], '.0f')} / {spread(rcpu, '.0f')} / {spread(gen, '.0f')}",
            )

    # -- phases with tickets -----------------------------------------------------------------

    async def tickets_phase(self, kind: str) -> None:
        """``split``: the web role and the dispatcher + sender roles in two processes (both
        cores); ``single``: every role in one process. Burst (closed loop), then steady (open
        loop): rate to the acked ticket and POST → acked latency."""
        args = self.args
        bare = await self.bare_rate()
        if kind == "split":
            web = await self.start_hub("hub-web", ["web"])
            workers = await self.start_hub("hub-workers", ["dispatcher", "sender"])
            pids = {"web": web.pid, "workers": workers.pid, "redis": self.rproc.pid}
            profiled = {"web": web.pid, "workers": workers.pid}
            title = "split: hub --role web + hub --role dispatcher --role sender (2 processes)"
        else:
            hub = await self.start_hub("hub", [])
            pids = {"hub": hub.pid, "redis": self.rproc.pid}
            profiled = {"hub": hub.pid}
            title = "single: one hub process with every role"
        say(f"{title}: up")
        tracker = AckTracker(self.redis, self.shards, args.poll_ms / 1000)
        tracker_task = asyncio.create_task(tracker.run())
        profiles = {}
        if args.profile:
            for name, pid in profiled.items():
                profiles[name] = await start_profile(self.procs, pid, f"profile-{kind}-{name}")
        try:
            burst_pool = make_citizens(args.citizens, self.rnd, self.taken)
            burst_reqs = self.requests(args.burst_n, burst_pool)
            burst = await run_phase(
                f"{kind} burst",
                lambda: self.loadgen.run(self.hport, burst_reqs, seconds=args.burst_s),
                tracker, self.redis, pids, args.drain_s,
            )  # fmt: skip
            lat = burst.load.latencies_ms()
            say(f"{kind} burst: {burst.load.ok:,} accepted at {burst.load.rate:,.0f} msg/s "
                f"(p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms); acked at "
                f"{burst.e2e_rate:,.0f} msg/s end to end, backlog peak {burst.max_backlog:,}, "
                f"{burst.tickets_opened:,} tickets opened")  # fmt: skip
            if kind == "split":
                rate = args.split_rate
            else:
                rate = args.rate or max(100.0, min(1000.0, round(burst.e2e_rate * 0.5, -1)))
            n_steady = int(rate * args.steady_s)
            known = list(dict.fromkeys(
                r.citizen for r in burst_reqs if r.sid in burst.load.answered_at
            ))  # fmt: skip
            steady_reqs = make_requests(
                n_steady, mixed(known, args.new_share, self.rnd, self.taken),
                {c.phone for c in known}, self.signed, self.rnd,
            )  # fmt: skip
            steady = await run_phase(
                f"{kind} steady",
                lambda: self.loadgen.run(self.hport, steady_reqs, mode="open", rate=rate),
                tracker, self.redis, pids, args.drain_s,
            )  # fmt: skip
            say(f"{kind} steady {rate:,.0f} msg/s for {args.steady_s:g} s: {steady.load.ok:,} "
                f"accepted, {steady.load.late} sent late, {steady.tickets_opened:,} tickets "
                "opened")  # fmt: skip
        finally:
            for name, path in profiles.items():
                await stop_profile(self.procs, f"profile-{kind}-{name}", path)
            tracker.stop()  # its polling must not load the box during the bare run
            await tracker_task
        n_base = min(n_steady, int(rate * 5))
        bare_steady = await self.loadgen.run(
            self.bport, steady_reqs[:n_base], mode="open", rate=rate
        )
        await self.check(kind, [burst, steady])
        for name in ("hub-web", "hub-workers", "hub"):
            await self.procs.stop(name)
        await self.reset()

        f = self.figures
        f.section(title)
        f.add("webhook accept, closed loop (msg/s)", burst.load.rate, bare, "bare")
        f.note("  POST p50 / p99 at saturation (ms)", f"{pct(lat, 50):.1f} / {pct(lat, 99):.1f}")
        target = " (target ≥ 0.30)" if kind == "split" else ""
        f.add(f"webhook→acked ticket (msg/s){target}", burst.e2e_rate, bare, "bare")
        f.add("  same, vs redis XADD (msg/s)", burst.e2e_rate, self.xadd1, "XADD -P1")
        f.note("  backlog peak (accepted, not yet acked)", f"{burst.max_backlog:,}")
        slat, blat = steady.load.latencies_ms(), bare_steady.latencies_ms()
        sr = f"@{rate:.0f}/s"
        f.add(f"POST p50 {sr} (ms)", pct(slat, 50), pct(blat, 50), "bare", ".1f")
        f.add(f"POST p99 {sr} (ms)", pct(slat, 99), pct(blat, 99), "bare", ".1f")
        e2e_by_sid = steady.e2e_ms
        e2e = list(e2e_by_sid.values())
        firsts = {r.sid for r in steady_reqs if r.first}
        e2e_new = [x for sid, x in e2e_by_sid.items() if sid in firsts]
        e2e_old = [x for sid, x in e2e_by_sid.items() if sid not in firsts]
        f.note(f"webhook→acked p50 {sr} (ms)", f"{pct(e2e, 50):.1f}")
        target = " (target ≤ 20)" if kind == "split" else ""
        f.note(f"webhook→acked p99 {sr} (ms){target}", f"{pct(e2e, 99):.1f}")
        f.note(f"webhook→acked max {sr} (ms)", f"{max(e2e, default=float('nan')):.1f}")
        f.note(f"  opening a ticket ({len(e2e_new)}) p50/p99 (ms)",
               f"{pct(e2e_new, 50):.1f} / {pct(e2e_new, 99):.1f}")  # fmt: skip
        f.note(f"  appended to one ({len(e2e_old)}) p50/p99 (ms)",
               f"{pct(e2e_old, 50):.1f} / {pct(e2e_old, 99):.1f}")  # fmt: skip
        f.note(f"  sent late (> 5 ms after its slot) {sr}", f"{steady.load.late}")
        for name, cpu in burst.cpu.items():
            f.note(f"{name} CPU per message, burst (µs)", f"{burst.per_msg_us(cpu):.0f}")
        for name, cpu in steady.cpu.items():
            if name != "redis":
                f.note(f"{name} CPU share of a core {sr}",
                       f"{cpu / (steady.load.finished - steady.load.started):.0%}")  # fmt: skip
        f.note("ack poll interval (ms)", f"{args.poll_ms:g} ({tracker.polls:,} polls)")
        say(f"{kind} steady e2e p50/p99 ms by second of sending: {by_second(steady)}")

    async def check(self, kind: str, phases: Sequence[Phase]) -> None:
        """Accepted = on the streams = on tickets, no dead letters, every ticket acknowledged."""
        for ph in phases:
            if ph.load.non_200() or ph.load.errors:
                self.problems.append(f"{ph.name}: non-200 {ph.load.non_200()}, "
                                     f"client errors {ph.load.errors}")  # fmt: skip
            if not ph.complete:
                missing = ph.load.ok - len(ph.acked_at)
                self.problems.append(f"{ph.name}: {missing} accepted messages not acked in time")
        accepted = sum(ph.load.ok for ph in phases)
        stored = await self.stream_total(self.shards)
        dead = sum([int(await self.redis.xlen(keys.dead_letters(s))) for s in self.shards])
        applied = 0
        async for k in self.redis.scan_iter(match="hub:c:{*}:seen", count=1000):
            applied += int(await self.redis.hlen(k))
        if stored != accepted or applied != accepted or dead:
            self.problems.append(f"{kind}: accepted {accepted}, in streams {stored}, on tickets "
                                 f"{applied}, dead {dead}")  # fmt: skip
        opened = await count_tickets(self.redis)
        twilio = f"http://{HOST}:{self.tport}"
        acks = await sent_acks(twilio, self.acks_before + opened, self.args.drain_s)
        acks -= self.acks_before
        self.acks_before += acks
        if acks < opened:
            self.problems.append(f"{kind}: {opened} tickets, {acks} acknowledgements sent")
        say(f"{kind} check: {accepted:,} accepted = {stored:,} in streams = {applied:,} on "
            f"tickets; {dead} dead letters; {opened:,} tickets, {acks:,} acknowledgements sent "
            "to fake Twilio")  # fmt: skip

    acks_before = 0

    # -- the whole run -----------------------------------------------------------------------

    async def run(self) -> int:
        args = self.args
        ok = False
        try:
            await self.setup()
            for phase in args.phases:
                if phase == "ingest":
                    await self.ingest()
                else:
                    await self.tickets_phase(phase)
            self.figures.note("whole run (s)", f"{time.perf_counter() - self.t_start:.0f}")
            say("")
            say(self.figures.render())
            if self.problems:
                say("\nPROBLEMS:\n  " + "\n  ".join(self.problems))
                for name in ("hub-web-ingest", "hub-web", "hub-workers", "hub"):
                    if tail := self.procs.tail(name, 10):
                        say(f"{name} log tail:\n{tail}")
            ok = not self.problems
            return 0 if ok else 1
        finally:
            if self.redis is not None:
                with contextlib.suppress(Exception):
                    await self.redis.aclose()
            await self.procs.stop_all()
            if ok and not args.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                say(f"logs kept in {self.tmp}")


async def bench(args: argparse.Namespace) -> int:
    return await Bench(args).run()


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


def _phases(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PHASES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(PHASES)}; got {text!r}")
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run webhook|ingest", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--phases",
        type=_phases,
        default=list(DEFAULT_PHASES),
        help=f"comma-separated, from: {', '.join(PHASES)} (default: {','.join(DEFAULT_PHASES)})",
    )
    p.add_argument("--client", choices=["raw", "aiohttp"], default="raw",
                   help="load generator (bench/loadgen.py); the same for every server")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=64, help="connections / requests in flight")
    p.add_argument("--citizens", type=int, default=2000, help="distinct phones per burst")
    p.add_argument("--ingest-n", type=int, default=30_000, help="messages per ingest run")
    p.add_argument("--ingest-s", type=float, default=6.0, help="time cap of an ingest run")
    p.add_argument("--ingest-rounds", type=int, default=3, help="bare, ideal, hub: this often")
    p.add_argument(
        "--new-share", type=float, default=0.1, help="steady phases: share of new citizens"
    )
    p.add_argument("--burst-n", type=int, default=20_000, help="messages in a burst phase")
    p.add_argument("--burst-s", type=float, default=10.0, help="time cap of a burst phase")
    p.add_argument("--split-rate", type=float, default=1000.0, help="split: steady msg/s")
    p.add_argument(
        "--rate", type=float, default=0.0, help="single: steady msg/s (0: half the burst e2e)"
    )
    p.add_argument("--steady-s", type=float, default=10.0, help="length of a steady phase")
    p.add_argument("--drain-s", type=float, default=60.0, help="wait at most this for acks")
    p.add_argument("--xadd-n", type=int, default=100_000, help="redis-benchmark -n (0: skip)")
    p.add_argument("--poll-ms", type=float, default=2.0, help="ack tracker poll interval")
    p.add_argument("--hub-log-level", default="info", choices=["debug", "info", "warning"])
    p.add_argument("--profile", action="store_true", help="py-spy the hub processes")
    p.add_argument(
        "--tree",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="ingest: also measure, in every round, the hub run from this source tree, named "
        "by its directory (e.g. git archive <commit> | tar -x -C /tmp/before); repeatable",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    p.add_argument("--serve", choices=["bare", "ideal", "fake-twilio"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--redis-url", default="", help=argparse.SUPPRESS)
    p.add_argument("--signed-url", default="", help=argparse.SUPPRESS)
    return p


async def _main(args: argparse.Namespace) -> int:
    if args.serve == "bare":
        await serve_bare(args.port)
        return 0
    if args.serve == "ideal":
        await serve_ideal(args.port, args.redis_url, args.signed_url)
        return 0
    if args.serve == "fake-twilio":
        await serve_fake_twilio(args.port)
        return 0
    return await until_interrupted(bench(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(new_loop_runner(_main(args)))


if __name__ == "__main__":
    sys.exit(main())
