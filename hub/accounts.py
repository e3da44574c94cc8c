"""People and machines that use the console and the API: roles, units, passwords.

Passwords are hashed with scrypt (a standard memory-hard KDF, in the standard library), with a
per-user salt and the parameters stored beside the hash so they can be raised later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

ROLES = ("agent", "supervisor", "admin")
_N, _R, _P = 2**14, 8, 1


class AuthError(Exception):
    """Login refused; the text is safe to show (it never says which half was wrong).
    ``code`` is ``failed`` or ``locked``."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(),
        salt=bytes.fromhex(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(digest) // 2,
        maxmem=64 * 1024 * 1024,
    )
    return hmac.compare_digest(got.hex(), digest)


# A hash to verify against when the user does not exist, so both cases take the same time.
DUMMY_HASH = hash_password(secrets.token_hex(8))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a person (from a session or their token) or a configured machine."""

    name: str
    role: str
    units: tuple[str, ...] = ()
    display_name: str = ""
    language: str = ""  # empty: the console default
    via: str = "session"  # session | user-token | service-token
    csrf: str = field(default="", repr=False)

    @property
    def sees_all_units(self) -> bool:
        return self.role in ("supervisor", "admin")

    def can_see(self, unit: str) -> bool:
        return self.sees_all_units or unit in self.units

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_supervisor(self) -> bool:
        return self.role in ("supervisor", "admin")


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    role: str
    units: tuple[str, ...]
    language: str = ""  # empty: the console default
    disabled: bool = False

    def principal(self, via: str, csrf: str = "") -> Principal:
        return Principal(
            self.username, self.role, self.units, self.display_name, self.language, via, csrf
        )
