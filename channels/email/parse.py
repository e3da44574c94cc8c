"""Inbound mail → the hub's normalized ``Message``, its attachments' bytes, and its flags.

Pure (no I/O): the IMAP and SMTP intakes hand over raw bytes, this module turns them into a
``ParsedMail`` and the caller stores the attachment bytes (in the blob store) and the message
(on the inbound stream). Decisions:

- ``provider_id`` is the Message-ID with its angle brackets (the hub dedupes on it, which makes
  an IMAP resync or an SMTP retry harmless); a mail without one gets a stable hash of its bytes.
- The text part is preferred; HTML-only mail is converted to text from its *sanitized* HTML.
  The sanitized HTML (nh3: no scripts, no event handlers, no remote images, so no tracking
  pixels) is kept in ``meta["html"]``, only when the mail had HTML. Nothing here is markup-safe
  for display except that field.
- ``text`` is the full body; ``meta["display_text"]`` is the same with quoted history and the
  signature trimmed, for the ticket view.
- ``thread_hints``: the parents' Message-IDs (In-Reply-To, then References newest first), this
  mail's own Message-ID, then ticket numbers found in the subject, as ``email-msgid:<…>`` and
  ``ticket-number:KMN-…``.
- Attachments are content-addressed (``blob:sha256:<hex>``): the caller stores the bytes under
  that key. One above the size limit is recorded with ``url = "omitted:too-large"`` and no
  bytes. Inline images keep their Content-ID in ``meta["inline_cids"]`` (JSON cid → url).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import mimetypes
import re
from dataclasses import dataclass, field
from email import policy
from email.errors import MessageError
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.message import Message as StdMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser

import nh3

from channels.base import PayloadError
from channels.email.dsn import Bounce, parse_bounce
from channels.email.loops import should_not_autoreply
from hub.ids import new_id
from hub.model import Attachment, Message

CHANNEL = "email"
OMITTED_TOO_LARGE = "omitted:too-large"
TICKET_NUMBER = re.compile(r"\bKMN-\d{4}-\d{6}\b")
_MSGID = re.compile(r"<[^<>\s]+>")
_MAX_PARENTS = 30
# An address the hub keeps as an identity key and replies to: nothing of a header around it.
_NOT_IN_ADDRESS = re.compile(r"[\s<>()\[\],;\\\x00-\x1f\x7f]")


class _TolerantHeaders(HeaderRegistry):
    """``policy.default``'s header classes, except that a header their parser cannot read
    (the stdlib raises IndexError on ``Message-ID: <>``, for one) is kept as unstructured
    text instead of raising from every ``msg.get``."""

    def __call__(self, name: str, value: str) -> BaseHeader:
        try:
            return super().__call__(name, value)
        except (IndexError, ValueError, TypeError, AttributeError, MessageError):
            unparsed = type("_UnparsedHeader", (UnstructuredHeader, BaseHeader), {})
            header: BaseHeader = unparsed(name, value)
            return header


_POLICY = policy.default.clone(header_factory=_TolerantHeaders())


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """One parsed mail. ``attachments`` pairs each ``message.attachments`` entry (same order)
    with its bytes (empty when omitted). ``auto_submitted``: never auto-reply to it (the
    reason is ``message.meta["no_autoreply"]``). ``bounce``: it is a delivery report, not a
    citizen's message: it must never open a ticket."""

    message: Message
    attachments: list[tuple[Attachment, bytes]] = field(default_factory=list)
    auto_submitted: bool = False
    bounce: Bounce | None = None


# -- text decoding ----------------------------------------------------------------------


