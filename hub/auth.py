"""Who is calling: sessions for people, tokens for machines and for people's scripts.

Login failures are counted per username; after ``console.lockout_failures`` in the lockout
window the account refuses logins until the window passes, whatever the password.
"""

from __future__ import annotations

import hmac

import structlog

from hub.accounts import DUMMY_HASH, AuthError, Principal, User, hash_password, verify_password
from hub.ports import UserStore
from hub.settings import Settings

log = structlog.get_logger("hub.auth")


class AuthService:
    def __init__(self, settings: Settings, users: UserStore) -> None:
        self.settings = settings
        self.users = users
        c = settings.console
        self.session_ttl_s = int(c.session_hours * 3600)
        self.lockout_window_s = int(c.lockout_minutes * 60)

    async def create_user(
        self, username: str, password: str, role: str, units: list[str], display_name: str = ""
    ) -> User:
        if len(password) < 10:
            raise ValueError("passwords need at least 10 characters")
        unknown = [u for u in units if u not in self.settings.units]
        if unknown:
            raise ValueError(f"unknown units: {', '.join(unknown)}")
        user = User(username, display_name or username, role, tuple(units))
        if not await self.users.create(user, hash_password(password)):
            raise ValueError(f"user {username!r} exists")
        log.info("user.created", username=username, role=role)
        return user

    async def login(self, username: str, password: str) -> tuple[str, str, User]:
        """A new session (id, csrf token) or AuthError. Same time whether or not the user
        exists, and the same message either way."""
        if await self.users.failures(username) >= self.settings.console.lockout_failures:
            log.warning("login.locked", username=username)
            raise AuthError("too many failed attempts: try again later", code="locked")
        got = await self.users.get(username)
        ok = verify_password(password, got[1] if got else DUMMY_HASH)
        if not got or not ok or got[0].disabled:
            n = await self.users.record_failure(username, self.lockout_window_s)
            log.warning("login.failed", username=username, failures=n)
            raise AuthError("wrong username or password")
        await self.users.clear_failures(username)
        sid, csrf = await self.users.create_session(username, self.session_ttl_s)
        log.info("login.succeeded", username=username)
        return sid, csrf, got[0]

    async def from_session(self, sid: str) -> Principal | None:
        sess = await self.users.session(sid, self.session_ttl_s)
        if sess is None:
            return None
        got = await self.users.get(sess[0])
        if got is None or got[0].disabled:
            return None
        user: User = got[0]
        return user.principal("session", sess[1])

    async def from_bearer(self, token: str) -> Principal | None:
        found: Principal | None = None
        for t in self.settings.api.tokens:
            if hmac.compare_digest(token.encode(), t.token.get_secret_value().encode()):
                found = Principal(t.name, t.role, tuple(t.units), t.name, via="service-token")
        if found is not None:
            return found
        if not token.startswith("hubu_"):
            return None
        username = await self.users.token_user(token)
        if username is None:
            return None
        got = await self.users.get(username)
        if got is None or got[0].disabled:
            return None
        user: User = got[0]
        return user.principal("user-token")

    async def logout(self, sid: str) -> None:
        await self.users.end_session(sid)
