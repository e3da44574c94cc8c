"""Properties of the Telegram bot's webhook parser (Bot API ``Update`` objects).

Updates are mutations of the recorded fixtures and of a few more shapes the Bot API sends
(voice, video, audio, venue, sticker, a reply, a group chat, a channel post), with the
secret token header set so the parser itself is exercised. Telegram authenticates the
sender with that token, not the body: there is no byte of the body to forge, so the second
property is about the header (any value but the secret is a SignatureError, never a crash).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import InboundRequest, SignatureError
from channels.telegram import SECRET_HEADER
from tests.properties.strategies import (
    HEADER_TEXT,
    TIMEOUT_S,
    Body,
    check_message,
    check_reason,
    check_refusal,
    dump,
    fuzz,
    outcome,
    variants,
    vocabulary,
)
from tests.telegram import test_telegram_contract as tg_contract

pytestmark = pytest.mark.timeout(TIMEOUT_S)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"
NOW = 1_751_000_500.5

USER = {
    "id": 777001,
    "is_bot": False,
    "first_name": "Siti",
    "last_name": "Rahma",
    "username": "sitirahma",
    "language_code": "id",
}
CHAT = {"id": 777001, "first_name": "Siti", "last_name": "Rahma", "type": "private"}


def _update(n: int, **fields: Any) -> dict[str, Any]:
    message = {"message_id": n, "from": USER, "chat": CHAT, "date": 1751000000 + n, **fields}
    return {"update_id": 900000100 + n, "message": message}


MORE = [
    _update(
        1,
        voice={
            "file_id": "AwAC-voice",
            "file_unique_id": "v1",
            "duration": 7,
            "mime_type": "audio/ogg",
            "file_size": 12000,
        },
    ),
    _update(
        2,
        video={
            "file_id": "BAAC-video",
            "file_unique_id": "v2",
            "width": 640,
            "height": 480,
            "duration": 12,
            "file_size": 900000,
        },
        caption="Video",
    ),
    _update(
        3,
        audio={
            "file_id": "CQAC-audio",
            "file_unique_id": "a1",
            "duration": 60,
            "mime_type": "audio/mpeg",
            "file_size": 500000,
        },
    ),
    _update(
        4,
        location={"latitude": -6.2297, "longitude": 106.8295},
        venue={
            "location": {"latitude": -6.2297, "longitude": 106.8295},
            "title": "Kemnaker",
            "address": "Jl. Gatot Subroto Kav. 51",
        },
    ),
    _update(
        5,
        sticker={
            "file_id": "CAAC-sticker",
            "file_unique_id": "s1",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        },
    ),
    _update(
        6,
        text="Ini lanjutan",
        reply_to_message={
            "message_id": 3,
            "from": USER,
            "chat": CHAT,
            "date": 1751000000,
            "text": "Awal",
        },
    ),
    {
        "update_id": 900000107,
        "message": {
            "message_id": 7,
            "from": USER,
            "date": 1751000007,
            "text": "Halo grup",
            "chat": {"id": -1001234567890, "title": "Pekerja PT Contoh", "type": "supergroup"},
        },
    },
    {
        "update_id": 900000108,
        "channel_post": {
            "message_id": 8,
            "date": 1751000008,
            "text": "Pengumuman",
            "chat": {"id": -1009876543210, "title": "Kanal", "type": "channel"},
        },
    },
]
TEMPLATES = [json.loads(p.read_bytes()) for p in sorted(FIXTURES.glob("*.json"))] + MORE
BODIES = variants(TEMPLATES, vocabulary(TEMPLATES)).map(dump)
NESTED = st.integers(900, 200_000).map(lambda n: Body(b'{"update_id":1,"message":' + b"[" * n))

CONTRACT = tg_contract.TestTelegramContract()
CHANNEL = CONTRACT.build_channel()
SECRETS = [s for s in CONTRACT.secrets() if s]
SECRET = CONTRACT.account_settings("http://127.0.0.1:9")["webhook_secret"]


@fuzz(300)
@given(body=st.one_of(BODIES, BODIES, BODIES, BODIES, NESTED))
def test_telegram_update_is_parsed_or_refused(body: bytes) -> None:
    req: InboundRequest = CONTRACT.signed(body)
    CHANNEL.verify(req)
    parsed, refusal = outcome(lambda: CHANNEL.parse(req, NOW))
    if refusal is not None:
        check_refusal(refusal, SECRETS)
        return
    assert not parsed.statuses
    assert len(parsed.messages) <= 1
    for m in parsed.messages:
        check_message(m, channel="telegram", account=CHANNEL.account, received_at=NOW)
        assert m.sender == f"telegram:{m.reply_address}"
        assert m.reply_address.lstrip("-").isdigit(), m.reply_address  # a chat id
        assert m.provider_id.startswith("update:")


@fuzz(100)
@given(token=HEADER_TEXT, body=BODIES)
def test_any_secret_token_header_is_checked_not_crashed_on(token: str, body: bytes) -> None:
    """Whatever the header holds (bytes that are not UTF-8 arrive as lone surrogates), it is
    the webhook secret or a SignatureError."""
    req = InboundRequest(
        "https://hub.example/webhooks/telegram/main",
        {SECRET_HEADER.lower(): token, "content-type": "application/json"},
        body,
        content_type="application/json",
    )
    if token == SECRET:
        CHANNEL.verify(req)
        return
    with pytest.raises(SignatureError) as info:
        CHANNEL.verify(req)
    check_reason(str(info.value), SECRETS)
