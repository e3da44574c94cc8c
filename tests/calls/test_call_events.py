"""Live call events: the platform's signed push (ringing, answered, hangup) tells the consoles
of the call account's unit who is calling and which tickets they have open (screen pop)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from channels.base import PayloadError
from channels.calls.events import agent_name, parse_event, sign
from tests.helpers import HubHarness, eventually, inbound_params
from tests.test_console_core import PASSWORD, signed_in

SECRET = "call-events-secret-1"
PATH = "/webhooks/call/hotline"
CALLS = {
    "hotline": {"unit": "general", "events_secret": SECRET},
    "quiet": {"unit": "general"},  # no events_secret: no endpoint
}


async def _hub(harness_factory: Any, **overrides: Any) -> HubHarness:
    h: HubHarness = await harness_factory(channels__call__accounts=CALLS, **overrides)
    await h.hub.auth.create_user("ani", PASSWORD, "agent", ["general"], "Ani")
    await h.hub.auth.create_user("citra", PASSWORD, "agent", ["hi_upah"], "Citra")
    return h


def _event(**kw: Any) -> dict[str, Any]:
    return {
        "event": "ringing",
        "call_id": "1732260000.42",
        "caller": "081234567890",
        "queue": "pengaduan",
        "agent": "",
        "at": 1732260000,
        **kw,
    }


async def post_call_event(
    h: HubHarness,
    event: dict[str, Any] | bytes,
    path: str = PATH,
    secret: str = SECRET,
    skew_s: float = 0,
    signature: str | None = None,
) -> tuple[int, Any]:
    """POST a call event signed with ``secret`` at the hub's time plus ``skew_s``."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    ts = str(int(h.clock.now() + skew_s))
    headers = {
        "Content-Type": "application/json",
        "X-Call-Timestamp": ts,
        "X-Call-Signature": signature if signature is not None else sign(secret, ts, body),
    }
    assert h.session is not None
    async with h.session.post(h.base + path, data=body, headers=headers) as r:
        return r.status, await r.json()


async def _read_events(s: aiohttp.ClientSession, base: str, want: str) -> list[dict[str, Any]]:
    """Server-sent events, as a console reads them, until one of type ``want``."""
    out: list[dict[str, Any]] = []
    async with s.get(base + "/api/v1/events") as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
                if out[-1]["type"] == want:
                    return out
    return out


async def test_signature_valid_forged_stale_and_unknown_account(harness_factory: Any) -> None:
    h = await _hub(harness_factory)
    status, got = await post_call_event(h, _event(caller="+6289900001111"))
    assert (status, got) == (200, {"contact_id": "", "open_tickets": []})
    status, got = await post_call_event(h, _event(), secret="not-the-secret")
    assert (status, got["error"]) == (403, "bad_signature")
    status, got = await post_call_event(h, _event(), signature="")
    assert (status, got["error"]) == (403, "bad_signature")
    status, got = await post_call_event(h, _event(), skew_s=-301)
    assert (status, got["error"]) == (401, "stale_signature")
    status, got = await post_call_event(h, _event(), skew_s=400)
    assert (status, got["error"]) == (401, "stale_signature")
    for path in ("/webhooks/call/nope", "/webhooks/call/quiet"):  # unknown; no secret set
        status, got = await post_call_event(h, _event(), path=path)
        assert (status, got["error"]) == (404, "unknown_account")
    status, got = await post_call_event(h, _event(event="transferred"))
    assert (status, got["error"]) == (400, "malformed_payload")
    assert "event must be one of" in got["message"]
    status, got = await post_call_event(h, b"{not json")
    assert (status, got["error"]) == (400, "malformed_payload")
    # nothing of this was stored: call events are not messages
    assert await h.tickets() == []


