"""Schemathesis against the hub's own OpenAPI document: no 5xx on any endpoint (issue 8, point 9).

A hub on a real Redis with a little real data (two tickets, their contacts, an agent and an
admin, one account per webhook channel) serves ``/api/v1/openapi.json``; schemathesis loads
that live document and, for every operation, generates requests with hypothesis. Each
response must not be a server error and must conform to the document: a documented status
code, a documented content type, a body matching the documented schema. Path parameters are
drawn both at random and from the seeded objects, and webhook requests to the seeded accounts
are signed the way each provider signs, so fuzzed bodies get past the signature check into
the parsers. A negative (schema-violating) JSON body must be refused with a 4xx.

The passes, each over every operation:
- an admin's personal token: positive and negative data;
- the supervisors' service token of the test settings and an agent's personal token:
  positive data (other roles reach other branches: 403s, unit filters, "service tokens cannot
  mint tokens");
- no credentials: 401 on every secured operation, never 5xx.

Bounded and derandomized for CI: ``HUB_FUZZ_EXAMPLES`` (default 8) examples per operation and
mode for the main pass (fewer for the others), the same ones every run. For a longer run:
``HUB_FUZZ_EXAMPLES=200 pytest tests/test_api_schemathesis.py`` (the time limit grows with it).

Malformed requests schemathesis does not generate (bytes that are not UTF-8 in headers,
unknown charsets, JSON nested 50 000 deep, lone surrogates, Unicode digits) are in
``test_malformed_requests_are_refused_never_5xx`` below.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from channels.meta import SIGNATURE_HEADER, sign_body
from channels.signing import sign
from tests.helpers import AUTH, HubHarness, inbound_params

EXAMPLES = int(os.environ.get("HUB_FUZZ_EXAMPLES", "8"))
OTHER_ROLE_EXAMPLES = max(2, EXAMPLES // 2)
ANONYMOUS_EXAMPLES = max(2, EXAMPLES // 4)
TIMEOUT_S = max(60, 60 + (EXAMPLES - 8) * 12)

PASSWORD = "fuzz-password-0123"
TG_SECRET = "tg-fuzz-secret_01"
PORTAL_SECRET = "portal-fuzz-secret-0123"
CALL_SECRET = "call-fuzz-secret-0123"
META_SECRET = "meta-app-secret-fuzz"
META_VERIFY = "meta-verify-token-fuzz"
UNUSED = "http://127.0.0.1:9"  # a web-only hub sends nothing: no request goes there

# Operations that are not fuzzed, each with the targeted test that covers it instead.
NOT_FUZZED = {
    # A server-sent event stream never ends: every generated request would wait for its
    # whole timeout. test_event_stream_is_a_stream_or_401 covers it.
    "GET /api/v1/events": "endless text/event-stream",
}
# Logout is fuzzed: it ends the cookie session it is sent with, and these requests carry a
# bearer token and no cookie, so it cannot end the tokens the passes use.

CHECKS: list[Any] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def negative_body_rejected(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' negative_data_rejection for schema-violating JSON bodies (pydantic
    models with extra="forbid": must be 4xx). Query strings are not held to it: the API
    reads an empty value as an absent one (``status=``, ``group=``, ``from=``, as HTML forms
    send them) and ``raw`` other than 1 as 0; lenient on purpose, not a server error."""
    meta = case.meta
    body = meta.components.get(ParameterLocation.BODY) if meta is not None else None
    if body is None or not body.mode.is_negative:
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


def _settings_overrides() -> dict[str, Any]:
    """One account per webhook channel besides the Twilio WhatsApp ones of the test settings."""
    meta = {
        "access_token": "meta-access-token",
        "app_secret": META_SECRET,
        "verify_token": META_VERIFY,
        "api_base_url": UNUSED,
    }
    cloud = {"provider": "cloud", "number": "+628119521152", "phone_number_id": "1090000000001"}
    telegram = {"bot_token": "123456:ABCdefGhIjkl-fuzz", "webhook_secret": TG_SECRET}
    portal = {"api_token": "portal-api-token", "webhook_secret": PORTAL_SECRET}
    return {
        "channels__whatsapp__accounts__wac": {**cloud, **meta},
        "channels__instagram__accounts": {"ig": {"ig_account_id": "17841400000000009", **meta}},
        "channels__telegram__accounts": {"tg": {**telegram, "api_base_url": UNUSED}},
        "channels__portal__accounts": {"portal": {**portal, "api_base_url": UNUSED}},
        "channels__call__accounts": {"hotline": {"unit": "general", "events_secret": CALL_SECRET}},
    }


