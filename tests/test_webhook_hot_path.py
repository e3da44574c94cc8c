"""The webhook hot path's shortcuts decide and write exactly what the slow ways did: the
stream entry's JSON (``message_json`` = ``Message.to_json``), the Twilio signature (the
channel's own check = the SDK's ``RequestValidator.validate``), the forger quota (a client
under its quota is not looked up again for a second, and a forged call ends that at once),
the request summary (debug for an accepted webhook, whose ``message.received`` line says it),
the form parser (``parse_qsl``), the content type, the Twilio form as a dict, and the log line's
masking, timestamp and JSON (structlog's own processors)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from multidict import MultiDict
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from adapters.redis_bus import message_json
from channels.base import InboundRequest
from channels.whatsapp_twilio import TwilioWhatsApp
from hub.model import Attachment, Location, Message
from hub.settings import TwilioWhatsAppAccount
from hub.web.webhooks import CLEAN_FOR_S, CleanClients
from tests.helpers import HubHarness, inbound_params

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
TOKEN = "hot-path-auth-token"
FORM = "application/x-www-form-urlencoded"
PATH = "/webhooks/whatsapp/wa1"


def _channel() -> TwilioWhatsApp:
    acct = TwilioWhatsAppAccount(
        number="+628119521150",
        account_sid="AC" + "c" * 32,
        auth_token=SecretStr(TOKEN),
        api_base_url="http://127.0.0.1:1",
    )
    return TwilioWhatsApp("wa1", acct)


def _request(url: str, form: list[tuple[str, str]], signature: str) -> InboundRequest:
    return InboundRequest(
        url=url, headers={"x-twilio-signature": signature}, body=b"", form=form, content_type=FORM
    )


# -- message_json ------------------------------------------------------------------------------


def _messages() -> list[Message]:
    ch = _channel()
    out = []
    for f in sorted(FIXTURES.glob("*.form")):
        body = f.read_bytes()
        form = parse_qsl(body.decode(), keep_blank_values=True)
        req = InboundRequest(
            url="https://x/webhooks/whatsapp/wa1", headers={}, body=body, form=form,
            content_type=FORM,
        )  # fmt: skip
        out += ch.parse(req, 1_751_000_000.5).messages
    base: dict[str, Any] = {
        "id": "01j0000000000000000a",
        "channel": "whatsapp",
        "account": "wa1",
        "provider_id": "SM1",
        "sender": "phone:+6281234567890",
        "reply_address": "+6281234567890",
        "received_at": 1_751_000_000.25,
    }
    for extra in (
        {},
        {"text": 'kutip " garis \\ baris\n\u2028 emoji 😀 é', "display_name": "Siti ☺"},
        {"attachments": (Attachment(url="https://m/1", content_type="image/jpeg"),)},
        {"location": Location(-6.2, 106.8, address="Jl. Gatot Subroto", label="Kemnaker")},
        {"thread_hints": ("<a@b>", "KMN-2026-000001"), "provider_ts": 1.5},
        {"meta": {"to": "whatsapp:+628119521150", "é": "😀"}, "raw": "Body=x&From=y"},
    ):
        out.append(Message(**{**base, **extra}))
    return out


@pytest.mark.parametrize("msg", _messages(), ids=lambda m: f"{m.kind}-{m.provider_id[:8]}")
def test_message_json_is_to_json(msg: Message) -> None:
    assert message_json(msg) == msg.to_json()


# -- the Twilio signature -----------------------------------------------------------------------


def test_signature_check_decides_like_the_sdk() -> None:
    """Seeded random forms (repeated keys, empty values, non-ASCII, characters that URL-encode)
    signed for one of several URLs (with and without the default port, other paths, a query),
    sometimes tampered with or signed with garbage: the channel accepts exactly what
    ``RequestValidator.validate`` accepts."""
    ch, sdk, rnd = _channel(), RequestValidator(TOKEN), random.Random(9)
    urls = [
        "https://hub.kemnaker.go.id/webhooks/whatsapp/wa1",
        "https://hub.kemnaker.go.id:443/webhooks/whatsapp/wa1",
        "http://hub.kemnaker.go.id:8080/webhooks/whatsapp/wa1?x=1",
        "http://hub.kemnaker.go.id/webhooks/whatsapp/wa2",
    ]
    alphabet = "aZ09 +&=%é€😀/:."
    accepted = 0
    for _ in range(3000):
        keys = rnd.choices(["Body", "From", "To", "MediaUrl0", "é", "a"], k=rnd.randrange(6))
        form = [(k, "".join(rnd.choices(alphabet, k=rnd.randrange(5)))) for k in keys]
        url = rnd.choice(urls)
        signature = str(sdk.compute_signature(rnd.choice(urls), MultiDict(form)))
        if rnd.random() < 0.15:
            signature = rnd.choice(["", "x", "é", signature[:-1], signature + "="])
        if form and rnd.random() < 0.15:
            form[0] = (form[0][0], form[0][1] + "!")
        expected = sdk.validate(url, MultiDict(form), signature)
        assert ch._form_signed(url, form, signature) == expected, (url, form, signature)
        accepted += expected
    assert 300 < accepted < 2700  # both outcomes were exercised


# -- the forger quota ---------------------------------------------------------------------------


def test_clean_clients_forget_on_a_forged_call_and_ignore_overlapping_lookups() -> None:
    clean = CleanClients()
    clean.remember("ip:a", 100.0, clean.forged_calls)
    assert clean.is_clean("ip:a", 100.0 + CLEAN_FOR_S / 2)
    assert not clean.is_clean("ip:a", 100.0 + CLEAN_FOR_S)
    assert not clean.is_clean("ip:b", 100.0)
    clean.forged("ip:a")
    assert not clean.is_clean("ip:a", 100.0)
    before = clean.forged_calls
    clean.forged("ip:c")  # a forged call while a lookup for ip:a was on its way
    clean.remember("ip:a", 100.0, before)
    assert not clean.is_clean("ip:a", 100.0)


async def test_a_signed_client_is_looked_up_once_a_second_and_a_forger_every_time(
    harness_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h: HubHarness = await harness_factory(hub__forged_webhooks_per_ip_per_minute=2)
    h.clock.t = 1_789_956_000.0
    lookups: list[str] = []
    over = h.hub.rate_limit.over

    async def counting_over(bucket: str, *args: Any) -> int:
        lookups.append(bucket)
        return await over(bucket, *args)

    monkeypatch.setattr(h.hub.rate_limit, "over", counting_over)
    for i in range(3):
        assert (await h.post_whatsapp(inbound_params(f"pesan {i}")))[0] == 200
    assert len(lookups) == 1
    h.clock.advance(CLEAN_FOR_S)
    assert (await h.post_whatsapp(inbound_params("lagi")))[0] == 200
    assert len(lookups) == 2
    # Its first forged call still finds it clean (Redis said so this second, and nothing was
    # forged since: the lookup would say the same); from then on every call is looked up.
    for status in (403, 403, 429):
        assert (await h.post_whatsapp(inbound_params("palsu"), signature="x"))[0] == status
    assert len(lookups) == 4
    # Past its quota, the client's signed calls wait too, looked up each time.
    for _ in range(2):
        assert (await h.post_whatsapp(inbound_params("asli")))[0] == 429
    assert len(lookups) == 6


# -- the request summary ------------------------------------------------------------------------


async def test_accepted_webhook_is_summarized_at_debug_refused_at_info(
    harness: HubHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import structlog

    from hub import logging as hub_logging

    hub_logging.configure("json", "info")
    try:
        assert (await harness.post_whatsapp(inbound_params("THR")))[0] == 200
        assert (await harness.post_whatsapp(inbound_params("x"), signature="x"))[0] == 403
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    finally:
        structlog.reset_defaults()
    received = [x for x in lines if x["event"] == "message.received"]
    summaries = [x for x in lines if x["event"] == "http.request"]
    assert len(received) == 1
    assert [x["status"] for x in summaries] == [403]  # the accepted call's is at debug
    assert received[0]["request_id"]


# -- the form parser ----------------------------------------------------------------------------


def _random_form_text(rnd: random.Random) -> str:
    pieces = ["a", "Body", "=", "&", "&&", "+", "%", "%2", "%41", "%2B", "%3A", "%C3%A9",
              "%E2%82", "%zz", "%FF", "é", "€", "😀", " ", "From", "whatsapp%3A%2B62812",
              "x=y=z", ""]  # fmt: skip
    return "".join(rnd.choices(pieces, k=rnd.randrange(12)))


def test_form_parser_is_parse_qsl() -> None:
    """Seeded random bodies (empty fields, no ``=``, several ``=``, ``+``, valid and broken
    escapes, escaped and literal non-ASCII): the same pairs as ``parse_qsl`` with
    ``keep_blank_values``, and the same ValueError past the field limit."""
    from hub.web.webhooks import parse_form

    rnd = random.Random(5)
    for _ in range(5000):
        text = _random_form_text(rnd)
        assert parse_form(text) == parse_qsl(text, keep_blank_values=True), text
        limit = rnd.randrange(1, 6)
        try:
            expected: Any = parse_qsl(text, keep_blank_values=True, max_num_fields=limit)
        except ValueError as exc:
            expected = str(exc)
        try:
            got: Any = parse_form(text, limit)
        except ValueError as exc:
            got = str(exc)
        assert got == expected, (text, limit)
    for f in sorted(FIXTURES.glob("*.form")):
        text = f.read_text()
        assert parse_form(text) == parse_qsl(text, keep_blank_values=True)


def test_form_content_type_shortcut_is_the_parsed_content_type() -> None:
    from aiohttp.test_utils import make_mocked_request

    from hub.web.webhooks import _content_type

    for value in (FORM, f"{FORM}; charset=utf-8", "Application/X-WWW-Form-Urlencoded",
                  " application/x-www-form-urlencoded", "application/json", "", None):  # fmt: skip
        headers = {} if value is None else {"Content-Type": value}
        request = make_mocked_request("POST", PATH, headers=headers)
        assert _content_type(request) == (request.content_type or ""), value


# -- the Twilio form as a dict ------------------------------------------------------------------


def test_form_dict_and_repeated_keys_as_before() -> None:
    """The shortcut for forms without a repeated key gives the grouping's dict; a repeated
    key still refuses the webhook, naming the first repeated key."""
    from collections import defaultdict

    from channels.base import PayloadError
    from channels.whatsapp_twilio import _form_dict

    def grouped(form: list[tuple[str, str]]) -> dict[str, Any]:
        g: dict[str, list[str]] = defaultdict(list)
        for k, v in form:
            g[k].append(v)
        return {k: (v[0] if len(v) == 1 else v) for k, v in g.items()}

    rnd = random.Random(3)
    for _ in range(2000):
        keys = rnd.choices(["Body", "From", "To", "a", "é"], k=rnd.randrange(7))
        form = [(k, rnd.choice(["", "x", "y"])) for k in keys]
        assert _form_dict(form) == grouped(form)
        assert list(_form_dict(form)) == list(grouped(form))
    ch = _channel()
    form = [("MessageSid", "SM1"), ("From", "whatsapp:+6281234567890"), ("Body", "a"),
            ("To", "x"), ("Body", "b"), ("To", "y")]  # fmt: skip
    with pytest.raises(PayloadError, match="parameter Body given more than once"):
        ch.parse(_request("https://x/", form, "sig"), 1.0)


# -- the log line -------------------------------------------------------------------------------


def test_masking_shortcut_changes_nothing() -> None:
    """``mask_text`` skips its substitutions when no pattern can start in the value: seeded
    random values (phones in every form the hub writes, NIKs, e-mail addresses, stream and
    provider ids, digits next to letters, dots and dashes) mask exactly as running the three
    substitutions on every value did."""
    from hub import logging as hub_logging

    def always(value: str) -> str:
        value = hub_logging._NIK.sub(lambda m: m.group(1)[:2] + "*" * 10 + m.group(3)[-4:], value)
        value = hub_logging._EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)
        return hub_logging._PHONE.sub(lambda m: hub_logging.mask_phone(m.group(1)), value)

    rnd = random.Random(11)
    pieces = ["+62812", "62812", "0812", "08", "628", "+", "3171", "0101", "900001", "1234567",
              "1751000000000-0", "SM0123456789abcdef", "siti.r@gmail.com", "@", "a", "_", "-",
              ".", " ", "x@y.id", "٣", "7"]  # fmt: skip
    masked = 0
    for _ in range(20000):
        value = "".join(rnd.choices(pieces, k=rnd.randrange(8)))
        assert hub_logging.mask_text(value) == always(value), value
        masked += hub_logging.mask_text(value) != value
    assert masked > 1000  # both outcomes were exercised


def test_timestamp_and_json_shortcuts_render_as_structlog() -> None:
    import datetime
    import json

    import structlog

    from hub.logging import JSONRenderer, UtcIsoStamper

    stamper = UtcIsoStamper()
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    rnd = random.Random(2)
    stamps = [0, 999, 1000, 1_000_000_000, 1_751_000_000_000_000_000, 1_751_000_000_999_999_999]
    stamps += [rnd.randrange(4_000_000_000 * 10**9) for _ in range(3000)]
    stamps += [(s // 10**9) * 10**9 + rnd.choice([0, 999, 1000, 123_456_789]) for s in stamps]
    for ns in sorted(stamps) + stamps:  # in order (one second after another) and jumping
        now = epoch + datetime.timedelta(microseconds=ns // 1000)  # datetime.now floors
        assert stamper.text(ns) == now.isoformat().replace("+00:00", "Z"), ns
    live = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    mine = stamper(None, "info", {})["timestamp"]

    def parsed(stamp: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    assert abs((parsed(mine) - parsed(live)).total_seconds()) < 5  # the same clock

    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    events: list[dict[str, Any]] = [
        {"event": "message.received", "message_id": "01j", "n": 3, "ms": 1.25, "ok": True},
        {"event": "x", "é": '😀 \u2028 "q" \\', "none": None, "list": [1, "a"], "odd": Odd()},
        {"event": "nan", "v": float("nan"), "t": (1, 2), "nested": {"a": {"b": Odd()}}},
    ]
    theirs = structlog.processors.JSONRenderer(sort_keys=False)
    for e in events:
        assert JSONRenderer()(None, "info", dict(e)) == theirs(None, "info", dict(e))
        json.loads(JSONRenderer()(None, "info", dict(e)))
