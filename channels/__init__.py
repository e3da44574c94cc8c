"""Channel adapters: verify and translate provider traffic to and from the hub's model.

Channels translate; they never touch tickets or Redis. The registry maps a channel's name to
``"module:Class"`` and imports it on first use, so a hub that does not enable a channel never
imports its SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

from channels.base import Channel

REGISTRY: dict[str, str] = {
    "whatsapp:twilio": "channels.whatsapp_twilio:TwilioWhatsApp",
    "whatsapp:cloud": "channels.whatsapp_cloud:CloudWhatsApp",
    "instagram:meta": "channels.instagram:InstagramChannel",
    "email:smtp": "channels.email.channel:EmailChannel",
    "portal:bantuan": "channels.portal.channel:PortalChannel",
    "telegram:bot": "channels.telegram:TelegramChannel",
    "call:dialer": "channels.calls.callbacks:CallCenterChannel",
}


def load_channel_class(key: str) -> type[Channel]:
    """Resolve ``"<channel>:<provider>"`` to its class, with a did-you-mean on typos."""
    try:
        target = REGISTRY[key]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(key, REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"no channel {key!r}{hint}") from None
    module_name, _, attr = target.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), attr)
    return cls  # type: ignore[no-any-return]
