"""An embedded redis-server the hub starts, watches and stops, for one-box installs and demos.

AOF is on and the data lives in ``<data_dir>/redis`` so a restart of the hub finds its
tickets again. If redis-server dies, it is restarted (with backoff) on the same port and data.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from pathlib import Path

import structlog
from redis.asyncio import Redis

log = structlog.get_logger("redis.embedded")


class EmbeddedRedisError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    def __init__(
        self,
        data_dir: Path,
        binary: str = "redis-server",
        port: int = 0,
        appendfsync: str = "everysec",
    ) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.binary = binary
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self.joined = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        exe = shutil.which(self.binary)
        if exe is None:
            raise EmbeddedRedisError(
                f"{self.binary} not found: install Debian's redis-server (make run does) "
                "or set redis.url to an existing server"
            )
        return [
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--appenddirname",
            "appendonly",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.dir / "redis.log"),
        ]

    async def start(self) -> None:
        """Start the server, or join the one another hub process started on this data dir
        (two servers on one AOF directory would corrupt it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if await self._join_running():
            return
        await self._spawn()
        (self.dir / "hub-redis.port").write_text(str(self.port))
        self._watch = asyncio.create_task(self._supervise(), name="redis-supervisor")

    async def _join_running(self) -> bool:
        marker = self.dir / "hub-redis.port"
        if not marker.exists():
            return False
        port = int(marker.read_text().strip() or 0)
        client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        try:
            running_dir = (await client.config_get("dir")).get("dir")
        except Exception:
            return False
        finally:
            await client.aclose()
        if running_dir not in (str(self.dir), str(self.dir).encode()):
            return False
        self.port, self.joined = port, True
        log.info("redis.joined", port=port, dir=str(self.dir))
        return True

    async def _spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await self._wait_ready()
        log.info("redis.started", port=self.port, pid=self._proc.pid, dir=str(self.dir))

    async def _wait_ready(self, limit_s: float = 20.0) -> None:
        client = Redis.from_url(self.url)
        try:
            async with asyncio.timeout(limit_s):
                while True:
                    if self._proc is not None and self._proc.returncode is not None:
                        raise EmbeddedRedisError(
                            f"redis-server exited with {self._proc.returncode}; "
                            f"see {self.dir / 'redis.log'}"
                        )
                    try:
                        if await client.ping():
                            # AOF load finished: PING answers LOADING errors until then.
                            return
                    except Exception:  # noqa: S110 - not up yet; retry until timeout
                        pass
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise EmbeddedRedisError(f"redis-server did not answer on port {self.port}") from None
        finally:
            await client.aclose()

    async def _supervise(self) -> None:
        delay = 0.5
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            log.error("redis.died", exit_code=code, restart_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            with contextlib.suppress(EmbeddedRedisError):
                await self._spawn()
                delay = 0.5

    async def stop(self) -> None:
        self._stopping = True
        if self.joined:  # another process owns it
            return
        (self.dir / "hub-redis.port").unlink(missing_ok=True)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.terminate()  # redis-server flushes the AOF on SIGTERM
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.info("redis.stopped", port=self.port)
