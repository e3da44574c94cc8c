"""End to end over HTTP: a batch of generated webhooks never breaks the hub.

One hub (web role, real Redis) with an account on every webhook channel: WhatsApp through
Twilio (messages and status callbacks) and Meta's Cloud API, Instagram, Telegram, the
portal and the call center's live events. Hypothesis drives a batch of bodies from the
parser properties' strategies, each signed correctly (some then changed by one byte, or sent
with a forged signature), at the real routes. Every answer is below 500, every refusal
(4xx: 400 malformed, 401/403 badly signed, 429 too many badly signed calls) is a JSON body
with "error" and "message"; after the batch the dispatcher takes everything the webhooks
stored, and a genuine message is still accepted (WhatsApp through Twilio and Cloud API).

Hypothesis runs in a worker thread, the hub and its client in the test's event loop; each
request is handed over to the loop, so the examples share one hub, like the traffic of a
day shares one process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.calls.events import sign as call_sign
from channels.meta import sign_body
from channels.signing import sign as portal_sign
from tests.helpers import HubHarness, inbound_params
from tests.properties.strategies import TIMEOUT_S, flip_byte, fuzz
from tests.properties.test_calls_properties import EVENT_BODIES
from tests.properties.test_meta_properties import CLOUD_BODIES, IG_BODIES
from tests.properties.test_portal_properties import BODIES as PORTAL_BODIES
from tests.properties.test_telegram_properties import BODIES as TELEGRAM_BODIES
from tests.properties.test_twilio_properties import FORMS
from tests.test_channel_whatsapp_twilio import TOKEN1 as TWILIO_TOKEN
from tests.test_channel_whatsapp_twilio import sign as twilio_sign

pytestmark = pytest.mark.timeout(TIMEOUT_S)

META_SECRET = "meta-app-secret-properties"
META_VERIFY = "meta-verify-token-properties"
TG_SECRET = "tg-secret-properties_01"
PORTAL_SECRET = "portal-secret-properties-0123"
CALL_SECRET = "call-secret-properties-0123"
PNID = "106540352242922"
IG = "17841412345678901"
NOWHERE = "http://127.0.0.1:9"  # the hub sends nothing in this test
JSON = "application/json"


async def _hub(harness_factory: Callable[..., Awaitable[HubHarness]]) -> HubHarness:
    return await harness_factory(
        channels__whatsapp__accounts__cloud={
            "provider": "cloud",
            "number": "+628119521151",
            "phone_number_id": PNID,
            "access_token": "cloud-access-token",
            "app_secret": META_SECRET,
            "verify_token": META_VERIFY,
            "api_base_url": NOWHERE,
        },
        channels__instagram__accounts={
            "ppid": {
                "ig_account_id": IG,
                "access_token": "ig-access-token",
                "app_secret": META_SECRET,
                "verify_token": META_VERIFY,
                "api_base_url": NOWHERE,
            }
        },
        channels__telegram__accounts={
            "kemnaker": {
                "bot_token": "123456:ABC-properties",
                "webhook_secret": TG_SECRET,
                "api_base_url": NOWHERE,
            }
        },
        channels__portal__accounts={
            "bantuan": {
                "api_base_url": NOWHERE,
                "api_token": "portal-token",
                "webhook_secret": PORTAL_SECRET,
            }
        },
        channels__call__accounts={"hotline": {"unit": "general", "events_secret": CALL_SECRET}},
    )


def _form_body(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode("ascii")


class Poster:
    """Signs and sends one request on the hub's loop from hypothesis's thread."""

    def __init__(self, h: HubHarness, loop: asyncio.AbstractEventLoop) -> None:
        self.h = h
        self.loop = loop
        self.seen: Counter[tuple[str, int]] = Counter()

    def signed(self, route: str, body: bytes) -> tuple[str, dict[str, str]]:
        h = self.h
        if route in ("twilio", "twilio-status"):
            path = "/webhooks/whatsapp/wa1" + ("/status" if route == "twilio-status" else "")
            form = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            signature = twilio_sign(h.base + path, form, token=TWILIO_TOKEN)
            return path, {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            }
        if route in ("cloud", "instagram"):
            path = "/webhooks/whatsapp/cloud" if route == "cloud" else "/webhooks/instagram/ppid"
            return path, {"Content-Type": JSON, "X-Hub-Signature-256": sign_body(META_SECRET, body)}
        if route == "telegram":
            return "/webhooks/telegram/kemnaker", {
                "Content-Type": JSON,
                "X-Telegram-Bot-Api-Secret-Token": TG_SECRET,
            }
        if route == "portal":
            ts = str(int(time.time()))
            return "/webhooks/portal/bantuan", {
                "Content-Type": JSON,
                "X-Portal-Timestamp": ts,
                "X-Portal-Signature": portal_sign(PORTAL_SECRET, ts, body),
            }
        ts = str(int(h.clock.now()))
        return "/webhooks/call/hotline", {
            "Content-Type": JSON,
            "X-Call-Timestamp": ts,
            "X-Call-Signature": call_sign(CALL_SECRET, ts, body),
        }

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        assert self.h.session is not None
        # Two seconds between calls: the forged ones (a third of the batch) stay under the
        # hub's quota of badly signed calls per client and minute, so the genuine ones after
        # them are not throttled along with them (a long run may still pass it: a 429).
        self.h.clock.advance(2)
        async with self.h.session.post(self.h.base + path, data=body, headers=headers) as r:
            text = await r.text()
            ctype = r.headers.get("Content-Type", "")
            return r.status, (json.loads(text) if ctype.startswith(JSON) and text else text)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        future = asyncio.run_coroutine_threadsafe(self._post(path, body, headers), self.loop)
        return future.result(timeout=30)


def _check_answer(route: str, status: int, payload: Any) -> None:
    assert status < 500, (route, status, payload)
    if status >= 400:
        assert isinstance(payload, dict), (route, status, payload)
        for key in ("error", "message"):
            assert isinstance(payload.get(key), str), payload
            assert payload[key], payload


ROUTES: dict[str, st.SearchStrategy[bytes]] = {
    "twilio": FORMS.map(_form_body),
    "twilio-status": FORMS.map(_form_body),
    "cloud": CLOUD_BODIES,
    "instagram": IG_BODIES,
    "telegram": TELEGRAM_BODIES,
    "portal": PORTAL_BODIES,
    "call": EVENT_BODIES,
}
TAMPER = st.sampled_from(["none", "none", "none", "flip", "forge"])


async def test_generated_webhooks_never_break_the_hub(
    harness_factory: Callable[..., Awaitable[HubHarness]],
) -> None:
    h = await _hub(harness_factory)
    poster = Poster(h, asyncio.get_running_loop())

    def batch_for(name: str, bodies: st.SearchStrategy[bytes]) -> Callable[[], None]:
        @fuzz(15, http=True)
        @given(body=bodies, tamper=TAMPER, index=st.integers(0, 10**6), xor=st.integers(1, 255))
        def batch(body: bytes, tamper: str, index: int, xor: int) -> None:
            path, headers = poster.signed(name, body)
            if tamper == "flip" and body:
                body = flip_byte(body, index, xor)
            elif tamper == "forge":
                for key in list(headers):
                    if "signature" in key.lower() or "secret" in key.lower():
                        headers[key] = "sha256=" + "0" * 64
            status, payload = poster.post(path, body, headers)
            poster.seen[(name, status)] += 1
            _check_answer(name, status, payload)
            if tamper == "forge":
                assert status in (401, 403, 429), (name, status, payload)

        return batch

    for name, bodies in ROUTES.items():  # every route gets its share of the batch
        await asyncio.to_thread(batch_for(name, bodies))
    assert {name for name, _ in poster.seen} == set(ROUTES)

    h.clock.advance(120)  # past any throttle the forged calls of a long run earned

    # What the webhooks stored goes through the dispatcher like any message.
    await h.drain_inbound()

    # And the hub still takes a genuine message on every channel.
    status, text = await h.post_whatsapp(inbound_params("Masih bisa?", sid="SM" + "e" * 32))
    assert status == 200, text
    cloud = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "628119521151",
                                "phone_number_id": PNID,
                            },
                            "messages": [
                                {
                                    "from": "6281234567890",
                                    "id": "wamid.after-batch",
                                    "timestamp": "1751000000",
                                    "type": "text",
                                    "text": {"body": "Masih bisa?"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(cloud).encode()
    path, headers = poster.signed("cloud", body)
    status, payload = await poster._post(path, body, headers)
    assert (status, payload) == (200, {"accepted": 1})
    assert await h.drain_inbound() >= 2
