"""Where each e-mail account's IMAP intake stands: ``(UIDVALIDITY, last UID)`` in Redis.

Implements ``channels.email.imap.MailboxState``. One hash per account,
``hub:{mail}:pos:<account>`` (all accounts share the ``{mail}`` hash tag: a handful of small
keys, one slot). The write is one script that never moves the position backwards within the
same UIDVALIDITY, so two intakes of one account racing (a deploy overlap) cannot make the hub
re-read a stretch of mail; a new UIDVALIDITY always replaces the old (resync from there).
"""

from __future__ import annotations

from typing import Any

from adapters.keys import PREFIX
from adapters.scripts import AnyRedis, as_text

_SET = """
local cur = redis.call('HMGET', KEYS[1], 'uidvalidity', 'last_uid')
if cur[1] == ARGV[1] and tonumber(cur[2]) ~= nil and tonumber(cur[2]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'uidvalidity', ARGV[1], 'last_uid', ARGV[2])
return 1
"""


def position_key(account: str) -> str:
    return f"{PREFIX}:{{mail}}:pos:{account}"


class RedisMailState:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self._set = redis.register_script(_SET)

    async def get(self, mailbox: str) -> tuple[int, int] | None:
        uidvalidity, last_uid = await self.redis.hmget(
            position_key(mailbox), ["uidvalidity", "last_uid"]
        )
        if uidvalidity is None or last_uid is None:
            return None
        return int(as_text(uidvalidity)), int(as_text(last_uid))

    async def set(self, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        await self._set(keys=[position_key(mailbox)], args=[str(uidvalidity), str(last_uid)])
