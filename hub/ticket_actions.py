"""What agents do to a ticket, each step checked against who they are and written to the
ticket's audit trail (who, what, when), then announced to the live consoles."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from hub.accounts import Principal
from hub.channelset import ChannelSet
from hub.errors import Refusal
from hub.ports import EventBus, TicketStore, split_ticket_id
from hub.queue import PRIORITY_RANK, QueueError, QueueService, queue_score
from hub.replies import QueuedReply, ReplyService
from hub.settings import Settings

log = structlog.get_logger("hub.actions")
STATUSES = ("open", "resolved", "closed")
# (ticket id, the ticket's fields before the change, new status): told after a status changed.
StatusListener = Callable[[str, dict[str, str], str], Awaitable[None]]


class ActionError(Refusal):
    """A ticket action refused (not visible, closed, bad value, ...)."""


class TicketActions:
    def __init__(
        self,
        settings: Settings,
        store: TicketStore,
        queue: QueueService,
        events: EventBus,
        replies: ReplyService,
        channels: ChannelSet,
        status_listeners: Sequence[StatusListener] = (),
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.events = events
        self.replies = replies
        self.channels = channels
        self.status_listeners = list(status_listeners)

    async def visible(self, who: Principal, tid: str) -> dict[str, str]:
        """The ticket's fields, if ``who`` may see it (404 rather than 403 for other units,
        so ticket numbers of other units cannot be probed)."""
        fields = await self.store.get_ticket_fields(tid)
        if not fields or not who.can_see(fields.get("unit", "general")):
            raise ActionError("not_found", "no such ticket", 404)
        return fields

    async def _event(
        self, who: Principal, tid: str, kind: str, fields: dict[str, str], **details: Any
    ) -> None:
        await self.store.add_event(tid, {"type": kind, "actor": who.name, **details}, fields)
        await self.events.publish({"type": f"ticket.{kind}", "ticket_id": tid, "by": who.name})
        log.info(f"ticket.{kind}", ticket_id=tid, actor=who.name)

    async def note(self, who: Principal, tid: str, text: str) -> None:
        await self.visible(who, tid)
        if not text.strip():
            raise ActionError("empty_note", "a note needs text", 422)
        await self._event(who, tid, "note", {}, text=text)

    async def set_priority(self, who: Principal, tid: str, priority: str) -> None:
        fields = await self.visible(who, tid)
        if priority not in PRIORITY_RANK:
            raise ActionError("bad_priority", f"priority must be one of {list(PRIORITY_RANK)}", 400)
        await self._event(
            who,
            tid,
            "priority",
            {"priority": priority},
            priority=priority,
            previous=fields.get("priority", ""),
        )
        if fields.get("status") == "open" and not (await self.queue.queue.holder(tid)):
            since = int(fields.get("reopened_at") or fields.get("created_at") or 0)
            await self.queue.queue.release(
                tid, "", "requeue", "", str(queue_score(priority, since))
            )

    async def set_category(self, who: Principal, tid: str, category: str) -> None:
        fields = await self.visible(who, tid)
        await self._event(
            who,
            tid,
            "category",
            {"category": category},
            category=category,
            previous=fields.get("category", ""),
        )

    async def set_status(self, who: Principal, tid: str, status: str) -> str:
        fields = await self.visible(who, tid)
        if status not in STATUSES:
            raise ActionError("bad_status", f"status must be one of {STATUSES}", 400)
        result, previous = await self.store.set_ticket_status(tid, status, who.name)
        if result == "refused":
            raise ActionError("ticket_closed", "a closed ticket cannot change status")
        if result == "changed":
            await self.store.reindex([tid])
            if status == "open":
                await self.queue.ticket_waiting(
                    tid,
                    fields.get("unit", "general"),
                    fields.get("priority", "normal"),
                    int(float(fields.get("created_at", "0"))),
                )
            else:
                await self.queue.done(tid)
            await self.events.publish(
                {"type": "ticket.status", "ticket_id": tid, "status": status, "by": who.name}
            )
            log.info("ticket.status_changed", ticket_id=tid, status=status, previous=previous)
            await self._tell_listeners(tid, fields, status)
        return previous

    async def _tell_listeners(self, tid: str, fields: dict[str, str], status: str) -> None:
        for listener in self.status_listeners:
            try:
                await listener(tid, fields, status)
            except Exception as exc:  # a listener never undoes or fails the change
                log.warning("ticket.status_listener_failed", ticket_id=tid, error=repr(exc))

    async def reply(
        self,
        who: Principal,
        tid: str,
        *,
        text: str = "",
        template: str = "",
        variables: dict[str, str] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        via: str = "",
    ) -> QueuedReply:
        fields = await self.visible(who, tid)
        if who.role == "agent":  # people reply on tickets they hold; machines and supervisors may
            try:
                await self.queue.ensure_holder(who, tid, fields.get("unit", "general"))
            except QueueError as exc:
                raise ActionError(exc.code, str(exc), exc.status) from None
        q = await self.replies.create(
            tid, text=text, template=template, variables=variables, author=who.name,
            attachments=attachments,
            via=via,
        )  # fmt: skip
        await self.events.publish(
            {"type": "reply.queued", "ticket_id": tid, "reply_id": q.reply_id, "by": who.name}
        )
        return q

    async def merge_tickets(self, who: Principal, src: str, dst: str) -> None:
        """``src`` closes into ``dst``; ``dst``'s timeline shows both from now on."""
        if src == dst:
            raise ActionError("same_ticket", "a ticket cannot be merged into itself", 400)
        s_fields = await self.visible(who, src)
        d_fields = await self.visible(who, dst)
        if d_fields.get("status") == "closed":
            raise ActionError("ticket_closed", "merge into an open or resolved ticket")
        if s_fields.get("merged_into"):
            raise ActionError("already_merged", f"already merged into {s_fields['merged_into']}")
        result, _ = await self.store.set_ticket_status(src, "closed", who.name)
        if result == "changed":  # the portal learns its request was closed into another
            await self._tell_listeners(src, s_fields, "closed")
        await self.store.add_event(
            src, {"type": "merged_into", "actor": who.name, "into": dst}, {"merged_into": dst}
        )
        merged = [*json.loads(d_fields.get("merged_from") or "[]"), src]
        await self.store.add_event(
            dst,
            {"type": "merged", "actor": who.name, "from": src},
            {"merged_from": json.dumps(merged)},
        )
        s_cid, _ = split_ticket_id(src)
        d_cid, d_n = split_ticket_id(dst)
        if s_cid == d_cid and d_fields.get("status") == "open":
            await self.store.set_open_ticket(d_cid, d_n)
        await self.queue.done(src)
        await self.store.reindex([src, dst])
        await self.events.publish({"type": "ticket.merged", "ticket_id": dst, "from": src})

    async def _contact_visible(self, who: Principal, cid: str) -> dict[str, Any]:
        contact = await self.store.get_contact(cid)
        if contact is None:
            raise ActionError("not_found", f"no contact {cid!r}", 404)
        if not who.sees_all_units:
            for tid in contact["tickets"]:
                fields = await self.store.get_ticket_fields(tid)
                if fields and who.can_see(fields.get("unit", "")):
                    break
            else:
                raise ActionError("not_found", f"no contact {cid!r}", 404)
        return contact

    async def merge_contacts(self, who: Principal, into: str, other: str) -> list[str]:
        if into == other:
            raise ActionError("same_contact", "a contact cannot be merged into itself", 400)
        await self._contact_visible(who, into)
        o = await self._contact_visible(who, other)
        if o.get("merged_into"):
            raise ActionError("already_merged", f"already merged into {o['merged_into']}")
        moved = await self.store.merge_contacts(into, other, who.name)
        await self.events.publish({"type": "contact.merged", "contact_id": into, "from": other})
        log.info("contact.merged", contact_id=into, other=other, actor=who.name)
        return moved

    async def unmerge_contacts(self, who: Principal, into: str, other: str) -> list[str]:
        c = await self._contact_visible(who, into)
        if other not in c.get("merged_contacts", []):
            raise ActionError("not_merged", f"{other} was not merged into {into}", 400)
        moved = await self.store.unmerge_contacts(into, other, who.name)
        await self.events.publish({"type": "contact.unmerged", "contact_id": into, "from": other})
        log.info("contact.unmerged", contact_id=into, other=other, actor=who.name)
        return moved

    def canned(self, key: str, language: str, values: dict[str, str]) -> str:
        c = self.settings.canned.get(key)
        if c is None:
            raise ActionError("unknown_canned", f"no canned response {key!r}", 404)
        text = c.text_en if language == "en" else c.text_id
        for k, v in values.items():
            text = text.replace("{" + k + "}", v)
        return text
