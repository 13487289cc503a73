"""Per-model health snapshots, the series built from them and the status feed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from streams.config import parse_config
from streams.model_health import ModelHealth, model_health
from streams.model_metrics import ModelMetricsCollector, select_models
from streams.status_feed import StatusFeed
from tests.unit.streams.test_processor import CONFIG, records, run


def _models() -> list[ModelHealth]:
    part, _ = run([records()])
    return [model_health(m, CONFIG.detection_for(mid)) for mid, m in sorted(part.models.items())]


def test_drifted_models_report_their_signals_and_levels() -> None:
    healths = _models()
    assert healths, "the drifting pipeline produced no models"
    for h in healths:
        assert h.counters["predictions"] > 0
        assert h.health == max(h.signals.values(), default=0)
    # every model drifts after CHANGE; those whose alert is still paged or inside its cooldown
    # at the end show it
    assert any(h.health > 0 and h.signals for h in healths), healths
    classifier = next(h for h in healths if h.task == "classification")
    assert classifier.metric == "accuracy" and classifier.metric_value is not None
    assert classifier.metric_threshold == CONFIG.detection.performance.min_accuracy
    assert classifier.join_rate is not None and 0 < classifier.join_rate <= 1


def test_one_shot_detector_counts_as_warning_only_inside_its_cooldown() -> None:
    part, _ = run([records()])
    model = next(iter(part.models.values()))
    settings = parse_config({"detection": {"cooldown_events": 1}}).detection
    key = "feature:x|page_hinkley"
    model.levels.clear()
    model.last_alert = {key: model.counters["predictions"] - 5}
    assert model_health(model, settings).signals == {}
    model.last_alert = {key: model.counters["predictions"]}
    assert model_health(model, settings).signals == {("feature:x", "page_hinkley"): 1}


def _health(model_id: str, health: int, predictions: int) -> ModelHealth:
    counters = {"predictions": predictions, "labels": 0, "joined": 0}
    return ModelHealth(model_id, "classification", health, counters)


def test_cap_keeps_the_worst_then_the_busiest_and_counts_the_rest() -> None:
    models = [_health("a", 0, 10), _health("b", 2, 1), _health("c", 0, 99), _health("d", 1, 5)]
    shown, dropped = select_models(models, 2)
    assert [m.model_id for m in shown] == ["b", "d"]
    assert dropped == 2
    everything, none_dropped = select_models(models, 10)
    assert [m.model_id for m in everything] == ["b", "d", "c", "a"] and none_dropped == 0


def test_collector_exports_capped_series_and_lag() -> None:
    healths = _models()
    registry = CollectorRegistry()
    collector = ModelMetricsCollector(lambda: healths, lambda: [("predictions", 3, 42)], 1)
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'driftline_partition_lag_records{partition="3",topic="predictions"} 42.0' in text
    assert f"driftline_models_tracked {float(len(healths))}" in text
    exported = {line.split('model="')[1].split('"')[0] for line in text.splitlines()
                if line.startswith("driftline_model_health{")}  # fmt: skip
    assert len(exported) == 1
    assert f"driftline_model_series_capped {float(len(healths) - 1)}" in text
    generate_latest(registry)  # every scrape adds to the counter of dropped snapshots,
    # get_sample_value's own collect included
    assert registry.get_sample_value("driftline_model_series_dropped_total") == 3 * (
        len(healths) - 1
    )


def test_status_feed_samples_history_and_keeps_latest_alerts() -> None:
    part, alerts = run([records()])
    feed = StatusFeed(sample_every_ms=1000, history_points=3, recent_alerts=2)
    models = list(part.models.values())
    for t in (0, 500, 1000, 2000, 3000):
        feed.record(models, [], t)
    feed.record([], alerts, 4000)
    with_perf = [m for m in models if m.performance is not None]
    assert with_perf
    history = feed.history[with_perf[0].model_id]
    assert [t for t, _ in history] == [1000, 2000, 3000]  # 500 was too soon; capped at 3 points
    healths = [model_health(m, CONFIG.detection_for(m.model_id)) for m in models]
    doc = feed.snapshot("w1", healths, 5000)
    assert len(doc["alerts"]) == min(2, len(alerts))
    if len(alerts) >= 2:
        assert doc["alerts"][0]["alert_id"] == alerts[-1].alert_id  # newest first
    levels = [{"ok": 0, "warning": 1, "critical": 2}[m["health"]] for m in doc["models"]]
    assert levels == sorted(levels, reverse=True)
    feed.forget(set())
    assert feed.history == {}