@dataclass
class Seeded:
    """Real objects for path parameters, and personal tokens (via="user-token")."""

    tickets: list[str]  # ids and numbers
    contacts: list[str]
    message: tuple[str, str]  # (ticket id, id of an inbound message with one attachment)
    admin_token: str
    agent_token: str


async def _seed(h: HubHarness) -> Seeded:
    await h.post_whatsapp(inbound_params("THR saya belum dibayar", phone="+6281234567890"))
    await h.post_whatsapp(
        inbound_params(
            "Foto slip gaji",
            phone="+6281234567891",
            NumMedia="1",
            MediaUrl0="https://media.example.test/slip",
            MediaContentType0="image/jpeg",
        )
    )
    assert await h.drain_inbound() == 2
    full = [await h.ticket(t["id"]) for t in await h.tickets()]
    with_media = next(t for t in full if any(m.get("attachments") for m in t["messages"]))
    msg = next(m for m in with_media["messages"] if m.get("attachments"))
    await h.hub.auth.create_user("ani", PASSWORD, "agent", ["general"], "Ani")
    await h.hub.auth.create_user("budi", PASSWORD, "admin", [], "Budi")
    return Seeded(
        tickets=[t["id"] for t in full] + [t["number"] for t in full],
        contacts=sorted({str(t["contact_id"]) for t in full}),
        message=(with_media["id"], str(msg["id"])),
        admin_token=await h.hub.users.create_token("budi", "fuzz"),
        agent_token=await h.hub.users.create_token("ani", "fuzz"),
    )


class Signer(requests.auth.AuthBase):
    """Signs webhook requests to the seeded accounts as each provider does, over the exact
    bytes sent, when the generated request carries the signature header at all (so requests
    without it are still tried)."""

    def __init__(self, h: HubHarness) -> None:
        self.h = h

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(r.url or "")
        path = url.path + (f"?{url.query}" if url.query else "")
        raw = r.body or b""
        body = raw if isinstance(raw, bytes) else raw.encode()
        ts = str(int(self.h.clock.now()))
        hdr = r.headers
        if url.path in ("/webhooks/whatsapp/wa1", "/webhooks/whatsapp/wa1/status"):
            if "X-Twilio-Signature" in hdr:
                form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
                if "x-www-form-urlencoded" not in hdr.get("Content-Type", ""):
                    form = {}
                hdr["X-Twilio-Signature"] = self.h.sign(path, form)
        elif url.path in ("/webhooks/whatsapp/wac", "/webhooks/instagram/ig"):
            if SIGNATURE_HEADER in hdr:
                hdr[SIGNATURE_HEADER] = sign_body(META_SECRET, body)
        elif url.path == "/webhooks/telegram/tg":
            if "X-Telegram-Bot-Api-Secret-Token" in hdr:
                hdr["X-Telegram-Bot-Api-Secret-Token"] = TG_SECRET
        elif url.path in ("/webhooks/portal/portal", "/webhooks/call/hotline"):
            kind, secret = ("Portal", PORTAL_SECRET) if "portal" in path else ("Call", CALL_SECRET)
            if f"X-{kind}-Signature" in hdr:
                hdr[f"X-{kind}-Timestamp"] = ts
                hdr[f"X-{kind}-Signature"] = sign(secret, ts, body)
        return r


def _seeded_path_parameters(op: Any, seeded: Seeded) -> list[dict[str, Any]]:
    """Seeded objects to put in this operation's path, beside the generated values."""
    names = {p.name for p in op.path_parameters}
    if not names:
        return []
    if names == {"ticket", "message", "index"}:
        tid, mid = seeded.message
        return [{"ticket": tid, "message": mid, "index": i} for i in ("0", "1")]
    if names == {"ticket"}:
        return [{"ticket": t} for t in seeded.tickets]
    if names == {"contact"}:
        return [{"contact": c} for c in seeded.contacts]
    if names == {"account"}:
        if op.path.startswith("/webhooks/whatsapp/"):
            return [{"account": "wa1"}, {"account": "wac"}]
        known = {"instagram": "ig", "telegram": "tg", "portal": "portal", "call": "hotline"}
        return [{"account": a} for c, a in known.items() if f"/{c}/" in op.path]
    raise AssertionError(f"{op.label}: no seeded values for path parameters {names}")


