"""Per-model Prometheus series, built at scrape time from the worker's in-memory model state.

Nothing is counted per event: each scrape takes a :class:`~streams.model_health.ModelHealth`
snapshot of every model this worker owns. At most ``max_models`` models get series (worst health
first, then the busiest), so cardinality stays bounded however many models there are; the models
left out are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.model_health import ModelHealth

# A source of (partition, lag per input topic) and of model snapshots
LagSource = Callable[[], Iterable[tuple[str, int, int]]]
HealthSource = Callable[[], list[ModelHealth]]


def select_models(models: list[ModelHealth], cap: int) -> tuple[list[ModelHealth], int]:
    """The ``cap`` models to export (worst health, then most predictions, then id) and how many
    were left out."""
    ranked = sorted(models, key=lambda m: (-m.health, -m.counters["predictions"], m.model_id))
    return ranked[:cap], max(0, len(ranked) - cap)


class ModelMetricsCollector(Collector):
    """Collects per-model gauges and counters and per-partition lag on every scrape."""

    def __init__(self, health: HealthSource, lag: LagSource, max_models: int) -> None:
        self._health = health
        self._lag = lag
        self.max_models = max_models
        self._dropped_total = 0

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the registry must not call :meth:`collect` at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per figure; see docs/operations.md for the list."""
        lag = GaugeMetricFamily(
            "driftline_partition_lag_records",
            "Records in an input partition not yet applied (high watermark - next offset)",
            labels=["topic", "partition"],
        )
        for topic, partition, behind in self._lag():
            lag.add_metric([topic, str(partition)], behind)
        yield lag

        models = self._health()
        shown, dropped = select_models(models, self.max_models)
        self._dropped_total += dropped
        yield _gauge("driftline_models_tracked", "Models in the partitions this worker owns",
                     len(models))  # fmt: skip
        yield _gauge(
            "driftline_model_series_capped",
            "Models left out of the per-model series at the last scrape (metrics.max_models)",
            dropped,
        )
        capped = CounterMetricFamily(
            "driftline_model_series_dropped",
            "Model snapshots left out of per-model series by metrics.max_models, over all scrapes",
        )
        capped.add_metric([], self._dropped_total)
        yield capped
        yield from _model_families(shown)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _model_families(models: list[ModelHealth]) -> Iterator[Metric]:
    m = ["model"]
    health = GaugeMetricFamily(
        "driftline_model_health", "0 ok, 1 warning, 2 critical (worst signal)", labels=m
    )
    events = CounterMetricFamily(
        "driftline_model_events", "Events per model by kind", labels=[*m, "kind"]
    )
    metric = GaugeMetricFamily(
        "driftline_model_windowed_metric",
        "Windowed accuracy (classification) or MAE (regression) over the performance window",
        labels=[*m, "metric"],
    )
    threshold = GaugeMetricFamily(
        "driftline_model_metric_threshold",
        "Alert threshold of the windowed metric (performance.min_accuracy or max_mae)",
        labels=[*m, "metric"],
    )
    expected = GaugeMetricFamily(
        "driftline_model_expected_accuracy", "Label-free accuracy estimate from scores", labels=m
    )
    error_rate = GaugeMetricFamily(
        "driftline_model_error_rate", "ADWIN's estimate of the current error rate", labels=m
    )
    join_rate = GaugeMetricFamily(
        "driftline_model_label_join_rate", "Share of predictions joined with a label", labels=m
    )
    drift = GaugeMetricFamily(
        "driftline_model_drift_state",
        "Level per signal and detector: 0 ok, 1 warning, 2 critical",
        labels=[*m, "signal", "detector"],
    )
    psi = GaugeMetricFamily(
        "driftline_model_feature_psi",
        "PSI of a feature's recent window against its reference",
        labels=[*m, "feature"],
    )
    latency = GaugeMetricFamily(
        "driftline_model_latency_ms", "Recent prediction latency quantiles", labels=[*m, "quantile"]
    )
    for h in models:
        mid = [h.model_id]
        health.add_metric(mid, h.health)
        for kind in ("predictions", "labels", "joined", "expired_predictions", "expired_labels"):
            events.add_metric([*mid, kind], h.counters.get(kind, 0))
        if h.metric is not None:
            if h.metric_value is not None:
                metric.add_metric([*mid, h.metric], h.metric_value)
            if h.metric_threshold is not None:
                threshold.add_metric([*mid, h.metric], h.metric_threshold)
        if h.expected_accuracy is not None:
            expected.add_metric(mid, h.expected_accuracy)
        if h.error_rate is not None:
            error_rate.add_metric(mid, h.error_rate)
        if h.join_rate is not None:
            join_rate.add_metric(mid, h.join_rate)
        for (signal, detector), level in sorted(h.signals.items()):
            drift.add_metric([*mid, signal, detector], level)
        for feature, value in sorted(h.psi.items()):
            psi.add_metric([*mid, feature], value)
        for q, value in h.latency_ms.items():
            latency.add_metric([*mid, "0." + q[1:]], value)
    yield from (health, events, metric, threshold, expected, error_rate, join_rate, drift, psi,
                latency)  # fmt: skip
