"""Dispatcher alone: how many inbound messages per second one dispatcher process correlates
into tickets from pre-filled streams, next to a minimal dispatcher of the same shape and to
``redis-benchmark`` EVALSHA on the same Redis. See bench/README.md.

One run starts, on 127.0.0.1 only: its own redis-server; a minimal dispatcher (separate
process); the hub as ``python -m hub run --role dispatcher`` (production defaults); and stops
them all on the way out, on error or SIGTERM too.

Internal mode (used by the orchestrator): ``--serve minimal --redis-url URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from adapters import keys
from adapters.redis_bus import InboundPublisher
from adapters.scripts import as_text
from bench.common import (
    HOST,
    Figures,
    GroupProgress,
    Mix,
    Procs,
    bench_toml,
    cpu_seconds,
    new_loop_runner,
    proc_rss_mb,
    redis_benchmark,
    say,
    start_profile,
    start_redis,
    summarize_profile,
    until_interrupted,
    whatsapp_messages,
)
from hub.model import Message
from hub.settings import load_settings

MINIMAL_GROUPS = ("bench-minimal-1", "bench-minimal-2")  # one run before the hub, one after
# The minimal dispatcher's one trivial script per message: a dedupe mark on the contact's
# own key (hash-tagged like the hub's), nothing else.
TRIVIAL_LUA = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1"
TARGET = 20_000


# -- the minimal dispatcher (a separate process) --------------------------------------------


async def serve_minimal(redis_url: str, shards: int, batch: int, group: str) -> None:
    """Per shard: XREADGROUP ``batch`` entries; one pipeline with one EVALSHA per entry (keyed
    by the sender read from the entry's JSON) and the XACK; repeat until a read comes back
    empty. The ceiling of the per-message pipelined shape in this Python, on this Redis."""
    r: Any = Redis.from_url(redis_url)
    sha = await r.script_load(TRIVIAL_LUA)

    async def shard(stream: str) -> None:
        while True:
            reply = await r.xreadgroup(group, "minimal", {stream: ">"}, count=batch, block=200)
            if not reply:
                return
            pipe = r.pipeline(transaction=False)
            ids = []
            for eid, fields in reply[0][1]:
                m = json.loads(fields[b"m"])
                pipe.evalsha(sha, 1, f"bench:c:{{{m['sender']}}}", m["provider_id"], eid)
                ids.append(eid)
            pipe.xack(stream, group, *ids)
            await pipe.execute()

    try:
        await asyncio.gather(*(shard(keys.inbound_stream(i)) for i in range(shards)))
    finally:
        await r.aclose()


# -- checks --------------------------------------------------------------------------------


async def verify(r: Any, msgs: list[Message], shards: list[str]) -> list[str]:
    """Every message on its citizen's one ticket exactly once, in arrival order; one ticket and
    one queued acknowledgement per citizen; every entry acked; no dead letters."""
    problems = []
    for s in shards:
        info = {as_text(g["name"]): g for g in await r.xinfo_groups(s)}
        g = info.get(keys.DISPATCH_GROUP)
        top = await r.xrevrange(s, count=1)
        if g is None or int(g["pending"]) or (top and g["last-delivered-id"] != top[0][0]):
            problems.append(f"{s}: not everything acked ({g!r})")
        if await r.xlen(keys.dead_letters(s)):
            problems.append(f"{s}: dead letters")
    # expected: per sender, the first message of each provider id, in stream order
    expected: dict[str, list[str]] = defaultdict(list)
    firsts: set[str] = set()
    for m in msgs:
        if m.provider_id not in firsts:
            firsts.add(m.provider_id)
            expected[m.sender].append(m.id)
    senders = list(expected)
    pipe = r.pipeline(transaction=False)
    for sender in senders:
        pipe.get(keys.identity(sender))
    cids = [c.decode() if c else "" for c in await pipe.execute()]
    if "" in cids:
        problems.append(f"{cids.count('')} citizens have no contact")
        return problems
    pipe = r.pipeline(transaction=False)
    for cid in cids:
        pipe.zrange(keys.contact_tickets(cid), 0, -1)
        pipe.hlen(f"{keys.contact(cid)}:seen")
    replies = await pipe.execute()
    tickets = [[n.decode() for n in replies[i]] for i in range(0, len(replies), 2)]
    seen = sum(int(x) for x in replies[1::2])
    if any(len(t) != 1 for t in tickets):
        problems.append(f"{sum(len(t) != 1 for t in tickets)} citizens without exactly 1 ticket")
        return problems
    pipe = r.pipeline(transaction=False)
    for cid, [n] in zip(cids, tickets, strict=True):
        pipe.lrange(keys.ticket_log(cid, n), 0, -1)
        pipe.hmget(keys.ticket(cid, n), ["msg_count", "number", "ack_reply"])
    replies = await pipe.execute()
    wrong_order = wrong_count = no_number = no_ack = 0
    for sender, log, (count, number, ack) in zip(senders, replies[::2], replies[1::2], strict=True):
        inbound = [e.decode() for e in log if not e.startswith(b"ack-")]
        wrong_order += inbound != expected[sender]
        wrong_count += int(count or 0) != len(expected[sender])
        no_number += not number
        no_ack += not ack
    for what, n in (
        ("tickets whose messages differ from what was sent, or are out of order", wrong_order),
        ("tickets whose msg_count is wrong", wrong_count),
        ("tickets without a number", no_number),
        ("tickets without an acknowledgement", no_ack),
    ):
        if n:
            problems.append(f"{n} {what}")
    if seen != len(firsts):
        problems.append(f"dedupe marks {seen} != distinct messages {len(firsts)}")
    total_tickets = int(await r.zcard(keys.ticket_index()))
    if total_tickets != len(senders):
        problems.append(f"{total_tickets} tickets in the index for {len(senders)} citizens")
    # A redelivered first message may queue its acknowledgement again (by design: the
    # sender's claim sends it once); distinct replies queued must match the tickets.
    queued = {
        as_text(f[b"r"]) for _, f in await r.xrange(keys.outbox_stream("whatsapp"), count=10**7)
    }
    if len(queued) != len(senders):
        problems.append(f"{len(queued)} acknowledgements queued for {len(senders)} new tickets")
    numbers = int(await r.hlen(keys.ticket_numbers()))
    if numbers != len(senders):
        problems.append(f"{numbers} ticket numbers for {len(senders)} tickets")
    # the stored message is the webhook's, character for character (a sample)
    stored_ids = {i for ids in expected.values() for i in ids}
    pool = [m for m in msgs if m.id in stored_ids]
    sample = random.Random(0).sample(pool, min(300, len(pool)))
    cid_of = dict(zip(senders, cids, strict=True))
    pipe = r.pipeline(transaction=False)
    for m in sample:
        pipe.hget(keys.entry(cid_of[m.sender], m.id), "json")
    stored = await pipe.execute()
    differ = sum(
        1
        for m, raw in zip(sample, stored, strict=True)
        if raw is None or raw.decode() != m.to_json()
    )
    if differ:
        problems.append(f"{differ} of {len(sample)} sampled messages stored differently")
    return problems


BAD_EVENTS = {"dispatcher.batch_failed", "dispatcher.entry_failed", "dispatcher.loop_failed"}


def log_levels(path: Path) -> tuple[Counter[str], list[str]]:
    """Lines per level in a JSON log, and the lines that say something went wrong."""
    levels: Counter[str] = Counter()
    bad = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            levels[d.get("level", "?")] += 1
            if d.get("level") in ("error", "critical") or d.get("event") in BAD_EVENTS:
                bad.append(line[:300])
    return levels, bad


# -- the run -------------------------------------------------------------------------------


async def prefill(r: Any, msgs: list[Message], shards: int) -> float:
    """XADD every message to its shard as the webhooks do (InboundPublisher: one pipeline
    per loop turn), 1000 at a time; returns msg/s."""
    pub = InboundPublisher(r, shards)
    t0 = time.perf_counter()
    for i in range(0, len(msgs), 1000):
        await asyncio.gather(*(pub.publish(m) for m in msgs[i : i + 1000]))
    return len(msgs) / (time.perf_counter() - t0)


async def timed_run(
    procs: Procs,
    name: str,
    argv: list[str],
    progress: GroupProgress,
    redis_pid: int,
    limit_s: float,
    profile: bool = False,
) -> dict[str, Any]:
    """Start a consumer process on the pre-filled streams; time from its first delivery to
    everything acked (seen from outside), with its and Redis's CPU over that span."""
    proc = await procs.start(name, *argv)
    while progress.first is None:
        if proc.returncode is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.tail(name)}")
        await progress.poll()
        await asyncio.sleep(progress.interval)  # polling another process's start
    prof = await start_profile(procs, proc.pid) if profile else None  # the work, not imports
    cpu_p0 = cpu_seconds(proc.pid)
    cpu_r1 = cpu_seconds(redis_pid)  # Redis's share of the start-up is excluded
    done = await progress.wait_done(limit_s)
    cpu_p1, cpu_r2 = cpu_seconds(proc.pid), cpu_seconds(redis_pid)
    if prof is not None:
        await procs.stop("py-spy", signal.SIGINT)  # py-spy writes its file on SIGINT
    rss = proc_rss_mb(proc.pid)
    return {
        "seconds": (done - progress.first) if done else float("nan"),
        "done": done is not None,
        "cpu": cpu_p1 - cpu_p0,
        "redis_cpu": cpu_r2 - cpu_r1,
        "rss_mb": rss,
        "proc": proc,
        "profile": prof,
        "delivered": progress.last.delivered,
    }


