"""Source health (hub/source_health.py) on a real Redis: a provider is down after failed sends
in a row, not after one failure among successes; a poll's failure counts at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hub.source_health import IMAP, PROVIDER, PROVIDER_FAILURES
from tests.helpers import HubHarness

Factory = Callable[..., Awaitable[HubHarness]]
T0 = 1_789_956_000.0


async def _health(h: HubHarness) -> dict[str, tuple[bool, float]]:
    return {s.name: (s.healthy, s.since) for s in await h.hub.health.all()}


async def test_an_isolated_failed_send_does_not_make_a_provider_flap(
    harness_factory: Factory,
) -> None:
    h = await harness_factory()
    h.clock.t = T0
    health = h.hub.health
    await health.report("whatsapp/wa1", PROVIDER, True)
    for i in range(1, 41):  # every tenth send fails, the rest succeed
        h.clock.t = T0 + i
        await health.report("whatsapp/wa1", PROVIDER, i % 10 != 0, "HTTP 503")
    assert await _health(h) == {"whatsapp/wa1": (True, T0)}  # never went down


async def test_failed_sends_in_a_row_make_a_provider_down_since_the_first(
    harness_factory: Factory,
) -> None:
    h = await harness_factory()
    health = h.hub.health
    h.clock.t = T0
    await health.report("whatsapp/wa1", PROVIDER, True)
    for i in range(PROVIDER_FAILURES - 1):
        h.clock.t = T0 + 10 + i
        await health.report("whatsapp/wa1", PROVIDER, False, "timeout")
        assert (await _health(h))["whatsapp/wa1"] == (True, T0)
    h.clock.t = T0 + 60
    await health.report("whatsapp/wa1", PROVIDER, False, "timeout")
    assert (await _health(h))["whatsapp/wa1"] == (False, T0 + 10)  # the streak's first
    h.clock.t = T0 + 90
    await health.report("whatsapp/wa1", PROVIDER, True)
    assert (await _health(h))["whatsapp/wa1"] == (True, T0 + 90)
    # after a success the count starts again
    h.clock.t = T0 + 100
    await health.report("whatsapp/wa1", PROVIDER, False, "timeout")
    assert (await _health(h))["whatsapp/wa1"] == (True, T0 + 90)


async def test_a_failed_poll_counts_at_once(harness_factory: Factory) -> None:
    h = await harness_factory()
    h.clock.t = T0
    await h.hub.health.report("email/ppid", IMAP, False, "ConnectionRefusedError")
    assert await _health(h) == {"email/ppid": (False, T0)}
