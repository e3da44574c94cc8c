"""The agent console and the supervisors' dashboard with 100k open tickets in Redis: server
time of each page, next to a bare aiohttp handler serving a static page of the same size.

One run (``bench/run console``) starts, on 127.0.0.1 only, and stops however it ends:
  * its own redis-server (free port, no persistence, deploy/redis.conf's encodings);
  * the bench's bare aiohttp server (separate process): ``GET /bytes/{n}`` → n bytes of HTML;
  * the hub's web role: ``python -m hub run --role web --config <generated toml>``.

It fills Redis through the store's real write path (``bench.memory``'s filler: the store's
methods and Lua scripts, pipelined): ``--open`` open tickets spread over the units and the
last ``--span-days`` days, waiting in their units' queues; ``--agents`` agents online, each
holding ``--held`` of them; ``--resolved`` tickets opened, answered and resolved in the last
24 hours; and one ticket with ``--long`` timeline entries (the citizen's messages, an agent's
replies, notes), held by the agent the bench signs in as.

Then it signs in as an agent (two units) and as a supervisor, and requests each page
``--requests`` times, one at a time, after a few warm-up requests: time to the full response
at a local client (median, p95), and the hub's own ``http.request`` time from its log.
``--profile`` samples the web process with py-spy during each page's requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from adapters import keys
from bench.common import say, until_interrupted
from bench.memory import (
    HOST,
    ROOT,
    SUBJECTS,
    Corpus,
    Filler,
    Parts,
    Procs,
    Ref,
    encoding_settings,
    fast_client,
    free_port,
    new_loop_runner,
    refs_of,
    run_workers,
    settings_tree,
    split,
    start_redis,
    wait_port,
)
from hub.dashboard import Shared
from hub.ids import new_id
from hub.logging import configure as configure_logging
from hub.runtime import Hub
from hub.settings import Settings

PASSWORD = "bench-password-1"
AGENT = "ani"  # the agent the bench signs in as: two units
AGENT_UNITS = ["hi_upah", "general"]
SUPERVISOR = "sari"
DAY = 86_400.0


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))]


# -- the hub's configuration as TOML ----------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(tree: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for a settings tree: tables, arrays of tables, scalars and lists."""
    lines: list[str] = []
    scalars = {k: v for k, v in tree.items() if not isinstance(v, dict | list) or (
        isinstance(v, list) and not any(isinstance(x, dict) for x in v))}  # fmt: skip
    for k, v in scalars.items():
        lines.append(f"{json.dumps(k)} = {_toml_value(v)}")
    for k, v in tree.items():
        name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
        if isinstance(v, dict):
            lines += ["", f"[{name}]", to_toml(v, name)]
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            for item in v:
                lines += ["", f"[[{name}]]", to_toml(item, name)]
    return "\n".join(lines)


# -- the bare baseline ------------------------------------------------------------------------