def _fix_8bit(value: str) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or legacy Latin-1) come out of the parser as
    surrogate escapes: decode them as UTF-8, else as windows-1252."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode a body with its declared charset, as mail clients do: ISO-8859-1 and US-ASCII
    labels are read as windows-1252 (a superset that Outlook writes under those labels), an
    unknown or wrong label falls back to UTF-8, then windows-1252."""
    name = (charset or "us-ascii").strip().strip('"').lower()
    try:
        name = codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a NUL in the label
        name = "utf-8"
    if name in ("ascii", "latin-1", "iso8859-1"):
        try:
            return data.decode("utf-8") if name == "ascii" else data.decode("cp1252")
        except UnicodeDecodeError:
            name = "cp1252"
    for candidate in (name, "utf-8"):
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            continue
    return data.decode("cp1252", "replace")


def _part_text(part: StdMessage) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text = decode_bytes(payload, part.get_content_charset())
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if str(part.get_param("format", "")).lower() == "flowed":
        text = _unflow(text, str(part.get_param("delsp", "")).lower() == "yes")
    return text


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next line."""
    out: list[str] = []
    buf = ""
    for line in text.split("\n"):
        if line == "-- ":
            if buf:
                out.append(buf)
                buf = ""
            out.append(line)
            continue
        if line.endswith(" "):
            buf += line[:-1] if delsp else line
        else:
            out.append(buf + line)
            buf = ""
    if buf:
        out.append(buf)
    return "\n".join(out)


# -- HTML ------------------------------------------------------------------------------


def _keep_attribute(tag: str, attr: str, value: str) -> str | None:
    """Inert HTML: images only from the mail itself (cid:), so no tracking pixel loads."""
    if tag == "img" and attr == "src":
        return value if value.lower().startswith("cid:") else None
    return value


_CLEANER = nh3.Cleaner(
    url_schemes={"http", "https", "mailto", "cid", "tel"},
    attribute_filter=_keep_attribute,
    link_rel="noopener noreferrer nofollow",
)


def sanitize_html(html: str) -> str:
    """Scripts, styles, event handlers, forms and remote images removed (nh3/ammonia)."""
    return _CLEANER.clean(html)


