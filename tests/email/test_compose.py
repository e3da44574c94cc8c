"""Replies: threading headers (RFC 5322 §3.6.4), subject, alternatives, attachments, RFC 3834."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from channels.email.compose import (
    MAX_REFERENCES,
    OutAttachment,
    build_reply,
    reply_message_id,
    reply_subject,
    thread_references,
)
from channels.email.loops import should_not_autoreply
from channels.email.parse import parse_mail

FIXTURES = Path(__file__).parent.parent / "fixtures" / "email"


def reply_to_fixture(name: str, **kw: object) -> tuple[EmailMessage, str]:
    parent = parse_mail((FIXTURES / name).read_bytes(), "ppid", 0.0).message
    composed = build_reply(
        from_address="ppid@kemnaker.go.id",
        from_name="PPID Kemnaker",
        to_address=parent.reply_address,
        to_name=parent.display_name,
        text="Terima kasih, pengaduan Anda kami terima.",
        subject=parent.meta["subject"],
        ticket_number="KMN-2026-000123",
        parent_message_id=parent.provider_id,
        parent_references=parent.meta.get("references", ""),
        parent_in_reply_to=parent.meta.get("in_reply_to", ""),
        **kw,  # type: ignore[arg-type]
    )
    return composed.message, composed.message_id


def reparse(msg: EmailMessage) -> EmailMessage:
    out = BytesParser(policy=policy.default).parsebytes(msg.as_bytes())
    assert isinstance(out, EmailMessage)
    return out


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Pertanyaan JHT", "Re: Pertanyaan JHT [KMN-2026-000123]"),
        ("Re: Pertanyaan JHT", "Re: Pertanyaan JHT [KMN-2026-000123]"),
        ("RE: Re: re: Pertanyaan JHT", "Re: Pertanyaan JHT [KMN-2026-000123]"),
        ("Re: Pertanyaan JHT [KMN-2026-000123]", "Re: Pertanyaan JHT [KMN-2026-000123]"),
        ("Balas: AW: Fwd: Pertanyaan", "Re: Pertanyaan [KMN-2026-000123]"),
        ("KMN-2026-000123 soal JHT", "Re: KMN-2026-000123 soal JHT"),
        ("", "Re: [KMN-2026-000123]"),
    ],
)
def test_subject_gets_one_re_and_the_ticket_number_once(original: str, expected: str) -> None:
    """Never "Re: Re:", never the ticket number twice."""
    assert reply_subject(original, "KMN-2026-000123") == expected


def test_reply_threads_under_a_first_mail() -> None:
    """In-Reply-To = the parent's Message-ID; References = the parent's Message-ID."""
    msg, mid = reply_to_fixture("plain_utf8.eml")
    back = reparse(msg)
    assert back["In-Reply-To"] == "<CAF7x9QpLr2@mail.example.id>"
    assert back["References"] == "<CAF7x9QpLr2@mail.example.id>"
    assert back["Message-ID"] == mid
    assert mid.startswith("<")
    assert mid.endswith("@kemnaker.go.id>")
    assert back["From"] == "PPID Kemnaker <ppid@kemnaker.go.id>"
    assert back["To"] == "Siti Rahayu <siti.rahayu@example.id>"
    assert back["Subject"] == "Re: Pertanyaan tentang pencairan JHT [KMN-2026-000123]"
    assert back["Auto-Submitted"] is None


def test_reply_extends_a_references_chain() -> None:
    """References = the parent's References followed by the parent's Message-ID."""
    msg, _ = reply_to_fixture("reply_gmail.eml")
    back = reparse(msg)
    assert back["In-Reply-To"] == "<CAJx-7gm+Q=abc123@mail.gmail.example>"
    assert back["References"].split() == [
        "<CAJx-first@mail.gmail.example>",
        "<reply-1.KMN@kemnaker.go.id>",
        "<CAJx-second@mail.gmail.example>",
        "<reply-2.KMN@kemnaker.go.id>",
        "<CAJx-7gm+Q=abc123@mail.gmail.example>",
    ]


def test_parent_with_only_in_reply_to_uses_it_as_references() -> None:
    """Outlook sends In-Reply-To without References: it starts the chain (§3.6.4)."""
    msg, _ = reply_to_fixture("reply_outlook.eml")
    assert reparse(msg)["References"].split() == [
        "<reply-9.KMN@kemnaker.go.id>",
        "<SG2PR01MB1234ABCD@SG2PR01MB1234.apcprd01.prod.outlook.example>",
    ]


def test_long_reference_chains_keep_the_root_and_the_newest() -> None:
    """Above the cap, the thread root and the most recent ids are kept."""
    chain = " ".join(f"<m{i}@x.id>" for i in range(50))
    refs = thread_references("<parent@x.id>", chain)
    assert len(refs) == MAX_REFERENCES
    assert refs[0] == "<m0@x.id>"
    assert refs[-2:] == ["<m49@x.id>", "<parent@x.id>"]


def test_sent_reply_parsed_back_threads_under_the_citizens_mail() -> None:
    """Python's parser sees the reply's thread: the citizen's mail's id is its first hint."""
    msg, mid = reply_to_fixture("reply_thunderbird.eml")
    again = parse_mail(msg.as_bytes(), "ppid", 0.0).message
    assert again.provider_id == mid
    assert again.thread_hints[0] == "email-msgid:<b7e1c0de-2222-4a4a-9c9c-reply1@example.id>"
    assert "email-msgid:<CAF7x9QpLr2@mail.example.id>" in again.thread_hints
    assert "ticket-number:KMN-2026-000123" in again.thread_hints


def test_automatic_reply_is_marked_and_would_not_be_answered() -> None:
    """The acknowledgement carries Auto-Submitted: auto-replied (and suppresses Exchange OOF)."""
    msg, _ = reply_to_fixture("plain_utf8.eml", automatic=True)
    back = reparse(msg)
    assert back["Auto-Submitted"] == "auto-replied"
    assert back["X-Auto-Response-Suppress"] == "All"
    assert should_not_autoreply(back) == "auto-submitted:auto-replied"


def test_text_and_html_alternatives_and_attachments() -> None:
    """Text and escaped HTML alternatives; attachments with their names and types."""
    composed = build_reply(
        from_address="ppid@kemnaker.go.id",
        to_address="warga@example.id",
        subject="Tanya",
        text="Baris <satu> & dua\nbaris tiga\n\nParagraf dua",
        attachments=[OutAttachment("Surat Balasan.pdf", "application/pdf", b"%PDF-1.4 x")],
    )
    back = reparse(composed.message)
    assert back.get_content_type() == "multipart/mixed"
    plain = back.get_body(("plain",))
    html = back.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().startswith("Baris <satu> & dua\nbaris tiga")
    html_text = html.get_content()
    assert "<p>Baris &lt;satu&gt; &amp; dua<br>\nbaris tiga</p>" in html_text
    assert "<p>Paragraf dua</p>" in html_text
    (att,) = list(back.iter_attachments())
    assert att.get_filename() == "Surat Balasan.pdf"
    assert att.get_content_type() == "application/pdf"
    assert att.get_content() == b"%PDF-1.4 x"
    assert back["In-Reply-To"] is None


def test_given_html_and_stable_message_id() -> None:
    """A given HTML body is used as is; reply_message_id gives retries the same id."""
    mid = reply_message_id("01jabc/42", "kemnaker.go.id")
    assert mid == "<01jabc-42.kmn@kemnaker.go.id>"
    composed = build_reply(
        from_address="ppid@kemnaker.go.id",
        to_address="warga@example.id",
        subject="Tanya",
        text="teks",
        html_body="<p><b>teks</b></p>",
        message_id=mid,
    )
    assert composed.message_id == mid
    html = reparse(composed.message).get_body(("html",))
    assert html is not None
    assert html.get_content().strip() == "<p><b>teks</b></p>"


def test_addresses_are_required() -> None:
    """A reply needs real From and To addresses."""
    with pytest.raises(ValueError, match="addresses"):
        build_reply(from_address="ppid", to_address="warga@example.id", subject="", text="x")
