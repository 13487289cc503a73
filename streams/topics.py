"""Topic checks at start: create what is missing, refuse inputs that are not co-partitioned."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.config import Config, Connections

log = logging.getLogger("driftline.topics")


class TopicLayoutError(RuntimeError):
    """The input topics exist with different partition counts, so joins would be wrong."""


def ensure_topics(config: Config, connections: Connections, timeout_s: float = 30.0) -> int:
    """Create missing topics; return the input partition count.

    ``predictions`` and ``labels`` must have the same number of partitions: a model's predictions
    and labels are joined on the worker that owns partition N of both. Existing topics keep their
    partition count; missing inputs are created with the count of the existing one, else
    ``kafka.partitions``. Outputs (alerts, dead letters, and the retrain and review request
    topics when the config enables them) get one partition; they are not joined, so their count
    is free to change.
    """
    topics = config.kafka.topics
    requests = config.request_topics()
    admin = KafkaAdminClient(
        client_id="driftline-admin",
        request_timeout_ms=int(timeout_s * 1000),
        **connections.kafka_python_options(),
    )
    try:
        wanted_names = [
            topics.predictions,
            topics.labels,
            topics.drift_alerts,
            topics.performance_alerts,
            topics.dead_letter,
            *requests,
        ]
        existing = _partition_counts(admin, wanted_names)
        inputs = {t: existing[t] for t in (topics.predictions, topics.labels) if t in existing}
        if len(set(inputs.values())) > 1:
            raise TopicLayoutError(
                f"input topics are not co-partitioned: {inputs}; predictions and labels must have "
                "the same partition count (a model's events are joined on one worker)"
            )
        partitions = next(iter(inputs.values()), config.kafka.partitions)
        wanted = {
            topics.predictions: partitions,
            topics.labels: partitions,
            topics.drift_alerts: 1,
            topics.performance_alerts: 1,
            topics.dead_letter: 1,
            **dict.fromkeys(requests, 1),
        }
        missing = [
            NewTopic(name, n, config.kafka.replication_factor)
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("created topics %s", [t.name for t in missing])
            except TopicAlreadyExistsError:
                pass  # another worker created them concurrently
        return partitions
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    present = set(admin.list_topics()) & set(names)
    counts: dict[str, int] = {}
    for meta in admin.describe_topics(sorted(present)) if present else []:
        if meta.get("error_code", 0) == 0:
            # kafka-python 3 names the field "name"; 2.x called it "topic"
            name = meta.get("name", meta.get("topic"))
            counts[name] = len(meta.get("partitions", []))
    return counts
