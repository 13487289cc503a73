"""The worker end to end: real broker, real Redis, real worker processes."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka.admin import KafkaAdminClient

from streams.embedded import EmbeddedStack
from streams.status import read_partitions
from tests.integration.pipeline import (
    Pipeline,
    all_processed,
    counters,
    metric_values,
    prediction_events,
    write_config,
)

T0 = 1_700_000_000_000
N = 3000
CHANGE = 1500

ALERT_FIELDS = {
    "alert_id",
    "type",
    "model_id",
    "model_version",
    "signal",
    "detector",
    "severity",
    "prediction_id",
    "observed_at",
    "emitted_at",
    "value",
    "threshold",
    "window",
    "stats",
    "message",
}


@pytest.fixture
def pipeline(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> Iterator[Pipeline]:
    p = Pipeline(stack, write_config(tmp_path, prefix), tmp_path)
    p.create_topics()
    try:
        yield p
    finally:
        p.close()


def drifting_models(seed: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Three models, each with one kind of drift at index CHANGE."""
    rng = np.random.default_rng(seed)
    preds: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []

    score = rng.beta(2, 5, N)
    cls = [{"prediction": int(s > 0.5), "score": float(s), "model_version": "v1"} for s in score]
    concept = prediction_events("concept", cls, T0)
    correct = rng.random(N) < np.where(np.arange(N) < CHANGE, 0.95, 0.55)
    preds += concept
    labels += [
        {
            "model_id": "concept",
            "prediction_id": e["prediction_id"],
            "label": e["prediction"] if ok else 1 - e["prediction"],
            "timestamp": e["timestamp"] + 50,
        }
        for e, ok in zip(concept, correct, strict=True)
    ]

    x = rng.normal(0, 1, N) + np.where(np.arange(N) < CHANGE, 0.0, 2.0)
    data = prediction_events(
        "data",
        [
            {
                "prediction": int(s > 0.5),
                "score": float(s),
                "features": {"x": float(v), "kind": "a"},
            }
            for s, v in zip(rng.beta(2, 5, N), x, strict=True)
        ],
        T0,
    )
    preds += data

    y = rng.normal(100, 10, N) + np.where(np.arange(N) < CHANGE, 0.0, 25.0)
    reg = prediction_events("regress", [{"prediction": float(v)} for v in y], T0)
    preds += reg
    labels += [
        {
            "model_id": "regress",
            "prediction_id": e["prediction_id"],
            "label": e["prediction"] + float(rng.normal(0, 2)),
            "timestamp": e["timestamp"] + 50,
        }
        for e in reg
    ]
    return preds, labels


def index_of(prediction_id: str) -> int:
    return int(prediction_id.rsplit("-", 1)[1])


def test_events_in_alerts_out_for_each_type(pipeline: Pipeline) -> None:
    preds, labels = drifting_models()
    pipeline.start_worker()
    pipeline.send(pipeline.topics.predictions, preds)
    pipeline.send(pipeline.topics.labels, labels)
    models = pipeline.wait_until(
        all_processed({"concept": (N, N), "data": (N, 0), "regress": (N, N)}), what="all events"
    )

    drift = pipeline.read_topic(pipeline.topics.drift_alerts, min_count=3)
    perf = pipeline.read_topic(pipeline.topics.performance_alerts, min_count=1)
    assert all(a["type"] in {"concept_drift", "data_drift", "prediction_drift"} for a in drift)
    assert all(a["type"] in {"performance", "data_quality"} for a in perf)
    found = {(a["model_id"], a["type"], a["signal"], a["detector"]) for a in drift + perf}
    assert ("concept", "concept_drift", "error_rate", "adwin") in found
    assert ("concept", "performance", "accuracy", "threshold") in found
    assert ("data", "data_drift", "feature:x", "page_hinkley") in found
    assert ("regress", "prediction_drift", "prediction", "page_hinkley") in found
    for alert in drift + perf:
        assert set(alert) >= ALERT_FIELDS, alert
        assert alert["severity"] in {"warning", "critical"}
        assert alert["message"] and alert["model_id"] in alert["message"]
        # nothing before the injected change: every alert is a true detection
        assert index_of(alert["prediction_id"]) >= CHANGE, alert
    concept = next(a for a in drift if a["type"] == "concept_drift")
    assert concept["model_version"] == "v1"
    assert concept["value"] > concept["stats"]["mean_before"]
    assert models["concept"].task == "classification" and models["regress"].task == "regression"


