"""Recovery: state lost or rolled back in Redis is rebuilt from Kafka, never skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.embedded import EmbeddedStack
from tests.integration.pipeline import Pipeline, all_processed, counters, write_config
from tests.unit.streams.test_processor import records


def test_redis_rolled_back_to_an_older_snapshot_is_caught_up_from_kafka(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> None:
    recs = records(seed=21)
    half = len(recs) // 2
    p = Pipeline(stack, write_config(tmp_path, prefix), tmp_path)
    p.create_topics()
    try:

        def send(part: list[Any]) -> None:
            for rec in part:
                p.producer.send(
                    p.topics.predictions if rec.topic == "predictions" else p.topics.labels,
                    key=rec.key,
                    value=rec.value,
                )
            p.producer.flush()

        def totals(models: dict[str, Any]) -> tuple[int, int]:
            c = counters(models)
            return (sum(m["predictions"] for m in c.values()), sum(m["labels"] for m in c.values()))

        first = [r for r in recs[:half]]
        n_pred = sum(r.topic == "predictions" for r in first)
        n_lab = len(first) - n_pred
        worker = p.start_worker()
        send(first)
        p.wait_until(lambda m: totals(m) == (n_pred, n_lab), what="first half")
        snapshot = {k: redis_client.dump(k) for k in redis_client.scan_iter(match=f"*{prefix}*")}
        assert snapshot

        send(recs[half:])
        done = p.wait_until(
            all_processed({"concept": (3000, 3000), "data": (3000, 0), "regress": (3000, 3000)}),
            what="everything",
        )
        expected = counters(done)
        assert worker.stop() == 0  # graceful: Kafka offsets committed up to the end

        # Redis comes back from the older snapshot: its offsets are behind Kafka's commits
        for key, blob in snapshot.items():
            redis_client.restore(key, 0, blob, replace=True)
        assert totals(p.models()) == (n_pred, n_lab)

        p.workers.clear()
        p.start_worker()
        recovered = p.wait_until(
            lambda m: counters(m) == expected, timeout_s=60, what=f"uninterrupted counts {expected}"
        )
        assert counters(recovered) == expected
    finally:
        p.close()
