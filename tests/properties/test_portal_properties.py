"""Properties of the portal's event parser: signed webhooks and polled events.

Events are mutations of the recorded fixtures and of the demo portal's own events, with
NIKs, phones, e-mails, request ids, timestamps and attachments of every shape. A webhook is
signed the portal's way (timestamped HMAC), so the parser itself is exercised; a polled
event goes to ``parse_event`` as the poller hands it over (already decoded, so it may hold
NaN and infinities as Python floats). Beyond the message invariants: a valid NIK never
appears in clear anywhere in the message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from channels.base import InboundRequest, SignatureError
from hub.demo.fake_portal import make_event
from hub.model import Message
from tests.portal import test_portal_channel_contract as portal_contract
from tests.properties.strategies import (
    HEADER_TEXT,
    TIMEOUT_S,
    Body,
    check_message,
    check_reason,
    check_refusal,
    dump,
    flip_byte,
    fuzz,
    outcome,
    variants,
    vocabulary,
)

pytestmark = pytest.mark.timeout(TIMEOUT_S)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "portal"
NOW = 1_772_000_000.5
NIK = "3201234507890001"


def _fixtures() -> list[Any]:
    out = []
    for p in sorted(FIXTURES.glob("*.json")):
        try:
            out.append(json.loads(p.read_bytes()))
        except ValueError:
            continue  # bad_json.json: the contract's garbage covers it
    return out


TEMPLATES = [
    *_fixtures(),
    make_event(7, event="request.replied", phone="+62 812 3456 7890", nik=NIK),
    make_event(8, phone="", email="", account_id="u-9"),
    {
        **make_event(9),
        "message": {
            "id": "msg-9",
            "text": "",
            "created_at": "2026-03-02T10:00:00Z",
            "attachments": [{"url": "https://b.example/f.pdf", "size": 1}],
        },
    },
]
EVENTS = variants(TEMPLATES, [*vocabulary(TEMPLATES), NIK, "3201 2345 0789 0001"])
BODIES = EVENTS.map(dump)
NESTED = st.integers(900, 200_000).map(lambda n: Body(b'{"event":' + b"[" * n))

CONTRACT = portal_contract.TestPortalContract()
CHANNEL = CONTRACT.build_channel()
SECRETS = [s for s in CONTRACT.secrets() if s]
SECRET = CONTRACT.account_settings("http://127.0.0.1:9")["webhook_secret"]


def _niks(event: Any) -> list[str]:
    """The 16-digit NIK the event's citizen carries (whitespace removed), if any."""
    citizen = event.get("citizen") if isinstance(event, dict) else None
    nik = citizen.get("nik") if isinstance(citizen, dict) else None
    if not isinstance(nik, str):
        return []
    digits = "".join(ch for ch in nik if not ch.isspace())
    return [digits] if len(digits) == 16 and digits.isdigit() else []


def check_portal_message(m: Message, event: Any) -> None:
    check_message(m, channel="portal", account=CHANNEL.account, received_at=NOW)
    assert m.kind == "portal"
    assert m.sender.split(":", 1)[0] in ("phone", "email", "portal"), m.sender
    assert m.reply_address
    assert m.thread_hints == (f"portal-request:{m.reply_address}",)
    assert json.loads(m.meta["reply_context"]) == {"portal_request": m.reply_address}
    ids = [m.provider_id, m.reply_address, m.sender]  # ids stay as sent, even a NIK-like one
    for nik in _niks(event):
        if any(nik in i for i in ids):
            continue
        shown = [m.text, m.raw, m.display_name, *m.meta.values()]
        assert not any(nik in s for s in shown), "a valid NIK is kept in clear"


@fuzz(300)
@given(body=st.one_of(BODIES, BODIES, BODIES, BODIES, NESTED))
def test_portal_webhook_is_parsed_or_refused(body: bytes) -> None:
    req: InboundRequest = CONTRACT.signed(body)
    CHANNEL.verify(req)
    parsed, refusal = outcome(lambda: CHANNEL.parse(req, NOW))
    if refusal is not None:
        check_refusal(refusal, SECRETS)
        return
    assert len(parsed.messages) == 1
    assert not parsed.statuses
    event = json.loads(body)
    check_portal_message(parsed.messages[0], event)


@fuzz(200)
@given(body=BODIES)
def test_polled_event_is_parsed_or_refused(body: bytes) -> None:
    """An item of the events list, decoded as the poller decodes the page (``json.loads`` of
    the text: NaN, infinities and lone surrogates included), goes to ``parse_event``."""
    try:
        event = json.loads(body.decode("utf-8"))
    except ValueError:
        assume(False)  # the page is not JSON: the poller refuses the page, not an event
    message, refusal = outcome(lambda: CHANNEL.parse_event(event, NOW))
    if refusal is not None:
        check_refusal(refusal, SECRETS)
    else:
        check_portal_message(message, event)


@fuzz(100)
@given(body=BODIES, index=st.integers(0, 10**6), xor=st.integers(1, 255))
def test_a_changed_byte_is_a_signature_error(body: bytes, index: int, xor: int) -> None:
    req: InboundRequest = CONTRACT.signed(body)
    CHANNEL.verify(req)
    forged = InboundRequest(
        req.url, req.headers, flip_byte(body, index, xor), req.form, req.content_type
    )
    with pytest.raises(SignatureError) as info:
        CHANNEL.verify(forged)
    check_reason(str(info.value), SECRETS)


@fuzz(100)
@given(timestamp=HEADER_TEXT, signature=HEADER_TEXT, body=st.binary(max_size=100))
def test_any_signature_headers_are_checked_not_crashed_on(
    timestamp: str, signature: str, body: bytes
) -> None:
    req = InboundRequest(
        "https://hub.example/webhooks/portal/bantuan",
        {"x-portal-timestamp": timestamp, "x-portal-signature": signature},
        body,
        content_type="application/json",
    )
    with pytest.raises(SignatureError) as info:
        CHANNEL.verify(req)
    check_reason(str(info.value), SECRETS)
