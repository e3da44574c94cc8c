"""The read API, its authentication and OpenAPI document, and the operations endpoints."""

from __future__ import annotations

from typing import Any

import aiohttp

from hub.web import console, webform
from hub.web.openapi import spec
from tests.helpers import HubHarness, eventually, inbound_params


async def test_api_needs_a_valid_bearer_token(harness: HubHarness) -> None:
    """No token or a wrong one gets 401 with WWW-Authenticate; webhooks and ops stay open."""
    assert harness.session is not None
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": "Basic x"},
    ):
        async with harness.session.get(harness.base + "/api/v1/tickets", headers=headers) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error"] == "unauthorized"
    async with harness.session.get(harness.base + "/api/v1/openapi.json") as r:
        assert r.status == 200


async def test_list_filters_and_pagination(harness: HubHarness) -> None:
    """Tickets filter by status and channel, page with limit/offset, and reject bad values."""
    for i in range(3):
        await harness.post_whatsapp(inbound_params(f"m{i}", phone=f"+62812345678{i:02d}"))
    await harness.drain_inbound()
    tickets = await harness.tickets()
    assert len(tickets) == 3
    await harness.api(
        "POST", f"/api/v1/tickets/{tickets[0]['id']}/status", json={"status": "resolved"}
    )
    assert len(await harness.tickets(status="open")) == 2
    assert len(await harness.tickets(status="resolved")) == 1
    assert len(await harness.tickets(status="open", channel="whatsapp")) == 2
    assert await harness.tickets(status="open", channel="email") == []
    assert len(await harness.tickets(unit="general")) == 3
    status, page = await harness.api("GET", "/api/v1/tickets", params={"limit": "2", "offset": "2"})
    assert (status, page["total"], len(page["items"])) == (200, 3, 1)
    for bad in ({"status": "lost"}, {"limit": "0"}, {"limit": "x"}, {"offset": "-1"}):
        status, body = await harness.api("GET", "/api/v1/tickets", params=bad)
        assert status == 400, bad
        assert body["error"] == "invalid_parameter"


async def test_ticket_by_id_or_number_with_raw_payload_on_request(harness: HubHarness) -> None:
    """A ticket is found by id or number; the raw provider payload appears only with raw=1."""
    await harness.post_whatsapp(
        inbound_params(
            "Tolong bantu",
            MediaUrl0="https://x.test/m",
            MediaContentType0="image/jpeg",
            NumMedia="1",
        )
    )
    await harness.drain_inbound()
    [t] = await harness.tickets()
    by_id = await harness.ticket(t["id"])
    by_number = await harness.ticket(t["number"])
    assert by_id["id"] == by_number["id"]
    [msg] = [m for m in by_id["messages"] if m["direction"] == "in"]
    assert msg["kind"] == "media"
    assert msg["attachments"] == [
        {"url": "https://x.test/m", "content_type": "image/jpeg", "name": "", "size": None}
    ]
    assert "raw" not in msg
    status, raw = await harness.api("GET", f"/api/v1/tickets/{t['id']}", params={"raw": "1"})
    [msg] = [m for m in raw["messages"] if m["direction"] == "in"]
    assert "MessageSid=" in msg["raw"]
    for ref in ("KMN-2026-999999", "nope", "x.1"):
        status, body = await harness.api("GET", f"/api/v1/tickets/{ref}")
        assert (status, body["error"]) == (404, "not_found")
    status, _ = await harness.api("GET", "/api/v1/contacts/unknown")
    assert status == 404


async def test_status_changes_are_validated(harness: HubHarness) -> None:
    """Unknown statuses are 400 with the reason; a closed ticket cannot be reopened by hand."""
    await harness.post_whatsapp(inbound_params("x"))
    await harness.drain_inbound()
    [t] = await harness.tickets()
    path = f"/api/v1/tickets/{t['id']}/status"
    status, body = await harness.api("POST", path, json={"status": "lost"})
    assert status == 400
    assert "status" in body["message"]
    status, body = await harness.api("POST", path, json={"status": "closed", "x": 1})
    assert status == 400
    assert (await harness.api("POST", path, json={"status": "closed"}))[0] == 200
    status, body = await harness.api("POST", path, json={"status": "open"})
    assert (status, body["error"]) == (409, "ticket_closed")


def test_openapi_describes_every_route(harness: HubHarness) -> None:
    """Every route the app serves is in the OpenAPI document, and nothing else is (the
    console's HTML pages and static files are pages, not API)."""
    doc = spec()
    served = set()
    for route in harness._runner.app.router.routes():  # type: ignore[union-attr]
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method != "HEAD" and path not in console.PAGE_PATHS | webform.PAGE_PATHS:
            served.add((path, route.method.lower()))
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    documented.add(("/api/v1/openapi.json", "get"))
    assert served == documented
    assert doc["openapi"].startswith("3.")


async def test_healthz_readyz_and_metrics(harness: HubHarness) -> None:
    """Health answers; metrics count inbound messages and show stream lag."""
    assert harness.session is not None
    async with harness.session.get(harness.base + "/healthz") as r:
        assert r.status == 200
    async with harness.session.get(harness.base + "/readyz") as r:
        body = await r.json()
        assert (r.status, body["checks"]) == (200, {"redis": True})
    await harness.post_whatsapp(inbound_params("x"))
    await harness.post_whatsapp(inbound_params("y"), signature="bad")
    async with harness.session.get(harness.base + "/metrics") as r:
        text = await r.text()
    assert 'hub_inbound_messages_total{account="wa1",channel="whatsapp"} 1.0' in text
    assert 'hub_webhook_rejected_total{channel="whatsapp",reason="signature"} 1.0' in text
    shard = harness.hub.inbound_streams()
    lines = [ln for ln in text.splitlines() if ln.startswith("hub_stream_length{")]
    assert sum(float(ln.split()[-1]) for ln in lines) == 1.0
    assert any(s in text for s in shard)


async def test_readyz_fails_and_webhooks_answer_503_without_redis(harness_factory: Any) -> None:
    """With Redis unreachable the hub says not ready and asks providers to retry (503)."""
    from adapters.redis_server import free_port

    h = await harness_factory(redis__url=f"redis://127.0.0.1:{free_port()}/0")
    assert h.session is not None
    async with h.session.get(h.base + "/readyz") as r:
        assert r.status == 503
        assert (await r.json())["checks"]["redis"] is False
    status, body = await h.post_whatsapp(inbound_params("x"))
    assert status == 503
    assert "retry" in body


async def test_workers_in_the_background_form_tickets_and_ack(harness_factory: Any) -> None:
    """With its dispatcher and sender running, the hub answers citizens by itself."""
    h = await harness_factory(workers=True)
    await h.post_whatsapp(inbound_params("a", phone="+6281234567890"))
    await h.post_whatsapp(inbound_params("b", phone="+6285712345678"))
    await h.post_whatsapp(inbound_params("c", phone="+6281234567890"))
    sent = await h.fake.wait_for(2)
    assert {s.params["To"] for s in sent} == {"whatsapp:+6281234567890", "whatsapp:+6285712345678"}

    async def two_tickets_three_messages() -> bool:
        ts = await h.tickets()
        return len(ts) == 2 and sum(int(t["msg_count"]) for t in ts) == 3

    await eventually(two_tickets_three_messages)
    assert h.session is not None
    async with h.session.get(h.base + "/readyz") as r:
        body = await r.json()
    assert body["checks"] == {"redis": True, "dispatcher": True, "sender": True, "observer": True}
    assert isinstance(h.session, aiohttp.ClientSession)
