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