async def bench(args: argparse.Namespace) -> int:
    rnd = random.Random(args.seed)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-dispatcher-"))
    procs = Procs(tmp)
    ok = False
    r: Any = None
    try:
        rport, rproc, r = await start_redis(procs, tmp)
        redis_url = f"redis://{HOST}:{rport}/0"
        cfg = tmp / "hub.toml"
        cfg.write_text(
            bench_toml(
                redis_url, tmp / "hub", args.hub_log_level, "http://127.0.0.1:9", args.extra_toml
            )
        )
        settings = load_settings(cfg)
        nshards = settings.redis.inbound_shards
        shards = [keys.inbound_stream(i) for i in range(nshards)]
        say(
            f"redis-server {rport}; temp dir {tmp}; {nshards} inbound shards, batch "
            f"{settings.dispatcher.batch_size}"
        )

        mix = Mix(args.n, args.citizens, args.open_share, args.dup_share)
        t0 = time.perf_counter()
        msgs = whatsapp_messages(settings, mix, rnd)
        built = time.perf_counter() - t0
        distinct = len({m.provider_id for m in msgs})
        citizens = len({m.sender for m in msgs})
        for s in shards:  # every group from the start of the streams
            for g in (keys.DISPATCH_GROUP, *MINIMAL_GROUPS):
                await r.xgroup_create(s, g, id="0", mkstream=True)
        rate = await prefill(r, msgs, nshards)
        per_shard = Counter([await r.xlen(s) for s in shards])
        say(
            f"pre-filled {len(msgs):,} messages ({distinct:,} distinct, {citizens:,} citizens "
            f"= tickets to open) in {built:.1f} s to parse + XADD at {rate:,.0f} msg/s; "
            f"per shard {sorted(per_shard.elements())}"
        )

        # baseline (ii): redis-benchmark EVALSHA of the trivial script
        sha = as_text(await r.script_load(TRIVIAL_LUA))
        evalsha = ("EVALSHA", sha, "1", "bench:rb:{__rand_int__}", "f", "v")
        eval1 = await redis_benchmark(rport, args.evalsha_n, 1, *evalsha)
        eval100 = await redis_benchmark(rport, args.evalsha_n, 100, *evalsha)
        say(f"redis-benchmark EVALSHA: {eval1:,.0f} req/s; -P 100: {eval100:,.0f}")

        # baseline (i): the minimal dispatcher over the same entries (its own group), before
        # and after the hub: the machine's load drifts, the mean is the baseline
        me = [sys.executable, "-m", "bench.dispatcher", "--serve", "minimal"]
        me += ["--redis-url", redis_url, "--shards", str(nshards)]
        me += ["--batch", str(settings.dispatcher.batch_size)]

        async def minimal(i: int) -> dict[str, Any]:
            g = MINIMAL_GROUPS[i]
            run = await timed_run(
                procs, g, [*me, "--group", g], GroupProgress(r, shards, g), rproc.pid, args.limit_s
            )
            run["rate"] = len(msgs) / run["seconds"]
            say(f"minimal dispatcher ({'before' if i == 0 else 'after'} the hub): "
                f"{len(msgs):,} in {run['seconds']:.2f} s = {run['rate']:,.0f} msg/s")  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run["proc"].wait(), 10)
            return run

        before = await minimal(0)

        # the hub's dispatcher; Redis's command statistics cover its run alone
        await r.config_resetstat()
        hub = await timed_run(
            procs,
            "hub",
            [sys.executable, "-m", "hub", "run", "--role", "dispatcher", "--config", str(cfg)],
            GroupProgress(r, shards, keys.DISPATCH_GROUP),
            rproc.pid,
            args.limit_s,
            args.profile,
        )
        hub_rate = len(msgs) / hub["seconds"] if hub["done"] else float("nan")
        say(
            f"hub dispatcher: {len(msgs):,} in {hub['seconds']:.2f} s = {hub_rate:,.0f} msg/s"
            + ("" if hub["done"] else f" (NOT DONE: {hub['delivered']:,} delivered)")
        )
        stats = await r.info("commandstats")
        await procs.stop("hub")
        after = await minimal(1)
        min_rate = (before["rate"] + after["rate"]) / 2
        min_cpu = (before["cpu"] + after["cpu"]) / 2
        min_rcpu = (before["redis_cpu"] + after["redis_cpu"]) / 2

        problems = [] if hub["done"] else ["the hub did not ack everything in time"]
        problems += await verify(r, msgs, shards)
        logged, bad = log_levels(tmp / "hub.log")
        if bad:
            problems.append(f"{len(bad)} error lines in the hub's log, first: {bad[0]}")
        say(
            f"check: {len(msgs):,} entries acked; {distinct:,} distinct messages on "
            f"{citizens:,} tickets, in order, once each, stored as sent; {citizens:,} "
            "acknowledgements queued; no error in the hub's log"
            + ("" if not problems else " — FAILED")
        )

        n = len(msgs)
        f = Figures()
        f.add("dispatcher, pre-filled (msg/s)", hub_rate, min_rate, "minimal dispatcher")
        f.note("  minimal before / after the hub", f"{before['rate']:,.0f} / {after['rate']:,.0f}")
        f.add("  same, vs target (msg/s)", hub_rate, TARGET, "issue 9 target")
        f.add("  same, vs redis EVALSHA (msg/s)", hub_rate, eval1, "EVALSHA -P1")
        f.add("  same, vs redis EVALSHA pipelined", hub_rate, eval100, "EVALSHA -P100")
        f.add("process CPU per message (µs)", hub["cpu"] / n * 1e6, min_cpu / n * 1e6, "minimal")
        f.add("redis CPU per message (µs)", hub["redis_cpu"] / n * 1e6, min_rcpu / n * 1e6,
              "minimal")  # fmt: skip
        f.note("hub peak RSS (MB)", f"{hub['rss_mb']:.0f}")
        f.note("hub log lines (by level)", ", ".join(f"{k} {v}" for k, v in logged.items()))
        f.note("messages / distinct / tickets", f"{n:,} / {distinct:,} / {citizens:,}")
        f.note("whole run (s)", f"{time.perf_counter() - t_start:.0f}")
        say("")
        say(f.render())
        say("\n" + redis_time_by_command(stats, n))
        if hub["profile"] is not None and hub["profile"].exists():
            say(f"\nhub profile (py-spy, {hub['profile']}):")
            say(summarize_profile(hub["profile"], args.profile_top))
        if problems:
            say("\nPROBLEMS:\n  " + "\n  ".join(problems))
            say("hub log tail:\n" + procs.tail("hub"))
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


