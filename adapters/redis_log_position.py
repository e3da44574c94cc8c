"""Where each call-log tailer stands: ``(inode, offset)`` in Redis.

Implements ``channels.calls.tailer.LogPosition``. One hash per log, ``hub:{calllog}:pos:<name>``
(all logs share the ``{calllog}`` hash tag: a handful of small keys, one slot). ``set`` is one
script that never moves the offset backwards within the same inode, so two tailers of one log
racing (a deploy overlap, a lease handover) cannot make the hub re-read a stretch of the log; a
new inode (rotation) always replaces the old. ``reset`` writes unconditionally: a truncated
file (same inode, shorter) restarts at 0.
"""

from __future__ import annotations

from typing import Any

from adapters.keys import PREFIX
from adapters.scripts import AnyRedis, as_text

_SET = """
local cur = redis.call('HMGET', KEYS[1], 'inode', 'offset')
if cur[1] == ARGV[1] and tonumber(cur[2]) ~= nil and tonumber(cur[2]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'inode', ARGV[1], 'offset', ARGV[2])
return 1
"""


def position_key(name: str) -> str:
    return f"{PREFIX}:{{calllog}}:pos:{name}"


class RedisLogPosition:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis: Any = redis  # redis-py's stubs type replies too loosely to help
        self._set = redis.register_script(_SET)

    async def get(self, name: str) -> tuple[int, int] | None:
        inode, offset = await self.redis.hmget(position_key(name), ["inode", "offset"])
        if inode is None or offset is None:
            return None
        return int(as_text(inode)), int(as_text(offset))

    async def set(self, name: str, inode: int, offset: int) -> None:
        await self._set(keys=[position_key(name)], args=[str(inode), str(offset)])

    async def reset(self, name: str, inode: int, offset: int) -> None:
        await self.redis.hset(position_key(name), mapping={"inode": inode, "offset": offset})
