"""Contract tests of the Twilio WhatsApp channel: signatures, recorded payloads, sends.

Direct tests drive ``TwilioWhatsApp`` with ``InboundRequest`` objects (no I/O); HTTP tests go
through the real webhook endpoint of a hub (``harness``); send tests talk to ``FakeTwilio``
through the real twilio SDK and aiohttp.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from adapters.redis_server import free_port
from channels.base import (
    Channel,
    InboundRequest,
    PayloadError,
    SignatureError,
    TransientSendError,
)
from channels.whatsapp_twilio import TwilioWhatsApp
from hub.demo.fake_twilio import FakeTwilio, Scripted
from hub.model import (
    DeliveryResult,
    DeliveryState,
    Location,
    Message,
    OutboundReply,
    Template,
)
from hub.settings import Settings, TwilioWhatsAppAccount
from tests.helpers import SID1, HubHarness, inbound_params, make_settings

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
FORM = "application/x-www-form-urlencoded"
TOKEN1 = "wa1-auth-token-secret"  # wa1's token in tests.helpers.make_settings
PUBLIC = "https://hub.kemnaker.go.id"
URL = PUBLIC + "/webhooks/whatsapp/wa1"
STATUS_URL = URL + "/status"
UNUSED_REDIS = "redis://127.0.0.1:1/0"  # send tests build settings but never touch Redis
MEDIA_BASE = f"https://api.twilio.com/2010-04-01/Accounts/{SID1}/Messages/"
REPLIED = "SM7c1e2f3a4b5c6d7e8f9a0b1c2d3e4f50"

Form = list[tuple[str, str]]


# -- helpers ---------------------------------------------------------------------------


def load_form(name: str) -> tuple[bytes, Form]:
    body = (FIXTURES / f"{name}.form").read_bytes()
    return body, parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)


def sign(url: str, form: Sequence[tuple[str, str]], token: str = TOKEN1) -> str:
    """What Twilio puts in X-Twilio-Signature (repeated keys signed as Twilio does)."""
    return str(RequestValidator(token).compute_signature(url, MultiDict(form)))


def make_request(
    form: Sequence[tuple[str, str]],
    *,
    url: str = URL,
    signature: str | None = None,
    body: bytes | None = None,
    content_type: str = FORM,
) -> InboundRequest:
    """An InboundRequest signed for ``url`` unless a signature ("" = none) is given."""
    sig = sign(url, form) if signature is None else signature
    return InboundRequest(
        url=url,
        headers={"x-twilio-signature": sig} if sig else {},
        body=urlencode(list(form)).encode() if body is None else body,
        form=list(form),
        content_type=content_type,
    )


def account(**over: Any) -> TwilioWhatsAppAccount:
    fields: dict[str, Any] = {
        "number": "+628119521150",
        "account_sid": SID1,
        "auth_token": TOKEN1,
    }
    fields.update(over)
    return TwilioWhatsAppAccount.model_validate(fields)


@pytest.fixture
def ch() -> TwilioWhatsApp:
    """A wa1 channel for pure verify/parse tests (its HTTP client is never created)."""
    return TwilioWhatsApp("wa1", account())


def replaced(form: Form, **changes: str | None) -> Form:
    """The form with keys changed in place, new keys appended; None removes a key."""
    out = [(k, changes.get(k, v)) for k, v in form]
    present = {k for k, _ in form}
    out += [(k, v) for k, v in changes.items() if k not in present]
    return [(k, v) for k, v in out if v is not None]


def text_form(**changes: str | None) -> Form:
    return replaced(list(inbound_params(sid="SM" + "d" * 32).items()), **changes)


# -- signature, on the channel ----------------------------------------------------------


def test_channel_satisfies_protocol(ch: TwilioWhatsApp) -> None:
    """TwilioWhatsApp implements the Channel protocol the hub programs against."""
    assert isinstance(ch, Channel)
    assert (ch.name, ch.account, ch.window.free_text_hours) == ("whatsapp", "wa1", 24.0)


def test_verify_accepts_twilio_signature(ch: TwilioWhatsApp) -> None:
    """A request signed with the account's auth token for the public URL verifies."""
    _, form = load_form("text")
    ch.verify(make_request(form))


