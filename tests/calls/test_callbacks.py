"""Replies to call tickets become callback requests for the dialer (a JSON-lines file or an HTTP
endpoint), and the callback's outcome in the call log sets the reply's state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from channels.base import TransientSendError
from channels.calls.callbacks import CallCenterChannel, callback_status
from channels.calls.records import CallRecord
from hub.model import DeliveryState, OutboundReply
from hub.settings import CallAccount
from tests.helpers import HubHarness, eventually


def reply(rid: str = "r1", to: str = "+6285611112222") -> OutboundReply:
    return OutboundReply(
        reply_id=rid,
        ticket_id="c1:1",
        channel="call",
        account="hotline",
        to=to,
        text="Mohon ditelepon kembali soal BPJS",
        ticket_number="KMN-2026-000001",
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


async def test_file_backend_appends_once_per_reply(tmp_path: Path) -> None:
    """A retried send (same reply id), even concurrent, adds no second callback request."""
    path = tmp_path / "sub" / "callbacks.jsonl"
    ch = CallCenterChannel("hotline", CallAccount(callback_file=path))
    results = await asyncio.gather(*(ch.send(reply()) for _ in range(5)))
    assert {(r.accepted, r.provider_id, r.state) for r in results} == {
        (True, "cb-r1", DeliveryState.SENT)
    }
    await ch.send(reply("r2", to="+6281234567890"))
    await ch.send(reply())
    got = lines(path)
    assert [g["callback_id"] for g in got] == ["cb-r1", "cb-r2"]
    first = got[0]
    assert first["phone"] == "+6285611112222"
    assert first["ticket_number"] == "KMN-2026-000001"
    assert first["note"] == "Mohon ditelepon kembali soal BPJS"
    assert first["account"] == "hotline"
    assert first["requested_at"].endswith("+00:00")
    await ch.aclose()


async def test_file_backend_survives_a_torn_last_line_and_refuses_no_number(
    tmp_path: Path,
) -> None:
    path = tmp_path / "callbacks.jsonl"
    path.write_text('{"callback_id":"cb-old"}\n{"callback_id":"cb-to')
    ch = CallCenterChannel("hotline", CallAccount(callback_file=path))
    assert (await ch.send(reply())).accepted
    assert path.read_text().splitlines()[-1].startswith('{"callback_id":"cb-r1"')
    withheld = await ch.send(reply("r3", to=""))
    assert (withheld.accepted, withheld.error_code) == (False, "callback-no-number")
    assert "cb-r3" not in path.read_text()


@pytest.fixture
async def dialer() -> AsyncIterator[tuple[str, list[Any], Callable[[int], None]]]:
    """A tiny dialer API: records requests; answers with the status set by ``answer(n)``."""
    seen: list[Any] = []
    status = [201]

    async def post(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer dialer-secret-token":
            return web.json_response({"error": "unauthorized"}, status=401)
        seen.append((request.headers.get("Idempotency-Key"), await request.json()))
        if status[0] == 500:
            return web.Response(status=500, headers={"Retry-After": "7"})
        return web.json_response({"ok": status[0] < 300}, status=status[0])

    app = web.Application()
    app.router.add_post("/callbacks", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def answer(n: int) -> None:
        status[0] = n

    yield f"http://127.0.0.1:{port}/callbacks", seen, answer
    await runner.cleanup()


async def test_http_backend_maps_answers(
    dialer: tuple[str, list[Any], Callable[[int], None]],
) -> None:
    """201 accepted, 500 transient with Retry-After, 400 refused, a wrong token refused."""
    url, seen, answer = dialer
    acct = CallAccount(
        callback_list="http", dialer_url=url, dialer_token=SecretStr("dialer-secret-token")
    )
    ch = CallCenterChannel("hotline", acct, send_timeout_s=5)
    ok = await ch.send(reply())
    assert (ok.accepted, ok.provider_id, ok.state) == (True, "cb-r1", DeliveryState.SENT)
    key, body = seen[0]
    assert key == "cb-r1"
    assert body["callback_id"] == "cb-r1"
    assert body["phone"] == "+6285611112222"
    answer(500)
    with pytest.raises(TransientSendError) as exc:
        await ch.send(reply("r2"))
    assert (exc.value.code, exc.value.retry_after) == ("500", 7.0)
    answer(400)
    refused = await ch.send(reply("r3"))
    assert (refused.accepted, refused.error_code) == (False, "400")
    await ch.aclose()
    bad = CallCenterChannel(
        "hotline",
        CallAccount(callback_list="http", dialer_url=url, dialer_token=SecretStr("wrong")),
    )
    assert (await bad.send(reply("r4"))).error_code == "401"
    await bad.aclose()
    assert len(seen) == 3  # the wrong token never got in
    assert "dialer-secret-token" not in repr(ch)


async def test_http_backend_unreachable_is_transient() -> None:
    ch = CallCenterChannel(
        "hotline", CallAccount(callback_list="http", dialer_url="http://127.0.0.1:9/x")
    )
    with pytest.raises(TransientSendError):
        await ch.send(reply())
    await ch.aclose()


def test_http_backend_needs_a_url() -> None:
    with pytest.raises(ValidationError, match="dialer_url"):
        CallAccount(callback_list="http")


def out_record(disposition: str, **extra: str) -> CallRecord:
    return CallRecord(
        call_id="1772419000.5",
        direction="out",
        caller="1500630",
        callee="085611112222",
        disposition=disposition,
        extra=dict(extra),
    )


@pytest.mark.parametrize(
    ("disposition", "state", "code"),
    [
        ("ANSWERED", DeliveryState.DELIVERED, ""),
        ("NO ANSWER", DeliveryState.UNDELIVERED, "callback-no-answer"),
        ("BUSY", DeliveryState.UNDELIVERED, "callback-busy"),
        ("FAILED", DeliveryState.UNDELIVERED, "callback-failed"),
        ("CONGESTION", DeliveryState.UNDELIVERED, "callback-congestion"),
    ],
)
def test_callback_status_maps_dispositions(
    disposition: str, state: DeliveryState, code: str
) -> None:
    for field in ("callback_id", "userfield"):
        u = callback_status(out_record(disposition, **{field: "cb-r1"}), "hotline")
        assert u is not None
        assert (u.channel, u.account, u.provider_id) == ("call", "hotline", "cb-r1")
        assert (u.state, u.error_code) == (state, code)


def test_callback_status_ignores_other_calls() -> None:
    assert callback_status(out_record("ANSWERED"), "hotline") is None
    assert callback_status(out_record("ANSWERED", userfield="vip"), "hotline") is None
    assert callback_status(out_record("ANSWERED", callback_id="cb-"), "hotline") is None
    inbound = CallRecord(
        call_id="1",
        direction="in",
        caller="085611112222",
        callee="1500630",
        disposition="ANSWERED",
        extra={"callback_id": "cb-r1"},
    )
    assert callback_status(inbound, "hotline") is None


async def test_abandoned_call_reply_callback_answered_delivers(
    harness_factory: Any, tmp_path: Path
) -> None:
    """Abandoned call → callback ticket (no automatic callback) → agent reply → callback
    request in the file → the dialer's answered call in the log → the reply is delivered,
    and the callback call is on the ticket's timeline."""
    log = tmp_path / "calls.jsonl"
    log.write_bytes(b"")
    cbfile = tmp_path / "callbacks.jsonl"
    h: HubHarness = await harness_factory(
        workers=True,
        channels__call__accounts={
            "hotline": {
                "unit": "general",
                "callback_file": str(cbfile),
                "logs": [{"kind": "jsonl", "path": str(log), "poll_interval": 0.05}],
            }
        },
    )
    abandoned = {
        "call_id": "1772418200.130",
        "direction": "in",
        "caller": "085611112222",
        "callee": "1500630",
        "disposition": "ABANDONED",
        "queue": "layanan",
        "offered_at": 1772418200,
        "ended_at": 1772418260,
        "wait_s": 60,
    }
    with log.open("a") as f:
        f.write(json.dumps(abandoned) + "\n")

    async def call_ticket() -> list[dict[str, Any]]:
        return [t for t in await h.tickets() if t["channel"] == "call"]

    [t] = await eventually(call_ticket, limit_s=20, every_s=0.05)
    tid = t["id"]
    status, body = await h.api(
        "POST", f"/api/v1/tickets/{tid}/replies", json={"text": "Kami telepon balik, Bu."}
    )
    assert status == 202, body
    assert body["channel"] == "call"
    rid = body["reply_id"]

    async def requested() -> list[dict[str, Any]]:
        return lines(cbfile) if cbfile.exists() else []

    [req] = await eventually(requested)
    assert req["callback_id"] == f"cb-{rid}"  # the only request: no automatic acknowledgement
    assert req["phone"] == "+6285611112222"
    assert req["note"] == "Kami telepon balik, Bu."

    async def reply_state(want: str) -> dict[str, Any] | None:
        full = await h.ticket(tid)
        out = [m for m in full["messages"] if m["direction"] == "out"]
        return full if [m.get("state") for m in out] == [want] else None

    await eventually(lambda: reply_state("sent"))
    contact = (await h.api("GET", f"/api/v1/contacts/{t['contact_id']}"))[1]
    assert {"kind": "phone", "value": "+6285611112222", "channels": ["whatsapp", "call"]} in (
        contact["identities"]
    )
    result = {
        "call_id": "1772419000.131",
        "direction": "out",
        "caller": "1500630",
        "callee": "+6285611112222",
        "agent": "Siti",
        "disposition": "ANSWERED",
        "offered_at": 1772419000,
        "answered_at": 1772419010,
        "ended_at": 1772419100,
        "talk_s": 90,
        "callback_id": req["callback_id"],
    }
    with log.open("a") as f:
        f.write(json.dumps(result) + "\n")
    full = await eventually(lambda: reply_state("delivered"), limit_s=20, every_s=0.05)

    async def on_timeline() -> bool:
        full = await h.ticket(tid)
        return any(
            m.get("meta", {}).get("callback_id") == req["callback_id"] for m in full["messages"]
        )

    assert full["id"] == tid
    await eventually(on_timeline)


