"""The e-mail channel as the hub sees it: replies go out by SMTP, threaded; mail comes in
through the IMAP intake (``hub.mail_intake``), not through webhooks.

Settings: ``channels.email.accounts.<name>``: address, display_name, unit, imap_*, smtp_*,
max_attachment_bytes. E-mail has no reply window: free text is always allowed.
"""

from __future__ import annotations

from channels.base import InboundRequest, ParsedInbound, PayloadError, WindowRule
from channels.email import compose, smtp_out
from hub.model import DeliveryResult, OutboundReply, StatusUpdate
from hub.settings import EmailAccount

NO_WINDOW = WindowRule(free_text_hours=10**6, template_required_outside=False, attachments=True)


class EmailChannel:
    name = "email"

    def __init__(self, account: str, settings: EmailAccount, send_timeout_s: float = 30.0) -> None:
        self.account = account
        self.settings = settings
        self.window = NO_WINDOW
        self.domain = settings.address.rpartition("@")[2]
        self.server = smtp_out.SmtpServer(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            timeout=min(settings.smtp_timeout_seconds, send_timeout_s),
        )

    def __repr__(self) -> str:  # never a password
        return f"EmailChannel(account={self.account!r}, address={self.settings.address!r})"

    def verify(self, request: InboundRequest) -> None:
        raise PayloadError("e-mail arrives by IMAP or SMTP, not by webhook")

    def parse(self, request: InboundRequest, received_at: float) -> ParsedInbound:
        raise PayloadError("e-mail arrives by IMAP or SMTP, not by webhook")

    def parse_status(self, request: InboundRequest) -> StatusUpdate:
        raise PayloadError("e-mail reports bounces by mail, not by webhook")

    async def send(self, reply: OutboundReply) -> DeliveryResult:
        ctx = reply.context
        mail = compose.build_reply(
            from_address=self.settings.address,
            from_name=self.settings.display_name,
            to_address=reply.to,
            text=reply.text,
            subject=str(ctx.get("subject", "")),
            ticket_number=reply.ticket_number,
            parent_message_id=str(ctx.get("message_id", "")),
            parent_references=str(ctx.get("references", "")),
            parent_in_reply_to=str(ctx.get("in_reply_to", "")),
            automatic=reply.automatic,
            message_id=compose.reply_message_id(reply.reply_id, self.domain),
            attachments=[
                compose.OutAttachment(f.name, f.content_type, f.data) for f in reply.files
            ],
        )
        result = await smtp_out.send(mail.message, self.server)
        if not result.accepted:
            return result
        return DeliveryResult(
            accepted=True,
            provider_id=mail.message_id,
            state=result.state,
            thread_hints=(f"email-msgid:{mail.message_id}",),
        )

    async def aclose(self) -> None:
        return None
