"""`driftline send` and `driftline alerts` against the real (embedded) broker."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.alert_view import tail_alerts
from streams.config import Topics
from streams.embedded import EmbeddedStack
from streams.send import send_file
from streams.simulator import Simulation, write_jsonl


def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` (manual assignment, no group) until ``expected`` arrived."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        # Anything beyond `expected` would be a bug too: give it a moment to show up.
        for batch in consumer.poll(timeout_ms=500).values():
            records += batch
        return records
    finally:
        consumer.close()


def test_send_file_routes_predictions_and_labels_by_model(
    stack: EmbeddedStack, prefix: str, tmp_path: Path
) -> None:
    topics = Topics(
        predictions=f"{prefix}-predictions",
        labels=f"{prefix}-labels",
        drift_alerts=f"{prefix}-drift-alerts",
        performance_alerts=f"{prefix}-performance-alerts",
        dead_letter=f"{prefix}-dead-letter",
    )
    stack.create_topics([topics.predictions, topics.labels], partitions=3)
    path = tmp_path / "stream.jsonl"
    counts = write_jsonl(path, Simulation(10, 3, seed=1))  # 30 predictions + 30 labels per model
    with path.open("ab") as fh:
        fh.write(b"\n{not json\n")
        fh.write(b'{"model_id": "m", "prediction_id": "x"}\n')
        fh.write(b"[1, 2]\n")

    result = send_file(str(path), stack.bootstrap_servers, topics, progress=False, kafka_options={})

    assert (result.predictions, result.labels) == (counts["prediction"], counts["label"])
    assert counts == {"prediction": 90, "label": 90}
    assert result.failed == 0 and result.skipped == 3
    total_lines = counts["prediction"] + counts["label"]
    assert [n for n, _ in result.skipped_lines] == [
        total_lines + 2,
        total_lines + 3,
        total_lines + 4,
    ]
    assert "invalid JSON" in result.skipped_lines[0][1]
    assert "neither" in result.skipped_lines[1][1]
    assert "line" in result.summary() and not result.ok

    predictions = _read_all(stack.bootstrap_servers, topics.predictions, 90)
    labels = _read_all(stack.bootstrap_servers, topics.labels, 90)
    assert len(predictions) == 90 and len(labels) == 90
    for records, field in ((predictions, "prediction"), (labels, "label")):
        by_key = Counter(r.key.decode() for r in records)
        assert by_key == {"churn-classifier": 30, "fraud-detector": 30, "demand-regressor": 30}
        partitions_of: dict[str, set[int]] = {}
        for r in records:
            value = orjson.loads(r.value)
            assert field in value and value["model_id"] == r.key.decode()
            partitions_of.setdefault(r.key.decode(), set()).add(r.partition)
        assert all(len(p) == 1 for p in partitions_of.values()), "a model spans partitions"


def _alert(n: int, model: str, severity: str) -> dict[str, Any]:
    return {
        "v": 1,
        "alert_id": f"alert-{n}",
        "type": "concept_drift",
        "model_id": model,
        "model_version": None,
        "signal": "error_rate",
        "detector": "adwin",
        "severity": severity,
        "prediction_id": f"{model}-{n:07d}",
        "observed_at": "2026-01-01T00:00:00.000Z",
        "emitted_at": "2026-01-01T00:00:01.000Z",
        "value": 0.3,
        "threshold": 0.002,
        "window": 100,
        "stats": {"mean_before": 0.08},
        "message": f"alert number {n}",
    }


def test_tail_alerts_prints_alerts_as_json_lines(
    stack: EmbeddedStack, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    drift, perf = f"{prefix}-drift-alerts", f"{prefix}-performance-alerts"
    stack.create_topics([drift, perf], partitions=1)
    sent = [_alert(1, "churn-classifier", "critical"), _alert(2, "fraud-detector", "warning")]
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    try:
        for alert in sent:
            producer.send(drift, key=alert["model_id"].encode(), value=orjson.dumps(alert))
        producer.flush()
    finally:
        producer.close()

    code = tail_alerts(
        stack.bootstrap_servers,
        [drift, perf],
        as_json=True,
        from_beginning=True,
        max_alerts=2,
        timeout_s=30,
        kafka_options={},
    )

    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line) for line in lines] == sent


def test_tail_alerts_pretty_from_the_end_shows_only_new_alerts(
    stack: EmbeddedStack, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"{prefix}-performance-alerts"
    stack.create_topics([topic], partitions=1)
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    try:
        producer.send(topic, value=orjson.dumps(_alert(1, "old-model", "warning")))
        producer.flush()

        def publish_later() -> None:
            time.sleep(3)
            producer.send(topic, value=orjson.dumps(_alert(2, "new-model", "critical")))
            producer.flush()

        thread = threading.Thread(target=publish_later)
        thread.start()
        code = tail_alerts(
            stack.bootstrap_servers,
            [topic],
            as_json=False,
            from_beginning=False,
            max_alerts=1,
            timeout_s=30,
            kafka_options={},
        )
        thread.join()
    finally:
        producer.close()
    out = capsys.readouterr().out
    assert code == 0
    assert "new-model" in out and "CRITICAL" in out and "alert number 2" in out
    assert "old-model" not in out


def test_tail_alerts_times_out_when_nothing_arrives(stack: EmbeddedStack, prefix: str) -> None:
    topic = f"{prefix}-drift-alerts"
    stack.create_topics([topic], partitions=1)
    started = time.monotonic()
    code = tail_alerts(
        stack.bootstrap_servers,
        [topic],
        as_json=True,
        from_beginning=True,
        max_alerts=1,
        timeout_s=2,
        kafka_options={},
    )
    assert code == 1
    assert time.monotonic() - started < 10
