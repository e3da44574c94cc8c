"""RFC 3464 bounces: which of the hub's mails failed, for whom, and why.

A bounce must mark the reply it names as failed on its ticket and never open a ticket of its
own. Standard reports (``multipart/report; report-type=delivery-status``) are read field by
field; a few common non-standard ones (a MAILER-DAEMON mail titled like "Undelivered Mail
Returned to Sender" with the original attached) are recognised from their shape only, so a
citizen's mail that merely quotes headers is never taken for a bounce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.message import Message as StdMessage
from email.parser import BytesHeaderParser, BytesParser, HeaderParser
from email.utils import parseaddr

from hub.model import DeliveryState, StatusUpdate

_MSGID = re.compile(r"<[^<>\s]+>")
_MSGID_HEADER = re.compile(r"^Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_FAIL_STATUS = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})(?![\d.])")
_RECIPIENT_LINE = re.compile(r"^\s*<([^<>\s]+@[^<>\s]+)>:?", re.MULTILINE)
_BOUNCE_SUBJECTS = re.compile(
    r"undeliver(ed|able)|returned mail|delivery (status notification|failure|has failed)"
    r"|mail delivery (failed|failure|subsystem)|failure notice|non[- ]?remis|"
    r"tidak terkirim|gagal terkirim",
    re.IGNORECASE,
)
_DAEMONS = frozenset({"mailer-daemon", "postmaster"})


@dataclass(frozen=True, slots=True)
class Bounce:
    """One delivery report about a mail the hub sent. ``original_message_id`` is with angle
    brackets (the hub's ``provider_id`` of the reply), empty when the report did not say."""

    original_message_id: str
    final_recipient: str = ""
    action: str = ""  # failed | delayed | delivered | relayed | expanded (RFC 3464 §2.3.3)
    status: str = ""  # e.g. 5.1.1
    diagnostic: str = ""
    standard: bool = True  # False: recognised from a non-standard bounce's shape

    @property
    def failed(self) -> bool:
        """Only a failure moves the reply; ``delayed`` still may be delivered."""
        return self.action == "failed" or (not self.action and self.status.startswith("5"))

    def status_update(self, account: str) -> StatusUpdate:
        """The hub's status update for the reply this bounce names (call only if failed)."""
        return StatusUpdate(
            channel="email",
            account=account,
            provider_id=self.original_message_id,
            state=DeliveryState.FAILED if self.failed else DeliveryState.UNDELIVERED,
            error_code=f"smtp-{self.status}" if self.status else "bounce",
            error_message=self.diagnostic[:500],
        )


def _field(value: object) -> str:
    """``rfc822; citizen@example.id`` → ``citizen@example.id``; ``smtp; 550 ...`` likewise."""
    text = " ".join(str(value or "").split())
    _type, sep, rest = text.partition(";")
    return rest.strip() if sep else text.strip()


def _original_message_id(parts: list[StdMessage], allow_text: bool = False) -> str:
    """The returned mail's Message-ID, from message/rfc822 or text/rfc822-headers parts (and,
    with ``allow_text``, from a ``Message-ID:`` line in a text/plain part)."""
    for part in parts:
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, StdMessage):
                found = _MSGID.search(str(inner.get("Message-ID", "")))
                if found:
                    return found.group(0)
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers") or (
            allow_text and ctype == "text/plain"
        ):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
                found = _MSGID.search(str(headers.get("Message-ID", "")))
                if found:
                    return found.group(0)
                text = raw.decode("utf-8", "replace")
                hit = _MSGID_HEADER.search(text)
                if hit:
                    return hit.group(1)
    return ""


def _delivery_status_groups(part: StdMessage) -> list[StdMessage]:
    """The field groups of a message/delivery-status part (per-message, then per-recipient).

    The stdlib parses the part into a list of header blocks; a part sent as text (some MTAs
    label it wrongly or encode it) is parsed here by splitting on blank lines."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, StdMessage)]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [HeaderParser(policy=policy.compat32).parsestr(b) for b in blocks if b.strip()]


def _standard(msg: StdMessage) -> Bounce | None:
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return None
    parts = [p for p in msg.walk() if p is not msg]
    status_part = next(
        (
            p
            for p in parts
            if p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
        ),
        None,
    )
    if status_part is None:
        return None
    recipients = [
        g
        for g in _delivery_status_groups(status_part)
        if g.get("Final-Recipient") or g.get("Action")
    ]
    chosen = next(
        (g for g in recipients if str(g.get("Action", "")).strip().lower() == "failed"),
        recipients[0] if recipients else None,
    )
    others = [p for p in parts if p is not status_part]
    original = _original_message_id(others) or _original_message_id(others[1:], allow_text=True)
    if chosen is None:
        return Bounce(original_message_id=original)
    status = _STATUS.search(str(chosen.get("Status", "")))
    return Bounce(
        original_message_id=original,
        final_recipient=_field(chosen.get("Final-Recipient") or chosen.get("Original-Recipient")),
        action=str(chosen.get("Action", "")).strip().lower(),
        status=status.group(1) if status else "",
        diagnostic=_field(chosen.get("Diagnostic-Code"))[:1000],
    )


def _from_daemon(msg: StdMessage) -> bool:
    for header in ("From", "Return-Path"):
        addr = parseaddr(str(msg.get(header, "")))[1].lower()
        if (addr.rpartition("@")[0] or addr) in _DAEMONS:
            return True
    return str(msg.get("Return-Path", "")).strip() == "<>"


def _heuristic(msg: StdMessage) -> Bounce | None:
    """A non-standard bounce: from MAILER-DAEMON/postmaster (or a null sender), a bounce-like
    subject, and the original mail (or its headers) attached."""
    if not (_from_daemon(msg) and _BOUNCE_SUBJECTS.search(str(msg.get("Subject", "")))):
        return None
    parts = [p for p in msg.walk() if p is not msg and not p.is_multipart()]
    attached = [
        p for p in msg.walk() if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")
    ]
    original = _original_message_id(attached) if attached else ""
    text = ""
    for part in parts:
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                text = raw.decode(part.get_content_charset() or "utf-8", "replace")
                break
    if not original:
        # The original pasted inline below the explanation ("----- Original message -----").
        hit = _MSGID_HEADER.search(text)
        original = hit.group(1) if hit else ""
    if not original:
        return None
    status = _FAIL_STATUS.search(text)
    recipient = _RECIPIENT_LINE.search(text)
    diagnostic = ""
    if recipient:
        start = recipient.end()
        diagnostic = " ".join(text[start : start + 600].split("\n\n", 1)[0].split())
    return Bounce(
        original_message_id=original,
        final_recipient=recipient.group(1).lower() if recipient else "",
        action="failed",
        status=status.group(1) if status else "5.0.0",
        diagnostic=diagnostic[:1000],
        standard=False,
    )


def parse_bounce(msg: StdMessage) -> Bounce | None:
    """The bounce this mail is, or None if it is not one (most mail)."""
    return _standard(msg) or _heuristic(msg)


def parse_bounce_bytes(raw: bytes) -> Bounce | None:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parse_bounce(parsed)
