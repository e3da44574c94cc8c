"""RFC 3834 auto-reply suppression and RFC 3464 bounce reading, header by header."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from channels.email.dsn import parse_bounce, parse_bounce_bytes
from channels.email.loops import should_not_autoreply
from hub.model import DeliveryState

FIXTURES = Path(__file__).parent.parent / "fixtures" / "email"


def mail(headers: str, body: str = "isi\r\n") -> EmailMessage:
    raw = (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


CITIZEN = "From: Warga <warga@example.id>\nReturn-Path: <warga@example.id>"


def test_ordinary_mail_may_get_an_acknowledgement() -> None:
    """A citizen's mail with Auto-Submitted: no is not suppressed."""
    assert should_not_autoreply(mail(CITIZEN)) is None
    assert should_not_autoreply(mail(CITIZEN + "\nAuto-Submitted: no")) is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Auto-Submitted: auto-generated", "auto-submitted:auto-generated"),
        ("Auto-Submitted: auto-replied; owner-email=x@y", "auto-submitted:auto-replied"),
        ("Precedence: bulk", "precedence:bulk"),
        ("Precedence: junk", "precedence:junk"),
        ("Precedence: auto_reply", "precedence:auto_reply"),
        ("List-Unsubscribe: <mailto:u@l.example>", "list:list-unsubscribe"),
        ("X-Auto-Response-Suppress: OOF", "x-auto-response-suppress"),
        ("X-Autoreply: yes", "x-autoreply"),
    ],
)
def test_automatic_mail_is_suppressed(extra: str, reason: str) -> None:
    """Each RFC 3834 (and common vendor) marker suppresses the acknowledgement."""
    assert should_not_autoreply(mail(CITIZEN + "\n" + extra)) == reason


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("From: warga@example.id\nReturn-Path: <>", "null-sender"),
        ("From: MAILER-DAEMON@mx.example.id", "mailer-daemon"),
        ("From: Postmaster <postmaster@example.id>", "postmaster"),
        ("From: no-reply@bank.example", "noreply-sender"),
        ("From: PPID <PPID@kemnaker.go.id>", "own-address"),
    ],
)
def test_robot_and_own_senders_are_suppressed(headers: str, reason: str) -> None:
    """Empty envelope senders, mail daemons, no-reply and the hub's own address."""
    assert should_not_autoreply(mail(headers), own_addresses=["ppid@kemnaker.go.id"]) == reason


def test_read_receipt_report_is_suppressed() -> None:
    """A multipart/report (read receipt) is never answered."""
    msg = mail(
        CITIZEN + '\nContent-Type: multipart/report; report-type=disposition-notification; b="x"'
    )
    assert should_not_autoreply(msg) == "report"


def test_bounce_status_update_marks_the_reply_failed() -> None:
    """A failed DSN becomes a FAILED status update for the reply's Message-ID."""
    bounce = parse_bounce_bytes((FIXTURES / "dsn_bounce.eml").read_bytes())
    assert bounce is not None
    update = bounce.status_update("ppid")
    assert update.channel == "email"
    assert update.account == "ppid"
    assert update.provider_id == "<176809680000.4242.1234567890@kemnaker.go.id>"
    assert update.state == DeliveryState.FAILED
    assert update.error_code == "smtp-5.1.1"


def test_delayed_dsn_is_not_a_failure() -> None:
    """Action: delayed is reported but does not fail the reply."""
    raw = (FIXTURES / "dsn_bounce.eml").read_bytes()
    raw = raw.replace(b"Action: failed", b"Action: delayed").replace(
        b"Status: 5.1.1", b"Status: 4.4.1"
    )
    bounce = parse_bounce_bytes(raw)
    assert bounce is not None
    assert (bounce.action, bounce.status, bounce.failed) == ("delayed", "4.4.1", False)


def test_dsn_with_the_whole_original_attached() -> None:
    """The original Message-ID is read from a message/rfc822 part too."""
    raw = (FIXTURES / "dsn_bounce.eml").read_bytes()
    raw = raw.replace(b"Content-Type: text/rfc822-headers", b"Content-Type: message/rfc822")
    bounce = parse_bounce_bytes(raw)
    assert bounce is not None
    assert bounce.original_message_id == "<176809680000.4242.1234567890@kemnaker.go.id>"


def test_citizen_mail_quoting_headers_is_not_a_bounce() -> None:
    """A citizen pasting 'Undelivered Mail' text with a Message-ID line is not a bounce."""
    msg = mail(
        CITIZEN + "\nSubject: Fwd: Undelivered Mail Returned to Sender",
        "Message-ID: <reply-1.kmn@kemnaker.go.id>\r\nKenapa email saya gagal?\r\n",
    )
    assert parse_bounce(msg) is None


def test_ordinary_mail_is_not_a_bounce() -> None:
    """Most mail: no bounce."""
    assert parse_bounce_bytes((FIXTURES / "plain_utf8.eml").read_bytes()) is None
