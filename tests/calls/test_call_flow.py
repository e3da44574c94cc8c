"""Calls through the hub: the same phone on WhatsApp and the call log is one citizen, and an
abandoned call becomes a callback ticket at the front of the call center's queue."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.helpers import HubHarness, eventually, inbound_params

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "calls"


async def test_queue_log_calls_become_messages_on_the_callers_contacts(
    harness_factory: Any, tmp_path: Path
) -> None:
    """Tailing queue_log: the answered caller's call joins their WhatsApp ticket; the caller
    who hung up waiting gets a high-priority callback ticket; the withheld caller merges with
    no one."""
    log = tmp_path / "queue_log"
    log.write_bytes(b"")
    h: HubHarness = await harness_factory(
        workers=True,
        channels__call__accounts={
            "hotline": {"unit": "general", "logs": [
                {"kind": "queue_log", "path": str(log), "poll_interval": 0.05}]}
        },
    )  # fmt: skip
    await h.post_whatsapp(inbound_params("Saya akan telepon 1500630", phone="+6281234567890"))

    async def whatsapp_ticket() -> list[dict[str, Any]]:
        return await h.tickets()

    [wa] = await eventually(whatsapp_ticket)
    shutil.copyfile(FIXTURES / "queue_log", log)

    async def calls_in() -> list[dict[str, Any]] | None:
        ts = await h.tickets()
        calls = sum(1 for t in ts if t["channel"] == "call")
        return ts if calls >= 3 else None

    tickets = await eventually(calls_in, limit_s=20, every_s=0.05)
    full = await h.ticket(wa["id"])
    kinds = [m["kind"] for m in full["messages"] if m["direction"] == "in"]
    assert kinds == ["text", "call"]  # the answered call joined the citizen's ticket
    [call] = [m for m in full["messages"] if m.get("kind") == "call"]
    assert call["meta"]["disposition"] == "ANSWERED"
    assert "dijawab" in call["text"]
    by_phone = {t["reply_to"]: t for t in tickets}
    abandoned = by_phone["+6285611112222"]
    assert (abandoned["category"], abandoned["priority"]) == ("panggilan balik", "high")
    withheld = [t for t in tickets if t["reply_to"] == ""]
    assert len(withheld) == 1
    # four callers, four contacts: the withheld caller is merged with no one
    assert len(tickets) == 4
    assert len({t["contact_id"] for t in tickets}) == 4
