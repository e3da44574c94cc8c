"""Instagram DM through the hub: Meta's handshake, signed deliveries with several events,
echoes (the hub's own and the Instagram app's), deletions, reactions, read receipts, the
24-hour / 7-day reply window, and one Meta app serving two accounts."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from channels.meta import SIGNATURE_HEADER, sign_body
from hub.demo.fake_graph import FakeGraph, Scripted, WebhookTarget
from hub.replies import ReplyRefused
from tests.helpers import HubHarness, eventually

TOKEN = "ig-access-token-0123456789"
APP_SECRET = "meta-app-secret-abcdef"
VERIFY = "verify-token-kemnaker"
IG_ID = "17841400000000001"
IG_ID_2 = "17841400000000002"
CITIZEN = "6100000000000001"
HOUR = 3600


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph({TOKEN})
    await fake.start()
    yield fake
    await fake.stop()


def _account(graph: FakeGraph, ig_id: str, unit: str = "general") -> dict[str, Any]:
    return {
        "ig_account_id": ig_id,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY,
        "api_base_url": graph.base_url,
        "unit": unit,
    }


@pytest.fixture
async def hub(harness_factory: Any, graph: FakeGraph) -> HubHarness:
    h: HubHarness = await harness_factory(
        channels__instagram__accounts={
            "ppid": _account(graph, IG_ID, "ppid"),
            "second": _account(graph, IG_ID_2),
        }
    )
    return h


def mid() -> str:
    return "aWdfZAG1faXRlbToxOklHTWVzc2FnZA" + secrets.token_hex(8)


def event(message: dict[str, Any], sender: str = CITIZEN, ig_id: str = IG_ID) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": ig_id},
        "timestamp": 1751000000000,
        "message": message,
    }


def echo(text: str, message_id: str, to: str = CITIZEN) -> dict[str, Any]:
    return {
        "sender": {"id": IG_ID},
        "recipient": {"id": to},
        "timestamp": 1751000000000,
        "message": {"mid": message_id, "text": text, "is_echo": True},
    }


def delivery(*events: dict[str, Any], ig_id: str = IG_ID) -> dict[str, Any]:
    return {
        "object": "instagram",
        "entry": [{"id": ig_id, "time": 1751000000000, "messaging": list(events)}],
    }


async def post(
    h: HubHarness, payload: dict[str, Any], account: str = "ppid", secret: str = APP_SECRET
) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    assert h.session is not None
    async with h.session.post(
        f"{h.base}/webhooks/instagram/{account}",
        data=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(secret, body)},
    ) as r:
        return r.status, await r.json()


async def only_ticket(h: HubHarness) -> dict[str, Any]:
    [t] = await h.tickets(channel="instagram")
    return await h.ticket(t["id"])


async def test_handshake_answers_the_challenge_only_with_our_token(hub: HubHarness) -> None:
    assert hub.session is not None
    url = f"{hub.base}/webhooks/instagram/ppid"
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    async with hub.session.get(url, params=ok) as r:
        assert (r.status, await r.text()) == (200, "1158201444")
    async with hub.session.get(url, params={**ok, "hub.verify_token": "guess"}) as r:
        assert r.status == 403
    async with hub.session.get(url, params={**ok, "hub.mode": "unsubscribe"}) as r:
        assert r.status == 400
    async with hub.session.get(f"{hub.base}/webhooks/instagram/nope", params=ok) as r:
        assert r.status == 404
    # A Twilio WhatsApp account has no such handshake.
    async with hub.session.get(f"{hub.base}/webhooks/whatsapp/wa1", params=ok) as r:
        assert r.status == 405


async def test_a_dm_becomes_a_ticket_once_and_the_ack_echo_is_the_hubs_own(
    hub: HubHarness, graph: FakeGraph
) -> None:
    graph.webhooks[IG_ID] = WebhookTarget(f"{hub.base}/webhooks/instagram/ppid", APP_SECRET)
    dm = delivery(event({"mid": mid(), "text": "Bagaimana cara daftar pelatihan vokasi?"}))
    assert await post(hub, dm) == (200, {"accepted": 1})
    assert await post(hub, dm) == (200, {"accepted": 1})  # Meta retries: stored once
    assert (await post(hub, dm, secret="forged-secret"))[0] == 403
    status, body = await post(hub, {"object": "page", "entry": []})
    assert status == 400
    assert "instagram" in body["message"]
    await hub.drain_inbound()
    t = await only_ticket(hub)
    assert t["unit"] == "ppid"
    assert t["channel"] == "instagram"
    assert [m["direction"] for m in t["messages"]] == ["in", "out"]

    await hub.drain_outbox()
    [ack] = graph.sent
    assert ack.path == f"/v21.0/{IG_ID}/messages"
    assert ack.body["recipient"] == {"id": CITIZEN}
    assert ack.body["messaging_type"] == "RESPONSE"
    assert t["number"] in ack.body["message"]["text"]

    # Meta echoes the acknowledgement back: it is the hub's reply, not a new message.
    async def echoed() -> bool:
        return graph.webhook_answers == [200]

    await eventually(echoed)
    await hub.drain_inbound()
    t = await only_ticket(hub)
    assert [m["direction"] for m in t["messages"]] == ["in", "out"]
    assert t["messages"][1]["provider_id"] == ack.provider_id


async def test_an_echo_typed_in_the_instagram_app_is_recorded_as_sent_by_the_ministry(
    hub: HubHarness,
) -> None:
    await post(hub, delivery(event({"mid": mid(), "text": "Halo, saya mau bertanya"})))
    await hub.drain_inbound()
    from_app = echo("Silakan kirim nomor KTP Anda lewat DM ini.", mid())
    assert (await post(hub, delivery(from_app)))[0] == 200
    assert (await post(hub, delivery(from_app)))[0] == 200
    await hub.drain_inbound()
    t = await only_ticket(hub)
    outs = [m for m in t["messages"] if m["direction"] == "out" and m["kind"] == "external"]
    assert len(outs) == 1
    assert outs[0]["state"] == "sent"
    assert outs[0]["text"] == "Silakan kirim nomor KTP Anda lewat DM ini."
    assert len([m for m in t["messages"] if m["direction"] == "in"]) == 1  # never the citizen's


async def test_an_echo_that_beats_the_send_answer_is_still_the_hubs_own(
    hub: HubHarness,
) -> None:
    """The echo may arrive while the reply is still "sending" (before the Send API answered):
    its text names the reply, and the hub maps the echo's id to it."""
    await post(hub, delivery(event({"mid": mid(), "text": "Mohon info lowongan"})))
    await hub.drain_inbound()
    t = await only_ticket(hub)
    q = await hub.hub.replies.create(t["id"], text="Lowongan ada di karirhub.", author="ani")
    cid = t["id"].rsplit(".", 1)[0]
    await hub.hub.store.claim_reply(cid, q.reply_id)  # now "sending", no provider id yet
    early = echo("Lowongan ada di karirhub.", mid())
    await post(hub, delivery(early))
    await hub.drain_inbound()
    assert await hub.hub.store.lookup_provider_id("instagram", early["message"]["mid"]) == (
        cid,
        q.reply_id,
    )
    t = await only_ticket(hub)
    assert not [m for m in t["messages"] if m.get("kind") == "external"]


