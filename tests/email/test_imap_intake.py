"""The IMAP intake against a real Dovecot: once, in order, across restarts, IDLE, failures,
UIDVALIDITY changes and dropped connections. Synchronization is by the intake's state
(``wait_until``) and events set by the callback, never by sleeping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from email import message_from_bytes
from typing import Any

import pytest
import structlog

from adapters.redis_mail_state import RedisMailState, position_key
from channels.email.imap import ImapAccount, ImapIntake, backoff_delay, fetched_body, search_uids
from tests.email.conftest import PASSWORD, USER, Appender, Dovecot, TcpProxy, make_mail
from tests.helpers import redis_client

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[RedisMailState]:
    r = redis_client(redis_url)
    yield RedisMailState(r)
    await r.aclose()


class Recorder:
    """The hub's side of the callback: records (uid, Message-ID); tests wait on counts."""

    def __init__(self) -> None:
        self.got: list[tuple[int, str]] = []
        self.changed = asyncio.Event()

    async def __call__(self, raw: bytes, uid: int) -> None:
        self.got.append((uid, str(message_from_bytes(raw)["Message-ID"])))
        self.changed.set()

    async def wait_count(self, n: int) -> None:
        while len(self.got) < n:
            self.changed.clear()
            if len(self.got) >= n:
                break
            await self.changed.wait()

    @property
    def uids(self) -> list[int]:
        return [u for u, _ in self.got]


def account(dovecot: Dovecot, mailbox: str, **over: Any) -> ImapAccount:
    fields: dict[str, Any] = {
        "name": f"acct-{mailbox}",
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": "plain",
        "username": USER,
        "password": PASSWORD,
        "mailbox": mailbox,
        "backoff_base": 0.02,
        "backoff_max": 0.2,
        "command_timeout": 10.0,
    }
    fields.update(over)
    return ImapAccount(**fields)


@pytest.fixture
async def intakes() -> AsyncIterator[list[ImapIntake]]:
    made: list[ImapIntake] = []
    yield made
    for intake in made:
        await intake.stop(grace=1)


def start(
    made: list[ImapIntake],
    acct: ImapAccount,
    state: RedisMailState,
    cb: Callable[[bytes, int], Awaitable[None]],
    **kw: Any,
) -> ImapIntake:
    intake = ImapIntake(acct, state, cb, **kw)
    made.append(intake)
    intake.start()
    return intake


# -- pure helpers ------------------------------------------------------------------------


def test_search_uids_reads_numbers_and_notices_exists() -> None:
    """UID SEARCH lines give the UIDs; an EXISTS slipped in is reported, not taken as a UID."""
    assert search_uids([b"1 2 3", b"Search completed (0.001 + 0.000 secs)."]) == ([1, 2, 3], False)
    assert search_uids([b"SEARCH 7", b"4 EXISTS", b"done"]) == ([7], True)
    assert search_uids([b"Search completed."]) == ([], False)


def test_fetched_body_takes_the_literal_of_the_asked_uid() -> None:
    """The body literal is matched to its UID whether UID comes before or after it."""
    lines = [b"1 FETCH (UID 5 BODY[] {3}", bytearray(b"abc"), b")", b"Fetch completed."]
    assert fetched_body(lines, 5) == b"abc"
    after = [b"2 FETCH (BODY[] {2}", bytearray(b"xy"), b" UID 9)", b"ok"]
    assert fetched_body(after, 9) == b"xy"
    assert fetched_body([b"Fetch completed."], 5) is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    """Each delay lies in [e/2, e] with e doubling from the base up to the cap."""
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 10.0)]:
        assert backoff_delay(attempt, 1.0, 10.0, lambda: 0.0) == ceiling / 2
        assert backoff_delay(attempt, 1.0, 10.0, lambda: 1.0) == ceiling


def test_account_repr_hides_the_password() -> None:
    """Neither the account nor the intake show the password in their repr."""
    acct = ImapAccount(name="ppid", host="imap.example", username="u", password="hunter2")
    assert "hunter2" not in repr(acct)
    assert "hunter2" not in repr(
        ImapIntake(acct, RedisMailState.__new__(RedisMailState), Recorder())
    )


# -- against Dovecot ---------------------------------------------------------------------


