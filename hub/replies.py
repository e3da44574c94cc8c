"""Replies from agents and from the hub: channel rules first, then the outbox.

The reply goes out on the channel and account of the citizen's last inbound message on the
ticket, because that is where the citizen is listening and where the provider's window is open.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from channels.base import WindowRule
from hub.channelset import ChannelSet
from hub.clock import Clock
from hub.errors import Refusal
from hub.ids import new_id
from hub.ports import OutboxQueue, TicketStore, split_ticket_id

log = structlog.get_logger("hub.replies")


class ReplyRefused(Refusal):
    """The reply cannot be sent as asked (window closed, unknown template, ...)."""


@dataclass(frozen=True, slots=True)
class Window:
    channel: str
    account: str
    last_inbound_at: float | None
    free_text_hours: float
    now: float
    human_agent_hours: float = 0.0

    def _left(self, hours: float) -> float:
        if self.last_inbound_at is None:
            return 0.0
        return max(0.0, self.last_inbound_at + hours * 3600 - self.now)

    @property
    def seconds_left(self) -> float:
        return self._left(self.free_text_hours)

    @property
    def open(self) -> bool:
        return self.seconds_left > 0

    @property
    def human_agent_seconds_left(self) -> float:
        """After the free window, how long a human agent may still answer (tagged)."""
        if self.human_agent_hours <= self.free_text_hours:
            return 0.0
        return self._left(self.human_agent_hours)

    @property
    def mode(self) -> str:
        """open: anyone may write; human_agent: only an agent, tagged HUMAN_AGENT; closed."""
        if self.open:
            return "open"
        if self.human_agent_seconds_left > 0:
            return "human_agent"
        return "closed"

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "open": self.open,
            "mode": self.mode,
            "seconds_left": int(self.seconds_left),
            "human_agent_seconds_left": int(self.human_agent_seconds_left),
        }


@dataclass(frozen=True, slots=True)
class QueuedReply:
    reply_id: str
    ticket_id: str
    channel: str
    account: str
    state: str
    created: bool


class ReplyService:
    def __init__(
        self, store: TicketStore, outbox: OutboxQueue, channels: ChannelSet, clock: Clock
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.channels = channels
        self.clock = clock

    async def window(self, tid: str) -> Window:
        fields = await self.store.get_ticket_fields(tid)
        if not fields:
            raise ReplyRefused("not_found", "no such ticket", status=404)
        return self._window(fields)

    def _window(self, fields: dict[str, str]) -> Window:
        channel, account = fields.get("reply_channel", ""), fields.get("reply_account", "")
        ch = self.channels.get(channel, account)
        hours = ch.window.free_text_hours if ch is not None else 0.0
        human = ch.window.human_agent_hours if ch is not None else 0.0
        last = fields.get("last_inbound_at")
        return Window(
            channel, account, float(last) / 1000 if last else None, hours, self.clock.now(), human
        )

    @staticmethod
    def _tag_outside_window(rule: WindowRule, window: Window, kind: str) -> str:
        """Past the free window of a channel with a human-agent extension (Instagram): an agent may
        answer within the extension, tagged HUMAN_AGENT; nobody may after it, and automatic
        replies never may (Meta's rule, and the ministry's: a machine does not chase a
        citizen days later)."""
        if window.mode == "human_agent" and kind == "agent":
            return "HUMAN_AGENT"
        if window.mode == "human_agent":
            raise ReplyRefused(
                "window_closed",
                f"only a human agent may answer on {window.channel} after "
                f"{rule.free_text_hours:g} hours",
                window=window.as_dict(),
            )
        limit = max(rule.free_text_hours, rule.human_agent_hours)
        raise ReplyRefused(
            "window_closed",
            f"the citizen last wrote on {window.channel} more than {limit:g} hours ago: "
            "the channel no longer accepts replies; reach the citizen on another channel "
            "or wait until they write again",
            window=window.as_dict(),
        )

    async def _via(self, tid: str, fields: dict[str, str], via: str) -> dict[str, str]:
        """The ticket's reply fields redirected to another channel that reaches the citizen
        (a call ticket answered on WhatsApp, say): the account the citizen last wrote on
        there, with that channel's window; else the citizen's phone on the first account of
        the channel, whose window is then closed (a template is needed)."""
        contact = await self.store.get_contact(split_ticket_id(tid)[0]) or {}
        seen: list[tuple[int, str, str]] = []
        for key, value in contact.items():
            if isinstance(value, str) and key.startswith(f"last_in:{via}:"):
                at_ms, _, address = value.partition("|")
                seen.append((int(at_ms), key.split(":", 2)[2], address))
        if seen:
            latest, account, address = max(seen)
            last = str(latest)
        else:
            phones = [i["value"] for i in contact.get("identities", []) if i["kind"] == "phone"]
            accounts = self.channels.accounts(via)
            if not phones or not accounts:
                raise ReplyRefused(
                    "channel_unreachable", f"the citizen cannot be reached on {via}", status=422
                )
            account, address, last = accounts[0], phones[0], ""
        return {**fields, "reply_channel": via, "reply_account": account, "reply_to": address,
                "last_inbound_at": last, "reply_context": ""}  # fmt: skip

    async def create(
        self,
        tid: str,
        *,
        text: str = "",
        template: str = "",
        variables: dict[str, str] | None = None,
        author: str,
        kind: str = "agent",
        reply_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        via: str = "",
        fields: dict[str, str] | None = None,
    ) -> QueuedReply:
        """Queue a reply on the ticket's channel, by its rules. ``fields``: the ticket's hash
        if the caller has just read it (the dispatcher, for an acknowledgement)."""
        if fields is None:
            fields = await self.store.get_ticket_fields(tid)
        if not fields:
            raise ReplyRefused("not_found", "no such ticket", status=404)
        if via and via != fields.get("reply_channel"):
            fields = await self._via(tid, fields, via)
        if fields.get("status") == "closed":
            raise ReplyRefused("ticket_closed", "the ticket is closed")
        channel, account = fields.get("reply_channel", ""), fields.get("reply_account", "")
        ch = self.channels.get(channel, account)
        if ch is None:
            raise ReplyRefused(
                "channel_unavailable",
                f"the citizen's channel {channel}/{account} is not enabled on this hub",
            )
        window = self._window(fields)
        record: dict[str, Any] = {
            "channel": channel,
            "account": account,
            "to": fields.get("reply_to", ""),
            "kind": kind,
            "ticket_id": tid,
            "ticket_number": fields.get("number", ""),
            "context": json.loads(fields.get("reply_context") or "{}"),
        }
        if template:
            values = {"ticket_number": fields.get("number", ""), **(variables or {})}
            try:
                tpl = self.channels.template(channel, account, template, values)
            except KeyError:
                raise ReplyRefused(
                    "unknown_template",
                    f"no approved template {template!r} on {channel}/{account}",
                    status=422,
                    templates=sorted(self.channels.templates.get((channel, account), {})),
                ) from None
            except ValueError as exc:
                raise ReplyRefused("template_variables", str(exc), status=422) from None
            record["template"] = asdict(tpl)
            record["text"] = ""
        else:
            if not text.strip():
                raise ReplyRefused("empty_reply", "a reply needs text or a template", status=422)
            if not window.open and ch.window.template_required_outside:
                raise ReplyRefused(
                    "template_required",
                    f"the {ch.window.free_text_hours:g}-hour window on {channel} is closed: "
                    "send an approved template instead",
                    window=window.as_dict(),
                    templates=sorted(self.channels.templates.get((channel, account), {})),
                )
            if not window.open and ch.window.human_agent_hours > 0:
                record["message_tag"] = self._tag_outside_window(ch.window, window, kind)
            record["text"] = text
        if attachments:
            if not ch.window.attachments:
                raise ReplyRefused(
                    "attachments_unsupported",
                    f"replies on {channel} cannot carry files here",
                    status=422,
                )
            record["attachments"] = attachments
        rid = reply_id or new_id(int(self.clock.now() * 1000))
        created, state = await self.store.add_reply(tid, rid, record, kind, author)
        if created < 0:
            raise ReplyRefused("not_found", "no such ticket", status=404)
        if state == "queued":
            cid, _ = split_ticket_id(tid)
            await self.outbox.enqueue(channel, cid, rid)
        log.info(
            "reply.queued",
            ticket_id=tid,
            reply_id=rid,
            channel=channel,
            kind=kind,
            created=bool(created),
        )
        return QueuedReply(rid, tid, channel, account, state, bool(created))
