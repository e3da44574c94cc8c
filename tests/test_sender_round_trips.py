"""The sender's Redis round trips per reply, and the order its steps keep within them.

A sent reply costs three pipelines of the store's pipeliner: the claim; the state, the
provider-id mapping and the parked statuses (in this order, in one pipeline: the mapping
before the parked list is taken, so no status parked in between is lost; the state before
the mapping, so a status that finds the mapping finds the reply sent); then the console event
and the XACK, once the state is written. On a single Redis and on a cluster
(``HUB_TEST_REDIS=cluster``).
"""

from __future__ import annotations

from typing import Any

from adapters import keys
from adapters.redis_bus import Pipeliner
from tests.helpers import HubHarness, inbound_params


def _key(c: tuple[Any, ...]) -> str:
    k = c[3] if c[0] in ("EVAL", "EVALSHA") else c[1]
    return k.decode() if isinstance(k, bytes) else str(k)


async def test_a_sent_reply_takes_three_round_trips_in_order(harness: HubHarness) -> None:
    await harness.post_whatsapp(inbound_params("Gaji di bawah UMK"))
    await harness.drain_inbound()
    await harness.drain_outbox()  # the acknowledgement
    [t] = await harness.tickets()
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Mohon kirim slip gaji."}
    )
    assert status == 202, body
    rid, cid = body["reply_id"], t["contact_id"]

    pipe = Pipeliner.of(harness.hub.redis)
    pipelines: list[list[tuple[Any, ...]]] = []
    real_run = pipe._run

    async def recording_run(commands: list[tuple[Any, ...]]) -> list[Any]:
        pipelines.append(list(commands))
        return await real_run(commands)

    pipe._run = recording_run  # type: ignore[method-assign]
    try:
        assert await harness.drain_outbox() == 1
    finally:
        del pipe._run
    [sent] = harness.fake.sent[-1:]
    entry = keys.entry(cid, rid)
    ref = keys.provider_ref("whatsapp", sent.sid)
    early = keys.early_statuses("whatsapp", sent.sid)
    outbox = keys.outbox_stream("whatsapp")

    mine = [
        [_key(c) for c in p]
        for p in pipelines
        if any(_key(c) in (entry, ref, early) or c[0] == "XACK" for c in p)
    ]
    assert len(mine) == 3, pipelines
    claim, after_send, acked = mine
    assert claim == [entry]
    assert after_send == [entry, ref, early]  # state, mapping, parked list: in this order
    assert outbox in acked
    r = [m for m in (await harness.ticket(t["id"]))["messages"] if m["id"] == rid]
    assert r[0]["state"] == "sent"
    assert r[0]["provider_id"] == sent.sid
