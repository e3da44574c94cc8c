"""The OpenAPI 3.1 description of the hub's HTTP interface, served at /api/v1/openapi.json.

Request bodies come from the same pydantic models the handlers validate with, so the document
cannot drift from what the API accepts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub import __version__
from hub.web.api import ReplayIn, ReplyIn, StatusIn
from hub.web.reports_api import OPENAPI_PATHS as REPORTS_PATHS
from hub.web.search_api import OPENAPI_PATHS as SEARCH_PATHS

_ERR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"description": desc}
    if schema is not None:
        r["content"] = {"application/json": {"schema": schema}}
    return r


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "Malformed request",
        401: "Missing or bad token",
        403: "Forbidden: a bad signature, or not for your role or unit",
        404: "Not found",
        409: "Conflict with the ticket's state or channel rules",
        413: "Body too large",
        405: "Not possible for this account",
        422: "Cannot be processed as asked",
        503: "Store unavailable; retry",
    }
    return {str(c): _resp(names[c], _ERR) for c in codes}


REF_TEMPLATE = "#/components/schemas/{model}"


def _body(model: type[Any]) -> dict[str, Any]:
    # Nested models are referenced from components (see _hoist_defs): pydantic's own
    # "#/$defs/..." would point at the document's root, where nothing is.
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _hoist_defs(node: Any, into: dict[str, Any]) -> None:
    """Move every ``$defs`` of the bodies' schemas into ``into`` (components.schemas)."""
    if isinstance(node, dict):
        into.update(node.pop("$defs", {}))
        for value in node.values():
            _hoist_defs(value, into)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, into)


TICKET_PARAM = {
    "name": "ticket",
    "in": "path",
    "required": True,
    "description": "Ticket id (<contact>.<n>) or number (KMN-2026-000123)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 80},
}
CONTACT_PARAM = {
    "name": "contact",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 80},
}
ACCOUNT_PARAM = {
    "name": "account",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 40},
}
FORM = {
    "application/x-www-form-urlencoded": {
        "schema": {"type": "object", "additionalProperties": {"type": "string"}}
    }
}


