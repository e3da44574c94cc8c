"""structlog set up once: JSON (or pretty on a terminal), bound context, personal data masked.

Log lines carry ids (request, message, ticket), never message bodies: the ``redact`` processor
drops body-like keys and masks phone numbers, e-mail addresses and NIKs that slip into any
string value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

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


# What each pattern needs at the least: a NIK 16 digits in a row, a phone 8 (``+`` and 8,
# or ``08``/``628`` and 7 more), an e-mail an ``@``. Most values (ids, names of things,
# timestamps) have none of these and skip the three substitutions.
_MAYBE_PERSONAL = re.compile(r"\d{8}|@")


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


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop body-like keys (at any depth, any case) and mask personal numbers everywhere,
    tracebacks included (this runs after exceptions are rendered)."""
    for key in list(event):
        if key.lower() in _BODY_KEYS:
            event[key] = "[redacted]"
        elif key != "event":
            event[key] = _scrub(event[key])
    return event


def configure(fmt: str = "json", level: str = "info", *, cache: bool = False) -> None:
    """Processors, level and output for the whole process.

    ``cache``: each module's logger is built once, on its first line, instead of on every
    line (a few µs each, two lines per webhook). For processes that configure logging once
    and for good, as ``python -m hub`` does; tests that reconfigure mid-run leave it off."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
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
