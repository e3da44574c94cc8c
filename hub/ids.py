"""Hub-made identifiers: sortable by creation time, unguessable enough to expose in URLs."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(now_ms: int | None = None) -> str:
    """A 20-character ULID-like id: 10 chars of milliseconds, then 10 random chars."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _b32(ms, 10) + _b32(secrets.randbits(50), 10)


def ticket_number(prefix: str, year: int, seq: int) -> str:
    """The number citizens quote on the phone: KMN-2026-000123."""
    return f"{prefix}-{year}-{seq:06d}"
