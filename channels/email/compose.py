"""Replies that thread under the citizen's mail in every mail client.

RFC 5322 §3.6.4: ``In-Reply-To`` is the parent's Message-ID and ``References`` the parent's
References (or its single In-Reply-To) followed by the parent's Message-ID, so Thunderbird,
Outlook and Gmail all file the reply in the citizen's thread; the subject gets ``Re:`` once
and the ticket number once, so the citizen (and the hub, when they answer) can quote it.
The Message-ID is made here and returned: the hub records it, so the citizen's answer to this
reply (which names it in In-Reply-To) joins the same ticket, and a bounce names the reply.
The hub's automatic mail carries ``Auto-Submitted: auto-replied`` (RFC 3834) so that other
robots do not answer it, and ``X-Auto-Response-Suppress`` so Exchange sends no out-of-office.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from channels.email.parse import TICKET_NUMBER

_REPLY_PREFIX = re.compile(
    r"^\s*((re|aw|sv|antw|bls|balas|r|fwd?|tr|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)
_MSGID = re.compile(r"<[^<>\s]+>")
MAX_REFERENCES = 20


@dataclass(frozen=True, slots=True)
class OutAttachment:
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ComposedMail:
    """The reply, ready for ``smtp_out.send``; ``message_id`` (with angle brackets) is what
    the hub records as the reply's provider id."""

    message: EmailMessage
    message_id: str


def reply_subject(original: str, ticket_number: str = "") -> str:
    """``Re: <subject> [KMN-…]``: every leading Re:/RE:/Aw:/Balas:/Fwd: collapsed into one
    ``Re:``, and the ticket number added unless the subject already carries it."""
    base = " ".join(original.split())
    base = _REPLY_PREFIX.sub("", base).strip()
    if ticket_number and ticket_number not in TICKET_NUMBER.findall(base):
        base = f"{base} [{ticket_number}]".strip()
    return f"Re: {base}" if base else "Re:"


def thread_references(
    parent_message_id: str, parent_references: str = "", parent_in_reply_to: str = ""
) -> list[str]:
    """RFC 5322 §3.6.4: the parent's References (or its single In-Reply-To), then the parent's
    Message-ID. Long chains keep the first id (the thread root) and the most recent ones."""
    refs = _MSGID.findall(parent_references)
    if not refs:
        in_reply = _MSGID.findall(parent_in_reply_to)
        refs = in_reply[:1] if len(in_reply) == 1 else []
    refs = [r for r in refs if r != parent_message_id]
    refs.append(parent_message_id)
    deduped = list(dict.fromkeys(refs))
    if len(deduped) > MAX_REFERENCES:
        deduped = [deduped[0], *deduped[-(MAX_REFERENCES - 1) :]]
    return deduped


def text_to_html(text: str) -> str:
    """The text alternative as HTML: escaped, paragraphs on blank lines, ``<br>`` inside."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip())
    body = "\n".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in p.split("\n")) + "</p>"
        for p in paragraphs
        if p.strip()
    )
    head = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n'
    return f"{head}{body}\n</body></html>\n"


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def reply_message_id(reply_id: str, domain: str) -> str:
    """A Message-ID derived from the hub's reply id: a retried send carries the same id, so
    the citizen's mail client shows a duplicate delivery once."""
    safe = re.sub(r"[^A-Za-z0-9.$%_+-]", "-", reply_id)
    return f"<{safe}.kmn@{domain}>"


def build_reply(
    *,
    from_address: str,
    to_address: str,
    text: str,
    subject: str,
    from_name: str = "",
    to_name: str = "",
    ticket_number: str = "",
    parent_message_id: str = "",
    parent_references: str = "",
    parent_in_reply_to: str = "",
    html_body: str | None = None,
    attachments: Sequence[OutAttachment] = (),
    automatic: bool = False,
    message_id: str = "",
    date: float | None = None,
) -> ComposedMail:
    """Build one reply. ``subject`` is the parent's subject (``Re:`` and the ticket number are
    added here); ``parent_*`` are the citizen's mail's Message-ID, References and In-Reply-To
    headers (empty for a first mail from the hub). ``message_id`` defaults to a fresh
    ``make_msgid`` on the account's domain; pass ``reply_message_id(reply_id, domain)`` to keep
    it stable across retries. ``automatic`` marks the hub's acknowledgement."""
    domain = _domain_of(from_address)
    if "@" not in from_address or not domain or "@" not in to_address:
        raise ValueError("from_address and to_address must be e-mail addresses")
    msg = EmailMessage()
    msg["From"] = Address(display_name=from_name, addr_spec=from_address)
    msg["To"] = Address(display_name=to_name, addr_spec=to_address)
    msg["Subject"] = reply_subject(subject, ticket_number)
    msg["Date"] = format_datetime(
        datetime.fromtimestamp(date if date is not None else time.time(), UTC)
    )
    mid = message_id or make_msgid(domain=domain)
    msg["Message-ID"] = mid
    parent = (_MSGID.findall(parent_message_id) or [""])[0]
    if parent:
        msg["In-Reply-To"] = parent
        msg["References"] = " ".join(
            thread_references(parent, parent_references, parent_in_reply_to)
        )
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(
        html_body if html_body is not None else text_to_html(text), subtype="html", charset="utf-8"
    )
    for att in attachments:
        maintype, _sep, subtype = att.content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.name)
    return ComposedMail(message=msg, message_id=mid)
