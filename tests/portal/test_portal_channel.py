"""The bantuan.kemnaker.go.id portal channel: signatures, parsing, sends, and the poller."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.redis_portal_cursor import RedisPortalCursor, cursor_key
from adapters.redis_server import free_port
from adapters.scripts import AnyRedis
from channels.base import Channel, InboundRequest, PayloadError, SignatureError, TransientSendError
from channels.portal import PortalAccount, PortalChannel, PortalPoller, StaleSignature
from channels.portal.channel import retry_after
from hub.demo.fake_portal import FakePortal, Scripted, make_event, signed_headers
from hub.model import DeliveryState, Message, OutboundReply
from tests.helpers import redis_client

FIXTURES = Path(__file__).parent.parent / "fixtures" / "portal"
SECRET = "whsec-portal-0123456789abcdef"
TOKEN = "portal-api-token-0123456789"
NOW = 1_772_000_000.0
NIK = "3201234507890001"


def settings(base_url: str = "http://127.0.0.1:9", **kw: Any) -> PortalAccount:
    return PortalAccount(api_base_url=base_url, api_token=TOKEN, webhook_secret=SECRET, **kw)  # type: ignore[arg-type]


def channel(base_url: str = "http://127.0.0.1:9", **kw: Any) -> PortalChannel:
    return PortalChannel("bantuan", settings(base_url, **kw), clock=lambda: NOW)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(body: bytes, ts: float = NOW, secret: str = SECRET, **drop: bool) -> InboundRequest:
    headers = {k.lower(): v for k, v in signed_headers(secret, body, int(ts)).items()}
    for name in drop:
        headers.pop(name.replace("_", "-"), None)
    return InboundRequest(
        url="https://hub.example/webhooks/portal/bantuan",
        headers=headers,
        body=body,
        content_type="application/json",
    )


def parse(name: str, ch: PortalChannel | None = None) -> Message:
    parsed = (ch or channel()).parse(request(fixture(name)), NOW)
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def reply(reply_id: str = "rep-1", **kw: Any) -> OutboundReply:
    base: dict[str, Any] = {
        "reply_id": reply_id,
        "ticket_id": "t-1",
        "channel": "portal",
        "account": "bantuan",
        "to": "REQ-2026-000123",
        "text": "Laporan Anda sedang kami tindak lanjuti.",
        "context": {"portal_request": "REQ-2026-000123"},
    }
    return OutboundReply(**(base | kw))


@pytest.fixture
async def fake() -> AsyncIterator[FakePortal]:
    portal = FakePortal(TOKEN)
    await portal.start()
    yield portal
    await portal.stop()


@pytest.fixture
async def live(fake: FakePortal) -> AsyncIterator[PortalChannel]:
    ch = channel(fake.base_url, send_timeout_s=0.5)
    yield ch
    await ch.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AnyRedis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


# -- signatures --------------------------------------------------------------------------


def test_is_a_channel() -> None:
    """The portal channel satisfies the Channel protocol and never shows its secrets."""
    ch = channel()
    assert isinstance(ch, Channel)
    assert SECRET not in repr(ch)
    assert TOKEN not in repr(ch)


def test_valid_signature_passes() -> None:
    """A body signed with the webhook secret and a current timestamp verifies."""
    channel().verify(request(fixture("request_created.json")))


def test_forged_signature_rejected() -> None:
    """A signature made with another secret is refused as forged (not stale)."""
    with pytest.raises(SignatureError, match="does not match") as exc:
        channel().verify(request(fixture("request_created.json"), secret="x" * 32))
    assert not isinstance(exc.value, StaleSignature)


def test_tampered_body_rejected() -> None:
    """Changing one byte of a signed body breaks the signature."""
    good = request(fixture("request_created.json"))
    bad = InboundRequest(good.url, good.headers, good.body.replace(b"u-1001", b"u-1009"))
    with pytest.raises(SignatureError, match="does not match"):
        channel().verify(bad)


def test_tampered_timestamp_rejected() -> None:
    """The timestamp is signed: moving it (to dodge the window) breaks the signature."""
    good = request(fixture("request_created.json"), ts=NOW - 1000)
    bad = InboundRequest(good.url, good.headers | {"x-portal-timestamp": str(int(NOW))}, good.body)
    with pytest.raises(SignatureError, match="does not match"):
        channel().verify(bad)


def test_missing_signature_rejected() -> None:
    """No X-Portal-Signature header is a SignatureError."""
    with pytest.raises(SignatureError, match="missing X-Portal-Signature"):
        channel().verify(request(fixture("request_created.json"), x_portal_signature=True))


def test_missing_timestamp_rejected() -> None:
    """No X-Portal-Timestamp header is a SignatureError."""
    with pytest.raises(SignatureError, match="missing X-Portal-Timestamp"):
        channel().verify(request(fixture("request_created.json"), x_portal_timestamp=True))


def test_stale_signature_rejected() -> None:
    """A genuine signature 301 s old is stale (StaleSignature, status 401)."""
    with pytest.raises(StaleSignature, match="old") as exc:
        channel().verify(request(fixture("request_created.json"), ts=NOW - 301))
    assert exc.value.status == 401
    assert isinstance(exc.value, SignatureError)


def test_future_signature_rejected() -> None:
    """A timestamp 301 s in the future is outside the window too."""
    with pytest.raises(StaleSignature, match="future"):
        channel().verify(request(fixture("request_created.json"), ts=NOW + 301))


def test_window_edges_and_configurable() -> None:
    """299 s either side passes with the default window; a 30 s window refuses 60 s."""
    body = fixture("request_created.json")
    channel().verify(request(body, ts=NOW - 299))
    channel().verify(request(body, ts=NOW + 299))
    with pytest.raises(StaleSignature):
        channel(replay_window_s=30).verify(request(body, ts=NOW - 60))


# -- malformed payloads --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad_json.json", "not valid JSON"),
        ("missing_message_id.json", "message.id is missing"),
        ("unknown_event.json", "unknown event 'request.deleted'"),
    ],
)
def test_malformed_fixtures(name: str, reason: str) -> None:
    """Bad JSON, a missing message id and an unknown event are PayloadErrors with reasons."""
    with pytest.raises(PayloadError, match=reason):
        parse(name)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e["request"].update(id="../../admin"), "not a portal request id"),
        (lambda e: e.update(citizen={"name": "x"}), "no usable phone, e-mail or account_id"),
        (lambda e: e["message"].update(text=" "), "neither text nor attachments"),
        (lambda e: e["message"].update(attachments=[{"url": "file:///etc/passwd"}]), "http"),
        (lambda e: e.update(message="hi"), "message must be an object"),
    ],
)
def test_malformed_events(mutate: Any, reason: str) -> None:
    """Unsafe request ids, no identity, empty messages and odd types are refused."""
    event = make_event(1)
    mutate(event)
    with pytest.raises(PayloadError, match=reason):
        channel().parse_event(event, NOW)


def test_wrong_content_type_and_non_object() -> None:
    """A form body or a JSON array is not a portal event."""
    form = InboundRequest("u", {}, b"a=1", content_type="application/x-www-form-urlencoded")
    with pytest.raises(PayloadError, match="application/json"):
        channel().parse(form, NOW)
    with pytest.raises(PayloadError, match="JSON object"):
        channel().parse(InboundRequest("u", {}, b"[]", content_type="application/json"), NOW)


def test_no_status_callbacks() -> None:
    """The portal has no delivery-status callbacks: parse_status refuses."""
    with pytest.raises(PayloadError, match="no delivery-status"):
        channel().parse_status(request(b"{}"))


# -- normalization -------------------------------------------------------------------------


def test_phone_preferred() -> None:
    """A valid phone is the sender; e-mail and portal account go to meta; thread and context."""
    m = parse("request_created.json")
    assert (m.channel, m.account, m.kind, m.provider_id) == (
        "portal",
        "bantuan",
        "portal",
        "msg-0001",
    )
    assert m.sender == "phone:+6281234567890"
    assert m.meta["identity.email"] == "email:siti.rahayu@example.id"
    assert m.meta["identity.portal"] == "portal:u-1001"
    assert m.thread_hints == ("portal-request:REQ-2026-000123",)
    assert m.reply_address == "REQ-2026-000123"
    assert json.loads(m.meta["reply_context"]) == {"portal_request": "REQ-2026-000123"}
    assert m.meta["category"] == "pengupahan"
    assert m.meta["event"] == "request.created"
    assert m.display_name == "Siti Rahayu"
    assert m.attachments[0].name == "slip-gaji.pdf"
    assert m.attachments[0].size == 48213
    assert m.provider_ts is not None


def test_replied_event_same_contact_and_thread() -> None:
    """A citizen's reply in another phone notation lands on the same identity and thread."""
    first, second = parse("request_created.json"), parse("request_replied.json")
    assert second.sender == first.sender
    assert second.thread_hints == first.thread_hints
    assert second.meta["event"] == "request.replied"
    assert second.meta["nik_hash"] == first.meta["nik_hash"]


