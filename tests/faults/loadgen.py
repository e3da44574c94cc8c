"""A load generator that behaves like the providers: a known set of messages, each a signed
webhook (Twilio WhatsApp, Meta's Cloud API WhatsApp, Telegram), re-sent with backoff on a
non-2xx answer, a connection error or a timeout, always as the very same request (same
provider id), until the hub answers 2xx.

A citizen's next message leaves only after the previous one got its 2xx (so the order the
hub must keep per citizen is well defined); citizens run concurrently, each message waiting
for its slot on the schedule (an open loop: ``rate`` messages per second, or any list of
offsets, e.g. a burst).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

from channels.meta import SIGNATURE_HEADER, sign_body

CONNECTION_ERROR = 0  # status recorded for a refused or broken connection
TIMEOUT = -1  # status recorded when the hub did not answer within the provider's timeout


@dataclass(frozen=True)
class Accounts:
    """The hub's accounts as the providers know them (see tests/faults/conftest.py)."""

    twilio_account: str = "wa1"
    twilio_sid: str = "AC" + "7" * 32
    twilio_token: str = "fault-twilio-auth-token"
    twilio_number: str = "+628119521150"
    cloud_account: str = "cloud"
    cloud_phone_id: str = "106540352242922"
    cloud_number: str = "+628119521152"
    cloud_app_secret: str = "fault-meta-app-secret"
    cloud_token: str = "fault-graph-access-token"
    telegram_account: str = "tg"
    telegram_secret: str = "fault-telegram-secret"
    telegram_bot_token: str = "123456:fault-telegram-bot-token"


@dataclass(frozen=True)
class Planned:
    """One message of the plan: who sends it, in which order, and the request that carries it."""

    key: str  # "c0007#003"
    contact: str  # "c0007"
    seq: int  # position in the contact's own sequence
    channel: str  # as the hub names it: whatsapp | telegram
    account: str
    provider_id: str  # the hub's dedupe key within (channel, account)
    text: str
    path: str
    body: bytes = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)


@dataclass
class Attempt:
    key: str
    started: float  # time.monotonic()
    latency_s: float
    status: int  # HTTP status, CONNECTION_ERROR or TIMEOUT


@dataclass
class Outcome:
    attempts: int = 0
    acked: bool = False  # the hub answered 2xx at least once
    rejected: int = 0  # a 4xx other than 429: a provider would not retry; a test failure
    gave_up: bool = False


def contact_kind(c: int) -> str:
    """Every third citizen on Twilio, on Meta's Cloud API alternating with Twilio (one phone,
    one contact, two providers), and on Telegram."""
    return ("twilio", "cloud+twilio", "telegram")[c % 3]


def plan_messages(
    n: int, contacts: int, base_url: str, accounts: Accounts | None = None, run: str = ""
) -> list[Planned]:
    """``n`` messages over ``contacts`` citizens, interleaved: message j is citizen j % contacts,
    number j // contacts in that citizen's sequence."""
    a = accounts or Accounts()
    run = run or secrets.token_hex(3)
    tg_base = random.randrange(100_000_000, 900_000_000)
    out = []
    for j in range(n):
        c, seq = j % contacts, j // contacts
        contact = f"c{c:04d}"
        text = f"fault-run {run} {contact} #{seq:04d} THR belum dibayar"
        phone = f"+62812{70_000_000 + c:08d}"
        kind = contact_kind(c)
        key = f"{contact}#{seq:03d}"
        if kind == "telegram":
            out.append(_telegram(a, key, contact, seq, text, 500_000 + c, tg_base + j))
        elif kind == "cloud+twilio" and seq % 2 == 0:
            out.append(_cloud(a, key, contact, seq, text, phone))
        else:
            out.append(_twilio(a, base_url, key, contact, seq, text, phone))
    return out


def _twilio(
    a: Accounts, base_url: str, key: str, contact: str, seq: int, text: str, phone: str
) -> Planned:
    sid = "SM" + secrets.token_hex(16)
    params = {
        "SmsMessageSid": sid, "NumMedia": "0", "ProfileName": f"Warga {contact}",
        "MessageType": "text", "SmsSid": sid, "WaId": phone.lstrip("+"), "SmsStatus": "received",
        "Body": text, "To": f"whatsapp:{a.twilio_number}", "NumSegments": "1",
        "MessageSid": sid, "AccountSid": a.twilio_sid, "From": f"whatsapp:{phone}",
        "ApiVersion": "2010-04-01",
    }  # fmt: skip
    path = f"/webhooks/whatsapp/{a.twilio_account}"
    sig = RequestValidator(a.twilio_token).compute_signature(base_url + path, params)
    headers = (
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Twilio-Signature", str(sig)),
    )
    return Planned(
        key, contact, seq, "whatsapp", a.twilio_account, sid, text, path,
        urlencode(params).encode(), headers,
    )  # fmt: skip


