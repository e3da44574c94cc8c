"""Routing rules: which unit a new ticket belongs to, from its first message.

Rules are tried in configuration order; the first whose keywords appear (as whole words, any
case, accents ignored) in the text wins. Otherwise the account's default unit. Rules are
compiled once, so routing costs one regex search per rule per new message.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from hub.channelset import ChannelSet
from hub.model import Message
from hub.ports import Route
from hub.settings import RoutingRule


def fold(text: str) -> str:
    """Lower case without accents, so 'Pesangon' and 'pesangón' match alike."""
    if text.isascii():  # the common case: no accents to fold, and casefold() == lower()
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True, slots=True)
class _Compiled:
    pattern: re.Pattern[str] | None
    categories: frozenset[str]
    rule: RoutingRule


class Router:
    def __init__(
        self,
        rules: list[RoutingRule],
        channels: ChannelSet,
        call_units: dict[str, str] | None = None,
    ) -> None:
        self.channels = channels
        self.call_units = call_units or {}
        self._rules = [
            _Compiled(
                re.compile(
                    r"(?<!\w)(?:" + "|".join(re.escape(fold(k)) for k in r.keywords) + r")(?!\w)"
                )
                if r.keywords
                else None,
                frozenset(fold(c) for c in r.categories),
                r,
            )
            for r in rules
        ]

    def route(self, msg: Message) -> Route:
        if msg.kind == "call" and msg.meta.get("callback") == "1":
            # an abandoned call: a callback ticket in the call center's queue, ahead of chats
            unit = self.channels.units.get((msg.channel, msg.account)) or self.call_units.get(
                msg.account, "general"
            )
            return Route(unit, "panggilan balik", "high")
        return self._route_by_rules(msg)

    def _route_by_rules(self, msg: Message) -> Route:
        text = fold(msg.text)
        category = fold(msg.meta.get("category", ""))
        for c in self._rules:
            if c.rule.channels and msg.channel not in c.rule.channels:
                continue
            if (category and category in c.categories) or (c.pattern and c.pattern.search(text)):
                return Route(c.rule.unit, c.rule.category, c.rule.priority or "normal")
        default = self.channels.units.get((msg.channel, msg.account))
        if default is None and msg.channel == "call":
            default = self.call_units.get(msg.account)
        return Route(default or "general")
