"""The Lua scripts, loaded from ``adapters/lua`` once and run by SHA (EVALSHA with fallback)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def _source(name: str) -> str:
    return (resources.files("adapters") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """Registered scripts of one client; attribute access by file name."""

    NAMES = (
        "resolve_contact",
        "apply_message",
        "assign_number",
        "add_reply",
        "claim_reply",
        "set_reply_state",
        "set_ticket_status",
        "move_due",
        "lease",
        "dead_letter",
    )

    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            n: redis.register_script(_source(n)) for n in self.NAMES
        }

    def __getattr__(self, name: str) -> AsyncScript:
        try:
            return self.__dict__["_scripts"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(name) from None

    async def run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        return await self._scripts[name](keys=keys, args=args, client=client)