def test_verify_rejects_signature_made_with_another_token(ch: TwilioWhatsApp) -> None:
    """A signature made with any other token (e.g. wa2's) is refused as forged."""
    _, form = load_form("text")
    forged = sign(URL, form, token="wa2-auth-token-secret")
    with pytest.raises(SignatureError, match="does not match"):
        ch.verify(make_request(form, signature=forged))


def test_verify_rejects_missing_signature(ch: TwilioWhatsApp) -> None:
    """A request without X-Twilio-Signature is refused before anything is compared."""
    _, form = load_form("text")
    with pytest.raises(SignatureError, match="missing"):
        ch.verify(make_request(form, signature=""))


@pytest.mark.parametrize(
    "signed_for",
    [
        "https://evil.example.com/webhooks/whatsapp/wa1",  # another host
        PUBLIC + "/webhooks/whatsapp/wa2",  # another account's path
        STATUS_URL,  # the status path of the same account
        "http://hub.kemnaker.go.id/webhooks/whatsapp/wa1",  # another scheme
        URL + "?replay=1",  # a query string the request does not carry
    ],
)
def test_verify_rejects_signature_for_another_url(ch: TwilioWhatsApp, signed_for: str) -> None:
    """A genuine signature for any other URL does not verify on this one (no replay)."""
    _, form = load_form("text")
    with pytest.raises(SignatureError):
        ch.verify(make_request(form, signature=sign(signed_for, form)))


@pytest.mark.parametrize(
    "tamper",
    [
        {"NumMedia": "1", "MediaUrl0": "https://evil.example.com/x.jpg"},  # added
        {"ProfileName": None},  # removed
        {"Body": "Saya minta tiket ditutup"},  # changed
        {"From": "whatsapp:+6281111111111", "WaId": "6281111111111"},  # other citizen
    ],
)
def test_verify_rejects_params_changed_after_signing(
    ch: TwilioWhatsApp, tamper: dict[str, str | None]
) -> None:
    """Every parameter is signed: adding, removing or changing one breaks the signature."""
    _, form = load_form("text")
    sig = sign(URL, form)
    with pytest.raises(SignatureError, match="does not match"):
        ch.verify(make_request(replaced(form, **tamper), signature=sig))


def test_verify_accepts_unknown_params_twilio_adds(ch: TwilioWhatsApp) -> None:
    """Fields unknown to the hub are still signed and verified (no whitelist)."""
    _, form = load_form("text")
    form = [*form, ("SomeFieldTwilioAddsTomorrow", "42")]
    ch.verify(make_request(form))
    assert ch.parse(make_request(form), 1.0).messages


def test_verify_accepts_repeated_keys_signed_by_twilio(ch: TwilioWhatsApp) -> None:
    """A correctly signed request with a repeated key verifies, then parse refuses it (400)."""
    form = [*text_form(), ("Body", "kedua")]
    req = make_request(form)
    ch.verify(req)
    with pytest.raises(PayloadError, match="Body given more than once"):
        ch.parse(req, 1.0)


def test_verify_rejects_forged_request_with_repeated_keys(ch: TwilioWhatsApp) -> None:
    """A repeated key smuggled next to a signed request is a SignatureError, not a crash."""
    form = text_form()
    sig = sign(URL, form)
    with pytest.raises(SignatureError):
        ch.verify(make_request([*form, ("Body", "tambahan")], signature=sig))


def test_parse_refuses_repeated_keys(ch: TwilioWhatsApp) -> None:
    """Parsing a form with a key given twice is a PayloadError naming the key."""
    form = [*text_form(), ("Body", "kedua")]
    with pytest.raises(PayloadError, match="Body given more than once"):
        ch.parse(make_request(form, signature="x"), 1.0)
    with pytest.raises(PayloadError, match="repeated"):
        ch.parse_status(make_request([*load_form("status_read")[1], ("MessageStatus", "x")]))


def test_verify_checks_body_hash_for_json_requests(ch: TwilioWhatsApp) -> None:
    """Twilio's JSON webhooks (bodySHA256 in the URL) verify only with the body they hash."""
    body = b'{"MessageSid":"SM' + b"e" * 32 + b'"}'
    url = f"{URL}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    sig = str(RequestValidator(TOKEN1).compute_signature(url, {}))
    ok = InboundRequest(url, {"x-twilio-signature": sig}, body, (), "application/json")
    ch.verify(ok)
    tampered = InboundRequest(url, ok.headers, body.replace(b"SM", b"MM"), (), "application/json")
    with pytest.raises(SignatureError):
        ch.verify(tampered)


