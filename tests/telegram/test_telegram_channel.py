"""The Telegram channel against recorded updates and a fake Bot API on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from channels.base import (
    Channel,
    InboundRequest,
    PayloadError,
    SignatureError,
    TransientSendError,
)
from channels.telegram import TelegramAccount, TelegramChannel
from hub.demo.fake_telegram import FakeTelegram, Scripted
from hub.model import DeliveryState, OutboundReply

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"
TOKEN = "123456:AAE-test_token_value"
SECRET = "s3cret-Webhook_token"
NOW = 1751000500.0

# PTB 22.2+ builds RetryAfter by reading its own deprecated int ``retry_after`` (it warns unless
# PTB_TIMEDELTA is set); the warning is raised inside PTB's request code, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Deprecated since version v22.2.*retry_after:telegram.warnings.PTBDeprecationWarning"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def request(body: bytes, secret: str | None = SECRET) -> InboundRequest:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-telegram-bot-api-secret-token"] = secret
    return InboundRequest(
        url="https://hub.example/webhooks/telegram/main",
        headers=headers,
        body=body,
        content_type="application/json",
    )


def account(base: str = "https://api.telegram.org") -> TelegramAccount:
    return TelegramAccount(bot_token=TOKEN, webhook_secret=SECRET, api_base_url=base)  # type: ignore[arg-type]


@pytest.fixture
def channel() -> TelegramChannel:
    return TelegramChannel("main", account())


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    f = FakeTelegram(tokens={TOKEN})
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def live(fake: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    ch = TelegramChannel("main", account(fake.base_url), send_timeout_s=0.5)
    yield ch
    await ch.aclose()


def reply(
    text: str = "Terima kasih, laporan Anda kami terima.", to: str = "777001"
) -> OutboundReply:
    return OutboundReply(
        reply_id="r1", ticket_id="t1", channel="telegram", account="main", to=to, text=text
    )


# -- settings and protocol -------------------------------------------------------------


def test_is_a_channel_and_hides_secrets(channel: TelegramChannel) -> None:
    assert isinstance(channel, Channel)
    assert channel.name == "telegram"
    assert channel.window.template_required_outside is False
    assert TOKEN not in repr(channel)
    assert SECRET not in repr(channel.settings)


@pytest.mark.parametrize("secret", ["", "has space", "x" * 257, "é"])
def test_webhook_secret_shape(secret: str) -> None:
    with pytest.raises(ValidationError):
        TelegramAccount(bot_token=TOKEN, webhook_secret=secret)  # type: ignore[arg-type]


def test_bot_token_shape() -> None:
    with pytest.raises(ValidationError):
        TelegramAccount(bot_token="not-a-token", webhook_secret=SECRET)  # type: ignore[arg-type]


# -- verify ----------------------------------------------------------------------------


def test_valid_secret_passes(channel: TelegramChannel) -> None:
    channel.verify(request(fixture("text")))


@pytest.mark.parametrize("given", [None, "", "wrong-secret", SECRET + "x", "sécret"])
def test_missing_or_wrong_secret_is_refused(channel: TelegramChannel, given: str | None) -> None:
    with pytest.raises(SignatureError):
        channel.verify(request(fixture("text"), secret=given))


# -- parse -----------------------------------------------------------------------------


def test_text(channel: TelegramChannel) -> None:
    (m,) = channel.parse(request(fixture("text")), NOW).messages
    assert m.channel == "telegram"
    assert m.account == "main"
    assert m.provider_id == "update:900000001"
    assert m.sender == "telegram:777001"
    assert m.reply_address == "777001"
    assert m.kind == "text"
    assert m.text == "Selamat siang, saya mau tanya soal JHT"
    assert m.display_name == "Siti Rahma"
    assert m.meta["username"] == "sitirahma"
    assert m.meta["language_code"] == "id"
    assert m.meta["message_id"] == "11"
    assert m.provider_ts == 1751000000.0
    assert m.received_at == NOW
    assert json.loads(m.raw)["update_id"] == 900000001


def test_photo_takes_the_largest_size(channel: TelegramChannel) -> None:
    (m,) = channel.parse(request(fixture("photo")), NOW).messages
    assert m.kind == "media"
    assert m.text == "Foto slip gaji"
    (a,) = m.attachments
    assert a.url == "tg-file:AgAC-large"
    assert a.content_type == "image/jpeg"
    assert a.size == 98000


def test_document(channel: TelegramChannel) -> None:
    (m,) = channel.parse(request(fixture("document")), NOW).messages
    (a,) = m.attachments
    assert m.kind == "media"
    assert (a.url, a.content_type, a.name, a.size) == (
        "tg-file:BQAC-doc",
        "application/pdf",
        "surat_pengaduan.pdf",
        45678,
    )


def test_location(channel: TelegramChannel) -> None:
    (m,) = channel.parse(request(fixture("location")), NOW).messages
    assert m.kind == "location"
    assert m.location is not None
    assert (m.location.latitude, m.location.longitude) == pytest.approx((-6.236, 106.8285))


def test_contact_gives_the_shared_phone_in_e164(channel: TelegramChannel) -> None:
    (m,) = channel.parse(request(fixture("contact")), NOW).messages
    assert m.kind == "contact"
    assert m.meta["shared_phone"] == "+6281234567890"
    assert m.meta["shared_phone_is_sender"] == "true"
    assert m.sender == "telegram:777001"


def test_someone_elses_contact_is_not_the_senders(channel: TelegramChannel) -> None:
    data = json.loads(fixture("contact"))
    data["message"]["contact"]["user_id"] = 555
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.meta["shared_phone"] == "+6281234567890"
    assert m.meta["shared_phone_is_sender"] == "false"


def test_invalid_shared_phone_is_kept_but_not_linked(channel: TelegramChannel) -> None:
    data = json.loads(fixture("contact"))
    data["message"]["contact"]["phone_number"] = "12"
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert "shared_phone" not in m.meta
    assert m.meta["shared_phone_invalid"] == "12"


def test_edited_message(channel: TelegramChannel) -> None:
    (m,) = channel.parse(request(fixture("edited_message")), NOW).messages
    assert m.meta["edited"] == "true"
    assert m.meta["message_id"] == "11"
    assert m.provider_id == "update:900000006"
    assert m.text.endswith("JKP")
    assert m.provider_ts == 1751000300.0


def test_callback_query_is_ignored_not_an_error(channel: TelegramChannel) -> None:
    parsed = channel.parse(request(fixture("callback_query")), NOW)
    assert parsed.messages == []
    assert parsed.statuses == []


def test_duplicate_update_gives_the_same_provider_id(channel: TelegramChannel) -> None:
    (a,) = channel.parse(request(fixture("text")), NOW).messages
    (b,) = channel.parse(request(fixture("text")), NOW + 5).messages
    assert a.provider_id == b.provider_id
    assert a.id != b.id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"message": {}}', "update_id"),
        (b'{"update_id": "7", "message": {}}', "update_id"),
        (b'{"update_id": 7, "message": "hi"}', "object"),
        (b'{"update_id": 7, "message": {"text": "no chat"}}', "Update"),
    ],
)
def test_malformed_is_a_payload_error(channel: TelegramChannel, body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        channel.parse(request(body), NOW)


def test_no_status_callbacks(channel: TelegramChannel) -> None:
    with pytest.raises(PayloadError):
        channel.parse_status(request(b"{}"))


# -- send against the fake Bot API -----------------------------------------------------


async def test_send_ok(live: TelegramChannel, fake: FakeTelegram) -> None:
    result = await live.send(reply())
    assert result.accepted
    assert result.state is DeliveryState.SENT
    assert result.provider_id == "1000"
    (call,) = fake.of("sendMessage")
    assert call.params["chat_id"] == "777001"
    assert call.params["text"] == "Terima kasih, laporan Anda kami terima."
    assert len(fake.of("getMe")) == 1  # initialize once
    assert (await live.send(reply())).provider_id == "1001"
    assert len(fake.of("getMe")) == 1


async def test_send_429_is_transient_with_retry_after(
    live: TelegramChannel, fake: FakeTelegram
) -> None:
    fake.script.append(Scripted(429, "Too Many Requests: retry after 3", retry_after=3))
    with pytest.raises(TransientSendError) as err:
        await live.send(reply())
    assert err.value.retry_after == 3.0
    assert err.value.code == "429"
    assert (await live.send(reply())).accepted


@pytest.mark.parametrize(
    ("status", "description", "code"),
    [
        (400, "Bad Request: chat not found", "400"),
        (403, "Forbidden: bot was blocked by the user", "403"),
    ],
)
async def test_send_refusals_are_results(
    live: TelegramChannel, fake: FakeTelegram, status: int, description: str, code: str
) -> None:
    fake.script.append(Scripted(status, description))
    result = await live.send(reply())
    assert not result.accepted
    assert result.state is DeliveryState.FAILED
    assert result.error_code == code
    assert result.error_message.lower() in description.lower()


async def test_send_5xx_is_transient(live: TelegramChannel, fake: FakeTelegram) -> None:
    fake.script.append(Scripted(502, "Bad Gateway"))
    with pytest.raises(TransientSendError):
        await live.send(reply())


async def test_send_timeout_is_transient(fake: FakeTelegram) -> None:
    # 2 s, not the other tests' 0.5: the first send (connect, getMe, sendMessage) must not
    # time out itself on a loaded machine; only the scripted hang may.
    ch = TelegramChannel("main", account(fake.base_url), send_timeout_s=2.0)
    try:
        await ch.send(reply())  # initialized, so the hang hits sendMessage
        fake.script.append(Scripted(hang_s=10.0))
        with pytest.raises(TransientSendError) as err:
            await ch.send(reply())
        assert err.value.code == "timeout"
    finally:
        await ch.aclose()


async def test_send_to_an_unreachable_api_is_transient() -> None:
    ch = TelegramChannel("main", account("http://127.0.0.1:9"), send_timeout_s=0.5)
    try:
        with pytest.raises(TransientSendError):
            await ch.send(reply())
    finally:
        await ch.aclose()


async def test_bad_chat_id_and_empty_text_fail_without_a_call(
    live: TelegramChannel, fake: FakeTelegram
) -> None:
    assert (await live.send(reply(to="+628123"))).error_code == "bad_chat_id"
    assert (await live.send(reply(text=""))).error_code == "empty_text"
    assert fake.calls == []


async def test_set_webhook_records_url_and_secret(
    live: TelegramChannel, fake: FakeTelegram
) -> None:
    assert await live.set_webhook("https://hub.example/webhooks/telegram/main") is True
    assert fake.webhook["url"] == "https://hub.example/webhooks/telegram/main"
    assert fake.webhook["secret_token"] == SECRET
    assert json.loads(fake.webhook["allowed_updates"]) == ["message", "edited_message"]


async def test_aclose_is_idempotent(live: TelegramChannel) -> None:
    await live.send(reply())
    await live.aclose()
    await live.aclose()
