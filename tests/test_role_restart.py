"""A dispatcher or sender whose start fails (its consumer groups cannot be created: Redis slow,
failing over, or a key in the way) says so and starts again; before, the role's task ended
with the exception and the process went on without it, silently, until it stopped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from adapters import keys
from tests.helpers import HubHarness, eventually, inbound_params, redis_client


async def test_roles_start_again_after_their_start_failed(
    harness_factory: Callable[..., Awaitable[HubHarness]], redis_url: str
) -> None:
    """A string where the first inbound shard and the WhatsApp outbox stream should be makes
    XGROUP CREATE fail; both roles log ``role.failed``. Once the keys are gone they start
    again by themselves: a citizen's message becomes a ticket and its acknowledgement leaves."""
    r = redis_client(redis_url)
    blocked = [keys.inbound_stream(0), keys.outbox_stream("whatsapp")]
    try:
        for k in blocked:
            await r.set(k, "in the way")
        with structlog.testing.capture_logs() as logs:
            h = await harness_factory(workers=True)

            async def roles(event: str) -> bool:
                return {e["role"] for e in logs if e["event"] == event} >= {"dispatcher", "sender"}

            await eventually(lambda: roles("role.failed"))
            errors = [e["error"] for e in logs if e["event"] == "role.failed"]
            assert all("ResponseError" in e for e in errors), errors
            await r.delete(*blocked)
            await eventually(lambda: roles("role.restarted"))
        for n in range(8):  # some land on shard 0
            status, _ = await h.post_whatsapp(
                inbound_params(f"Pesan {n}", phone=f"+62812000000{n}")
            )
            assert status == 200

        async def acked() -> bool:
            return len(h.fake.sent) == 8

        await eventually(acked, limit_s=20)
        assert len(await h.tickets()) == 8
    finally:
        await r.delete(*blocked)
        await r.aclose()
