"""Provider webhooks: verify, parse, put on the stream, and only then answer 2xx.

A refusal is always specific: 404 unknown account, 403 bad signature, 400 malformed (with the
reason), 413 too large, 503 when the message cannot be stored (so the provider retries).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from channels.base import InboundRequest, PayloadError, SignatureError
from hub.web.common import HUB, error

log = structlog.get_logger("hub.webhooks")
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_FIELDS = 500


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
    ctype = request.content_type or ""
    if ctype == "application/x-www-form-urlencoded":
        try:
            form = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except UnicodeDecodeError:
            return error(400, "bad_encoding", "form body is not UTF-8")
        except ValueError:
            return error(400, "too_many_fields", f"more than {MAX_FIELDS} form fields")
    return InboundRequest(
        url=hub.settings.hub.public_url + request.raw_path,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        form=form,
        content_type=ctype,
    )


async def whatsapp_inbound(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    account = request.match_info["account"]
    ch = hub.channels.get("whatsapp", account)
    if ch is None:
        hub.metrics.webhook_rejected.labels("whatsapp", "unknown_account").inc()
        return error(404, "unknown_account", f"no WhatsApp account {account!r} on this hub")
    structlog.contextvars.bind_contextvars(channel="whatsapp", account=account)
    req = await _inbound_request(request, "whatsapp")
    if isinstance(req, web.Response):
        return req
    try:
        ch.verify(req)
    except SignatureError as exc:
        hub.metrics.webhook_rejected.labels("whatsapp", "signature").inc()
        log.warning("webhook.forged", reason=str(exc))
        return error(403, "bad_signature", str(exc))
    try:
        parsed = ch.parse(req, hub.clock.now())
    except PayloadError as exc:
        hub.metrics.webhook_rejected.labels("whatsapp", "malformed").inc()
        log.warning("webhook.malformed", reason=str(exc))
        return error(400, "malformed_payload", str(exc))
    try:
        for msg in parsed.messages:
            entry = await hub.publisher.publish(msg)
            hub.metrics.inbound.labels(msg.channel, msg.account).inc()
            log.info(
                "message.received",
                message_id=msg.id,
                provider_id=msg.provider_id,
                entry=entry,
                kind=msg.kind,
            )
        if parsed.statuses:
            await hub.statuses.apply(parsed.statuses)
    except (RedisError, OSError) as exc:
        hub.metrics.webhook_rejected.labels("whatsapp", "store_unavailable").inc()
        log.error("webhook.store_unavailable", error=repr(exc)[:200])
        return error(503, "store_unavailable", "the hub cannot store messages right now; retry")
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


async def whatsapp_status(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    account = request.match_info["account"]
    ch = hub.channels.get("whatsapp", account)
    if ch is None:
        return error(404, "unknown_account", f"no WhatsApp account {account!r} on this hub")
    req = await _inbound_request(request, "whatsapp")
    if isinstance(req, web.Response):
        return req
    try:
        ch.verify(req)
    except SignatureError as exc:
        hub.metrics.webhook_rejected.labels("whatsapp", "signature").inc()
        return error(403, "bad_signature", str(exc))
    try:
        update = ch.parse_status(req)
    except PayloadError as exc:
        return error(400, "malformed_payload", str(exc))
    try:
        await hub.statuses.apply([update])
    except (RedisError, OSError):
        return error(503, "store_unavailable", "the hub cannot store statuses right now; retry")
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post("/webhooks/whatsapp/{account}", whatsapp_inbound)
    app.router.add_post("/webhooks/whatsapp/{account}/status", whatsapp_status)
