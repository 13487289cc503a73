"""Producer SDK against the embedded broker: envelopes on the wire, and a delivery failure."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.client import DeliveryError, Monitor
from streams.embedded import EmbeddedStack


def consume_all(stack: EmbeddedStack, topic: str, expected_events: int) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records = []
        seen = 0
        for _ in range(20):
            for record in consumer:
                records.append(record)
                seen += len(orjson.loads(record.value))
            if seen >= expected_events:
                break
        return records
    finally:
        consumer.close()


def test_envelopes_round_trip(stack: EmbeddedStack, prefix: str) -> None:
    preds, labels = f"{prefix}-predictions", f"{prefix}-labels"
    stack.create_topics([preds, labels], partitions=2)
    models = ["churn", "fraud/v1"]
    with Monitor(
        bootstrap_servers=stack.bootstrap_servers, predictions_topic=preds, labels_topic=labels
    ) as monitor:
        for i in range(250):
            for model in models:
                monitor.log_prediction(model, f"p{i}", i % 2, score=0.5, features={"x": i})
                if i % 3 == 0:
                    monitor.log_label(model, f"p{i}", 1)
        monitor.flush()

    for topic, per_model in ((preds, 250), (labels, 84)):
        records = consume_all(stack, topic, per_model * len(models))
        ids: dict[str, list[str]] = {m: [] for m in models}
        for record in records:
            envelope = orjson.loads(record.value)
            assert isinstance(envelope, list) and 1 <= len(envelope) <= 100
            model = record.key.decode()
            assert {event["model_id"] for event in envelope} == {model}
            assert all(isinstance(event["timestamp"], int) for event in envelope)
            ids[model] += [event["prediction_id"] for event in envelope]
        for model in models:
            assert sorted(ids[model]) == sorted(
                {f"p{i}" for i in range(250) if topic == preds or i % 3 == 0}
            )
            assert len(ids[model]) == per_model


def test_invalid_topic_raises_on_flush(stack: EmbeddedStack, prefix: str) -> None:
    monitor = Monitor(
        bootstrap_servers=stack.bootstrap_servers,
        predictions_topic=f"{prefix} not a topic",
        max_block_ms=5000,
        delivery_timeout_ms=5000,
        request_timeout_ms=3000,
    )
    monitor.log_prediction("m", "p1", 1)
    with pytest.raises(DeliveryError, match="1 envelope"):
        monitor.flush()
    monitor.close()


def test_invalid_topic_reaches_on_error(stack: EmbeddedStack, prefix: str) -> None:
    failures: list[tuple[BaseException, list[dict[str, Any]]]] = []
    with Monitor(
        bootstrap_servers=stack.bootstrap_servers,
        labels_topic=f"{prefix} not a topic",
        on_error=lambda exc, events: failures.append((exc, events)),
        max_block_ms=5000,
        delivery_timeout_ms=5000,
        request_timeout_ms=3000,
    ) as monitor:
        monitor.log_label("m", "p1", 0)
        monitor.log_label("m", "p2", 1)
    assert len(failures) == 1
    assert [event["prediction_id"] for event in failures[0][1]] == ["p1", "p2"]