def _cloud(a: Accounts, key: str, contact: str, seq: int, text: str, phone: str) -> Planned:
    wamid = "wamid." + secrets.token_hex(16)
    wa_id = phone.lstrip("+")
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": a.cloud_number.lstrip("+"),
            "phone_number_id": a.cloud_phone_id,
        },
        "contacts": [{"profile": {"name": f"Warga {contact}"}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": wamid,
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }
    body = json.dumps(payload).encode()
    headers = (
        ("Content-Type", "application/json"),
        (SIGNATURE_HEADER, sign_body(a.cloud_app_secret, body)),
    )
    path = f"/webhooks/whatsapp/{a.cloud_account}"
    return Planned(key, contact, seq, "whatsapp", a.cloud_account, wamid, text, path, body, headers)


def _telegram(
    a: Accounts, key: str, contact: str, seq: int, text: str, user_id: int, update_id: int
) -> Planned:
    who = {"id": user_id, "first_name": "Warga", "last_name": contact}
    update = {
        "update_id": update_id,
        "message": {
            "message_id": seq + 1,
            "from": {**who, "is_bot": False, "language_code": "id"},
            "chat": {**who, "type": "private"},
            "date": int(time.time()),
            "text": text,
        },
    }
    headers = (
        ("Content-Type", "application/json"),
        ("X-Telegram-Bot-Api-Secret-Token", a.telegram_secret),
    )
    path = f"/webhooks/telegram/{a.telegram_account}"
    return Planned(
        key, contact, seq, "telegram", a.telegram_account, f"update:{update_id}", text, path,
        json.dumps(update).encode(), headers,
    )  # fmt: skip


def steady(n: int, rate: float) -> list[float]:
    """Offsets (seconds) for ``n`` messages at ``rate`` per second."""
    return [j / rate for j in range(n)]


def phases(*parts: tuple[int, float]) -> list[float]:
    """Offsets for consecutive phases of (count, rate): e.g. normal, a 10x burst, normal."""
    out: list[float] = []
    t = 0.0
    for count, rate in parts:
        out += [t + j / rate for j in range(count)]
        t += count / rate
    return out


@dataclass
class LoadGen:
    """Sends ``plan`` to the hub at ``base_url`` like the providers would."""

    base_url: str
    plan: Sequence[Planned]
    offsets: Sequence[float] | None = None  # default: as fast as ``concurrency`` allows
    concurrency: int = 64
    provider_timeout_s: float = 15.0  # Twilio waits 15 s for a webhook's answer
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 1.0
    give_up_s: float = 180.0  # per message, from its first attempt
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    acked: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0

    def __post_init__(self) -> None:
        self.outcomes = {p.key: Outcome() for p in self.plan}
        self._changed = asyncio.Event()
        self._sem = asyncio.Semaphore(self.concurrency)

    async def run(self) -> LoadGen:
        self.started_at = time.monotonic()
        offsets = self.offsets or [0.0] * len(self.plan)
        chains: dict[str, list[tuple[float, Planned]]] = {}
        for at, p in zip(offsets, self.plan, strict=True):
            chains.setdefault(p.contact, []).append((at, p))
        timeout = aiohttp.ClientTimeout(total=self.provider_timeout_s)
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
            asyncio.TaskGroup() as tg,
        ):
            for chain in chains.values():
                tg.create_task(self._chain(session, chain))
        self.finished_at = time.monotonic()
        return self

    async def _chain(
        self, session: aiohttp.ClientSession, chain: list[tuple[float, Planned]]
    ) -> None:
        for at, p in sorted(chain, key=lambda x: x[1].seq):
            delay = self.started_at + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not await self._deliver(session, p):
                return  # a provider keeps a conversation's order: nothing after a lost one

    async def _deliver(self, session: aiohttp.ClientSession, p: Planned) -> bool:
        out = self.outcomes[p.key]
        first = time.monotonic()
        n = 0
        while True:
            n += 1
            status = await self._post(session, p)
            out.attempts += 1
            if 200 <= status < 300:
                out.acked = True
                self.acked += 1
                self._changed.set()
                return True
            if 400 <= status < 500 and status != 429:
                out.rejected += 1
                return False
            if time.monotonic() - first > self.give_up_s:
                out.gave_up = True
                return False
            cap = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(n - 1, 16))
            await asyncio.sleep(cap / 2 + random.uniform(0, cap / 2))

    async def _post(self, session: aiohttp.ClientSession, p: Planned) -> int:
        async with self._sem:
            t0 = time.monotonic()
            try:
                async with session.post(
                    self.base_url + p.path, data=p.body, headers=dict(p.headers)
                ) as r:
                    await r.read()
                    status = r.status
            except TimeoutError:
                status = TIMEOUT
            except (aiohttp.ClientError, OSError):
                status = CONNECTION_ERROR
            self.attempts.append(Attempt(p.key, t0, time.monotonic() - t0, status))
            return status

    async def wait_acked(self, k: int, limit_s: float = 60.0) -> None:
        """Until ``k`` messages got their 2xx (to trigger a fault mid-load)."""
        async with asyncio.timeout(limit_s):
            while self.acked < k:
                self._changed.clear()
                await self._changed.wait()

    # -- figures ---------------------------------------------------------------------------

    def codes(self, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(a.status for a in self.attempts if since <= a.started < until)

    def max_latency_s(self, status: int | None = None) -> float:
        lat = [a.latency_s for a in self.attempts if status is None or a.status == status]
        return max(lat, default=0.0)

    def first_2xx_after(self, t: float) -> float | None:
        """When the first 2xx answer of an attempt started at or after ``t`` arrived."""
        ok = [
            a.started + a.latency_s
            for a in self.attempts
            if a.started >= t and 200 <= a.status < 300
        ]
        return min(ok, default=None)

    def summary(self) -> dict[str, object]:
        c = self.codes()
        return {
            "planned": len(self.plan),
            "acked": self.acked,
            "requests": len(self.attempts),
            "retries": len(self.attempts) - self.acked,
            "2xx": sum(v for k, v in c.items() if 200 <= k < 300),
            "5xx": sum(v for k, v in c.items() if k >= 500),
            "conn_errors": c[CONNECTION_ERROR],
            "timeouts": c[TIMEOUT],
            "rejected_4xx": sum(o.rejected for o in self.outcomes.values()),
            "gave_up": sum(o.gave_up for o in self.outcomes.values()),
            "max_latency_s": round(self.max_latency_s(), 3),
            "duration_s": round(self.finished_at - self.started_at, 2),
        }
