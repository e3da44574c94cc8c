"""Citizen identities (phone normalization) and personal-data masking in logs."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from hub import logging as hub_logging
from hub.identity import InvalidIdentity, normalize_phone, phone_identity
from hub.logging import mask_phone, mask_text, redact
from tests.helpers import HubHarness, inbound_params

# -- normalize_phone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("081234567890", "+6281234567890"),
        ("0812-3456-7890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("+62 812 3456 7890", "+6281234567890"),
        ("whatsapp:+6281234567890", "+6281234567890"),
        ("WhatsApp:+6281234567890", "+6281234567890"),
        ("tel:+62-812-3456-7890", "+6281234567890"),
        ("  0812 3456 7890 ", "+6281234567890"),
        ("021-5551234", "+62215551234"),
        ("+6531234567", "+6531234567"),  # a Singapore number stays Singaporean
    ],
)
def test_normalize_phone(raw: str, e164: str) -> None:
    """Every notation of the same number becomes the same E.164 string."""
    assert normalize_phone(raw) == e164


def test_normalize_phone_landline_in_parentheses() -> None:
    """A Jakarta landline written with its area code in parentheses is understood."""
    assert normalize_phone("(021) 5551234") == "+62215551234"


@pytest.mark.parametrize("raw", ["081234", "", "abc", "   ", "whatsapp:", "+62", "0000000000"])
def test_normalize_phone_rejects_non_numbers(raw: str) -> None:
    """Too short, empty or digitless input raises InvalidIdentity (a ValueError)."""
    with pytest.raises(InvalidIdentity):
        normalize_phone(raw)
    assert issubclass(InvalidIdentity, ValueError)


def test_phone_identity() -> None:
    """A citizen's identity key is phone:+E164."""
    assert phone_identity(normalize_phone("0812-3456-7890")) == "phone:+6281234567890"


def _random_mobiles(n: int, seed: int = 20260101) -> Iterator[tuple[str, str]]:
    """(national 08… form, +62… form) pairs of valid Indonesian mobile numbers."""
    rng = random.Random(seed)
    prefixes = ["0811", "0812", "0813", "0821", "0852", "0857", "0878", "0881", "0895", "0896"]
    for _ in range(n):
        national = rng.choice(prefixes) + "".join(rng.choice("0123456789") for _ in range(8))
        yield national, "+62" + national[1:]


def test_notations_agree_on_many_numbers() -> None:
    """For 300 generated mobiles, every notation maps to one identity (a seeded property)."""
    for national, e164 in _random_mobiles(300):
        d = e164[1:]
        notations = [
            national,
            f"{national[:4]}-{national[4:8]}-{national[8:]}",
            d,
            e164,
            f"+62 {national[1:4]} {national[4:8]} {national[8:]}",
            f"whatsapp:{e164}",
        ]
        assert {normalize_phone(n) for n in notations} == {e164}, national


# -- masking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+6281234567890", "+6281*******90"),
        ("6281234567890", "6281*******90"),
        ("081234567890", "0812******90"),
        ("nomor 081234567890, terima kasih", "nomor 0812******90, terima kasih"),
        ("phone:+6281234567890", "phone:+6281*******90"),
        ("whatsapp:+6281234567890", "whatsapp:+6281*******90"),
        ("to=+6531234567,", "to=+6531****67,"),
    ],
)
def test_mask_text_masks_phones(value: str, masked: str) -> None:
    """Phone numbers as the hub writes them keep only their first 4 and last 2 digits."""
    assert mask_text(value) == masked


@pytest.mark.parametrize(
    ("nik", "masked"),
    [
        ("3174051708900001", "31**********0001"),  # man born 17-08-1990
        ("3174055708900002", "31**********0002"),  # woman: day + 40
        ("6271033112850003", "62**********0003"),  # 31-12-85, Central Kalimantan (62…)
    ],
)
def test_mask_text_masks_nik(nik: str, masked: str) -> None:
    """A 16-digit NIK with a plausible DDMMYY keeps only province and serial."""
    assert mask_text(f"NIK {nik} pelapor") == f"NIK {masked} pelapor"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("from=siti.rahayu@gmail.com", "from=s***@gmail.com"),
        ("<Siti_R+kemnaker@warga.co.id>", "<S***@warga.co.id>"),
        ("to ppid@kemnaker.go.id,", "to p***@kemnaker.go.id,"),
    ],
)
def test_mask_text_masks_email_addresses(value: str, masked: str) -> None:
    """Only the first character of the local part survives; the domain stays."""
    assert mask_text(value) == masked


