"""The dispatcher: dedupe, one contact per phone, reopen rules, order, crash recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from adapters import keys
from adapters.redis_bus import StreamGroup
from hub.model import Message
from tests.helpers import HubHarness, eventually, inbound_params


async def test_same_webhook_twice_gives_one_message(harness: HubHarness) -> None:
    """A provider retry of the same MessageSid is accepted twice and stored once."""
    params = inbound_params("Upah lembur tidak dibayar")
    assert (await harness.post_whatsapp(params))[0] == 200
    assert (await harness.post_whatsapp(params))[0] == 200
    assert await harness.drain_inbound() == 2
    [t] = await harness.tickets()
    full = await harness.ticket(t["id"])
    inbound = [m for m in full["messages"] if m["direction"] == "in"]
    assert len(inbound) == 1
    assert full["msg_count"] == "1"
    assert await harness.drain_outbox() == 1  # one acknowledgement, not two
    assert len(harness.fake.sent) == 1


async def test_two_messages_from_one_phone_make_one_ticket(harness: HubHarness) -> None:
    """Messages from one phone, on either WhatsApp number and in any notation, share a ticket."""
    await harness.post_whatsapp(inbound_params("THR belum dibayar", phone="+6281234567890"))
    other = inbound_params(
        "Sudah H-3 lebaran",
        phone="+6281234567890",
        account_sid="AC" + "2" * 32,
        to="+628119521151",
        WaId="6281234567890",
        From="whatsapp:+62 812-3456-7890",
    )
    assert (await harness.post_whatsapp(other, account="wa2"))[0] == 200
    await harness.drain_inbound()
    [t] = await harness.tickets()
    full = await harness.ticket(t["id"])
    assert [m["text"] for m in full["messages"] if m["direction"] == "in"] == [
        "THR belum dibayar",
        "Sudah H-3 lebaran",
    ]
    # the reply goes where the citizen last wrote: the second number
    assert full["reply_account"] == "wa2"
    status, contact = await harness.api("GET", f"/api/v1/contacts/{t['contact_id']}")
    assert status == 200
    assert contact["identities"] == [
        {"kind": "phone", "value": "+6281234567890", "channels": ["whatsapp", "call"]}
    ]
    assert contact["tickets"] == [t["id"]]


async def test_different_phones_make_different_tickets(harness: HubHarness) -> None:
    """Two citizens never share a ticket, and ticket numbers are sequential."""
    await harness.post_whatsapp(inbound_params("A", phone="+6281234567890"))
    await harness.post_whatsapp(inbound_params("B", phone="+6285712345678"))
    await harness.drain_inbound()
    tickets = await harness.tickets()
    assert len(tickets) == 2
    assert len({t["contact_id"] for t in tickets}) == 2
    numbers = sorted(t["number"] for t in tickets)
    assert [n[-6:] for n in numbers] == ["000001", "000002"]


async def test_resolved_ticket_reopens_within_window_then_new_after(harness: HubHarness) -> None:
    """A message within the reopen window reopens the resolved ticket; after it, a new one."""
    await harness.post_whatsapp(inbound_params("PHK sepihak"))
    await harness.drain_inbound()
    [t] = await harness.tickets()
    status, _ = await harness.api(
        "POST", f"/api/v1/tickets/{t['number']}/status", json={"status": "resolved"}
    )
    assert status == 200
    harness.clock.advance(71 * 3600)  # inside the 72 h window
    await harness.post_whatsapp(inbound_params("Masih belum ada pesangon"))
    await harness.drain_inbound()
    [again] = await harness.tickets()
    assert again["id"] == t["id"]
    assert again["status"] == "open"
    assert again["reopen_count"] == "1"

    await harness.api("POST", f"/api/v1/tickets/{t['id']}/status", json={"status": "resolved"})
    harness.clock.advance(73 * 3600)  # past the window
    await harness.post_whatsapp(inbound_params("Pertanyaan baru tentang BPJS"))
    await harness.drain_inbound()
    tickets = {x["id"]: x for x in await harness.tickets()}
    assert len(tickets) == 2
    assert tickets[t["id"]]["status"] == "closed"
    [new] = [x for x in tickets.values() if x["id"] != t["id"]]
    assert new["status"] == "open"
    assert new["number"] != t["number"]
    assert new["contact_id"] == t["contact_id"]
    # each new ticket got its own acknowledgement; the reopen did not send another
    assert await harness.drain_outbox() == 2


async def test_one_contacts_messages_keep_their_order(harness: HubHarness) -> None:
    """Twenty messages from one citizen appear on the ticket in the order they were received."""
    for i in range(20):
        await harness.post_whatsapp(inbound_params(f"pesan {i}"))
    await harness.drain_inbound()
    [t] = await harness.tickets()
    full = await harness.ticket(t["id"])
    texts = [m["text"] for m in full["messages"] if m["direction"] == "in"]
    assert texts == [f"pesan {i}" for i in range(20)]


async def test_crashed_consumer_entries_are_processed_once_by_another(
    harness: HubHarness,
) -> None:
    """Entries read by a consumer that died before acking are reclaimed and applied once."""
    for i in range(3):
        await harness.post_whatsapp(inbound_params(f"pesan {i}", phone="+6281234567890"))
    await harness.post_whatsapp(inbound_params("lain", phone="+6285712345678"))
    redis = harness.hub.redis
    ghost = harness.dispatcher("ghost")
    read_by_ghost = 0
    for s in harness.hub.inbound_streams():
        g = StreamGroup(redis, s, keys.DISPATCH_GROUP, "ghost")
        await g.ensure()
        entries = await g.read_new(100, None)
        read_by_ghost += len(entries)
        if s == harness.hub.inbound_streams()[0] and entries:
            # the ghost even wrote the tickets before dying: the redo must not double them
            await ghost.apply([Message.from_json(e.fields["m"]) for e in entries])
    assert read_by_ghost == 4

    survivor = harness.dispatcher("survivor")
    task = asyncio.create_task(survivor.run())
    try:

        async def all_acked() -> bool:
            pending = 0
            for s in harness.hub.inbound_streams():
                pending += (await redis.xpending(s, keys.DISPATCH_GROUP))["pending"]
            return pending == 0

        await eventually(all_acked)
    finally:
        survivor.stop()
        await task
    tickets = await harness.tickets()
    assert len(tickets) == 2
    by_count = sorted(int(t["msg_count"]) for t in tickets)
    assert by_count == [1, 3]
    # the redo may queue an acknowledgement again; the sender still sends each one once
    await harness.drain_outbox()
    assert len(harness.fake.sent) == 2


async def test_unreadable_entry_goes_to_dead_letters(harness: HubHarness) -> None:
    """An entry that can never be applied is moved to the dead-letter stream, visibly."""
    stream = harness.hub.inbound_streams()[0]
    await harness.hub.redis.xadd(stream, {"m": "{not json"})
    await harness.post_whatsapp(inbound_params("pesan sah"))
    await harness.drain_inbound()
    status, body = await harness.api("GET", "/api/v1/dead-letters")
    assert status == 200
    [dead] = body["items"]
    assert dead["stream"] == stream
    assert "unreadable" in dead["error"]
    assert len(await harness.tickets()) == 1  # the good message was not held back
    pending = await harness.hub.redis.xpending(stream, keys.DISPATCH_GROUP)
    assert pending["pending"] == 0


async def test_trimming_keeps_every_unprocessed_entry(harness: HubHarness) -> None:
    """Retention trims processed entries only: a pending (unacked) entry and what follows stay."""
    for i in range(3):
        await harness.post_whatsapp(inbound_params(f"lama {i}"))
    await harness.drain_inbound()
    await harness.post_whatsapp(inbound_params("belum diproses"))
    redis = harness.hub.redis
    [stream] = [s for s in harness.hub.inbound_streams() if await redis.xlen(s)]
    g = StreamGroup(redis, stream, keys.DISPATCH_GROUP, "slow")
    [pending] = await g.read_new(10, None)  # read, not yet acked
    await harness.post_whatsapp(inbound_params("baru"))  # not even read
    now_ms = int(time.time() * 1000) + 1000
    assert await g.trim_processed(keep_ms=0, now_ms=now_ms, exact=True) == 3
    left = [eid.decode() for eid, _ in await redis.xrange(stream)]
    assert left[0] == pending.id
    assert len(left) == 2
    await harness.drain_inbound("slow")  # nothing lost: both still reach the ticket
    survivor = harness.dispatcher("slow")
    await survivor.process(g, [pending])
    [t] = await harness.tickets()
    assert t["msg_count"] == "5"


async def test_a_running_dispatcher_acknowledges_each_batch_with_its_next_read(
    harness: HubHarness,
) -> None:
    """The loop's batches are acknowledged with the shard's next read (no round trip of their
    own): a batch is left pending only while it is being applied, and stopping acknowledges
    the last one."""
    redis = harness.hub.redis
    d = harness.dispatcher("loop")
    task = asyncio.create_task(d.run())

    async def pending() -> int:
        n = 0
        for s in harness.hub.inbound_streams():
            n += (await redis.xpending(s, keys.DISPATCH_GROUP))["pending"]
        return n

    try:
        for i in range(5):
            await harness.post_whatsapp(inbound_params(f"pesan {i}"))

            async def on_ticket(i: int = i) -> bool:
                tickets = await harness.tickets()
                return bool(tickets) and tickets[0]["msg_count"] == str(i + 1)

            await eventually(on_ticket)
            await eventually(lambda: _zero(pending()))
    finally:
        d.stop()
        await task
    assert await pending() == 0
    [t] = await harness.tickets()
    full = await harness.ticket(t["id"])
    assert [m["text"] for m in full["messages"] if m["direction"] == "in"] == [
        f"pesan {i}" for i in range(5)
    ]


async def _zero(n: Awaitable[int]) -> bool:
    return await n == 0


async def test_a_new_tickets_events_follow_its_number_and_messages(harness: HubHarness) -> None:
    """The consoles are told of a new ticket once it has its number (they show it), and its
    ``queue.waiting`` comes after its messages' ``message.received``, in one call."""
    published: list[tuple[dict[str, Any], str]] = []
    d = harness.dispatcher("events")
    bus, store = d.events, harness.hub.store

    class Recording:
        async def publish_many(self, events: Sequence[dict[str, Any]]) -> list[str]:
            for e in events:
                fields = await store.get_ticket_fields(e["ticket_id"])
                published.append((e, fields.get("number", "")))
            return await bus.publish_many(events)  # type: ignore[attr-defined, no-any-return]

        def __getattr__(self, name: str) -> Any:
            return getattr(bus, name)

    d.events = Recording()  # type: ignore[assignment]
    await harness.post_whatsapp(inbound_params("pesan 1"))
    await harness.post_whatsapp(inbound_params("pesan 2"))
    for g in d.groups:
        await g.ensure()
        while entries := await g.read_new(100, None):
            await d.process(g, entries)
    types = [e["type"] for e, _ in published]
    assert types == ["message.received", "message.received", "queue.waiting"]
    assert all(number.startswith("KMN-") for _, number in published)
    [t] = await harness.tickets()
    assert {e["ticket_id"] for e, _ in published} == {t["id"]}
