"""Citizens writing to the ministry on WhatsApp, as Twilio would deliver them: signed webhooks;
and, when a portal account is configured, one of them also opening a request on the
bantuan.kemnaker.go.id portal (signed portal webhooks), which joins their WhatsApp ticket; and,
for each chat channel configured, citizens on Telegram, Instagram and the WhatsApp Cloud API
number (``hub.demo.simulate_chats``).

Used by the demo (a first wave at start-up) and by ``python -m hub simulate``.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from twilio.request_validator import RequestValidator

from hub.demo import simulate_chats as chats
from hub.demo.fake_portal import make_event, signed_headers
from hub.settings import Settings, TwilioWhatsAppAccount

NAMES = [
    "Siti Rahayu",
    "Budi Santoso",
    "Dewi Lestari",
    "Agus Pratama",
    "Rina Wulandari",
    "Joko Susilo",
    "Putri Maharani",
    "Andi Saputra",
    "Wahyu Hidayat",
    "Nur Aisyah",
]
TOPICS = [
    "Selamat siang, THR saya belum dibayar oleh perusahaan padahal sudah H-7 lebaran.",
    "Saya kena PHK sepihak dan pesangon tidak diberikan. Bagaimana cara melapor?",
    "Gaji saya di bawah UMK Kabupaten Bekasi, apakah boleh?",
    "Bagaimana cara mencairkan JHT BPJS Ketenagakerjaan setelah resign?",
    "Kapan BSU subsidi upah tahap berikutnya dicairkan? Apakah saya termasuk penerima?",
    "Saya ingin mendaftar pelatihan di BLK, apakah ada biayanya?",
    "Kontrak PKWT saya sudah diperpanjang 4 kali, apakah itu sesuai aturan?",
    "Terjadi kecelakaan kerja di pabrik kami, K3 tidak diterapkan. Mohon ditindaklanjuti.",
    "Mohon informasi lowongan kerja di Karirhub untuk lulusan SMK.",
    "Saya ingin mengajukan permohonan informasi publik tentang data TKA di Jawa Barat.",
]
FOLLOW_UPS = [
    "Mohon segera ditanggapi, terima kasih.",
    "Apakah ada perkembangan?",
    "Berikut saya lampirkan slip gaji saya.",
]


@dataclass(frozen=True)
class Citizen:
    name: str
    phone: str  # E.164


def citizens(n: int, seed: int | None = None) -> list[Citizen]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        phone = "+62812" + "".join(str(rnd.randrange(10)) for _ in range(8))
        out.append(Citizen(NAMES[i % len(NAMES)], phone))
    return out


def twilio_params(
    account_sid: str, to_number: str, citizen: Citizen, body: str, kind: str = "text"
) -> dict[str, str]:
    """The form fields Twilio posts for an inbound WhatsApp message."""
    sid = "SM" + secrets.token_hex(16)
    p = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": citizen.name,
        "MessageType": kind,
        "SmsSid": sid,
        "WaId": citizen.phone.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": f"whatsapp:{to_number}",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": f"whatsapp:{citizen.phone}",
        "ApiVersion": "2010-04-01",
    }
    if kind == "image":
        p.update(
            NumMedia="1",
            MessageType="image",
            Body="",
            MediaContentType0="image/jpeg",
            MediaUrl0=f"https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Messages/"
            f"{sid}/Media/ME{secrets.token_hex(16)}",
        )
    elif kind == "location":
        p.update(
            MessageType="location",
            Body="",
            Latitude="-6.2367",
            Longitude="106.8227",
            Address="Jl. Jend. Gatot Subroto Kav. 51, Jakarta",
            Label="Kemnaker",
        )
    return p


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, params))


def conversation(
    people: list[Citizen], messages_each: int, rnd: random.Random
) -> Iterator[tuple[Citizen, str, str]]:
    for c in people:
        yield c, rnd.choice(TOPICS), "text"
    for i in range(1, messages_each):
        for c in people:
            kind = "image" if i == 2 else ("location" if i == 3 else "text")
            yield c, rnd.choice(FOLLOW_UPS), kind


async def run(
    settings: Settings,
    hub_url: str,
    n_citizens: int,
    messages_each: int,
    account: str | None = None,
    seed: int | None = None,
) -> list[int]:
    accounts = {
        n: a
        for n, a in settings.channels.whatsapp.accounts.items()
        if isinstance(a, TwilioWhatsAppAccount)
    }
    name = account or next(iter(accounts))
    acct = accounts[name]
    path = f"/webhooks/whatsapp/{name}"
    signed_url = settings.hub.public_url + path
    rnd = random.Random(seed)
    people = citizens(n_citizens, seed)
    statuses = []
    async with aiohttp.ClientSession() as session:
        for citizen, body, kind in conversation(people, messages_each, rnd):
            params = twilio_params(acct.account_sid, acct.number, citizen, body, kind)
            sig = sign(acct.auth_token.get_secret_value(), signed_url, params)
            async with session.post(
                hub_url.rstrip("/") + path, data=params, headers={"X-Twilio-Signature": sig}
            ) as resp:
                statuses.append(resp.status)
            await asyncio.sleep(0)
        if people and settings.channels.portal.enabled and settings.channels.portal.accounts:
            statuses += await portal_events(settings, hub_url, people[0], session)
        if people:
            base = hub_url.rstrip("/")
            first = people[0]
            statuses += await chats.whatsapp_cloud(settings, base, session, first.name, first.phone)
            statuses += await chats.telegram(settings, base, session, first.name, first.phone)
            statuses += await chats.instagram(settings, base, session)
    return statuses


async def portal_events(
    settings: Settings, hub_url: str, citizen: Citizen, session: aiohttp.ClientSession
) -> list[int]:
    """A portal request by ``citizen`` (same phone as on WhatsApp) and a follow-up on it."""
    name, acct = next(iter(settings.channels.portal.accounts.items()))
    secret = acct.webhook_secret.get_secret_value()
    run_id = secrets.token_hex(4)
    request_id = f"REQ-DEMO-{run_id}"
    texts = [
        ("request.created", "Saya juga melapor lewat portal: " + TOPICS[0]),
        ("request.replied", FOLLOW_UPS[2]),
    ]
    statuses = []
    for i, (kind, text) in enumerate(texts):
        event = make_event(
            i, kind, request_id, text, phone=citizen.phone, name=citizen.name, email="",
            account_id=f"demo-{citizen.phone[-4:]}",
        )  # fmt: skip
        event["event_id"], event["message"]["id"] = f"evt-{run_id}-{i}", f"msg-{run_id}-{i}"
        body = json.dumps(event).encode()
        async with session.post(
            f"{hub_url.rstrip('/')}/webhooks/portal/{name}",
            data=body,
            headers=signed_headers(secret, body),
        ) as resp:
            statuses.append(resp.status)
    return statuses
