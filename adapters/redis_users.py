"""Accounts, login lockout, sessions and personal API tokens, in Redis.

Accounts share the ``{users}`` tag. A session is one key with a sliding TTL; a personal API
token is stored only as its SHA-256, so a copy of Redis does not hand out working tokens.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from adapters.scripts import AnyRedis, Scripts, as_text
from hub.accounts import User

PREFIX = "hub:{users}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RedisUsers:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self.scripts = Scripts(redis)

    # -- accounts ------------------------------------------------------------------------

    async def create(self, user: User, password_hash: str) -> bool:
        key = f"{PREFIX}:u:{user.username}"
        fields = {
            "username": user.username,
            "display_name": user.display_name,
            "role": user.role,
            "units": json.dumps(list(user.units)),
            "language": user.language,
            "disabled": "1" if user.disabled else "0",
            "password": password_hash,
            "created_at": int(time.time() * 1000),
        }
        if not await self.redis.hsetnx(key, "username", user.username):
            return False
        await self.redis.hset(key, mapping=fields)
        await self.redis.sadd(f"{PREFIX}:all", user.username)
        return True

    async def update(self, username: str, **fields: Any) -> None:
        mapping = {
            k: json.dumps(list(v))
            if k == "units"
            else ("1" if v is True else "0")
            if isinstance(v, bool)
            else v
            for k, v in fields.items()
        }
        await self.redis.hset(f"{PREFIX}:u:{username}", mapping=mapping)

    async def get(self, username: str) -> tuple[User, str] | None:
        raw = await self.redis.hgetall(f"{PREFIX}:u:{username}")
        if not raw:
            return None
        d = {as_text(k): as_text(v) for k, v in raw.items()}
        user = User(
            d["username"],
            d.get("display_name", d["username"]),
            d.get("role", "agent"),
            tuple(json.loads(d.get("units", "[]"))),
            d.get("language", ""),
            d.get("disabled") == "1",
        )
        return user, d.get("password", "")

    async def all(self) -> list[User]:
        names = sorted(as_text(n) for n in await self.redis.smembers(f"{PREFIX}:all"))
        out = []
        for n in names:
            got = await self.get(n)
            if got:
                out.append(got[0])
        return out

    # -- lockout -------------------------------------------------------------------------

    async def failures(self, username: str) -> int:
        return int(await self.redis.get(f"{PREFIX}:fail:{username}") or 0)

    async def record_failure(self, username: str, window_s: int) -> int:
        key = f"{PREFIX}:fail:{username}"
        n, _ = await self.scripts.atomic(("INCR", key), ("EXPIRE", key, window_s))
        return int(n)

    async def clear_failures(self, username: str) -> None:
        await self.redis.delete(f"{PREFIX}:fail:{username}")

    # -- sessions ------------------------------------------------------------------------

    async def create_session(self, username: str, ttl_s: int) -> tuple[str, str]:
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        key = f"hub:sess:{{{_token_hash(sid)}}}"
        await self.redis.hset(key, mapping={"username": username, "csrf": csrf})
        await self.redis.expire(key, ttl_s)
        return sid, csrf

    async def session(self, sid: str, ttl_s: int) -> tuple[str, str] | None:
        """(username, csrf) of a live session, sliding its expiry."""
        key = f"hub:sess:{{{_token_hash(sid)}}}"
        raw = await self.redis.hgetall(key)
        if not raw:
            return None
        await self.redis.expire(key, ttl_s)
        d = {as_text(k): as_text(v) for k, v in raw.items()}
        return d["username"], d["csrf"]

    async def end_session(self, sid: str) -> None:
        await self.redis.delete(f"hub:sess:{{{_token_hash(sid)}}}")

    # -- personal API tokens -------------------------------------------------------------

    async def create_token(self, username: str, label: str) -> str:
        token = "hubu_" + secrets.token_urlsafe(32)
        await self.redis.hset(
            f"{PREFIX}:tok", _token_hash(token), json.dumps({"user": username, "label": label})
        )
        return token

    async def token_user(self, token: str) -> str | None:
        raw = await self.redis.hget(f"{PREFIX}:tok", _token_hash(token))
        return json.loads(raw)["user"] if raw else None

    async def revoke_token(self, token: str) -> bool:
        return bool(await self.redis.hdel(f"{PREFIX}:tok", _token_hash(token)))
