"""Parsing recorded mails (tests/fixtures/email) into the hub's normalized Message."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from channels.base import PayloadError
from channels.email.parse import (
    OMITTED_TOO_LARGE,
    ParsedMail,
    decode_bytes,
    html_to_text,
    parse_mail,
    sanitize_html,
    trim_for_display,
)
from hub.model import Message

FIXTURES = Path(__file__).parent.parent / "fixtures" / "email"
NOW = 1767225600.0


def load(name: str, **kw: int) -> ParsedMail:
    return parse_mail((FIXTURES / name).read_bytes(), "ppid", NOW, **kw)


def test_plain_utf8_mail_is_normalized() -> None:
    """Identity, reply address, Message-ID, text, subject and the mail's Date."""
    p = load("plain_utf8.eml")
    m = p.message
    assert (m.channel, m.account, m.kind) == ("email", "ppid", "text")
    assert m.provider_id == "<CAF7x9QpLr2@mail.example.id>"
    assert m.sender == "email:siti.rahayu@example.id"
    assert m.reply_address == "siti.rahayu@example.id"
    assert m.display_name == "Siti Rahayu"
    assert m.meta["subject"] == "Pertanyaan tentang pencairan JHT"
    assert "Terima kasih 🙏" in m.text
    assert m.text.endswith("Siti — Bekasi")
    assert m.provider_ts == 1767579120.0
    assert m.received_at == NOW
    assert m.thread_hints == ("email-msgid:<CAF7x9QpLr2@mail.example.id>",)
    assert "html" not in m.meta
    assert (p.auto_submitted, p.bounce, p.attachments) == (False, None, [])
    assert Message.from_json(m.to_json()) == m


def test_html_only_mail_is_sanitized_and_converted_to_text() -> None:
    """Scripts, handlers, iframes, javascript: links and remote images (pixels) are removed."""
    m = load("html_only_script.eml").message
    html = m.meta["html"]
    for bad in ("<script", "alert", "onload", "javascript:", "<iframe", "track.example", "<style"):
        assert bad not in html
    assert 'href="https://example.id/bukti"' in html
    assert "Perusahaan saya membayar upah di bawah UMP.\nMohon bantuan." in m.text
    assert "alert" not in m.text
    assert "document.location" not in m.text
    assert "bukti <https://example.id/bukti>" in m.text


def test_alternative_prefers_the_text_part_and_keeps_html_in_meta() -> None:
    """multipart/alternative: the text part (format=flowed rejoined) is the text."""
    m = load("alternative.eml").message
    assert m.text == (
        "Halo, apakah ada jadwal pelatihan kerja di BLK Bandung bulan depan? "
        "Saya tertarik kelas las."
    )
    assert "<b>BLK Bandung</b>" in m.meta["html"]


def test_iso_8859_1_body_with_windows_1252_quotes() -> None:
    """Latin-1 labelled bodies decode, including the curly quotes Outlook puts in them."""
    m = load("latin1.eml").message
    assert 'café "Kopi Nusantara"' in m.text
    assert "pesangon. “Tidak ada uang” kata" in m.text
    assert "Naïve question: § 156" in m.text


def test_windows_1252_body() -> None:
    """windows-1252 euro sign, dash and quotes."""
    m = load("cp1252.eml").message
    assert m.text == "Biaya kursus € 150 atau Rp 2.500.000 – mana yang benar? “Gratis” katanya."


def test_rfc2047_subject_and_sender_name() -> None:
    """Encoded words in Subject and From decode; the subject's ticket number is a hint."""
    m = load("encoded_headers.eml").message
    assert m.display_name == "André Wijaya"
    assert m.meta["subject"] == "Re: Status pengaduan – [KMN-2026-000123]"
    assert m.text == "Mohon info perkembangan pengaduan saya."
    assert "ticket-number:KMN-2026-000123" in m.thread_hints


