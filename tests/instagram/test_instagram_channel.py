"""The Instagram DM channel against recorded webhooks and the fake Graph API on loopback."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

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
from channels.instagram import MAX_TEXT, InstagramChannel, split_text
from channels.meta import sign_body
from hub.demo.fake_graph import FakeGraph, Scripted, WebhookTarget
from hub.demo.local_server import LocalServer
from hub.model import DeliveryState, Message, OutboundReply, Template
from hub.settings import InstagramAccount

FIXTURES = Path(__file__).parent.parent / "fixtures" / "instagram"
TOKEN = "IGAAtest-access-token-0123456789"
APP_SECRET = "app-secret-0123456789abcdef"
VERIFY_TOKEN = "verify-token-kemnaker"
IG = "17841412345678901"
SIBLING = "17841498765432109"
CITIZEN = "1254459154682919"
CITIZEN2 = "7009876543210987"
MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj"
NOW = 1751000900.0
URL = "https://hub.example/webhooks/instagram/ppid"


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def all_fixtures() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def request(body: bytes, signature: str | None = "sign") -> InboundRequest:
    headers = {"content-type": "application/json"}
    if signature == "sign":
        headers["x-hub-signature-256"] = sign_body(APP_SECRET, body)
    elif signature is not None:
        headers["x-hub-signature-256"] = signature
    return InboundRequest(url=URL, headers=headers, body=body, content_type="application/json")


def account(base: str = "https://graph.facebook.com", token: str = TOKEN) -> InstagramAccount:
    return InstagramAccount.model_validate(
        {
            "access_token": token,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base_url": base,
            "ig_account_id": IG,
            "username": "ppid.kemnaker",
        }
    )


def parse(channel: InstagramChannel, name: str) -> ParsedInbound:
    return channel.parse(request(fixture(name)), NOW)


def one(channel: InstagramChannel, name: str) -> Message:
    parsed = parse(channel, name)
    assert parsed.statuses == []
    (m,) = parsed.messages
    return m


def reply(
    text: str = "Terima kasih, laporan Anda kami terima.",
    to: str = CITIZEN,
    **extra: Any,
) -> OutboundReply:
    return OutboundReply(
        reply_id="r1",
        ticket_id="t1",
        channel="instagram",
        account="ppid",
        to=to,
        text=text,
        **extra,
    )


def assert_split_of(parts: list[str], text: str) -> None:
    """The parts are the text, in order, minus only whitespace where it was cut."""
    pos = 0
    for part in parts:
        assert 0 < len(part) <= MAX_TEXT
        while pos < len(text) and text[pos].isspace() and not text.startswith(part, pos):
            pos += 1
        assert text.startswith(part, pos), f"part not found at {pos}: {part[:40]!r}"
        pos += len(part)
    assert text[pos:].strip() == ""


@pytest.fixture
def channel() -> InstagramChannel:
    return InstagramChannel("ppid", account())


@pytest.fixture
async def fake() -> AsyncIterator[FakeGraph]:
    f = FakeGraph(tokens={TOKEN})
    await f.start(0)
    yield f
    await f.stop()


@pytest.fixture
async def live(fake: FakeGraph) -> AsyncIterator[InstagramChannel]:
    ch = InstagramChannel("ppid", account(fake.base_url), send_timeout_s=0.5)
    yield ch
    await ch.aclose()


# -- protocol, settings, secrets -------------------------------------------------------


def test_is_a_channel_with_a_handshake(channel: InstagramChannel) -> None:
    assert isinstance(channel, Channel)
    assert isinstance(channel, SubscriptionHandshake)
    assert not isinstance(channel, MediaSource)
    assert channel.name == "instagram"
    assert channel.provider == "meta"
    assert channel.account == "ppid"
    assert channel.recipient_ids == (IG,)
    w = channel.window
    assert (w.free_text_hours, w.human_agent_hours) == (24.0, 168.0)
    assert w.template_required_outside is False
    assert w.attachments is False


async def test_repr_holds_no_secret(live: InstagramChannel) -> None:
    await live.send(reply())  # the Graph client exists now
    for text in (repr(live), str(live), repr(live.settings), repr(live._graph)):
        for secret in (TOKEN, APP_SECRET, VERIFY_TOKEN):
            assert secret not in text
    assert "ppid" in repr(live)
    assert IG in repr(live)


# -- handshake and signature ------------------------------------------------------------


def test_handshake_answers_the_challenge(channel: InstagramChannel) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "11582"}
    assert channel.verify_subscription(params) == "11582"


def test_handshake_with_a_wrong_token_is_refused(channel: InstagramChannel) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "11582"}
    with pytest.raises(SignatureError):
        channel.verify_subscription(params)


@pytest.mark.parametrize("mode", ["", "unsubscribe", "SUBSCRIBE"])
def test_handshake_with_a_wrong_mode_is_not_a_handshake(
    channel: InstagramChannel, mode: str
) -> None:
    params = {"hub.mode": mode, "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "11582"}
    with pytest.raises(PayloadError):
        channel.verify_subscription(params)


def test_correct_signature_passes(channel: InstagramChannel) -> None:
    for name in all_fixtures():
        channel.verify(request(fixture(name)))


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        sign_body("another-app-secret", fixture("text")),
        sign_body(APP_SECRET, fixture("text")).replace("sha256=", "sha1="),
        "sha256=",
    ],
)
def test_missing_or_forged_signature_is_refused(
    channel: InstagramChannel, signature: str | None
) -> None:
    with pytest.raises(SignatureError):
        channel.verify(request(fixture("text"), signature=signature))


def test_re_serialized_json_does_not_match(channel: InstagramChannel) -> None:
    body = fixture("text")
    signature = sign_body(APP_SECRET, body)
    same_data = json.dumps(json.loads(body), ensure_ascii=False).encode()
    assert json.loads(same_data) == json.loads(body)
    with pytest.raises(SignatureError):
        channel.verify(request(same_data, signature=signature))


# -- parse: citizen messages -------------------------------------------------------------


def test_text(channel: InstagramChannel) -> None:
    body = fixture("text")
    m = one(channel, "text")
    assert m.channel == "instagram"
    assert m.account == "ppid"
    assert m.provider_id == MID + "TXT001"
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.reply_address == CITIZEN
    assert m.kind == "text"
    assert m.text == "Selamat pagi admin, saya mau tanya pencairan JHT saya belum masuk \U0001f64f"
    assert m.attachments == ()
    assert m.meta == {"recipient_id": IG}
    assert m.received_at == NOW
    assert m.provider_ts == pytest.approx(1751000000.0)
    assert m.raw == body.decode()
    assert m.id[:10] == Message.from_json(m.to_json()).id[:10]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("image", "image/jpeg"),
        ("video", "video/mp4"),
        ("audio", "audio/mp4"),
        ("file", "application/octet-stream"),
    ],
)
def test_media(channel: InstagramChannel, name: str, content_type: str) -> None:
    m = one(channel, name)
    assert m.kind == "media"
    assert m.text == ""
    assert m.meta["instagram_type"] == name
    (a,) = m.attachments
    assert a.content_type == content_type
    assert a.url.startswith("https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=")
    assert m.provider_id == MID + name.upper() + "01"


@pytest.mark.parametrize("name", ["share", "ig_reel"])
def test_shares_carry_the_link(channel: InstagramChannel, name: str) -> None:
    m = one(channel, name)
    assert m.kind == "share"
    assert m.meta["instagram_type"] == name
    (a,) = m.attachments
    assert a.content_type == "text/uri-list"
    assert a.url.startswith("https://lookaside.fbsbx.com/")


def test_reel_title_is_kept(channel: InstagramChannel) -> None:
    assert one(channel, "ig_reel").meta["share_title"] == "Info lowongan kerja Kemnaker #karirhub"


def test_story_mention(channel: InstagramChannel) -> None:
    m = one(channel, "story_mention")
    assert m.kind == "story_mention"
    assert m.meta["instagram_type"] == "story_mention"
    (a,) = m.attachments
    assert "asset_id=18067890123456789" in a.url


def test_story_reply_keeps_the_text_and_names_the_story(channel: InstagramChannel) -> None:
    m = one(channel, "story_reply")
    assert m.kind == "text"
    assert m.text == "Kapan pendaftaran pelatihan vokasi dibuka lagi?"
    assert m.meta["story_id"] == "18078901234567890"
    assert "asset_id=18078901234567890" in m.meta["story_url"]
    assert "replied_to" not in m.meta


def test_reply_to_a_message(channel: InstagramChannel) -> None:
    m = one(channel, "reply_to")
    assert m.kind == "text"
    assert m.meta["replied_to"] == MID + "OURS0001"
    assert m.text == "Nomor tiketnya yang ini ya"


def test_quick_reply_is_a_button(channel: InstagramChannel) -> None:
    m = one(channel, "quick_reply")
    assert m.kind == "button"
    assert m.text == "Pengaduan upah"
    assert m.meta["button_payload"] == "TOPIC_UPAH"
    assert m.provider_id == MID + "QR01"


def test_postback_is_a_button(channel: InstagramChannel) -> None:
    m = one(channel, "postback")
    assert m.kind == "button"
    assert m.text == "Cek status tiket"
    assert m.meta["button_payload"] == "CHECK_TICKET"
    assert m.provider_id == MID + "PB01"
    assert m.sender == f"instagram:{CITIZEN}"


def test_postback_without_mid_gets_a_stable_id(channel: InstagramChannel) -> None:
    data = json.loads(fixture("postback"))
    del data["entry"][0]["messaging"][0]["postback"]["mid"]
    body = json.dumps(data).encode()
    (a,) = channel.parse(request(body), NOW).messages
    (b,) = channel.parse(request(body), NOW + 60).messages
    assert a.provider_id == b.provider_id == f"postback:{CITIZEN}:1751000008000"


def test_standalone_referral(channel: InstagramChannel) -> None:
    m = one(channel, "referral")
    assert m.kind == "referral"
    assert m.text == ""
    assert m.provider_id == f"referral:{CITIZEN}:1751000009000"
    assert m.meta["referral_ref"] == "kampanye_jht_2025"
    assert m.meta["referral_source"] == "IGME_SOURCE_LINK"
    assert m.meta["recipient_id"] == IG


def test_referral_on_a_message(channel: InstagramChannel) -> None:
    m = one(channel, "message_referral")
    assert m.kind == "text"
    assert m.text == "Halo, saya lihat iklan pelatihan gratis"
    assert m.meta["referral_ref"] == "iklan_pelatihan"
    assert m.meta["referral_source"] == "ADS"
    assert m.meta["referral_ad_id"] == "120212345678900001"


def test_unsupported(channel: InstagramChannel) -> None:
    m = one(channel, "unsupported")
    assert m.kind == "unsupported"
    assert m.text == ""
    assert m.meta["instagram_type"] == "unsupported"
    assert m.provider_id == MID + "UNSUP01"


def test_unknown_attachment_type_is_unsupported_and_named(channel: InstagramChannel) -> None:
    data = json.loads(fixture("image"))
    data["entry"][0]["messaging"][0]["message"]["attachments"] = [{"type": "like_heart"}]
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.kind == "unsupported"
    assert m.meta["instagram_type"] == "like_heart"
    assert m.attachments == ()


# -- parse: reactions, reads, echoes, retractions ----------------------------------------------


def test_reaction(channel: InstagramChannel) -> None:
    m = one(channel, "reaction")
    assert m.kind == "reaction"
    assert m.text == "\u2764\ufe0f"
    assert m.meta["reacted_to"] == MID + "OURS0001"
    assert m.meta["action"] == "react"
    assert m.meta["reaction"] == "love"
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.provider_id == f"reaction:{MID}OURS0001:1751000010000"


def test_unreaction(channel: InstagramChannel) -> None:
    m = one(channel, "unreaction")
    assert m.kind == "reaction"
    assert m.text == ""
    assert m.meta["action"] == "unreact"
    assert m.meta["reacted_to"] == MID + "OURS0001"
    assert m.provider_id != one(channel, "reaction").provider_id


def test_a_reaction_by_the_business_is_not_a_citizens(channel: InstagramChannel) -> None:
    data = json.loads(fixture("reaction"))
    event = data["entry"][0]["messaging"][0]
    event["sender"], event["recipient"] = {"id": IG}, {"id": CITIZEN}
    parsed = channel.parse(request(json.dumps(data).encode()), NOW)
    assert parsed.messages == []
    assert parsed.statuses == []


def test_read_is_a_status_of_our_message(channel: InstagramChannel) -> None:
    parsed = parse(channel, "read")
    assert parsed.messages == []
    (s,) = parsed.statuses
    assert (s.channel, s.account, s.provider_id) == ("instagram", "ppid", MID + "OURS0001")
    assert s.state is DeliveryState.READ


def test_echo_of_text_is_never_the_business_as_sender(channel: InstagramChannel) -> None:
    m = one(channel, "echo_text")
    assert m.kind == "echo"
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.reply_address == CITIZEN
    assert m.provider_id == MID + "ECHO01"
    assert m.text.startswith("Terima kasih, laporan Anda kami terima")
    assert m.meta["direction"] == "out"
    assert m.meta["recipient_id"] == IG


def test_echo_with_attachment(channel: InstagramChannel) -> None:
    m = one(channel, "echo_attachment")
    assert m.kind == "echo"
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.meta["direction"] == "out"
    assert m.meta["instagram_type"] == "image"
    (a,) = m.attachments
    assert a.content_type == "image/jpeg"


def test_no_fixture_makes_the_business_a_sender(channel: InstagramChannel) -> None:
    for name in all_fixtures():
        for m in parse(channel, name).messages:
            assert m.sender not in (f"instagram:{IG}", f"instagram:{SIBLING}"), name


def test_deleted_is_a_retraction(channel: InstagramChannel) -> None:
    m = one(channel, "deleted")
    assert m.kind == "retraction"
    assert m.text == ""
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.provider_id == f"deleted:{MID}TXT001"
    assert m.meta["retracts"] == MID + "TXT001"
    assert m.meta["retracts"] == one(channel, "text").provider_id


def test_message_edit_is_acknowledged_and_skipped(channel: InstagramChannel) -> None:
    assert parse(channel, "message_edit") == ParsedInbound()


# -- parse: deliveries -------------------------------------------------------------------------


def test_two_entries_three_events_in_order(channel: InstagramChannel) -> None:
    parsed = parse(channel, "batch")
    assert [(m.kind, m.provider_id) for m in parsed.messages] == [
        ("text", MID + "BATCH01"),
        ("reaction", f"reaction:{MID}OURS0002:1751000020100"),
        ("text", MID + "BATCH02"),
    ]
    assert [m.sender for m in parsed.messages] == [
        f"instagram:{CITIZEN}",
        f"instagram:{CITIZEN}",
        f"instagram:{CITIZEN2}",
    ]
    assert parsed.messages[1].text == "\U0001f44d"
    assert len({m.id for m in parsed.messages}) == 3


def test_changes_form(channel: InstagramChannel) -> None:
    m = one(channel, "changes")
    assert m.kind == "text"
    assert m.provider_id == MID + "CHG01"
    assert m.text == "Apakah kantor buka hari Sabtu?"
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.meta["recipient_id"] == IG


def test_changes_with_other_fields_are_skipped(channel: InstagramChannel) -> None:
    body = json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": IG,
                    "time": 1751000000000,
                    "changes": [
                        {"field": "comments", "value": {"id": "1790", "text": "Mantap"}},
                        {"field": "mentions", "value": {"media_id": "1791"}},
                    ],
                }
            ],
        }
    ).encode()
    assert channel.parse(request(body), NOW) == ParsedInbound()


def test_changes_seconds_timestamp_as_a_string(channel: InstagramChannel) -> None:
    data = json.loads(fixture("changes"))
    data["entry"][0]["changes"][0]["value"]["timestamp"] = "1751000030"
    (m,) = channel.parse(request(json.dumps(data).encode()), NOW).messages
    assert m.provider_ts == 1751000030.0


def test_an_event_for_a_sibling_account_is_parsed_and_labelled(
    channel: InstagramChannel,
) -> None:
    m = one(channel, "sibling")
    assert m.kind == "text"
    assert m.account == "ppid"  # the hub relabels it by recipient_id
    assert m.meta["recipient_id"] == SIBLING
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.provider_id == MID + "SIB01"


def test_provider_id_is_stable_across_parses(channel: InstagramChannel) -> None:
    for name in all_fixtures():
        a = channel.parse(request(fixture(name)), NOW)
        b = channel.parse(request(fixture(name)), NOW + 30)
        assert [m.provider_id for m in a.messages] == [m.provider_id for m in b.messages]
        assert [s.provider_id for s in a.statuses] == [s.provider_id for s in b.statuses]
        assert {m.id for m in a.messages}.isdisjoint({m.id for m in b.messages})


def test_every_fixture_gives_string_meta_and_the_raw_body(channel: InstagramChannel) -> None:
    for name in all_fixtures():
        body = fixture(name)
        messages = channel.parse(request(body), NOW).messages
        for m in messages:
            assert m.meta["recipient_id"] in (IG, SIBLING)
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.meta.items())
            if len(messages) == 1:  # alone: the exact bytes Meta signed
                assert m.raw == body.decode()
            else:  # one of many: its own event, never the other citizens' texts
                event = json.loads(m.raw)
                inner = event.get("message") or event.get("reaction") or {}
                assert str(inner.get("mid", "")) in m.provider_id
                assert len(m.raw) < len(body)
            assert m.channel == "instagram"
            assert m.received_at == NOW
            assert Message.from_json(m.to_json()) == m


def test_no_message_text_in_the_logs(
    channel: InstagramChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    for name in all_fixtures():
        texts += [m.text for m in parse(channel, name).messages if len(m.text) > 3]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert texts
    assert not [t for t in texts if t in logged]


def test_no_status_callbacks(channel: InstagramChannel) -> None:
    with pytest.raises(PayloadError):
        channel.parse_status(request(fixture("read")))


# -- parse: malformed input only ever raises PayloadError -----------------------------------


def _entry(event: Any) -> bytes:
    entry = {"id": IG, "time": 1751000000000, "messaging": [event]}
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def _msg(**fields: Any) -> dict[str, Any]:
    return {
        "sender": {"id": CITIZEN},
        "recipient": {"id": IG},
        "timestamp": 1751000000000,
        **fields,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "JSON"),
        (b"not json", "JSON"),
        (b"\xff\xfe\x00", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"object": "page", "entry": []}', "object"),
        (b'{"object": "instagram"}', "entry"),
        (b'{"object": "instagram", "entry": {}}', "entry"),
        (b'{"object": "instagram", "entry": [7]}', "entry"),
        (b'{"object": "instagram", "entry": [{"messaging": {}}]}', "messaging"),
        (b'{"object": "instagram", "entry": [{"messaging": [3]}]}', "messaging"),
        (b'{"object": "instagram", "entry": [{"changes": "x"}]}', "changes"),
        (b'{"object": "instagram", "entry": [{"id": [], "messaging": []}]}', "id"),
        (_entry({"recipient": {"id": IG}, "message": {"mid": "m"}}), "sender"),
        (_entry(_msg(sender={})), "sender"),
        (_entry(_msg(sender={"id": ""})), "sender"),
        (_entry(_msg(sender={"id": True})), "sender"),
        (_entry(_msg(recipient=None)), "recipient"),
        (_entry(_msg(message={"text": "no mid"})), "mid"),
        (_entry(_msg(message="hello")), "message"),
        (_entry(_msg(message={"mid": "m", "text": 5})), "text"),
        (_entry(_msg(message={"mid": "m", "is_echo": "yes"})), "is_echo"),
        (_entry(_msg(message={"mid": "m", "attachments": {}})), "attachments"),
        (_entry(_msg(message={"mid": "m", "attachments": ["x"]})), "attachments"),
        (_entry(_msg(message={"mid": "m", "attachments": [{"type": 1}]})), "type"),
        (_entry(_msg(message={"mid": "m", "attachments": [{"payload": 1}]})), "payload"),
        (_entry(_msg(message={"mid": "m", "reply_to": {"mid": 1.5}})), "reply_to"),
        (_entry(_msg(message={"mid": "m", "quick_reply": []})), "quick_reply"),
        (_entry(_msg(reaction={"action": "react"})), "mid"),
        (_entry(_msg(reaction={"mid": "m", "action": "react", "emoji": 1})), "emoji"),
        (_entry(_msg(read={"mid": {}})), "mid"),
        (_entry(_msg(postback={"title": ["x"]})), "title"),
        (_entry(_msg(referral={"ref": {}})), "ref"),
        (_entry(_msg(timestamp="yesterday", message={"mid": "m"})), "timestamp"),
        (_entry(_msg(timestamp=None, reaction={"mid": "m", "action": "react"})), "timestamp"),
    ],
)
def test_malformed_is_a_payload_error(channel: InstagramChannel, body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        channel.parse(request(body), NOW)


def test_unknown_events_are_acknowledged(channel: InstagramChannel) -> None:
    for event in (
        _msg(delivery={"mids": ["m"], "watermark": 1751000000000}),
        _msg(read={"watermark": 1751000000000}),
        _msg(reaction={"mid": "m", "action": "frown"}),
        _msg(optin={"ref": "x"}),
        _msg(),
    ):
        assert channel.parse(request(_entry(event)), NOW) == ParsedInbound()


_GARBAGE: list[Any] = [None, 0, -1, 2**70, 1.5, True, "", "x", "9" * 40, [], [1], {}, {"a": 1}]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _mutate(data: Any, rng: random.Random) -> Any:
    paths = _paths(data)[1:]
    if not paths:
        return data
    path = rng.choice(paths)
    node = data
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, dict) and rng.random() < 0.2:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(rng.choice(_GARBAGE))
    return data


@pytest.mark.parametrize("name", all_fixtures())
def test_mutated_fixtures_only_raise_payload_errors(channel: InstagramChannel, name: str) -> None:
    rng = random.Random(name)
    body = fixture(name)
    for _ in range(150):
        data = json.loads(body)
        for _ in range(rng.randint(1, 3)):
            data = _mutate(data, rng)
        try:
            parsed = channel.parse(request(json.dumps(data).encode()), NOW)
        except PayloadError:
            continue
        for m in parsed.messages:
            assert all(isinstance(v, str) for v in m.meta.values())
            assert m.provider_id
            assert m.sender.startswith("instagram:")
    for cut in range(0, len(body), max(1, len(body) // 40)):
        with pytest.raises(PayloadError):
            channel.parse(request(body[:cut]), NOW)


# -- text splitting ---------------------------------------------------------------------------


def test_short_text_is_one_part() -> None:
    assert split_text("Halo") == ["Halo"]
    assert split_text("x" * MAX_TEXT) == ["x" * MAX_TEXT]
    assert split_text("") == []
    assert split_text(" \n ") == []


def test_split_prefers_paragraphs_then_sentences_then_words() -> None:
    para = "Kalimat pertama tentang JHT. " * 25  # 725 characters
    text = para.strip() + "\n\n" + para.strip()
    assert split_text(text) == [para.strip(), para.strip()]
    sentences = "Ini kalimat yang cukup panjang untuk diuji. " * 40
    parts = split_text(sentences)
    assert all(p.rstrip().endswith(".") for p in parts)
    assert_split_of(parts, sentences)
    words = "kata " * 450
    parts = split_text(words)
    assert all(p.rstrip().endswith("kata") for p in parts)
    assert_split_of(parts, words)


def test_split_cuts_a_word_only_when_it_is_longer_than_the_limit() -> None:
    text = "awal " + "x" * 2500 + " akhir"
    parts = split_text(text)
    assert parts[0] == "awal"
    assert parts[-1].endswith(" akhir")
    assert max(len(p) for p in parts) == MAX_TEXT
    assert_split_of(parts, text)


# -- send against the fake Graph API ----------------------------------------------------------


async def test_send_plain_response(live: InstagramChannel, fake: FakeGraph) -> None:
    result = await live.send(reply())
    assert result.accepted
    assert result.state is DeliveryState.SENT
    (call,) = fake.sent
    assert result.provider_id == call.provider_id
    assert result.provider_id.startswith("aWdf")
    assert call.path == f"/v21.0/{IG}/messages"
    assert call.token == TOKEN
    assert call.body == {
        "recipient": {"id": CITIZEN},
        "message": {"text": "Terima kasih, laporan Anda kami terima."},
        "messaging_type": "RESPONSE",
    }


async def test_send_with_the_human_agent_tag(live: InstagramChannel, fake: FakeGraph) -> None:
    result = await live.send(reply("Mohon maaf baru kami balas.", message_tag="HUMAN_AGENT"))
    assert result.accepted
    (call,) = fake.sent
    assert call.body == {
        "recipient": {"id": CITIZEN},
        "message": {"text": "Mohon maaf baru kami balas."},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
    }


async def test_send_long_text_in_ordered_parts(live: InstagramChannel, fake: FakeGraph) -> None:
    paragraph = (
        "Berdasarkan Peraturan Menteri Ketenagakerjaan, manfaat JHT dapat diajukan setelah "
        "peserta berhenti bekerja. Silakan siapkan KTP, kartu peserta dan surat keterangan "
        "berhenti bekerja dari perusahaan. "
    )
    text = "\n\n".join(paragraph * k for k in (3, 5, 2, 6))
    result = await live.send(reply(text))
    assert result.accepted
    parts = [c.body["message"]["text"] for c in fake.sent]
    assert len(parts) >= 3
    assert_split_of(parts, text)
    assert result.provider_id == fake.sent[0].provider_id
    assert result.part_ids == tuple(c.provider_id for c in fake.sent[1:])
    assert all(c.body["recipient"] == {"id": CITIZEN} for c in fake.sent)


async def test_failure_after_the_first_part_is_final_and_partial(
    live: InstagramChannel, fake: FakeGraph
) -> None:
    text = " ".join(["Informasi pelatihan vokasi."] * 100)  # 2799 characters: 3 parts
    n = len(split_text(text))
    assert n == 3
    fake.script.extend([Scripted(), Scripted(status=500, code=2, message="Service unavailable")])
    result = await live.send(reply(text))
    assert not result.accepted
    assert result.state is DeliveryState.FAILED
    assert result.error_code == f"partial:1/{n}"
    assert "part 2" in result.error_message
    assert result.provider_id == fake.sent[0].provider_id
    assert len(fake.sent) == 1
    assert len(fake.calls) == 2  # the third part was never tried


async def test_timeout_after_the_first_part_is_partial(
    live: InstagramChannel, fake: FakeGraph
) -> None:
    text = " ".join(["Informasi pelatihan vokasi."] * 100)
    fake.script.extend([Scripted(), Scripted(), Scripted(hang_s=5.0)])
    result = await live.send(reply(text))
    assert result.error_code == "partial:2/3"
    assert result.state is DeliveryState.FAILED
    # Both delivered parts stay named by the reply: their echoes are the hub's own.
    assert (result.provider_id, *result.part_ids) == tuple(c.provider_id for c in fake.sent)


@pytest.mark.parametrize(
    ("step", "retry_after", "code"),
    [
        (Scripted(status=500, message="Internal error"), None, "500"),
        (Scripted(status=503, code=2, message="Service temporarily unavailable"), None, "2"),
        (Scripted(status=429, code=80007, message="Rate limit", retry_after=7), 7.0, "80007"),
        (Scripted(status=400, code=4, message="Application request limit reached"), 60.0, "4"),
    ],
)
async def test_retryable_refusals_are_transient(
    live: InstagramChannel,
    fake: FakeGraph,
    step: Scripted,
    retry_after: float | None,
    code: str,
) -> None:
    fake.script.append(step)
    with pytest.raises(TransientSendError) as err:
        await live.send(reply())
    assert err.value.retry_after == retry_after
    assert err.value.code == code
    assert (await live.send(reply())).accepted


@pytest.mark.parametrize(
    ("step", "code"),
    [
        (
            Scripted(
                status=400,
                code=10,
                subcode=2018278,
                message="(#10) This message is sent outside of allowed window.",
            ),
            "10/2018278",
        ),
        (Scripted(status=400, code=551, message="This person isn't available right now."), "551"),
        (Scripted(status=400, code=100, message="(#100) Invalid parameter"), "100"),
    ],
)
async def test_refusals_are_failed_results(
    live: InstagramChannel, fake: FakeGraph, step: Scripted, code: str
) -> None:
    fake.script.append(step)
    result = await live.send(reply())
    assert not result.accepted
    assert result.state is DeliveryState.FAILED
    assert result.error_code == code
    assert result.error_message == step.message


async def test_unknown_token_is_a_failed_result(fake: FakeGraph) -> None:
    ch = InstagramChannel("ppid", account(fake.base_url, token="IGAA-revoked-token-000"))
    try:
        result = await ch.send(reply())
    finally:
        await ch.aclose()
    assert result.state is DeliveryState.FAILED
    assert result.error_code == "190"
    assert "revoked" not in result.error_message


async def test_a_hang_is_transient(live: InstagramChannel, fake: FakeGraph) -> None:
    fake.script.append(Scripted(hang_s=5.0))
    with pytest.raises(TransientSendError) as err:
        await live.send(reply())
    assert err.value.code == "timeout"


async def test_unreachable_api_is_transient() -> None:
    ch = InstagramChannel("ppid", account("http://127.0.0.1:9"), send_timeout_s=0.5)
    try:
        with pytest.raises(TransientSendError):
            await ch.send(reply())
    finally:
        await ch.aclose()


async def test_what_instagram_cannot_send_fails_without_a_call(
    live: InstagramChannel, fake: FakeGraph
) -> None:
    template = Template(name="ack", provider_ref="ack_id", language="id")
    cases = {
        "templates_unsupported": reply(template=template),
        "empty_text": reply(""),
        "bad_recipient": reply(to="instagram:123"),
        "bad_message_tag": reply(message_tag="ACCOUNT_UPDATE"),
    }
    for code, r in cases.items():
        result = await live.send(r)
        assert (result.accepted, result.state, result.error_code) == (
            False,
            DeliveryState.FAILED,
            code,
        )
    assert (await live.send(reply(" \n\t "))).error_code == "empty_text"
    assert fake.calls == []


async def test_aclose_is_idempotent(live: InstagramChannel) -> None:
    await live.send(reply())
    await live.aclose()
    await live.aclose()
    assert (await live.send(reply())).accepted  # a new session after close


# -- the echo the fake sends back, end to end -------------------------------------------------


async def test_fake_graph_echo_parses_as_the_sent_message() -> None:
    received: list[InboundRequest] = []
    arrived = asyncio.Event()

    async def webhook(req: web.Request) -> web.Response:
        received.append(
            InboundRequest(
                url=URL,
                headers={k.lower(): v for k, v in req.headers.items()},
                body=await req.read(),
                content_type=req.content_type,
            )
        )
        arrived.set()
        return web.Response(text="EVENT_RECEIVED")

    app = web.Application()
    app.router.add_post("/webhooks/instagram/ppid", webhook)
    receiver = LocalServer()
    await receiver.start(app, 0)
    target = WebhookTarget(f"{receiver.base_url}/webhooks/instagram/ppid", APP_SECRET)
    fake = FakeGraph(tokens={TOKEN}, webhooks={IG: target})
    await fake.start(0)
    ch = InstagramChannel("ppid", account(fake.base_url), send_timeout_s=2.0)
    try:
        result = await ch.send(reply("Laporan Anda sedang kami proses."))
        async with asyncio.timeout(10):
            await arrived.wait()
    finally:
        await ch.aclose()
        await fake.stop()
        await receiver.stop()
    (req,) = received
    ch.verify(req)
    (m,) = ch.parse(req, NOW).messages
    assert m.kind == "echo"
    assert m.provider_id == result.provider_id
    assert m.text == "Laporan Anda sedang kami proses."
    assert m.sender == f"instagram:{CITIZEN}"
    assert m.meta["recipient_id"] == IG
    assert m.meta["direction"] == "out"
    assert fake.webhook_answers == [200]


def test_fixture_texts_have_no_stray_whitespace() -> None:
    for name in all_fixtures():
        assert not re.search(rb"\s$", fixture(name)), name