async def test_ringing_for_a_known_citizen_pops_their_open_tickets(harness_factory: Any) -> None:
    """A WhatsApp citizen calls: the answer names their contact and open ticket, and an agent
    of the call account's unit gets call.ringing on the live feed (one of another unit not)."""
    h = await _hub(harness_factory)
    await h.post_whatsapp(inbound_params("THR belum dibayar", phone="+6281234567890"))
    await h.drain_inbound()
    [ticket] = await h.tickets()

    async with signed_in(h, "ani") as (s, _):
        reader = asyncio.create_task(_read_events(s, h.base, "call.ringing"))

        async def connected() -> bool:
            return bool(h.hub.live._subs)

        await eventually(connected)
        status, got = await post_call_event(h, _event(agent="SIP/ani-0000002a"))
        assert status == 200, got
        assert got == {"contact_id": ticket["contact_id"], "open_tickets": [ticket["id"]]}
        seen = await asyncio.wait_for(reader, 10)
        # the console's contact read lists the ticket's number and status for the banner
        async with s.get(f"{h.base}/api/v1/contacts/{ticket['contact_id']}") as r:
            contact = await r.json()
    ring = seen[-1]
    assert ring == {
        "type": "call.ringing",
        "call_id": "1732260000.42",
        "account": "hotline",
        "unit": "general",
        "agent": "ani",
        "queue": "pengaduan",
        "caller_masked": "+6281*******90",
        "contact_id": ticket["contact_id"],
    }
    assert "81234567890" not in json.dumps(seen)  # the phone itself never goes to consoles
    [summary] = contact["ticket_summaries"]
    assert summary == {"id": ticket["id"], "number": ticket["number"], "status": "open",
                       "unit": "general"}  # fmt: skip

    feed = h.hub.live
    from hub.accounts import Principal

    assert await feed.allowed(Principal("ani", "agent", ("general",)), ring)
    assert not await feed.allowed(Principal("citra", "agent", ("hi_upah",)), ring)

    # resolved tickets are not open; answered and hangup follow with the same lookup
    await h.api("POST", f"/api/v1/tickets/{ticket['id']}/status", json={"status": "resolved"})
    status, got = await post_call_event(h, _event(event="answered", agent="ani"))
    assert (status, got) == (200, {"contact_id": ticket["contact_id"], "open_tickets": []})
    status, _ = await post_call_event(h, _event(event="hangup"))
    assert status == 200
    types = [e["type"] for _, e in await h.hub.events.since("0")]
    assert types[-2:] == ["call.answered", "call.hangup"]


async def test_unknown_and_withheld_callers_have_no_contact(harness_factory: Any) -> None:
    h = await _hub(harness_factory)
    for caller in ("085612345678", "", "anonymous"):
        status, got = await post_call_event(h, _event(caller=caller, call_id=f"c{len(caller)}"))
        assert (status, got) == (200, {"contact_id": "", "open_tickets": []})
    events = [e for _, e in await h.hub.events.since("0") if e["type"] == "call.ringing"]
    assert [e["caller_masked"] for e in events] == ["+6285*******78", "", "anonymous"]
    assert {e["contact_id"] for e in events} == {""}
    assert await h.tickets() == []  # looking a caller up creates no contact or ticket


def test_parse_event_and_agent_names() -> None:
    ev = parse_event(json.dumps(_event(agent="PJSIP/agent101-0000002a")).encode())
    assert (ev.event, ev.agent, ev.at) == ("ringing", "agent101", 1732260000.0)
    assert agent_name("Local/ani@from-queue") == "ani"
    assert agent_name("budi") == "budi"
    for bad, reason in (
        ({"call_id": "x"}, "event is required"),
        (_event(call_id=""), "call_id is required"),
        (_event(call_id="a b"), "call_id has characters"),
        (_event(caller=["x"]), "caller must be a string"),
        (_event(at="yesterday"), "at must be unix seconds"),
    ):
        with pytest.raises(PayloadError, match=reason):
            parse_event(json.dumps(bad).encode())
    with pytest.raises(PayloadError, match="JSON object"):
        parse_event(b"[]")
