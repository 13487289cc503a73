"""Prometheus metrics of one worker, exposed at ``/metrics`` on the faust web server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from streams.deadletter import REASON_CATEGORIES
from streams.processor import BatchResult


class WorkerMetrics:
    """The worker's metric families, in a registry of their own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "driftline_records_consumed", "Records applied, per input topic", ["topic"], registry=r
        )
        self.events = Counter(
            "driftline_events", "Events applied, per input topic", ["topic"], registry=r
        )
        self.skipped = Counter(
            "driftline_records_skipped",
            "Records at or below the checkpointed offset (replayed)",
            registry=r,
        )
        self.records_not_owned = Counter(
            "driftline_records_not_owned",
            "Records of partitions this worker no longer owns",
            registry=r,
        )
        self.dead_letters = Counter(
            "driftline_dead_letters",
            "Records sent to the dead-letter topic, by the category of their first reason",
            ["reason"],
            registry=r,
        )
        for reason in REASON_CATEGORIES:  # every series exists from the start, at 0
            self.dead_letters.labels(reason=reason)
        self.alerts = Counter(
            "driftline_alerts", "Alerts emitted", ["type", "severity"], registry=r
        )
        self.requests = Counter(
            "driftline_requests",
            "Retrain and review requests produced (kind: retrain, review)",
            ["kind"],
            registry=r,
        )
        self.partitions = Gauge("driftline_partitions_assigned", "Partitions owned", registry=r)
        self.checkpoint_seconds = Histogram(
            "driftline_checkpoint_duration_seconds", "Redis checkpoint latency", registry=r
        )
        self.checkpoint_failures = Counter(
            "driftline_checkpoint_failures", "Failed checkpoint attempts", ["reason"], registry=r
        )

    def observe_batch(self, partition: int, result: BatchResult) -> None:
        """Count one applied batch."""
        for key, n in result.counts.items():
            if key.startswith("records:"):
                self.records.labels(topic=key.split(":", 1)[1]).inc(n)
            elif key.startswith("events:"):
                self.events.labels(topic=key.split(":", 1)[1]).inc(n)
            elif key.startswith("dead_letter:"):
                self.dead_letters.labels(reason=key.split(":", 1)[1]).inc(n)
        self.skipped.inc(result.counts.get("skipped", 0))
        for alert in result.alerts:
            self.alerts.labels(type=alert.type, severity=alert.severity).inc()
        if result.retrain_requests:
            self.requests.labels(kind="retrain").inc(len(result.retrain_requests))
        if result.review_requests:
            self.requests.labels(kind="review").inc(len(result.review_requests))

    def exposition(self) -> tuple[bytes, str]:
        """Text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