_BLOCK = frozenset(
    {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre"}
    | {"ul", "ol", "dl", "dt", "dd", "section", "article", "header", "footer", "address"}
)


class _TextFromHtml(HTMLParser):
    """Sanitized HTML → plain text; blockquotes become ``>`` lines so trimming sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.buf: list[str] = []
        self.depth = 0
        self.pre = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def _flush(self, blank: bool = False) -> None:
        text = "".join(self.buf)
        if not self.pre:
            text = " ".join(text.split())
        self.buf = []
        if text or blank:
            self.lines.append(("> " * self.depth) + text if text else ">" * self.depth)
        if blank and self.lines and self.lines[-1].strip("> "):
            self.lines.append(">" * self.depth)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "blockquote":
            self._flush()
            self.depth += 1
        elif tag in _BLOCK:
            self._flush(blank=tag == "p")
            if tag == "li":
                self.buf.append("- ")
            if tag == "pre":
                self.pre += 1
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "blockquote":
            self._flush()
            self.depth = max(0, self.depth - 1)
        elif tag in _BLOCK:
            self._flush(blank=tag == "p")
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
        elif tag == "a":
            label = "".join(self.link_text).strip()
            href = self.href or ""
            if href.startswith(("http://", "https://")) and href not in label:
                self.buf.append(f" <{href}>")
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.pre:
            parts = data.split("\n")
            self.buf.append(parts[0])
            for part in parts[1:]:
                self._flush()
                self.buf.append(part)
        else:
            self.buf.append(data)
        if self.href is not None:
            self.link_text.append(data)

    def text(self) -> str:
        self._flush()
        out: list[str] = []
        for line in self.lines:
            if not line.strip("> ") and out and not out[-1].strip("> "):
                continue
            out.append(line.rstrip())
        return "\n".join(out).strip("\n")


def html_to_text(html: str) -> str:
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    return parser.text()


# -- display trimming --------------------------------------------------------------------

_ATTRIBUTION = re.compile(
    r"^\s*(On\b.{0,300}\bwrote|Pada\b.{0,300}\bmenulis|Le\b.{0,300}\ba écrit|Am\b.{0,300}\bschrieb)"
    r"\s*:\s*$",
    re.IGNORECASE | re.DOTALL,
)
_OUTLOOK_MARKER = re.compile(
    r"^\s*(-{2,}\s*(Original Message|Pesan Asli|Forwarded message|Pesan yang diteruskan)\s*-{2,}"
    r"|_{10,})\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(From|Dari)\s*:\*?\s", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(Sent|Date|Dikirim|Tanggal|To|Kepada|Subject|Perihal)\s*:", re.IGNORECASE
)
_MOBILE_FOOTER = re.compile(
    r"^\s*(Sent from my \w+|Dikirim dari \w+|Get Outlook for \w+|Sent from Yahoo Mail)",
    re.IGNORECASE,
)


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def trim_for_display(text: str) -> str:
    """The citizen's own words: cut an Outlook "Original Message"/header block, an
    "On … wrote:" / "Pada … menulis:" attribution followed only by quoted lines, a ``-- ``
    signature and a mobile footer, then the trailing ``>`` lines. Inline (interleaved)
    replies are kept whole. Falls back to the full text if nothing would remain."""
    lines = text.split("\n")
    cut = len(lines)
    for i, line in enumerate(lines):
        if line.rstrip() == "--" or line == "-- ":
            cut = i
            break
        if _OUTLOOK_MARKER.match(line):
            cut = i
            break
        if _OUTLOOK_FROM.match(line) and any(_OUTLOOK_NEXT.match(n) for n in lines[i + 1 : i + 4]):
            cut = i
            break
        if not _is_quote(line) and line.strip():
            for span in (1, 2, 3):
                joined = " ".join(lines[i : i + span])
                if _ATTRIBUTION.match(joined):
                    rest = [x for x in lines[i + span :] if x.strip()]
                    if all(_is_quote(x) for x in rest):
                        cut = i
                    break
            if cut != len(lines):
                break
    kept = lines[:cut]
    while kept and (not kept[-1].strip() or _is_quote(kept[-1])):
        kept.pop()
    if kept and _MOBILE_FOOTER.match(kept[-1]):
        kept.pop()
        while kept and not kept[-1].strip():
            kept.pop()
    result = "\n".join(kept).strip("\n")
    return result if result.strip() else text.strip("\n")


# -- headers -------------------------------------------------------------------------------


def _header(msg: StdMessage, name: str) -> str:
    value = msg.get(name)
    return "" if value is None else _fix_8bit(" ".join(str(value).split()))


def _msgids(value: str) -> list[str]:
    return _MSGID.findall(value)


def _sender(msg: EmailMessage) -> tuple[str, str]:
    """(lower-cased address, display name) of From; PayloadError if there is none."""
    header = msg.get("From")
    addr, name = "", ""
    addresses = getattr(header, "addresses", ()) if header is not None else ()
    for a in addresses:
        if isinstance(a, Address) and a.domain and a.username:
            addr, name = _fix_8bit(a.addr_spec), _fix_8bit(a.display_name)
            break
    if not addr and header is not None:
        name, addr = parseaddr(_fix_8bit(str(header)))
    addr = addr.strip().strip("<>").lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain or _NOT_IN_ADDRESS.search(addr):
        raise PayloadError("From has no usable address")
    return addr, " ".join(name.split())[:200]


def _provider_ts(msg: StdMessage) -> float | None:
    raw = msg.get("Date")
    if raw is None:
        return None
    try:
        return parsedate_to_datetime(str(raw)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# -- attachments ---------------------------------------------------------------------------


def _safe_name(name: str | None, content_type: str, index: int) -> str:
    raw = _fix_8bit(name or "")
    raw = raw.replace("\\", "/").rsplit("/", 1)[-1]
    raw = "".join(ch for ch in raw if ch.isprintable()).strip().lstrip(".")
    if raw:
        return raw[:200]
    ext = mimetypes.guess_extension(content_type) or ".bin"
    return f"attachment-{index}{ext}"


def _leaves(part: StdMessage) -> list[StdMessage]:
    """Leaf parts in order; an attached mail (message/rfc822) is one leaf, not its insides."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        payload = part.get_payload()
        out: list[StdMessage] = []
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, StdMessage):
                    out.extend(_leaves(sub))
        return out
    return [part]


