"""``driftline replay``: the processor core over a JSON-lines file, without Kafka or Redis.

Each line is placed where ``driftline send`` would put it on fresh topics: the labels or
predictions topic by its fields, partition ``murmur2(model_id) % partitions`` (the default
partitioner of Kafka's Java client and kafka-python), offsets counting up per topic partition in
file order. Alert ids hash exactly those positions, so a file replayed here yields the alerts (ids
included) that the streaming pipeline raises for the same file sent to fresh topics with the same
partition count and config. Events without a ``timestamp`` take the replay's start time as their
record time; give events timestamps when comparing runs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kafka.partitioner.default import murmur2

from streams.alerts import Alert
from streams.config import Config
from streams.model_state import ModelState
from streams.processor import PartitionState, Processor, SourceRecord
from streams.send import classify_line


@dataclass(slots=True)
class ReplayResult:
    """Alerts in emission order, final model states and counts."""

    alerts: list[Alert] = field(default_factory=list)
    models: dict[str, ModelState] = field(default_factory=dict)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a keyed record."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def file_records(
    path: str | Path, config: Config, partitions: int, timestamp_ms: int
) -> Iterator[SourceRecord | tuple[int, str]]:
    """Records in file order, or (line number, reason) for lines ``send`` would skip."""
    topics = config.kafka.topics
    offsets: Counter[tuple[str, int]] = Counter()
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            raw = line.strip()
            if not raw:
                continue
            target = classify_line(raw, topics)
            if isinstance(target, str):
                yield lineno, target
                continue
            topic, key = target
            p = partition_for(key, partitions)
            offset = offsets[(topic, p)]
            offsets[(topic, p)] += 1
            yield SourceRecord(topic, p, offset, key, raw, timestamp_ms)


def replay_file(
    path: str | Path, config: Config, partitions: int | None = None, batch_size: int = 1000
) -> ReplayResult:
    """Run the processor over a file; labels still waiting at the end are released."""
    partitions = partitions or config.kafka.partitions
    processor = Processor(config)
    parts: dict[int, PartitionState] = {}
    pending: dict[int, list[SourceRecord]] = {}
    result = ReplayResult()

    def flush(p: int, final: bool = False) -> None:
        batch = pending.pop(p, [])
        part = parts.setdefault(p, processor.new_partition(p))
        out = processor.apply(part, batch, predictions_caught_up=final, labels_caught_up=final)
        result.alerts.extend(out.alerts)
        result.dead_letters.extend(out.dead_letters)
        result.counts.update(out.counts)

    for item in file_records(path, config, partitions, int(time.time() * 1000)):
        if isinstance(item, tuple):
            result.skipped_lines.append(item)
            continue
        batch = pending.setdefault(item.partition, [])
        batch.append(item)
        if len(batch) >= batch_size:
            flush(item.partition)
    for p in sorted(set(parts) | set(pending)):
        flush(p, final=True)
    for part in parts.values():
        result.models.update(part.models)
    return result
