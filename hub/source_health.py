"""Whether the sources the hub pulls from or sends to answer: IMAP mailboxes, the portal's
event list, the providers' send APIs. The ``source_unreachable`` alert rule reads it.

Whoever talks to a source reports what it saw, as it sees it; only changes reach Redis (the
store's compare-and-set keeps the moment health changed), and a process repeats a report it
already made at most every ``refresh_s``: a send loop does not add a Redis write per reply.
Reporting never raises: health is worth less than the message being delivered.

A provider's send API is down after ``PROVIDER_FAILURES`` failed sends in a row, not one: an
isolated 5xx among successes (a few percent is normal at Twilio or Meta) is retried and is not
an unreachable provider. Reported on every such failure, it made health flap down and up
(a Redis write and an info line each way, per failed send). The streak's first failure is when
it went down, so the alert's "unreachable for N min" still counts from there. A poll (IMAP, the
portal) is rarer and each failure counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from hub.alerts import SourceHealth
from hub.clock import Clock
from hub.ports import AlertStore

log = structlog.get_logger("hub.source_health")

IMAP, PORTAL, PROVIDER = "imap", "portal", "provider"
PROVIDER_FAILURES = 3  # failed sends in a row before a provider is down


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
        self._streak: dict[str, tuple[int, float]] = {}  # failures in a row, the first's time

    async def report(self, name: str, kind: str, healthy: bool, detail: str = "") -> None:
        now = self.clock.now()
        since = now
        if healthy:
            self._streak.pop(name, None)
        else:
            count, since = self._streak.get(name, (0, now))
            self._streak[name] = (count + 1, since)
            if count + 1 < (PROVIDER_FAILURES if kind == PROVIDER else 1):
                return
        seen = self._seen.get(name)
        if seen is not None and seen.healthy == healthy and now - seen.at < self.refresh_s:
            return
        self._seen[name] = _Seen(healthy, now)
        try:
            if await self.store.set_health(name, kind, healthy, since, detail[:300]):
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