@pytest.mark.parametrize(
    "value",
    [
        "1795383178620-0",  # Redis stream id
        "entry=1795383178620-12",
        "KMN-2026-000001",  # ticket number
        "SM0812345678901234567890123456789a",  # Twilio message SID with 08… inside
        "AC" + "1" * 32,
        "ME0c1d2e3f405162738495a6b7c8d9e0f1",
        "3174059913900001",  # 16 digits but day 99: not a NIK
        "01hv3k9x2m4n5p6q7r8s",  # hub id
        "2026-05-17T08:12:34.567890Z",
        "127.0.0.1:6379",
        "12345",
    ],
)
def test_mask_text_leaves_ids_alone(value: str) -> None:
    """Stream ids, ticket numbers, SIDs, hub ids, timestamps and short numbers are untouched."""
    assert mask_text(value) == value


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("Hubungi saya di 081234567890.", "Hubungi saya di 0812******90."),
        ("tel:081234567890", "tel:0812******90"),
        ("wa_id:6281234567890", "wa_id:6281*******90"),
    ],
)
def test_mask_text_masks_phone_next_to_punctuation(value: str, masked: str) -> None:
    """A number ending a sentence or following a 'scheme:' is masked like any other."""
    assert mask_text(value) == masked


def test_mask_phone_keeps_short_values() -> None:
    """mask_phone leaves values with fewer than 8 digits as they are."""
    assert mask_phone("1234567") == "1234567"
    assert mask_phone("+6281234567890") == "+6281*******90"


def test_mask_text_never_leaves_a_full_number() -> None:
    """For 300 generated mobiles, no hub notation survives masking whole (seeded property)."""
    for national, e164 in _random_mobiles(300):
        for form in (national, e164, e164[1:], f"phone:{e164}", f"whatsapp:{e164}"):
            out = mask_text(f"dari {form} ke petugas")
            assert national[1:] not in out, form


def test_redact_replaces_body_keys_and_masks_strings() -> None:
    """redact blanks body-like keys, masks numbers in other strings, leaves the event alone."""
    event: dict[str, Any] = {
        "event": "message.received",
        "body": "THR saya belum dibayar",
        "text": "Gaji dipotong",
        "raw": "Body=THR+saya",
        "payload": {"Body": "x"},
        "message_body": "upah",
        "password": "hunter2",
        "sender": "phone:+6281234567890",
        "note": "NIK 3174051708900001",
        "entry": "1795383178620-0",
        "count": 3,
    }
    out = redact(None, "info", event)
    for key in ("body", "text", "raw", "payload", "message_body", "password"):
        assert out[key] == "[redacted]", key
    assert out["sender"] == "phone:+6281*******90"
    assert out["note"] == "NIK 31**********0001"
    assert out["entry"] == "1795383178620-0"
    assert out["count"] == 3
    assert out["event"] == "message.received"


# -- end to end --------------------------------------------------------------------------


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], None]]:
    """Call it in the test body: structlog as in production (JSON), into captured stdout.

    capsys swaps sys.stdout per test phase, and structlog's PrintLogger binds the stream when
    configured, so configuring must happen in the call phase; teardown restores the defaults
    before the harness (set up earlier) logs its stop.
    """
    yield lambda: hub_logging.configure("json", "debug")
    structlog.reset_defaults()


async def test_logs_carry_no_body_and_no_full_phone(
    harness: HubHarness, json_logs: Callable[[], None], capsys: pytest.CaptureFixture[str]
) -> None:
    """A webhook's whole path (accept, refuse, dispatch, ack) logs neither body nor phone."""
    json_logs()
    body = "Perusahaan PT Maju Jaya belum bayar THR saya, NIK 3174055708900002"
    phone = "+6281298765432"
    ok = inbound_params(body, phone=phone)
    assert (await harness.post_whatsapp(ok))[0] == 200
    bad = inbound_params(body, phone=phone, NumMedia="x")
    assert (await harness.post_whatsapp(bad))[0] == 400
    assert (await harness.post_whatsapp(inbound_params(body, phone=phone), signature="x"))[0] == 403
    assert await harness.drain_inbound() == 1
    assert await harness.drain_outbox() == 1
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    events = {line["event"] for line in lines}
    assert {"message.received", "webhook.malformed", "webhook.forged", "http.request"} <= events
    assert "message.applied" in events
    assert "PT Maju Jaya" not in out
    assert "THR" not in out
    assert "3174055708900002" not in out
    assert "81298765432" not in out  # the number in any notation
    assert "98765432" not in out
