"""The WhatsApp Cloud API channel against recorded-style webhooks and a fake Graph API.

Parsing tests build ``InboundRequest`` objects from the fixtures (no I/O); send and media tests
talk to ``FakeGraph`` on a free loopback port through the channel's real ``GraphClient``.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from channels.base import (
    Channel,
    InboundRequest,
    MediaSource,
    ParsedInbound,
    PayloadError,
    SignatureError,
    SubscriptionHandshake,
    TransientSendError,
)
from channels.meta import sign_body
from channels.whatsapp_cloud import CloudWhatsApp
from channels.whatsapp_twilio import TwilioWhatsApp
from hub.demo.fake_graph import FakeGraph, Scripted
from hub.identity import normalize_phone, phone_identity
from hub.model import DeliveryState, OutboundReply, OutFile, Template
from hub.settings import CloudWhatsAppAccount, TwilioWhatsAppAccount

FIXTURES = Path(__file__).parent.parent / "fixtures"
CLOUD = FIXTURES / "whatsapp_cloud"
TOKEN = "EAAG-test-access-token-0001"
APP_SECRET = "app-secret-0123456789abcdef"
VERIFY_TOKEN = "verify-token-kemnaker-01"
PNID = "106540352242922"
OTHER_PNID = "106540352242999"
WABA = "102290129340398"
CITIZEN = "+6281234567890"
OUR_MSG = "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjQ0QjU0RkE5QzBFMTM1Q0JGNgA="
NOW = 1751000500.0
URL = "https://hub.kemnaker.go.id/webhooks/whatsapp/wacloud"


def fixture(name: str) -> bytes:
    return (CLOUD / f"{name}.json").read_bytes()


def request(body: bytes, signature: str | None = "auto") -> InboundRequest:
    headers = {"content-type": "application/json"}
    if signature == "auto":
        signature = sign_body(APP_SECRET, body)
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return InboundRequest(url=URL, headers=headers, body=body, content_type="application/json")


def account(base: str = "https://graph.facebook.com", **extra: Any) -> CloudWhatsAppAccount:
    return CloudWhatsAppAccount.model_validate(
        {
            "provider": "cloud",
            "number": "+628119521151",
            "phone_number_id": PNID,
            "access_token": TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base_url": base,
            **extra,
        }
    )


def parse(channel: CloudWhatsApp, name: str) -> ParsedInbound:
    return channel.parse(request(fixture(name)), NOW)


def reply(
    text: str = "Terima kasih, laporan Anda kami terima.",
    to: str = CITIZEN,
    template: Template | None = None,
    files: tuple[OutFile, ...] = (),
) -> OutboundReply:
    return OutboundReply(
        reply_id="r1",
        ticket_id="t1",
        channel="whatsapp",
        account="wacloud",
        to=to,
        text=text,
        template=template,
        files=files,
    )


@pytest.fixture
def channel() -> CloudWhatsApp:
    return CloudWhatsApp("wacloud", account())


@pytest.fixture
async def fake() -> AsyncIterator[FakeGraph]:
    f = FakeGraph(tokens={TOKEN})
    await f.start(0)
    yield f
    await f.stop()


@pytest.fixture
async def live(fake: FakeGraph) -> AsyncIterator[CloudWhatsApp]:
    ch = CloudWhatsApp("wacloud", account(fake.base_url), send_timeout_s=2.0)
    yield ch
    await ch.aclose()


# -- protocol, settings and secrets ----------------------------------------------------


def test_is_a_channel_with_handshake_and_media(channel: CloudWhatsApp) -> None:
    assert isinstance(channel, Channel)
    assert isinstance(channel, SubscriptionHandshake)
    assert isinstance(channel, MediaSource)
    assert (channel.name, channel.provider, channel.account) == ("whatsapp", "cloud", "wacloud")
    assert channel.recipient_ids == (PNID,)
    assert channel.window.free_text_hours == 24.0
    assert channel.window.template_required_outside is True
    assert channel.window.attachments is False
    assert channel.window.human_agent_hours == 0.0
    assert CloudWhatsApp("x", account(), window_hours=12).window.free_text_hours == 12


def test_repr_shows_no_secret(channel: CloudWhatsApp) -> None:
    text = repr(channel)
    assert "wacloud" in text
    assert PNID in text
    for secret in (TOKEN, APP_SECRET, VERIFY_TOKEN):
        assert secret not in text
        assert secret not in repr(channel._graph)


# -- subscription handshake ------------------------------------------------------------


def test_handshake_answers_the_challenge(channel: CloudWhatsApp) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    assert channel.verify_subscription(params) == "1158201444"


def test_handshake_with_a_wrong_token_is_refused(channel: CloudWhatsApp) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    with pytest.raises(SignatureError) as err:
        channel.verify_subscription(params)
    assert err.value.status == 403
    assert VERIFY_TOKEN not in str(err.value)


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
    ],
)
def test_handshake_that_is_not_one_is_a_payload_error(
    channel: CloudWhatsApp, params: dict[str, str]
) -> None:
    with pytest.raises(PayloadError):
        channel.verify_subscription(params)


# -- signature -------------------------------------------------------------------------


def test_signed_body_passes(channel: CloudWhatsApp) -> None:
    channel.verify(request(fixture("text")))


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        sign_body("another-app-secret", fixture("text")),
        "sha256=" + "f" * 64,
    ],
)
def test_missing_or_forged_signature_is_refused(
    channel: CloudWhatsApp, signature: str | None
) -> None:
    with pytest.raises(SignatureError):
        channel.verify(request(fixture("text"), signature=signature))


def test_signature_over_reserialized_json_does_not_match(channel: CloudWhatsApp) -> None:
    body = fixture("text")
    reserialized = json.dumps(json.loads(body)).encode()
    assert reserialized != body
    with pytest.raises(SignatureError):
        channel.verify(request(body, signature=sign_body(APP_SECRET, reserialized)))


def test_tampered_body_is_refused(channel: CloudWhatsApp) -> None:
    body = fixture("text")
    signature = sign_body(APP_SECRET, body)
    with pytest.raises(SignatureError):
        channel.verify(request(body.replace(b"JHT", b"JKP"), signature=signature))


def test_uppercase_hex_signature_passes(channel: CloudWhatsApp) -> None:
    body = fixture("text")
    algo, _, digest = sign_body(APP_SECRET, body).partition("=")
    channel.verify(request(body, signature=f"{algo}={digest.upper()}"))


# -- parse: messages -------------------------------------------------------------------


def test_text(channel: CloudWhatsApp) -> None:
    parsed = parse(channel, "text")
    assert parsed.statuses == []
    (m,) = parsed.messages
    assert (m.channel, m.account) == ("whatsapp", "wacloud")
    assert m.provider_id == "wamid.HBgN6281234567890FQIAEhgWM0VCMDk40001QjY1RTRBMzJFMDBGAA=="
    assert m.sender == "phone:+6281234567890"
    assert m.reply_address == CITIZEN
    assert m.kind == "text"
    assert m.text == "Selamat siang, saya mau tanya soal pencairan JHT 🙏"
    assert m.display_name == "Siti Rahma"
    assert m.received_at == NOW
    assert m.provider_ts == 1751000000.0
    assert m.raw == fixture("text").decode()
    assert m.meta["recipient_id"] == PNID
    assert m.meta["waba_id"] == WABA
    assert m.meta["display_phone_number"] == "628119521151"
    assert m.meta["whatsapp_type"] == "text"
    assert all(isinstance(v, str) for v in m.meta.values())
    assert m.id[:10] != ""
    assert len(m.id) == 20


def test_same_identity_as_the_twilio_channel(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "text").messages
    assert m.sender == phone_identity(normalize_phone("6281234567890"))
    # The very same citizen through Twilio (its recorded webhook): one contact.
    body = (FIXTURES / "whatsapp" / "text.form").read_bytes()
    twilio = TwilioWhatsApp(
        "wa1",
        TwilioWhatsAppAccount.model_validate(
            {"number": "+628119521150", "account_sid": "AC" + "1" * 32, "auth_token": "x" * 16}
        ),
    )
    form = parse_qsl(body.decode(), keep_blank_values=True)
    twilio_request = InboundRequest(
        url=URL, headers={}, body=body, form=form, content_type="application/x-www-form-urlencoded"
    )
    (t,) = twilio.parse(twilio_request, NOW).messages
    assert (t.sender, t.reply_address) == (m.sender, m.reply_address)


def test_image_with_caption(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "image").messages
    assert m.kind == "media"
    assert m.text == "Foto slip gaji bulan Mei"
    (a,) = m.attachments
    assert (a.url, a.content_type, a.name) == ("wa-media:1234567890123451", "image/jpeg", "")
    assert channel.owns_media(a.url)


def test_document_keeps_its_file_name(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "document").messages
    assert m.kind == "media"
    assert m.text == "Surat pengaduan"
    (a,) = m.attachments
    assert (a.url, a.content_type, a.name) == (
        "wa-media:1234567890123452",
        "application/pdf",
        "surat_pengaduan.pdf",
    )


def test_voice_note(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "audio_voice").messages
    assert (m.kind, m.text) == ("media", "")
    (a,) = m.attachments
    assert (a.url, a.content_type) == ("wa-media:1234567890123453", "audio/ogg; codecs=opus")
    assert m.meta["voice"] == "true"
    assert m.meta["whatsapp_type"] == "audio"


def test_video(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "video").messages
    assert m.kind == "media"
    assert m.attachments[0].content_type == "video/mp4"


def test_sticker(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "sticker").messages
    assert (m.kind, m.text) == ("media", "")
    (a,) = m.attachments
    assert (a.url, a.content_type) == ("wa-media:1234567890123454", "image/webp")
    assert m.meta["whatsapp_type"] == "sticker"
    assert "animated" not in m.meta


def test_media_without_mime_type_gets_a_default(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("image"))
    del data["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["mime_type"]
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.attachments[0].content_type == "image/jpeg"


def test_location(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "location").messages
    assert (m.kind, m.text) == ("location", "")
    assert m.location is not None
    assert (m.location.latitude, m.location.longitude) == pytest.approx((-6.236, 106.8285))
    assert m.location.label == "Kantor Kemnaker"
    assert m.location.address == "Jl. Jend. Gatot Subroto Kav. 51, Jakarta Selatan"
    assert m.meta["location_url"] == "https://maps.google.com/?q=-6.236,106.8285"


def test_contacts(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "contacts").messages
    assert m.kind == "contact"
    assert m.text == "Budi Santoso +62 812-9876-5432, (021) 5255733"
    assert m.meta["shared_phone"] == "+6281298765432"
    assert m.meta["shared_phone_is_sender"] == "false"
    assert m.meta["contact_name"] == "Budi Santoso"
    assert m.sender == "phone:+6281234567890"


def test_own_contact_card_is_the_senders(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("contacts"))
    card = data["entry"][0]["changes"][0]["value"]["messages"][0]["contacts"][0]
    card["phones"] = [{"phone": "0812-3456-7890", "type": "CELL"}]  # no wa_id: local notation
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.meta["shared_phone"] == CITIZEN
    assert m.meta["shared_phone_is_sender"] == "true"


def test_invalid_shared_phone_is_kept_but_not_linked(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("contacts"))
    card = data["entry"][0]["changes"][0]["value"]["messages"][0]["contacts"][0]
    card["phones"] = [{"phone": "12", "type": "CELL"}]
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert "shared_phone" not in m.meta
    assert m.meta["shared_phone_invalid"] == "12"
    assert m.text == "Budi Santoso 12"


def test_interactive_button_reply(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "interactive_button_reply").messages
    assert (m.kind, m.text) == ("button", "Klaim JHT")
    assert m.meta["button_payload"] == "topic_jht"
    assert m.meta["replied_to"] == OUR_MSG
    assert "list_id" not in m.meta


def test_interactive_list_reply(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "interactive_list_reply").messages
    assert (m.kind, m.text) == ("button", "Pengujian K3")
    assert m.meta["button_payload"] == "unit_k3"
    assert m.meta["list_id"] == "unit_k3"
    assert m.meta["list_description"] == "Keselamatan dan kesehatan kerja"


def test_template_quick_reply_button(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "button").messages
    assert (m.kind, m.text) == ("button", "Cek status tiket")
    assert m.meta["button_payload"] == "STATUS_TIKET"
    assert m.meta["replied_to"] == OUR_MSG


def test_reaction_and_its_removal(channel: CloudWhatsApp) -> None:
    (r,) = parse(channel, "reaction").messages
    assert (r.kind, r.text) == ("reaction", "👍")
    assert r.meta["reacted_to"] == OUR_MSG
    assert r.meta["action"] == "react"
    (u,) = parse(channel, "unreaction").messages
    assert (u.kind, u.text) == ("reaction", "")
    assert u.meta["reacted_to"] == OUR_MSG
    assert u.meta["action"] == "unreact"
    assert r.provider_id != u.provider_id  # each reaction event has its own wamid


def test_reaction_with_an_empty_emoji_is_a_removal(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("reaction"))
    data["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"]["emoji"] = ""
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert (m.kind, m.text, m.meta["action"]) == ("reaction", "", "unreact")


def test_unsupported_carries_metas_error(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "unsupported").messages
    assert (m.kind, m.text) == ("unsupported", "")
    assert m.meta["whatsapp_type"] == "unsupported"
    assert m.meta["error_code"] == "131051"
    assert "not supported" in m.meta["error_message"]


def test_system_message(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "system").messages
    assert m.kind == "unsupported"
    assert m.meta["whatsapp_type"] == "system"
    assert m.meta["system_type"] == "user_changed_number"
    assert m.meta["new_wa_id"] == "6281234567891"
    assert m.display_name == ""  # no contacts in a system webhook


@pytest.mark.parametrize("mtype", ["order", "request_welcome", "ephemeral", "something_new"])
def test_order_and_unknown_types_are_unsupported(channel: CloudWhatsApp, mtype: str) -> None:
    data = json.loads(fixture("order"))
    msg = data["entry"][0]["changes"][0]["value"]["messages"][0]
    if mtype != "order":
        msg["type"] = mtype
        msg[mtype] = msg.pop("order")
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert (m.kind, m.text) == ("unsupported", "")
    assert m.meta["whatsapp_type"] == mtype


def test_interactive_flow_reply_is_unsupported(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("interactive_button_reply"))
    msg = data["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["interactive"] = {"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}}
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.kind == "unsupported"
    assert m.meta["interactive_type"] == "nfm_reply"


def test_referral(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "referral").messages
    assert (m.kind, m.text) == ("text", "Halo, saya lihat iklan pelatihan vokasi")
    assert m.meta["referral_url"] == "https://fb.me/3cr4Wqqkv"
    assert m.meta["referral_source_type"] == "ad"


def test_forwarded_text(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("text"))
    data["entry"][0]["changes"][0]["value"]["messages"][0]["context"] = {"forwarded": True}
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.meta["forwarded"] == "true"
    assert "replied_to" not in m.meta


def test_duplicate_delivery_gives_the_same_provider_id(channel: CloudWhatsApp) -> None:
    (a,) = parse(channel, "text").messages
    (b,) = channel.parse(request(fixture("text")), NOW + 5).messages
    assert a.provider_id == b.provider_id
    assert a.id != b.id


def test_batch_keeps_delivery_order(channel: CloudWhatsApp) -> None:
    parsed = parse(channel, "batch")
    assert [m.text for m in parsed.messages] == ["Pesan pertama", "Pesan kedua"]
    assert [m.provider_ts for m in parsed.messages] == [1751000300.0, 1751000301.0]
    assert {m.display_name for m in parsed.messages} == {"Siti Rahma"}
    assert len({m.provider_id for m in parsed.messages}) == 2
    (s,) = parsed.statuses
    assert (s.provider_id, s.state) == (OUR_MSG, DeliveryState.READ)


def test_several_entries_and_changes_in_order(channel: CloudWhatsApp) -> None:
    text, image, failed = (json.loads(fixture(n)) for n in ("text", "image", "status_failed"))
    text["entry"][0]["changes"].append(image["entry"][0]["changes"][0])
    text["entry"].append(failed["entry"][0])
    parsed = channel.parse(request(json.dumps(text).encode()), NOW)
    assert [m.kind for m in parsed.messages] == ["text", "media"]
    assert [s.state for s in parsed.statuses] == [DeliveryState.FAILED]


def test_another_numbers_message_is_parsed_with_its_recipient_id(channel: CloudWhatsApp) -> None:
    (m,) = parse(channel, "other_number").messages
    assert m.meta["recipient_id"] == OTHER_PNID
    assert OTHER_PNID not in channel.recipient_ids
    assert m.account == "wacloud"  # the hub relabels it to the sibling account
    assert m.sender == "phone:+6281234567890"


@pytest.mark.parametrize("name", ["non_messages_field", "errors_only", "status_deleted"])
def test_nothing_to_record_is_acknowledged(channel: CloudWhatsApp, name: str) -> None:
    parsed = parse(channel, name)
    assert parsed.messages == []
    assert parsed.statuses == []


def test_phone_number_id_given_as_a_number(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("text"))
    data["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = int(PNID)
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.meta["recipient_id"] == PNID


# -- parse: statuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("status_sent", DeliveryState.SENT),
        ("status_delivered", DeliveryState.DELIVERED),
        ("status_read", DeliveryState.READ),
    ],
)
def test_statuses(channel: CloudWhatsApp, name: str, state: DeliveryState) -> None:
    parsed = parse(channel, name)
    assert parsed.messages == []
    (s,) = parsed.statuses
    assert (s.channel, s.account, s.provider_id, s.state) == ("whatsapp", "wacloud", OUR_MSG, state)
    assert (s.error_code, s.error_message) == ("", "")


def test_failed_status_carries_metas_error(channel: CloudWhatsApp) -> None:
    (s,) = parse(channel, "status_failed").statuses
    assert s.state is DeliveryState.FAILED
    assert s.provider_id == OUR_MSG
    assert s.error_code == "131047"
    assert s.error_message.startswith("Re-engagement message: Message failed to send")
    assert "24 hours" in s.error_message


def test_failed_status_without_errors(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("status_failed"))
    del data["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"]
    (s,) = channel.parse(request(json.dumps(data).encode()), NOW).statuses
    assert (s.state, s.error_code, s.error_message) == (DeliveryState.FAILED, "", "")


def test_unknown_status_is_ignored_but_known_ones_kept(channel: CloudWhatsApp) -> None:
    data = json.loads(fixture("status_read"))
    statuses = data["entry"][0]["changes"][0]["value"]["statuses"]
    statuses.insert(0, dict(statuses[0], status="played"))
    statuses.append(dict(statuses[0], status="deleted"))
    parsed = channel.parse(request(json.dumps(data).encode()), NOW)
    assert [s.state for s in parsed.statuses] == [DeliveryState.READ]


def test_parse_status_gives_the_first_status(channel: CloudWhatsApp) -> None:
    s = channel.parse_status(request(fixture("status_failed")))
    assert (s.state, s.error_code) == (DeliveryState.FAILED, "131047")
    with pytest.raises(PayloadError):
        channel.parse_status(request(fixture("text")))


# -- parse: malformed input only ever raises PayloadError -----------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b'{"object": "instagram", "entry": []}',
        b'{"object": "whatsapp_business_account"}',
        b'{"object": "whatsapp_business_account", "entry": {}}',
        b'{"object": "whatsapp_business_account", "entry": [1]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": {}}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [7]}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {}}]}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": '
        b'[{"field": "messages", "value": {"messages": [{}]}}]}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": '
        b'[{"field": "messages", "value": {"metadata": {"phone_number_id": "1"}, '
        b'"messages": [{"id": "w", "from": "12", "type": "text", "text": {"body": "x"}}]}}]}]}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_garbage_is_a_payload_error(channel: CloudWhatsApp, body: bytes) -> None:
    with pytest.raises(PayloadError):
        channel.parse(request(body), NOW)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("messages", 0, "from"), None),
        (("messages", 0, "from"), 6281234567890),
        (("messages", 0, "id"), ""),
        (("messages", 0, "type"), ["text"]),
        (("messages", 0, "timestamp"), "yesterday"),
        (("messages", 0, "timestamp"), 10**400),
        (("messages", 0, "text"), "hello"),
        (("messages", 0, "text", "body"), {"x": 1}),
        (("messages", 0, "context"), "wamid"),
        (("messages", 0), "message"),
        (("contacts", 0, "profile", "name"), 12),
        (("contacts",), {"wa_id": "1"}),
        (("metadata",), None),
        (("metadata", "phone_number_id"), True),
        (("messages",), {"0": {}}),
    ],
)
def test_wrong_types_are_payload_errors(
    channel: CloudWhatsApp, path: tuple[str | int, ...], value: Any
) -> None:
    data = json.loads(fixture("text"))
    node: Any = data["entry"][0]["changes"][0]["value"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(PayloadError):
        channel.parse(request(json.dumps(data).encode()), NOW)


@pytest.mark.parametrize(
    ("fixture_name", "key", "value"),
    [
        ("location", "latitude", "north"),
        ("location", "latitude", 91),
        ("location", "longitude", float("inf")),
        ("location", "longitude", True),
        ("image", "id", None),
        ("image", "id", ["1"]),
        ("reaction", "message_id", None),
        ("contacts", "phones", "0812"),
    ],
)
def test_bad_content_fields_are_payload_errors(
    channel: CloudWhatsApp, fixture_name: str, key: str, value: Any
) -> None:
    data = json.loads(fixture(fixture_name))
    msg = data["entry"][0]["changes"][0]["value"]["messages"][0]
    content = msg[msg["type"]]
    (content[0] if isinstance(content, list) else content)[key] = value
    with pytest.raises(PayloadError):
        channel.parse(request(json.dumps(data).encode()), NOW)


GARBAGE: list[Any] = [None, True, 0, -1, 1.5, 10**30, "", "x", "NaN", [], [None], {}, {"a": 1}]
ALL_FIXTURES = sorted(p.stem for p in CLOUD.glob("*.json"))


def _mutate(node: Any, rng: random.Random) -> Any:
    """Replace, drop or retype one randomly chosen node of a JSON tree (or the tree)."""
    if rng.random() < 0.25 or not isinstance(node, dict | list) or not node:
        return copy.deepcopy(rng.choice(GARBAGE))
    if isinstance(node, dict):
        key = rng.choice(sorted(node))
        if rng.random() < 0.2:
            node.pop(key)
        else:
            node[key] = _mutate(node[key], rng)
        return node
    index = rng.randrange(len(node))
    node[index] = _mutate(node[index], rng)
    return node


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_mutated_fixtures_only_ever_raise_payload_errors(channel: CloudWhatsApp, name: str) -> None:
    rng = random.Random(f"wa-cloud-{name}")  # seeded: a failure replays
    original = json.loads(fixture(name))
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(300):
        data = _mutate(copy.deepcopy(original), rng)
        for _ in range(rng.randint(0, 2)):
            data = _mutate(data, rng)
        body = json.dumps(data).encode()
        try:
            parsed = channel.parse(request(body), NOW)
        except PayloadError:
            outcomes["refused"] += 1
            continue
        outcomes["parsed"] += 1
        for m in parsed.messages:
            assert all(isinstance(v, str) for v in m.meta.values()), m.meta
            assert m.provider_id
            assert m.sender.startswith("phone:+")
        for s in parsed.statuses:
            assert s.provider_id
    assert outcomes["refused"] > 0


# -- send against the fake Graph API ---------------------------------------------------


async def test_send_text(live: CloudWhatsApp, fake: FakeGraph) -> None:
    result = await live.send(reply())
    assert result.accepted
    assert result.state is DeliveryState.SENT
    (call,) = fake.sent
    assert result.provider_id == call.provider_id
    assert result.provider_id.startswith("wamid.")
    assert call.path == f"/v21.0/{PNID}/messages"
    assert call.token == TOKEN
    assert call.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "6281234567890",
        "type": "text",
        "text": {"body": "Terima kasih, laporan Anda kami terima.", "preview_url": False},
    }


async def test_send_template(live: CloudWhatsApp, fake: FakeGraph) -> None:
    template = Template(
        name="tiket_diterima",
        provider_ref="tiket_diterima_v2",
        variables={"2": "KMN-2026-000123", "1": "Siti"},
        language="en_US",
    )
    result = await live.send(reply(text="ignored", template=template))
    assert result.accepted
    (call,) = fake.sent
    assert call.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "6281234567890",
        "type": "template",
        "template": {
            "name": "tiket_diterima_v2",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Siti"},
                        {"type": "text", "text": "KMN-2026-000123"},
                    ],
                }
            ],
        },
    }


async def test_send_template_without_variables_has_no_components(
    live: CloudWhatsApp, fake: FakeGraph
) -> None:
    result = await live.send(reply(text="", template=Template(name="halo", provider_ref="halo")))
    assert result.accepted
    (call,) = fake.sent
    assert call.body["template"] == {"name": "halo", "language": {"code": "id"}}


@pytest.mark.parametrize("variables", [{"1": "a", "3": "c"}, {"name": "Siti"}, {"0": "x"}])
async def test_template_variables_must_be_numbered(
    live: CloudWhatsApp, fake: FakeGraph, variables: dict[str, str]
) -> None:
    template = Template(name="t", provider_ref="t", variables=variables)
    result = await live.send(reply(template=template))
    assert (result.accepted, result.error_code) == (False, "template_variables")
    assert fake.calls == []


async def test_send_500_is_transient(live: CloudWhatsApp, fake: FakeGraph) -> None:
    fake.script.append(Scripted(500, code=2, message="Service temporarily unavailable"))
    with pytest.raises(TransientSendError) as err:
        await live.send(reply())
    assert err.value.code == "2"
    assert (await live.send(reply())).accepted


async def test_send_429_is_transient_with_retry_after(live: CloudWhatsApp, fake: FakeGraph) -> None:
    fake.script.append(Scripted(429, code=80007, message="rate limit", retry_after=7))
    with pytest.raises(TransientSendError) as err:
        await live.send(reply())
    assert err.value.retry_after == 7.0
    assert err.value.code == "80007"


async def test_throughput_limit_130429_is_transient(live: CloudWhatsApp, fake: FakeGraph) -> None:
    fake.script.append(Scripted(400, code=130429, message="Rate limit hit"))
    with pytest.raises(TransientSendError) as err:
        await live.send(reply())
    assert err.value.code == "130429"
    assert err.value.retry_after == 60.0


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (131047, "Re-engagement message"),
        (131026, "Message undeliverable"),
        (132001, "Template name does not exist in the translation"),
    ],
)
async def test_refusals_are_failed_results(
    live: CloudWhatsApp, fake: FakeGraph, code: int, message: str
) -> None:
    fake.script.append(Scripted(400, code=code, message=message))
    result = await live.send(reply())
    assert not result.accepted
    assert result.state is DeliveryState.FAILED
    assert result.error_code == str(code)
    assert result.error_message == message


async def test_subcode_is_part_of_the_error_code(live: CloudWhatsApp, fake: FakeGraph) -> None:
    fake.script.append(Scripted(400, code=10, subcode=2018278, message="outside window"))
    result = await live.send(reply())
    assert result.error_code == "10/2018278"


async def test_bad_token_is_a_failed_result(fake: FakeGraph) -> None:
    ch = CloudWhatsApp("wacloud", account(fake.base_url, access_token="EAAG-revoked-token"))
    try:
        result = await ch.send(reply())
    finally:
        await ch.aclose()
    assert (result.accepted, result.state, result.error_code) == (
        False,
        DeliveryState.FAILED,
        "190",
    )
    assert "EAAG-revoked-token" not in result.error_message
    assert fake.calls[0].token == ""  # the fake did not know it


async def test_scripted_401_is_a_failed_result(live: CloudWhatsApp, fake: FakeGraph) -> None:
    fake.script.append(Scripted(401, code=190, message="Error validating access token"))
    result = await live.send(reply())
    assert (result.accepted, result.error_code) == (False, "190")


async def test_hang_beyond_the_send_timeout_is_transient(fake: FakeGraph) -> None:
    ch = CloudWhatsApp("wacloud", account(fake.base_url), send_timeout_s=0.3)
    fake.script.append(Scripted(hang_s=5.0))
    try:
        with pytest.raises(TransientSendError) as err:
            await ch.send(reply())
    finally:
        await ch.aclose()
    assert err.value.code == "timeout"


async def test_unreachable_api_is_transient() -> None:
    ch = CloudWhatsApp("wacloud", account("http://127.0.0.1:9"), send_timeout_s=0.5)
    try:
        with pytest.raises(TransientSendError):
            await ch.send(reply())
    finally:
        await ch.aclose()


async def test_refusals_without_a_call(live: CloudWhatsApp, fake: FakeGraph) -> None:
    assert (await live.send(reply(text=""))).error_code == "empty_text"
    assert (await live.send(reply(text="  \n"))).error_code == "empty_text"
    assert (await live.send(reply(text="x" * 4097))).error_code == "too_long"
    assert (await live.send(reply(to="12"))).error_code == "bad_recipient"
    file = OutFile("slip.pdf", "application/pdf", b"%PDF-1.4")
    assert (await live.send(reply(files=(file,)))).error_code == "attachments_unsupported"
    assert fake.calls == []
    result = await live.send(reply(text="x" * 4096))
    assert result.accepted


async def test_aclose_is_idempotent_and_the_channel_reopens(live: CloudWhatsApp) -> None:
    assert (await live.send(reply())).accepted
    await live.aclose()
    await live.aclose()
    assert (await live.send(reply())).accepted


# -- media -----------------------------------------------------------------------------


def test_owns_only_its_references(channel: CloudWhatsApp) -> None:
    assert channel.owns_media("wa-media:1234567890123451")
    assert not channel.owns_media("tg-file:AgAC")
    assert not channel.owns_media("https://api.twilio.com/x")


async def test_fetch_media(live: CloudWhatsApp, fake: FakeGraph) -> None:
    media_id = fake.add_media(b"\xff\xd8\xff\xe0 fake jpeg", "image/jpeg")
    data, ctype = await live.fetch_media(f"wa-media:{media_id}", max_bytes=1_000_000)
    assert (data, ctype) == (b"\xff\xd8\xff\xe0 fake jpeg", "image/jpeg")
    (info,) = fake.calls
    assert (info.method, info.path, info.token) == ("GET", f"/v21.0/{media_id}", TOKEN)


async def test_fetch_unknown_media_is_a_payload_error(live: CloudWhatsApp) -> None:
    with pytest.raises(PayloadError):
        await live.fetch_media("wa-media:999999", max_bytes=1_000_000)


@pytest.mark.parametrize("ref", ["wa-media:", "wa-media:../../me", "wa-media:1/2", "tg-file:1"])
async def test_fetch_malformed_reference_is_a_payload_error(
    live: CloudWhatsApp, fake: FakeGraph, ref: str
) -> None:
    with pytest.raises(PayloadError):
        await live.fetch_media(ref, max_bytes=1_000_000)
    assert fake.calls == []


async def test_media_above_max_bytes_is_a_payload_error(
    live: CloudWhatsApp, fake: FakeGraph
) -> None:
    media_id = fake.add_media(b"x" * 5000, "application/pdf")
    with pytest.raises(PayloadError, match="above 4999"):
        await live.fetch_media(f"wa-media:{media_id}", max_bytes=4999)
    data, _ = await live.fetch_media(f"wa-media:{media_id}", max_bytes=5000)
    assert len(data) == 5000


async def test_account_media_limit_applies_too(fake: FakeGraph) -> None:
    ch = CloudWhatsApp("wacloud", account(fake.base_url, max_media_bytes=2048))
    media_id = fake.add_media(b"x" * 4096, "video/mp4")
    try:
        with pytest.raises(PayloadError, match="above 2048"):
            await ch.fetch_media(f"wa-media:{media_id}", max_bytes=10_000_000)
    finally:
        await ch.aclose()
