"""The shared channel contract for Instagram DMs, against FakeGraph on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from channels.base import InboundRequest
from channels.meta import sign_body
from hub.demo.fake_graph import FakeGraph, Scripted
from tests.channel_contract import ChannelContract, Outcome, Provider
from tests.instagram.test_instagram_channel import (
    APP_SECRET,
    IG,
    TOKEN,
    VERIFY_TOKEN,
    fixture,
)
from tests.instagram.test_instagram_channel import request as signed_request


def script(outcome: Outcome) -> Scripted | None:
    """Meta's answer to the next send: its service trouble (code 2), or 551 (this person
    is not available right now), a refusal."""
    if outcome == "transient":
        return Scripted(status=503, code=2, message="Service temporarily unavailable")
    if outcome == "refused":
        return Scripted(status=400, code=551, message="This person isn't available right now.")
    return None


class TestInstagramContract(ChannelContract):
    registry_key = "instagram:meta"
    account_name = "ppid"

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        return {
            "access_token": TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base_url": provider_url,
            "ig_account_id": IG,
            "username": "ppid.kemnaker",
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
        text = fixture("text")
        huge = b"1" + b"0" * 5000
        return [
            pytest.param(text.replace(b"1751000000000", b"1e999"), id="timestamp-1e999"),
            pytest.param(text.replace(b"1751000000000", huge), id="timestamp-5000-digits"),
            pytest.param(text.replace(b'"1254459154682919"', huge), id="sender-5000-digits"),
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