def _get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_readyz_status_and_per_model_metrics(pipeline: Pipeline) -> None:
    preds, labels = drifting_models()
    worker = pipeline.start_worker()
    url = worker.web_url().rstrip("/")
    pipeline.send(pipeline.topics.predictions, preds)
    pipeline.send(pipeline.topics.labels, labels)
    pipeline.wait_until(
        all_processed({"concept": (N, N), "data": (N, 0), "regress": (N, N)}), what="all events"
    )
    status, ready = _get_json(url + "/readyz")
    assert status == 200 and ready["ready"] is True, ready
    assert ready["redis"] and ready["kafka"] and ready["partitions"]

    _, doc = _get_json(url + "/api/status")
    by_id = {m["model_id"]: m for m in doc["models"]}
    assert set(by_id) == {"concept", "data", "regress"}
    assert by_id["concept"]["metric"] == "accuracy" and by_id["regress"]["metric"] == "mae"
    assert doc["alerts"], "alerts were raised but the status feed has none"

    health = metric_values(url, "driftline_model_health")
    assert set(health) == {'{model="concept"}', '{model="data"}', '{model="regress"}'}
    accuracy = metric_values(url, "driftline_model_windowed_metric")
    assert 0.0 < accuracy['{metric="accuracy",model="concept"}'] < 1.0
    lag = metric_values(url, "driftline_partition_lag_records")
    assert lag and all(v >= 0 for v in lag.values())


def test_malformed_record_goes_to_dead_letter_and_neighbours_are_processed(
    pipeline: Pipeline,
) -> None:
    good = prediction_events("m1", [{"prediction": 1, "score": 0.7}] * 4, T0)
    bad_json = b'{"model_id": "m1", "prediction_id": '
    envelope = orjson.dumps([good[2], {**good[3], "score": 1.7}])
    worker = pipeline.start_worker()
    pipeline.send(pipeline.topics.predictions, [good[0], bad_json, good[1]], key=b"m1")
    pipeline.send(pipeline.topics.predictions, [envelope], key=b"m1")
    pipeline.wait_until(all_processed({"m1": (3, 0)}), what="valid events")

    dead = pipeline.read_topic(pipeline.topics.dead_letter, min_count=2)
    assert len(dead) == 2
    by_offset = {d["offset"]: d for d in dead}
    first, second = by_offset[min(by_offset)], by_offset[max(by_offset)]
    assert first["topic"] == pipeline.topics.predictions
    assert "JSON" in first["reason"]
    assert base64.b64decode(first["value_b64"]) == bad_json
    assert "event[1]" in second["reason"] and "score" in second["reason"]
    assert base64.b64decode(second["value_b64"]) == envelope
    assert pipeline.models()["m1"].counters["predictions"] == 3
    by_reason = metric_values(worker.web_url(), "driftline_dead_letters_total")
    assert by_reason['{reason="invalid_json"}'] == 1.0
    assert by_reason['{reason="invalid_field"}'] == 1.0
    assert sum(by_reason.values()) == 2.0


