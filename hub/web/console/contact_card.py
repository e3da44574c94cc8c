"""The ticket page's contact card: the citizen, their identities and other tickets, the
contacts merged into them (each can be un-merged) and the merge audit trail."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hub.web.console.fmt import ref
from hub.web.console.view import View

MAX_OTHER_TICKETS = 12


def _idents(view: View, contact: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {"kind": str(i.get("kind", "")), "value": str(i.get("value", "")),
         "channels": ", ".join(view.label("channel", c) for c in i.get("channels", []))}
        for i in contact.get("identities", [])
    ]  # fmt: skip


async def _other_tickets(view: View, tid: str, contact: Mapping[str, Any]) -> list[dict[str, str]]:
    others = []
    for other in list(contact.get("tickets", []))[:MAX_OTHER_TICKETS]:
        if other == tid:
            continue
        f = await view.hub.store.get_ticket_fields(other)
        if f and view.me.can_see(f.get("unit", "")):
            st = f.get("status", "")
            others.append({"ref": ref(f, other), "status": st,
                           "status_label": view.label("status", st)})  # fmt: skip
    return others


class _Names:
    """Other contacts by what people recognise: a name, else a phone or address, else the id."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.seen: dict[str, str] = {}

    async def __call__(self, cid: str) -> str:
        if cid not in self.seen:
            c = await self.view.hub.store.get_contact(cid) or {}
            idents = [str(i.get("value", "")) for i in c.get("identities", [])]
            self.seen[cid] = str(c.get("name") or "") or (idents[0] if idents else cid)
        return self.seen[cid]


async def _audit(view: View, contact: Mapping[str, Any], names: _Names) -> list[dict[str, str]]:
    """Merges and un-merges, newest first, in the page's time zone (WIB)."""
    now = time.time()
    out = []
    for a in reversed(contact.get("audit", [])):
        kind = str(a.get("type", ""))
        other = str(a.get("other") or a.get("into") or "")
        at = float(a.get("at") or 0) / 1000
        out.append(
            {
                "kind": kind,
                "label": view.t(f"audit.{kind}", actor=await view.display(str(a.get("actor", ""))),
                                other=await names(other)),
                "idents": ", ".join(str(i).partition(":")[2] for i in a.get("identities", [])),
                "when": view.t.when(at, now),
                "when_full": view.t.when_full(at),
            }
        )  # fmt: skip
    return out


async def contact_card(view: View, tid: str, cid: str) -> dict[str, Any]:
    contact = await view.hub.store.get_contact(cid) or {}
    name = str(contact.get("name", ""))
    names = _Names(view)
    merged = [
        {"id": other, "name": await names(other)} for other in contact.get("merged_contacts", [])
    ]
    return {
        "id": cid,
        "name": name or view.t("ticket.no_name"),
        "named": bool(name),
        "identities": _idents(view, contact),
        "others": await _other_tickets(view, tid, contact),
        "merged": merged,
        "audit": await _audit(view, contact, names),
    }
