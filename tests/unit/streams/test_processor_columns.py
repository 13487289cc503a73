"""Envelopes are fed to detectors as columns (``update_many``): the same states and alerts as
value by value, for every prediction-side and outcome-side signal, drifts and checks included."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest

from streams.config import parse_config
from streams.processor import PartitionState, Processor, SourceRecord

T0 = 1_700_000_000_000
CONFIG = parse_config(
    {
        "detection": {
            "cooldown_events": 30,
            "prediction_drift": {"warmup": 60},
            "data_drift": {
                "warmup": 60,
                "psi": {"reference_size": 80, "window": 40},
            },
            "data_quality": {"window": 100, "min_samples": 50},
            "latency": {
                "threshold_ms": 40.0,
                "min_samples": 30,
                "page_hinkley": {"warmup": 60},
            },
            "performance": {
                "window": 100,
                "min_samples": 50,
                "min_accuracy": 0.8,
                "baseline": {"size": 300},
                "expected_accuracy": {"min_accuracy": 0.75, "min_samples": 50},
            },
        }
    }
)


def _predictions(seed: int, n: int, clean: bool = False) -> list[dict[str, Any]]:
    """One model whose score, features and latency all shift, with missing and odd values
    unless ``clean`` (then every event has the same features, each of its kind)."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        phase = (i // 400) % 3  # three regimes, so detectors fire, are renewed and fire again
        score = float(np.clip(rng.beta(2, 5) + 0.3 * phase, 0.0, 1.0))
        features: dict[str, Any] = {
            "x": float(rng.normal(1.5 * phase, 1.0)),
            "y": float(rng.normal(0.0, 1.0 + phase)),
            "plan": str(rng.choice(["a", "b", "c"] if phase < 2 else ["c", "d"])),
        }
        odd = rng.random(3)
        if not clean and odd[0] < 0.05 * phase:
            features["x"] = None  # missing values, more of them later
        if not clean and odd[1] < 0.02:
            features["y"] = "oops"  # a type change
        if not clean and odd[2] < 0.1:
            features["late"] = int(rng.integers(0, 5))  # a feature that only sometimes shows
        event: dict[str, Any] = {
            "model_id": "m",
            "prediction_id": f"p{i}",
            "prediction": int(score > 0.5),
            "score": score,
            "features": features,
            "timestamp": T0 + i,
        }
        if rng.random() < 0.9:
            event["latency_ms"] = float(rng.lognormal(2.5 + 0.5 * phase, 0.2))
        out.append(event)
    return out