async def serve_bare(port: int) -> None:
    """``GET /bytes/{n}``: a static HTML page of n bytes, prepared once per size."""
    from aiohttp import web

    pages: dict[int, bytes] = {}

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        body = pages.get(n)
        if body is None:
            unit = b"<tr><td>KMN-2026-000123</td><td>Siti Rahayu</td><td>WhatsApp</td></tr>\n"
            body = pages[n] = (b"<!doctype html><table>\n" + unit * (n // len(unit) + 1))[:n]
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/bytes/{n}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


# -- filling Redis ----------------------------------------------------------------------------


@dataclass
class Filled:
    long_ref: Ref
    long_entries: int
    seconds: float
    open_total: int


async def fill(port: int, hub: Hub, args: argparse.Namespace) -> Filled:
    """The open tickets (worker processes), agents holding some, tickets resolved today,
    the long ticket; all through the store's write path (bench.memory's filler)."""
    t0 = time.perf_counter()
    now = time.time()
    n = args.open
    jobs = [{"kind": "open", "id": 0, "seed": args.seed + s, "first": s, "count": c,
             "batch": 1000, "streams": False, "now": now, "span_s": args.span_days * DAY,
             "population": n}
            for s, c in split(0, n, args.workers)]  # fmt: skip
    await run_workers(port, jobs, "open")
    say(f"  {n:,} open tickets ({time.perf_counter() - t0:,.0f} s)")
    r = fast_client(port)
    try:
        parts = Parts.for_settings(hub.settings, r)
        filler = Filler(parts, Corpus(120, args.seed), job=7, streams=False)
        # users: the bench's agent and supervisor, and agents who hold tickets
        units = sorted(hub.settings.units)
        await hub.auth.create_user(AGENT, PASSWORD, "agent", AGENT_UNITS, "Ani Lestari")
        await hub.auth.create_user(SUPERVISOR, PASSWORD, "supervisor", [], "Sari Dewi")
        held = list(range(0, min(n, args.agents * args.held * 3)))
        refs = await refs_of(r, held)
        by_unit: dict[str, list[Ref]] = {}
        for ref in refs:
            by_unit.setdefault(ref.unit, []).append(ref)
        for i in range(args.agents):
            name = f"agent{i:02d}"
            unit = units[i % len(units)]
            await hub.auth.create_user(name, PASSWORD, "agent", [unit], f"Petugas {i:02d}")
            pool = by_unit.get(unit, [])
            mine, by_unit[unit] = pool[: args.held], pool[args.held :]
            if mine:
                await filler.claim(mine, name)
            await hub.queue.queue.set_presence(name, "online" if i % 5 else "away", 6 * 3600)
        await hub.queue.queue.set_presence(AGENT, "online", 6 * 3600)
        # tickets opened, answered and resolved in the last 24 hours (first responses)
        first = n + 1000
        if args.resolved:
            job = {"kind": "open", "id": 1, "seed": args.seed, "first": first,
                   "count": args.resolved, "batch": 1000, "streams": False, "now": now,
                   "span_s": DAY * 0.9, "population": first + args.resolved}  # fmt: skip
            await run_workers(port, [job], "resolved")
            done = await refs_of(r, range(first, first + args.resolved))
            for start in range(0, len(done), 1000):
                chunk = done[start : start + 1000]
                await filler.deliver([(x.cid, x.ack) for x in chunk])
                await filler.claim(chunk, "agent00")
                await filler.answer(chunk, "agent00")
                await filler.resolve(chunk, "agent00")
        # the long ticket: a citizen in the agent's unit, held by the agent
        long_i = next(i for i in range(first + args.resolved + 10, first + args.resolved + 100)
                      if i % len(SUBJECTS) == 0)  # THR: hi_upah  # fmt: skip
        await filler.open_tickets([long_i], lambda i: now - 3 * DAY)
        [long_ref] = await refs_of(r, [long_i])
        await filler.deliver([(long_ref.cid, long_ref.ack)])
        await filler.claim([long_ref], AGENT)
        entries = 3  # message, acknowledgement, claim
        k = 0
        while entries < args.long:
            step = min(5, args.long - entries)
            if k % 10 == 9:
                await _notes(filler, long_ref, step, now)
            elif k % 2 == 0:
                await filler.follow_ups([long_i] * step, at=now - 3 * DAY + k * 300)
            else:
                await filler.answer([long_ref] * step, AGENT)
            entries += step
            k += 1
        got = await r.llen(keys.ticket_log(long_ref.cid, long_ref.n))
        [long_ref] = await refs_of(r, [long_i])
    finally:
        await r.aclose()
    open_total = int(await hub.redis.zcard(keys.ticket_index("status", "open")))
    return Filled(long_ref, int(got), time.perf_counter() - t0, open_total)


async def _notes(filler: Filler, ref: Ref, k: int, now: float) -> None:
    """``TicketActions.note``: an audit entry of type note (``RedisStore.add_event``)."""
    store = filler.parts.store
    at = int(now * 1000)
    pipe = filler.parts.redis.pipeline(transaction=False)
    for _ in range(k):
        eid = new_id(at)
        event = {"type": "note", "actor": AGENT, "text": "Sudah dicek ke perusahaan; menunggu "
                 "jawaban HRD.", "id": eid, "at": at}  # fmt: skip
        await store.scripts.add_event(
            keys=[keys.contact(ref.cid)],
            args=[ref.n, eid, json.dumps(event, ensure_ascii=False), at],
            client=pipe,
        )
    await pipe.execute()


async def wait_loaded(port: int, limit_s: float = 300) -> None:
    """Until Redis has loaded its RDB file (it answers LOADING before)."""
    r = fast_client(port, "bench-control")
    try:
        async with asyncio.timeout(limit_s):
            while True:
                with contextlib.suppress(Exception):
                    if int((await r.info("persistence"))["loading"]) == 0:
                        return
                await asyncio.sleep(0.2)  # polling Redis's loading flag
    finally:
        await r.aclose()


async def save_data(hub: Hub, tmp: Path, to: Path, filled: Filled) -> None:
    """The filled Redis as an RDB file, for ``--load-data`` (iterating on one page)."""
    await hub.redis.execute_command("SAVE")
    to.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "dump.rdb", to / "dump.rdb")
    (to / "filled.json").write_text(json.dumps(
        {"long": dataclasses.asdict(filled.long_ref), "entries": filled.long_entries,
         "open": filled.open_total, "at": time.time()}))  # fmt: skip
    say(f"  saved the dataset in {to}")


async def load_data(hub: Hub, path: Path) -> Filled:
    d = json.loads((path / "filled.json").read_text())
    say(f"  dataset filled {(time.time() - d['at']) / 60:,.0f} minutes ago")
    return Filled(Ref(**d["long"]), int(d["entries"]), 0.0, int(d["open"]))


# -- measuring --------------------------------------------------------------------------------


class Browser:
    """A signed-in session (cookie jar), as the console's own tests sign in."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.s = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=60)
        )

    async def login(self, username: str) -> None:
        async with self.s.get(f"{self.base}/login") as r:
            html = await r.text()
        fields = dict(re.findall(r'name="(next|csrf_token)" value="([^"]*)"', html))
        form = {"username": username, "password": PASSWORD, **fields}
        async with self.s.post(f"{self.base}/login", data=form, allow_redirects=False) as r:
            if r.status != 303:
                raise RuntimeError(f"login as {username}: {r.status} {await r.text()}")

    async def get(self, path: str) -> tuple[int, int, float]:
        t0 = time.perf_counter()
        async with self.s.get(f"{self.base}{path}", allow_redirects=False) as r:
            body = await r.read()
            return r.status, len(body), (time.perf_counter() - t0) * 1000

    async def close(self) -> None:
        await self.s.close()


@dataclass
class Timing:
    name: str
    who: str
    path: str
    status: int = 0
    size: int = 0
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    web_cpu_ms: float = float("nan")  # the web process's CPU per request
    redis_cpu_ms: float = float("nan")  # redis-server's CPU per request


def server_times(log: Path, start: int, path: str) -> list[float]:
    """The hub's own ``http.request`` durations for ``path``, after byte ``start`` of its log."""
    out = []
    with log.open("rb") as f:
        f.seek(start)
        for line in f:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if e.get("event") == "http.request" and e.get("path") == path.split("?")[0]:
                    out.append(float(e["ms"]))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    b: Browser, bare: Browser, t: Timing, n: int, log: Path, pids: tuple[int, int],
    warmup: int = 3,
) -> Timing:  # fmt: skip
    for _ in range(warmup):
        status, size, _ms = await b.get(t.path)
    t.status, t.size = status, size
    start = log.stat().st_size
    cpu0 = [cpu_seconds(p) for p in pids]
    for _ in range(n):
        status, size, ms = await b.get(t.path)
        t.client_ms.append(ms)
        t.status = status if status != 200 else t.status
    cpu1 = [cpu_seconds(p) for p in pids]
    t.web_cpu_ms, t.redis_cpu_ms = ((b1 - a) * 1000 / n for a, b1 in zip(cpu0, cpu1, strict=True))
    await asyncio.sleep(0.3)  # the hub writes its log line after the response
    t.server_ms = server_times(log, start, t.path)[-n:]
    for _ in range(warmup):
        await bare.get(f"/bytes/{t.size}")
    for _ in range(n):
        t.bare_ms.append((await bare.get(f"/bytes/{t.size}"))[2])
    return t