def _op(
    summary: str,
    tag: str,
    body: type[Any] | None = None,
    ok: str = "200",
    errors: tuple[int, ...] = (400, 401, 404, 409),
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {ok: _resp("Done", {"type": "object"}), **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = _body(body)
    if params:
        op["parameters"] = params
    return op


def console_paths() -> dict[str, Any]:
    """The agent console's actions: the queue, claims, notes, transfers, presence, people."""
    from hub.web.console_api import (
        CategoryIn,
        MergeContactIn,
        MergeTicketIn,
        NoteIn,
        PresenceIn,
        PriorityIn,
        TokenIn,
        TransferIn,
        UserIn,
        ViewingIn,
    )

    t = [TICKET_PARAM]
    login = {
        "type": "object",
        "required": ["username", "password"],
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    }
    return {
        "/api/v1/session": {
            "post": {
                "summary": "Sign in: a session cookie and its CSRF token",
                "tags": ["auth"],
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": login}},
                },
                "responses": {"200": _resp("Signed in", {"type": "object"}), **_errors(400, 401)},
            }
        },
        "/api/v1/session/logout": {"post": _op("Sign out", "auth", errors=(401, 403))},
        "/api/v1/me": {"get": _op("Who am I (role, units, CSRF token)", "auth", errors=(401,))},
        "/api/v1/me/tokens": {
            "post": _op(
                "Mint a personal API token (shown once)", "auth", TokenIn, "201", (400, 401, 403)
            )
        },
        "/api/v1/events": {
            "get": {
                "summary": "Live events (server-sent events); Last-Event-ID resumes",
                "tags": ["live"],
                "parameters": [{"name": "since", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "text/event-stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(401),
                },
            }
        },
        "/api/v1/queue": {"get": _op("Waiting tickets per unit, and mine", "queue", errors=(401,))},
        "/api/v1/queue/claim-next": {
            "post": _op("Claim the next ticket of my units", "queue", errors=(401, 403))
        },
        "/api/v1/tickets/{ticket}/claim": {"post": _op("Claim this ticket", "queue", params=t)},
        "/api/v1/tickets/{ticket}/release": {
            "post": _op("Put it back in the queue", "queue", params=t)
        },
        "/api/v1/tickets/{ticket}/lease": {"post": _op("Keep my claim alive", "queue", params=t)},
        "/api/v1/tickets/{ticket}/transfer": {
            "post": _op("Transfer to a unit or agent", "queue", TransferIn, params=t)
        },
        "/api/v1/tickets/{ticket}/notes": {
            "post": _op(
                "Add an internal note",
                "tickets",
                NoteIn,
                "201",
                (400, 401, 404, 409, 422),  # 422: only blanks
                params=t,
            )
        },
        "/api/v1/tickets/{ticket}/priority": {
            "post": _op("Set the priority", "tickets", PriorityIn, params=t)
        },
        "/api/v1/tickets/{ticket}/category": {
            "post": _op("Set the category", "tickets", CategoryIn, params=t)
        },
        "/api/v1/tickets/{ticket}/viewing": {
            "post": _op(
                "I am viewing / typing in / leaving this ticket; who else is",
                "tickets",
                ViewingIn,
                params=t,
            )
        },
        "/api/v1/tickets/{ticket}/merge": {
            "post": _op("Merge this ticket into another", "tickets", MergeTicketIn, params=t)
        },
        "/api/v1/contacts/{contact}/merge": {
            "post": _op(
                "Merge another contact into this one (audited)",
                "contacts",
                MergeContactIn,
                params=[CONTACT_PARAM],
            )
        },
        "/api/v1/contacts/{contact}/unmerge": {
            "post": _op(
                "Undo a contact merge (audited)", "contacts", MergeContactIn, params=[CONTACT_PARAM]
            )
        },
        "/api/v1/attachments": {
            "post": {
                "summary": "Upload a file to send with a reply (the body is the file)",
                "tags": ["tickets"],
                "parameters": [
                    {
                        "name": "name",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {"201": _resp("Stored", {"type": "object"}), **_errors(400, 401, 413)},
            }
        },
        "/api/v1/presence": {
            "post": _op(
                "Set my presence (online, away, offline)", "queue", PresenceIn, errors=(400, 401)
            ),
            "get": _op("Everyone's presence (supervisors)", "queue", errors=(401, 403)),
        },
        "/api/v1/canned": {"get": _op("Canned responses (id, en)", "tickets", errors=(401,))},
        "/api/v1/users": {
            "get": _op("Accounts (supervisors)", "people", errors=(401, 403)),
            "post": _op(
                "Create an account (admins)", "people", UserIn, "201", (400, 401, 403, 409)
            ),
        },
    }


META_SIGNATURE: dict[str, Any] = {
    "name": "X-Hub-Signature-256",
    "in": "header",
    "required": False,
    "description": "sha256=<hex HMAC-SHA256(app secret, raw body)> (Meta accounts)",
    "schema": {"type": "string"},
}


def _meta_handshake(product: str) -> dict[str, Any]:
    query = [
        {"name": name, "in": "query", "required": True, "schema": {"type": "string"}}
        for name in ("hub.mode", "hub.verify_token", "hub.challenge")
    ]
    return {
        "summary": f"{product} webhook subscription check (Meta's handshake)",
        "tags": ["webhooks"],
        "parameters": [ACCOUNT_PARAM, *query],
        "responses": {
            "200": {
                "description": "hub.challenge, echoed",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_errors(400, 403, 404, 405),
        },
    }


def spec() -> dict[str, Any]:
    obj = {"type": "object"}
    paths: dict[str, Any] = {
        "/webhooks/whatsapp/{account}": {
            "get": _meta_handshake("WhatsApp Cloud API"),
            "post": {
                "summary": "WhatsApp inbound: Twilio (form, X-Twilio-Signature) or the Cloud "
                "API (JSON, X-Hub-Signature-256), by the account's provider",
                "tags": ["webhooks"],
                "parameters": [
                    ACCOUNT_PARAM,
                    {
                        "name": "X-Twilio-Signature",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    META_SIGNATURE,
                ],
                "requestBody": {
                    "required": True,
                    "content": {**FORM, "application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": {
                        "description": "Stored on the inbound stream (Twilio: empty TwiML; "
                        "Cloud API: a JSON count)",
                        "content": {
                            "text/xml": {"schema": {"type": "string"}},
                            "application/json": {"schema": {"type": "object"}},
                        },
                    },
                    **_errors(400, 403, 404, 413, 503),
                },
            },
        },
        "/webhooks/whatsapp/{account}/status": {
            "post": {
                "summary": "Twilio status callback for a reply",
                "tags": ["webhooks"],
                "parameters": [
                    ACCOUNT_PARAM,
                    {
                        "name": "X-Twilio-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {"required": True, "content": FORM},
                "responses": {
                    "204": {"description": "Applied (or ignored as stale)"},
                    **_errors(400, 403, 404, 413, 503),
                },
            }
        },
        "/webhooks/instagram/{account}": {
            "get": _meta_handshake("Instagram"),
            "post": {
                "summary": "Instagram messaging webhook (messages, echoes, deletions, reactions, "
                "reads; several events per delivery)",
                "tags": ["webhooks"],
                "parameters": [ACCOUNT_PARAM, {**META_SIGNATURE, "required": True}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _resp("Stored on the inbound stream", {"type": "object"}),
                    **_errors(400, 403, 404, 413, 503),
                },
            },
        },
        "/webhooks/telegram/{account}": {
            "post": {
                "summary": "Telegram Bot API update (setWebhook with a secret token)",
                "tags": ["webhooks"],
                "parameters": [
                    ACCOUNT_PARAM,
                    {
                        "name": "X-Telegram-Bot-Api-Secret-Token",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _resp("Stored on the inbound stream", {"type": "object"}),
                    **_errors(400, 403, 404, 413, 503),
                },
            }
        },
        "/webhooks/portal/{account}": {
            "post": {
                "summary": "bantuan.kemnaker.go.id event (request created, citizen replied)",
                "tags": ["webhooks"],
                "parameters": [
                    ACCOUNT_PARAM,
                    {
                        "name": "X-Portal-Timestamp",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Portal-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _resp("Stored on the inbound stream", {"type": "object"}),
                    "401": _resp("Signature outside the replay window", _ERR),
                    **_errors(400, 403, 404, 413, 503),
                },
            }
        },
        "/webhooks/call/{account}": {
            "post": {
                "summary": "Live call event (ringing, answered, hangup) for the screen pop",
                "description": "Publishes call.<event> to the consoles of the account's unit "
                "and answers with the caller's contact and open tickets; stores nothing.",
                "tags": ["webhooks"],
                "parameters": [
                    ACCOUNT_PARAM,
                    {
                        "name": "X-Call-Timestamp",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Call-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "sha256=<hex HMAC-SHA256(events_secret, "
                        "timestamp + '.' + body)>",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["event", "call_id"],
                                "properties": {
                                    "event": {
                                        "type": "string",
                                        "enum": ["ringing", "answered", "hangup"],
                                    },
                                    "call_id": {"type": "string", "maxLength": 128},
                                    "caller": {"type": "string"},
                                    "queue": {"type": "string"},
                                    "agent": {"type": "string"},
                                    "at": {"type": "number"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _resp(
                        "The caller's contact (empty if unknown) and open ticket ids",
                        {
                            "type": "object",
                            "properties": {
                                "contact_id": {"type": "string"},
                                "open_tickets": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    ),
                    "401": _resp("Signature outside the replay window", _ERR),
                    **_errors(400, 403, 404, 413, 503),
                },
            }
        },
        "/api/v1/tickets": {
            "get": {
                "summary": "List tickets, newest activity first",
                "tags": ["tickets"],
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["open", "resolved", "closed"]},
                    },
                    {"name": "channel", "in": "query", "schema": {"type": "string"}},
                    {"name": "unit", "in": "query", "schema": {"type": "string"}},
                    {"name": "assignee", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 10000000},
                    },
                ],
                "responses": {
                    "200": _resp(
                        "A page of tickets",
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": obj},
                                "total": {"type": "integer"},
                                "limit": {"type": "integer"},
                                "offset": {"type": "integer"},
                            },
                        },
                    ),
                    **_errors(400, 401, 403),  # 403: an agent, another unit
                },
            }
        },
        "/api/v1/tickets/{ticket}": {
            "get": {
                "summary": "One ticket with its timeline, delivery states and reply window",
                "tags": ["tickets"],
                "parameters": [
                    TICKET_PARAM,
                    {
                        "name": "raw",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["0", "1"]},
                        "description": "1 includes the providers' raw payloads (audit)",
                    },
                ],
                "responses": {"200": _resp("The ticket", obj), **_errors(401, 404)},
            }
        },
        "/api/v1/tickets/{ticket}/replies": {
            "post": {
                "summary": "Reply on the citizen's channel (free text inside the window, else a "
                "template)",
                "tags": ["tickets"],
                "parameters": [TICKET_PARAM],
                "requestBody": _body(ReplyIn),
                "responses": {
                    "202": _resp("Queued on the outbox", obj),
                    **_errors(400, 401, 404, 409, 422),
                },
            }
        },
        "/api/v1/tickets/{ticket}/status": {
            "post": {
                "summary": "Resolve, reopen or close a ticket",
                "tags": ["tickets"],
                "parameters": [TICKET_PARAM],
                "requestBody": _body(StatusIn),
                "responses": {"200": _resp("Changed", obj), **_errors(400, 401, 404, 409)},
            }
        },
        "/api/v1/dashboard": {
            "get": {
                "summary": "Live load for supervisors: per channel account, per unit (backlog, "
                "oldest waiting, SLA at risk and breached), agents, dead letters",
                "tags": ["supervision"],
                "responses": {"200": _resp("The snapshot", obj), **_errors(401, 403)},
            }
        },
        "/api/v1/tickets/{ticket}/messages/{message}/attachments/{index}": {
            "get": {
                "summary": "A citizen's attachment, fetched from the provider or the blob store "
                "(downloaded unless it is plain image, audio or video)",
                "tags": ["tickets"],
                "parameters": [
                    TICKET_PARAM,
                    {
                        "name": "message",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 80},
                    },
                    {
                        "name": "index",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,3}$"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                    },
                    "302": {"description": "A public provider URL"},
                    **_errors(401, 404, 503),
                },
            }
        },
        "/api/v1/contacts/{contact}": {
            "get": {
                "summary": "A contact with every identity and ticket",
                "tags": ["contacts"],
                "parameters": [
                    {
                        "name": "contact",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 80},
                    }
                ],
                "responses": {"200": _resp("The contact", obj), **_errors(401, 404)},
            }
        },
        "/api/v1/dead-letters": {
            "get": {
                "summary": "Entries that failed past their limit, on every stream",
                "tags": ["operations"],
                "responses": {"200": _resp("Dead letters", obj), **_errors(401, 403)},
            }
        },
        "/api/v1/dead-letters/replay": {
            "post": {
                "summary": "Put a dead letter back on its stream",
                "tags": ["operations"],
                "requestBody": _body(ReplayIn),
                "responses": {"200": _resp("Replayed", obj), **_errors(400, 401, 403, 404)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": _resp("Alive", obj)},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: Redis and consumers",
                "security": [],
                "tags": ["operations"],
                "responses": {"200": _resp("Ready", obj), "503": _resp("Not ready", obj)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    paths.update(console_paths())
    paths.update(SEARCH_PATHS)
    paths.update(REPORTS_PATHS)
    for path, item in paths.items():
        for op in item.values():
            if path.startswith("/webhooks/"):
                op["security"] = []
            # Any operation that touches the store answers 503 + Retry-After while it is down
            # (hub/web/common.py); only the liveness probe never does.
            if path != "/healthz":
                op["responses"].setdefault("503", _resp("Store unavailable; retry", _ERR))
    nested: dict[str, Any] = {}
    _hoist_defs(paths, nested)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kemnaker contact hub", "version": __version__},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                **nested,
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(spec())


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi)