# -- recorded payloads -------------------------------------------------------------------

# fixture: kind, text, phone, display name, attachments (content type, media sid), location,
# meta values for the keys the channel owns.
EXPECTED: dict[str, dict[str, Any]] = {
    "text": {
        "kind": "text",
        "text": "Selamat siang, THR saya tahun ini belum dibayar oleh perusahaan. "
        "Bagaimana cara melapor? Terima kasih 🙏",
        "phone": "+6281234567890",
        "name": "Siti Rahayu",
    },
    "image": {
        "kind": "media",
        "text": "Ini slip gaji saya bulan Mei, upah saya di bawah UMP Jawa Barat",
        "phone": "+6285712345678",
        "name": "Budi Santoso",
        "attachments": [
            (
                "image/jpeg",
                "MM1b2c3d4e5f60718293a4b5c6d7e8f90a",
                "ME0c1d2e3f405162738495a6b7c8d9e0f1",
            )
        ],
    },
    "two_media": {
        "kind": "media",
        "text": "Surat PHK dan perjanjian kerja saya, mohon dicek",
        "phone": "+6281398765432",
        "name": "Dewi Lestari",
        "attachments": [
            (
                "application/pdf",
                "MM2c3d4e5f60718293a4b5c6d7e8f90a1b",
                "ME1d2e3f405162738495a6b7c8d9e0f1a2",
            ),
            (
                "image/jpeg",
                "MM2c3d4e5f60718293a4b5c6d7e8f90a1b",
                "ME2e3f405162738495a6b7c8d9e0f1a2b3",
            ),
        ],
    },
    "voice_note": {
        "kind": "media",
        "text": "",
        "phone": "+6287812345678",
        "name": "Pak Joko",
        "attachments": [
            (
                "audio/ogg",
                "MM3d4e5f60718293a4b5c6d7e8f90a1b2c",
                "ME3f405162738495a6b7c8d9e0f1a2b3c4",
            )
        ],
    },
    "location": {
        "kind": "location",
        "text": "",
        "phone": "+6281122334455",
        "name": "Agus Salim",
        "location": Location(
            latitude=-6.2297419,
            longitude=106.8295279,
            address="Jl. Jend. Gatot Subroto Kav. 51, Kuningan Barat, Jakarta Selatan",
            label="Kementerian Ketenagakerjaan RI",
        ),
    },
    "button_reply": {
        "kind": "button",
        "text": "Ya, masalah sudah selesai",
        "phone": "+6281234567890",
        "name": "Siti Rahayu",
        "meta": {"button_payload": "tiket_selesai", "replied_to": REPLIED},
    },
    "list_reply": {
        "kind": "interactive",
        "text": "Pemutusan Hubungan Kerja",
        "phone": "+6282112345678",
        "name": "Rina Wulandari",
        "meta": {"replied_to": REPLIED, "list_id": "topik_phk"},
    },
    "reply_to": {
        "kind": "text",
        "text": "Untuk tiket KMN-2026-000123: perusahaan masih belum membayar pesangon PHK saya",
        "phone": "+6281234567890",
        "name": "Siti Rahayu",
        "meta": {"replied_to": REPLIED},
    },
    "referral": {
        "kind": "text",
        "text": "Halo, saya lihat iklan layanan pengaduan. Upah lembur saya tidak dibayar.",
        "phone": "+6281512345678",
        "name": "Hendra Gunawan",
        "meta": {"referral_url": "https://fb.me/3kMnKrPgD"},
    },
}
STATUS_EXPECTED = {
    "status_delivered": ("SM9a0b1c2d3e4f5061728394a5b6c7d8e9", DeliveryState.DELIVERED, ""),
    "status_read": ("SM9a0b1c2d3e4f5061728394a5b6c7d8e9", DeliveryState.READ, ""),
    "status_failed": ("SMab0c1d2e3f405162738495a6b7c8d9e0", DeliveryState.FAILED, "63016"),
}
OWNED_META = ("button_payload", "replied_to", "referral_url")