async def test_an_agent_can_answer_a_call_ticket_on_whatsapp(
    harness_factory: Any, tmp_path: Path
) -> None:
    """A ticket that continued by phone answers by callback by default, but the agent can
    answer on WhatsApp instead, inside the citizen's WhatsApp window."""
    from hub.model import Message
    from tests.helpers import inbound_params

    h = await harness_factory(
        channels__call__accounts={"hotline": {"callback_file": str(tmp_path / "cb.jsonl")}}
    )
    await h.post_whatsapp(inbound_params("Halo", phone="+6281234567890"))
    await h.drain_inbound()
    call = Message(
        id="01call000000000000001", channel="call", account="hotline", provider_id="c-1:queue",
        sender="phone:+6281234567890", reply_address="+6281234567890",
        received_at=h.clock.now() + 60, kind="call", text="Panggilan masuk dijawab",
        meta={"no_autoreply": "call"},
    )  # fmt: skip
    await h.dispatcher().apply([call])
    [t] = await h.tickets()
    assert t["reply_channel"] == "call"
    status, body = await h.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "a"})
    assert (status, body["channel"]) == (202, "call")
    status, body = await h.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Via WA", "via": "whatsapp"}
    )
    assert status == 202, body
    assert (body["channel"], body["account"]) == ("whatsapp", "wa1")
    await h.drain_outbox()
    assert h.fake.sent[-1].params["Body"] == "Via WA"
    assert h.fake.sent[-1].params["To"] == "whatsapp:+6281234567890"
    status, body = await h.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "x", "via": "telegram"}
    )
    assert (status, body["error"]) == (422, "channel_unreachable")


