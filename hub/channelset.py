"""The enabled channel accounts of this hub, looked up by (channel, account)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from channels.base import Channel
from hub.model import Template


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """An approved template an agent can pick outside the free-text window."""

    name: str
    provider_ref: str
    description: str
    language: str
    variables: tuple[str, ...] = ()


@dataclass
class ChannelSet:
    _by_key: dict[tuple[str, str], Channel] = field(default_factory=dict)
    templates: dict[tuple[str, str], dict[str, TemplateSpec]] = field(default_factory=dict)
    ack_language: dict[tuple[str, str], str] = field(default_factory=dict)
    units: dict[tuple[str, str], str] = field(default_factory=dict)
    # (channel, the provider's id of our number/account) → account name: Meta sends every
    # number's or profile's events of one app to one callback URL, so the payload, not the
    # URL, says which account a message is for.
    recipients: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(
        self,
        channel: Channel,
        templates: dict[str, TemplateSpec] | None = None,
        ack_language: str | None = None,
        unit: str = "general",
    ) -> None:
        key = (channel.name, channel.account)
        self._by_key[key] = channel
        self.templates[key] = templates or {}
        if ack_language:
            self.ack_language[key] = ack_language
        self.units[key] = unit
        for rid in getattr(channel, "recipient_ids", ()):
            self.recipients[(channel.name, rid)] = channel.account

    def account_for(self, channel: str, recipient_id: str) -> str | None:
        """The account that owns a provider-side recipient id (phone_number_id, IG id)."""
        return self.recipients.get((channel, recipient_id))

    def get(self, channel: str, account: str) -> Channel | None:
        return self._by_key.get((channel, account))

    def accounts(self, channel: str) -> list[str]:
        return sorted(a for c, a in self._by_key if c == channel)

    def names(self) -> set[str]:
        return {name for name, _ in self._by_key}

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._by_key.values())

    def template(self, channel: str, account: str, name: str, values: dict[str, str]) -> Template:
        spec = self.templates.get((channel, account), {}).get(name)
        if spec is None:
            raise KeyError(name)
        missing = [v for v in spec.variables if v not in values]
        if missing:
            raise ValueError(f"template {name} needs variables: {', '.join(missing)}")
        # Twilio numbers content variables "1", "2", ... in the order the template declares.
        numbered = {str(i + 1): values[v] for i, v in enumerate(spec.variables)}
        return Template(
            name=name, provider_ref=spec.provider_ref, variables=numbered, language=spec.language
        )

    async def aclose(self) -> None:
        for ch in self._by_key.values():
            with contextlib.suppress(Exception):
                await ch.aclose()