def test_email_fallback() -> None:
    """An invalid phone (081234) falls back to the lower-cased e-mail."""
    m = parse("email_only.json")
    assert m.sender == "email:budi@example.id"
    assert m.meta["identity.portal"] == "portal:u-1002"
    assert m.meta["phone_unusable"] == "1"
    assert "identity.phone" not in m.meta


def test_portal_account_fallback() -> None:
    """Neither phone nor e-mail: the portal account is the identity."""
    m = parse("account_only.json")
    assert m.sender == "portal:u-1003"
    assert "identity.email" not in m.meta


def test_nik_never_in_clear() -> None:
    """The NIK is masked and hashed in meta and absent from repr, JSON, raw and text."""
    m = parse("request_created.json")
    assert m.meta["nik_masked"] == "32**********0001"
    expected = hmac.new(SECRET.encode(), NIK.encode(), hashlib.sha256).hexdigest()
    assert m.meta["nik_hash"] == expected
    for rendered in (repr(m), m.to_json(), m.raw, m.text, json.dumps(m.meta)):
        assert NIK not in rendered
    assert "32**********0001" in m.text
    assert Message.from_json(m.to_json()) == m


def test_nik_hash_key_setting() -> None:
    """With nik_hash_key set, the hash uses it (one hub-wide key, not the webhook secret)."""
    key = "hub-wide-nik-key-0123456789"
    m = parse("request_created.json", channel(nik_hash_key=key))
    assert m.meta["nik_hash"] == hmac.new(key.encode(), NIK.encode(), hashlib.sha256).hexdigest()


