"""bantuan.kemnaker.go.id, the ministry's service-center portal, as a channel.

The integration contract (the hub defines it; ``tests/fixtures/portal/README.md`` has examples):

Portal → hub, webhooks ``POST /webhooks/portal/{account}``, ``Content-Type: application/json``:

* ``X-Portal-Timestamp: <unix seconds>`` and
  ``X-Portal-Signature: sha256=<hex HMAC-SHA256(webhook_secret, f"{timestamp}.{raw body}")>``.
  The hub compares the whole header value in constant time against the one it computes over
  the raw bytes; a missing or wrong signature raises ``SignatureError``; a correct signature
  whose timestamp is more than ``replay_window_s`` (300 s) in the past or the future raises
  ``StaleSignature`` (a ``SignatureError``: answer 401). A replay inside the window is harmless:
  ``message.id`` is the dedupe key.
* Body: ``{"event": "request.created" | "request.replied", "event_id": "...",
  "request": {"id": "REQ-2026-000123", "category", "subject", "created_at", "status"},
  "message": {"id", "text", "created_at"?, "attachments": [{"url", "name", "content_type",
  "size"}]}, "citizen": {"account_id", "name", "email", "phone", "nik"}}``.
  Required: event (one of the two), request.id (``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``),
  message.id, text or an attachment, and one of citizen phone / email / account_id.

Normalization: channel ``portal``, kind ``portal``, ``provider_id`` = message id; sender
``phone:+62…`` when the citizen's phone is valid (so the portal, WhatsApp and the call center
share one contact), else ``email:<lower-cased>``, else ``portal:<account_id>``; the other
identities go in ``meta["identity.phone"|"identity.email"|"identity.portal"]``; thread hint
``portal-request:<request id>``; ``reply_address`` and ``meta["reply_context"]``
(``{"portal_request": id}``) name the request a reply goes to. The NIK is never kept in clear:
``meta["nik_masked"]`` (first 2 + last 4 digits) and ``meta["nik_hash"]`` (hex HMAC-SHA256 under
``nik_hash_key``, falling back to the webhook secret); it is masked in ``text`` and ``raw`` too.

Hub → portal, REST with ``Authorization: Bearer <api_token>``:

* ``POST {api_base_url}/api/v1/requests/{request_id}/replies`` with ``Idempotency-Key: <hub
  reply id>`` and ``{"reply_id": <hub reply id>, "text": ...}``: 201 (or 200 for a repeated
  key) ``{"id": "<portal reply id>"}`` is accepted; 408, 429 and 5xx, timeouts and refused
  connections are transient (``Retry-After`` in seconds or an HTTP date is honoured); other
  4xx are refusals, with ``{"error": {"code", "message"}}`` as the error code.
* ``GET {api_base_url}/api/v1/events?after=<cursor>&limit=100`` →
  ``{"events": [<webhook body>...], "next_cursor": "..."}`` (``after`` omitted on first poll):
  the polling fallback (``PortalPoller``), which persists ``next_cursor`` only after every event
  of the page was durably accepted.
* ``POST {api_base_url}/api/v1/requests/{request_id}/status`` with ``Idempotency-Key`` and
  ``{"status": "open" | "resolved" | "closed", "ticket_number": "KMN-…", "changed_at": ISO
  8601}``: the hub ticket's status, mirrored (``PortalChannel.mirror_status``); 200/201/204
  accepted, 408/429/5xx transient (``TransientSendError``), other 4xx ``StatusMirrorRefused``.

``docs/portal-contract.openapi.json`` is the same contract as an OpenAPI 3.1 document.
"""

from __future__ import annotations

from channels.portal.channel import PortalChannel, StatusMirrorRefused
from channels.portal.contract import PortalAccount, StaleSignature, sign
from channels.portal.poller import CursorStore, PortalPoller

__all__ = [
    "CursorStore",
    "PortalAccount",
    "PortalChannel",
    "PortalPoller",
    "StaleSignature",
    "StatusMirrorRefused",
    "sign",
]
