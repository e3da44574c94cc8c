"""The portal through the hub: signed webhooks, one citizen across channels, replies back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.demo.fake_portal import FakePortal, Scripted, make_event, signed_headers
from tests.helpers import HubHarness, inbound_params

SECRET = "portal-webhook-secret-0123"
TOKEN = "portal-api-token"


@pytest.fixture
async def portal() -> AsyncIterator[FakePortal]:
    fake = FakePortal(TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def hub(harness_factory: Any, portal: FakePortal) -> HubHarness:
    account = {"api_base_url": portal.base_url, "api_token": TOKEN, "webhook_secret": SECRET}
    h: HubHarness = await harness_factory(channels__portal__accounts={"bantuan": account})
    return h


async def _post(h: HubHarness, event: dict[str, Any], **headers: str) -> tuple[int, Any]:
    body = json.dumps(event).encode()
    hdrs = {**signed_headers(SECRET, body), **headers}
    assert h.session is not None
    async with h.session.post(f"{h.base}/webhooks/portal/bantuan", data=body, headers=hdrs) as r:
        return r.status, await r.json()


async def test_portal_and_whatsapp_are_one_citizen(hub: HubHarness, portal: FakePortal) -> None:
    """A portal request from 0812-3456-7890 and a WhatsApp message from +6281234567890 are one
    contact and one ticket; a later portal message on the same request joins it too."""
    status, body = await _post(hub, make_event(1))
    assert (status, body) == (200, {"accepted": 1})
    await hub.drain_inbound()
    [t] = await hub.tickets()
    await hub.api("POST", f"/api/v1/tickets/{t['id']}/status", json={"status": "resolved"})
    hub.clock.advance(3600)
    await hub.post_whatsapp(inbound_params("Masih belum dibayar", phone="+6281234567890"))
    await hub.drain_inbound()
    await _post(hub, make_event(2, event="request.replied", text="Ini tambahan saya."))
    await hub.drain_inbound()
    [again] = await hub.tickets()
    assert (again["id"], again["status"]) == (t["id"], "open")
    full = await hub.ticket(t["id"])
    assert [(m["channel"], m["text"]) for m in full["messages"] if m["direction"] == "in"] == [
        ("portal", "Gaji saya belum dibayar tiga bulan."),
        ("whatsapp", "Masih belum dibayar"),
        ("portal", "Ini tambahan saya."),
    ]
    _, contact = await hub.api("GET", f"/api/v1/contacts/{t['contact_id']}")
    assert [i["value"] for i in contact["identities"]] == ["+6281234567890"]


async def test_reply_goes_back_to_the_portal_request(hub: HubHarness, portal: FakePortal) -> None:
    """An agent's reply on a portal ticket is posted to the request, with an idempotency key."""
    await _post(hub, make_event(1))
    await hub.drain_inbound()
    [t] = await hub.tickets()
    status, body = await hub.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Sedang kami proses."}
    )
    assert status == 202, body
    await hub.drain_outbox()
    texts = {r.body.get("text") for r in portal.replies.values()}
    assert "Sedang kami proses." in texts
    assert body["reply_id"] in portal.replies
    full = await hub.ticket(t["id"])
    [r] = [m for m in full["messages"] if m.get("id") == body["reply_id"]]
    assert r["state"] == "sent"


async def test_stale_or_forged_portal_webhooks_are_refused(hub: HubHarness) -> None:
    """Outside the replay window: 401; a wrong signature: 403; nothing is stored."""
    event = make_event(1)
    body = json.dumps(event).encode()
    old = signed_headers(SECRET, body, timestamp=1_000_000)
    status, err = await _post(hub, event, **old)
    assert (status, err["error"]) == (401, "stale_signature")
    status, err = await _post(hub, event, **{"X-Portal-Signature": "sha256=" + "0" * 64})
    assert (status, err["error"]) == (403, "bad_signature")
    assert await hub.drain_inbound() == 0


async def test_status_changes_are_mirrored_to_the_portal_request(
    hub: HubHarness, portal: FakePortal
) -> None:
    """Resolving, reopening and closing a portal ticket through the API posts each status to
    the request, with the ticket number, a timestamp and a fresh Idempotency-Key."""
    await _post(hub, make_event(1))
    await hub.drain_inbound()
    [t] = await hub.tickets()
    for status in ("resolved", "open", "closed"):
        code, body = await hub.api(
            "POST", f"/api/v1/tickets/{t['id']}/status", json={"status": status}
        )
        assert code == 200, body
        hub.clock.advance(1)
    await hub.hub.status_mirror.drain()
    calls = portal.status_calls
    assert [(c.request_id, c.body["status"], c.status) for c in calls] == [
        ("REQ-2026-000123", "resolved", 201),
        ("REQ-2026-000123", "open", 201),
        ("REQ-2026-000123", "closed", 201),
    ]
    assert {c.body["ticket_number"] for c in calls} == {t["number"]}
    assert all(c.body["changed_at"].endswith("+00:00") for c in calls)
    assert len({c.idempotency_key for c in calls}) == 3
    assert all(c.idempotency_key for c in calls)


async def test_a_failing_portal_does_not_fail_the_status_change(
    hub: HubHarness, portal: FakePortal, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 500 from the portal does not hold up the status change; the mirror is retried from
    Redis with the same Idempotency-Key until the portal takes it."""
    portal.status_script.append(Scripted(status=500, code="boom"))
    await _post(hub, make_event(1))
    await hub.drain_inbound()
    [t] = await hub.tickets()
    code, body = await hub.api(
        "POST", f"/api/v1/tickets/{t['id']}/status", json={"status": "resolved"}
    )
    assert code == 200, body
    await hub.hub.status_mirror.drain()
    assert [c.status for c in portal.status_calls] == [500]
    assert (await hub.ticket(t["id"]))["status"] == "resolved"
    assert "portal.status_mirror_retry" in "".join(capfd.readouterr())
    assert await hub.hub.status_mirror.retry_due() == 0  # not due yet
    hub.clock.advance(600)
    assert await hub.hub.status_mirror.retry_due() == 1
    assert [c.status for c in portal.status_calls] == [500, 201]
    first, second = portal.status_calls
    assert first.idempotency_key == second.idempotency_key


async def test_a_refused_status_mirror_is_kept_as_dead(hub: HubHarness, portal: FakePortal) -> None:
    """A 4xx refusal is not retried; it is kept in the retry queue's dead list."""
    portal.status_script.append(Scripted(status=409, code="request_closed"))
    await _post(hub, make_event(1))
    await hub.drain_inbound()
    [t] = await hub.tickets()
    await hub.api("POST", f"/api/v1/tickets/{t['id']}/status", json={"status": "resolved"})
    await hub.hub.status_mirror.drain()
    hub.clock.advance(600)
    assert await hub.hub.status_mirror.retry_due() == 0
    assert len(portal.status_calls) == 1
    [dead] = await hub.hub.status_mirror.retries.dead()  # type: ignore[union-attr]
    assert dead["request_id"]
    assert "refused" in dead["error"]


async def test_whatsapp_tickets_are_not_mirrored(hub: HubHarness, portal: FakePortal) -> None:
    await hub.post_whatsapp(inbound_params("Halo", phone="+6281299990000"))
    await hub.drain_inbound()
    [t] = await hub.tickets()
    await hub.api("POST", f"/api/v1/tickets/{t['id']}/status", json={"status": "resolved"})
    await hub.hub.status_mirror.drain()
    assert portal.status_calls == []
