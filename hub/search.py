"""Ticket search: what gets indexed, what a query asks, and the text rules both sides share.

Pure (no Redis): the adapter (``adapters/redis_search.py``) keeps the inverted index and runs
queries; this module decides what a term is. Text and names are normalized the same way at
index and at query time: accents folded (``pésangon`` → ``pesangon``), lower-cased, punctuation
turned into spaces, digit groups joined (``5.000.000`` → ``5000000``), letters and digits split
(``Rp5000000`` → ``rp 5000000``), very short tokens and a few stopwords dropped.

A query string is read as, in this order: a ticket number (``KMN-2026-000123``), a ticket id
(``<contact>.<n>``), an e-mail address (anything with ``@``), a phone number in any notation
(``0812…``, ``+62 812…``, ``62812…``), else words (every word must match the ticket's text or
its citizen's name).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from hub.identity import InvalidIdentity, normalize_phone, phone_identity
from hub.model import Message
from hub.ports import Applied

JAKARTA = ZoneInfo("Asia/Jakarta")
MIN_TOKEN = 2  # single letters and digits match nearly everything and say nothing
MAX_TOKEN = 40  # longer runs are hashes, URLs' innards or base64, not words anyone types
MAX_DOC_TOKENS = 64  # distinct tokens kept per message: bounds index writes per message
MAX_NAME_TOKENS = 8
MAX_QUERY_TOKENS = 8  # words beyond these are ignored (each costs one membership check)

# Function words and courtesies that nearly every message carries (Indonesian, then English).
_STOP_ID = """
    yang dan di ke dari ini itu untuk dengan pada atau juga saya aku kami kita anda akan ada
    adalah oleh karena sebagai dalam bisa mau apa nya pak bu bapak ibu mohon tolong terima kasih
    halo hai selamat pagi siang sore malam ya tersebut sudah telah
"""
_STOP_EN = """
    the an and or of to in on for is are was were be been my me you your it its this that with
    at by from as have has had please hello hi thanks thank
