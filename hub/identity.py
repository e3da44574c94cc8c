"""Citizen identities: one canonical key per reachable address, so channels agree on people.

A phone is the same citizen on WhatsApp, the call log and SMS, so every phone becomes
``phone:+E164`` whatever notation the provider used.
"""

from __future__ import annotations

import phonenumbers


class InvalidIdentity(ValueError):
    """The address cannot name a citizen (not a valid phone number, empty, ...)."""


def normalize_phone(raw: str, default_region: str = "ID") -> str:
    """``whatsapp:+62 812-3456-7890``, ``6281234567890``, ``0812...`` → ``+6281234567890``."""
    s = raw.strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if s.lower().startswith(prefix):
            s = s[len(prefix) :]
    digits = "".join(ch for ch in s if ch.isdigit())
    if not digits:
        raise InvalidIdentity("no digits in phone number")
    if not s.startswith("+") and not digits.startswith("0") and len(digits) > 9:
        # WaId and many exports give the country code without its plus.
        s = "+" + digits
    try:
        number = phonenumbers.parse(s, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {exc.error_type}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_identity(e164: str) -> str:
    return f"phone:{e164}"