def test_attachment_and_inline_image() -> None:
    """Files and inline images come back with name, type, size and bytes, content-addressed."""
    p = load("attachment_inline.eml")
    m = p.message
    assert m.kind == "media"
    assert m.text == "Terlampir slip gaji saya. Logo perusahaan di bawah."
    (logo, logo_bytes), (pdf, pdf_bytes) = p.attachments
    assert (logo.name, logo.content_type, logo.size) == ("logo.png", "image/png", 70)
    assert logo_bytes.startswith(b"\x89PNG")
    assert pdf.name == "Slip Gaji Desember—2025.pdf"
    assert pdf.content_type == "application/pdf"
    assert pdf.size == len(pdf_bytes) == 1800
    assert pdf.url == "blob:sha256:" + hashlib.sha256(pdf_bytes).hexdigest()
    assert m.attachments == (logo, pdf)
    assert json.loads(m.meta["inline_cids"]) == {"logo-pt@example.id": logo.url}
    assert 'src="cid:logo-pt@example.id"' in m.meta["html"]


def test_attachment_over_the_limit_is_recorded_without_content() -> None:
    """Above max_attachment_bytes: the attachment is listed, flagged, and has no bytes."""
    p = load("attachment_inline.eml", max_attachment_bytes=1000)
    (logo, logo_bytes), (pdf, pdf_bytes) = p.attachments
    assert logo_bytes
    assert logo.url.startswith("blob:sha256:")
    assert (pdf.url, pdf.size, pdf_bytes) == (OMITTED_TOO_LARGE, 1800, b"")
    assert json.loads(p.message.meta["attachments_omitted"]) == ["Slip Gaji Desember—2025.pdf"]


def test_thunderbird_reply_threads_and_trims_quote_and_signature() -> None:
    """In-Reply-To then References (newest first), own id, ticket number; display trimmed."""
    m = load("reply_thunderbird.eml").message
    assert m.thread_hints == (
        "email-msgid:<reply-ack-1.KMN@kemnaker.go.id>",
        "email-msgid:<CAF7x9QpLr2@mail.example.id>",
        "email-msgid:<b7e1c0de-2222-4a4a-9c9c-reply1@example.id>",
        "ticket-number:KMN-2026-000123",
    )
    assert m.meta["display_text"] == (
        "Terima kasih atas jawabannya. Dokumen apa saja yang perlu saya siapkan?"
    )
    assert "> Terima kasih, pengaduan Anda tercatat" in m.text  # the full text is kept
    assert "Siti Rahayu\nBekasi" in m.text


def test_gmail_reply_with_changed_subject_still_names_its_parents() -> None:
    """A changed subject carries no ticket number, but the References chain is all there;
    the Indonesian "Pada … menulis:" attribution is trimmed, in text and in HTML."""
    m = load("reply_gmail.eml").message
    assert m.thread_hints[0] == "email-msgid:<reply-2.KMN@kemnaker.go.id>"
    assert "email-msgid:<CAJx-first@mail.gmail.example>" in m.thread_hints
    assert not any(h.startswith("ticket-number:") for h in m.thread_hints)
    assert m.meta["display_text"] == "Berikut saya kirimkan nomor kontrak kerja: PKWT-77/2025."
    from_html = html_to_text(m.meta["html"])
    assert "> Mohon kirimkan nomor kontrak kerja Anda." in from_html
    assert trim_for_display(from_html) == m.meta["display_text"]


def test_outlook_reply_trims_the_original_message_block() -> None:
    """Outlook's unquoted "From:/Sent:" history is cut from the display text."""
    m = load("reply_outlook.eml").message
    assert m.meta["display_text"] == (
        "Baik, terima kasih. Saya akan datang ke kantor Disnaker hari Senin.\n\nRegards,\nRina"
    )
    assert m.thread_hints == (
        "email-msgid:<reply-9.KMN@kemnaker.go.id>",
        "email-msgid:<SG2PR01MB1234ABCD@SG2PR01MB1234.apcprd01.prod.outlook.example>",
        "ticket-number:KMN-2026-000456",
    )


def test_auto_reply_is_flagged() -> None:
    """Auto-Submitted: auto-replied → no acknowledgement, with the reason in meta."""
    p = load("auto_reply.eml")
    assert p.auto_submitted
    assert p.message.meta["no_autoreply"] == "auto-submitted:auto-replied"
    assert p.bounce is None


