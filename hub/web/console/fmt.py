"""Small value helpers the pages share: ticket references, stored times, safe links."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from hub.runtime import Hub


def ref(fields: Mapping[str, str], tid: str) -> str:
    """What people call a ticket: its number, else its id."""
    return fields.get("number") or tid


def ticket_path(fields: Mapping[str, str], tid: str) -> str:
    return f"/console/tickets/{quote(ref(fields, tid))}"


def ms(value: str | None) -> float:
    """A stored epoch-milliseconds field as epoch seconds (0 when missing)."""
    try:
        return float(value or 0) / 1000
    except ValueError:
        return 0.0


def iso_s(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def safe_url(url: Any) -> str:
    """Links from providers only when they are plain web links (never ``javascript:``)."""
    u = str(url or "")
    return u if u.startswith(("https://", "http://")) else ""


async def numbers(hub: Hub, tids: Iterable[str]) -> dict[str, str]:
    """Ticket id -> number for several tickets at once (the id when it has none)."""
    wanted = sorted({t for t in tids if t})
    got = await asyncio.gather(*(hub.store.get_ticket_fields(t) for t in wanted))
    return {t: ref(f, t) for t, f in zip(wanted, got, strict=True)}


def form_text(form: Mapping[str, Any], name: str) -> str:
    """A posted field as text ('' when absent)."""
    return str(form.get(name, ""))
