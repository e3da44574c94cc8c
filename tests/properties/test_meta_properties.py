"""Properties of Meta's two webhook parsers: WhatsApp Cloud API and Instagram messaging.

Bodies are mutations of the recorded fixtures (every message type, status, contact card,
echo, reaction, deletion, batch), signed with the app secret the way Meta signs them, so the
parser itself is exercised and not only the signature check. The only outcomes allowed are
normalized messages and statuses that survive the inbound stream, or a PayloadError (400)
with a short reason; and any byte changed after signing is a SignatureError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import Channel, InboundRequest, ParsedInbound, SignatureError
from channels.meta import SIGNATURE_HEADER, sign_body
from tests.instagram import test_instagram_contract as ig_contract
from tests.properties.strategies import (
    HEADER_TEXT,
    TIMEOUT_S,
    Body,
    check_message,
    check_reason,
    check_refusal,
    check_status,
    dump,
    flip_byte,
    fuzz,
    outcome,
    variants,
    vocabulary,
)
from tests.whatsapp_cloud import test_whatsapp_cloud_contract as cloud_contract

pytestmark = pytest.mark.timeout(TIMEOUT_S)

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOW = 1_751_000_500.25


def _templates(folder: str) -> list[Any]:
    return [json.loads(p.read_bytes()) for p in sorted((FIXTURES / folder).glob("*.json"))]


CLOUD_TEMPLATES = _templates("whatsapp_cloud")
IG_TEMPLATES = _templates("instagram")


def _bodies(templates: list[Any]) -> st.SearchStrategy[bytes]:
    structured = variants(templates, vocabulary(templates)).map(dump)
    truncated = st.tuples(structured, st.integers(0, 10**6)).map(
        lambda t: Body(t[0][: t[1] % (len(t[0]) + 1)])
    )
    return st.one_of(structured, structured, structured, structured, structured, truncated)


CLOUD_BODIES = _bodies(CLOUD_TEMPLATES)
IG_BODIES = _bodies(IG_TEMPLATES)


class _Meta:
    """One Meta channel built as the hub builds it, and how its requests are signed."""

    def __init__(self, contract: Any, name: str, phone_reply: bool) -> None:
        self.contract = contract
        self.channel: Channel = contract.build_channel()
        self.secrets = [s for s in contract.secrets() if s]
        self.app_secret: str = contract.account_settings("http://127.0.0.1:9")["app_secret"]
        self.name = name
        self.phone_reply = phone_reply

    def request(self, body: bytes) -> InboundRequest:
        req: InboundRequest = self.contract.signed(body)
        return req

    def check(self, body: bytes) -> ParsedInbound | None:
        """Verify and parse ``body`` signed; check whichever outcome it has."""
        req = self.request(body)
        self.channel.verify(req)
        parsed, refusal = outcome(lambda: self.channel.parse(req, NOW))
        if refusal is not None:
            check_refusal(refusal, self.secrets)
            return None
        assert isinstance(parsed, ParsedInbound)
        for m in parsed.messages:
            check_message(
                m,
                channel=self.channel.name,
                account=self.channel.account,
                received_at=NOW,
                phone_reply=self.phone_reply,
            )
        for s in parsed.statuses:
            check_status(s, self.channel.name, self.channel.account)
        return parsed


CLOUD = _Meta(cloud_contract.TestCloudWhatsAppContract(), "whatsapp", phone_reply=True)
INSTAGRAM = _Meta(ig_contract.TestInstagramContract(), "instagram", phone_reply=False)
META = pytest.mark.parametrize("meta", [CLOUD, INSTAGRAM], ids=["whatsapp-cloud", "instagram"])


@fuzz(300)
@given(body=CLOUD_BODIES)
def test_whatsapp_cloud_webhook_is_parsed_or_refused(body: bytes) -> None:
    CLOUD.check(body)


@fuzz(300)
@given(body=IG_BODIES)
def test_instagram_webhook_is_parsed_or_refused(body: bytes) -> None:
    INSTAGRAM.check(body)


@fuzz(100)
@given(body=CLOUD_BODIES)
def test_whatsapp_cloud_status_is_parsed_or_refused(body: bytes) -> None:
    """The status route reads the first delivery status of the same webhook shape."""
    req = CLOUD.request(body)
    status, refusal = outcome(lambda: CLOUD.channel.parse_status(req))
    if refusal is not None:
        check_refusal(refusal, CLOUD.secrets)
    else:
        check_status(status, CLOUD.channel.name, CLOUD.channel.account)


@fuzz(100)
@given(body=IG_BODIES)
def test_instagram_redelivery_gives_the_same_provider_ids(body: bytes) -> None:
    """Meta redelivers until it gets a 200: the same body must dedupe to the same ids."""
    first = INSTAGRAM.check(body)
    if first is not None:
        again = INSTAGRAM.check(body)
        assert again is not None
        assert [m.provider_id for m in first.messages] == [m.provider_id for m in again.messages]


@META
@fuzz(100)
@given(data=st.data(), index=st.integers(0, 10**6), xor=st.integers(1, 255))
def test_a_changed_byte_is_a_signature_error(
    meta: _Meta, data: st.DataObject, index: int, xor: int
) -> None:
    """Signed, the body passes; any byte changed after signing is refused as forged."""
    body = data.draw(CLOUD_BODIES if meta is CLOUD else IG_BODIES, label="body")
    if not body:
        body = b"{}"
    req = meta.request(body)
    meta.channel.verify(req)
    forged = InboundRequest(
        req.url, req.headers, flip_byte(body, index, xor), req.form, req.content_type
    )
    with pytest.raises(SignatureError) as info:
        meta.channel.verify(forged)
    check_reason(str(info.value), meta.secrets)


@META
@fuzz(100)
@given(signature=HEADER_TEXT, body=st.binary(max_size=200))
def test_any_signature_header_is_checked_not_crashed_on(
    meta: _Meta, signature: str, body: bytes
) -> None:
    """Whatever the X-Hub-Signature-256 header holds (aiohttp hands over bytes that are not
    UTF-8 as lone surrogates), it is the app's signature of the body or a SignatureError."""
    req = InboundRequest(
        "https://hub.example/webhooks/x",
        {SIGNATURE_HEADER.lower(): signature, "content-type": "application/json"},
        body,
        content_type="application/json",
    )
    try:
        meta.channel.verify(req)
    except SignatureError as exc:
        check_reason(str(exc), meta.secrets)
    else:
        expected = sign_body(meta.app_secret, body).removeprefix("sha256=")
        assert signature.startswith("sha256=")
        assert signature.removeprefix("sha256=").strip().lower() == expected