def test_invalid_nik_not_kept() -> None:
    """A NIK that is not 16 digits is flagged, never stored."""
    m = channel().parse_event(make_event(1, nik="12345"), NOW)
    assert m.meta["nik_invalid"] == "1"
    assert "nik_hash" not in m.meta
    assert '"12345"' not in m.raw


# -- sending -------------------------------------------------------------------------------


async def test_send_accepted(fake: FakePortal, live: PortalChannel) -> None:
    """201: accepted with the portal's reply id; Idempotency-Key, bearer and body sent."""
    result = await live.send(reply())
    assert result.accepted
    assert result.state is DeliveryState.SENT
    assert result.provider_id == "RPL-000001"
    [sent] = fake.requests
    assert sent.request_id == "REQ-2026-000123"
    assert sent.idempotency_key == "rep-1"
    assert sent.body == {"reply_id": "rep-1", "text": reply().text}


async def test_send_idempotent_retry(fake: FakePortal, live: PortalChannel) -> None:
    """Sending the same reply id twice yields one portal reply (200 with the same id)."""
    first, second = await live.send(reply()), await live.send(reply())
    assert first.provider_id == second.provider_id
    assert len(fake.replies) == 1
    assert [r.status for r in fake.requests] == [201, 200]


async def test_send_refused_with_code(fake: FakePortal, live: PortalChannel) -> None:
    """400 is a final refusal carrying the portal's error code."""
    fake.reply_script.append(Scripted(400, "request_closed", "the request is closed"))
    result = await live.send(reply())
    assert not result.accepted
    assert result.state is DeliveryState.FAILED
    assert (result.error_code, result.error_message) == ("request_closed", "the request is closed")
    assert fake.requests[0].idempotency_key == "rep-1"


async def test_send_429_retry_after(fake: FakePortal, live: PortalChannel) -> None:
    """429 is transient with the portal's Retry-After."""
    fake.reply_script.append(Scripted(429, "rate_limited", headers={"Retry-After": "7"}))
    with pytest.raises(TransientSendError) as exc:
        await live.send(reply())
    assert (exc.value.retry_after, exc.value.code) == (7.0, "429")
    assert fake.requests[0].idempotency_key == "rep-1"


async def test_send_500_transient(fake: FakePortal, live: PortalChannel) -> None:
    """500 is transient, without a hint."""
    fake.reply_script.append(Scripted(500))
    with pytest.raises(TransientSendError, match="500") as exc:
        await live.send(reply())
    assert exc.value.retry_after is None


async def test_send_timeout_transient(fake: FakePortal, live: PortalChannel) -> None:
    """A portal that does not answer within send_timeout_s is transient."""
    fake.reply_script.append(Scripted(hang=True))
    with pytest.raises(TransientSendError, match="timed out"):
        await live.send(reply())


async def test_send_connection_refused() -> None:
    """Nothing listening on the API port is transient."""
    ch = channel(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TransientSendError, match="connection failed"):
            await ch.send(reply())
    finally:
        await ch.aclose()


