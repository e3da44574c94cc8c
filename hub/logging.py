"""structlog set up once: JSON (or pretty on a terminal), bound context, personal data masked.

Log lines carry ids (request, message, ticket), never message bodies: the ``redact`` processor
drops body-like keys and masks phone numbers, e-mail addresses and NIKs that slip into any
string value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.processors import _json_fallback_handler

_BODY_KEYS = frozenset({"body", "text", "message_body", "html", "raw", "payload", "password"})
# +6281234567890, 6281234567890, 081234567890 (as the hub writes them): keep the first 4
# and last 2 digits. Ids made of digits and dashes (stream ids, ticket numbers) are left alone.
_PHONE = re.compile(r"(?<![\w.-])(\+\d{8,15}|(?:62|0)8\d{7,12})(?![\w-]|\.\d)")
# NIK: 16 digits: province, regency, district, DDMMYY (day + 40 for women), serial.
_NIK = re.compile(r"(?<![\w-])(\d{6})((?:[0-6]\d|7[01])(?:0[1-9]|1[0-2])\d{2})(\d{4})(?![\w-])")

# An e-mail address keeps the first character of its local part and its domain (which says
# which provider, not who): siti.rahayu@gmail.com -> s***@gmail.com.
_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@((?:[\w-]+\.)+[A-Za-z]{2,})(?![\w-])")


def mask_phone(value: str) -> str:
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 8:
        return value
    plus = "+" if value.startswith("+") else ""
    return f"{plus}{''.join(digits[:4])}{'*' * (len(digits) - 6)}{''.join(digits[-2:])}"


# Where each pattern can start: a NIK at 16 digits in a row, a phone at ``+`` and 8 digits
# or at ``08``/``628`` and 7 more, neither right after a letter, digit, ``_`` or ``-``; an
# e-mail address has an ``@``. Most values (ids, names of things, timestamps, stream ids,
# providers' message ids) have none of these and skip the three substitutions, which could
# only change a string where one of them starts.
_MAYBE_PERSONAL = re.compile(r"@|(?<![\w-])(?:\d{16}|\+\d{8}|(?:62|0)8\d{7})")


def mask_text(value: str) -> str:
    if not _MAYBE_PERSONAL.search(value):
        return value
    value = _NIK.sub(lambda m: m.group(1)[:2] + "*" * 10 + m.group(3)[-4:], value)
    value = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)
    return _PHONE.sub(lambda m: mask_phone(m.group(1)), value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in _BODY_KEYS else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


_body_key_cache: dict[str, bool] = {}


def _is_body_key(key: str) -> bool:
    """``key.lower() in _BODY_KEYS``, remembered: a process logs a few dozen keys."""
    found = _body_key_cache.get(key)
    if found is None:
        found = key.lower() in _BODY_KEYS
        if len(_body_key_cache) < 4096:
            _body_key_cache[key] = found
    return found


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop body-like keys (at any depth, any case) and mask personal numbers everywhere,
    tracebacks included (this runs after exceptions are rendered)."""
    for key, value in list(event.items()):
        if _is_body_key(key):
            event[key] = "[redacted]"
        elif key == "event":
            continue
        elif type(value) is str:  # most values: one search, and nothing to mask
            if _MAYBE_PERSONAL.search(value):
                event[key] = mask_text(value)
        else:
            event[key] = _scrub(value)
    return event


class UtcIsoStamper:
    """``structlog.processors.TimeStamper(fmt="iso", utc=True)``, character for character
    (``datetime.now(timezone.utc).isoformat()`` with ``Z`` for ``+00:00``: microseconds
    floored, left out when 0), with the date and time of the current second built once."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")  # one attribute: threads may log too

    def text(self, ns: int) -> str:
        """The stamp of ``ns`` nanoseconds since the epoch."""
        sec, rest = divmod(ns, 1_000_000_000)
        cached, prefix = self._second
        if sec != cached:
            t = time.gmtime(sec)
            prefix = (
                f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            )
            self._second = (sec, prefix)
        us = rest // 1000
        return f"{prefix}.{us:06d}Z" if us else f"{prefix}Z"

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event["timestamp"] = self.text(time.time_ns())
        return event


class JSONRenderer:
    """``structlog.processors.JSONRenderer(sort_keys=False)``'s output with one encoder built
    once (``json.dumps`` with ``default=`` builds one per line)."""

    def __init__(self) -> None:
        self._encode = json.JSONEncoder(default=_json_fallback_handler, sort_keys=False).encode

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
        return self._encode(event)


def configure(fmt: str = "json", level: str = "info", *, cache: bool = False) -> None:
    """Processors, level and output for the whole process.

    ``cache``: each module's logger is built once, on its first line, instead of on every
    line (a few µs each, two lines per webhook). For processes that configure logging once
    and for good, as ``python -m hub`` does; tests that reconfigure mid-run leave it off."""
    renderer: Any = structlog.dev.ConsoleRenderer() if fmt == "console" else JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            UtcIsoStamper(),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=cache,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