def _as_bytes(part: StdMessage) -> bytes:
    """An attached mail's bytes. The stdlib's generators fail on some mails its parser took
    (8-bit bytes in a long header, a header it cannot parse again, a multipart without its
    boundary, an unknown charset): those are written as their headers came and their body
    as parsed, the 8-bit bytes restored."""
    try:
        return part.as_bytes(policy=policy.SMTP)
    except (UnicodeError, LookupError, IndexError, ValueError, TypeError, AttributeError,
            MessageError):  # fmt: skip
        return _as_received(part).encode("utf-8", "surrogateescape")


def _as_received(part: StdMessage) -> str:
    head = "".join(f"{name}: {value}\r\n" for name, value in part.raw_items())
    payload = part.get_payload()
    if isinstance(payload, list):
        body = "\r\n".join(_as_received(p) for p in payload if isinstance(p, StdMessage))
    else:
        body = payload if isinstance(payload, str) else ""
    return f"{head}\r\n{body}"


def _leaf_bytes(part: StdMessage) -> bytes:
    if part.get_content_maintype() == "message" or part.is_multipart():
        payload = part.get_payload()
        inner = (
            [p for p in payload if isinstance(p, StdMessage)] if isinstance(payload, list) else []
        )
        if part.get_content_type() in ("message/rfc822", "message/global"):
            inner = inner[:1]
        if inner:  # an attached mail; a delivery-status part's field groups
            return b"".join(_as_bytes(p) for p in inner)
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _find_body(msg: EmailMessage, kind: str) -> EmailMessage | None:
    """``msg.get_body`` for one preference, or None where the stdlib fails on its own parse
    (a multipart/related whose boundary never came is a string it walks as parts)."""
    try:
        return msg.get_body(preferencelist=(kind,))  # type: ignore[return-value]
    except (AttributeError, TypeError, KeyError, IndexError):
        return None


# -- the entry point -----------------------------------------------------------------------


