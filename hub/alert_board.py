"""What the alert engine remembers between evaluations, shared by every process.

The observer (one per deployment, under a lease) evaluates the rules and saves the state
with the notifications it still owes; web processes read the same document to show the
firing alerts. Notifications sit in the document until Telegram took them, so a crash or a
Telegram outage delays an announcement instead of losing it, and each transition is
announced once per successful delivery (never re-evaluated into a second alert).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import structlog

from hub.alerts import ActiveAlert, AlertEngine, AlertState, AlertTransition
from hub.ports import AlertStore

log = structlog.get_logger("hub.alert_board")

OUTBOX_MAX_AGE_S = 3600.0  # an announcement older than this is news no more: dropped


@dataclass(slots=True)
class BoardState:
    alerts: dict[str, AlertState] = field(default_factory=dict)
    outbox: list[AlertTransition] = field(default_factory=list)  # not yet announced

    def to_doc(self) -> dict[str, Any]:
        return {
            "alerts": {k: st.to_dict() for k, st in sorted(self.alerts.items())},
            "outbox": [dataclasses.asdict(t) for t in self.outbox],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BoardState:
        """A damaged entry is dropped (and logged), never a reason to stop alerting."""
        out = cls()
        alerts = doc.get("alerts")
        for key, raw in (alerts if isinstance(alerts, dict) else {}).items():
            try:
                out.alerts[str(key)] = AlertState.from_dict(raw)
            except (ValueError, TypeError, AttributeError):
                log.warning("alerts.state_entry_dropped", key=str(key)[:100])
        outbox = doc.get("outbox")
        for raw in outbox if isinstance(outbox, list) else []:
            try:
                out.outbox.append(AlertTransition(**raw))
            except TypeError:
                log.warning("alerts.outbox_entry_dropped")
        return out


class AlertBoard:
    def __init__(self, engine: AlertEngine, store: AlertStore) -> None:
        self.engine = engine
        self.store = store

    async def load(self) -> BoardState:
        return BoardState.from_doc(await self.store.load())

    async def save(self, state: BoardState) -> None:
        await self.store.save(state.to_doc())

    async def active(self) -> list[ActiveAlert]:
        """Firing alerts, most severe first, then oldest first."""
        return self.engine.active_alerts((await self.load()).alerts)
