"""WhatsApp in, ticket formed, acknowledgement out: the spine, on a real Redis."""

from __future__ import annotations

from typing import Any

from tests.helpers import SID2, HubHarness, inbound_params


async def test_message_becomes_ticket_and_ack_goes_out(harness: HubHarness) -> None:
    """One citizen message opens a numbered ticket and the Indonesian acknowledgement is sent."""
    status, body = await harness.post_whatsapp(inbound_params("Gaji saya belum dibayar"))
    assert status == 200
    assert "<Response>" in body
    assert await harness.drain_inbound() == 1
    [t] = await harness.tickets()
    assert t["status"] == "open"
    assert t["number"].startswith("KMN-2026-") or t["number"].startswith("KMN-")
    assert await harness.drain_outbox() == 1
    [sent] = harness.fake.sent
    assert sent.params["To"] == "whatsapp:+6281234567890"
    assert sent.params["From"] == "whatsapp:+628119521150"
    assert t["number"] in sent.params["Body"]
    assert "nomor tiket" in sent.params["Body"]
    full = await harness.ticket(t["number"])
    states = [m.get("state") for m in full["messages"] if m["direction"] == "out"]
    assert states == ["sent"]


async def test_ack_language_follows_the_account(harness_factory: Any) -> None:
    """An account configured for English acknowledges in English; the other in Indonesian."""
    h = await harness_factory(channels__whatsapp__accounts__wa2__ack_language="en")
    await h.post_whatsapp(inbound_params("Hello", phone="+6281234567890"))
    other = inbound_params("Hi", phone="+6285712345678", account_sid=SID2, to="+628119521151")
    await h.post_whatsapp(other, account="wa2")
    await h.drain_inbound()
    await h.drain_outbox()
    bodies = {s.params["To"]: s.params["Body"] for s in h.fake.sent}
    assert "nomor tiket KMN-" in bodies["whatsapp:+6281234567890"]
    assert "as ticket KMN-" in bodies["whatsapp:+6285712345678"]
    assert h.fake.sent[0].params["From"] != h.fake.sent[1].params["From"]


async def test_acknowledgements_can_be_switched_off(harness_factory: Any) -> None:
    """With ack.enabled = false a new ticket sends nothing by itself."""
    h = await harness_factory(ack__enabled=False)
    await h.post_whatsapp(inbound_params("Halo"))
    await h.drain_inbound()
    assert await h.drain_outbox() == 0
    assert h.fake.sent == []
