"""WhatsApp on Meta's Cloud API beside Twilio: one citizen whichever provider carried the
message, replies on the provider the citizen last wrote to, statuses (with errors) from the
same webhook, templates outside the window, and media fetched by id through the hub."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from channels.meta import SIGNATURE_HEADER, sign_body
from hub.demo.fake_graph import FakeGraph, WebhookTarget
from tests.helpers import HubHarness, eventually, inbound_params

TOKEN = "cloud-access-token-0123456789"
APP_SECRET = "cloud-app-secret-abcdef"
VERIFY = "cloud-verify-token"
PHONE_ID = "106540352242922"
NUMBER = "+628119521152"
CITIZEN = "+6281234567890"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph({TOKEN})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def hub(harness_factory: Any, graph: FakeGraph) -> HubHarness:
    cloud = {
        "provider": "cloud",
        "number": NUMBER,
        "phone_number_id": PHONE_ID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY,
        "api_base_url": graph.base_url,
        "templates": {
            "tindak_lanjut": {
                "name": "kemnaker_tindak_lanjut",
                "language": "id",
                "variables": ["ticket_number", "name"],
            }
        },
    }
    h: HubHarness = await harness_factory(channels__whatsapp__accounts__cloud=cloud)
    return h


def message(body: dict[str, Any], phone: str = CITIZEN, name: str = "Siti Rahma") -> dict[str, Any]:
    wa_id = phone.lstrip("+")
    msg = {"from": wa_id, "id": "wamid." + secrets.token_hex(12), "timestamp": "1751000000"}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": NUMBER.lstrip("+"),
                                "phone_number_id": PHONE_ID,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [{**msg, **body}],
                        },
                    }
                ],
            }
        ],
    }


def status(wamid: str, state: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "id": wamid,
        "status": state,
        "timestamp": str(int(time.time())),
        "recipient_id": CITIZEN.lstrip("+"),
    }
    if errors:
        st["errors"] = errors
    payload = message({})
    value = payload["entry"][0]["changes"][0]["value"]
    del value["messages"], value["contacts"]
    value["statuses"] = [st]
    return payload


async def post(h: HubHarness, payload: dict[str, Any], secret: str = APP_SECRET) -> int:
    body = json.dumps(payload).encode()
    assert h.session is not None
    async with h.session.post(
        f"{h.base}/webhooks/whatsapp/cloud",
        data=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(secret, body)},
    ) as r:
        return r.status


async def test_handshake_and_signature(hub: HubHarness) -> None:
    assert hub.session is not None
    url = f"{hub.base}/webhooks/whatsapp/cloud"
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "42"}
    async with hub.session.get(url, params=ok) as r:
        assert (r.status, await r.text()) == (200, "42")
    async with hub.session.get(url, params={**ok, "hub.verify_token": "x"}) as r:
        assert r.status == 403
    text = message({"type": "text", "text": {"body": "Halo"}})
    assert await post(hub, text, secret="not-the-app-secret") == 403
    assert hub.session is not None
    async with hub.session.post(url, data=json.dumps(text)) as r:  # unsigned
        assert r.status == 403


async def test_same_citizen_on_twilio_and_cloud_is_one_contact_answered_where_they_wrote(
    hub: HubHarness, graph: FakeGraph
) -> None:
    assert (await hub.post_whatsapp(inbound_params("THR belum dibayar", phone=CITIZEN)))[0] == 200
    await hub.drain_inbound()
    [first] = await hub.tickets()
    payload = message({"type": "text", "text": {"body": "Ini nomor kantor kedua"}})
    assert await post(hub, payload) == 200
    assert await post(hub, payload) == 200  # Meta's retry: stored once
    await hub.drain_inbound()
    [t] = await hub.tickets()
    assert t["id"] == first["id"]  # one citizen, one ticket, two providers
    full = await hub.ticket(t["id"])
    ins = [m for m in full["messages"] if m["direction"] == "in"]
    assert [m["account"] for m in ins] == ["wa1", "cloud"]
    assert full["reply_account"] == "cloud"

    await hub.drain_outbox()  # the acknowledgement of the first message went by Twilio
    graph.webhooks[PHONE_ID] = WebhookTarget(f"{hub.base}/webhooks/whatsapp/cloud", APP_SECRET)
    status, body = await hub.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Kami cek dulu, Bu."}
    )
    assert status == 202, body
    await hub.drain_outbox()
    [sent] = graph.sent
    assert sent.path == f"/v21.0/{PHONE_ID}/messages"
    assert sent.body["to"] == CITIZEN.lstrip("+")
    assert sent.body["text"]["body"] == "Kami cek dulu, Bu."

    async def read() -> bool:
        full = await hub.ticket(t["id"])
        return any(m.get("provider_id") == sent.provider_id and m["state"] == "read"
                   for m in full["messages"])  # fmt: skip

    await eventually(read)  # sent, delivered, read: signed webhooks from the fake


async def test_a_failed_status_carries_metas_error(hub: HubHarness, graph: FakeGraph) -> None:
    await post(hub, message({"type": "text", "text": {"body": "Halo"}}))
    await hub.drain_inbound()
    await hub.drain_outbox()
    [ack] = graph.sent
    err = [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}]
    assert await post(hub, status(ack.provider_id, "failed", err)) == 200
    [t] = await hub.tickets()
    [out] = [m for m in (await hub.ticket(t["id"]))["messages"] if m["direction"] == "out"]
    assert (out["state"], out["error_code"]) == ("failed", "131026")


async def test_outside_the_window_only_a_template_goes(hub: HubHarness, graph: FakeGraph) -> None:
    await post(hub, message({"type": "text", "text": {"body": "Halo"}}, name="Budi"))
    await hub.drain_inbound()
    await hub.drain_outbox()
    [t] = await hub.tickets()
    hub.clock.advance(25 * 3600)
    path = f"/api/v1/tickets/{t['id']}/replies"
    status, body = await hub.api("POST", path, json={"text": "Halo lagi"})
    assert (status, body["error"]) == (409, "template_required")
    assert body["templates"] == ["tindak_lanjut"]
    status, body = await hub.api(
        "POST", path, json={"template": "tindak_lanjut", "variables": {"name": "Pak Budi"}}
    )
    assert status == 202, body
    await hub.drain_outbox()
    tpl = graph.sent[-1].body
    assert tpl["type"] == "template"
    assert tpl["template"]["name"] == "kemnaker_tindak_lanjut"
    assert tpl["template"]["language"] == {"code": "id"}
    params = tpl["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == [t["number"], "Pak Budi"]


async def test_media_is_fetched_by_id_through_the_hub(hub: HubHarness, graph: FakeGraph) -> None:
    photo = b"\xff\xd8\xff\xe0" + secrets.token_bytes(2048)
    media_id = graph.add_media(photo, "image/jpeg")
    doc_id = graph.add_media(b"<html><script>alert(1)</script></html>", "text/html")
    await post(
        hub,
        message({"type": "image", "image": {"id": media_id, "mime_type": "image/jpeg",
                                             "caption": "Slip gaji"}}),
    )  # fmt: skip
    await post(
        hub,
        message({"type": "document", "document": {"id": doc_id, "mime_type": "text/html",
                                                   "filename": "surat.html"}}),
    )  # fmt: skip
    await hub.drain_inbound()
    [t] = await hub.tickets()
    full = await hub.ticket(t["id"])
    image, doc = [m for m in full["messages"] if m["direction"] == "in"]
    assert image["attachments"][0]["url"] == f"wa-media:{media_id}"
    assert hub.session is not None
    base = f"{hub.base}/api/v1/tickets/{t['id']}/messages"
    async with hub.session.get(f"{base}/{image['id']}/attachments/0", headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert await r.read() == photo
    async with hub.session.get(f"{base}/{doc['id']}/attachments/0", headers=AUTH) as r:
        assert r.status == 200  # a citizen's HTML is a download, never a page on our origin
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Disposition"].startswith("attachment;")
    async with hub.session.get(f"{base}/{image['id']}/attachments/0") as r:
        assert r.status == 401
    async with hub.session.get(f"{base}/{image['id']}/attachments/5", headers=AUTH) as r:
        assert r.status == 404
    del graph.media[media_id]  # Meta keeps media for a limited time
    async with hub.session.get(f"{base}/{image['id']}/attachments/0", headers=AUTH) as r:
        assert r.status == 404
        assert (await r.json())["error"] == "media_unavailable"


AUTH = {"Authorization": "Bearer test-token-0123456789abcdef"}