async def test_send_bad_token_refused(fake: FakePortal) -> None:
    """A wrong API token is a final refusal (401 unauthorized), not a retry loop."""
    acct = settings(fake.base_url).model_copy(update={"api_token": SecretStr("wrong-token-xyz")})
    ch = PortalChannel("bantuan", acct)
    try:
        result = await ch.send(reply())
    finally:
        await ch.aclose()
    assert not result.accepted
    assert result.error_code == "unauthorized"


async def test_send_without_request_refused(fake: FakePortal, live: PortalChannel) -> None:
    """A reply naming no valid portal request is refused before any call."""
    result = await live.send(reply(to="", context={}))
    assert not result.accepted
    assert result.error_code == "no_portal_request"
    bad = await live.send(reply(context={"portal_request": "../x"}))
    assert bad.error_code == "no_portal_request"
    assert fake.requests == []


def test_retry_after_http_date() -> None:
    """Retry-After as an HTTP date becomes seconds from now."""
    assert retry_after("Fri, 01 Jan 2021 00:01:00 GMT", 1609459200.0) == 60.0
    assert retry_after("soon", 0.0) is None


# -- polling -------------------------------------------------------------------------------


def poller(
    live: PortalChannel, redis: AnyRedis, seen: list[Message], fail_on: str = ""
) -> PortalPoller:
    async def on_message(m: Message) -> None:
        if m.provider_id == fail_on:
            raise RuntimeError("inbound stream unavailable")
        seen.append(m)

    return PortalPoller(live, RedisPortalCursor(redis), on_message, clock=lambda: NOW)


async def test_poll_in_order_and_cursor(
    fake: FakePortal, live: PortalChannel, redis: AnyRedis
) -> None:
    """Events are handed over in order and the cursor lands in hub:{portal}:cursor:<account>."""
    fake.events.extend(make_event(i) for i in range(1, 4))
    seen: list[Message] = []
    assert await poller(live, redis, seen).poll_once() == 3
    assert [m.provider_id for m in seen] == ["msg-1", "msg-2", "msg-3"]
    assert await redis.get(cursor_key("bantuan")) == b"3"
    assert fake.event_reads[0] == {"limit": "100"}


async def test_cursor_only_after_callback(
    fake: FakePortal, live: PortalChannel, redis: AnyRedis
) -> None:
    """While the callback runs the cursor has not moved; it moves once the page is through."""
    fake.events.extend(make_event(i) for i in range(1, 3))
    store = RedisPortalCursor(redis)
    during: list[str | None] = []

    async def on_message(m: Message) -> None:
        during.append(await store.get("bantuan"))

    await PortalPoller(live, store, on_message).poll_once()
    assert during == [None, None]
    assert await store.get("bantuan") == "2"


async def test_failing_callback_keeps_cursor(
    fake: FakePortal, live: PortalChannel, redis: AnyRedis
) -> None:
    """A callback failure leaves the cursor; the next poll re-reads the page."""
    fake.events.extend(make_event(i) for i in range(1, 4))
    seen: list[Message] = []
    with pytest.raises(RuntimeError):
        await poller(live, redis, seen, fail_on="msg-2").poll_once()
    assert [m.provider_id for m in seen] == ["msg-1"]
    assert await redis.get(cursor_key("bantuan")) is None
    await poller(live, redis, seen).poll_once()
    assert [m.provider_id for m in seen] == ["msg-1", "msg-1", "msg-2", "msg-3"]
    assert await redis.get(cursor_key("bantuan")) == b"3"


async def test_restart_resumes_after_cursor(
    fake: FakePortal, live: PortalChannel, redis: AnyRedis, redis_url: str
) -> None:
    """A new poller (a restart) reads from the stored cursor: only new events arrive."""
    fake.events.extend(make_event(i) for i in range(1, 3))
    seen: list[Message] = []
    await poller(live, redis, seen).poll_once()
    fake.events.extend(make_event(i) for i in range(3, 5))
    after: list[Message] = []
    other = redis_client(redis_url)
    try:
        assert await poller(live, other, after).poll_once() == 2
    finally:
        await other.aclose()
    assert [m.provider_id for m in after] == ["msg-3", "msg-4"]
    assert fake.event_reads[-1]["after"] == "2"


async def test_portal_down_keeps_cursor(
    fake: FakePortal, live: PortalChannel, redis: AnyRedis
) -> None:
    """A 503 from the events list raises and moves nothing."""
    await RedisPortalCursor(redis).set("bantuan", "5")
    fake.events_script.append(Scripted(503, headers={"Retry-After": "30"}))
    with pytest.raises(TransientSendError):
        await poller(live, redis, []).poll_once()
    assert await redis.get(cursor_key("bantuan")) == b"5"


