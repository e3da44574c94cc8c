"""The shared channel contract for the bantuan.kemnaker.go.id portal, against FakePortal.

(``test_portal_contract.py`` beside this file checks the portal's OpenAPI wire contract.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from channels.base import InboundRequest
from hub.demo.fake_portal import FakePortal, Scripted, make_event, signed_headers
from tests.channel_contract import PUBLIC_URL, ChannelContract, Outcome, Provider
from tests.portal.test_portal_channel import SECRET, TOKEN

URL = f"{PUBLIC_URL}/webhooks/portal/bantuan"


def portal_request(
    body: bytes, secret: str = SECRET, timestamp: int | None = None
) -> InboundRequest:
    """A webhook as the portal sends it: signed now (the channel checks the replay window
    against the clock) unless a timestamp is given."""
    headers = {k.lower(): v for k, v in signed_headers(secret, body, timestamp).items()}
    return InboundRequest(URL, headers, body, content_type="application/json")


def script(outcome: Outcome) -> Scripted | None:
    """The portal's answer to the next reply: 503, or 422 for a closed request (refused)."""
    if outcome == "transient":
        return Scripted(status=503, code="maintenance", message="down for maintenance")
    if outcome == "refused":
        return Scripted(status=422, code="request_closed", message="the request is closed")
    return None


class TestPortalContract(ChannelContract):
    registry_key = "portal:bantuan"
    account_name = "bantuan"

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        return {
            "api_base_url": provider_url,
            "api_token": TOKEN,
            "webhook_secret": SECRET,
            "nik_hash_key": "nik-hash-key-contract-0123456789",
            "send_timeout_s": 5,
        }

    def valid_request(self) -> InboundRequest:
        return portal_request(json.dumps(make_event(1)).encode())

    def forged(self, request: InboundRequest) -> InboundRequest:
        timestamp = int(request.header("X-Portal-Timestamp"))
        return portal_request(request.body, "another-webhook-secret-0123", timestamp)

    def unsigned(self, request: InboundRequest) -> InboundRequest:
        headers = {k: v for k, v in request.headers.items() if k != "x-portal-signature"}
        return InboundRequest(request.url, headers, request.body, content_type=request.content_type)

    def signed(self, body: bytes) -> InboundRequest:
        return portal_request(body)

    def absurd_bodies(self) -> list[Any]:
        def event(**message: Any) -> bytes:
            e = make_event(1)
            e["message"] |= message
            return json.dumps(e).encode()

        return [
            pytest.param(event(created_at="0001-01-01T00:00:00+23:59"), id="created-at-year-1"),
            pytest.param(
                event(attachments=[{"url": "https://x.example/a", "size": 1e300}]), id="size"
            ),
            pytest.param(
                json.dumps(make_event(1, phone="1" * 5000)).encode(), id="phone-5000-digits"
            ),
        ]

    @asynccontextmanager
    async def provider(self, outcome: Outcome) -> AsyncIterator[Provider]:
        fake = FakePortal(TOKEN)
        await fake.start()
        step = script(outcome)
        if step is not None:
            fake.reply_script.append(step)
        channel = self.build_channel(fake.base_url)
        try:
            yield Provider(channel, lambda: len(fake.requests))
        finally:
            await channel.aclose()
            await fake.stop()
