"""Retrain and review requests end to end: real broker, real Redis, real worker processes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from streams.embedded import EmbeddedStack
from tests.integration.pipeline import (
    FAST_DETECTION,
    Pipeline,
    all_processed,
    prediction_events,
    write_config,
)

T0 = 1_700_000_000_000
STEP_MS = 10
N, CHANGE = 3000, 1500
REVIEW = {
    "enabled": True,
    "threshold": 0.5,
    "margin": 0.05,
    "max_per_window": 4,
    "window_ms": 5_000,
}
RETRAIN = {"enabled": True, "cooldown_ms": 86_400_000}


def requests_config(tmp_path: Path, prefix: str) -> Path:
    """The test's config with both features on and prefixed request topics."""
    path = write_config(
        tmp_path,
        prefix,
        detection={**FAST_DETECTION, "retrain_requests": RETRAIN, "review_requests": REVIEW},
    )
    data = yaml.safe_load(path.read_text())
    data["kafka"]["topics"].update(
        retrain_requests=f"{prefix}-retrain-requests", review_requests=f"{prefix}-review-requests"
    )
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def pipeline(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> Iterator[Pipeline]:
    with closing(Pipeline(stack, requests_config(tmp_path, prefix), tmp_path)) as p:
        p.create_topics()  # inputs and alert topics only: the worker creates the request topics
        yield p


def classifier(
    model_id: str, accuracy: list[float], seed: int, first: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predictions (beta-distributed scores) and their labels, right with the given rates."""
    rng = np.random.default_rng(seed)
    n = len(accuracy)
    scores = rng.beta(2, 5, n)
    values = [
        {"prediction": int(s > 0.5), "score": float(s), "model_version": "v2"} for s in scores
    ]
    preds = prediction_events(model_id, values, T0, STEP_MS)[first:]
    right = rng.random(n) < np.asarray(accuracy)
    labels = [
        {
            "model_id": model_id,
            "prediction_id": e["prediction_id"],
            "label": e["prediction"] if ok else 1 - e["prediction"],
            "timestamp": e["timestamp"] + 50,
        }
        for e, ok in zip(preds, right[first:], strict=True)
    ]
    return preds, labels


def expected_reviews(preds: list[dict[str, Any]]) -> list[str]:
    """Prediction ids the review rule picks: the first candidates of every window, in order."""
    taken: Counter[tuple[str, int]] = Counter()
    out = []
    low, high = REVIEW["threshold"] - REVIEW["margin"], REVIEW["threshold"] + REVIEW["margin"]
    for e in preds:
        window = (e["model_id"], e["timestamp"] // REVIEW["window_ms"])
        if low <= e["score"] <= high and taken[window] < REVIEW["max_per_window"]:
            taken[window] += 1
            out.append(e["prediction_id"])
    return out


def index_of(prediction_id: str) -> int:
    return int(prediction_id.rsplit("-", 1)[1])


def retrain_triggers(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts that request retraining: concept drift, critical performance."""
    return [
        a
        for a in alerts
        if a["type"] == "concept_drift"
        or (a["type"] == "performance" and a["severity"] == "critical")
    ]


def test_concept_drift_yields_one_retrain_request_and_a_sample_goes_to_review(
    pipeline: Pipeline,
) -> None:
    drift_preds, drift_labels = classifier("concept", [0.95] * CHANGE + [0.55] * (N - CHANGE), 1)
    steady_preds, steady_labels = classifier("steady", [0.95] * N, 2)
    pipeline.start_worker()
    pipeline.send(pipeline.topics.predictions, drift_preds + steady_preds)
    pipeline.send(pipeline.topics.labels, drift_labels + steady_labels)
    pipeline.wait_until(all_processed({"concept": (N, N), "steady": (N, N)}), what="all events")

    alerts = pipeline.alerts(min_count=2)
    topics = pipeline.config.kafka.topics
    [retrain] = pipeline.read_topic(topics.retrain_requests, min_count=1)
    triggers = retrain_triggers(alerts)
    assert {a["model_id"] for a in triggers} == {"concept"}
    assert retrain["v"] == 1 and retrain["type"] == "retrain"
    assert retrain["model_id"] == "concept" and retrain["model_version"] == "v2"
    assert "concept_drift" in retrain["reasons"]
    first = min(triggers, key=lambda a: (a["observed_at"], index_of(a["prediction_id"])))
    assert retrain["alert_ids"][0] == first["alert_id"]
    assert retrain["alerts"][0]["stats"] == first["stats"]
    assert index_of(retrain["alerts"][0]["prediction_id"]) >= CHANGE
    assert retrain["counters"]["retrain_requests"] == 1
    assert retrain["window_metric"]["name"] == "accuracy"
    assert retrain["window_metric"]["value"] < 0.9
    assert len(retrain["request_id"]) == 32

    expected = expected_reviews(drift_preds + steady_preds)
    reviews = pipeline.read_topic(topics.review_requests, min_count=len(expected))
    assert sorted(r["prediction_id"] for r in reviews) == sorted(expected)
    assert len({r["request_id"] for r in reviews}) == len(reviews)
    by_model = Counter(r["model_id"] for r in reviews)
    assert by_model["concept"] > 0 and by_model["steady"] > 0
    review = reviews[0]
    event = next(
        e for e in drift_preds + steady_preds if e["prediction_id"] == review["prediction_id"]
    )
    assert (review["score"], review["prediction"], review["timestamp"]) == (
        event["score"],
        event["prediction"],
        event["timestamp"],
    )
    assert review["label_with"]["topic"] == topics.labels
    assert review["label_with"]["event"]["prediction_id"] == review["prediction_id"]
    models = pipeline.models()
    assert models["concept"].counters["retrain_requests"] == 1
    assert models["steady"].counters["retrain_requests"] == 0
    assert sum(m.counters["review_requests"] for m in models.values()) == len(expected)


def test_retrain_cooldown_survives_a_worker_crash(pipeline: Pipeline) -> None:
    """A second, worse drift after a SIGKILL and restart stays inside the stored cooldown."""
    p = pipeline
    accuracy = [0.95] * CHANGE + [0.55] * (N - CHANGE) + [0.15] * 2000
    first_preds, first_labels = classifier("concept", accuracy[:N], 3)
    worker = p.start_worker()
    p.send(p.topics.predictions, first_preds)
    p.send(p.topics.labels, first_labels)
    p.wait_until(all_processed({"concept": (N, N)}), what="the first drift")
    topic = p.config.kafka.topics.retrain_requests
    [before] = p.read_topic(topic, min_count=1)
    worker.kill()
    p.start_worker()

    later_preds, later_labels = classifier("concept", accuracy, 3, first=N)
    p.send(p.topics.predictions, later_preds)
    p.send(p.topics.labels, later_labels)
    p.wait_until(all_processed({"concept": (N + 2000, N + 2000)}), what="the second drift")
    later = [
        a for a in retrain_triggers(p.alerts(min_count=2)) if index_of(a["prediction_id"]) >= N
    ]
    assert later, "the second drift must raise a trigger after the restart"
    requests = p.read_topic(topic, min_count=1)
    assert {r["request_id"] for r in requests} == {before["request_id"]}
    assert p.models()["concept"].counters["retrain_requests"] == 1
