"""The timestamped HMAC scheme our own integrations use (the portal, the call platform's
live events): ``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`` beside a unix
timestamp header, with a replay window. Shared here so no channel imports another."""

from __future__ import annotations

import hashlib
import hmac

from channels.base import SignatureError


class StaleSignature(SignatureError):
    """A genuine signature whose timestamp is outside the replay window (answer 401)."""

    status = 401


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_timestamped(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float,
    window_s: float,
    *,
    timestamp_header: str,
    signature_header: str,
) -> None:
    """Raise SignatureError (403) unless ``secret`` signed ``body`` at ``timestamp``;
    StaleSignature (401) when the signature is genuine but outside ``window_s``. The HMAC is
    checked first, so a stale answer never tells a forger anything."""
    if not timestamp:
        raise SignatureError(f"missing {timestamp_header}")
    if not signature:
        raise SignatureError(f"missing {signature_header}")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureError(f"{timestamp_header} is not unix seconds")
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        raise SignatureError(f"{signature_header} does not match")
    skew = now - int(timestamp)
    if abs(skew) > window_s:
        side = "old" if skew > 0 else "in the future"
        raise StaleSignature(
            f"{timestamp_header} is {abs(skew):.0f} s {side} (window {window_s:g} s)"
        )
