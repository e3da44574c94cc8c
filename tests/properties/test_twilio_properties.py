"""Properties of the Twilio WhatsApp webhook parser (messages and status callbacks).

Forms are mutations of the recorded fixtures (text, media, location, buttons, lists,
replies, referrals, statuses) with Twilio's other fields added at random (coordinates,
NumMedia and MediaUrlN, button and list fields, status fields), repeated keys, and values
of every kind written as form text. Each form goes through the web layer's own steps
(URL-encoded, decoded as UTF-8, ``parse_qsl``) and is signed with the account's auth token,
so the parser sees exactly what the webhook would hand it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import InboundRequest, SignatureError
from tests.properties.strategies import (
    NUMBERISH,
    PHONES,
    TIMEOUT_S,
    check_message,
    check_reason,
    check_refusal,
    check_status,
    dump,
    fuzz,
    near_str,
    outcome,
    variants,
    vocabulary,
)
from tests.test_channel_contract_whatsapp_twilio import TestTwilioWhatsAppContract as _Contract
from tests.test_channel_whatsapp_twilio import FORM, URL, sign

pytestmark = pytest.mark.timeout(TIMEOUT_S)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "whatsapp"
NOW = 1_751_000_500.75
MAX_FIELDS = 500  # hub.web.webhooks.MAX_FIELDS


def _form(name: str) -> dict[str, str]:
    text = (FIXTURES / name).read_text("utf-8")
    return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))


TEMPLATES = [_form(p.name) for p in sorted(FIXTURES.glob("*.form"))]
FIELDS = sorted(
    {k for t in TEMPLATES for k in t}
    | {f"MediaUrl{i}" for i in range(12)}
    | {f"MediaContentType{i}" for i in range(12)}
    | {
        "Latitude",
        "Longitude",
        "Address",
        "Label",
        "ButtonPayload",
        "ButtonText",
        "ListId",
        "ListTitle",
        "OriginalRepliedMessageSid",
        "ReferralSourceUrl",
        "MessageStatus",
        "ErrorCode",
        "ErrorMessage",
        "WaId",
        "From",
        "Body",
        "NumMedia",
        "MessageType",
    }
)
VOCAB = vocabulary(TEMPLATES)
EXTRA_VALUES = st.one_of(
    NUMBERISH,
    PHONES,
    st.sampled_from(
        [
            "-6.2",
            "106.8",
            "91",
            "-181",
            "nan",
            "inf",
            "1e400",
            "text",
            "image",
            "location",
            "button",
            "interactive",
            "delivered",
            "failed",
            "read",
            "received",
            "canceled",
            "https://api.twilio.com/m/1",
            "",
        ]
    ),
    near_str("x", VOCAB),
)


def _as_text(value: Any) -> list[str]:
    """A mutated value as form values: a list is a repeated key, anything else its text."""
    if isinstance(value, list):
        return [v for item in value[:3] for v in _as_text(item)] or [""]
    if isinstance(value, str):
        return [value]
    if value is None:
        return [""]
    return [dump(value).decode("utf-8")]  # a number as its JSON token, an object as JSON


def _pairs(doc: Any, extras: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not isinstance(doc, dict):
        doc = {"Body": doc}
    pairs = [(str(k), v) for k, value in doc.items() for v in _as_text(value)]
    return pairs + extras


FORMS = st.builds(
    _pairs,
    variants(TEMPLATES, VOCAB),
    st.lists(st.tuples(st.sampled_from(FIELDS), EXTRA_VALUES), max_size=4),
)


def web_request(pairs: list[tuple[str, str]], url: str = URL) -> InboundRequest:
    """The request as the webhook builds it: the form URL-encoded (a lone surrogate as its
    UTF-8 bytes, which no decoder accepts), read back with ``parse_qsl``, then signed."""
    body = urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode("ascii")
    form = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    return InboundRequest(
        url=url,
        headers={"x-twilio-signature": sign(url, form)},
        body=body,
        form=form,
        content_type=FORM,
    )


CONTRACT = _Contract()
CHANNEL = CONTRACT.build_channel()
SECRETS = [s for s in CONTRACT.secrets() if s]


@fuzz(300)
@given(pairs=FORMS)
def test_twilio_webhook_is_parsed_or_refused(pairs: list[tuple[str, str]]) -> None:
    req = web_request(pairs)
    CHANNEL.verify(req)
    parsed, refusal = outcome(lambda: CHANNEL.parse(req, NOW))
    if refusal is not None:
        check_refusal(refusal, SECRETS)
        return
    assert len(parsed.messages) + len(parsed.statuses) == 1
    for m in parsed.messages:
        check_message(m, channel="whatsapp", account="wa1", received_at=NOW, phone_reply=True)
        assert len(m.attachments) <= 10
    for s in parsed.statuses:
        check_status(s, "whatsapp", "wa1")


@fuzz(200)
@given(pairs=FORMS)
def test_twilio_status_callback_is_parsed_or_refused(pairs: list[tuple[str, str]]) -> None:
    req = web_request(pairs, URL + "/status")
    CHANNEL.verify(req)
    status, refusal = outcome(lambda: CHANNEL.parse_status(req))
    if refusal is not None:
        check_refusal(refusal, SECRETS)
    else:
        check_status(status, "whatsapp", "wa1")


@fuzz(100)
@given(
    pairs=FORMS.filter(lambda p: any(v for _, v in p)),
    which=st.integers(0, 10**6),
    at=st.integers(0, 10**6),
    char=st.characters(codec="utf-8"),
)
def test_a_changed_value_is_a_signature_error(
    pairs: list[tuple[str, str]], which: int, at: int, char: str
) -> None:
    """Signed, the form passes; any value changed after signing is refused as forged."""
    req = web_request(pairs)
    CHANNEL.verify(req)
    form = list(req.form)
    candidates = [i for i, (_, v) in enumerate(form) if v]
    i = candidates[which % len(candidates)]
    key, value = form[i]
    j = at % len(value)
    if value[j] == char:
        char = "x" if char != "x" else "y"
    form[i] = (key, value[:j] + char + value[j + 1 :])
    forged = InboundRequest(req.url, req.headers, req.body, form, req.content_type)
    with pytest.raises(SignatureError) as info:
        CHANNEL.verify(forged)
    check_reason(str(info.value), SECRETS)