def test_list_mail_is_flagged() -> None:
    """Precedence: list (and List-Id) → no acknowledgement."""
    p = load("list_mail.eml")
    assert p.auto_submitted
    assert p.message.meta["no_autoreply"] == "precedence:list"


def test_dsn_bounce_names_the_failed_message() -> None:
    """A multipart/report DSN gives the original Message-ID, recipient, status, diagnostic."""
    p = load("dsn_bounce.eml")
    assert p.auto_submitted
    b = p.bounce
    assert b is not None
    assert b.original_message_id == "<176809680000.4242.1234567890@kemnaker.go.id>"
    assert (b.final_recipient, b.action, b.status, b.failed) == (
        "salah.ketik@example.id",
        "failed",
        "5.1.1",
        True,
    )
    assert b.diagnostic.startswith("550 5.1.1 <salah.ketik@example.id>: Recipient address rejected")
    assert b.standard


def test_postfix_style_bounce_without_a_report_is_recognised() -> None:
    """A MAILER-DAEMON "Undelivered Mail" with the original attached is a bounce too."""
    p = load("postfix_bounce.eml")
    b = p.bounce
    assert b is not None
    assert b.original_message_id == "<reply-654.abc@kemnaker.go.id>"
    assert (b.final_recipient, b.status, b.failed, b.standard) == (
        "tidak.ada@example.id",
        "5.1.1",
        True,
        False,
    )
    assert "User unknown" in b.diagnostic
    assert p.message.meta["no_autoreply"] == "mailer-daemon"


def test_mail_without_message_id_gets_a_stable_hash_id() -> None:
    """No Message-ID: the provider id is a hash of the bytes, the same on every read."""
    raw = b"From: a@example.id\r\nSubject: x\r\n\r\nisi\r\n"
    first = parse_mail(raw, "ppid", NOW).message.provider_id
    assert first == parse_mail(raw, "ppid", NOW + 5).message.provider_id
    assert first.startswith("<sha256-")
    assert first.endswith("@no-message-id.invalid>")
    assert first != parse_mail(raw + b"lagi\r\n", "ppid", NOW).message.provider_id


def test_raw_utf8_headers_are_decoded() -> None:
    """Unencoded UTF-8 in headers (RFC 6532) decodes in the name and the subject."""
    raw = "From: Budi Sétiawan <budi@example.id>\r\nSubject: Upah – Mei\r\n\r\nx\r\n".encode()
    m = parse_mail(raw, "ppid", NOW).message
    assert (m.display_name, m.meta["subject"]) == ("Budi Sétiawan", "Upah – Mei")


def test_unknown_charset_falls_back() -> None:
    """An unknown charset label does not fail the mail: UTF-8, then windows-1252."""
    raw = b"From: a@example.id\r\nContent-Type: text/plain; charset=x-bogus\r\n\r\nKopi \xe9\r\n"
    assert parse_mail(raw, "ppid", NOW).message.text == "Kopi é"
    assert decode_bytes("ok ✓".encode(), "x-unknown") == "ok ✓"


def test_mail_without_a_sender_address_is_refused() -> None:
    """No usable From address: PayloadError (the caller dead-letters the raw mail)."""
    with pytest.raises(PayloadError, match="From"):
        parse_mail(b"Subject: x\r\n\r\nbody\r\n", "ppid", NOW)
    with pytest.raises(PayloadError):
        parse_mail(b"From: not an address\r\n\r\nbody\r\n", "ppid", NOW)


def test_inline_reply_keeps_the_answers_between_quotes() -> None:
    """An interleaved reply is not cut at its attribution: the answers are below it."""
    text = "On Mon, X wrote:\n> Pertanyaan 1?\nJawaban 1.\n> Pertanyaan 2?\nJawaban 2."
    assert trim_for_display(text) == text


def test_sanitizer_drops_remote_images_but_keeps_cid_images() -> None:
    """Tracking pixels lose their source; cid: images and https links stay."""
    out = sanitize_html(
        '<img src="https://t.example/p.gif"><img src="cid:a@b"><a href="https://x.id">x</a>'
    )
    assert "t.example" not in out
    assert 'src="cid:a@b"' in out
    assert 'href="https://x.id"' in out