def parse_mail(
    raw: bytes,
    account: str,
    received_at: float,
    *,
    max_attachment_bytes: int = 10 * 1024 * 1024,
    max_text_chars: int = 100_000,
    max_raw_bytes: int = 256 * 1024,
    own_addresses: tuple[str, ...] = (),
) -> ParsedMail:
    """Parse one RFC 5322 mail received on ``account`` (the mailbox's configured name).

    Raises PayloadError only when the mail names no sender address at all; anything else
    (bad charsets, broken MIME, missing Message-ID) is tolerated as mail clients do."""
    parsed = BytesParser(policy=_POLICY).parsebytes(raw)
    if not isinstance(parsed, EmailMessage):  # policy.default always gives EmailMessage
        raise PayloadError("not an e-mail message")
    msg = parsed
    addr, display_name = _sender(msg)

    own_ids = _msgids(_header(msg, "Message-ID"))
    if own_ids:
        message_id = own_ids[0]
    elif _header(msg, "Message-ID") and "@" in _header(msg, "Message-ID"):
        message_id = f"<{_header(msg, 'Message-ID').strip('<> ')}>"
    else:
        message_id = f"<sha256-{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id.invalid>"

    subject = _header(msg, "Subject")[:998]
    meta: dict[str, str] = {"subject": subject, "message_id": message_id}

    plain = _find_body(msg, "plain")
    html_part = _find_body(msg, "html")
    html_clean = ""
    if html_part is not None and html_part.get_content_type() == "text/html":
        html_clean = sanitize_html(_part_text(html_part))[: max_text_chars * 2]
        meta["html"] = html_clean
    if plain is not None and plain.get_content_type() == "text/plain":
        texts = [_part_text(plain)]
    else:
        plain = None
        texts = [html_to_text(html_clean)] if html_clean else []

    body_parts = {id(p) for p in (plain, html_part) if p is not None}
    attachments: list[tuple[Attachment, bytes]] = []
    inline: dict[str, str] = {}
    omitted: list[str] = []
    has_files = False
    for part in _leaves(msg):
        if id(part) in body_parts:
            continue
        ctype = part.get_content_type()
        if (
            plain is not None
            and ctype == "text/plain"
            and not part.get_filename()
            and part.get_content_disposition() != "attachment"
        ):
            texts.append(_part_text(part))  # Apple Mail splits the body around images
            continue
        data = _leaf_bytes(part)
        name = _safe_name(part.get_filename(), ctype, len(attachments) + 1)
        if ctype == "message/rfc822" and not part.get_filename():
            name = f"attachment-{len(attachments) + 1}.eml"
        cid = " ".join(str(part.get("Content-ID", "")).split()).strip("<>")
        if len(data) > max_attachment_bytes:
            att = Attachment(url=OMITTED_TOO_LARGE, content_type=ctype, name=name, size=len(data))
            omitted.append(name)
            data = b""
        else:
            url = f"blob:sha256:{hashlib.sha256(data).hexdigest()}"
            att = Attachment(url=url, content_type=ctype, name=name, size=len(data))
        if cid and part.get_content_disposition() != "attachment":
            inline[cid] = att.url
        else:
            has_files = True
        attachments.append((att, data))
    if inline:
        meta["inline_cids"] = json.dumps(inline, ensure_ascii=False)
    if omitted:
        meta["attachments_omitted"] = json.dumps(omitted, ensure_ascii=False)

    text = "\n\n".join(t.strip("\n") for t in texts if t.strip())
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    if len(text) > max_text_chars:
        text = text[:max_text_chars]
        meta["text_truncated"] = "1"
    meta["display_text"] = trim_for_display(text)

    in_reply_to = _msgids(_header(msg, "In-Reply-To"))
    references = _msgids(_header(msg, "References"))
    parents: list[str] = []
    for mid in [*in_reply_to, *reversed(references)]:
        if mid != message_id and mid not in parents:
            parents.append(mid)
    hints = [f"email-msgid:{m}" for m in parents[:_MAX_PARENTS]]
    hints.append(f"email-msgid:{message_id}")
    for number in dict.fromkeys(TICKET_NUMBER.findall(subject)):
        hints.append(f"ticket-number:{number}")
    if in_reply_to:
        meta["in_reply_to"] = in_reply_to[0]
    if references:
        meta["references"] = " ".join(references[-_MAX_PARENTS:])

    for name in ("To", "Cc"):
        values = [_fix_8bit(str(v)) for v in msg.get_all(name, [])]
        found = [a.lower() for _n, a in getaddresses(values) if "@" in a]
        if found:
            meta[name.lower()] = ", ".join(found)[:2000]
    reply_to = [a.lower() for _n, a in getaddresses([_header(msg, "Reply-To")]) if "@" in a]
    if reply_to and reply_to[0] != addr:
        meta["reply_to"] = reply_to[0]

    reason = should_not_autoreply(msg, own_addresses)
    if reason:
        meta["no_autoreply"] = reason
    bounce = parse_bounce(msg)

    if len(raw) > max_raw_bytes:
        head, _sep, _body = raw.partition(b"\r\n\r\n")
        if not _sep:
            head = raw.partition(b"\n\n")[0]
        raw_text = head[:max_raw_bytes].decode("utf-8", "replace")
        meta["raw_truncated"] = "1"
    else:
        raw_text = raw.decode("utf-8", "replace")

    message = Message(
        id=new_id(int(received_at * 1000)),
        channel=CHANNEL,
        account=account,
        provider_id=message_id,
        sender=f"email:{addr}",
        reply_address=addr,
        received_at=received_at,
        kind="media" if has_files else "text",
        text=text,
        display_name=display_name,
        attachments=tuple(a for a, _ in attachments),
        thread_hints=tuple(hints),
        provider_ts=_provider_ts(msg),
        meta=meta,
        raw=raw_text,
    )
    return ParsedMail(
        message=message,
        attachments=attachments,
        auto_submitted=reason is not None,
        bounce=bounce,
    )
