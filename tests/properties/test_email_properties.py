"""Properties of the MIME parser both mail intakes (IMAP and SMTP) use.

A mail ``parse_mail`` cannot take must be refused with a PayloadError: the intake keeps it
in the blob store and moves on. Anything else it raises is worse than a 500: IMAP hands
the same UID over again and again (the mailbox is stuck behind it) and SMTP answers 451, so
the relay retries for days. Generated mails combine random header sets (addresses with and
without display names, encoded words with good and bogus charsets, raw 8-bit bytes, dates
out of range, thread headers), transfer encodings (valid and broken base64 and
quoted-printable, bogus names), charsets (valid and bogus), nested multiparts with missing
or mismatched boundaries, attached mails, delivery reports and binary garbage parts; and
the recorded fixtures with lines dropped, repeated or cut.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.email.dsn import Bounce
from channels.email.parse import OMITTED_TOO_LARGE, ParsedMail, parse_mail
from tests.properties.strategies import (
    TIMEOUT_S,
    Body,
    check_message,
    check_refusal,
    fuzz,
    outcome,
)

pytestmark = pytest.mark.timeout(TIMEOUT_S)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "email"
NOW = 1_767_225_600.5
ACCOUNT = "ppid"
OWN = "ppid@kemnaker.go.id"
MAX_ATTACHMENT = 2_000
MAX_TEXT = 5_000
MAX_RAW = 8_000

PLAIN_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
WORDS = st.sampled_from(
    [
        "Selamat pagi",
        "gaji saya belum dibayar",
        "KMN-2026-000123",
        "-- ",
        "> kutipan",
        "On Mon, 1 Jan 2026 Siti wrote:",
        "Pada 1 Jan 2026 Budi menulis:",
        "Sent from my iPhone",
        "-----Original Message-----",
        "From: x",
        "Sent: y",
        "<b>tebal</b>",
        "<script>x()</script>",
        "<img src=http://t.example/p.gif>",
        "<blockquote>lama</blockquote>",
        "é à ü",
        "日本語",
        "🙏",
        "\t",
        "line ending with space ",
        "=3D",
        "=\r\n",
        "\x00",
        "\x1b[31m",
    ]
)
TEXTS = st.one_of(PLAIN_TEXT, st.lists(WORDS, max_size=12).map("\n".join))
CHARSETS = st.sampled_from(
    [
        "utf-8",
        "UTF-8",
        "iso-8859-1",
        "windows-1252",
        "us-ascii",
        "x-unknown",
        "utf-7",
        "",
        '"utf-8"',
        "utf-16",
        "koi8-r",
        "gb2312",
        "iso-2022-jp",
        "x-user-defined",
        "utf-8'en'",
        "latin1\x00",
    ]
)
ENCODINGS = st.sampled_from(
    [
        None,
        "7bit",
        "8bit",
        "base64",
        "quoted-printable",
        "binary",
        "x-uuencode",
        "bogus",
        "BASE64",
        " base64 ",
    ]
)
ADDRESSES = st.sampled_from(
    [
        "Siti Rahayu <siti@example.id>",
        "siti@example.id",
        '"Budi, Pak" <budi@example.id>',
        "=?utf-8?B?U2l0aSBSYWhheXU=?= <siti@example.id>",
        "=?x-bogus?Q?abc?= <x@example.id>",
        "=?utf-8?B?!!!?= <y@example.id>",
        "undisclosed-recipients:;",
        "<>",
        "no-at-sign",
        "@example.id",
        "a@b",
        "MAILER-DAEMON@mx.example.id",
        "noreply@bank.example.id",
        "Group: a@b.id, c@d.id;",
        '"unterminated <x@y.id>',
        '"a b"@example.id',
        "siti@example.id (Siti)",
        "<siti@example.id>, <budi@example.id>",
        OWN,
        "Siti <siti@[127.0.0.1]>",
        "x" * 300 + "@example.id",
        "siti@ex ample.id",
        "=?utf-8?Q?=ED=A0=80?= <s@example.id>",
    ]
)
RAW_ADDRESSES = st.sampled_from(
    [
        b"Si\xe9 <s@example.id>",
        b"\xc3\xa9t\xc3\xa9 <e@example.id>",
        b"\xff\xfe@example.id",
        b"s\xe9@ex\xe9.id",
    ]
)
MSGIDS = st.one_of(
    st.sampled_from(
        [
            "<a1@example.id>",
            "<>",
            "no-brackets@example.id",
            "",
            "<a b@c>",
            "<<x>>",
            "<CAF7x9QpLr2@mail.example.id>",
            "<sha256-x@no-message-id.invalid>",
        ]
    ),
    st.builds(
        lambda s: f"<{s}@example.id>",
        st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="<>"),
            min_size=1,
            max_size=20,
        ),
    ),
)
DATES = st.sampled_from(
    [
        "Sun, 11 Jan 2026 13:00:00 +0700",
        "not a date",
        "Mon, 31 Feb 2026 10:00:00 +0700",
        "Mon, 1 Jan 99999 00:00:00 +0000",
        "Thu, 1 Jan 1970 00:00:00 -9999",
        "",
        "0",
        "Sat, 1 Jan 0001 00:00:00 +1400",
        "Fri, 31 Dec 9999 23:59:59 -1200",
        "1 Jan 26 1:2:3 WIB",
    ]
)
SUBJECTS = st.one_of(
    TEXTS.map(lambda t: " ".join(t.split())[:200]),
    st.sampled_from(
        [
            "Re: Pengaduan [KMN-2026-000123]",
            "=?utf-8?B?UGVuZ2FkdWFu?=",
            "=?bogus?B?UGVu?=",
            "=?utf-8?Q?gaji=20saya?=",
            "=?utf-8?B?broken",
            "A" * 5000,
            "Fw: KMN-2026-000123 KMN-2026-000123",
        ]
    ),
)
FILENAMES = st.sampled_from(
    [
        '"slip.pdf"',
        '"../../etc/passwd"',
        "=?utf-8?B?w6k=?=.txt",
        '"\\\\server\\\\share\\\\x.exe"',
        '"  .hidden"',
        '""',
        '"a\\u0000b.png"',
        "x" * 400,
        '"日本.txt"',
    ]
)
EXTRA_HEADERS = st.sampled_from(
    [
        b"Auto-Submitted: auto-replied",
        b"Auto-Submitted: no",
        b"Precedence: bulk",
        b"List-Id: <list.example.id>",
        b"X-Autoreply: yes",
        b"Return-Path: <>",
        b"Return-Path: <MAILER-DAEMON@mx.example.id>",
        b"Sender: noreply@example.id",
        b"Reply-To: other@example.id",
        b"Reply-To: =?utf-8?B?x?=",
        b"MIME-Version: 1.0",
        b"X-Auto-Response-Suppress: All",
        b"Header-Without-Colon",
        b": empty name",
        b"X-Long: " + b"a" * 3000,
        b"X-Folded: one\r\n\ttwo\r\n three",
        b"Cc: a@b.id, <c@d.id>",
        b"To: ppid@kemnaker.go.id",
        b"X-8bit: \xe9\xff\x00",
    ]
)


def _encode(data: bytes, cte: str | None, broken: bool) -> bytes:
    name = (cte or "").strip().lower()
    if name == "base64":
        out = base64.encodebytes(data)
        return out[: len(out) // 2] + b"!*\n" if broken else out
    if name == "quoted-printable":
        out = quopri.encodestring(data)
        return out + b"=ZZ=\n=" if broken else out
    return data


@st.composite
def parts(draw: st.DrawFn, depth: int = 0) -> bytes:
    """One MIME entity (its headers and body), maybe a multipart of more."""
    choices = ["text/plain", "text/html", "attachment", "garbage", "rfc822", "dsn"]
    if depth < 3:
        choices += ["multipart", "multipart"]
    kind = draw(st.sampled_from(choices))
    headers: list[bytes] = []
    if kind == "multipart":
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "report", "digest"]))
        boundary = draw(st.sampled_from(["MIX", "b1", "=_x y", "", "a" * 80, "--", "ALT"]))
        declared = draw(st.sampled_from([boundary, boundary, "other", None]))
        params = f'; boundary="{declared}"' if declared is not None else ""
        if subtype == "report":
            params += "; report-type=delivery-status"
        headers.append(f"Content-Type: multipart/{subtype}{params}".encode())
        children = draw(st.lists(parts(depth + 1), max_size=4))
        sep = b"\r\n" if draw(st.booleans()) else b"\n"
        body = draw(st.sampled_from([b"", b"This is a multi-part message.", b"\xff\xfe"])) + sep
        for child in children:
            body += b"--" + boundary.encode() + sep + child + sep
        if draw(st.booleans()):
            body += b"--" + boundary.encode() + b"--" + sep
        body += draw(st.sampled_from([b"", b"epilogue", b"--" + boundary.encode()]))
        return b"\r\n".join(headers) + b"\r\n\r\n" + body
    if kind == "rfc822":
        headers.append(b"Content-Type: message/rfc822")
        inner = draw(mails(depth + 1)) if depth < 2 else b"Subject: x\r\n\r\nbody"
        return b"\r\n".join(headers) + b"\r\n\r\n" + inner
    if kind == "dsn":
        headers.append(
            draw(
                st.sampled_from(
                    [b"Content-Type: message/delivery-status", b"Content-Type: text/rfc822-headers"]
                )
            )
        )
        body = draw(
            st.sampled_from(
                [
                    b"Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b.id\r\n"
                    b"Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 no",
                    b"Message-ID: <reply-1@kemnaker.go.id>\r\nSubject: x",
                    b"Action: \xff",
                    b"",
                ]
            )
        )
        return b"\r\n".join(headers) + b"\r\n\r\n" + body
    charset = draw(CHARSETS)
    cte = draw(ENCODINGS)
    if kind == "garbage":
        ctype = draw(
            st.sampled_from(
                [
                    "application/octet-stream",
                    "bogus",
                    "image/png",
                    "",
                    "text/plain; charset",
                    "multipart/mixed",
                ]
            )
        )
        data = draw(st.binary(max_size=3000))
    else:
        ctype = {"text/plain": "text/plain", "text/html": "text/html"}.get(
            kind, draw(st.sampled_from(["application/pdf", "image/png", "text/plain"]))
        )
        text = draw(TEXTS)
        if kind == "text/html":
            text = f"<p>{text}</p>"
        codec = draw(st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16"]))
        data = text.encode(codec, "replace")
        if kind == "attachment":
            data = data * draw(st.sampled_from([1, 1, 50]))
    params = f"; charset={charset}" if charset and ctype.startswith("text") else ""
    if draw(st.booleans()) and ctype == "text/plain":
        params += "; format=flowed" + draw(st.sampled_from(["", "; delsp=yes"]))
    headers.append(f"Content-Type: {ctype}{params}".encode())
    if cte is not None:
        headers.append(f"Content-Transfer-Encoding: {cte}".encode())
    if kind == "attachment" or draw(st.integers(0, 4)) == 0:
        disposition = draw(st.sampled_from(["attachment", "inline", "bogus"]))
        headers.append(f"Content-Disposition: {disposition}; filename={draw(FILENAMES)}".encode())
    if draw(st.integers(0, 4)) == 0:
        headers.append(
            b"Content-ID: "
            + draw(st.sampled_from([b"<logo@example.id>", b"<>", b"\xff\xfe", b"<a b>", b"<x@y>"]))
        )
    body = _encode(data, cte, broken=draw(st.integers(0, 5)) == 0)
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


@st.composite
def mails(draw: st.DrawFn, depth: int = 0) -> bytes:
    headers: list[bytes] = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2]))):
        address = draw(st.one_of(ADDRESSES.map(str.encode), RAW_ADDRESSES))
        headers.append(b"From: " + address)
    for name, values in (
        (b"To", ADDRESSES.map(str.encode)),
        (b"Subject", SUBJECTS.map(lambda s: s.encode("utf-8", "replace"))),
        (b"Date", DATES.map(str.encode)),
        (b"Message-ID", MSGIDS.map(str.encode)),
        (b"In-Reply-To", MSGIDS.map(str.encode)),
        (b"References", st.lists(MSGIDS, max_size=60).map(lambda ids: " ".join(ids).encode())),
    ):
        if draw(st.integers(0, 3)):
            headers.append(name + b": " + draw(values))
    headers += draw(st.lists(EXTRA_HEADERS, max_size=4))
    headers = draw(st.permutations(headers))
    part = draw(parts(depth))
    sep = draw(st.sampled_from([b"\r\n", b"\n"]))
    return sep.join(headers) + sep + part.replace(b"\r\n", sep)


FIXTURE_MAILS = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]


@st.composite
def damaged_fixtures(draw: st.DrawFn) -> bytes:
    """A recorded mail with lines dropped, repeated or replaced, or cut short."""
    lines = draw(st.sampled_from(FIXTURE_MAILS)).split(b"\n")
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "garbage", "cut"]))
        if action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        elif action == "garbage":
            lines[i] = draw(st.binary(max_size=80))
        else:
            lines = lines[:i]
        if not lines:
            break
    return b"\n".join(lines)


MAILS = st.one_of(mails(), mails(), mails(), damaged_fixtures()).map(Body)


def check_mail(parsed: ParsedMail) -> None:
    m = parsed.message
    check_message(m, channel="email", account=ACCOUNT, received_at=NOW)
    assert m.sender == f"email:{m.reply_address}"
    local, _, domain = m.reply_address.rpartition("@")
    assert local
    assert "." in domain
    assert m.reply_address == m.reply_address.lower()
    assert m.kind in ("text", "media")
    assert len(m.text) <= MAX_TEXT
    assert m.provider_id.startswith("<")
    assert m.provider_id.endswith(">")
    assert f"email-msgid:{m.provider_id}" in m.thread_hints
    assert len(m.raw.encode("utf-8")) <= 4 * MAX_RAW
    assert "display_text" in m.meta
    assert len(parsed.attachments) == len(m.attachments)
    for (att, data), shown in zip(parsed.attachments, m.attachments, strict=True):
        assert att == shown
        assert isinstance(data, bytes)
        if att.url == OMITTED_TOO_LARGE:
            assert data == b""
            assert att.size is not None
            assert att.size > MAX_ATTACHMENT
        else:
            assert att.url == f"blob:sha256:{hashlib.sha256(data).hexdigest()}"
            assert att.size == len(data)
    assert parsed.auto_submitted == ("no_autoreply" in m.meta)
    if parsed.bounce is not None:
        assert isinstance(parsed.bounce, Bounce)
        update = parsed.bounce.status_update(ACCOUNT)
        for text in (update.provider_id, update.error_code, update.error_message):
            text.encode("utf-8")


@fuzz(300)
@given(raw=MAILS)
def test_mail_is_parsed_or_refused(raw: bytes) -> None:
    parsed, refusal = outcome(
        lambda: parse_mail(
            raw,
            ACCOUNT,
            NOW,
            max_attachment_bytes=MAX_ATTACHMENT,
            max_text_chars=MAX_TEXT,
            max_raw_bytes=MAX_RAW,
            own_addresses=(OWN,),
        )
    )
    if refusal is not None:
        check_refusal(refusal)
    else:
        check_mail(parsed)


@fuzz(150)
@given(raw=st.binary(max_size=2000).map(Body))
def test_any_bytes_are_a_mail_or_a_refusal(raw: bytes) -> None:
    parsed, refusal = outcome(lambda: parse_mail(raw, ACCOUNT, NOW))
    if refusal is not None:
        check_refusal(refusal)
    else:
        check_mail(parsed)
