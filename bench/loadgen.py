"""The load generator of the webhook benches, in a process of its own.

Two clients, the same requests and the same report:

* ``raw`` (the default): HTTP/1.1 keep-alive over ``concurrency`` plain asyncio connections
  (uvloop), one request in flight per connection (no pipelining: providers do not pipeline
  either), requests serialized to bytes before timing starts, responses parsed only as far as
  the status line and Content-Length. About 20-30 µs of CPU per request, so on 2 cores the
  server under test, not the client, is the ceiling.
* ``aiohttp``: aiohttp's client with the same connection limit (what the first bench used;
  roughly ten times the CPU per request).

Closed loop: ``concurrency`` requests always in flight until the requests run out or time is
up. Open loop: one request every 1/rate s on a fixed schedule, at most ``concurrency`` in
flight (a request whose slot comes while every connection is busy leaves late, and is counted).

Timestamps are ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux): the same clock in every
process, so the orchestrator can compare them with its own.

    python -m bench.loadgen SPEC RESULT     # both pickle files; see ``Spec`` and ``Result``
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast


@dataclass
class Spec:
    host: str
    port: int
    path: str
    requests: list[tuple[dict[str, str], bytes]]  # (headers, body), POSTed to ``path``
    mode: str = "closed"  # closed | open
    concurrency: int = 64
    seconds: float = 12.0  # closed loop: stop sending after this
    rate: float = 0.0  # open loop: requests per second
    client: str = "raw"  # raw | aiohttp
    warmup: list[tuple[dict[str, str], bytes]] = field(default_factory=list)  # sent (closed
    # loop, same concurrency) before timing starts; not reported


@dataclass
class Result:
    sent_at: list[float] = field(default_factory=list)  # by request index; 0.0: not sent
    answered_at: list[float] = field(default_factory=list)  # by index; 0.0: no 200 answer
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    late: int = 0  # open loop: requests that left more than 5 ms after their slot
    started: float = 0.0
    finished: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time between started and finished


LATE_S = 0.005


# -- the raw client ------------------------------------------------------------------------


def serialize(spec: Spec, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {spec.path} HTTP/1.1", f"Host: {spec.host}:{spec.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Conn(asyncio.Protocol):
    """One keep-alive connection; calls ``done(conn, status)`` per complete response."""

    def __init__(self, gen: _RawGen) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.need = -1  # bytes of the current response still expected (-1: in the head)
        self.status = 0
        self.index = -1  # the request in flight on this connection
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, index: int, raw: bytes) -> None:
        assert self.transport is not None
        self.index = index
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while buf:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].lower()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError("loadgen: only Content-Length responses are supported")
                stop = head.find(b"\r\n", at + 2)
                self.need = int(head[at + 17 : stop if stop >= 0 else len(head)])
                buf = buf[end + 4 :]
            if len(buf) < self.need:
                break
            buf = buf[self.need :]
            self.need = -1
            index, self.index = self.index, -1
            self.gen.done(self, index, self.status)
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.gen.lost(self)


class _RawGen:
    def __init__(self, spec: Spec, res: Result) -> None:
        self.spec = spec
        self.res = res
        self.raw = [serialize(spec, h, b) for h, b in spec.requests]
        self.conns: list[_Conn] = []
        self.idle: deque[_Conn] = deque()
        self.next = 0
        self.inflight = 0
        self.deadline = float("inf")
        self.all_done = asyncio.Event()
        self.freed = asyncio.Event()
        self.closed_loop = True
        self.counting = True

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.spec.concurrency):
            t, c = await loop.create_connection(lambda: _Conn(self), self.spec.host, self.spec.port)
            c.transport = t
            self.conns.append(c)

    def close(self) -> None:
        for c in self.conns:
            if c.transport is not None:
                c.transport.close()

    def send(self, conn: _Conn, index: int) -> None:
        if self.counting:
            self.res.sent_at[index] = time.perf_counter()
        self.inflight += 1
        conn.send(index, self.raw[index])

    def done(self, conn: _Conn, index: int, status: int) -> None:
        self.inflight -= 1
        if self.counting:
            if status == 200:
                self.res.answered_at[index] = time.perf_counter()
            self.res.statuses[status] = self.res.statuses.get(status, 0) + 1
        if self.closed_loop:
            self.feed(conn)
        else:
            self.idle.append(conn)
            self.freed.set()
        if self.inflight == 0 and (
            self.next >= len(self.raw) or not self.closed_loop or self.past_deadline()
        ):
            self.all_done.set()

    def lost(self, conn: _Conn) -> None:
        if conn.index >= 0:
            self.inflight -= 1
            self.res.errors += 1
            conn.index = -1
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        if self.inflight == 0:
            self.all_done.set()

    def past_deadline(self) -> bool:
        return time.perf_counter() >= self.deadline

    def feed(self, conn: _Conn) -> None:
        if conn.lost or self.next >= len(self.raw) or self.past_deadline():
            return
        i, self.next = self.next, self.next + 1
        self.send(conn, i)

    async def closed(self, limit: int | None = None) -> None:
        self.closed_loop = True
        self.all_done.clear()
        for c in self.conns:
            if limit is not None and self.next >= limit:
                break
            self.feed(c)
        if self.inflight:
            await self.all_done.wait()

    async def open(self) -> None:
        self.closed_loop = False
        self.idle.extend(c for c in self.conns if not c.lost)
        rate = self.spec.rate
        t0 = self.res.started
        for i in range(len(self.raw)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)  # pacing the schedule
            while not self.idle:
                self.freed.clear()
                await self.freed.wait()
            if time.perf_counter() - (t0 + i / rate) > LATE_S:
                self.res.late += 1
            self.next = i + 1
            self.send(self.idle.popleft(), i)
        self.all_done.clear()
        if self.inflight:
            await self.all_done.wait()


async def run_raw(spec: Spec, res: Result) -> None:
    gen = _RawGen(spec, res)
    await gen.connect()
    try:
        if spec.warmup:
            gen.counting = False
            keep = gen.raw
            gen.raw = [serialize(spec, h, b) for h, b in spec.warmup]
            await gen.closed()
            gen.raw, gen.next, gen.counting = keep, 0, True
        res.started = time.perf_counter()
        cpu0 = time.process_time()
        if spec.mode == "closed":
            gen.deadline = res.started + spec.seconds
            await gen.closed()
        else:
            await gen.open()
        res.finished = time.perf_counter()
        res.cpu_s = time.process_time() - cpu0
    finally:
        gen.close()


# -- the aiohttp client --------------------------------------------------------------------


async def run_aiohttp(spec: Spec, res: Result) -> None:
    import aiohttp

    url = f"http://{spec.host}:{spec.port}{spec.path}"
    conn = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=spec.concurrency)
    async with aiohttp.ClientSession(
        connector=conn, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def post(i: int, count: bool = True) -> None:
            headers, body = spec.requests[i] if count else spec.warmup[i]
            if count:
                res.sent_at[i] = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if not count:
                        return
                    res.statuses[resp.status] = res.statuses.get(resp.status, 0) + 1
                    if resp.status == 200:
                        res.answered_at[i] = time.perf_counter()
            except (aiohttp.ClientError, OSError, TimeoutError):
                if count:
                    res.errors += 1

        n = len(spec.requests)
        if spec.warmup:
            it = iter(range(len(spec.warmup)))

            async def warm() -> None:
                for i in it:
                    await post(i, count=False)

            await asyncio.gather(*(warm() for _ in range(spec.concurrency)))
        res.started = time.perf_counter()
        cpu0 = time.process_time()
        if spec.mode == "closed":
            deadline = res.started + spec.seconds
            todo = iter(range(n))

            async def worker() -> None:
                for i in todo:
                    if time.perf_counter() >= deadline:
                        return
                    await post(i)

            await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        else:
            sem = asyncio.Semaphore(spec.concurrency)
            tasks: set[asyncio.Task[None]] = set()

            async def one(i: int) -> None:
                try:
                    await post(i)
                finally:
                    sem.release()

            for i in range(n):
                delay = res.started + i / spec.rate - time.perf_counter()
                if delay > 0.0005:
                    await asyncio.sleep(delay)  # pacing the schedule
                await sem.acquire()
                if time.perf_counter() - (res.started + i / spec.rate) > LATE_S:
                    res.late += 1
                t = asyncio.create_task(one(i))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
        res.finished = time.perf_counter()
        res.cpu_s = time.process_time() - cpu0


# -- entry point -----------------------------------------------------------------------------


async def generate(spec: Spec) -> Result:
    n = len(spec.requests)
    res = Result(sent_at=[0.0] * n, answered_at=[0.0] * n)
    if spec.client == "aiohttp":
        await run_aiohttp(spec, res)
    else:
        await run_raw(spec, res)
    return res


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec: Spec = pickle.loads(spec_path.read_bytes())  # noqa: S301 - our own file
    try:
        import uvloop

        res = uvloop.run(generate(spec))
    except ImportError:
        res = asyncio.run(generate(spec))
    tmp = result_path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(res))
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    # Run as the importable module, so the pickled Result names bench.loadgen, not __main__.
    from bench import loadgen

    sys.exit(loadgen.main(sys.argv[1:]))
