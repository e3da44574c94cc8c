"""Prometheus metrics: one registry per hub instance (tests build several in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
