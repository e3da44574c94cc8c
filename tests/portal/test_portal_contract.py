"""docs/portal-contract.openapi.json: well-formed OpenAPI 3.1, the fake portal serves nothing it
does not describe, and its event schema agrees with the fixtures and the hub's parser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from channels.base import PayloadError
from channels.portal.contract import parse_event
from hub.demo.fake_portal import FakePortal, make_event

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "portal-contract.openapi.json"
FIXTURES = ROOT / "tests" / "fixtures" / "portal"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOC.read_text("utf-8"))
    return loaded


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def validate(doc: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$") -> list[str]:
    """The JSON Schema subset the contract uses: $ref, type, enum, required, properties, items,
    anyOf, pattern, min/maxLength, min/maxItems, minimum/maximum. Returns the errors."""
    s = _resolve(doc, schema)
    errors: list[str] = []
    if "type" in s:
        names = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_type_ok(value, n) for n in names):
            return [f"{at}: not {s['type']}"]
    if "enum" in s and value not in s["enum"]:
        errors.append(f"{at}: {value!r} not in {s['enum']}")
    if isinstance(value, str):
        if "pattern" in s and not re.search(s["pattern"], value):
            errors.append(f"{at}: does not match {s['pattern']}")
        if len(value) < s.get("minLength", 0) or len(value) > s.get("maxLength", len(value)):
            errors.append(f"{at}: length out of range")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (value < s.get("minimum", value) or value > s.get("maximum", value)):
        errors.append(f"{at}: {value} out of range")
    if isinstance(value, list):
        if len(value) < s.get("minItems", 0) or len(value) > s.get("maxItems", len(value)):
            errors.append(f"{at}: item count out of range")
        if "items" in s:
            for i, item in enumerate(value):
                errors += validate(doc, s["items"], item, f"{at}[{i}]")
    if isinstance(value, dict):
        errors += [f"{at}: {k} is required" for k in s.get("required", []) if k not in value]
        for k, sub in s.get("properties", {}).items():
            if k in value:
                errors += validate(doc, sub, value[k], f"{at}.{k}")
    if "anyOf" in s and all(validate(doc, alt, value, at) for alt in s["anyOf"]):
        errors.append(f"{at}: matches none of anyOf")
    return errors


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def test_is_openapi_3_1_with_both_directions(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert _operations(doc) == {
        ("POST", "/webhooks/portal/{account}"),
        ("POST", "/api/v1/requests/{request_id}/replies"),
        ("POST", "/api/v1/requests/{request_id}/status"),
        ("GET", "/api/v1/events"),
    }
    tags = {
        path: op["tags"]
        for path, item in doc["paths"].items()
        for m, op in item.items()
        if m in METHODS
    }
    assert tags["/webhooks/portal/{account}"] == ["portal-to-hub"]
    assert all(t == ["hub-to-portal"] for p, t in tags.items() if p.startswith("/api/"))
    schemas = doc["components"]["schemas"]
    for name in ("PortalEvent", "ReplyRequest", "StatusChange", "EventsPage", "PortalError"):
        assert schemas[name]["type"] == "object"


def test_every_ref_resolves_and_every_operation_answers(doc: dict[str, Any]) -> None:
    refs = re.findall(r'"\$ref": "([^"]+)"', DOC.read_text("utf-8"))
    assert refs
    for ref in set(refs):
        _resolve(doc, {"$ref": ref})
    for path, item in doc["paths"].items():
        assert item["servers"], path
        for name in re.findall(r"{(\w+)}", path):
            op = next(op for m, op in item.items() if m in METHODS)
            assert any(p["in"] == "path" and p["name"] == name for p in op["parameters"])
        for m, op in item.items():
            if m in METHODS:
                assert op["operationId"], (m, path)
                assert op["responses"], (m, path)
                assert any(code.startswith("2") for code in op["responses"])


def test_webhook_answers_and_signature_headers(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/webhooks/portal/{account}"]["post"]
    assert {"200", "400", "401", "403", "413", "503"} <= set(op["responses"])
    headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
    assert headers == {"X-Portal-Timestamp", "X-Portal-Signature"}
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert _resolve(doc, schema)["properties"]["event"]["enum"] == [
        "request.created",
        "request.replied",
    ]


@pytest.mark.parametrize("path", ["replies", "status"])
def test_hub_to_portal_writes_are_idempotent_and_authenticated(
    doc: dict[str, Any], path: str
) -> None:
    op = doc["paths"][f"/api/v1/requests/{{request_id}}/{path}"]["post"]
    assert op["security"] == [{"bearer": []}]
    [idem] = [p for p in op["parameters"] if p["name"] == "Idempotency-Key"]
    assert idem["in"] == "header"
    assert idem["required"]
    assert {"200", "201", "429", "5XX", "4XX"} <= set(op["responses"])


def test_fake_portal_serves_only_described_routes(doc: dict[str, Any]) -> None:
    """Every route of FakePortal is in the document (and every hub → portal path is served)."""
    app: web.Application = FakePortal("token").app()
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    described = {(m, p) for m, p in _operations(doc) if p.startswith("/api/")}
    assert served == described


def _fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_fixtures_validate_exactly_when_the_hub_parses_them(
    doc: dict[str, Any], path: Path
) -> None:
    """The schema and the hub's parser agree on every fixture: valid ones pass both,
    malformed ones fail both (bad_json is not even JSON)."""
    try:
        event = json.loads(path.read_bytes())
    except ValueError:
        assert path.name == "bad_json.json"
        return
    errors = validate(doc, doc["components"]["schemas"]["PortalEvent"], event)
    try:
        parse_event(event, "bantuan", 0.0, "k" * 16)
        parsed = True
    except PayloadError:
        parsed = False
    assert (not errors) == parsed, errors
    if path.name in ("request_created.json", "request_replied.json"):
        assert not errors


def test_fake_portal_events_and_pages_validate(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    page = {"events": [make_event(1), make_event(2, event="request.replied")], "next_cursor": "2"}
    assert validate(doc, schemas["EventsPage"], page) == []
    assert validate(doc, schemas["StatusChange"], {"status": "resolved"}) == [
        "$: ticket_number is required",
        "$: changed_at is required",
    ]
    no_identity = make_event(3, account_id="", email="", phone="")
    assert "$.citizen: matches none of anyOf" in validate(doc, schemas["PortalEvent"], no_identity)
    empty = make_event(4, text="  ")
    assert "$.message: matches none of anyOf" in validate(doc, schemas["PortalEvent"], empty)
