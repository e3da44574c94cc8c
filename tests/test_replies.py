"""Replies out: the 24-hour window, templates, retries, refusals and delivery states."""

from __future__ import annotations

import json
import time
from typing import Any

from adapters import keys
from hub.demo.fake_twilio import Scripted
from tests.helpers import HubHarness, inbound_params


async def _ticket_with_citizen(harness: HubHarness) -> dict:
    await harness.post_whatsapp(inbound_params("Gaji di bawah UMK"))
    await harness.drain_inbound()
    await harness.drain_outbox()  # the acknowledgement
    harness.fake.sent.clear()
    harness.fake.requests.clear()
    [t] = await harness.tickets()
    return t


def _reply(ticket: dict, reply_id: str) -> dict:
    [r] = [m for m in ticket["messages"] if m["id"] == reply_id]
    return r


async def test_reply_inside_window_is_sent_as_text(harness: HubHarness) -> None:
    """Inside 24 h an agent's free text goes out on the citizen's number and shows as sent."""
    t = await _ticket_with_citizen(harness)
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['number']}/replies", json={"text": "Mohon kirim slip gaji."}
    )
    assert status == 202, body
    assert body["state"] == "queued"
    assert await harness.drain_outbox() == 1
    [sent] = harness.fake.sent
    assert sent.params["Body"] == "Mohon kirim slip gaji."
    assert sent.params["To"] == "whatsapp:+6281234567890"
    assert sent.params["StatusCallback"].endswith("/webhooks/whatsapp/wa1/status")
    full = await harness.ticket(t["id"])
    r = _reply(full, body["reply_id"])
    assert r["state"] == "sent"
    assert r["author"] == "agent-ani"
    assert r["provider_id"] == sent.sid
    assert full["first_response_by"] == "agent-ani"


async def test_reply_outside_window_needs_a_template(harness: HubHarness) -> None:
    """After 24 h free text is refused with 409 naming the templates; a template goes out."""
    t = await _ticket_with_citizen(harness)
    harness.clock.advance(24 * 3600 + 1)
    full = await harness.ticket(t["id"])
    assert full["window"]["open"] is False
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo?"}
    )
    assert status == 409
    assert body["error"] == "template_required"
    assert body["templates"] == ["follow_up"]
    assert body["window"]["seconds_left"] == 0
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"template": "follow_up"}
    )
    assert status == 202, body
    await harness.drain_outbox()
    [sent] = harness.fake.sent
    assert sent.params["ContentSid"] == "HX" + "a" * 32
    assert json.loads(sent.params["ContentVariables"]) == {"1": t["number"]}
    assert "Body" not in sent.params


async def test_window_countdown_and_bad_requests(harness: HubHarness) -> None:
    """The ticket shows the time left; unknown templates and empty bodies are refused clearly."""
    t = await _ticket_with_citizen(harness)
    harness.clock.advance(3600)
    full = await harness.ticket(t["id"])
    assert full["window"]["open"] is True
    assert 22 * 3600 < full["window"]["seconds_left"] <= 23 * 3600
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"template": "nope"}
    )
    assert (status, body["error"]) == (422, "unknown_template")
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "  "}
    )
    assert status == 400
    assert "text or template" in body["message"]
    status, body = await harness.api(
        "POST",
        f"/api/v1/tickets/{t['id']}/replies",
        data=b"{oops",
        headers={"Content-Type": "application/json"},
    )
    assert (status, body["error"]) == (400, "malformed_json")
    status, _ = await harness.api("POST", "/api/v1/tickets/KMN-2026-999999/replies", json={})
    assert status == 404


async def test_provider_500_then_201_gives_exactly_one_delivered_reply(
    harness: HubHarness,
) -> None:
    """A 500 is retried with backoff; the retry succeeds; the citizen gets one message."""
    t = await _ticket_with_citizen(harness)
    harness.fake.script.append(Scripted(status=500))
    _, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Sedang kami proses."}
    )
    await harness.drain_outbox()
    full = await harness.ticket(t["id"])
    assert _reply(full, body["reply_id"])["state"] == "retrying"
    assert harness.fake.sent == []
    await harness.drain_outbox(include_delayed=True)
    [sent] = harness.fake.sent
    assert len(harness.fake.requests) == 2
    status = await harness.fake.status_callback(
        sent.params["StatusCallback"], sent.account_sid, sent, "delivered"
    )
    assert status == 204
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert (r["state"], r["attempts"]) == ("delivered", 2)


async def test_provider_400_marks_reply_failed_with_its_code(harness: HubHarness) -> None:
    """A refusal is final: failed, with Twilio's error code, and no retry."""
    t = await _ticket_with_citizen(harness)
    harness.fake.script.append(Scripted(status=400, code=63016, message="Outside window"))
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    await harness.drain_outbox()
    await harness.drain_outbox(include_delayed=True)
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert (r["state"], r["error_code"], r["attempts"]) == ("failed", "63016", 1)
    assert len(harness.fake.requests) == 1