def test_labels_join_in_either_order_and_expired_halves_are_counted(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> None:
    p = Pipeline(stack, write_config(tmp_path, prefix, join={"ttl_ms": 5_000}), tmp_path)
    p.create_topics()
    try:
        p.start_worker()
        label = {"model_id": "j", "label": 1}
        # label first, then its prediction
        p.send(p.topics.labels, [{**label, "prediction_id": "early", "timestamp": T0 + 100}])
        p.send(
            p.topics.predictions,
            [
                {
                    "model_id": "j",
                    "prediction_id": "early",
                    "prediction": 1,
                    "score": 0.9,
                    "timestamp": T0,
                }
            ],
        )
        # prediction first, then its label
        p.send(
            p.topics.predictions,
            [
                {
                    "model_id": "j",
                    "prediction_id": "late",
                    "prediction": 0,
                    "score": 0.2,
                    "timestamp": T0 + 200,
                }
            ],
        )
        p.send(p.topics.labels, [{**label, "prediction_id": "late", "timestamp": T0 + 300}])
        models = p.wait_until(
            lambda m: "j" in m and m["j"].counters["joined"] == 2, what="two joins"
        )
        assert models["j"].counters["expired_predictions"] == 0

        # a label 10 s (event time) after its prediction, with a 5 s TTL: expired, not joined
        p.send(
            p.topics.predictions,
            [
                {
                    "model_id": "j",
                    "prediction_id": "stale",
                    "prediction": 1,
                    "score": 0.9,
                    "timestamp": T0 + 400,
                }
            ],
        )
        p.send(
            p.topics.predictions,
            [
                {
                    "model_id": "j",
                    "prediction_id": "tick",
                    "prediction": 1,
                    "score": 0.9,
                    "timestamp": T0 + 20_000,
                }
            ],
        )
        p.send(p.topics.labels, [{**label, "prediction_id": "stale", "timestamp": T0 + 10_400}])
        models = p.wait_until(
            lambda m: (
                m["j"].counters["expired_predictions"] >= 1 and m["j"].counters["labels"] == 3
            ),
            what="expiry",
        )
        assert models["j"].counters["joined"] == 2
        assert models["j"].counters["expired_predictions"] == 1
        assert models["j"].counters["expired_labels"] == 0
    finally:
        p.close()


def test_outputs_leave_with_each_batch_and_state_at_its_checkpoint_interval_or_a_stop(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> None:
    # a checkpoint interval far longer than the test: batches deliver, only the stop writes
    config = write_config(
        tmp_path, prefix, worker={"batch_every_ms": 100, "checkpoint_every_ms": 600_000}
    )
    p = Pipeline(stack, config, tmp_path)
    p.create_topics()
    try:
        worker = p.start_worker()
        good = prediction_events("m1", [{"prediction": 1, "score": 0.7}] * 5, T0)
        p.send(p.topics.predictions, [*good[:2], b"not json", *good[2:]], key=b"m1")
        dead = p.read_topic(p.topics.dead_letter, min_count=1)
        assert [d["offset"] for d in dead] == [2]
        applied = metric_values(worker.web_url(), "driftline_records_consumed_total")
        assert sum(applied.values()) >= 6
        assert p.models() == {}, "nothing is checkpointed before the interval is up"
        assert worker.stop() == 0
        assert p.models()["m1"].counters["predictions"] == 5
        rows = read_partitions(p.redis, p.config.state.key_prefix, p.config.kafka.group_id)
        assert sum(r["offset_predictions"] + 1 for r in rows) == 6
    finally:
        p.close()


def test_sigkill_and_restart_gives_the_counts_and_alert_ids_of_an_uninterrupted_run(
    stack: EmbeddedStack, tmp_path: Path, redis_client: Any
) -> None:
    preds, labels = drifting_models(seed=3)
    results = []
    for run, kill in (("a", False), ("b", True)):
        prefix = f"kill{run}{uuid.uuid4().hex[:8]}"
        p = Pipeline(stack, write_config(tmp_path, prefix), tmp_path / run)
        p.create_topics()
        try:
            p.send(p.topics.predictions, preds)
            p.send(p.topics.labels, labels)
            worker = p.start_worker()
            if kill:
                at_kill = p.wait_until(
                    lambda m: sum(x.counters["predictions"] for x in m.values()) > N,
                    what="some progress",
                )
                worker.kill()
                # the kill must land mid-stream, or this test proves nothing
                assert sum(x.counters["predictions"] for x in at_kill.values()) < 3 * N
                assert worker.returncode == -9
                worker.start()
            done = p.wait_until(
                all_processed({"concept": (N, N), "data": (N, 0), "regress": (N, N)}),
                what="all events",
            )
            alerts = p.alerts(min_count=3)
            results.append((counters(done), alerts))
        finally:
            p.close()
            for key in redis_client.scan_iter(match=f"*{prefix}*"):
                redis_client.delete(key)
    (counts_a, alerts_a), (counts_b, alerts_b) = results
    assert counts_b == counts_a
    side = {"prediction_drift", "data_drift"}
    ids_a = {a["alert_id"] for a in alerts_a if a["type"] in side}
    ids_b = {a["alert_id"] for a in alerts_b if a["type"] in side}
    assert ids_a and ids_b == ids_a


def test_worker_creates_missing_topics_with_configured_partitions(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> None:
    p = Pipeline(stack, write_config(tmp_path, prefix, partitions=3), tmp_path)
    try:
        p.start_worker()
        admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap_servers)
        try:
            described = {
                t["name"]: len(t["partitions"])
                for t in admin.describe_topics([p.topics.predictions, p.topics.labels])
            }
        finally:
            admin.close()
        assert described == {p.topics.predictions: 3, p.topics.labels: 3}
        p.send(p.topics.predictions, prediction_events("m", [{"prediction": 1.0}] * 30, T0))
        p.wait_until(all_processed({"m": (30, 0)}), what="events on created topics")
    finally:
        p.close()


def test_two_workers_share_the_partitions(pipeline: Pipeline) -> None:
    preds = [
        e
        for m in range(8)
        for e in prediction_events(f"m{m}", [{"prediction": 1, "score": 0.4}] * 200, T0)
    ]
    first = pipeline.start_worker()
    second = pipeline.start_worker()
    pipeline.send(pipeline.topics.predictions, preds)
    models = pipeline.wait_until(
        all_processed({f"m{m}": (200, 0) for m in range(8)}), what="both workers"
    )
    assert sum(m.counters["predictions"] for m in models.values()) == 1600
    owners = {
        p["owner"]
        for p in read_partitions(
            pipeline.redis, pipeline.config.state.key_prefix, pipeline.config.kafka.group_id
        )
    }
    assert owners == {f"{socket.gethostname()}:{w.pid}" for w in (first, second)}


def test_worker_refuses_inputs_that_are_not_co_partitioned(
    stack: EmbeddedStack, tmp_path: Path, prefix: str
) -> None:
    p = Pipeline(stack, write_config(tmp_path, prefix), tmp_path)
    try:
        stack.create_topics([p.topics.predictions], partitions=2)
        stack.create_topics([p.topics.labels], partitions=3)
        with pytest.raises(RuntimeError, match="not co-partitioned"):
            p.start_worker()
        assert p.workers == [] or not p.workers[-1].running
    finally:
        p.close()
