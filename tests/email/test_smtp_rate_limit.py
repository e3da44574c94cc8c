"""The SMTP intake's quotas: per envelope sender and per client IP, 451 4.7.1 at MAIL FROM.

A real hub (web and intake roles: its aiosmtpd listener, the Redis rate limiter) on the test's
Redis, driven by aiosmtplib as the relaying MTA; inbound entries are applied by the test
(``drain_inbound``), and the limiter's window is moved with the hub's clock (``ManualClock``),
so nothing sleeps. Every mail answered 250 must end up on a ticket exactly once; a deferred one
only when the relay tries it again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from adapters.redis_server import free_port
from hub import mail_intake
from hub.clock import ManualClock
from hub.demo.fake_twilio import FakeTwilio
from hub.mail_intake import SmtpQuotas, client_bucket
from hub.metrics import HubMetrics
from hub.settings import Settings, SmtpIntakeSection
from tests.helpers import HubHarness

pytestmark = pytest.mark.timeout(60)
TO = "ppid@kemnaker.go.id"
WINDOW = 60

Make = Callable[..., Awaitable[HubHarness]]


@pytest.fixture
async def smtp_hub(
    settings_for: Callable[..., Settings], fake_twilio: FakeTwilio
) -> AsyncIterator[Make]:
    """Hubs whose intake role listens for SMTP with the given quotas (no sender: the
    acknowledgements stay in the outbox)."""
    made: list[HubHarness] = []

    async def make(per_sender: int, per_ip: int, exempt: list[str] | None = None) -> HubHarness:
        account = {
            "address": TO, "intake": "smtp", "smtp_host": "127.0.0.1",
            "smtp_port": free_port(), "smtp_security": "none",
        }  # fmt: skip
        intake = {
            "enabled": True, "listen_port": free_port(), "rate_window_seconds": WINDOW,
            "rate_per_sender_per_window": per_sender, "rate_per_ip_per_window": per_ip,
            "rate_ip_exempt": exempt or [],
        }  # fmt: skip
        s = settings_for(
            channels__email__accounts={"ppid": account}, channels__email__smtp_intake=intake
        )
        h = HubHarness(s, fake_twilio)
        h.hub.roles = frozenset({"web", "intake"})
        await h.start()
        made.append(h)
        return h

    yield make
    for h in made:
        await h.stop()


def mail(sender: str, n: int) -> tuple[str, bytes]:
    """A distinct mail from ``sender``: its Message-ID and its bytes."""
    msgid = f"<rl-{n}-{uuid.uuid4().hex[:10]}@warga.test>"
    raw = (
        f"From: Warga <{sender}>\r\nTo: {TO}\r\nSubject: Pengaduan {n}\r\n"
        f"Message-ID: {msgid}\r\nDate: Mon, 5 Jan 2026 09:00:00 +0700\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nIsi pengaduan {n}.\r\n"
    ).encode()
    return msgid, raw


class Relay:
    """The MTA's side of one connection: each ``offer`` is one transaction; it records what
    was accepted (250 after DATA) and what was deferred (451 4.7.1 at MAIL FROM)."""

    def __init__(self, h: HubHarness, source: str = "127.0.0.1") -> None:
        port = h.settings.channels.email.smtp_intake.listen_port
        self.client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, source_address=(source, 0), timeout=10,
            start_tls=False,
        )  # fmt: skip
        self.accepted: list[str] = []
        self.deferred: list[tuple[str, str, bytes]] = []
        self.replies: list[str] = []

    async def __aenter__(self) -> Relay:
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.quit()

    async def offer(self, sender: str, msgid: str, raw: bytes) -> bool:
        try:
            await self.client.mail(sender)
        except aiosmtplib.SMTPSenderRefused as err:
            self.replies.append(f"{err.code} {err.message}")
            self.deferred.append((sender, msgid, raw))
            return False
        await self.client.rcpt(TO)
        await self.client.data(raw)
        self.accepted.append(msgid)
        return True


async def on_tickets(h: HubHarness) -> Counter[str]:
    """Apply what is on the inbound stream; every stored Message-ID, with its count."""
    await h.drain_inbound()
    seen: Counter[str] = Counter()
    for t in await h.tickets():
        for m in (await h.ticket(t["id"]))["messages"]:
            if m["direction"] == "in":
                seen[m["provider_id"]] += 1
    return seen


async def test_a_sender_past_its_quota_is_deferred_while_others_go_on(smtp_hub: Make) -> None:
    """Past 2 mails, the flooder's MAIL FROM gets 451 4.7.1 with a reason; another sender on
    the same connection is still taken and its mail becomes a ticket. The flooder's deferred
    attempts do not use up the relay's IP quota (5 here)."""
    h = await smtp_hub(per_sender=2, per_ip=5)
    with capture_logs() as logs:
        async with Relay(h) as relay:
            for n in range(6):
                await relay.offer("flood@spam.test", *mail("flood@spam.test", n))
            # The quota is the envelope sender's: another sender on this very connection.
            for n in range(3):
                assert await relay.offer(f"warga{n}@warga.test", *mail(f"warga{n}@x.test", n))
    assert len(relay.accepted) == 2 + 3
    assert len(relay.deferred) == 4
    assert all(r.startswith("451 4.7.1 ") and "sender" in r for r in relay.replies), relay.replies
    seen = await on_tickets(h)
    assert seen == Counter(relay.accepted)
    tickets = await h.tickets()
    assert len(tickets) == 4  # the flooder's one ticket and one per other citizen
    limited = [e for e in logs if e["event"] == "smtp.rate_limited"]
    assert len(limited) == 4
    assert {(e["by"], e["sender"], e["ip"]) for e in limited} == {
        ("sender", "f***@spam.test", "127.0.0.1")
    }
    assert h.hub.metrics.smtp_rate_limited.labels("sender")._value.get() == 4


