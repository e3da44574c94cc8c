"""The shared channel contract for WhatsApp through Twilio, against FakeTwilio on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from channels.base import InboundRequest
from hub.demo.fake_twilio import FakeTwilio, Scripted
from tests.channel_contract import ChannelContract, Outcome, Provider
from tests.helpers import SID1, inbound_params
from tests.test_channel_whatsapp_twilio import TOKEN1, URL, make_request, sign


def script(outcome: Outcome) -> Scripted | None:
    """Twilio's answer to the next send: its 503, its refusal of a bad number (21211)."""
    if outcome == "transient":
        return Scripted(status=503, code=20503, message="Service Unavailable")
    if outcome == "refused":
        return Scripted(status=400, code=21211, message="Invalid 'To' Phone Number")
    return None


class TestTwilioWhatsAppContract(ChannelContract):
    registry_key = "whatsapp:twilio"
    account_name = "wa1"

    def account_settings(self, provider_url: str) -> dict[str, Any]:
        return {
            "number": "+628119521150",
            "account_sid": SID1,
            "auth_token": TOKEN1,
            "api_base_url": provider_url,
        }

    def valid_request(self) -> InboundRequest:
        params = inbound_params("Upah lembur saya belum dibayar", sid="SM" + "c" * 32)
        return make_request(list(params.items()), url=URL)

    def forged(self, request: InboundRequest) -> InboundRequest:
        signature = sign(request.url, request.form, token="not-the-wa1-auth-token")
        return replace(request, headers={**request.headers, "x-twilio-signature": signature})

    def unsigned(self, request: InboundRequest) -> InboundRequest:
        headers = {k: v for k, v in request.headers.items() if k != "x-twilio-signature"}
        return replace(request, headers=headers)

    def signed(self, body: bytes) -> InboundRequest:
        """Twilio posts forms: the body as the webhook reads it into fields, then signed."""
        text = body.decode("utf-8", "replace")
        return make_request(parse_qsl(text, keep_blank_values=True), url=URL, body=body)

    def absurd_bodies(self) -> list[Any]:
        def form(**changes: str) -> bytes:
            return urlencode({**inbound_params(sid="SM" + "c" * 32), **changes}).encode()

        return [
            pytest.param(form(NumMedia="9" * 40), id="num-media-40-digits"),
            pytest.param(
                form(NumMedia="1" + "0" * 5000),
                id="num-media-5000-digits",
            ),
            pytest.param(
                form(Latitude="nan", Longitude="nan"),
                id="latitude-nan",
            ),
        ]

    @asynccontextmanager
    async def provider(self, outcome: Outcome) -> AsyncIterator[Provider]:
        fake = FakeTwilio({SID1: TOKEN1})
        await fake.start()
        step = script(outcome)
        if step is not None:
            fake.script.append(step)
        channel = self.build_channel(fake.base_url)
        try:
            yield Provider(channel, lambda: len(fake.requests))
        finally:
            await channel.aclose()
            await fake.stop()