def pages(filled: Filled, query: str) -> list[tuple[str, str, str]]:
    """(name, who, path) of everything measured."""
    num = filled.long_ref.number
    return [
        ("queue page", AGENT, "/console"),
        ("queue fragment (live refresh)", AGENT, "/console/queue"),
        ("queue API", AGENT, "/api/v1/queue"),
        (f"ticket page, {filled.long_entries} entries", AGENT, f"/console/tickets/{num}"),
        ("ticket timeline fragment", AGENT, f"/console/tickets/{num}/timeline"),
        ("ticket API", AGENT, f"/api/v1/tickets/{num}"),
        ("search page", AGENT, f"/console/search?q={query}"),
        ("search API", AGENT, f"/api/v1/search?q={query}"),
        ("queue page, supervisor (all units)", SUPERVISOR, "/console"),
        ("dashboard page", SUPERVISOR, "/console/dashboard"),
        ("dashboard live fragment", SUPERVISOR, "/console/dashboard/live"),
        ("dashboard charts, day", SUPERVISOR, "/console/dashboard/charts?window=day"),
        ("dashboard API", SUPERVISOR, "/api/v1/dashboard"),
        ("metrics (reads the snapshot)", SUPERVISOR, "/metrics"),
    ]


def report(timings: Sequence[Timing], filled: Filled, args: argparse.Namespace) -> list[str]:
    head = (
        f"{'page':<36} | {'who':<4} | {'KiB':>5} | {'p50':>6} | {'p95':>6} | {'hub p50':>7} | "
        f"{'hub p95':>7} | {'web CPU':>7} | {'redis':>5} | {'bare p50':>8} | {'bare p95':>8}"
    )
    say("\n" + head)
    say("-" * len(head))
    problems = []
    for t in timings:
        say(f"{t.name:<36} | {t.who:<4} | {t.size / 1024:>5,.0f} | {pct(t.client_ms, 50):>6,.1f} | "
            f"{pct(t.client_ms, 95):>6,.1f} | {pct(t.server_ms, 50):>7,.1f} | "
            f"{pct(t.server_ms, 95):>7,.1f} | {t.web_cpu_ms:>7,.1f} | {t.redis_cpu_ms:>5,.1f} | "
            f"{pct(t.bare_ms, 50):>8,.1f} | {pct(t.bare_ms, 95):>8,.1f}")  # fmt: skip
        if t.status != 200:
            problems.append(f"{t.path}: HTTP {t.status}")
    say(f"\n{filled.open_total:,} open tickets; the long ticket {filled.long_ref.number} has "
        f"{filled.long_entries} timeline entries. Milliseconds per request: p50/p95 to the "
        "full response at the client; hub: the web process's own http.request time; web "
        "CPU, redis: CPU time the web process and redis-server spent per request (steadier "
        "than wall times on a busy machine); bare: a static page of the same size from a bare "
        "aiohttp handler.")  # fmt: skip
    for name in args.target:  # said, not failed: wall times move with the machine's load
        for t in timings:
            if t.name.startswith(name) and t.who == AGENT:
                p50 = pct(t.server_ms or t.client_ms, 50)
                verdict = "under" if p50 < args.target_ms else "OVER"
                say(f"target: {t.name}, hub p50 {p50:,.1f} ms ({t.web_cpu_ms:,.1f} ms of web "
                    f"CPU): {verdict} {args.target_ms:g} ms")  # fmt: skip
    return problems


