"""Limits at the front door: a client that keeps sending badly signed webhooks is turned away
with 429 before any work, without touching the providers' own (signed) calls; the client is
the peer, or behind a trusted reverse proxy the X-Forwarded-For hop the proxy saw; and
aiohttp's header-count limit answers a clear 4xx."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.helpers import HubHarness, inbound_params

Factory = Callable[..., Awaitable[HubHarness]]
PATH = "/webhooks/whatsapp/wa1"


async def _post(
    h: HubHarness, params: dict[str, str], signature: str, forwarded: str = ""
) -> tuple[int, dict[str, str], str]:
    assert h.session is not None
    headers = {"X-Twilio-Signature": signature}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    async with h.session.post(h.base + PATH, data=params, headers=headers) as r:
        return r.status, dict(r.headers), await r.text()


async def test_a_forger_is_throttled_and_the_provider_is_not(harness_factory: Factory) -> None:
    h = await harness_factory(hub__forged_webhooks_per_ip_per_minute=3)
    h.clock.t = 1_789_956_000.0  # the start of a minute: the window cannot roll mid-test
    forged = inbound_params("palsu", phone="+6281200000001")
    for _ in range(3):
        status, _, _ = await _post(h, forged, "forged")
        assert status == 403
    status, headers, body = await _post(h, forged, "forged")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 61
    assert '"error": "rate_limited"' in body or '"error":"rate_limited"' in body
    # The same client, now signing correctly, waits too: the quota is the client's.
    real = inbound_params("THR belum dibayar", phone="+6281200000002")
    status, _, _ = await _post(h, real, h.sign(PATH, real))
    assert status == 429
    # A minute later the window is fresh.
    h.clock.advance(60)
    status, _, _ = await _post(h, real, h.sign(PATH, real))
    assert status == 200


async def test_behind_a_trusted_proxy_the_forwarded_client_counts(
    harness_factory: Factory,
) -> None:
    h = await harness_factory(
        hub__forged_webhooks_per_ip_per_minute=2, hub__trusted_proxies=["127.0.0.0/8"]
    )
    h.clock.t = 1_789_956_000.0
    forged = inbound_params("palsu", phone="+6281200000001")
    for status_wanted in (403, 403, 429):
        # A client cannot hide behind a made-up first hop: the proxy appended the real one.
        status, _, _ = await _post(h, forged, "forged", forwarded="10.9.9.9, 203.0.113.7")
        assert status == status_wanted
    real = inbound_params("THR belum dibayar", phone="+6281200000002")
    status, _, _ = await _post(h, real, h.sign(PATH, real), forwarded="198.51.100.9")
    assert status == 200  # Twilio, through the same proxy, is another client


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(harness_factory: Factory) -> None:
    h = await harness_factory(hub__forged_webhooks_per_ip_per_minute=1)
    h.clock.t = 1_789_956_000.0
    forged = inbound_params("palsu", phone="+6281200000001")
    assert (await _post(h, forged, "forged", forwarded="203.0.113.1"))[0] == 403
    # A new X-Forwarded-For each time does not buy a new quota: the peer is the client.
    assert (await _post(h, forged, "forged", forwarded="203.0.113.2"))[0] == 429


async def test_too_many_headers_is_a_clear_refusal(harness: HubHarness) -> None:
    h = harness
    assert h.session is not None
    headers = {f"X-Pad-{i}": "x" for i in range(300)}
    async with h.session.get(h.base + "/healthz", headers=headers) as r:
        assert 400 <= r.status < 500
    async with h.session.get(h.base + "/healthz") as r:
        assert r.status == 200  # and the hub goes on serving