async def test_429_waits_at_least_retry_after(harness_factory: Any) -> None:
    """A 429's Retry-After sets the earliest retry time."""
    harness = await harness_factory(outbox__backoff_max_s=600)
    t = await _ticket_with_citizen(harness)
    harness.fake.script.append(Scripted(status=429, code=20429, headers={"Retry-After": "30"}))
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    before = time.time()
    await harness.drain_outbox()
    [(member, due_ms)] = await harness.hub.redis.zrange(
        keys.outbox_delayed("whatsapp"), 0, -1, withscores=True
    )
    assert member.decode().endswith(body["reply_id"])
    assert before + 30 <= due_ms / 1000 <= time.time() + 31


async def test_retries_exhausted_dead_letter_and_replay(harness: HubHarness) -> None:
    """After max attempts the reply fails and is dead-lettered; a replay sends it once."""
    t = await _ticket_with_citizen(harness)
    harness.fake.script.extend(Scripted(status=503) for _ in range(3))
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    for _ in range(3):
        await harness.drain_outbox(include_delayed=True)
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert (r["state"], r["attempts"]) == ("failed", 3)
    status, dead = await harness.api("GET", "/api/v1/dead-letters")
    [entry] = dead["items"]
    assert entry["stream"] == keys.outbox_stream("whatsapp")
    assert "gave up after 3 attempts" in entry["error"]
    status, replayed = await harness.api(
        "POST", "/api/v1/dead-letters/replay", json={"stream": entry["stream"], "id": entry["id"]}
    )
    assert status == 200, replayed
    await harness.drain_outbox()
    assert len(harness.fake.sent) == 1
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert r["state"] == "sent"
    _, dead = await harness.api("GET", "/api/v1/dead-letters")
    assert dead["items"] == []


async def test_status_callbacks_out_of_order_never_step_back(harness: HubHarness) -> None:
    """read, then delivered, then sent: the reply stays read."""
    t = await _ticket_with_citizen(harness)
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    await harness.drain_outbox()
    [sent] = harness.fake.sent
    url = sent.params["StatusCallback"]
    for state in ("read", "delivered", "sent"):
        assert await harness.fake.status_callback(url, sent.account_sid, sent, state) == 204
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert r["state"] == "read"


async def test_forged_status_callback_is_refused(harness: HubHarness) -> None:
    """A status callback not signed with the account's token changes nothing."""
    t = await _ticket_with_citizen(harness)
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    await harness.drain_outbox()
    [sent] = harness.fake.sent
    params = {"MessageSid": sent.sid, "MessageStatus": "failed", "AccountSid": sent.account_sid}
    status, _ = await harness.post_whatsapp(
        params, signature="Zm9yZ2Vk", path="/webhooks/whatsapp/wa1/status"
    )
    assert status == 403
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert r["state"] == "sent"


async def test_status_before_the_send_answer_is_kept_and_applied(harness: HubHarness) -> None:
    """A callback that beats the provider's 201 is parked and applied when the id is known."""
    t = await _ticket_with_citizen(harness)
    _, body = await harness.api("POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"})
    sid = "SM" + "f" * 32
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC" + "1" * 32}
    status, _ = await harness.post_whatsapp(params, path="/webhooks/whatsapp/wa1/status")
    assert status == 204
    # the sender now learns the id the callback named (as if Twilio answered with it)
    cid = t["contact_id"]
    await harness.hub.store.map_provider_id("whatsapp", sid, cid, body["reply_id"])
    sender = harness.sender()
    await sender._apply_early("whatsapp", sid, cid, body["reply_id"])
    r = _reply(await harness.ticket(t["id"]), body["reply_id"])
    assert r["state"] == "delivered"


async def test_reply_to_closed_ticket_is_refused(harness: HubHarness) -> None:
    """A closed ticket takes no replies; the agent is told why."""
    t = await _ticket_with_citizen(harness)
    await harness.api("POST", f"/api/v1/tickets/{t['id']}/status", json={"status": "closed"})
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies", json={"text": "Halo"}
    )
    assert (status, body["error"]) == (409, "ticket_closed")


async def test_whatsapp_replies_refuse_files_for_now(harness: HubHarness) -> None:
    """A channel that cannot carry files says so instead of dropping them."""
    t = await _ticket_with_citizen(harness)
    status, up = await harness.api(
        "POST", "/api/v1/attachments", params={"name": "a.txt"}, data=b"x",
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    assert status == 201
    status, body = await harness.api(
        "POST", f"/api/v1/tickets/{t['id']}/replies",
        json={"text": "file", "attachments": [{"ref": up["ref"], "name": "a.txt"}]},
    )  # fmt: skip
    assert (status, body["error"]) == (422, "attachments_unsupported")
    status, body = await harness.api("POST", "/api/v1/attachments", params={"name": "../x"},
                                     data=b"x")  # fmt: skip
    assert status == 400