"""
STOPWORDS = frozenset(_STOP_ID.split()) | frozenset(_STOP_EN.split())

_THOUSANDS = re.compile(r"(?<=\d)[.,](?=\d{3}(?!\d))")
_NOT_ALNUM_ASCII = re.compile(r"[^a-z0-9]+")
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_TICKET_NUMBER = re.compile(r"^[A-Za-z]{2,10}-\d{4}-\d{1,9}$")
_TICKET_ID = re.compile(r"^[0-9a-z]{20}\.\d{1,9}$")
_PHONEISH = re.compile(r"^(?:whatsapp:|tel:)?\+?[\d\s().\-/]+$", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """Fold accents and case, drop punctuation; words separated by single spaces.

    Most citizens' text is ASCII: it has no accents to fold, and its case folding and its
    letters and digits are the plain ones, so one regular expression does the character
    walk (a dispatcher indexes every message: 30 → 18 µs for a 110-character one)."""
    if text.isascii():
        s = _NOT_ALNUM_ASCII.sub(" ", _THOUSANDS.sub("", text.lower()))
    else:
        s = unicodedata.normalize("NFKD", text)
        s = "".join(ch for ch in s if not unicodedata.combining(ch)).casefold()
        s = _THOUSANDS.sub("", s)
        s = "".join(ch if ch.isalnum() else " " for ch in s)
    s = _LETTER_DIGIT.sub(" ", s)
    return " ".join(s.split())


def tokenize(text: str, limit: int = MAX_DOC_TOKENS) -> list[str]:
    """Distinct searchable tokens in order of first appearance, at most ``limit``."""
    out: dict[str, None] = {}
    for tok in normalize_text(text).split():
        if MIN_TOKEN <= len(tok) <= MAX_TOKEN and tok not in STOPWORDS:
            out.setdefault(tok)
            if len(out) >= limit:
                break
    return list(out)


def number_seq(token_or_number: str) -> str:
    """The sequence part of a ticket number without padding: ``KMN-2026-000123`` → ``123``."""
    digits = token_or_number.rsplit("-", 1)[-1]
    return digits.lstrip("0") if digits.isdigit() else ""


@dataclass(frozen=True, slots=True)
class SearchDoc:
    """One message's contribution to the index. ``created_at_ms`` is when the message was
    received: it is the recency score of the terms it adds (a later message raises it)."""

    ticket_id: str
    contact_id: str
    number: str
    created_at_ms: int
    text: str
    display_name: str = ""
    identities: tuple[str, ...] = ()

    @classmethod
    def from_applied(cls, applied: Applied, msg: Message, number: str = "") -> SearchDoc:
        """What the dispatcher indexes for a message it just applied (duplicates included:
        indexing is idempotent, and a crash may have come between apply and index)."""
        return cls(
            ticket_id=applied.ticket_id,
            contact_id=applied.contact_id,
            number=number or applied.number,
            created_at_ms=int(msg.received_at * 1000),
            text=msg.text,
            display_name=msg.display_name,
            identities=(msg.sender,) if msg.sender else (),
        )


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Free text plus filters; dates are ticket creation days in Asia/Jakarta, inclusive.
    ``units`` is access control, not a filter the user picked: None sees every unit, a tuple
    only tickets of those units (an empty one, nothing)."""

    q: str = ""
    status: str = ""
    unit: str = ""
    channel: str = ""
    assignee: str = ""
    date_from: date | None = None
    date_to: date | None = None
    limit: int = 20
    offset: int = 0
    units: tuple[str, ...] | None = None

    def filters(self) -> dict[str, str]:
        """The list-index filters that are set (field → value)."""
        pairs = (
            ("status", self.status),
            ("unit", self.unit),
            ("channel", self.channel),
            ("assignee", self.assignee),
        )
        return {f: v for f, v in pairs if v}

    def created_range_ms(self) -> tuple[int, int] | None:
        """[start, end) in epoch ms covering the Jakarta days asked for, or None."""
        if self.date_from is None and self.date_to is None:
            return None
        lo = _day_start_ms(self.date_from) if self.date_from else 0
        hi = _day_start_ms(self.date_to + timedelta(days=1)) if self.date_to else 2**53
        return lo, hi


def _day_start_ms(d: date) -> int:
    return int(datetime.combine(d, time(), JAKARTA).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """``kind``: all | number | ticket_id | email | phone | words. ``value`` is the ticket
    number, ticket id or identity; ``tokens`` the words (for ``words``)."""

    kind: str
    value: str = ""
    tokens: tuple[str, ...] = ()


def parse_query(q: str) -> ParsedQuery:
    s = " ".join(q.split())
    if not s:
        return ParsedQuery("all")
    if _TICKET_NUMBER.match(s):
        return ParsedQuery("number", s.upper())
    if _TICKET_ID.match(s):
        return ParsedQuery("ticket_id", s)
    if "@" in s:
        addr = s.replace(" ", "").lower().removeprefix("mailto:")
        return ParsedQuery("email", f"email:{addr}")
    if _PHONEISH.match(s) and 8 <= sum(ch.isdigit() for ch in s) <= 15:
        try:
            return ParsedQuery("phone", phone_identity(normalize_phone(s)))
        except InvalidIdentity:
            pass  # digits that are not a phone (a NIK, an amount): search them as words
    return ParsedQuery("words", tokens=tuple(tokenize(s, MAX_QUERY_TOKENS)))


class SearchPort(Protocol):
    """What the hub needs from a search index."""

    async def index(self, entries: Sequence[SearchDoc]) -> None:
        """Add messages to the index; idempotent (re-indexing a message changes nothing)."""
        ...

    async def search(self, query: SearchQuery) -> tuple[list[str], int]:
        """One page of matching ticket ids, most recent activity first, and the total."""
        ...

    async def summaries(self, ticket_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Those tickets as ``TicketStore.list_tickets`` shows them (missing ones left out)."""
        ...
