"""The sender's claim on a reply when the sender that held it died mid-send (found by
test_kill_sender_mid_send): the reply must not be stranded in "sending"."""

from __future__ import annotations

from dataclasses import replace

from adapters import keys
from adapters.redis_bus import StreamGroup
from tests.helpers import HubHarness, inbound_params


async def test_a_dead_senders_claim_is_retried_once_stale_not_dropped(
    harness: HubHarness,
) -> None:
    """A sender claims the acknowledgement ("sending") and dies before the provider answers.
    Another sender reclaims the outbox entry while that claim is still fresh: it must leave
    the entry pending (not ack it, which stranded the reply in "sending" for good), and send
    the reply once the claim is stale, as attempt 2."""
    assert (await harness.post_whatsapp(inbound_params("THR belum dibayar")))[0] == 200
    await harness.drain_inbound()
    stream = keys.outbox_stream("whatsapp")
    dead = StreamGroup(harness.hub.redis, stream, keys.SEND_GROUP, "dead-sender")
    await dead.ensure()
    [entry] = await dead.read_new(10, None)
    cid, _, rid = entry.fields["r"].partition("|")
    assert (await harness.hub.store.claim_reply(cid, rid)).go  # then the process died

    survivor = harness.sender("survivor")
    group = survivor.groups["whatsapp"]
    [again] = await group.claim_idle(0, 10)
    await survivor.handle("whatsapp", group, again)  # the claim is fresh: "busy"
    assert (await harness.hub.ops.stream_stats(stream, keys.SEND_GROUP))["pending"] == 1
    assert (await harness.hub.store.get_entry(cid, rid))["state"] == "sending"
    assert harness.fake.sent == []

    survivor.opt = replace(survivor.opt, stale_sending_ms=0)  # time passes: the claim is stale
    [again] = await group.claim_idle(0, 10)
    await survivor.handle("whatsapp", group, again)
    reply = await harness.hub.store.get_entry(cid, rid)
    assert (reply["state"], reply["attempts"]) == ("sent", "2")
    assert len(harness.fake.sent) == 1
    assert (await harness.hub.ops.stream_stats(stream, keys.SEND_GROUP))["pending"] == 0
