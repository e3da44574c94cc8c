"""Outbox: how many replies per second one sender process takes from queued to their final
state at a local fake Twilio that fails a share of first attempts (so retries happen), next to
a bare aiohttp client sending as many requests to the same fake. See bench/README.md.

One run starts, on 127.0.0.1 only: its own redis-server; a fake Twilio (separate process,
``hub.demo.fake_twilio.FakeTwilio`` answering 500 or 429 once to a share of the replies); the
hub as ``python -m hub run --role sender`` (production defaults but a short backoff); and stops
them all on the way out, on error or SIGTERM too. The replies are queued beforehand through the
real reply path (``ReplyService.create``: window check, store, outbox) on tickets the real
dispatcher opened.

Internal mode (used by the orchestrator): ``--serve fake-twilio --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters import keys
from bench.common import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    HOST,
    WA_NUMBER,
    Figures,
    GroupProgress,
    Mix,
    Procs,
    bench_toml,
    cpu_seconds,
    free_port,
    new_loop_runner,
    proc_rss_mb,
    say,
    start_profile,
    start_redis,
    summarize_profile,
    until_interrupted,
    wait_port,
    whatsapp_messages,
)
from hub.demo.fake_twilio import FakeTwilio
from hub.settings import load_settings

TARGET = 5_000
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


# -- the fake provider (a separate process) --------------------------------------------------


class FlakyTwilio(FakeTwilio):
    """The fake Twilio, answering 500 or 429 (alternately) to the first attempt of a share of
    the messages (by body: each reply's text is unique); every later attempt goes through.
    ``GET /_fake/attempts`` tells, per body, how many requests came and how many were
    accepted."""

    def __init__(self, fail_share: float, seed: int) -> None:
        super().__init__({ACCOUNT_SID: AUTH_TOKEN})  # no status callbacks: sends only
        self.fail_share = fail_share
        self.rnd = random.Random(seed)
        self.decided: set[str] = set()
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.failed = 0

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/_fake/attempts", self._attempts)
        return app

    async def _create(self, request: web.Request) -> web.Response:
        body = str((await request.post()).get("Body", ""))
        self.attempts[body] += 1
        if body not in self.decided:
            self.decided.add(body)
            if self.rnd.random() < self.fail_share:
                self.failed += 1
                status = 500 if self.failed % 2 else 429
                return self._error(status, 20500 if status == 500 else 20429, "flaky")
        resp = await super()._create(request)
        if resp.status == 201:
            self.accepted[body] += 1
        self.sent.clear()  # nobody lists them here; keep the process small
        self.requests.clear()
        return resp

    async def _attempts(self, _request: web.Request) -> web.Response:
        return web.json_response({"attempts": dict(self.attempts), "accepted": dict(self.accepted)})


async def serve_fake_twilio(port: int, fail_share: float, seed: int) -> None:
    fake = FlakyTwilio(fail_share, seed)
    await fake.start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


# -- the baseline: a bare aiohttp client -----------------------------------------------------


async def bare_client(base: str, n: int, concurrency: int, tag: str = "") -> tuple[float, int, int]:
    """``n`` Twilio-shaped form POSTs (basic auth, To/From/Body/StatusCallback), ``concurrency``
    in flight, each retried once if the fake answered 500/429 (the fake's work is then what
    the sender gives it). Returns (seconds, requests, accepted)."""
    auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    todo = iter(range(n))
    requests = accepted = 0

    async def one(session: aiohttp.ClientSession, i: int) -> int:
        nonlocal requests
        data = {
            "To": "whatsapp:+6281200000000",
            "From": f"whatsapp:{WA_NUMBER}",
            "Body": f"baseline {tag} {i}",
            "StatusCallback": "http://127.0.0.1:1/webhooks/whatsapp/wa1/status",
        }
        requests += 1
        async with session.post(
            base + MESSAGES_PATH, data=data, headers={"Authorization": auth}
        ) as r:
            await r.read()
            return r.status

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        for i in todo:
            status = await one(session, i)
            if status in (429, 500):
                status = await one(session, i)
            accepted += status == 201

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - t0, requests, accepted


# -- setup: tickets, then replies through the real reply path --------------------------------


async def queue_replies(settings: Any, tickets: int, n: int, rnd: random.Random) -> list[str]:
    """Open ``tickets`` tickets with the real dispatcher (one message each, acknowledgements
    off), then queue ``n`` agent replies spread over them with ``ReplyService.create``, as the
    API does. Returns the reply texts (unique), in queueing order."""
    from adapters.redis_bus import StreamGroup
    from hub.dispatcher import Dispatcher, DispatchOptions
    from hub.runtime import Hub

    hub = Hub(settings, frozenset())
    await hub.start()
    try:
        groups = [
            StreamGroup(hub.redis, s, keys.DISPATCH_GROUP, "bench") for s in hub.inbound_streams()
        ]
        d = Dispatcher(
            hub.store, groups, hub.acknowledger, hub.channels,
            DispatchOptions.from_settings(settings.dispatcher, settings.hub.reopen_window_hours),
            "bench", hub.metrics, hub.router, hub.events, hub.queue, hub.search, hub.load,
        )  # fmt: skip
        msgs = whatsapp_messages(settings, Mix(tickets, tickets, 1.0, 0.0), rnd)
        tids: list[str] = []
        for i in range(0, len(msgs), 100):
            tids += [a.ticket_id for a in await d.apply(msgs[i : i + 100])]
        texts = [
            f"Balasan {i} untuk tiket Anda: mohon lampirkan slip gaji dan kontrak kerja."
            for i in range(n)
        ]
        for i in range(0, n, 200):
            await asyncio.gather(
                *(
                    hub.replies.create(tids[j % len(tids)], text=texts[j], author="agent-bench")
                    for j in range(i, min(n, i + 200))
                )
            )
        return texts
    finally:
        await hub.stop()


# -- checks --------------------------------------------------------------------------------

BAD_EVENTS = {"sender.loop_failed", "sender.entry_failed"}


def bad_log_lines(path: Path) -> list[str]:
    """Lines of a JSON log that say something went wrong."""
    bad = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("level") in ("error", "critical") or d.get("event") in BAD_EVENTS:
                bad.append(line[:300])
    return bad


async def verify(r: Any, texts: list[str], attempts: dict[str, Any]) -> tuple[list[str], int]:
    """Every reply sent once and final; the fake saw exactly as many requests per reply as
    the reply's recorded attempts; nothing dead-lettered. Returns (problems, retried)."""
    problems = []
    seen, accepted = attempts["attempts"], attempts["accepted"]
    stream = keys.outbox_stream("whatsapp")
    ids = {f[b"r"] for _, f in await r.xrange(stream, count=10**7)}
    pipe = r.pipeline(transaction=False)
    refs = sorted(ids)
    for ref in refs:
        cid, _, rid = ref.decode().partition("|")
        pipe.hmget(keys.entry(cid, rid), ["state", "attempts", "json"])
    rows = await pipe.execute()
    states: Counter[str] = Counter()
    mismatched = twice = 0
    bodies = set()
    for state, n_attempts, raw in rows:
        states[(state or b"missing").decode()] += 1
        body = json.loads(raw)["text"] if raw else ""
        bodies.add(body)
        mismatched += int(n_attempts or 0) != seen.get(body, 0)
        twice += accepted.get(body, 0) != 1
    if len(refs) != len(texts) or bodies != set(texts):
        problems.append(f"{len(refs)} replies in the outbox for {len(texts)} queued")
    if states != Counter({"sent": len(texts)}):
        problems.append(f"states {dict(states)}")
    if mismatched:
        problems.append(f"{mismatched} replies whose attempts differ from the requests made")
    if twice:
        problems.append(f"{twice} replies not accepted exactly once by the provider")
    if await r.xlen(keys.dead_letters(stream)):
        problems.append("dead letters in the outbox")
    retried = sum(1 for b in texts if seen.get(b, 0) > 1)
    if not retried:
        problems.append("no retry happened (the fake should have failed some first attempts)")
    return problems, retried


# -- the run -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    rnd = random.Random(args.seed)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-outbox-"))
    procs = Procs(tmp)
    ok = False
    r: Any = None
    try:
        rport, rproc, r = await start_redis(procs, tmp)
        me = [sys.executable, "-m", "bench.outbox"]
        tport = free_port()
        tproc = await procs.start(
            "fake-twilio", *me, "--serve", "fake-twilio", "--port", str(tport),
            "--fail-share", str(args.fail_share), "--seed", str(args.seed),
        )  # fmt: skip
        await wait_port(tport, tproc)
        twilio = f"http://{HOST}:{tport}"
        cfg = tmp / "hub.toml"
        extra = f"[ack]\nenabled = false\n[outbox]\nbackoff_base_s = {args.backoff_base}\n"
        if args.concurrency:
            extra += f"concurrency = {args.concurrency}\n"
        cfg.write_text(
            bench_toml(f"redis://{HOST}:{rport}/0", tmp / "hub", args.hub_log_level, twilio,
                       extra + args.extra_toml)
        )  # fmt: skip
        settings = load_settings(cfg)
        say(
            f"redis-server {rport}, fake Twilio {tport} (fails {args.fail_share:.0%} of first "
            f"attempts); temp dir {tmp}; sender concurrency {settings.outbox.concurrency}, "
            f"backoff base {settings.outbox.backoff_base_s:g} s, "
            f"max attempts {settings.outbox.max_attempts}"
        )

        # baseline: the bare client against the same fake, before and after the sender (the
        # machine's load drifts; the mean is the baseline)
        async def bare(when: str) -> dict[str, float]:
            cpu_f0, cpu_s0 = cpu_seconds(tproc.pid), time.process_time()
            seconds, requests, got = await bare_client(
                twilio, args.n, settings.outbox.concurrency, when
            )
            out = {
                "rate": args.n / seconds,
                "cpu": time.process_time() - cpu_s0,
                "fake_cpu": cpu_seconds(tproc.pid) - cpu_f0,
            }
            say(
                f"bare aiohttp client ({when} the sender), {settings.outbox.concurrency} in "
                f"flight: {args.n:,} messages ({requests:,} requests, {got:,} accepted) in "
                f"{seconds:.2f} s = {out['rate']:,.0f}/s"
            )
            return out

        before = await bare("before")

        t0 = time.perf_counter()
        stream = keys.outbox_stream("whatsapp")
        await r.xgroup_create(stream, keys.SEND_GROUP, id="0", mkstream=True)
        texts = await queue_replies(settings, args.tickets, args.n, rnd)
        queued = await r.xlen(stream)
        say(
            f"queued {queued:,} replies on {args.tickets:,} tickets through ReplyService in "
            f"{time.perf_counter() - t0:.1f} s"
        )

        progress = GroupProgress(r, [stream], keys.SEND_GROUP, [keys.outbox_delayed("whatsapp")])
        argv = [sys.executable, "-m", "hub", "run", "--role", "sender", "--config", str(cfg)]
        proc = await procs.start("hub", *argv)
        while progress.first is None:
            if proc.returncode is not None:
                raise RuntimeError(f"the sender exited with {proc.returncode}")
            await progress.poll()
            await asyncio.sleep(progress.interval)  # polling another process's start
        prof = await start_profile(procs, proc.pid) if args.profile else None
        cpu_h0, cpu_r0, cpu_f0 = (cpu_seconds(p) for p in (proc.pid, rproc.pid, tproc.pid))
        done = await progress.wait_done(args.limit_s)
        cpu_h1, cpu_r1, cpu_f1 = (cpu_seconds(p) for p in (proc.pid, rproc.pid, tproc.pid))
        if prof is not None:
            await procs.stop("py-spy", signal.SIGINT)  # py-spy writes its file on SIGINT
        rss = proc_rss_mb(proc.pid)
        assert progress.first is not None
        hub_s = done - progress.first if done else float("nan")
        hub_rate = args.n / hub_s
        say(
            f"hub sender: {args.n:,} replies final in {hub_s:.2f} s = {hub_rate:,.0f}/s"
            + ("" if done else " (NOT DONE)")
        )
        await procs.stop("hub")
        after = await bare("after")
        bare_rate = (before["rate"] + after["rate"]) / 2

        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{twilio}/_fake/attempts") as resp,
        ):
            attempts = await resp.json()
        problems = [] if done else ["the sender did not finish in time"]
        more, retried = await verify(r, texts, attempts)
        problems += more
        bad = bad_log_lines(tmp / "hub.log")
        if bad:
            problems.append(f"{len(bad)} error lines in the sender's log, first: {bad[0]}")
        say(
            f"check: {len(texts):,} replies sent, each accepted once; {retried:,} retried after "
            "a 500/429; attempts recorded = requests made; no dead letters; no error in the "
            "sender's log" + ("" if not problems else " — FAILED")
        )

        n = args.n
        f = Figures()
        f.add("sender, queued → final (replies/s)", hub_rate, bare_rate, "bare aiohttp client")
        f.note("  bare client before / after", f"{before['rate']:,.0f} / {after['rate']:,.0f}")
        f.add("  same, vs target (replies/s)", hub_rate, TARGET, "issue 9 target")
        bare_cpu = (before["cpu"] + after["cpu"]) / 2
        bare_fake = (before["fake_cpu"] + after["fake_cpu"]) / 2
        f.add("process CPU per reply (µs)", (cpu_h1 - cpu_h0) / n * 1e6, bare_cpu / n * 1e6,
              "bare client")  # fmt: skip
        f.add("fake Twilio CPU per reply (µs)", (cpu_f1 - cpu_f0) / n * 1e6, bare_fake / n * 1e6,
              "bare client")  # fmt: skip
        f.note("redis CPU per reply (µs)", f"{(cpu_r1 - cpu_r0) / n * 1e6:.0f}")
        f.note("retried (500/429 once)", f"{retried:,} of {n:,}")
        f.note("sender peak RSS (MB)", f"{rss:.0f}")
        f.note("whole run (s)", f"{time.perf_counter() - t_start:.0f}")
        say("")
        say(f.render())
        if prof is not None and prof.exists():
            say(f"\nsender profile (py-spy, {prof}):")
            say(summarize_profile(prof, args.profile_top))
        if problems:
            say("\nPROBLEMS:\n  " + "\n  ".join(problems))
            say("sender log tail:\n" + procs.tail("hub"))
        ok = not problems
        return 0 if ok else 1
    finally:
        if r is not None:
            with contextlib.suppress(Exception):
                await r.aclose()
        await procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"logs kept in {tmp}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run outbox", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--n", type=int, default=20_000, help="replies queued")
    p.add_argument("--tickets", type=int, default=2_000, help="tickets they are spread over")
    p.add_argument("--fail-share", type=float, default=0.05, help="first attempts failed")
    p.add_argument("--backoff-base", type=float, default=0.1, help="outbox.backoff_base_s")
    p.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="outbox.concurrency, the sender's sends in flight, and the bare client's "
        "(default: the production default)",
    )
    p.add_argument("--limit-s", type=float, default=300.0, help="give up on the run after this")
    p.add_argument("--hub-log-level", default="info", choices=["debug", "info", "warning"])
    p.add_argument("--extra-toml", default="", help="appended to the hub's configuration")
    p.add_argument("--profile", action="store_true", help="py-spy the sender (needs py-spy)")
    p.add_argument("--profile-top", type=int, default=40, help="rows of the profile summary")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    p.add_argument("--serve", choices=["fake-twilio"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p


async def _main(args: argparse.Namespace) -> int:
    if args.serve == "fake-twilio":
        await serve_fake_twilio(args.port, args.fail_share, args.seed)
        return 0
    return await until_interrupted(bench(args))


def main() -> int:
    return int(new_loop_runner(_main(_parser().parse_args())))


if __name__ == "__main__":
    sys.exit(main())
