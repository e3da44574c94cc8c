"""Where each portal account's polling intake stands: the events list's opaque cursor.

Implements ``channels.portal.poller.CursorStore``. One string key per account,
``hub:{portal}:cursor:<account>`` (all accounts share the ``{portal}`` hash tag). The cursor
is opaque, so it cannot be ordered: the poller's lease (``hub.intake``) keeps one writer.
"""

from __future__ import annotations

from typing import Any

from adapters.keys import PREFIX
from adapters.scripts import AnyRedis, as_text


def cursor_key(account: str) -> str:
    return f"{PREFIX}:{{portal}}:cursor:{account}"


class RedisPortalCursor:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help

    async def get(self, account: str) -> str | None:
        value = await self.redis.get(cursor_key(account))
        return None if value is None else as_text(value)

    async def set(self, account: str, cursor: str) -> None:
        await self.redis.set(cursor_key(account), cursor)
