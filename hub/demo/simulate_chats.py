"""Citizens on the other chat channels, as their providers deliver them: Telegram updates
with the secret-token header, Instagram DMs and WhatsApp Cloud API messages signed with the
Meta app secret. One citizen also shares their own phone on Telegram (the hub links that
Telegram identity to their WhatsApp contact) and writes from the Cloud API number too (the
same contact whichever WhatsApp provider carried it).

Used by the demo and ``python -m hub simulate`` beside the WhatsApp (Twilio) citizens.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import aiohttp

from channels.meta import SIGNATURE_HEADER, sign_body
from hub.settings import CloudWhatsAppAccount, Settings

TELEGRAM_LINES = [
    "Selamat pagi, saya mau tanya syarat pelatihan di BLK Bandung.",
    "Apakah pelatihannya gratis?",
]
INSTAGRAM_LINES = [
    "Min, info pendaftaran program pemagangan ke Jepang dong 🙏",
    "Saya lulusan SMK jurusan otomotif.",
]
CLOUD_LINE = "Saya kirim lewat nomor layanan kedua: apakah laporan THR saya sudah diproses?"


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> int:
    async with session.post(
        url, data=body, headers={"Content-Type": "application/json", **headers}
    ) as resp:
        return resp.status


async def telegram(
    settings: Settings, hub_url: str, session: aiohttp.ClientSession, name: str, phone: str
) -> list[int]:
    """A citizen on the Telegram bot, who then shares their own phone number."""
    accounts = settings.channels.telegram.accounts
    if not settings.channels.telegram.enabled or not accounts:
        return []
    account, acct = next(iter(accounts.items()))
    secret = acct.webhook_secret.get_secret_value()
    chat_id = 500_000_000 + secrets.randbelow(99_999_999)
    first, _, last = name.partition(" ")
    user = {
        "id": chat_id,
        "is_bot": False,
        "first_name": first,
        "last_name": last,
        "language_code": "id",
    }
    chat = {"id": chat_id, "first_name": first, "last_name": last, "type": "private"}
    base_id = secrets.randbelow(10**8) * 10
    messages: list[dict[str, Any]] = [{"text": line} for line in TELEGRAM_LINES]
    messages.append(
        {
            "contact": {
                "phone_number": phone.lstrip("+"),
                "first_name": first,
                "last_name": last,
                "user_id": chat_id,
            }
        }
    )
    statuses = []
    for i, content in enumerate(messages):
        update = {
            "update_id": base_id + i,
            "message": {
                "message_id": i + 1,
                "from": user,
                "chat": chat,
                "date": int(time.time()),
                **content,
            },
        }
        statuses.append(
            await _post(
                session,
                f"{hub_url}/webhooks/telegram/{account}",
                json.dumps(update).encode(),
                {"X-Telegram-Bot-Api-Secret-Token": secret},
            )
        )
    return statuses


async def instagram(settings: Settings, hub_url: str, session: aiohttp.ClientSession) -> list[int]:
    """A citizen writing a DM, the second line in the same delivery as the first."""
    accounts = settings.channels.instagram.accounts
    if not settings.channels.instagram.enabled or not accounts:
        return []
    account, acct = next(iter(accounts.items()))
    igsid = str(6_000_000_000_000_000 + secrets.randbelow(10**15))
    now_ms = int(time.time() * 1000)
    events = [
        {
            "sender": {"id": igsid},
            "recipient": {"id": acct.ig_account_id},
            "timestamp": now_ms + i,
            "message": {"mid": "aWdf" + secrets.token_hex(16), "text": t},
        }
        for i, t in enumerate(INSTAGRAM_LINES)
    ]
    payload = {
        "object": "instagram",
        "entry": [{"id": acct.ig_account_id, "time": now_ms, "messaging": events}],
    }
    body = json.dumps(payload).encode()
    signature = sign_body(acct.app_secret.get_secret_value(), body)
    url = f"{hub_url}/webhooks/instagram/{account}"
    return [await _post(session, url, body, {SIGNATURE_HEADER: signature})]


async def whatsapp_cloud(
    settings: Settings, hub_url: str, session: aiohttp.ClientSession, name: str, phone: str
) -> list[int]:
    """The same citizen on the ministry's Cloud API number."""
    cloud = [
        (n, a)
        for n, a in settings.channels.whatsapp.accounts.items()
        if isinstance(a, CloudWhatsAppAccount)
    ]
    if not settings.channels.whatsapp.enabled or not cloud:
        return []
    account, acct = cloud[0]
    wa_id = phone.lstrip("+")
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": acct.number.lstrip("+"),
            "phone_number_id": acct.phone_number_id,
        },
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": "wamid." + secrets.token_hex(16),
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": CLOUD_LINE},
            }
        ],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "100000000000000", "changes": [{"field": "messages", "value": value}]}],
    }
    body = json.dumps(payload).encode()
    signature = sign_body(acct.app_secret.get_secret_value(), body)
    url = f"{hub_url}/webhooks/whatsapp/{account}"
    return [await _post(session, url, body, {SIGNATURE_HEADER: signature})]
