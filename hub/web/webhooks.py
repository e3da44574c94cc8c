"""Provider webhooks: verify, parse, put on the stream, and only then answer 2xx.

A refusal is always specific: 404 unknown account, 403 bad signature, 400 malformed (with the
reason), 413 too large, 503 when the message cannot be stored (so the provider retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from channels.base import (
    Channel,
    InboundRequest,
    PayloadError,
    SignatureError,
    SubscriptionHandshake,
)
from channels.calls import events as call_events
from hub.call_events import handle_call_event
from hub.model import Message
from hub.web.common import HUB, SUMMARIZED, client_ip, error

log = structlog.get_logger("hub.webhooks")
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_EMPTY_TWIML = EMPTY_TWIML.encode()
MAX_FIELDS = 500
THROTTLE_LOOKUP_S = 0.25  # the forgers' quota lookup fails open after this
CLEAN_FOR_S = 1.0  # a client found under its forger quota is not looked up again for this
FORM = "application/x-www-form-urlencoded"


def parse_form(text: str, max_fields: int = MAX_FIELDS) -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields)``,
    pair for pair and with the same ValueError past ``max_fields``, in about half the time:
    ``+`` and ``%`` are looked for before ``replace`` and ``unquote`` are called for them
    (most of a Twilio form's fields have neither), and an escaped ASCII field is unquoted in
    one piece (what ``unquote`` does with a string that has no non-ASCII character)."""
    if not text:
        return []
    if text.count("&") + 1 > max_fields:
        raise ValueError("Max number of fields exceeded")
    out = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = _unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = _unquote(value)
        out.append((name, value))
    return out


def _unquote(text: str) -> str:
    if text.isascii():
        return unquote_to_bytes(text).decode("utf-8", "replace")
    return unquote(text)


def _content_type(request: web.Request) -> str:
    """``request.content_type``; a form's header as providers send it is taken as it is."""
    raw = request.headers.get("Content-Type")
    return FORM if raw == FORM else (request.content_type or "")