def test_every_fixture_file_is_covered() -> None:
    """Each recorded payload in tests/fixtures/whatsapp has an expectation here."""
    names = {p.stem for p in FIXTURES.glob("*.form")}
    assert names == set(EXPECTED) | set(STATUS_EXPECTED)


@pytest.mark.parametrize("name", sorted(set(EXPECTED) | set(STATUS_EXPECTED)))
def test_fixture_looks_like_twilio(name: str) -> None:
    """Recorded payloads carry Twilio's field set: our AccountSid and sender, 34-char SIDs."""
    _, form = load_form(name)
    f = dict(form)
    assert len(f) == len(form)  # no key twice
    assert f["AccountSid"] == SID1
    assert f["ApiVersion"] == "2010-04-01"
    assert f["MessageSid"] == f["SmsSid"]
    assert len(f["MessageSid"]) == 34
    assert f["MessageSid"][:2] in ("SM", "MM")
    ours = "whatsapp:+628119521150"
    if name.startswith("status"):
        assert f["From"] == ours
        assert f["MessageStatus"] == f["SmsStatus"]
    else:
        assert f["To"] == ours
        assert f["From"] == "whatsapp:+" + f["WaId"]
        assert f["SmsMessageSid"] == f["MessageSid"]
        assert f["SmsStatus"] == "received"
        assert int(f["NumMedia"]) == sum(1 for k in f if k.startswith("MediaUrl"))
        meta = json.loads(f["ChannelMetadata"])
        assert meta["data"]["context"]["WaId"] == f["WaId"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_normalized_message(ch: TwilioWhatsApp, name: str) -> None:
    """Each recorded inbound payload becomes the expected normalized Message."""
    body, form = load_form(name)
    exp = EXPECTED[name]
    req = make_request(form, body=body)
    ch.verify(req)
    parsed = ch.parse(req, 1_780_000_000.5)
    assert parsed.statuses == []
    [m] = parsed.messages
    f = dict(form)
    assert (m.channel, m.account, m.provider_id) == ("whatsapp", "wa1", f["MessageSid"])
    assert m.kind == exp["kind"]
    assert m.text == exp["text"]
    assert m.sender == "phone:" + exp["phone"]
    assert m.reply_address == exp["phone"]
    assert m.display_name == exp["name"]
    assert m.received_at == 1_780_000_000.5
    assert len(m.id) == 20
    got_att = [(a.content_type, a.url) for a in m.attachments]
    want_att = [(ct, f"{MEDIA_BASE}{msg}/Media/{me}") for ct, msg, me in exp.get("attachments", [])]
    assert got_att == want_att
    assert m.location == exp.get("location")
    assert m.meta["to"] == "whatsapp:+628119521150"
    for key in OWNED_META:
        assert m.meta.get(key) == exp.get("meta", {}).get(key), key
    assert m.raw == body.decode("utf-8")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parsed_message_survives_json_round_trip(ch: TwilioWhatsApp, name: str) -> None:
    """What the webhook puts on the stream reads back as the same Message."""
    body, form = load_form(name)
    [m] = ch.parse(make_request(form, body=body), 1_780_000_000.0).messages
    assert Message.from_json(m.to_json()) == m


def test_list_reply_keeps_the_chosen_item_id(ch: TwilioWhatsApp) -> None:
    """The id of the chosen list item reaches meta, as ButtonPayload does for buttons."""
    body, form = load_form("list_reply")
    [m] = ch.parse(make_request(form, body=body), 1.0).messages
    assert "topik_phk" in m.meta.values()


@pytest.mark.parametrize("name", sorted(STATUS_EXPECTED))
def test_status_fixture_parses_to_delivery_state(ch: TwilioWhatsApp, name: str) -> None:
    """Each recorded status callback maps to its DeliveryState, with Twilio's error code."""
    body, form = load_form(name)
    sid, state, code = STATUS_EXPECTED[name]
    req = make_request(form, url=STATUS_URL, body=body)
    ch.verify(req)
    update = ch.parse_status(req)
    assert (update.channel, update.account, update.provider_id) == ("whatsapp", "wa1", sid)
    assert update.state is state
    assert update.error_code == code
    # A status callback configured on the inbound URL is recognized there too.
    assert ch.parse(req, 1.0).statuses == [update]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("accepted", DeliveryState.QUEUED),
        ("queued", DeliveryState.QUEUED),
        ("sending", DeliveryState.SENDING),
        ("sent", DeliveryState.SENT),
        ("undelivered", DeliveryState.UNDELIVERED),
        ("canceled", DeliveryState.FAILED),
        ("DELIVERED", DeliveryState.DELIVERED),
    ],
)
def test_status_values_map_to_states(ch: TwilioWhatsApp, status: str, state: DeliveryState) -> None:
    """Every Twilio MessageStatus maps to a hub DeliveryState, case-insensitively."""
    _, form = load_form("status_delivered")
    form = replaced(form, MessageStatus=status, SmsStatus=status)
    assert ch.parse_status(make_request(form)).state is state


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"MessageSid": None, "SmsSid": None}, "MessageSid is missing"),
        ({"MessageStatus": "exploded", "SmsStatus": "exploded"}, "unknown MessageStatus"),
    ],
)
def test_malformed_status_is_payload_error(
    ch: TwilioWhatsApp, changes: dict[str, str | None], reason: str
) -> None:
    """A status callback without a SID or with an unknown status is refused with a reason."""
    _, form = load_form("status_failed")
    with pytest.raises(PayloadError, match=reason):
        ch.parse_status(make_request(replaced(form, **changes)))


