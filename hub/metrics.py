"""Prometheus metrics: one registry per hub instance (tests build several in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BACKLOG_GAUGES = {
    "waiting": "Tickets waiting in the queue",
    "open": "Open tickets (waiting or held)",
    "oldest_waiting_seconds": "Age of the oldest waiting ticket",
    "sla_at_risk": "Open tickets with an SLA timer at risk",
    "sla_breached": "Open tickets with an SLA timer past due",
    "first_response_median_seconds": "Median first-response time, tickets opened in 24 h",
}


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.inbound = Counter(
            "hub_inbound_messages_total",
            "Messages accepted onto the inbound stream",
            ["channel", "account"],
            registry=r,
        )
        self.webhook_rejected = Counter(
            "hub_webhook_rejected_total",
            "Webhook calls refused, by reason",
            ["channel", "reason"],
            registry=r,
        )
        self.dispatched = Counter(
            "hub_dispatched_messages_total",
            "Inbound messages applied to tickets, by outcome",
            ["outcome"],
            registry=r,
        )
        self.tickets_opened = Counter(
            "hub_tickets_opened_total", "Tickets created", ["channel"], registry=r
        )
        self.sends = Counter(
            "hub_sends_total", "Send attempts by result", ["channel", "result"], registry=r
        )
        self.status_updates = Counter(
            "hub_status_updates_total",
            "Provider delivery reports, applied or ignored",
            ["channel", "result"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "hub_dead_lettered_total",
            "Entries moved to a dead-letter stream",
            ["stream"],
            registry=r,
        )
        self.dispatch_seconds = Histogram(
            "hub_dispatch_batch_seconds",
            "Time to apply one dispatcher batch",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.intake_unreachable = Counter(
            "hub_intake_unreachable_total",
            "Times a pulled source (a mailbox) could not be reached",
            ["poller"],
            registry=r,
        )
        self.smtp_rate_limited = Counter(
            "hub_smtp_rate_limited_total",
            "MAIL FROM deferred with 451 4.7.1 at the SMTP intake, by the quota it was over",
            ["by"],
            registry=r,
        )
        self.archived = Counter(
            "hub_archived_tickets_total",
            "Closed tickets moved from Redis to the archive files (archived), or left in Redis "
            "because they changed while being archived (conflict)",
            ["result"],
            registry=r,
        )
        # Gauges below are read from Redis when /metrics is scraped.
        self.stream_length = Gauge(
            "hub_stream_length", "Entries in a stream", ["stream"], registry=r
        )
        self.stream_lag = Gauge(
            "hub_stream_lag", "Entries not yet delivered to the group", ["stream"], registry=r
        )
        self.stream_pending = Gauge(
            "hub_stream_pending", "Entries delivered and not yet acked", ["stream"], registry=r
        )
        self.dead_letters = Gauge(
            "hub_dead_letters", "Entries waiting in a dead-letter stream", ["stream"], registry=r
        )
        # The supervisors' dashboard, same numbers (hub/dashboard.py), per unit and channel.
        self.backlog: dict[str, Gauge] = {}
        for scope, labels in (("unit", ["unit"]), ("channel", ["channel", "account"])):
            for name, text in BACKLOG_GAUGES.items():
                self.backlog[f"{scope}_{name}"] = Gauge(
                    f"hub_{scope}_{name}", f"{text}, per {scope}", labels, registry=r
                )
        self.inbound_rate = Gauge(
            "hub_channel_inbound_per_minute",
            "Inbound messages per minute over the last 15 minutes",
            ["channel", "account"],
            registry=r,
        )
        self.agents = Gauge("hub_agents", "Agents by presence", ["presence"], registry=r)
        self.agents_busy = Gauge(
            "hub_agents_busy", "Agents online and holding at least one ticket", registry=r
        )
        self.agent_occupancy = Gauge(
            "hub_agent_occupancy", "Load over capacity (0-1)", ["agent"], registry=r
        )
        self.alert_firing = Gauge(
            "hub_alert_firing", "1 per firing alert", ["rule", "subject", "severity"], registry=r
        )
        self.source_up = Gauge(
            "hub_source_up", "1 when the source answers, 0 when not", ["source", "kind"],
            registry=r,
        )  # fmt: skip
