"""While Redis is down the web answers 503 + Retry-After (retry later), never a 500 (a bug),
and it serves again by itself once Redis is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.demo.fake_twilio import FakeTwilio
from tests.faults.processes import RedisProc
from tests.helpers import AUTH, HubHarness, inbound_params, make_settings
from tests.test_console_core import PASSWORD, signed_in


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisProc]:
    proc = RedisProc(tmp_path / "redis")
    await proc.start()
    yield proc
    proc.stop()


async def test_the_web_answers_503_while_redis_is_down_and_recovers(
    own_redis: RedisProc, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    settings = make_settings(own_redis.url, fake_twilio.base_url, tmp_path / "hub")
    h = HubHarness(settings, fake_twilio)
    await h.start()
    try:
        await h.hub.auth.create_user("ani", PASSWORD, "agent", ["general"], "Ani")
        assert (await h.post_whatsapp(inbound_params("Halo")))[0] == 200
        await h.drain_inbound()
        [ticket] = await h.tickets()
        async with signed_in(h, "ani") as (console, _csrf):
            own_redis.kill()
            for method, path in [
                ("GET", "/api/v1/tickets"),
                ("GET", f"/api/v1/tickets/{ticket['id']}"),
                ("GET", "/api/v1/queue"),
                ("POST", f"/api/v1/tickets/{ticket['id']}/replies"),
            ]:
                status, body = await h.api(method, path, json={"text": "Baik"})
                assert status == 503, (method, path, status, body)
                assert body["error"] == "store_unavailable", body
                assert body["request_id"]
            async with h.session.get(h.base + "/api/v1/tickets", headers=AUTH) as r:  # type: ignore[union-attr]
                assert r.headers["Retry-After"] == "5"
            async with console.get(h.base + "/console/queue") as r:
                assert r.status == 503
                assert r.headers["Content-Type"].startswith("text/html")
                assert r.headers["Retry-After"] == "5"
                assert "Sementara tidak tersedia" in await r.text()
            # the webhook keeps its own answer: 503 so that Twilio retries
            assert (await h.post_whatsapp(inbound_params("Lagi", sid="SM-down")))[0] == 503

            await own_redis.start()
            status, body = await h.api("GET", f"/api/v1/tickets/{ticket['id']}")
            assert status == 200, body
            async with console.get(h.base + "/console/queue") as r:
                assert r.status == 200
    finally:
        await h.stop()