async def test_console_composer_offers_whatsapp_on_a_call_ticket(
    harness_factory: Any, tmp_path: Path
) -> None:
    """The console's composer lists WhatsApp as a way to answer a call ticket, and uses it."""
    import aiohttp

    from hub.model import Message
    from tests.helpers import inbound_params

    h = await harness_factory(
        channels__call__accounts={"hotline": {"callback_file": str(tmp_path / "cb.jsonl")}}
    )
    await h.hub.auth.create_user("sari", "kata-sandi-rahasia-1", "supervisor", [])
    await h.post_whatsapp(inbound_params("Halo", phone="+6281234567890"))
    await h.drain_inbound()
    call = Message(
        id="01call000000000000002", channel="call", account="hotline", provider_id="c-2:queue",
        sender="phone:+6281234567890", reply_address="+6281234567890",
        received_at=h.clock.now() + 60, kind="call", text="Panggilan", meta={"no_autoreply": "1"},
    )  # fmt: skip
    await h.dispatcher().apply([call])
    [t] = await h.tickets()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(
            h.base + "/api/v1/session",
            json={"username": "sari", "password": "kata-sandi-rahasia-1"},
        ) as r:
            csrf = (await r.json())["csrf_token"]  # fmt: skip
        async with s.get(f"{h.base}/console/tickets/{t['number']}") as r:
            page = await r.text()
        assert 'name="via"' in page
        assert 'value="whatsapp"' in page
        form = {"csrf_token": csrf, "text": "Kami balas lewat WhatsApp", "via": "whatsapp"}
        async with s.post(f"{h.base}/console/tickets/{t['number']}/reply", data=form) as r:
            assert r.status == 200
    await h.drain_outbox()
    assert h.fake.sent[-1].params["Body"] == "Kami balas lewat WhatsApp"