async def test_malformed_event_skipped(
    fake: FakePortal, live: PortalChannel, redis: AnyRedis
) -> None:
    """A malformed event in the list is skipped; the rest go through and the cursor moves."""
    bad = make_event(2)
    del bad["message"]["id"]
    fake.events.extend([make_event(1), bad, make_event(3)])
    seen: list[Message] = []
    p = poller(live, redis, seen)
    await p.poll_once()
    assert [m.provider_id for m in seen] == ["msg-1", "msg-3"]
    assert p.skipped == 1
    assert await redis.get(cursor_key("bantuan")) == b"3"


async def test_run_catches_up_in_pages(fake: FakePortal, redis: AnyRedis) -> None:
    """run() reads full pages back to back after downtime and stops when asked."""
    ch = channel(fake.base_url, poll_limit=2, poll_interval_s=60)
    fake.events.extend(make_event(i) for i in range(1, 6))
    stop = asyncio.Event()
    seen: list[Message] = []

    async def on_message(m: Message) -> None:
        seen.append(m)
        if len(seen) == 5:
            stop.set()

    try:
        await asyncio.wait_for(PortalPoller(ch, RedisPortalCursor(redis), on_message).run(stop), 10)
    finally:
        await ch.aclose()
    assert [m.provider_id for m in seen] == [f"msg-{i}" for i in range(1, 6)]
    assert await redis.get(cursor_key("bantuan")) == b"5"


async def test_run_reports_the_portal_health(fake: FakePortal, redis: AnyRedis) -> None:
    """A portal that refuses connections is reported down (what the source_unreachable
    alert reads), one that answers is reported up; the poller keeps its schedule."""
    reports: list[tuple[bool, str]] = []
    stop = asyncio.Event()

    async def on_health(healthy: bool, detail: str) -> None:
        reports.append((healthy, detail))
        stop.set()

    async def on_message(m: Message) -> None:
        pass

    for base in (f"http://127.0.0.1:{free_port()}", fake.base_url):
        stop.clear()
        ch = channel(base, poll_interval_s=60)
        p = PortalPoller(ch, RedisPortalCursor(redis), on_message, on_health=on_health)
        try:
            await asyncio.wait_for(p.run(stop), 10)
        finally:
            await ch.aclose()
    [(down, detail), (up, _)] = reports
    assert (down, up) == (False, True)
    assert detail  # the error's type, for the alert text


# -- status mirroring ----------------------------------------------------------------------


async def test_mirror_status_posts_the_status(fake: FakePortal, live: PortalChannel) -> None:
    """Bearer, Idempotency-Key and {status, ticket_number, changed_at}; a repeat is a 200."""
    await live.mirror_status("REQ-2026-000123", "resolved", "KMN-2026-000007", "k-1")
    await live.mirror_status("REQ-2026-000123", "resolved", "KMN-2026-000007", "k-1")
    first, again = fake.status_calls
    assert (first.request_id, first.idempotency_key, first.status) == (
        "REQ-2026-000123",
        "k-1",
        201,
    )
    assert first.body == {
        "status": "resolved",
        "ticket_number": "KMN-2026-000007",
        "changed_at": "2026-02-25T06:13:20+00:00",
    }
    assert again.status == 200


async def test_mirror_status_errors_are_typed(fake: FakePortal, live: PortalChannel) -> None:
    """429/5xx are transient (with Retry-After); other 4xx are refusals with the code."""
    from channels.portal import StatusMirrorRefused

    fake.status_script.append(Scripted(429, "rate_limited", headers={"Retry-After": "3"}))
    with pytest.raises(TransientSendError) as transient:
        await live.mirror_status("REQ-1", "closed", "KMN-1", "k-2")
    assert transient.value.retry_after == 3.0
    fake.status_script.append(Scripted(409, "request_locked", "locked"))
    with pytest.raises(StatusMirrorRefused) as refused:
        await live.mirror_status("REQ-1", "closed", "KMN-1", "k-2")
    assert refused.value.code == "request_locked"
    with pytest.raises(StatusMirrorRefused):
        await live.mirror_status("../etc", "closed", "KMN-1", "k-3")
    with pytest.raises(StatusMirrorRefused):
        await live.mirror_status("REQ-1", "pending", "KMN-1", "k-3")
    assert len(fake.status_calls) == 2
