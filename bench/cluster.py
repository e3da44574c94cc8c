"""Scale-out: webhook → applied ticket with 1, 2 and 4 dispatcher (and web) processes, against
one redis-server and against a 3-master Redis Cluster.

Every run starts the hub's roles as separate processes, ``python -m hub run --role web`` (one
port each), ``--role dispatcher`` and one ``--role sender``, with a generated config (8 inbound
shards, production defaults otherwise), a fake Twilio in its own process (the sender really
sends each acknowledgement) and this process as the load generator: signed webhooks, built
before timing, ``--concurrency`` in flight, spread round robin over the web processes.

Per configuration it reports the accept rate (200s per second) and the end-to-end rate
(accepted messages divided by the time from the first POST until the dispatchers have applied
and acked every one), the shards each dispatcher held, and the CPU each role spent per
message. After each run it checks that nothing was lost or doubled: accepted = entries in the
inbound streams = messages on tickets, 0 dead letters, one acknowledgement per ticket sent.

    bench/run cluster            # or: .venv/bin/python -m bench.cluster [--help]

The machine's cores bound the totals: on 2 cores more processes cannot scale linearly. The
point is that the mechanism works (the shards spread over the dispatchers, leases hand them
over, nothing is lost) and what one process of each role costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import tomli_w
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from adapters import keys
from adapters.redis_roster import roster_key
from adapters.redis_server import free_port
from adapters.scripts import as_text
from hub.demo.simulate import TOPICS, Citizen, sign, twilio_params
from hub.ports import split_ticket_id
from tests.redis_cluster import LocalCluster, start_cluster

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "wa1"
ACCOUNT_SID = "AC" + "c" * 32
AUTH_TOKEN = "bench-cluster-auth-token"
WA_NUMBER = "+628119521150"
SHARDS = 8
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the processes -----------------------------------------------------------------------


class Procs:
    """Child processes, each logging to its own file; all stopped however the run ends."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, name: str, *argv: str) -> asyncio.subprocess.Process:
        with (self.logdir / f"{name}.log").open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.logdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, names: Sequence[str]) -> None:
        live = [(n, self.procs.pop(n)) for n in names if n in self.procs]
        for _, p in live:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        for _, p in live:
            try:
                await asyncio.wait_for(p.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()

    async def stop_all(self) -> None:
        await self.stop(list(self.procs))


@dataclass
class Backend:
    name: str
    url: str
    cluster: bool
    pids: list[int]
    client: Any
    _cluster: LocalCluster | None = None
    _proc: asyncio.subprocess.Process | None = None

    async def flush(self) -> None:
        if self._cluster is not None:
            await asyncio.to_thread(self._cluster.flush)
        else:
            await self.client.flushall()
            await self.client.script_flush()

    async def stop(self) -> None:
        await self.client.aclose()
        if self._cluster is not None:
            await asyncio.to_thread(self._cluster.stop)
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()


async def single_backend(tmp: Path) -> Backend:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        shutil.which("redis-server") or "redis-server",
        *("--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"),
        *("--dir", str(tmp), "--daemonize", "no"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    client = Redis(host=HOST, port=port)
    for _ in range(400):
        with contextlib.suppress(Exception):
            if await client.ping():
                break
        await asyncio.sleep(0.025)  # the server starting: nothing to await
    return Backend(
        "redis-server", f"redis://{HOST}:{port}/0", False, [proc.pid], client, _proc=proc
    )


async def cluster_backend() -> Backend:
    c = await asyncio.to_thread(start_cluster)
    return Backend("cluster (3 masters)", c.url, True, c.pids, RedisCluster.from_url(c.url), c)


def hub_toml(backend: Backend, data_dir: Path, public_url: str, port: int, twilio: str) -> str:
    return tomli_w.dumps({
        "hub": {"public_url": public_url, "listen_host": HOST, "listen_port": port,
                "data_dir": str(data_dir), "log_format": "json", "log_level": "info"},
        "redis": {"url": backend.url, "cluster": backend.cluster, "inbound_shards": SHARDS},
        # a shorter lease than the default 10 s: a dispatcher that joins gets its shards in
        # about a second instead of a few (the handover itself is the same)
        "dispatcher": {"lease_ms": 3000},
        "channels": {"whatsapp": {"accounts": {ACCOUNT: {
            "number": WA_NUMBER, "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
            "api_base_url": twilio}}}},
    })  # fmt: skip


# -- load ----------------------------------------------------------------------------------


def build_requests(n: int, citizens: int, public_url: str, seed: int) -> list[tuple[str, bytes]]:
    """``n`` signed webhook bodies from ``citizens`` distinct phones (each opens a ticket,
    later ones append), all built before timing."""
    rnd = random.Random(seed)
    people = [Citizen(f"Warga {i}", f"+62813{seed % 100:02d}{i:06d}") for i in range(citizens)]
    path = f"/webhooks/whatsapp/{ACCOUNT}"
    out = []
    for i in range(n):
        c = people[i] if i < citizens else rnd.choice(people)
        params = twilio_params(ACCOUNT_SID, WA_NUMBER, c, rnd.choice(TOPICS))
        body = urlencode(params).encode()
        out.append((sign(AUTH_TOKEN, public_url + path, params), body))
    return out


@dataclass
class Load:
    statuses: Counter[int] = field(default_factory=Counter)
    start: float = 0.0
    end: float = 0.0


async def post_all(
    ports: Sequence[int], reqs: Sequence[tuple[str, bytes]], concurrency: int
) -> Load:
    load = Load()
    path = f"/webhooks/whatsapp/{ACCOUNT}"
    urls = [f"http://{HOST}:{p}{path}" for p in ports]
    it = iter(enumerate(reqs))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def worker() -> None:
            for i, (sig, body) in it:
                headers = {**FORM, "X-Twilio-Signature": sig}
                try:
                    async with session.post(urls[i % len(urls)], data=body, headers=headers) as r:
                        await r.read()
                        load.statuses[r.status] += 1
                except aiohttp.ClientError:
                    load.statuses[0] += 1

        load.start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        load.end = time.perf_counter()
    return load


# -- what Redis says -----------------------------------------------------------------------


async def applied_count(r: Any) -> int:
    """Entries the dispatch groups have read and acked (applied to tickets), all shards."""
    infos = await asyncio.gather(
        *(r.xinfo_groups(keys.inbound_stream(s)) for s in range(SHARDS)), return_exceptions=True
    )
    done = 0
    for groups in infos:
        if isinstance(groups, BaseException):
            continue
        for g in groups:
            if as_text(g["name"]) == keys.DISPATCH_GROUP:
                done += int(g.get("entries-read") or 0) - int(g.get("pending") or 0)
    return done


async def send_drained(r: Any) -> bool:
    try:
        groups = await r.xinfo_groups(keys.outbox_stream("whatsapp"))
    except Exception:
        return False
    return any(
        as_text(g["name"]) == keys.SEND_GROUP and not int(g.get("pending") or 0) and not g["lag"]
        for g in groups
    )


async def lease_owners(r: Any) -> Counter[str]:
    """Pid of the dispatcher holding each shard (owner ids are host:pid:…), as counts."""
    raws = await asyncio.gather(*(r.get(keys.lease(keys.inbound_stream(s))) for s in range(SHARDS)))
    return Counter(as_text(x).split(":")[1] if x else "-" for x in raws)


async def wait_until(check: Any, limit_s: float, every_s: float = 0.02) -> Any:
    """Poll ``check()`` (state in other processes: nothing to await) until truthy."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if got := await check():
            return got
        await asyncio.sleep(every_s)
    return None


async def stored_messages(r: Any) -> tuple[int, int]:
    """(tickets, messages on them): the ticket index and each ticket's msg_count."""
    tids = [as_text(t) for t in await r.zrange(keys.ticket_index(), 0, -1)]
    pipe = r.pipeline(transaction=False)
    for tid in tids:
        cid, n = split_ticket_id(tid)
        pipe.hget(keys.ticket(cid, n), "msg_count")
    counts = await pipe.execute() if tids else []
    return len(tids), sum(int(c or 0) for c in counts)


# -- one configuration ---------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    webs: int
    dispatchers: int
    accepted: int = 0
    accept_rate: float = 0.0
    e2e_rate: float = 0.0
    shards: list[int] = field(default_factory=list)
    cpu_us: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    ok: bool = False


async def run_config(
    backend: Backend, webs: int, dispatchers: int, args: argparse.Namespace, tmp: Path,
    procs: Procs, twilio_url: str, seed: int,
) -> Result:  # fmt: skip
    res = Result(backend.name, webs, dispatchers)
    await backend.flush()
    r = backend.client
    ports = [free_port() for _ in range(webs)]
    public_url = f"http://{HOST}:{ports[0]}"
    run_dir = tmp / f"{'c' if backend.cluster else 's'}{webs}w{dispatchers}d"
    run_dir.mkdir()
    names: list[tuple[str, str]] = [(f"web{i}", "web") for i in range(webs)]
    names += [(f"dispatcher{i}", "dispatcher") for i in range(dispatchers)]
    names += [("sender", "sender")]
    children: dict[str, asyncio.subprocess.Process] = {}
    t_start = time.monotonic()
    try:
        for i, (name, role) in enumerate(names):
            cfg = run_dir / f"{name}.toml"
            port = ports[i] if role == "web" else free_port()
            cfg.write_text(hub_toml(backend, run_dir / name, public_url, port, twilio_url))
            argv = [sys.executable, "-m", "hub", "run", "--config", str(cfg), "--role", role]
            children[name] = await procs.start(f"{run_dir.name}-{name}", *argv)

        async def web_ready() -> bool:
            try:
                async with aiohttp.ClientSession() as s:
                    for p in ports:
                        async with s.get(f"http://{HOST}:{p}/readyz") as resp:
                            if resp.status != 200:
                                return False
            except aiohttp.ClientError:
                return False
            return True

        async def spread() -> bool:
            if await r.zcard(roster_key("dispatcher")) != dispatchers:
                return False
            owners = await lease_owners(r)
            want = {str(p.pid) for n, p in children.items() if n.startswith("dispatcher")}
            share = -(-SHARDS // dispatchers)
            return set(owners) == want and max(owners.values()) <= share

        if not await wait_until(web_ready, 60, 0.1) or not await wait_until(spread, 60, 0.1):
            for name in children:
                say(f"{name}:\n{procs.tail(f'{run_dir.name}-{name}')}")
            res.checks.append("processes not ready (roster/leases/readyz) in 60 s")
            return res
        owners = await lease_owners(r)
        res.shards = sorted(owners.values(), reverse=True)
        res.stages["ready"] = time.monotonic() - t_start
        reqs = build_requests(args.messages, args.citizens, public_url, seed)
        cpu0 = {n: cpu_s(p.pid) for n, p in children.items()}
        redis0 = sum(cpu_s(pid) for pid in backend.pids)
        load_task = asyncio.create_task(post_all(ports, reqs, args.concurrency))
        t_applied = 0.0

        async def all_applied() -> bool:
            nonlocal t_applied
            if not load_task.done():
                await applied_count(r)  # keep the same polling cost during the load
                return False
            if await applied_count(r) >= load_task.result().statuses[200]:
                t_applied = time.perf_counter()
                return True
            return False

        finished = await wait_until(all_applied, args.limit_s, 0.01)
        load = await load_task
        cpu1 = {n: cpu_s(p.pid) for n, p in children.items()}
        redis1 = sum(cpu_s(pid) for pid in backend.pids)
        res.accepted = load.statuses[200]
        res.accept_rate = res.accepted / max(1e-9, load.end - load.start)
        if not finished:
            res.checks.append(f"not all applied within {args.limit_s:.0f} s")
            return res
        res.e2e_rate = res.accepted / max(1e-9, t_applied - load.start)
        res.stages["load"] = t_applied - load.start
        t_checks = time.monotonic()
        n = max(1, res.accepted)
        for role in ("web", "dispatcher", "sender"):
            used = [cpu1[k] - cpu0[k] for k in children if k.rstrip("0123456789") == role]
            res.cpu_us[role] = sum(used) / n * 1e6
            if role != "sender":
                res.cpu_us[f"{role} (per process)"] = sum(used) / len(used) / n * 1e6
        res.cpu_us["redis"] = (redis1 - redis0) / n * 1e6

        # -- checks: nothing lost, nothing doubled ---------------------------------------
        others = {k: v for k, v in load.statuses.items() if k != 200}
        in_streams = sum([await r.xlen(keys.inbound_stream(s)) for s in range(SHARDS)])
        dead = sum([await r.xlen(keys.dead_letters(keys.inbound_stream(s))) for s in range(SHARDS)])
        tickets, on_tickets = await stored_messages(r)
        await wait_until(lambda: send_drained(r), 30, 0.05)
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{twilio_url}/_fake/messages") as resp,
        ):
            sent = len(await resp.json())
        want_tickets = min(args.citizens, args.messages)
        res.checks = [
            f"{res.accepted} accepted" + (f" ({others} refused)" if others else ""),
            f"{in_streams} in streams",
            f"{on_tickets} on tickets",
            f"{dead} dead",
            f"{tickets} tickets",
            f"{sent} acks sent",
        ]
        res.stages["checks"] = time.monotonic() - t_checks
        res.ok = (
            not others
            and res.accepted == in_streams == on_tickets == len(reqs)
            and dead == 0
            and tickets == want_tickets
            and sent == tickets
        )
        return res
    finally:
        t_stop = time.monotonic()
        await procs.stop([f"{run_dir.name}-{n}" for n in children])
        res.stages["stop"] = time.monotonic() - t_stop


# -- the run -------------------------------------------------------------------------------


def table(results: Sequence[Result]) -> str:
    head = [
        "backend", "web", "disp", "accept msg/s", "e2e msg/s", "e2e per disp",
        "shards per disp", "web µs/msg", "disp µs/msg", "sender µs/msg", "redis µs/msg", "check",
    ]  # fmt: skip
    rows = [head]
    for r in results:
        rows.append([
            r.backend, str(r.webs), str(r.dispatchers), f"{r.accept_rate:.0f}",
            f"{r.e2e_rate:.0f}", f"{r.e2e_rate / r.dispatchers:.0f}",
            "/".join(map(str, r.shards)) or "-",
            f"{r.cpu_us.get('web', 0):.0f}", f"{r.cpu_us.get('dispatcher', 0):.0f}",
            f"{r.cpu_us.get('sender', 0):.0f}", f"{r.cpu_us.get('redis', 0):.0f}",
            "ok" if r.ok else "FAILED",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


async def fake_twilio_main(port: int) -> None:
    from hub.demo.fake_twilio import FakeTwilio

    fake = FakeTwilio({ACCOUNT_SID: AUTH_TOKEN})
    await fake.start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


async def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-cluster-"))
    procs = Procs(tmp)
    backends: list[Backend] = []
    results: list[Result] = []
    me = asyncio.current_task()
    assert me is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop everything this run started, then exit
        loop.add_signal_handler(sig, me.cancel)
    try:
        tw_port = free_port()
        twilio_url = f"http://{HOST}:{tw_port}"
        for kind in args.backends:
            say(f"starting {kind}")
            backends.append(await (cluster_backend() if kind == "cluster" else single_backend(tmp)))
        seed = 0
        for n in args.dispatchers:
            webs = n if args.webs is None else args.webs
            for b in backends:
                seed += 1
                say(f"{b.name}: {webs} web, {n} dispatcher(s), 1 sender")
                await procs.stop(["fake-twilio"])  # a fresh fake: its count of sends is ours
                await procs.start("fake-twilio", sys.executable, "-m", "bench.cluster",
                                  "--fake-twilio", str(tw_port))  # fmt: skip
                await wait_until(lambda: _port_open(tw_port), 30, 0.05)
                res = await run_config(b, webs, n, args, tmp, procs, twilio_url, seed)
                say(f"  e2e {res.e2e_rate:.0f} msg/s, accept {res.accept_rate:.0f} msg/s, "
                    f"shards {res.shards}, {', '.join(res.checks)}; seconds: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in res.stages.items()))  # fmt: skip
                results.append(res)
    finally:
        await procs.stop_all()
        for b in backends:
            await b.stop()
    print(table(results))
    print(
        f"\n{args.messages} messages from {args.citizens} citizens per run, "
        f"{args.concurrency} in flight, {SHARDS} inbound shards; {os.cpu_count()} CPUs; "
        f"whole run {time.monotonic() - started:.0f} s"
    )
    for r in results:
        if not r.ok:
            print(f"FAILED {r.backend} {r.webs}w/{r.dispatchers}d: {', '.join(r.checks)}")
    ok = bool(results) and all(r.ok for r in results)
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs kept in {tmp}")
    return 0 if ok else 1


async def _port_open(port: int) -> bool:
    try:
        _, w = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    w.close()
    with contextlib.suppress(OSError):
        await w.wait_closed()
    return True


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    p.add_argument("--dispatchers", default="1,2,4", help="dispatcher processes per run")
    p.add_argument("--webs", type=int, default=None, help="web processes (default: as many)")
    p.add_argument("--backends", default="redis,cluster", help="redis, cluster or both")
    p.add_argument("--messages", type=int, default=3000, help="webhooks per run")
    p.add_argument("--citizens", type=int, default=1000, help="distinct phones per run")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--limit-s", type=float, default=60.0, help="cap on one run's load + drain")
    p.add_argument("--fake-twilio", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dispatchers = [int(x) for x in str(args.dispatchers).split(",") if x]
    args.backends = [x.strip() for x in str(args.backends).split(",") if x.strip()]
    if not set(args.backends) <= {"redis", "cluster"}:
        p.error("--backends takes redis and/or cluster")
    return args


def cli(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    if args.fake_twilio:
        runner(fake_twilio_main(args.fake_twilio))
        return 0
    try:
        return int(runner(main(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench.cluster: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
