"""What channels report besides a citizen's messages: echoes, retractions, reactions, and a
phone number a citizen shares as their own.

These ride the inbound stream with the messages (so they keep their order per citizen and
share the dispatcher's crash safety), but none of them may open, reopen or route a ticket, nor
trigger an acknowledgement: an echo is the ministry speaking, a retraction and a reaction are
facts about earlier messages. Every step is idempotent (deterministic entry and event ids), so
a redelivered stream entry changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import structlog

from hub.identity import phone_identity
from hub.model import Message
from hub.ports import EventBus, TicketStore, ticket_id

log = structlog.get_logger("hub.side_events")

SIDE_KINDS = frozenset({"echo", "retraction", "reaction"})
UNSENT_STATES = frozenset({"queued", "sending", "retrying"})


def _stable_id(prefix: str, *parts: str) -> str:
    """An entry or event id derived from the provider's ids, so replays find it again."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"{prefix}-{digest}"


class SideEvents:
    def __init__(self, store: TicketStore, events: EventBus) -> None:
        self.store = store
        self.events = events

    async def apply(self, cid: str, m: Message) -> str:
        """Apply one side event of contact ``cid``; the outcome, for logs and metrics."""
        if m.kind == "echo":
            return await self._echo(cid, m)
        if m.kind == "retraction":
            return await self._retraction(cid, m)
        if m.kind == "reaction":
            return await self._reaction(cid, m)
        raise ValueError(f"not a side event: {m.kind}")

    async def _echo(self, cid: str, m: Message) -> str:
        """The business's own message. The hub's replies come back as echoes too: those are
        known by their provider id, or, when the echo beat the send's answer, by their text
        on a reply of this contact still being sent. Anything else was typed in the
        provider's own app and is recorded as an outbound message already sent."""
        if await self.store.lookup_provider_id(m.channel, m.provider_id):
            return "echo:own"
        text = m.text.strip()
        if text:
            for r in await self.store.recent_outbound(cid):
                if r["channel"] == m.channel and r["state"] in UNSENT_STATES and text in r["text"]:
                    await self.store.map_provider_id(m.channel, m.provider_id, cid, r["id"])
                    return "echo:own_early"
        entry_id = _stable_id("echo", m.channel, m.account, m.provider_id)
        record = {
            "channel": m.channel,
            "account": m.account,
            "to": m.reply_address,
            "text": m.text,
            "attachments": [asdict(a) for a in m.attachments],
            "kind": "external",
            "provider_id": m.provider_id,
        }
        created, n = await self.store.record_outbound(
            cid, entry_id, record, int(m.received_at * 1000), f"{m.channel}-app"
        )
        await self.store.map_provider_id(m.channel, m.provider_id, cid, entry_id)
        tid = ticket_id(cid, n)
        if created:
            await self.events.publish(
                {"type": "reply.state", "ticket_id": tid, "reply_id": entry_id, "state": "sent"}
            )
        log.info("echo.recorded", ticket_id=tid, entry_id=entry_id, created=created)
        return "echo:recorded"

    async def _retraction(self, cid: str, m: Message) -> str:
        retracts = m.meta.get("retracts", "")
        key = f"{m.channel}:{m.account}:{retracts}"
        found = await self.store.retract_message(cid, key, int(m.received_at * 1000))
        if found is None:
            log.warning("message.retract_unknown", channel=m.channel, provider_id=retracts)
            return "retraction:unknown"
        message_id, n, _changed = found
        tid = ticket_id(cid, n)
        await self.store.add_event(
            tid,
            {
                "id": _stable_id("rt", key),
                "type": "message_retracted",
                "actor": "citizen",
                "message_id": message_id,
                "channel": m.channel,
            },
        )
        await self.events.publish(
            {"type": "message.retracted", "ticket_id": tid, "message_id": message_id}
        )
        log.info("message.retracted", ticket_id=tid, message_id=message_id)
        return "retraction:applied"

    async def _reaction(self, cid: str, m: Message) -> str:
        """A reaction is noted on the ticket of the message it reacts to (the hub's reply or
        the citizen's own message), else on the contact's current ticket."""
        reacted = m.meta.get("reacted_to", "")
        tid = ""
        ours = await self.store.lookup_provider_id(m.channel, reacted) if reacted else None
        if ours is not None:
            entry = await self.store.get_entry(*ours)
            if entry.get("ticket"):
                tid = ticket_id(ours[0], entry["ticket"])
        if not tid:
            contact = await self.store.get_contact(cid) or {}
            own = [t for t in contact.get("tickets", []) if t.startswith(f"{cid}.")]
            if not own:
                log.info("reaction.no_ticket", channel=m.channel)
                return "reaction:no_ticket"
            tid = own[0]  # the newest
        await self.store.add_event(
            tid,
            {
                "id": _stable_id("rx", m.channel, m.account, m.provider_id),
                "type": "reaction",
                "actor": "citizen",
                "emoji": m.text[:16],
                "action": m.meta.get("action", "react"),
                "reacted_to": reacted,
                "reply_id": ours[1] if ours else "",
                "channel": m.channel,
            },
        )
        await self.events.publish({"type": "ticket.reaction", "ticket_id": tid})
        return "reaction:noted"

    async def link_shared_phone(self, cid: str, tid: str, m: Message) -> str:
        """A citizen shared their own phone number (Telegram's contact button): the phone's
        contact and this one are the same person. An unknown phone joins this contact; a
        known one absorbs this contact (an agent can undo it with un-merge)."""
        phone = m.meta.get("shared_phone", "")
        if m.meta.get("shared_phone_is_sender") != "true" or not phone:
            return "not_own_phone"
        ident = phone_identity(phone)
        owner = await self.store.link_identity(cid, ident)
        if owner == cid:
            outcome, details = "identity_linked", {"identity": "phone"}
        else:
            moved = await self.store.merge_contacts(owner, cid, f"{m.channel}:shared-contact")
            outcome, details = "contact_linked", {"into": owner, "identities": str(len(moved))}
            await self.events.publish({"type": "contact.merged", "contact_id": owner, "from": cid})
        await self.store.add_event(
            tid,
            {
                "id": _stable_id("ln", m.channel, m.account, m.provider_id),
                "type": outcome,
                "actor": "citizen",
                "channel": m.channel,
                **details,
            },
        )
        log.info(f"contact.{outcome}", ticket_id=tid, contact_id=cid, owner=owner)
        return outcome