def test_sender_falls_back_to_from_without_waid(ch: TwilioWhatsApp) -> None:
    """Without WaId the sender comes from From, still normalized to E.164."""
    form = text_form(WaId=None, From="whatsapp:+62 812-3456-7890")
    [m] = ch.parse(make_request(form), 1.0).messages
    assert (m.sender, m.reply_address) == ("phone:+6281234567890", "+6281234567890")


def test_profile_name_is_bounded(ch: TwilioWhatsApp) -> None:
    """An oversized ProfileName is cut to 200 characters."""
    [m] = ch.parse(make_request(text_form(ProfileName="x" * 1000)), 1.0).messages
    assert m.display_name == "x" * 200


MALFORMED = [
    ({"From": None}, "From is missing"),
    ({"MessageSid": None, "SmsMessageSid": None, "SmsSid": None}, "MessageSid is missing"),
    ({"WaId": "12", "From": "whatsapp:+12"}, "From is not a usable phone number"),
    ({"NumMedia": "abc"}, "NumMedia is not a number"),
    ({"NumMedia": "-1"}, "NumMedia is not a number"),
    ({"NumMedia": "11"}, "NumMedia 11 is above 10"),
    ({"NumMedia": "2", "MediaUrl0": "https://api.twilio.com/m0"}, "MediaUrl1 is missing"),
    ({"Latitude": "-6.2297419"}, "Latitude and Longitude must both be numbers"),
    ({"Latitude": "utara", "Longitude": "106.8"}, "Latitude and Longitude must both be numbers"),
]


@pytest.mark.parametrize(("changes", "reason"), MALFORMED)
def test_malformed_message_is_payload_error(
    ch: TwilioWhatsApp, changes: dict[str, str | None], reason: str
) -> None:
    """A verified but malformed message is a PayloadError whose text says what is wrong."""
    with pytest.raises(PayloadError, match=reason):
        ch.parse(make_request(text_form(**changes)), 1.0)


def test_non_form_body_is_payload_error(ch: TwilioWhatsApp) -> None:
    """Only application/x-www-form-urlencoded bodies are parsed."""
    with pytest.raises(PayloadError, match="x-www-form-urlencoded"):
        ch.parse(make_request(text_form(), content_type="application/json"), 1.0)


def test_non_ascii_digit_num_media_is_payload_error(ch: TwilioWhatsApp) -> None:
    """NumMedia made of a Unicode 'digit' int() cannot read is a PayloadError, not a crash."""
    with pytest.raises(PayloadError, match="NumMedia"):
        ch.parse(make_request(text_form(NumMedia="²")), 1.0)


# -- the real HTTP endpoint -------------------------------------------------------------


def _path(account: str = "wa1", status: bool = False) -> str:
    return f"/webhooks/whatsapp/{account}" + ("/status" if status else "")


