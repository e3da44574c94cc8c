"""The shared channel contract for WhatsApp through Meta's Cloud API, against FakeGraph."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from channels.base import InboundRequest
from channels.meta import sign_body
from hub.demo.fake_graph import FakeGraph, Scripted
from tests.channel_contract import ChannelContract, Outcome, Provider
from tests.whatsapp_cloud.test_whatsapp_cloud_channel import (
    APP_SECRET,
    PNID,
    TOKEN,
    VERIFY_TOKEN,
    fixture,
)
from tests.whatsapp_cloud.test_whatsapp_cloud_channel import request as signed_request


def script(outcome: Outcome) -> Scripted | None:
    """Meta's answer to the next send: its service trouble (code 2), or 131026 (the
    message cannot be delivered to this user), a refusal."""
    if outcome == "transient":
        return Scripted(503, code=2, message="Service temporarily unavailable")
    if outcome == "refused":
        return Scripted(400, code=131026, message="Message undeliverable")
    return None


class TestCloudWhatsAppContract(ChannelContract):
    registry_key = "whatsapp:cloud"
    account_name = "wacloud"

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        return {
            "provider": "cloud",
            "number": "+628119521151",
            "phone_number_id": PNID,
            "access_token": TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base_url": provider_url,
        }

    def valid_request(self) -> InboundRequest:
        return signed_request(fixture("text"))

    def forged(self, request: InboundRequest) -> InboundRequest:
        return signed_request(request.body, signature=sign_body("another-app-secret", request.body))

    def unsigned(self, request: InboundRequest) -> InboundRequest:
        return signed_request(request.body, signature=None)

    def signed(self, body: bytes) -> InboundRequest:
        return signed_request(body)

    def absurd_bodies(self) -> list[Any]:
        text, location = fixture("text"), fixture("location")
        return [
            pytest.param(text.replace(b'"1751000000"', b"1e999"), id="timestamp-1e999"),
            pytest.param(text.replace(b'"6281234567890"', b'"' + b"6" * 5000 + b'"'), id="from"),
            pytest.param(location.replace(b"-6.236,", b"1e999,"), id="latitude-1e999"),
            pytest.param(location.replace(b"-6.236,", b"NaN,"), id="latitude-nan"),
        ]

    @asynccontextmanager
    async def provider(self, outcome: Outcome) -> AsyncIterator[Provider]:
        fake = FakeGraph(tokens={TOKEN})
        await fake.start(0)
        step = script(outcome)
        if step is not None:
            fake.script.append(step)
        channel = self.build_channel(fake.base_url)
        try:
            yield Provider(channel, lambda: sum(1 for c in fake.calls if c.method == "POST"))
        finally:
            await channel.aclose()
            await fake.stop()
