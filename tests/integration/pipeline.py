"""Test harness for pipeline tests: a per-test config, producing events, reading results back."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.config import Config, load_config
from streams.embedded import EmbeddedStack
from streams.status import read_models, read_partitions
from streams.worker_process import WorkerProcess

FAST_DETECTION: dict[str, Any] = {
    "cooldown_events": 200,
    "prediction_drift": {"warmup": 200},
    "data_drift": {"warmup": 200},
    "performance": {"window": 200, "min_samples": 100},
}


def write_config(
    tmp_path: Path,
    prefix: str,
    partitions: int = 2,
    detection: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """A config whose topics, group and Redis keys all carry the test's prefix."""
    data: dict[str, Any] = {
        "kafka": {
            "topics": {
                "predictions": f"{prefix}-predictions",
                "labels": f"{prefix}-labels",
                "drift_alerts": f"{prefix}-drift-alerts",
                "performance_alerts": f"{prefix}-performance-alerts",
                "dead_letter": f"{prefix}-dead-letter",
            },
            "group_id": prefix,
            "partitions": partitions,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
        },
        "worker": {"checkpoint_every_records": 500, "checkpoint_every_ms": 200},
        "state": {"key_prefix": prefix},
        "detection": detection if detection is not None else FAST_DETECTION,
    }
    data.update(sections)
    path = tmp_path / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Pipeline:
    """One test's topics, workers and Redis view."""

    def __init__(self, stack: EmbeddedStack, config_path: Path, log_dir: Path) -> None:
        self.stack = stack
        self.config_path = config_path
        self.config: Config = load_config(config_path)
        self.topics = self.config.kafka.topics
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []
        self.producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers, linger_ms=5)
        self.redis = redis.Redis.from_url(stack.redis_url)

    def create_topics(self) -> None:
        """Inputs with the configured partition count, outputs with one partition."""
        self.stack.create_topics(
            [self.topics.predictions, self.topics.labels], partitions=self.config.kafka.partitions
        )
        self.stack.create_topics(
            [self.topics.drift_alerts, self.topics.performance_alerts, self.topics.dead_letter],
            partitions=1,
        )

    def start_worker(self, redis_url: str | None = None) -> WorkerProcess:
        """Start one more worker (on ``redis_url``, else the stack's Redis) and wait for it."""
        w = WorkerProcess(
            self.log_dir / f"worker{len(self.workers)}.log",
            self.stack.bootstrap_servers,
            redis_url or self.stack.redis_url,
            self.config_path,
        )
        w.start()
        w.web_url()
        self.workers.append(w)
        return w

    def send(
        self, topic: str, events: Iterable[dict[str, Any] | bytes], key: bytes | None = None
    ) -> None:
        """Publish events (dicts as JSON; bytes as-is), keyed by model_id unless ``key``."""
        for event in events:
            if isinstance(event, bytes):
                self.producer.send(topic, key=key, value=event)
            else:
                k = key if key is not None else str(event["model_id"]).encode()
                self.producer.send(topic, key=k, value=orjson.dumps(event))
        self.producer.flush()

    def models(self) -> dict[str, Any]:
        """Model states from Redis, by id."""
        prefix, group = self.config.state.key_prefix, self.config.kafka.group_id
        return {m.model_id: m for m in read_models(self.redis, prefix, group)}

    def wait_until(
        self,
        check: Callable[[dict[str, Any]], bool],
        timeout_s: float = 90.0,
        what: str = "condition",
    ) -> dict[str, Any]:
        """Poll the model states until ``check`` holds."""
        deadline = time.monotonic() + timeout_s
        models: dict[str, Any] = {}
        while time.monotonic() < deadline:
            models = self.models()
            if check(models):
                return models
            time.sleep(0.25)
        logs = "\n".join(w.log_text()[-3000:] for w in self.workers)
        raise AssertionError(
            f"timed out waiting for {what}; models: "
            f"{ {k: v.counters for k, v in models.items()} }\n{logs}"
        )

    def read_topic(
        self, topic: str, min_count: int = 0, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """All records of a topic (from the beginning) as parsed JSON, waiting for ``min_count``."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.stack.bootstrap_servers,
            enable_auto_commit=False,
            consumer_timeout_ms=1000,
        )
        try:
            parts = consumer.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout_s
            quiet_polls = 0
            # Stop once min_count records arrived and two polls in a row brought nothing new.
            while time.monotonic() < deadline and (len(out) < min_count or quiet_polls < 2):
                polled = consumer.poll(timeout_ms=500)
                quiet_polls = 0 if polled else quiet_polls + 1
                for batch in polled.values():
                    out.extend(orjson.loads(r.value) for r in batch)
            return out
        finally:
            consumer.close()

    def alerts(self, min_count: int = 0, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Alerts from both alert topics."""
        drift = self.read_topic(self.topics.drift_alerts, 0, 3.0)
        perf = self.read_topic(
            self.topics.performance_alerts, max(0, min_count - len(drift)), timeout_s
        )
        return drift + perf

    def close(self) -> None:
        """Stop workers and clients."""
        for w in self.workers:
            w.stop()
        self.producer.close()
        self.redis.close()


# How the two topics happened to interleave (labels that came before their prediction) is not
# part of the result; every other counter must be identical across crashes and restarts.
INTERLEAVING_COUNTERS = frozenset({"late_joins"})


def counters(models: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per-model counters that must not depend on crashes, restarts or topic interleaving."""
    return {
        mid: {k: v for k, v in m.counters.items() if k not in INTERLEAVING_COUNTERS}
        for mid, m in models.items()
    }


def all_processed(expected: dict[str, tuple[int, int]]) -> Callable[[dict[str, Any]], bool]:
    """Check: every model has seen (predictions, labels) and joined every label."""

    def check(models: dict[str, Any]) -> bool:
        for mid, (preds, labels) in expected.items():
            m = models.get(mid)
            if m is None:
                return False
            c = m.counters
            if c["predictions"] < preds or c["labels"] < labels or c["joined"] < labels:
                return False
        return True

    return check


def prediction_events(
    model_id: str, values: Sequence[dict[str, Any]], start_ms: int, step_ms: int = 10
) -> list[dict[str, Any]]:
    """Prediction events with ids ``{model_id}-{i}`` and increasing timestamps."""
    return [
        {
            "model_id": model_id,
            "prediction_id": f"{model_id}-{i}",
            "timestamp": start_ms + i * step_ms,
            **v,
        }
        for i, v in enumerate(values)
    ]


# -- chaos-test helpers -----------------------------------------------------------------------

Record = tuple[bytes, bytes]  # (key, value)


class BackgroundProducer(threading.Thread):
    """Publishes windows of records in a thread: a window's predictions (flushed), then labels.

    A label is only sent once its prediction is acknowledged, as in production where ground truth
    comes after the prediction; the two topics still interleave arbitrarily at the worker.
    """

    def __init__(
        self, bootstrap: str, topics: Any, windows: Sequence[tuple[list[Record], list[Record]]]
    ) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.bootstrap = bootstrap
        self.topics = topics
        self.windows = windows
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=10,
            batch_size=256 * 1024,
            acks="all",
            # one request in flight per connection: a retried batch cannot overtake the next one
            max_in_flight_requests_per_connection=1,
        )
        try:
            for preds, labels in self.windows:
                for key, value in preds:
                    producer.send(self.topics.predictions, key=key, value=value)
                producer.flush()
                for key, value in labels:
                    producer.send(self.topics.labels, key=key, value=value)
                self.sent += len(preds) + len(labels)
            producer.flush()
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            producer.close()

    def finish(self, timeout_s: float = 120.0) -> None:
        """Wait for the thread; re-raise what it failed with."""
        self.join(timeout_s)
        if self.is_alive():
            raise TimeoutError("producer thread still running")
        if self.error is not None:
            raise self.error


def applied_records(p: Pipeline) -> int:
    """Records of both input topics covered by the stored offsets (all partitions)."""
    rows = read_partitions(p.redis, p.config.state.key_prefix, p.config.kafka.group_id)
    return sum(r["offset_predictions"] + 1 + r["offset_labels"] + 1 for r in rows)


def wait_for_applied(p: Pipeline, n: int, timeout_s: float = 120.0) -> int:
    """Wait until at least ``n`` records are applied (checkpointed); returns the count."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = applied_records(p)
        if done >= n:
            return done
        time.sleep(0.05)
    logs = "\n".join(w.tail(30) for w in p.workers)
    raise AssertionError(f"only {applied_records(p)} of {n} records applied\n{logs}")


def metric_values(url: str, name: str) -> dict[str, float]:
    """Samples of one Prometheus metric family at a worker's /metrics, by label string."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            sample, value = line.rsplit(" ", 1)
            rest = sample[len(name) :]
            if rest and not rest.startswith("{"):
                continue
            out[rest] = float(value)
    return out


def alert_ids(p: Pipeline, min_count: int = 0) -> set[str]:
    """Distinct alert ids on both alert topics."""
    return {a["alert_id"] for a in p.alerts(min_count=min_count)}