async def test_a_client_past_the_ip_quota_is_deferred_another_ip_is_not(smtp_hub: Make) -> None:
    """Three mails from one IP (any senders), then 451 4.7.1 for every sender from it, on a
    new connection too; a relay on another address is still taken."""
    h = await smtp_hub(per_sender=0, per_ip=3)
    async with Relay(h) as relay:
        for n in range(5):
            await relay.offer(f"w{n}@warga.test", *mail(f"w{n}@warga.test", n))
    async with Relay(h) as again:
        assert not await again.offer("baru@warga.test", *mail("baru@warga.test", 9))
    async with Relay(h, source="127.0.0.2") as other:
        for n in range(3):
            assert await other.offer(f"o{n}@warga.test", *mail(f"o{n}@warga.test", 20 + n))
    assert len(relay.accepted) == 3
    assert len(relay.deferred) == 2
    assert all(r.startswith("451 4.7.1 ") and "client" in r for r in relay.replies + again.replies)
    seen = await on_tickets(h)
    assert seen == Counter(relay.accepted + other.accepted)
    assert h.hub.metrics.smtp_rate_limited.labels("ip")._value.get() == 3


async def test_the_sites_own_relay_has_no_ip_quota_its_senders_keep_theirs(
    smtp_hub: Make,
) -> None:
    """The ministry's MTA (``rate_ip_exempt``) relays every citizen's mail: past the IP quota
    it is still taken, while one of its senders past the sender quota is deferred; a client
    outside the exempt network keeps its IP quota."""
    h = await smtp_hub(per_sender=3, per_ip=2, exempt=["127.0.0.1/32"])
    async with Relay(h) as mta:
        for n in range(6):
            assert await mta.offer(f"w{n}@warga.test", *mail(f"w{n}@warga.test", n))
        for n in range(5):
            await mta.offer("flood@spam.test", *mail("flood@spam.test", 10 + n))
    async with Relay(h, source="127.0.0.2") as other:
        for n in range(3):
            await other.offer(f"o{n}@warga.test", *mail(f"o{n}@warga.test", 20 + n))
    assert len(mta.accepted) == 6 + 3
    assert [r.split(" ", 2)[:2] for r in mta.replies] == [["451", "4.7.1"]] * 2
    assert all("sender" in r for r in mta.replies), mta.replies
    assert len(other.accepted) == 2
    assert all("client" in r for r in other.replies), other.replies
    assert await on_tickets(h) == Counter(mta.accepted + other.accepted)