async def test_http_accepts_signed_message(harness: HubHarness) -> None:
    """A signed message gets 200 with empty TwiML and lands on the inbound stream."""
    status, text = await harness.post_whatsapp(inbound_params("Upah saya dipotong sepihak"))
    assert status == 200, text
    assert "<Response></Response>" in text
    assert await harness.drain_inbound() == 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_http_accepts_every_recorded_message(harness: HubHarness, name: str) -> None:
    """Every recorded inbound payload, signed, is accepted by the endpoint."""
    _, form = load_form(name)
    status, text = await harness.post_whatsapp(dict(form))
    assert status == 200, text
    assert await harness.drain_inbound() == 1


@pytest.mark.parametrize("name", sorted(STATUS_EXPECTED))
async def test_http_accepts_every_recorded_status(harness: HubHarness, name: str) -> None:
    """Every recorded status callback, signed for the status path, gets 204."""
    _, form = load_form(name)
    status, text = await harness.post_whatsapp(dict(form), path=_path(status=True))
    assert status == 204, text


async def _refused(harness: HubHarness, status: int, text: str, code: str) -> dict[str, Any]:
    assert status != 200
    body: dict[str, Any] = json.loads(text)
    assert body["error"] == code, body
    assert await harness.drain_inbound() == 0  # nothing reached the stream
    return body


async def test_http_forged_signature_is_403(harness: HubHarness) -> None:
    """A message signed with another token gets 403 and is not stored."""
    params = inbound_params()
    forged = str(
        RequestValidator("not-the-token").compute_signature(harness.base + _path(), params)
    )
    status, text = await harness.post_whatsapp(params, signature=forged)
    assert status == 403
    await _refused(harness, status, text, "bad_signature")


async def test_http_other_accounts_signature_is_403(harness: HubHarness) -> None:
    """wa2's genuine signature does not open wa1's endpoint."""
    params = inbound_params()
    sig = harness.sign(_path(), params, account="wa2")
    status, text = await harness.post_whatsapp(params, signature=sig)
    assert status == 403
    await _refused(harness, status, text, "bad_signature")


async def test_http_missing_signature_is_403(harness: HubHarness) -> None:
    """A message without X-Twilio-Signature gets 403 saying the header is missing."""
    status, text = await harness.post_whatsapp(inbound_params(), signature="")
    assert status == 403
    body = await _refused(harness, status, text, "bad_signature")
    assert "missing" in body["message"]


@pytest.mark.parametrize(
    "signed_for",
    [
        "https://evil.example.com/webhooks/whatsapp/wa1",
        "{base}/webhooks/whatsapp/wa1/status",
        "{base}/webhooks/whatsapp/wa2",
    ],
)
async def test_http_signature_for_another_url_is_403(harness: HubHarness, signed_for: str) -> None:
    """A signature made for another host or path is refused on the message endpoint."""
    params = inbound_params()
    url = signed_for.format(base=harness.base)
    sig = str(RequestValidator(TOKEN1).compute_signature(url, params))
    status, text = await harness.post_whatsapp(params, signature=sig)
    assert status == 403
    await _refused(harness, status, text, "bad_signature")


async def test_http_param_added_after_signing_is_403(harness: HubHarness) -> None:
    """A parameter appended to a genuinely signed request gets 403."""
    params = inbound_params()
    sig = harness.sign(_path(), params)
    status, text = await harness.post_whatsapp({**params, "ButtonPayload": "tutup"}, signature=sig)
    assert status == 403
    await _refused(harness, status, text, "bad_signature")


async def test_http_unknown_account_is_404(harness: HubHarness) -> None:
    """A webhook for an account this hub does not have gets 404 naming it."""
    status, text = await harness.post_whatsapp(inbound_params(), account="nope", signature="x")
    assert status == 404
    body = await _refused(harness, status, text, "unknown_account")
    assert "nope" in body["message"]


@pytest.mark.parametrize(("changes", "reason"), MALFORMED[:1] + MALFORMED[3:4] + MALFORMED[7:8])
async def test_http_malformed_is_400_with_reason(
    harness: HubHarness, changes: dict[str, str | None], reason: str
) -> None:
    """A signed but malformed message gets 400 whose message says what is wrong."""
    params = dict(text_form(**changes))
    status, text = await harness.post_whatsapp(params)
    assert status == 400
    body = await _refused(harness, status, text, "malformed_payload")
    assert reason in body["message"]