def _strategy(op: Any, mode: GenerationMode, seeded: Seeded) -> Any:
    strategies = [op.as_strategy(generation_mode=mode)]
    for fixed in _seeded_path_parameters(op, seeded):
        strategies.append(op.as_strategy(generation_mode=mode, path_parameters=fixed))
        if op.method == "get" and op.path.startswith("/webhooks/"):  # Meta's handshake
            query = {"hub.verify_token": META_VERIFY}
            strategies.append(
                op.as_strategy(generation_mode=mode, path_parameters=fixed, query=query)
            )
    return st.one_of(strategies)


@dataclass
class Tally:
    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    by_op: Counter[tuple[str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    nothing_to_negate: list[str] = field(default_factory=list)
    no_body: Counter[str] = field(default_factory=Counter)  # a required body not generated

    def line(self, name: str) -> str:
        return (
            f"{name}: {sum(self.examples.values())} examples, {len(self.examples)} "
            f"operation/mode pairs, statuses {dict(sorted(self.statuses.items()))}, "
            f"{len(self.server_errors)} 5xx, {len(self.failures)} failing checks"
        )

    def bodiless(self) -> list[str]:
        """Operations whose required body schemathesis could not generate (a schema it cannot
        read, e.g. a dangling $ref): their handlers were never reached with data."""
        return sorted(k for k, n in self.no_body.items() if n == self.examples[k])

    def report(self, name: str) -> str:
        lines = [self.line(name)]
        if os.environ.get("HUB_FUZZ_VERBOSE"):
            lines += [f"  {k} -> {c}: {n}" for (k, c), n in sorted(self.by_op.items())]
        lines += [f"  no inputs to negate: {k}" for k in self.nothing_to_negate]
        lines += [f"  required body never generated: {k}" for k in self.bodiless()]
        lines += [f"  5xx: {e}" for e in self.server_errors[:20]]
        lines += [f"  FAIL {k}\n    {v}" for k, v in sorted(self.failures.items())]
        return "\n".join(lines)


def _run(
    strategy: Any,
    call: Callable[[Any], Any],
    checks: list[Any],
    max_examples: int,
    tally: Tally,
    key: str,
) -> None:
    """``max_examples`` cases of ``strategy``; every response checked, every failure kept
    (the run goes on to the other operations and reports them all)."""

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is shown
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def test(case: Any) -> None:
        tally.examples[key] += 1
        if case.operation.definition.raw.get("requestBody", {}).get("required"):
            tally.no_body[key] += isinstance(case.body, NotSet)
        response = call(case)
        tally.statuses[response.status_code] += 1
        tally.by_op[key, response.status_code] += 1
        if response.status_code >= 500:
            tally.server_errors.append(f"{key}: {response.status_code} {case.as_curl_command()}")
        try:
            case.validate_response(response, checks=checks)
        except (Exception, BaseExceptionGroup) as exc:
            tally.failures.setdefault(
                f"{key} {type(exc).__name__}",
                f"{str(exc)[:700]}\n    {case.as_curl_command()[:700]}",
            )

    test()


def _fuzz(h: HubHarness, seeded: Seeded) -> tuple[list[str], dict[str, Tally]]:
    # The passes send their credentials themselves: schemathesis is told not to generate
    # (or mutate) the Authorization header, so a "negative" case is about the request data.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_url(
        h.base + "/api/v1/openapi.json", config=config, timeout=10
    )
    session = requests.Session()
    signer = Signer(h)

    def caller(headers: dict[str, str]) -> Callable[[Any], Any]:
        def call(case: Any) -> Any:
            return case.call(
                base_url=h.base, session=session, headers=headers, auth=signer, timeout=10
            )

        return call

    def call_anonymous(case: Any) -> Any:
        response = case.call(base_url=h.base, session=session, timeout=10)
        secured = case.operation.definition.raw.get("security") != []
        if secured and response.status_code != 401:
            tallies["anonymous"].failures[f"{case.operation.label} anonymous"] = (
                f"expected 401, got {response.status_code}\n    {case.as_curl_command()}"
            )
        return response

    passes: list[tuple[str, Callable[[Any], Any], tuple[GenerationMode, ...], int]] = [
        ("admin (personal token)", caller(bearer(seeded.admin_token)),
         (GenerationMode.POSITIVE, GenerationMode.NEGATIVE), EXAMPLES),
        ("supervisor (service token)", caller(AUTH), (GenerationMode.POSITIVE,),
         OTHER_ROLE_EXAMPLES),
        ("agent (personal token)", caller(bearer(seeded.agent_token)), (GenerationMode.POSITIVE,),
         OTHER_ROLE_EXAMPLES),
        ("anonymous", call_anonymous, (GenerationMode.POSITIVE,), ANONYMOUS_EXAMPLES),
    ]  # fmt: skip
    tallies = {name: Tally() for name, *_ in passes}
    labels: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        labels.append(op.label)
        if op.label in NOT_FUZZED:
            continue
        for name, call, modes, examples in passes:
            for mode in modes:
                checks = CHECKS + ([negative_body_rejected] if mode.is_negative else [])
                key = f"{op.label} [{mode.value}]"
                try:
                    _run(_strategy(op, mode, seeded), call, checks, examples, tallies[name], key)
                except Unsatisfiable:
                    if mode.is_positive or list(op.iter_parameters()) or op.body:
                        raise
                    tallies[name].nothing_to_negate.append(op.label)  # /healthz and the like
    session.close()
    return labels, tallies


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.timeout(TIMEOUT_S)
async def test_no_server_error_and_conformant_responses_on_every_operation(
    harness_factory: Any,
) -> None:
    h: HubHarness = await harness_factory(**_settings_overrides())
    seeded = await _seed(h)
    started = time.monotonic()
    labels, tallies = await asyncio.to_thread(_fuzz, h, seeded)
    fuzzed = [label for label in labels if label not in NOT_FUZZED]
    print(
        f"\nschemathesis: {len(labels)} operations in the document, {len(fuzzed)} fuzzed "
        f"({', '.join(NOT_FUZZED)} by a targeted test), {EXAMPLES} examples per operation "
        f"and mode, {sum(sum(t.examples.values()) for t in tallies.values())} requests in "
        f"{time.monotonic() - started:.1f}s"
    )
    for name, tally in tallies.items():
        print(tally.report(name))
    assert set(NOT_FUZZED) <= set(labels), "a skipped operation is no longer in the document"
    for name, tally in tallies.items():
        assert not tally.server_errors, tally.report(name)
        assert not tally.failures, tally.report(name)
        assert not tally.bodiless(), tally.report(name)
        assert {k.rsplit(" [", 1)[0] for k in tally.examples} == set(fuzzed), name


# -- targeted checks ---------------------------------------------------------------------


async def test_event_stream_is_a_stream_or_401(harness: HubHarness) -> None:
    """GET /api/v1/events, which the fuzzing leaves out (it never ends): with a token it is
    a text/event-stream that starts with its retry hint; without one, a JSON 401."""
    assert harness.session is not None
    url = harness.base + "/api/v1/events"
    async with harness.session.get(url, headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5) == b"retry: 2000\n\n"
    async with harness.session.get(url) as r:
        assert r.status == 401
        body = await r.json()
        assert set(body) >= {"error", "message"}


async def _raw_http(h: HubHarness, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (aiohttp's client would not send headers that are not UTF-8)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", h.settings.hub.listen_port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_malformed_requests_are_refused_never_5xx(harness_factory: Any) -> None:
    """Inputs schemathesis does not generate, each of which was a 500 before the fix that
    its comment names; every refusal is a 4xx with the JSON error shape."""
    h: HubHarness = await harness_factory(**_settings_overrides())
    seeded = await _seed(h)
    assert h.session is not None
    t, (mt, mid) = seeded.tickets[0], seeded.message
    admin = bearer(seeded.admin_token)
    deep = b"[" * 50_000 + b"]" * 50_000
    surrogate = b'"\\ud800x"'
    ts = str(int(h.clock.now()))
    call = b'{"event": "ringing", "call_id": "1.2", "caller": %s}' % surrogate
    stream = h.hub.inbound_streams()[0].encode()

    def signed(secret: str, body: bytes, kind: str) -> dict[str, str]:
        return {f"X-{kind}-Timestamp": ts, f"X-{kind}-Signature": sign(secret, ts, body)}

    json_ct = {"Content-Type": "application/json"}
    bogus_ct = {"Content-Type": "application/json; charset=bogus"}
    refused = (400,)
    either = (200, 400)  # refused, or kept with U+FFFD for the surrogate: both are fine
    cases: list[tuple[str, str, dict[str, str], bytes, tuple[int, ...]]] = [
        # api.int_param, search_api._int: "²".isdigit() is true but int("²") fails
        ("GET", "/api/v1/tickets?limit=²", admin, b"", refused),
        ("GET", "/api/v1/tickets?offset=" + "9" * 5000, admin, b"", refused),
        ("GET", "/api/v1/search?limit=²", admin, b"", refused),
        # media_api: the same for the attachment index
        ("GET", f"/api/v1/tickets/{mt}/messages/{mid}/attachments/²", admin, b"", (404,)),
        # api.json_body: JSON nested too deeply (RecursionError), an unknown charset
        ("POST", f"/api/v1/tickets/{t}/notes", {**admin, **json_ct}, deep, refused),
        ("POST", f"/api/v1/tickets/{t}/notes", {**admin, **bogus_ct}, b'{"text":"x"}', refused),
        # auth.api_login: the same, and a lone surrogate Redis cannot store
        ("POST", "/api/v1/session", json_ct, deep, refused),
        ("POST", "/api/v1/session", bogus_ct, b"{}", refused),
        ("POST", "/api/v1/session", json_ct,
         b'{"username": %s, "password": "0123456789x"}' % surrogate, refused),
        # api.ReplayIn: an entry id past 64 bits, which Redis refuses
        ("POST", "/api/v1/dead-letters/replay", {**admin, **json_ct},
         b'{"stream": "%s", "id": "99999999999999999999-1"}' % stream, refused),
        # webhooks: JSON too deep, lone surrogates, behind a valid signature
        ("POST", "/webhooks/telegram/tg",
         {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, **json_ct}, deep, refused),
        ("POST", "/webhooks/portal/portal", {**signed(PORTAL_SECRET, deep, "Portal"), **json_ct},
         deep, refused),
        ("POST", "/webhooks/call/hotline", {**signed(CALL_SECRET, deep, "Call"), **json_ct},
         deep, refused),
        ("POST", "/webhooks/telegram/tg", {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET,
         **json_ct}, b'{"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": '
         b'{"id": 5, "type": "private"}, "from": {"id": 5, "is_bot": false, "first_name": "A"},'
         b' "text": %s}}' % surrogate, either),
        ("POST", "/webhooks/call/hotline", {**signed(CALL_SECRET, call, "Call"), **json_ct},
         call, either),
    ]  # fmt: skip
    for method, path, headers, body, expected in cases:
        async with h.session.request(method, h.base + path, headers=headers, data=body) as r:
            got = await r.json()
            assert r.status in expected, (path, r.status, got)
            assert r.status < 400 or set(got) >= {"error", "message"}, (path, got)

    # Sent byte for byte: header values that are not UTF-8, and a session's CSRF check.
    async with h.session.post(
        h.base + "/api/v1/session", json={"username": "ani", "password": PASSWORD}
    ) as r:
        sid = r.cookies["hub_session"].value
    end = b"Connection: close\r\n\r\n"
    raw_cases = [
        # auth._principal: a bearer token or session cookie with bytes that are not UTF-8
        (b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n" + end, 401),
        (b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nCookie: hub_session=\xff\r\n" + end, 401),
        # auth._csrf_ok: a non-ASCII token (compare_digest refuses such str), a form in an
        # unknown charset
        (f"POST /api/v1/presence HTTP/1.1\r\nHost: x\r\nCookie: hub_session={sid}\r\n"
         "X-CSRF-Token: é\r\nContent-Length: 0\r\n".encode() + end, 403),
        (f"POST /api/v1/presence HTTP/1.1\r\nHost: x\r\nCookie: hub_session={sid}\r\n"
         "Content-Type: application/x-www-form-urlencoded; charset=bogus\r\n"
         "Content-Length: 3\r\n".encode() + end + b"a=b", 403),
        # webhooks._inbound_request: a Telegram secret with bytes that are not UTF-8
        (b"POST /webhooks/telegram/tg HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: "
         b"\xff\r\nContent-Type: application/json\r\nContent-Length: 2\r\n" + end + b"{}", 403),
    ]  # fmt: skip
    for request, expected in raw_cases:
        status, body = await _raw_http(h, request)
        assert status == expected, (request[:80], body[:200])
        assert b'"error"' in body, body[:200]
        assert b'"message"' in body, body[:200]
    assert len(await h.tickets()) == 2  # the seeded tickets, untouched