def redis_time_by_command(stats: dict[str, Any], n: int, top: int = 14) -> str:
    """Where Redis's time went during the hub's run (``INFO commandstats``, reset before it):
    µs per message by command, the commands its scripts call counted on their own and inside
    their script's (EVALSHA's) time, so the script's own overhead is EVALSHA minus them."""
    rows = sorted(
        ((name.removeprefix("cmdstat_"), v["usec"], v["calls"]) for name, v in stats.items()),
        key=lambda row: -row[1],
    )
    lines = [f"redis time by command during the hub's run (µs per message; {n:,} messages):"]
    for name, usec, calls in rows[:top]:
        per_call = usec / max(calls, 1)
        lines.append(f"  {name:<12} {usec / n:7.1f} µs  {calls / n:6.2f} calls/msg  "
                     f"{per_call:6.2f} µs/call")  # fmt: skip
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run dispatcher", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--n", type=int, default=100_000, help="messages pre-filled")
    p.add_argument("--citizens", type=int, default=5000, help="citizens writing at a time")
    p.add_argument("--open-share", type=float, default=0.1, help="share from new citizens")
    p.add_argument("--dup-share", type=float, default=0.01, help="share of provider retries")
    p.add_argument("--evalsha-n", type=int, default=100_000, help="redis-benchmark -n")
    p.add_argument("--limit-s", type=float, default=400.0, help="give up on a run after this")
    p.add_argument("--hub-log-level", default="info", choices=["debug", "info", "warning"])
    p.add_argument("--extra-toml", default="", help="appended to the hub's configuration")
    p.add_argument("--profile", action="store_true", help="py-spy the hub (needs py-spy)")
    p.add_argument("--profile-top", type=int, default=40, help="rows of the profile summary")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    p.add_argument("--serve", choices=["minimal"], help=argparse.SUPPRESS)
    p.add_argument("--redis-url", default="", help=argparse.SUPPRESS)
    p.add_argument("--shards", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--group", default=MINIMAL_GROUPS[0], help=argparse.SUPPRESS)
    return p


async def _main(args: argparse.Namespace) -> int:
    if args.serve == "minimal":
        await serve_minimal(args.redis_url, args.shards, args.batch, args.group)
        return 0
    return await until_interrupted(bench(args))


def main() -> int:
    return int(new_loop_runner(_main(_parser().parse_args())))


if __name__ == "__main__":
    sys.exit(main())
