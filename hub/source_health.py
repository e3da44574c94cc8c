"""Whether the sources the hub pulls from or sends to answer: IMAP mailboxes, the portal's
event list, the providers' send APIs. The ``source_unreachable`` alert rule reads it.

Whoever talks to a source reports what it saw, as it sees it; only changes reach Redis (the
store's compare-and-set keeps the moment health changed), and a process repeats a report it
already made at most every ``refresh_s``: a send loop does not add a Redis write per reply.
Reporting never raises: health is worth less than the message being delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from hub.alerts import SourceHealth
from hub.clock import Clock
from hub.ports import AlertStore

log = structlog.get_logger("hub.source_health")

IMAP, PORTAL, PROVIDER = "imap", "portal", "provider"


@dataclass(frozen=True, slots=True)
class _Seen:
    healthy: bool
    at: float


class HealthReporter:
    def __init__(self, store: AlertStore, clock: Clock, refresh_s: float = 30.0) -> None:
        self.store = store
        self.clock = clock
        self.refresh_s = refresh_s
        self._seen: dict[str, _Seen] = {}

    async def report(self, name: str, kind: str, healthy: bool, detail: str = "") -> None:
        now = self.clock.now()
        seen = self._seen.get(name)
        if seen is not None and seen.healthy == healthy and now - seen.at < self.refresh_s:
            return
        self._seen[name] = _Seen(healthy, now)
        try:
            if await self.store.set_health(name, kind, healthy, now, detail[:300]):
                event = "source.healthy" if healthy else "source.unreachable"
                log.info(event, source=name, kind=kind, detail=detail[:300])
        except Exception as exc:  # Redis down: the next report tries again
            self._seen.pop(name, None)
            log.warning("source.health_not_saved", source=name, error=type(exc).__name__)

    async def all(self) -> list[SourceHealth]:
        out = []
        for name, r in sorted((await self.store.health()).items()):
            try:
                out.append(
                    SourceHealth(
                        name=name,
                        kind=str(r.get("kind", "")),
                        healthy=bool(r.get("healthy", True)),
                        since=float(r.get("since", 0.0)),
                        detail=str(r.get("detail", "")),
                    )
                )
            except (TypeError, ValueError):
                log.warning("source.health_unreadable", source=name[:100])
        return out