async def _post_form(harness: HubHarness, form: Form, sig: str) -> tuple[int, str]:
    assert harness.session is not None
    async with harness.session.post(
        harness.base + _path(),
        data=urlencode(form),
        headers={"X-Twilio-Signature": sig, "Content-Type": FORM},
    ) as r:
        return r.status, await r.text()


@pytest.mark.parametrize(("forged", "expected"), [(False, 400), (True, 403)])
async def test_http_repeated_keys_are_refused_not_500(
    harness: HubHarness, forged: bool, expected: int
) -> None:
    """A form repeating a key gets 400 when signed and 403 when forged, never 500."""
    form = [*text_form(), ("Body", "kedua")]
    sig = sign(harness.base + _path(), form if not forged else text_form())
    status, text = await _post_form(harness, form, sig)
    assert status == expected, text


async def test_http_body_above_limit_is_413(
    settings_for: Callable[..., Settings], fake_twilio: FakeTwilio
) -> None:
    """With max_body_bytes=2048 a 2048-byte body is accepted and a 2049-byte one gets 413."""
    h = HubHarness(settings_for(hub__max_body_bytes=2048), fake_twilio)
    await h.start(workers=False)
    try:
        params = inbound_params(body="")
        params["Body"] = "a" * (2048 - len(urlencode(params)))
        assert len(urlencode(params)) == 2048
        status, text = await h.post_whatsapp(params)
        assert status == 200, text
        params["Body"] += "a"
        status, text = await h.post_whatsapp(params)
        assert status == 413, text
        assert json.loads(text)["error"] == "payload_too_large"
        assert await h.drain_inbound() == 1
    finally:
        await h.stop()


# -- sending ----------------------------------------------------------------------------


@pytest.fixture
async def make_channel(
    fake_twilio: FakeTwilio, tmp_path: Path
) -> AsyncIterator[Callable[..., TwilioWhatsApp]]:
    """Builds wa1 channels against the fake Twilio; closes them after the test."""
    made: list[TwilioWhatsApp] = []

    def build(send_timeout_s: float = 5.0, api_base_url: str | None = None) -> TwilioWhatsApp:
        s = make_settings(UNUSED_REDIS, fake_twilio.base_url, tmp_path)
        acct = s.channels.whatsapp.accounts["wa1"]
        if api_base_url is not None:
            acct = acct.model_copy(update={"api_base_url": api_base_url})
        fake_twilio.accounts[acct.account_sid] = acct.auth_token.get_secret_value()
        channel = TwilioWhatsApp("wa1", acct, send_timeout_s=send_timeout_s)
        made.append(channel)
        return channel

    yield build
    for channel in made:
        await channel.aclose()


def reply(**over: Any) -> OutboundReply:
    fields: dict[str, Any] = {
        "reply_id": "r1",
        "ticket_id": "c1:t1",
        "channel": "whatsapp",
        "account": "wa1",
        "to": "+6281234567890",
        "text": "Pengaduan Anda sudah kami terima dengan nomor tiket KMN-2026-000123.",
        "status_callback_url": "https://hub.kemnaker.go.id/webhooks/whatsapp/wa1/status",
    }
    fields.update(over)
    return OutboundReply(**fields)


