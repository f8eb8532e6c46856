"""Prometheus metrics; names are part of the public contract (README.md, "Metrics")."""

from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every metric alertrelay exports, on a registry of its own (no globals)."""

    def __init__(self, version: str = "", git_commit: str = "") -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # The standard process_* and python_* families every Prometheus
        # exporter (Alertmanager included) has: memory, CPU, open files, GC.
        # They read process-wide state, so the default instances are shared.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.webhooks = Counter(
            "alertrelay_webhooks_total",
            "Webhook requests by source and HTTP code",
            ["source", "code"],
            registry=r,
        )
        self.alerts_received = Counter(
            "alertrelay_alerts_received_total", "Alerts accepted, by status", ["status"], registry=r
        )
        self.deduplicated = Counter(
            "alertrelay_alerts_deduplicated_total",
            "Alerts that repeated the stored state and notified nobody",
            registry=r,
        )
        self.stale = Counter(
            "alertrelay_alerts_stale_total",
            "Alerts older than the stored state (late deliveries), ignored",
            registry=r,
        )
        self.clock_skew = Counter(
            "alertrelay_alerts_clock_skew_total",
            "Alerts whose startsAt or endsAt was further in the future than ingest.max_clock_skew",
            registry=r,
        )
        self.transitions = Counter(
            "alertrelay_alert_transitions_total", "Alert state transitions", ["to"], registry=r
        )
        self.quarantined = Counter(
            "alertrelay_alerts_quarantined_total",
            "Invalid alerts inside a valid webhook, kept for inspection",
            ["source"],
            registry=r,
        )
        self.fingerprint_mismatches = Counter(
            "alertrelay_fingerprint_mismatches_total",
            "Alerts whose sent fingerprint differs from the one computed from labels",
            ["source"],
            registry=r,
        )
        self.truncated = Counter(
            "alertrelay_truncated_alerts_total",
            "Alerts Alertmanager dropped from webhooks (max_alerts)",
            ["source"],
            registry=r,
        )
        self.flapping = Gauge("alertrelay_alerts_flapping", "Alerts currently flapping", registry=r)
        self.notifications = Counter(
            "alertrelay_notifications_total",
            "Delivery attempts by outcome",
            ["integration", "result"],
            registry=r,
        )
        self.messages_updated = Counter(
            "alertrelay_messages_updated_total",
            "Chat messages edited in place (update_message) instead of posting again",
            ["integration"],
            registry=r,
        )
        self.notification_duration = Histogram(
            "alertrelay_notification_duration_seconds",
            "Duration of one delivery attempt",
            ["integration"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "alertrelay_outbox_pending", "Notifications waiting to be delivered", registry=r
        )
        self.outbox_dead = Gauge(
            "alertrelay_outbox_dead", "Dead-lettered notifications", registry=r
        )
        self.webhook_duration = Histogram(
            "alertrelay_webhook_duration_seconds",
            "Webhook handling time, to the answer",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_batch = Histogram(
            "alertrelay_ingest_batch_webhooks",
            "Webhooks committed together in one transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.lease_lost = Counter(
            "alertrelay_lease_lost_total",
            "Delivery outcomes discarded because another worker re-claimed the row",
            registry=r,
        )
        self.auth_failures = Counter(
            "alertrelay_auth_failures_total",
            "Requests refused for missing or wrong credentials, by endpoint kind "
            "(webhook, admin, read)",
            ["endpoint"],
            registry=r,
        )
        self.config_reloads = Counter(
            "alertrelay_config_reloads_total", "Config reloads by result", ["result"], registry=r
        )
        self.pruned_rows = Counter(
            "alertrelay_pruned_rows_total",
            "Rows deleted because they were past their retention",
            ["table"],
            registry=r,
        )
        self.acks = Counter(
            "alertrelay_acks_total",
            "Acknowledgements, by how they came (api, cli, link, console)",
            ["via"],
            registry=r,
        )
        for via in ("api", "cli", "link", "console"):
            self.acks.labels(via=via)
        self.escalations = Counter(
            "alertrelay_escalations_total",
            "Escalation steps taken: an unacknowledged alert's next receiver was told",
            ["receiver"],
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "alertrelay_heartbeat_age_seconds",
            "Seconds since each heartbeat's last proof of life (since it is watched, if never)",
            ["name"],
            registry=r,
        )
        self.build_info = Gauge(
            "alertrelay_build_info", "Build information", ["version", "git_commit"], registry=r
        )
        self.build_info.labels(version=version, git_commit=git_commit).set(1)

        # Label children resolved once: .labels() takes a lock and builds a
        # key on every call, which shows on the per-webhook hot path.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def webhook_answered(self, source: str, code: int, seconds: float) -> None:
        self.child(self.webhooks, source, str(code)).inc()
        self.webhook_duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
