"""WhatsApp in, ticket formed, acknowledgement out: the spine, on a real Redis."""

from __future__ import annotations

from tests.helpers import HubHarness, inbound_params


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