async def test_a_deleted_message_is_retracted_on_the_ticket(hub: HubHarness) -> None:
    first, second = mid(), mid()
    nik = "3174015507900001"
    await post(
        hub,
        delivery(
            event({"mid": first, "text": f"NIK saya {nik}"}),
            event({"mid": second, "text": "Maaf salah kirim"}),
        ),
    )
    await hub.drain_inbound()
    deleted = event({"mid": first, "is_deleted": True})
    await post(hub, delivery(deleted))
    await post(hub, delivery(deleted))  # a retry changes nothing more
    await hub.drain_inbound()
    t = await only_ticket(hub)
    ins = [m for m in t["messages"] if m["direction"] == "in"]
    assert [m["provider_id"] for m in ins] == [first, second]
    assert ins[0]["text"] == ""
    assert ins[0]["retracted"] is True
    assert "retracted_at" in ins[0]
    assert ins[1]["text"] == "Maaf salah kirim"
    assert [m["type"] for m in t["messages"] if m.get("type") == "message_retracted"] == [
        "message_retracted"
    ]
    status, raw = await hub.api("GET", f"/api/v1/tickets/{t['id']}", params={"raw": "1"})
    dumped = json.dumps(raw)
    assert status == 200
    assert nik not in dumped, dumped[max(0, dumped.find(nik) - 300) :][:400]


async def test_several_events_in_one_delivery_are_applied_one_by_one_in_order(
    hub: HubHarness,
) -> None:
    other = "6100000000000002"
    ids = [mid() for _ in range(3)]
    payload = delivery(
        event({"mid": ids[0], "text": "satu"}),
        event({"mid": ids[1], "text": "dua"}, sender=other),
        event({"mid": ids[2], "text": "tiga"}),
    )
    assert await post(hub, payload) == (200, {"accepted": 3})
    await hub.drain_inbound()
    tickets = await hub.tickets(channel="instagram")
    assert len(tickets) == 2
    texts = []
    for t in tickets:
        full = await hub.ticket(t["id"])
        texts.append([m["text"] for m in full["messages"] if m["direction"] == "in"])
    texts.sort()
    assert texts == [["dua"], ["satu", "tiga"]]


