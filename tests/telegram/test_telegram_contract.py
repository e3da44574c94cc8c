"""The shared channel contract for the Telegram bot, against FakeTelegram on loopback.

Telegram signs nothing: it proves itself with the secret token set by ``setWebhook`` in the
X-Telegram-Bot-Api-Secret-Token header, so "forged" is a wrong token and "unsigned" none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from channels.base import InboundRequest
from hub.demo.fake_telegram import FakeTelegram, Scripted
from tests.channel_contract import ChannelContract, Outcome, Provider
from tests.telegram.test_telegram_channel import SECRET, TOKEN, fixture
from tests.telegram.test_telegram_channel import request as signed_request


def script(outcome: Outcome) -> Scripted | None:
    """The Bot API's answer to the next sendMessage: a 502, or 403 (the citizen blocked the
    bot), a refusal."""
    if outcome == "transient":
        return Scripted(502, "Bad Gateway")
    if outcome == "refused":
        return Scripted(403, "Forbidden: bot was blocked by the user")
    return None


class TestTelegramContract(ChannelContract):
    registry_key = "telegram:bot"
    account_name = "main"

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        return {"bot_token": TOKEN, "webhook_secret": SECRET, "api_base_url": provider_url}

    def valid_request(self) -> InboundRequest:
        return signed_request(fixture("text"))

    def forged(self, request: InboundRequest) -> InboundRequest:
        return signed_request(request.body, secret="not-the-webhook-secret")

    def unsigned(self, request: InboundRequest) -> InboundRequest:
        return signed_request(request.body, secret=None)

    def signed(self, body: bytes) -> InboundRequest:
        return signed_request(body)

    def absurd_bodies(self) -> list[Any]:
        text = fixture("text")
        return [
            pytest.param(text.replace(b'"update_id":900000001', b'"update_id":1e999'), id="id"),
            pytest.param(
                text.replace(b'"date":1751000000', b'"date":1e999'),
                id="date-1e999",
            ),
        ]

    @asynccontextmanager
    async def provider(self, outcome: Outcome) -> AsyncIterator[Provider]:
        fake = FakeTelegram(tokens={TOKEN})
        await fake.start()
        step = script(outcome)
        if step is not None:
            fake.script.append(step)
        channel = self.build_channel(fake.base_url)
        try:
            yield Provider(channel, lambda: len(fake.of("sendMessage")))
        finally:
            await channel.aclose()
            await fake.stop()