async def _inbound_request(request: web.Request, channel: str) -> InboundRequest | web.Response:
    hub = request.app[HUB]
    limit = hub.settings.hub.max_body_bytes
    if (request.content_length or 0) > limit:
        hub.metrics.webhook_rejected.labels(channel, "too_large").inc()
        return error(413, "payload_too_large", f"body above {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        hub.metrics.webhook_rejected.labels(channel, "too_large").inc()
        return error(413, "payload_too_large", f"body above {limit} bytes")
    form: list[tuple[str, str]] = []
    ctype = _content_type(request)
    if ctype == FORM:
        try:
            form = parse_form(body.decode("utf-8"))
        except UnicodeDecodeError:
            return error(400, "bad_encoding", "form body is not UTF-8")
        except ValueError:
            return error(400, "too_many_fields", f"more than {MAX_FIELDS} form fields")
    return InboundRequest(
        url=hub.settings.hub.public_url + request.raw_path,
        headers={k.lower(): _text(v) for k, v in request.headers.items()},
        body=body,
        form=form,
        content_type=ctype,
    )


def _text(value: str) -> str:
    """A header value as text the channels can encode again: bytes that were not UTF-8
    (kept by aiohttp as surrogates) become U+FFFD, so a signature check fails instead of
    raising."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _unicode(*texts: str) -> bool:
    """False when JSON escapes produced lone surrogates, which cannot be stored."""
    try:
        for t in texts:
            t.encode()
    except UnicodeEncodeError:
        return False
    return True


def _account_channel(request: web.Request, channel: str) -> Channel | web.Response:
    """The path's account of ``channel``, or the 404 that names it."""
    hub = request.app[HUB]
    account = request.match_info["account"]
    ch = hub.channels.get(channel, account)
    if ch is None:
        hub.metrics.webhook_rejected.labels(channel, "unknown_account").inc()
        return error(404, "unknown_account", f"no {channel} account {account!r} on this hub")
    structlog.contextvars.bind_contextvars(channel=channel, account=account)
    return ch


async def _verified(
    request: web.Request, channel: str
) -> tuple[Channel, InboundRequest] | web.Response:
    """The account's channel and the request, once the provider's signature checks out."""
    ch = _account_channel(request, channel)
    if isinstance(ch, web.Response):
        return ch
    throttled = await _forger_throttled(request, channel)
    if throttled is not None:
        return throttled
    req = await _inbound_request(request, channel)
    if isinstance(req, web.Response):
        return req
    try:
        ch.verify(req)
    except SignatureError as exc:
        request.app[HUB].metrics.webhook_rejected.labels(channel, "signature").inc()
        log.warning("webhook.forged", reason=str(exc))
        request.app[CLEAN_CLIENTS].forged(_forger_bucket(request))
        await _count_forgery(request)
        code = "stale_signature" if exc.status == 401 else "bad_signature"
        return error(exc.status, code, str(exc))
    return ch, req


def _forger_bucket(request: web.Request) -> str:
    return f"webhook:forged:{client_ip(request)}"


class CleanClients:
    """Clients that Redis found under their quota of forged calls, trusted to stay under it
    for ``CLEAN_FOR_S``: their next calls skip the lookup, so a provider's calls cost one GET
    a second instead of one each. A forged call seen here forgets its client at once, and a
    lookup that overlapped with any forged call is not remembered: in one process the quota
    applies exactly as if every call looked it up. Several processes learn of each other's
    forged calls within ``CLEAN_FOR_S`` (a forger spreading over N processes can get at most
    one more refusal per process than its quota before the 429s, as a 403)."""

    MAX_CLIENTS = 10_000

    def __init__(self) -> None:
        self.until: dict[str, float] = {}
        self.forged_calls = 0  # seen by this process

    def is_clean(self, bucket: str, now: float) -> bool:
        return self.until.get(bucket, 0.0) > now

    def remember(self, bucket: str, since: float, forged_calls_before: int) -> None:
        if self.forged_calls != forged_calls_before:
            return  # a forged call came in while Redis was asked: its answer may predate it
        if len(self.until) >= self.MAX_CLIENTS:
            self.until.clear()
        self.until[bucket] = since + CLEAN_FOR_S

    def forged(self, bucket: str) -> None:
        self.forged_calls += 1
        self.until.pop(bucket, None)


CLEAN_CLIENTS: web.AppKey[CleanClients] = web.AppKey("clean_clients", CleanClients)
# The inbound counter's child per (channel, account), looked up once (``labels`` validates
# and locks on every call).
INBOUND_COUNTERS: web.AppKey[dict[tuple[str, str], Any]] = web.AppKey("inbound_counters", dict)


async def _forger_throttled(request: web.Request, channel: str) -> web.Response | None:
    """A client past its quota of forged calls gets 429 before the body is even read, so a
    flood of unsigned traffic costs one Redis GET each. Providers sign every call, so they
    never get here; if Redis is away, the signature check still protects (fail open). A
    client found under its quota is not looked up again for a second (``CleanClients``)."""
    hub = request.app[HUB]
    clean = request.app[CLEAN_CLIENTS]
    bucket = _forger_bucket(request)
    now = hub.clock.now()
    if clean.is_clean(bucket, now):
        return None
    forged_before = clean.forged_calls
    limit = hub.settings.hub.forged_webhooks_per_ip_per_minute
    try:
        # Bounded: with Redis frozen, this lookup would otherwise hold every signed call for
        # the socket timeout before its own XADD even starts, past the provider's timeout.
        async with asyncio.timeout(THROTTLE_LOOKUP_S):
            wait = await hub.rate_limit.over(bucket, limit, 60, now)
    except (RedisError, OSError):  # OSError includes the lookup's TimeoutError
        return None
    if not wait:
        clean.remember(bucket, now, forged_before)
        return None
    hub.metrics.webhook_rejected.labels(channel, "rate_limited").inc()
    return error(429, "rate_limited", f"too many badly signed calls; retry in {wait} s",
                 retry_after_s=wait)  # fmt: skip


async def _count_forgery(request: web.Request) -> None:
    hub = request.app[HUB]
    limit = hub.settings.hub.forged_webhooks_per_ip_per_minute
    with contextlib.suppress(RedisError, OSError):  # the 403 stands; the throttle misses one
        await hub.rate_limit.hit(_forger_bucket(request), limit, 60, hub.clock.now())


def _malformed(request: web.Request, channel: str, exc: PayloadError) -> web.Response:
    request.app[HUB].metrics.webhook_rejected.labels(channel, "malformed").inc()
    log.warning("webhook.malformed", reason=str(exc))
    return error(400, "malformed_payload", str(exc))


def _unavailable(request: web.Request, channel: str, exc: Exception) -> web.Response:
    request.app[HUB].metrics.webhook_rejected.labels(channel, "store_unavailable").inc()
    log.error("webhook.store_unavailable", error=repr(exc)[:200])
    return error(503, "store_unavailable", "the hub cannot store this right now; retry")


async def _accept(request: web.Request, channel: str) -> web.Response | int:
    """Verify, parse, and put every message on the stream: the count, or the refusal."""
    hub = request.app[HUB]
    got = await _verified(request, channel)
    if isinstance(got, web.Response):
        return got
    ch, req = got
    try:
        parsed = ch.parse(req, hub.clock.now())
    except PayloadError as exc:
        return _malformed(request, channel, exc)
    except RecursionError:
        return _malformed(request, channel, PayloadError("body is nested too deeply"))
    counters = request.app[INBOUND_COUNTERS]
    try:
        for parsed_msg in parsed.messages:
            msg = _for_its_account(request, parsed_msg)
            entry = await hub.publisher.publish(msg)
            counter = counters.get((msg.channel, msg.account))
            if counter is None:
                counter = hub.metrics.inbound.labels(msg.channel, msg.account)
                counters[msg.channel, msg.account] = counter
            counter.inc()
            log.info(
                "message.received",
                message_id=msg.id,
                provider_id=msg.provider_id,
                entry=entry,
                kind=msg.kind,
            )
            request[SUMMARIZED] = True
        if parsed.statuses:
            await hub.statuses.apply(parsed.statuses)
    except (RedisError, OSError) as exc:
        return _unavailable(request, channel, exc)
    return len(parsed.messages)


def _for_its_account(request: web.Request, msg: Message) -> Message:
    """Meta sends every number's (or profile's) events of one app to one callback URL: the
    payload's recipient id, not the URL, names the account. Unknown ids stay where they
    arrived (the signature proved they are the app's)."""
    rid = msg.meta.get("recipient_id", "")
    if not rid:
        return msg
    owner = request.app[HUB].channels.account_for(msg.channel, rid)
    if owner is None or owner == msg.account:
        return msg
    return replace(msg, account=owner)


async def whatsapp_inbound(request: web.Request) -> web.StreamResponse:
    got = await _accept(request, "whatsapp")
    if isinstance(got, web.Response):
        return got
    account = request.match_info["account"]
    ch = request.app[HUB].channels.get("whatsapp", account)
    if getattr(ch, "provider", "") == "twilio":
        return web.Response(body=_EMPTY_TWIML, content_type="text/xml", charset="utf-8")
    return web.json_response({"accepted": got})


async def instagram_inbound(request: web.Request) -> web.StreamResponse:
    got = await _accept(request, "instagram")
    if isinstance(got, web.Response):
        return got
    return web.json_response({"accepted": got})


def _handshake(channel: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
        hub = request.app[HUB]
        account = request.match_info["account"]
        ch = _account_channel(request, channel)
        if isinstance(ch, web.Response):
            return ch
        if not isinstance(ch, SubscriptionHandshake):
            return error(405, "no_handshake", f"{channel}/{account} takes no subscription GET")
        try:
            challenge = ch.verify_subscription(dict(request.query))
        except SignatureError as exc:
            hub.metrics.webhook_rejected.labels(channel, "signature").inc()
            log.warning("webhook.handshake_refused", channel=channel, account=account)
            return error(403, "bad_verify_token", str(exc))
        except PayloadError as exc:
            return error(400, "malformed_handshake", str(exc))
        log.info("webhook.subscribed", channel=channel, account=account)
        return web.Response(text=challenge, content_type="text/plain")

    return handler


async def telegram_inbound(request: web.Request) -> web.StreamResponse:
    got = await _accept(request, "telegram")
    if isinstance(got, web.Response):
        return got
    return web.json_response({"ok": True})


async def portal_inbound(request: web.Request) -> web.StreamResponse:
    got = await _accept(request, "portal")
    if isinstance(got, web.Response):
        return got
    return web.json_response({"accepted": got})


async def whatsapp_status(request: web.Request) -> web.StreamResponse:
    got = await _verified(request, "whatsapp")
    if isinstance(got, web.Response):
        return got
    ch, req = got
    try:
        update = ch.parse_status(req)
    except PayloadError as exc:
        return _malformed(request, "whatsapp", exc)
    try:
        await request.app[HUB].statuses.apply([update])
    except (RedisError, OSError) as exc:
        return _unavailable(request, "whatsapp", exc)
    return web.Response(status=204)


async def call_event(request: web.Request) -> web.StreamResponse:
    """A live call event (ringing, answered, hangup): who calls, for the screen pop."""
    hub = request.app[HUB]
    account = request.match_info["account"]
    calls = hub.settings.channels.call
    acct = calls.accounts.get(account) if calls.enabled else None
    if acct is None or not acct.events_secret.get_secret_value():
        hub.metrics.webhook_rejected.labels("call", "unknown_account").inc()
        return error(404, "unknown_account", f"no call events for account {account!r}")
    structlog.contextvars.bind_contextvars(channel="call", account=account)
    req = await _inbound_request(request, "call")
    if isinstance(req, web.Response):
        return req
    try:
        call_events.check_signature(
            acct.events_secret.get_secret_value(),
            req.headers.get("x-call-timestamp", ""),
            req.headers.get("x-call-signature", ""),
            req.body,
            hub.clock.now(),
            acct.events_replay_window_s,
        )
    except SignatureError as exc:
        hub.metrics.webhook_rejected.labels("call", "signature").inc()
        log.warning("webhook.forged", reason=str(exc))
        code = "stale_signature" if exc.status == 401 else "bad_signature"
        return error(exc.status, code, str(exc))
    try:
        ev = call_events.parse_event(req.body)
        if not _unicode(ev.event, ev.call_id, ev.caller, ev.queue, ev.agent):
            raise PayloadError("text with lone surrogates")
    except PayloadError as exc:
        return _malformed(request, "call", exc)
    except RecursionError:
        return _malformed(request, "call", PayloadError("body is nested too deeply"))
    region = hub.settings.hub.default_region
    try:
        found = await handle_call_event(ev, acct.unit, account, hub.store, hub.events, region)
    except (RedisError, OSError) as exc:
        return _unavailable(request, "call", exc)
    log.info("call.event", call_event=ev.event, call_id=ev.call_id, known=bool(found.contact_id))
    return web.json_response(found.as_dict())


def setup(app: web.Application) -> None:
    app[CLEAN_CLIENTS] = CleanClients()
    app[INBOUND_COUNTERS] = {}
    app.router.add_post("/webhooks/whatsapp/{account}", whatsapp_inbound)
    app.router.add_get("/webhooks/whatsapp/{account}", _handshake("whatsapp"))
    app.router.add_post("/webhooks/instagram/{account}", instagram_inbound)
    app.router.add_get("/webhooks/instagram/{account}", _handshake("instagram"))
    app.router.add_post("/webhooks/whatsapp/{account}/status", whatsapp_status)
    app.router.add_post("/webhooks/portal/{account}", portal_inbound)
    app.router.add_post("/webhooks/telegram/{account}", telegram_inbound)
    app.router.add_post("/webhooks/call/{account}", call_event)