async def test_reply_window_free_then_human_agent_then_closed(
    hub: HubHarness, graph: FakeGraph
) -> None:
    await post(hub, delivery(event({"mid": mid(), "text": "Pertanyaan soal JHT"})))
    await hub.drain_inbound()
    await hub.drain_outbox()  # the acknowledgement
    t = await only_ticket(hub)
    tid = t["id"]

    hub.clock.advance(25 * HOUR)
    status, body = await hub.api("GET", f"/api/v1/tickets/{tid}")
    assert body["window"]["mode"] == "human_agent"
    status, body = await hub.api("POST", f"/api/v1/tickets/{tid}/replies", json={"text": "Baik"})
    assert status == 202, body
    await hub.drain_outbox()
    tagged = graph.sent[-1].body
    assert (tagged["messaging_type"], tagged["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    # An automatic reply may not use the agents' extension.
    with pytest.raises(ReplyRefused) as refused:
        await hub.hub.replies.create(tid, text="otomatis", author="hub", kind="auto")
    assert refused.value.code == "window_closed"

    hub.clock.advance(7 * 24 * HOUR)
    status, body = await hub.api("POST", f"/api/v1/tickets/{tid}/replies", json={"text": "Halo?"})
    assert status == 409
    assert body["error"] == "window_closed"
    assert body["window"]["mode"] == "closed"
    assert len(graph.sent) == 2


async def test_a_window_refusal_from_meta_fails_the_reply_with_its_code(
    hub: HubHarness, graph: FakeGraph
) -> None:
    await post(hub, delivery(event({"mid": mid(), "text": "Halo"})))
    await hub.drain_inbound()
    graph.script.append(
        Scripted(status=400, code=10, subcode=2018278, message="outside of allowed window")
    )
    await hub.drain_outbox()
    t = await only_ticket(hub)
    [ack] = [m for m in t["messages"] if m["direction"] == "out"]
    assert (ack["state"], ack["error_code"]) == ("failed", "10/2018278")


async def test_read_receipts_and_reactions_land_on_the_hubs_reply(
    hub: HubHarness, graph: FakeGraph
) -> None:
    await post(hub, delivery(event({"mid": mid(), "text": "Terima kasih infonya"})))
    await hub.drain_inbound()
    await hub.drain_outbox()
    [ack] = graph.sent
    read = {
        "sender": {"id": CITIZEN},
        "recipient": {"id": IG_ID},
        "timestamp": 1751000001000,
        "read": {"mid": ack.provider_id},
    }
    reaction = {
        "sender": {"id": CITIZEN},
        "recipient": {"id": IG_ID},
        "timestamp": 1751000002000,
        "reaction": {"mid": ack.provider_id, "action": "react", "reaction": "love", "emoji": "❤"},
    }
    assert await post(hub, delivery(read, reaction)) == (200, {"accepted": 1})
    await post(hub, delivery(reaction))  # redelivered: noted once
    await hub.drain_inbound()
    t = await only_ticket(hub)
    [out] = [m for m in t["messages"] if m["direction"] == "out"]
    assert out["state"] == "read"
    reactions = [m for m in t["messages"] if m.get("type") == "reaction"]
    assert len(reactions) == 1
    assert reactions[0]["emoji"] == "❤"
    assert reactions[0]["reply_id"] == out["id"]
    assert t["status"] == "open"
    assert len([m for m in t["messages"] if m["direction"] == "in"]) == 1


async def test_one_meta_app_two_accounts_the_payload_names_the_account(
    hub: HubHarness,
) -> None:
    """Meta calls one callback URL per app: an event for the second account that arrives at
    the first account's URL is that second account's."""
    payload = delivery(
        event({"mid": mid(), "text": "Halo akun kedua"}, ig_id=IG_ID_2), ig_id=IG_ID_2
    )
    assert (await post(hub, payload, account="ppid"))[0] == 200
    await hub.drain_inbound()
    t = await only_ticket(hub)
    assert t["account"] == "second"
    assert t["unit"] == "general"


async def test_the_composer_follows_instagrams_window(hub: HubHarness) -> None:
    """The ticket page says what Instagram allows: free text, agents only (HUMAN_AGENT) with
    the time left to the hard close, then no form and the way out."""
    from tests.test_console_pages import Browser

    await hub.hub.auth.create_user("ani", "password-ani-1", "agent", ["ppid"], "Ani")
    await post(hub, delivery(event({"mid": mid(), "text": "Halo admin"})))
    await hub.drain_inbound()
    t = await only_ticket(hub)
    page = f"/console/tickets/{t['number']}"
    ani = Browser(hub)
    try:
        assert (await ani.login("ani", "password-ani-1"))[0] == 303
        _, html, _ = await ani.get(page)
        assert 'data-mode="text"' in html
        assert "Jendela Instagram terbuka" in html
        assert 'id="window-human"' not in html

        hub.clock.advance(30 * HOUR)
        _, html, _ = await ani.get(page)
        assert 'data-window-state="human"' in html
        assert 'data-mode="text"' in html
        assert 'id="window-human"' in html
        assert "HUMAN_AGENT" in html
        left = int(re.search(r'data-window-left="(\d+)"', html).group(1))  # type: ignore[union-attr]
        assert abs(left - (168 - 30) * HOUR) <= 1  # counting down to the hard close

        hub.clock.advance(7 * 24 * HOUR)
        _, html, _ = await ani.get(page)
        assert 'data-mode="closed_window"' in html
        assert 'id="reply-form"' not in html
        assert "lebih dari 7 hari" in html
    finally:
        await ani.close()