async def test_every_mail_handed_over_once_in_uid_order(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """Three waiting mails reach the callback once each, in UID order; the position follows."""
    mails = [make_mail(i) for i in range(3)]
    assert await append(mailbox, *mails) == [1, 2, 3]
    rec = Recorder()
    acct = account(dovecot, mailbox)
    intake = start(intakes, acct, state, rec)
    await intake.wait_until(lambda: intake.idling)
    assert rec.uids == [1, 2, 3]
    assert [m for _, m in rec.got] == [str(message_from_bytes(m)["Message-ID"]) for m in mails]
    uidvalidity = dovecot.status(mailbox)["uidvalidity"]
    assert await state.get(acct.name) == (uidvalidity, 3)


async def test_restart_hands_over_only_new_mail(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """A second intake after a clean stop starts after the last handed-over UID."""
    await append(mailbox, make_mail(1), make_mail(2))
    first = Recorder()
    acct = account(dovecot, mailbox)
    intake = start(intakes, acct, state, first)
    await intake.wait_until(lambda: intake.idling)
    await intake.stop()
    await append(mailbox, make_mail(3), make_mail(4))
    second = Recorder()
    again = start(intakes, acct, state, second)
    await again.wait_until(lambda: again.idling and again.last_uid == 4)
    assert first.uids == [1, 2]
    assert second.uids == [3, 4]


async def test_restart_in_the_middle_of_a_batch_loses_nothing_and_repeats_nothing(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """An intake killed while handing over UID 3 leaves the position at 2; the next takes 3-5."""
    await append(mailbox, *(make_mail(i) for i in range(5)))
    accepted: list[int] = []
    stuck = asyncio.Event()

    async def crashes_on_third(raw: bytes, uid: int) -> None:
        if uid == 3:
            stuck.set()
            await asyncio.Event().wait()  # never returns: the process dies here
        accepted.append(uid)

    acct = account(dovecot, mailbox)
    intake = start(intakes, acct, state, crashes_on_third)
    await stuck.wait()
    await intake.stop(grace=0.2)  # the grace runs out: the handover is cancelled
    uidvalidity = dovecot.status(mailbox)["uidvalidity"]
    assert await state.get(acct.name) == (uidvalidity, 2)
    rec = Recorder()
    again = start(intakes, acct, state, rec)
    await again.wait_until(lambda: again.idling)
    assert accepted + rec.uids == [1, 2, 3, 4, 5]


async def test_idle_sees_a_new_mail(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """A mail appended while the intake is in IDLE is handed over (IDLE renewal is far off)."""
    rec = Recorder()
    intake = start(intakes, account(dovecot, mailbox), state, rec)
    await intake.wait_until(lambda: intake.idling)
    assert intake.idle_count == 1
    await append(mailbox, make_mail(1))
    await rec.wait_count(1)
    assert rec.uids == [1]
    assert intake.connects == 1


async def test_idle_is_reissued_before_the_server_drops_it(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """With a short renewal the intake leaves and re-enters IDLE on one connection."""
    rec = Recorder()
    intake = start(intakes, account(dovecot, mailbox, idle_renew=0.1), state, rec)
    await intake.wait_until(lambda: intake.idle_count >= 3)
    await append(mailbox, make_mail(1))
    await rec.wait_count(1)
    assert intake.connects == 1


async def test_polling_when_idle_is_not_used(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """Without IDLE the intake polls: a new mail is picked up and IDLE is never issued."""
    rec = Recorder()
    acct = account(dovecot, mailbox, use_idle=False, poll_interval=0.05)
    intake = start(intakes, acct, state, rec)
    await intake.wait_until(lambda: intake.connected)
    await append(mailbox, make_mail(1), make_mail(2))
    await rec.wait_count(2)
    assert rec.uids == [1, 2]
    assert intake.idle_count == 0


async def test_failing_callback_does_not_advance_the_position(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """A callback failure on UID 2 keeps the position at 1; UID 2 is offered again later."""
    await append(mailbox, make_mail(1), make_mail(2), make_mail(3))
    accepted: list[int] = []
    attempts: dict[int, int] = {}
    retrying, release = asyncio.Event(), asyncio.Event()

    async def flaky(raw: bytes, uid: int) -> None:
        attempts[uid] = attempts.get(uid, 0) + 1
        if uid == 2 and attempts[uid] == 1:
            raise ConnectionError("redis is down")
        if uid == 2:
            retrying.set()
            await release.wait()
        accepted.append(uid)

    acct = account(dovecot, mailbox)
    with structlog.testing.capture_logs() as logs:
        intake = start(intakes, acct, state, flaky)
        await retrying.wait()
        uidvalidity = dovecot.status(mailbox)["uidvalidity"]
        assert await state.get(acct.name) == (uidvalidity, 1)
        release.set()
        await intake.wait_until(lambda: intake.idling and intake.last_uid == 3)
    assert accepted == [1, 2, 3]
    assert attempts == {1: 1, 2: 2, 3: 1}
    failed = [e for e in logs if e["event"] == "mailbox.handover_failed"]
    assert failed
    assert failed[0]["uid"] == 2
    assert failed[0]["mailbox"] == acct.name


async def test_repeated_handover_failures_back_off(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """A hub that keeps refusing sees slower and slower retries, though each one reconnects."""
    await append(mailbox, make_mail(1))
    accepting = False
    rec = Recorder()

    async def down_for_a_while(raw: bytes, uid: int) -> None:
        if not accepting:
            raise ConnectionError("redis is down")
        await rec(raw, uid)

    acct = account(dovecot, mailbox, backoff_base=0.02, backoff_max=1.0)
    with structlog.testing.capture_logs() as logs:
        intake = start(intakes, acct, state, down_for_a_while)
        await intake.wait_until(lambda: intake.handover_failures >= 4)
        accepting = True
        await rec.wait_count(1)
        await intake.wait_until(lambda: intake.handover_failures == 0)
    events = [e for e in logs if e["event"] == "mailbox.handover_failed"]
    assert [e["attempt"] for e in events[:4]] == [1, 2, 3, 4]
    for e in events[:4]:
        ceiling = 0.02 * 2 ** (e["attempt"] - 1)
        assert ceiling / 2 - 1e-3 <= e["retry_in"] <= ceiling + 1e-3
    assert rec.uids == [1]


async def test_changed_uidvalidity_resyncs_from_the_start(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """After the mailbox is recreated (new UIDVALIDITY), its mails are read from UID 1."""
    await append(mailbox, make_mail(1), make_mail(2), make_mail(3))
    acct = account(dovecot, mailbox)
    intake = start(intakes, acct, state, Recorder())
    await intake.wait_until(lambda: intake.idling and intake.last_uid == 3)
    await intake.stop()
    old = dovecot.status(mailbox)["uidvalidity"]
    dovecot.doveadm("mailbox", "delete", "-u", USER, mailbox)
    dovecot.doveadm("mailbox", "create", "-u", USER, mailbox)
    new = dovecot.status(mailbox)["uidvalidity"]
    assert new != old
    await append(mailbox, make_mail(10), make_mail(11))
    rec = Recorder()
    with structlog.testing.capture_logs() as logs:
        again = start(intakes, acct, state, rec)
        await again.wait_until(lambda: again.idling and again.last_uid == 2)
    assert rec.uids == [1, 2]
    assert await state.get(acct.name) == (new, 2)
    changed = [e for e in logs if e["event"] == "mailbox.uidvalidity_changed"]
    assert changed
    assert changed[0]["old"] == old
    assert changed[0]["new"] == new


async def test_kicked_connection_reconnects_and_keeps_reading(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """The server dropping the session (doveadm kick) makes the intake reconnect and go on."""
    rec = Recorder()
    acct = account(dovecot, mailbox)
    with structlog.testing.capture_logs() as logs:
        intake = start(intakes, acct, state, rec)
        await intake.wait_until(lambda: intake.idling)
        await asyncio.to_thread(dovecot.doveadm, "kick", USER)
        await intake.wait_until(lambda: intake.connects >= 2 and intake.idling)
        await append(mailbox, make_mail(1))
        await rec.wait_count(1)
    assert rec.uids == [1]
    lost = [e for e in logs if e["event"] == "mailbox.unreachable"]
    assert lost
    assert lost[0]["mailbox"] == acct.name
    assert PASSWORD not in repr(logs)


async def test_unreachable_server_backs_off_then_recovers(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """With the server gone, retries back off exponentially (logged, hook called); mail is
    picked up once it is back."""
    proxy = TcpProxy(dovecot.port)
    await proxy.up()
    rec = Recorder()
    calls: list[tuple[str, str]] = []
    acct = account(dovecot, mailbox, port=proxy.port, backoff_base=0.02, backoff_max=0.3)
    try:
        with structlog.testing.capture_logs() as logs:
            intake = start(
                intakes,
                acct,
                state,
                rec,
                on_unreachable=lambda name, exc: calls.append((name, type(exc).__name__)),
            )
            await intake.wait_until(lambda: intake.idling)
            await proxy.down()
            await intake.wait_until(lambda: intake.failures >= 4)
            await proxy.up()
            await intake.wait_until(lambda: intake.connected and intake.idling)
            await append(mailbox, make_mail(1))
            await rec.wait_count(1)
    finally:
        await proxy.down()
    events = [e for e in logs if e["event"] == "mailbox.unreachable"]
    assert len(events) >= 4
    for e in events[:4]:
        ceiling = min(0.3, 0.02 * 2 ** (e["attempt"] - 1))
        assert ceiling / 2 - 1e-3 <= e["retry_in"] <= ceiling + 1e-3
        assert e["mailbox"] == acct.name
    assert [e["attempt"] for e in events[:4]] == [1, 2, 3, 4]
    assert "ConnectionRefusedError" in events[1]["error"]
    assert calls
    assert calls[0][0] == acct.name
    assert PASSWORD not in repr(logs)
    assert rec.uids == [1]


async def test_refused_login_is_logged_without_the_password(
    dovecot: Dovecot, mailbox: str, state: RedisMailState, intakes: list[ImapIntake]
) -> None:
    """A wrong password is an unreachable mailbox: logged by name, the password never shown."""
    # Through a relay from another loopback address: Dovecot's failed-login penalty is per
    # client IP and must not slow the other tests down.
    proxy = TcpProxy(dovecot.port, source="127.0.0.2")
    await proxy.up()
    acct = account(dovecot, mailbox, port=proxy.port, password="wrong-Secret-99")
    try:
        with structlog.testing.capture_logs() as logs:
            intake = start(intakes, acct, state, Recorder())
            await intake.wait_until(lambda: intake.failures >= 1)
            await intake.stop()
    finally:
        await proxy.down()
    event = next(e for e in logs if e["event"] == "mailbox.unreachable")
    assert event["mailbox"] == acct.name
    assert event["error"] == "ImapError: login refused"
    assert "wrong-Secret-99" not in repr(logs)


async def test_tls_mailbox(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """Implicit TLS (IMAPS) with the server's certificate checked."""
    await append(mailbox, make_mail(1))
    rec = Recorder()
    acct = account(
        dovecot, mailbox, port=dovecot.tls_port, security="tls", tls_context=dovecot.tls_context()
    )
    intake = start(intakes, acct, state, rec)
    await intake.wait_until(lambda: intake.idling)
    assert rec.uids == [1]


async def test_new_account_can_skip_existing_mail(
    dovecot: Dovecot,
    mailbox: str,
    append: Appender,
    state: RedisMailState,
    intakes: list[ImapIntake],
) -> None:
    """With import_existing off, a first start takes only mail arriving after it."""
    await append(mailbox, make_mail(1), make_mail(2))
    rec = Recorder()
    intake = start(intakes, account(dovecot, mailbox, import_existing=False), state, rec)
    await intake.wait_until(lambda: intake.idling)
    await append(mailbox, make_mail(3))
    await rec.wait_count(1)
    assert rec.uids == [3]


async def test_redis_state_never_moves_back_within_a_uidvalidity(
    redis_url: str, state: RedisMailState
) -> None:
    """The position only grows for one UIDVALIDITY; a new UIDVALIDITY replaces it."""
    assert await state.get("ppid") is None
    await state.set("ppid", 100, 5)
    await state.set("ppid", 100, 3)
    assert await state.get("ppid") == (100, 5)
    await state.set("ppid", 200, 1)
    assert await state.get("ppid") == (200, 1)
    assert re.fullmatch(r"hub:\{mail\}:pos:ppid", position_key("ppid"))