def _records(events: list[dict[str, Any]], size: int) -> list[SourceRecord]:
    """Predictions in envelopes of ``size``, each followed by its labels: 90 % agree, 60 % in
    the third regime (so accuracy falls and recovers)."""
    rng = np.random.default_rng(1)
    out: list[SourceRecord] = []
    offsets = {"predictions": 0, "labels": 0}

    def agree(i: int) -> float:
        return 0.6 if (i // 400) % 3 == 2 else 0.9

    def add(topic: str, value: list[dict[str, Any]]) -> None:
        out.append(SourceRecord(topic, 0, offsets[topic], b"m", orjson.dumps(value), T0))
        offsets[topic] += 1

    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        add("predictions", chunk)
        labels = [
            {
                "model_id": "m",
                "prediction_id": e["prediction_id"],
                "label": e["prediction"] if rng.random() < agree(i) else 1 - e["prediction"],
                "timestamp": e["timestamp"] + 1,
            }
            for i, e in enumerate(chunk, start)
        ]
        add("labels", labels)
    return out


def _run(
    processor: Processor, records: list[SourceRecord]
) -> tuple[PartitionState, list[Any], Counter[str]]:
    part = processor.new_partition(0)
    alerts: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for start in range(0, len(records), 7):
        result = processor.apply(part, records[start : start + 7])
        alerts += [a.to_dict(0) for a in result.alerts]
        counts += result.counts
        for model in part.models.values():
            # encode() re-encodes only the sides touched since the last one: the same bytes
            fresh = dataclasses.replace(model, encoded={}, stale={"predictions", "outcomes"})
            assert model.encode() == fresh.encode()
    result = processor.apply(part, [], predictions_caught_up=True, labels_caught_up=True)
    alerts += [a.to_dict(0) for a in result.alerts]
    counts += result.counts
    return part, sorted(alerts, key=lambda a: a["alert_id"]), counts


@pytest.mark.parametrize(
    ("size", "bulk_min_values", "clean"),
    [
        (100, 64, False),
        (37, 1, False),
        (250, 64, False),
        (100, 1, False),
        (100, 64, True),
        (37, 1, True),
        (24, 16, True),
    ],
)
def test_columns_match_value_by_value(
    size: int, bulk_min_values: int, clean: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _records(_predictions(seed=size, n=2400, clean=clean), size)
    by_feature = 0
    feature_columns = Processor._feature_columns

    def counted(self: Processor, *args: Any) -> None:
        nonlocal by_feature
        by_feature += 1
        feature_columns(self, *args)

    monkeypatch.setattr(Processor, "_feature_columns", counted)
    bulk = Processor(CONFIG, bulk_min_values=bulk_min_values, numpy_min_values=bulk_min_values)
    bulk_part, bulk_alerts, bulk_counts = _run(bulk, records)
    # clean runs go feature by feature once the features and categories are known
    assert (by_feature > len(records) // 4) == clean
    by_feature = 0
    one = Processor(CONFIG, bulk_min_values=10**9, numpy_min_values=10**9)
    one_part, one_alerts, one_counts = _run(one, records)
    assert by_feature == 0

    assert bulk_alerts == one_alerts
    assert bulk_counts == one_counts
    for model in (bulk_part.models["m"], one_part.models["m"]):
        # alerts of a run come grouped by signal: the same keys, set in another order
        model.last_alert = dict(sorted(model.last_alert.items()))
        model.levels = dict(sorted(model.levels.items()))
    assert bulk_part.models["m"].encode() == one_part.models["m"].encode()
    # the run exercises what it claims to: every kind of alert fired, and levels re-armed
    fired = {(a["signal"], a["detector"]) for a in bulk_alerts}
    for expected in [
        ("score", "page_hinkley"),
        ("feature:x", "page_hinkley"),
        ("feature:x", "psi"),
        ("feature:plan", "psi"),
        ("latency_ms", "page_hinkley"),
        ("latency_ms", "threshold"),
        ("expected_accuracy", "threshold"),
        ("unseen_category_rate", "threshold") if clean else ("missing_rate", "threshold"),
        ("error_rate", "adwin"),
        ("accuracy", "threshold"),
        ("accuracy", "baseline"),
    ]:
        assert expected in fired, (expected, sorted(fired))


def _single_records(records: list[SourceRecord]) -> list[SourceRecord]:
    """The same events, one per record (as any Kafka client would send them), in order."""
    out: list[SourceRecord] = []
    offsets = {"predictions": 0, "labels": 0}
    for rec in records:
        assert rec.value is not None
        for event in orjson.loads(rec.value):
            value = orjson.dumps(event)
            out.append(SourceRecord(rec.topic, 0, offsets[rec.topic], b"m", value, T0))
            offsets[rec.topic] += 1
    return out


@pytest.mark.parametrize("clean", [False, True])
def test_envelopes_and_single_records_raise_the_same_alerts(clean: bool) -> None:
    """Alerts point at the same events with the same evidence whichever way events come;
    only their ids differ, as those hash the source position."""
    records = _records(_predictions(seed=5, n=2400, clean=clean), 100)
    env_part, env_alerts, _ = _run(Processor(CONFIG), records)
    one_part, one_alerts, _ = _run(Processor(CONFIG), _single_records(records))

    def content(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [{k: v for k, v in a.items() if k != "alert_id"} for a in alerts]
        return sorted(kept, key=lambda a: (a["prediction_id"], a["signal"], a["detector"]))

    assert len(env_alerts) > 20
    assert content(env_alerts) == content(one_alerts)
    for model in (env_part.models["m"], one_part.models["m"]):
        model.last_alert = dict(sorted(model.last_alert.items()))
        model.levels = dict(sorted(model.levels.items()))
    assert env_part.models["m"].encode() == one_part.models["m"].encode()