async def test_the_sender_is_taken_again_once_the_window_has_passed(smtp_hub: Make) -> None:
    """Deferred in this window, accepted in the next: the relay's retry gets 250."""
    h = await smtp_hub(per_sender=1, per_ip=0)
    async with Relay(h) as relay:
        assert await relay.offer("siti@warga.test", *mail("siti@warga.test", 1))
        assert not await relay.offer("siti@warga.test", *mail("siti@warga.test", 2))
        h.clock.advance(WINDOW)
        (sender, msgid, raw) = relay.deferred[0]
        assert await relay.offer(sender, msgid, raw)
        assert not await relay.offer("siti@warga.test", *mail("siti@warga.test", 3))
    seen = await on_tickets(h)
    assert seen == Counter(relay.accepted)
    assert len(seen) == 2


async def test_nothing_accepted_is_lost_in_a_concurrent_flood(smtp_hub: Make) -> None:
    """Four relays at once, 40 mails from 3 senders: no sender gets more than its 5 per
    window, the IP no more than its 12 (the quotas hold under concurrency), every mail
    answered 250 is on a ticket exactly once, and after the window the relays' retries bring
    in the rest: all 40, none twice."""
    h = await smtp_hub(per_sender=5, per_ip=12)
    senders = ["a@warga.test", "b@warga.test", "c@warga.test"]
    mails = [(senders[n % 3], *mail(senders[n % 3], n)) for n in range(40)]
    relays = [Relay(h) for _ in range(4)]

    async def run(relay: Relay, batch: list[tuple[str, str, bytes]]) -> None:
        async with relay:
            for item in batch:
                await relay.offer(*item)

    await asyncio.gather(*(run(r, mails[i::4]) for i, r in enumerate(relays)))
    accepted = [m for r in relays for m in r.accepted]
    deferred = [d for r in relays for d in r.deferred]
    assert len(accepted) + len(deferred) == 40
    by_sender = Counter(s for s, mid, _ in mails if mid in set(accepted))
    assert max(by_sender.values()) <= 5
    assert len(accepted) == 12  # 3 senders x 5 could take 15: the IP's 12 is the bound
    assert await on_tickets(h) == Counter(accepted)
    # The relays retry what was deferred, a window later each time, until all is taken.
    rounds = 0
    while deferred:
        rounds += 1
        assert rounds <= 5
        h.clock.advance(WINDOW)
        retry = Relay(h)
        async with retry:
            for item in deferred:
                await retry.offer(*item)
        accepted += retry.accepted
        deferred = retry.deferred
    assert sorted(accepted) == sorted(mid for _, mid, _ in mails)
    assert await on_tickets(h) == Counter(accepted)


class BrokenLimiter:
    """A limiter whose store is away: fails, or never answers."""

    def __init__(self, hang: bool) -> None:
        self.hang = hang

    async def over(self, bucket: str, limit: int, window_s: int, now_s: float) -> int:
        if self.hang:
            await asyncio.Event().wait()
        raise ConnectionError("redis is down")

    hit = over


@pytest.mark.parametrize("hang", [False, True])
async def test_a_limiter_that_cannot_answer_lets_the_mail_in(
    hang: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quota is a guard, not a gate: with the limiter failing or frozen, MAIL FROM goes
    on (bounded), logged; the handover after it still answers 451 if the store is away."""
    monkeypatch.setattr(mail_intake, "QUOTA_LOOKUP_S", 0.05)
    section = SmtpIntakeSection(rate_per_sender_per_window=1, rate_per_ip_per_window=1)
    quotas = SmtpQuotas(BrokenLimiter(hang), section, ManualClock(), HubMetrics())
    with capture_logs() as logs:
        assert await quotas("192.0.2.7", "siti@warga.test") is None
    assert [e["event"] for e in logs] == ["smtp.rate_limit_unavailable"]


def test_ip_buckets() -> None:
    """IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64."""
    assert client_bucket("192.0.2.7") == "192.0.2.7"
    assert client_bucket("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_bucket("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_bucket("fe80::1%eth0") == "fe80::/64"
