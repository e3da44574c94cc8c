"""Telegram through the hub: a secret-checked update becomes a ticket and the answer goes
back through the Bot API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.demo.fake_telegram import FakeTelegram
from tests.helpers import HubHarness

TOKEN = "123456:ABCdefGhIjkl-test"
SECRET = "tg-webhook-secret_01"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "telegram"


@pytest.fixture
async def bot() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram({TOKEN})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def hub(harness_factory: Any, bot: FakeTelegram) -> HubHarness:
    account = {"bot_token": TOKEN, "webhook_secret": SECRET, "api_base_url": bot.base_url}
    h: HubHarness = await harness_factory(channels__telegram__accounts={"kemnaker": account})
    return h


async def _post(h: HubHarness, update: dict[str, Any], secret: str = SECRET) -> int:
    assert h.session is not None
    async with h.session.post(
        f"{h.base}/webhooks/telegram/kemnaker", data=json.dumps(update),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    ) as r:  # fmt: skip
        return r.status


async def test_update_becomes_ticket_and_the_ack_goes_back(
    hub: HubHarness, bot: FakeTelegram
) -> None:
    """A text update opens a ticket; its acknowledgement is sent with sendMessage to the
    chat; the same update retried by Telegram is stored once."""
    update = json.loads((FIXTURES / "text.json").read_text())
    assert await _post(hub, update) == 200
    assert await _post(hub, update) == 200
    assert await _post(hub, update, secret="wrong") == 403
    await hub.drain_inbound()
    [t] = await hub.tickets()
    assert t["channel"] == "telegram"
    full = await hub.ticket(t["id"])
    assert len([m for m in full["messages"] if m["direction"] == "in"]) == 1
    await hub.drain_outbox()
    [call] = bot.sent
    assert call.params["chat_id"] == str(update["message"]["chat"]["id"])
    assert t["number"] in call.params["text"]


def _contact_update(update_id: int, phone: str, own: bool) -> dict[str, Any]:
    update = json.loads((FIXTURES / "contact.json").read_text())
    update["update_id"] = update_id
    update["message"]["message_id"] = update_id % 10_000
    update["message"]["contact"]["phone_number"] = phone
    if not own:  # a friend's card: Telegram names that friend, not the sender
        update["message"]["contact"]["user_id"] = 999_111
    return update


def _text_update(update_id: int, text: str) -> dict[str, Any]:
    update = json.loads((FIXTURES / "text.json").read_text())
    update["update_id"] = update_id
    update["message"]["message_id"] = update_id % 10_000
    update["message"]["text"] = text
    update["message"]["from"]["id"] = update["message"]["chat"]["id"] = 777001
    return update


async def test_sharing_their_own_phone_joins_the_phones_contact(hub: HubHarness) -> None:
    """A citizen known by phone (WhatsApp) who shares that number on Telegram is one
    contact: the Telegram identity joins the phone's contact, and later Telegram messages
    land there. Sharing a friend's card links nothing."""
    from tests.helpers import inbound_params

    assert (await hub.post_whatsapp(inbound_params("THR belum dibayar", phone="+6281234567890")))[
        0
    ] == 200
    await hub.drain_inbound()
    [wa] = await hub.tickets(channel="whatsapp")
    phone_contact = wa["id"].rsplit(".", 1)[0]

    assert await _post(hub, _text_update(910_000_001, "Halo dari Telegram")) == 200
    assert await _post(hub, _contact_update(910_000_002, "+62 812-9999-0000", own=False)) == 200
    await hub.drain_inbound()
    [tg] = await hub.tickets(channel="telegram")
    tg_contact = tg["id"].rsplit(".", 1)[0]
    assert tg_contact != phone_contact
    assert await hub.hub.store.find_contact("phone:+6281299990000") is None  # a friend's

    assert await _post(hub, _contact_update(910_000_003, "6281234567890", own=True)) == 200
    await hub.drain_inbound()
    assert await hub.hub.store.find_contact("telegram:777001") == phone_contact
    full = await hub.ticket(tg["id"])
    assert [m["type"] for m in full["messages"] if m.get("type") == "contact_linked"] == [
        "contact_linked"
    ]
    assert await _post(hub, _text_update(910_000_004, "Sudah ada kabar?")) == 200
    await hub.drain_inbound()
    status, contact = await hub.api("GET", f"/api/v1/contacts/{phone_contact}")
    assert status == 200
    kinds = sorted(i["kind"] for i in contact["identities"])
    assert kinds == ["phone", "telegram"]
    assert tg["id"] in contact["tickets"]  # the Telegram history comes along


async def test_sharing_an_unknown_own_phone_adds_it_to_the_contact(hub: HubHarness) -> None:
    from tests.helpers import inbound_params

    assert await _post(hub, _contact_update(920_000_001, "081355550000", own=True)) == 200
    await hub.drain_inbound()
    [tg] = await hub.tickets(channel="telegram")
    cid = tg["id"].rsplit(".", 1)[0]
    assert await hub.hub.store.find_contact("phone:+6281355550000") == cid
    assert (await hub.post_whatsapp(inbound_params("Halo", phone="+6281355550000")))[0] == 200
    await hub.drain_inbound()
    [t] = await hub.tickets()  # WhatsApp finds the same citizen, and their open ticket
    assert t["id"] == tg["id"]
    full = await hub.ticket(t["id"])
    assert [m["channel"] for m in full["messages"] if m["direction"] == "in"] == [
        "telegram",
        "whatsapp",
    ]


async def test_a_photo_is_fetched_with_getfile_when_an_agent_opens_it(
    hub: HubHarness, bot: FakeTelegram
) -> None:
    from tests.helpers import AUTH

    update = json.loads((FIXTURES / "photo.json").read_text())
    photo = max(update["message"]["photo"], key=lambda p: p["width"] * p["height"])
    bot.files[photo["file_id"]] = b"\xff\xd8\xff" + b"jpeg-bytes" * 50
    assert await _post(hub, update) == 200
    await hub.drain_inbound()
    [t] = await hub.tickets()
    [msg] = [m for m in (await hub.ticket(t["id"]))["messages"] if m["direction"] == "in"]
    url = f"{hub.base}/api/v1/tickets/{t['id']}/messages/{msg['id']}/attachments/0"
    assert hub.session is not None
    async with hub.session.get(url, headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "image/jpeg"
        assert await r.read() == bot.files[photo["file_id"]]
    del bot.files[photo["file_id"]]
    async with hub.session.get(url, headers=AUTH) as r:
        assert r.status == 404