async def test_send_text(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """Free text goes out with To, From, Body and StatusCallback; queued counts as sent."""
    result = await make_channel().send(reply())
    [sent] = fake_twilio.sent
    assert result == DeliveryResult(accepted=True, provider_id=sent.sid, state=DeliveryState.SENT)
    assert sent.account_sid == SID1
    assert sent.params == {
        "To": "whatsapp:+6281234567890",
        "From": "whatsapp:+628119521150",
        "Body": "Pengaduan Anda sudah kami terima dengan nomor tiket KMN-2026-000123.",
        "StatusCallback": "https://hub.kemnaker.go.id/webhooks/whatsapp/wa1/status",
    }


async def test_send_without_callback_url_sends_no_status_callback(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """No status_callback_url means no StatusCallback parameter at all."""
    await make_channel().send(reply(status_callback_url=""))
    assert "StatusCallback" not in fake_twilio.sent[0].params


async def test_send_template(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """A template goes out as ContentSid and JSON ContentVariables, with no Body."""
    tpl = Template("follow_up", "HX" + "a" * 32, {"1": "KMN-2026-000123"})
    result = await make_channel().send(reply(text="", template=tpl))
    assert result.accepted
    [sent] = fake_twilio.sent
    assert sent.params["ContentSid"] == "HX" + "a" * 32
    assert json.loads(sent.params["ContentVariables"]) == {"1": "KMN-2026-000123"}
    assert "Body" not in sent.params
    assert sent.params["To"] == "whatsapp:+6281234567890"


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_send_5xx_is_transient(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio, status: int
) -> None:
    """A provider 5xx raises TransientSendError carrying the status as its code."""
    fake_twilio.script.append(Scripted(status=status, code=20500, message="Internal error"))
    with pytest.raises(TransientSendError) as info:
        await make_channel().send(reply())
    assert info.value.code == str(status)
    assert len(fake_twilio.requests) == 1
    assert fake_twilio.sent == []


async def test_send_429_carries_retry_after(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """429 with Retry-After: 7 raises TransientSendError with retry_after == 7."""
    fake_twilio.script.append(
        Scripted(status=429, code=20429, message="Too Many Requests", headers={"Retry-After": "7"})
    )
    with pytest.raises(TransientSendError) as info:
        await make_channel().send(reply())
    assert info.value.retry_after == 7
    assert info.value.code == "429"


async def test_send_429_without_retry_after(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """429 without (or with an unreadable) Retry-After leaves the backoff to the sender."""
    fake_twilio.script.append(Scripted(status=429, code=20429))
    fake_twilio.script.append(Scripted(status=429, code=20429, headers={"Retry-After": "soon"}))
    channel = make_channel()
    for _ in range(2):
        with pytest.raises(TransientSendError) as info:
            await channel.send(reply())
        assert info.value.retry_after is None


async def test_send_refusal_is_a_result(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """400 with Twilio code 21211 is a final refusal: accepted=False, error_code "21211"."""
    fake_twilio.script.append(Scripted(status=400, code=21211, message="Invalid 'To' Phone Number"))
    result = await make_channel().send(reply())
    assert result.accepted is False
    assert result.state is DeliveryState.FAILED
    assert result.error_code == "21211"
    assert "Invalid 'To' Phone Number" in result.error_message


async def test_send_with_wrong_credentials_is_refused(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """Twilio's 401 (20003) for a wrong token is a refusal with that code, not a retry."""
    channel = make_channel()
    fake_twilio.accounts[SID1] = "rotated-token-elsewhere"
    result = await channel.send(reply())
    assert (result.accepted, result.error_code) == (False, "20003")


async def test_send_hang_is_transient(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """A provider that does not answer within send_timeout_s raises TransientSendError."""
    fake_twilio.script.append(Scripted(hang_s=0.6))
    with pytest.raises(TransientSendError, match="timed out"):
        await make_channel(send_timeout_s=0.2).send(reply())
    assert len(fake_twilio.requests) == 1


async def test_send_connection_refused_is_transient(
    make_channel: Callable[..., TwilioWhatsApp],
) -> None:
    """An API base URL nobody listens on raises TransientSendError, not a crash."""
    channel = make_channel(api_base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientSendError, match="connection failed"):
        await channel.send(reply())


async def test_send_works_again_after_aclose(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """aclose releases the HTTP session; a later send opens a new one."""
    channel = make_channel()
    assert (await channel.send(reply())).accepted
    await channel.aclose()
    assert (await channel.send(reply(reply_id="r2"))).accepted
    assert len(fake_twilio.sent) == 2


async def test_repr_never_shows_auth_token(
    make_channel: Callable[..., TwilioWhatsApp], fake_twilio: FakeTwilio
) -> None:
    """Neither the channel's repr/str nor its settings' repr contain the auth token."""
    channel = make_channel()
    await channel.send(reply())  # the SDK client now exists too
    for text in (repr(channel), str(channel), f"{channel!r}", repr(channel._settings)):
        assert TOKEN1 not in text
    assert "wa1" in repr(channel)