# -- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    configure_logging("json", "warning")
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-console-"))
    procs = Procs(tmp)
    hub: Hub | None = None
    browsers: list[Browser] = []
    ok = False
    try:
        if args.load_data:  # a dataset saved by --save-data: Redis loads it at start
            shutil.copy(Path(args.load_data) / "dump.rdb", tmp / "dump.rdb")
        rport, rproc = await start_redis(procs, tmp, encoding_settings())
        await wait_loaded(rport)
        wport, bport = free_port(), free_port()
        tree = settings_tree(f"redis://{HOST}:{rport}/0", tmp / "hub", wport)
        tree["hub"]["log_level"] = "info"  # the http.request lines: the hub's own timing
        settings = Settings.model_validate(tree)
        hub = Hub(settings, frozenset())
        await hub.start()
        if args.load_data:
            filled = await load_data(hub, Path(args.load_data))
            say(f"redis-server on {rport}; loaded {args.load_data}")
        else:
            say(f"redis-server on {rport}; filling (workers: {args.workers})")
            filled = await fill(rport, hub, args)
            if args.save_data:
                await save_data(hub, tmp, Path(args.save_data), filled)
        mem = int((await hub.redis.info("memory"))["used_memory"])
        say(
            f"  filled in {filled.seconds:,.0f} s: {filled.open_total:,} open tickets, "
            f"{await hub.redis.dbsize():,} keys, used_memory {mem / 2**20:,.0f} MiB"
        )
        cfg = tmp / "hub.toml"
        cfg.write_text(to_toml(tree))
        me = [sys.executable, "-m", "bench.console"]
        bproc = await procs.start("bare", *me, "--serve-bare", "--port", str(bport))
        wproc = await procs.start(
            "web", sys.executable, "-m", "hub", "run", "--role", "web", "--config", str(cfg),
            cwd=Path(args.hub_root) if args.hub_root else ROOT,
        )  # fmt: skip
        await wait_port(bport, bproc)
        await wait_port(wport, wproc, 60)
        log = tmp / "web.log"
        pids = (wproc.pid, rproc.pid)
        agent, sup = Browser(f"http://{HOST}:{wport}"), Browser(f"http://{HOST}:{wport}")
        bare = Browser(f"http://{HOST}:{bport}")
        browsers += [agent, sup, bare]
        await agent.login(AGENT)
        await sup.login(SUPERVISOR)
        who = {AGENT: agent, SUPERVISOR: sup}
        timings = []
        for name, user, path in pages(filled, args.query):
            if args.only and not any(o in name for o in args.only):
                continue
            prof = await _start_profile(procs, wproc.pid, name) if args.profile else None
            t = await measure(who[user], bare, Timing(name, user, path), args.requests, log, pids)
            timings.append(t)
            if prof is not None:
                await _stop_profile(procs, prof)
            say(f"  {name}: p50 {pct(t.client_ms, 50):,.1f} ms (hub {pct(t.server_ms, 50):,.1f})")
        problems = report(timings, filled, args)
        raw = await hub.redis.get("hub:{stats}:shared:dashboard:tally")
        shared = Shared.from_json(raw.decode()) if raw else None
        if shared is not None:
            say(f"the dashboard's tally of the open tickets took {shared.cost_s:,.1f} s to build "
                f"(in one web process); it is shared for {shared.max_age_s():,.0f} s, then "
                "rebuilt in the background")  # fmt: skip
        say(f"\nwhole run: {time.perf_counter() - t_start:,.0f} s")
        if problems:
            say("\nPROBLEMS:\n  " + "\n  ".join(problems))
            say("web log tail:\n" + procs.tail("web"))
        ok = not problems
        return 0 if ok else 1
    finally:
        for b in browsers:
            await b.close()
        if hub is not None:
            with contextlib.suppress(Exception):
                await hub.stop()
        await procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"logs kept in {tmp}")


