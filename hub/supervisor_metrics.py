"""The supervisors' numbers as Prometheus gauges, set from one dashboard snapshot per scrape.

Label sets come and go (an alert clears, an agent signs off), so each gauge is cleared and
refilled from the snapshot: a scrape never shows an alert that is no longer firing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from prometheus_client import Gauge

from hub.alerts import ActiveAlert, SourceHealth
from hub.dashboard import Backlog, Snapshot
from hub.metrics import HubMetrics


def _set_backlog(gauges: dict[str, Gauge], scope: str, labels: tuple[str, ...], b: Backlog) -> None:
    values = {
        "waiting": b.waiting,
        "open": b.open,
        "oldest_waiting_seconds": b.oldest_waiting_s,
        "sla_at_risk": b.sla_at_risk,
        "sla_breached": b.sla_breached,
        "first_response_median_seconds": b.first_response_median_s,
    }
    for name, value in values.items():
        if value is not None:  # no answered ticket yet: no sample, rather than a false 0
            gauges[f"{scope}_{name}"].labels(*labels).set(value)


def export(
    m: HubMetrics, snap: Snapshot, alerts: Sequence[ActiveAlert], sources: Sequence[SourceHealth]
) -> None:
    for g in (*m.backlog.values(), m.inbound_rate, m.agents, m.agent_occupancy, m.alert_firing,
              m.source_up):  # fmt: skip
        g.clear()
    for u in snap.units:
        b = Backlog(
            u.waiting, u.open, u.oldest_waiting_s, u.sla_at_risk, u.sla_breached,
            u.first_response_median_s, u.first_responses,
        )  # fmt: skip
        _set_backlog(m.backlog, "unit", (u.unit,), b)
    for c in snap.channels:
        _set_backlog(m.backlog, "channel", (c.channel, c.account), c.backlog)
        m.inbound_rate.labels(c.channel, c.account).set(c.inbound_per_min)
    presence = Counter(a.presence for a in snap.agents)
    for state in ("online", "away", "offline"):
        m.agents.labels(state).set(presence.get(state, 0))
    m.agents_busy.set(sum(1 for a in snap.agents if a.presence == "online" and a.holding))
    for a in snap.agents:
        m.agent_occupancy.labels(a.name).set(round(a.occupancy, 3))
    for alert in alerts:
        m.alert_firing.labels(alert.rule, alert.subject, alert.severity).set(1)
    for s in sources:
        m.source_up.labels(s.name, s.kind).set(1 if s.healthy else 0)
