"""Live call events → screen pop: who is calling, and their open tickets, while it rings.

Nothing is stored here (the call log makes the call a message later); the caller is looked up
without creating a contact, and a live event goes to the consoles of the call account's unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.calls.events import CallEvent
from hub.identity import InvalidIdentity, normalize_phone, phone_identity
from hub.logging import mask_phone
from hub.ports import EventBus, TicketStore

MAX_OPEN = 20


@dataclass(frozen=True, slots=True)
class CallLookup:
    contact_id: str
    open_tickets: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"contact_id": self.contact_id, "open_tickets": self.open_tickets}


async def lookup_caller(store: TicketStore, caller: str, region: str = "ID") -> CallLookup:
    """The caller's contact (``""`` when withheld, invalid or never seen) and its open
    tickets, newest first."""
    try:
        e164 = normalize_phone(caller, region) if caller else ""
    except InvalidIdentity:
        e164 = ""
    cid = (await store.find_contact(phone_identity(e164))) if e164 else None
    if not cid:
        return CallLookup("", [])
    contact = await store.get_contact(cid)
    if contact is None:
        return CallLookup("", [])
    open_ids = []
    for tid in contact["tickets"]:
        if (await store.get_ticket_fields(tid)).get("status") == "open":
            open_ids.append(tid)
            if len(open_ids) >= MAX_OPEN:
                break
    return CallLookup(cid, open_ids)


def masked_caller(caller: str, region: str = "ID") -> str:
    try:
        return mask_phone(normalize_phone(caller, region)) if caller else ""
    except InvalidIdentity:
        return mask_phone(caller[:32])


async def handle_call_event(
    ev: CallEvent, unit: str, account: str, store: TicketStore, events: EventBus, region: str
) -> CallLookup:
    """Resolve the caller and publish ``call.<event>`` for the consoles of ``unit``."""
    found = await lookup_caller(store, ev.caller, region)
    await events.publish(
        {
            "type": f"call.{ev.event}",
            "call_id": ev.call_id,
            "account": account,
            "unit": unit,
            "agent": ev.agent,
            "queue": ev.queue,
            "caller_masked": masked_caller(ev.caller, region),
            "contact_id": found.contact_id,
        }
    )
    return found
