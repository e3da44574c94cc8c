"""E-mail test fixtures: a real Dovecot IMAP server per test worker, and a mailbox per test.

Dovecot follows ../shared/protocols.md §4: config in a temp dir, ``dovecot -F -c <conf>`` on a
free loopback port (plus an implicit-TLS port with a self-signed certificate made by openssl),
stopped with SIGTERM. Each pytest-xdist worker is its own session, so each starts its own
Dovecot. Each test gets a fresh mailbox (a new name), so tests never see each other's mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioimaplib import aioimaplib

from adapters.redis_server import free_port

DOVECOT = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
DOVEADM = shutil.which("doveadm") or shutil.which("doveadm", path="/usr/bin:/usr/sbin")
OPENSSL = shutil.which("openssl")
USER = "agent@example.test"
PASSWORD = "s3cret-Pa55"

CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_failure_delay = 0
mailbox_idle_check_interval = 1 secs
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 100
first_valid_gid = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


@dataclass
class Dovecot:
    dir: Path
    port: int
    tls_port: int
    cert: Path
    conf: Path
    proc: subprocess.Popen[bytes]

    def doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        out = subprocess.run(
            [str(DOVEADM), "-c", str(self.conf), *args],
            input=stdin,
            capture_output=True,
            check=True,
            timeout=30,
        )
        return out.stdout.decode()

    def status(self, mailbox: str) -> dict[str, int]:
        """``messages``, ``uidnext``, ``uidvalidity`` of a mailbox, from doveadm."""
        line = self.doveadm(
            "mailbox", "status", "-u", USER, "messages uidnext uidvalidity", mailbox
        ).split()
        return {k: int(v) for k, v in (p.split("=") for p in line if "=" in p)}

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return ctx


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(400):
        if proc.poll() is not None:
            pytest.fail(f"dovecot exited at start: {log.read_text() if log.exists() else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.025)  # session setup, outside any event loop
    pytest.fail("dovecot did not open its port")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for localhost / 127.0.0.1, made by openssl."""
    if OPENSSL is None:
        pytest.fail("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    d.chmod(0o755)
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(d / "cert.pem", d / "key.pem")


@pytest.fixture(scope="session")
def dovecot(tls_files: TlsFiles) -> Iterator[Dovecot]:
    """One throwaway Dovecot for this test worker (plain IMAP and implicit TLS ports)."""
    if DOVECOT is None or DOVEADM is None:
        pytest.fail("dovecot-imapd is needed: run `make test`, which installs it")
    d = Path(tempfile.mkdtemp(prefix="hub-dovecot-"))
    d.chmod(0o755)  # the auth process (user dovecot) reads the passwd file in it
    for sub in ("run", "state", "home"):
        (d / sub).mkdir()
    shutil.chown(d / "home", "dovecot", "dovecot")
    (d / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    shutil.copy(tls_files.cert, d / "cert.pem")
    shutil.copy(tls_files.key, d / "key.pem")
    port, tls_port = free_port(), free_port()
    while tls_port == port:
        tls_port = free_port()
    conf = d / "dovecot.conf"
    conf.write_text(CONF.format(d=d, port=port, tls_port=tls_port))
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port, proc, d / "dovecot.log")
        _wait_port(tls_port, proc, d / "dovecot.log")
        yield Dovecot(d, port, tls_port, d / "cert.pem", conf, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Iterator[str]:
    """A fresh, empty mailbox for this test."""
    name = f"t{uuid.uuid4().hex[:10]}"
    dovecot.doveadm("mailbox", "create", "-u", USER, name)
    yield name
    with contextlib.suppress(subprocess.CalledProcessError):
        dovecot.doveadm("mailbox", "delete", "-u", USER, name)


class Appender:
    """Delivers mail by IMAP APPEND over its own connection (opened per call, so a test that
    kicks the intake's connections cannot break it)."""

    def __init__(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot

    async def __call__(self, mailbox: str, *raws: bytes) -> list[int]:
        client = aioimaplib.IMAP4("127.0.0.1", self.dovecot.port, timeout=10)
        uids: list[int] = []
        try:
            await client.wait_hello_from_server()
            assert (await client.login(USER, PASSWORD)).result == "OK"
            for raw in raws:
                resp = await client.append(raw, mailbox=mailbox)
                assert resp.result == "OK", resp
                uids.append(int(resp.lines[-1].split()[2].rstrip(b"]")))  # [APPENDUID v uid]
            await client.logout()
        finally:
            if client.protocol.transport is not None:
                client.protocol.transport.close()
        return uids


@pytest.fixture
def append(dovecot: Dovecot) -> Appender:
    return Appender(dovecot)


def make_mail(n: int, subject: str = "", sender: str = "warga@example.id") -> bytes:
    """A small distinct mail (Message-ID carries ``n``)."""
    return (
        f"From: Warga {n} <{sender}>\r\n"
        f"To: ppid@kemnaker.go.id\r\n"
        f"Subject: {subject or f'Pengaduan nomor {n}'}\r\n"
        f"Message-ID: <mail-{n}-{uuid.uuid4().hex[:8]}@example.id>\r\n"
        f"Date: Mon, 5 Jan 2026 09:00:00 +0700\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n"
        f"Isi pengaduan {n}.\r\n"
    ).encode()


class TcpProxy:
    """A loopback TCP relay to Dovecot that a test can take down (dropping every connection
    and refusing new ones) and bring back on the same port. ``source`` is the local address
    it connects to Dovecot from (Dovecot's failed-login penalty is per client IP)."""

    def __init__(self, target_port: int, source: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.source = source
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(
                "127.0.0.1", self.target_port, local_addr=(self.source, 0)
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers.difference_update((writer, up_w))
