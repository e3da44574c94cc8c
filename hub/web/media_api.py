"""A citizen's attachment, for an agent who may see its ticket.

Providers hand the hub references, not files: a WhatsApp Cloud media id, a Telegram file id,
an e-mail part stored in the blob store. This endpoint resolves them when an agent opens one,
with the account's credentials, so tokens never reach the browser. Files are served with
``nosniff`` and as downloads unless they are plain media a browser shows safely (a citizen's
HTML or SVG must never run on the console's origin).
"""

from __future__ import annotations

import json
import re

import structlog
from aiohttp import web

from channels.base import MediaSource, PayloadError, TransientSendError
from hub.ports import split_ticket_id
from hub.web.api import json_errors, ticket_id
from hub.web.common import HUB, error

log = structlog.get_logger("hub.media")
INLINE = re.compile(r"^(image/(png|jpeg|gif|webp)|audio/[a-z0-9.+-]+|video/[a-z0-9.+-]+)$")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


def _headers(content_type: str, name: str) -> dict[str, str]:
    ctype = content_type.split(";")[0].strip().lower() or "application/octet-stream"
    inline = bool(INLINE.match(ctype))
    filename = SAFE_NAME.sub("_", name)[:120] or "attachment"
    return {
        "Content-Type": ctype if inline else "application/octet-stream",
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }


@json_errors
async def get_attachment(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    tid = await ticket_id(request)
    cid, n = split_ticket_id(tid)
    entry = await hub.store.get_entry(cid, request.match_info["message"])
    if not entry or entry.get("ticket") != n or entry.get("dir") != "in":
        return error(404, "not_found", "no such message on this ticket")
    body = json.loads(entry.get("json") or "{}")
    attachments = body.get("attachments") or []
    index = request.match_info["index"]
    # ASCII digits only: "²".isdigit() is true, but int("²") fails
    i = int(index) if index.isascii() and index.isdigit() and len(index) <= 6 else -1
    if not 0 <= i < len(attachments):
        return error(404, "not_found", "no such attachment")
    att = attachments[i]
    url, ctype, name = str(att.get("url", "")), str(att.get("content_type", "")), att.get("name")
    name = str(name or f"attachment-{index}")
    if url.startswith(("https://", "http://")):
        raise web.HTTPFound(url)
    if url.startswith("blob:"):
        try:
            data = await hub.blobs.get(url.removeprefix("blob:"))
        except KeyError:
            return error(404, "not_found", "the file is no longer stored")
        return web.Response(body=data, headers=_headers(ctype, name))
    ch = hub.channels.get(str(body.get("channel", "")), str(body.get("account", "")))
    if not isinstance(ch, MediaSource) or not ch.owns_media(url):
        return error(404, "not_found", "the hub cannot fetch this attachment")
    try:
        data, fetched_type = await ch.fetch_media(url, hub.blobs.max_bytes)
    except PayloadError as exc:
        log.warning("media.unavailable", ticket_id=tid, reason=str(exc)[:200])
        return error(404, "media_unavailable", str(exc))
    except TransientSendError as exc:
        log.warning("media.provider_unavailable", ticket_id=tid, reason=str(exc)[:200])
        return error(503, "provider_unavailable", "the provider cannot hand out the file now")
    log.info("media.fetched", ticket_id=tid, channel=ch.name, size=len(data))
    return web.Response(body=data, headers=_headers(fetched_type or ctype, name))


def attachment_path(tid: str, message_id: str, index: int) -> str:
    return f"/api/v1/tickets/{tid}/messages/{message_id}/attachments/{index}"


def setup(app: web.Application) -> None:
    app.router.add_get(
        "/api/v1/tickets/{ticket}/messages/{message}/attachments/{index}", get_attachment
    )
