"""The automatic acknowledgement: the citizen's first proof that someone has the complaint.

Sent once per new ticket, with the ticket number, in Bahasa Indonesia unless the account says
otherwise. The reply id is derived from the message that opened the ticket, so a redelivered
message re-finds the same acknowledgement instead of sending a second one.
"""

from __future__ import annotations

import structlog

from hub.channelset import ChannelSet
from hub.model import Message
from hub.ports import Applied
from hub.replies import ReplyRefused, ReplyService
from hub.settings import AckSection

log = structlog.get_logger("hub.ack")


class Acknowledger:
    def __init__(self, settings: AckSection, replies: ReplyService, channels: ChannelSet) -> None:
        self.settings = settings
        self.replies = replies
        self.channels = channels

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def text_for(self, msg: Message, number: str) -> str:
        lang = self.channels.ack_language.get(
            (msg.channel, msg.account), self.settings.default_language
        )
        return self.settings.templates[lang].format(ticket_number=number)

    async def ensure(
        self, applied: Applied, msg: Message, number: str, fields: dict[str, str] | None = None
    ) -> None:
        """``fields``: the ticket's hash, number included, if the caller has it."""
        if not self.settings.enabled or not applied.opened_ticket:
            return
        if msg.meta.get("no_autoreply"):  # RFC 3834: auto-submitted, lists, daemons
            log.info("ack.suppressed", ticket_id=applied.ticket_id, reason=msg.meta["no_autoreply"])
            return
        try:
            await self.replies.create(
                applied.ticket_id,
                text=self.text_for(msg, number),
                author="hub",
                kind="auto",
                reply_id=f"ack-{applied.message_id}",
                fields=fields,
            )
        except ReplyRefused as exc:
            log.warning("ack.skipped", ticket_id=applied.ticket_id, reason=exc.code)