async def _start_profile(procs: Procs, pid: int, name: str) -> tuple[str, Path] | None:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        say("--profile: py-spy not found (.venv/bin/pip install py-spy)")
        return None
    tag = re.sub(r"\W+", "-", name).strip("-")
    out = procs.logdir / f"py-spy-{tag}.txt"
    await procs.start(f"py-spy-{tag}", exe, "record", "--nonblocking", "--rate", "500",
                      "--format", "raw", "--pid", str(pid), "--output", str(out))  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attaches
    return f"py-spy-{tag}", out


async def _stop_profile(procs: Procs, prof: tuple[str, Path]) -> None:
    name, path = prof
    await procs.interrupt(name, 30)
    if path.exists():
        say(f"  profile ({path}):\n" + summarize(path))


def summarize(path: Path, top: int = 18) -> str:
    """Functions by share of samples, inclusive and self, in the hub's and adapters' code."""
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
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    ours = [(f, c) for f, c in incl.items() if "(hub/" in f or "(adapters/" in f]
    ours.sort(key=lambda x: -x[1])
    lines = [f"    {100 * c / total:5.1f} %  {f}" for f, c in ours[:top]]
    lines.append("    self:")
    mine = sorted(own.items(), key=lambda x: -x[1])[:10]
    lines += [f"    {100 * c / total:5.1f} %  {f}" for f, c in mine]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run console", description=__doc__.split("\n\n")[0])
    p.add_argument("--open", type=int, default=100_000, help="open tickets")
    p.add_argument("--span-days", type=float, default=30.0, help="open tickets' age spread")
    p.add_argument("--agents", type=int, default=20, help="agents holding tickets")
    p.add_argument("--held", type=int, default=4, help="tickets each of them holds")
    p.add_argument("--resolved", type=int, default=3000, help="answered and resolved today")
    p.add_argument("--long", type=int, default=500, help="timeline entries of the long ticket")
    p.add_argument("--requests", type=int, default=50, help="timed requests per page")
    p.add_argument("--query", default="pesangon", help="the search")
    p.add_argument("--workers", type=int, default=2, help="filler processes")
    p.add_argument("--only", action="append", default=[], help="measure pages named so")
    p.add_argument("--target", action="append", default=["queue page", "ticket page"],
                   help="pages to compare with --target-ms (agent's, hub p50)")  # fmt: skip
    p.add_argument("--target-ms", type=float, default=100.0)
    p.add_argument("--profile", action="store_true", help="py-spy the web process per page")
    p.add_argument("--save-data", metavar="DIR", help="save the filled Redis (RDB) in DIR")
    p.add_argument("--load-data", metavar="DIR", help="use a dataset --save-data saved")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    p.add_argument("--hub-root", help=argparse.SUPPRESS)  # before/after: another checkout's web
    p.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p


async def _main(args: argparse.Namespace) -> int:
    if args.serve_bare:
        await serve_bare(args.port)
        return 0
    return await until_interrupted(run(args))


def main(argv: Sequence[str] | None = None) -> int:
    return int(new_loop_runner(_main(_parser().parse_args(argv))))


if __name__ == "__main__":
    sys.exit(main())
