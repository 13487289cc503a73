"""Read-only views of the pipeline's state, for ``driftline status`` and tests.

Per partition: the worker that loaded it last (``owner``), its epoch, the last applied offset of
both input topics, the join's pending halves and, given the topics' end offsets from Kafka, the
lag (records not applied yet). Per model: counters, windowed metrics and every detector's state,
as last checkpointed in Redis.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any, cast

import msgpack
import redis

from streams.model_state import ModelState
from streams.state import partition_keys


def _partitions(client: redis.Redis, prefix: str, group: str) -> list[int]:
    found = set()
    pattern = f"{{{prefix}:{group}:*}}:meta"
    for key in client.scan_iter(match=pattern, count=1000):
        tag = bytes(key).decode().split("}", 1)[0]
        found.add(int(tag.rsplit(":", 1)[1]))
    return sorted(found)


def read_partitions(client: redis.Redis, prefix: str, group: str) -> list[dict[str, Any]]:
    """Per partition in Redis: owner, epoch, last applied offsets, pending join halves."""
    out = []
    for p in _partitions(client, prefix, group):
        meta_key, _, pending_key = partition_keys(prefix, group, p)
        meta = cast("dict[bytes, bytes]", client.hgetall(meta_key))
        buffered = 0
        if b"join" in meta:
            buffered = len(msgpack.unpackb(meta[b"join"], raw=False).get("buf", []))
        out.append(
            {
                "partition": p,
                "owner": meta.get(b"owner", b"").decode() or None,
                "epoch": int(meta.get(b"epoch", b"0")),
                "offset_predictions": int(meta.get(b"off:predictions", b"-1")),
                "offset_labels": int(meta.get(b"off:labels", b"-1")),
                # halves waiting for their other half, and labels read but not released yet
                "join_pending": int(client.hlen(pending_key)),
                "join_buffered": buffered,
            }
        )
    return out


def with_lag(
    partitions: list[dict[str, Any]], end_offsets: Mapping[tuple[str, int], int]
) -> list[dict[str, Any]]:
    """Add each input topic's end offset and lag (end offset - stored offset - 1).

    ``end_offsets`` maps (kind, partition) with kind ``predictions``/``labels`` to the topic's
    high watermark. Partitions that exist in Kafka but have no state yet are listed too.
    """
    rows = {row["partition"]: dict(row) for row in partitions}
    for _, p in end_offsets:
        rows.setdefault(
            p,
            {
                "partition": p,
                "owner": None,
                "epoch": 0,
                "offset_predictions": -1,
                "offset_labels": -1,
                "join_pending": 0,
                "join_buffered": 0,
            },
        )
    for p, row in rows.items():
        for kind in ("predictions", "labels"):
            end = end_offsets.get((kind, p))
            row[f"end_{kind}"] = end
            row[f"lag_{kind}"] = None if end is None else max(0, end - row[f"offset_{kind}"] - 1)
    return [rows[p] for p in sorted(rows)]


def read_models(client: redis.Redis, prefix: str, group: str) -> list[ModelState]:
    """Every model's last checkpointed state, sorted by model id."""
    return [m for _, m in read_models_by_partition(client, prefix, group)]


def read_models_by_partition(
    client: redis.Redis, prefix: str, group: str
) -> list[tuple[int, ModelState]]:
    """(partition, state) of every model, sorted by model id."""
    models: list[tuple[int, ModelState]] = []
    for p in _partitions(client, prefix, group):
        blobs = cast("dict[bytes, bytes]", client.hgetall(partition_keys(prefix, group, p)[1]))
        models.extend((p, ModelState.decode(blob)) for blob in blobs.values())
    return sorted(models, key=lambda item: item[1].model_id)


_DETECTOR_NAMES = {
    "ADWIN": "adwin",
    "DDM": "ddm",
    "EDDM": "eddm",
    "HDDM_A": "hddm_a",
    "HDDM_W": "hddm_w",
    "KSWIN": "kswin",
    "PageHinkley": "page_hinkley",
    "StandardizedPageHinkley": "page_hinkley",
    "NumericPSI": "psi",
    "CategoricalPSI": "psi",
    "WindowedAccuracy": "windowed_accuracy",
    "WindowedMAE": "windowed_mae",
    "WindowedRMSE": "windowed_rmse",
    "ClassificationMetrics": "classification_metrics",
    "BaselineDrop": "baseline_drop",
    "ExpectedAccuracy": "expected_accuracy",
    "LatencyQuantile": "latency_quantile",
    "DataQualityRates": "data_quality",
}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _detector(det: Any, signal: str | None) -> dict[str, Any]:
    name = type(det).__name__
    out: dict[str, Any] = {"detector": _DETECTOR_NAMES.get(name, name.lower())}
    if signal is not None:
        out["signal"] = signal
    try:
        stats = det.stats()
    except Exception as exc:  # a detector without evidence yet
        stats = {"error": repr(exc)}
    out.update({k: _finite(v) for k, v in stats.items()})
    for flag in ("drift_detected", "warning_detected"):
        if isinstance(getattr(det, flag, None), bool):
            out[flag] = getattr(det, flag)
    return out


def detector_states(model: ModelState) -> dict[str, dict[str, Any]]:
    """Every detector the model has, by role (``error``, ``output``, ``feature:<name>`` ...)."""
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if hasattr(value, "stats"):
            signal = None
            if f.name == "error":
                signal = "error_rate" if model.task == "classification" else "abs_error"
            elif f.name == "output":
                signal = model.output_signal
            out[f.name] = _detector(value, signal)
        elif isinstance(value, dict):
            for name, det in sorted(value.items()):
                if hasattr(det, "stats"):
                    role = "feature" if f.name == "features" else f.name
                    out[f"{role}:{name}"] = _detector(det, f"feature:{name}")
    return out


def model_status(partition: int, model: ModelState) -> dict[str, Any]:
    """Counters, metrics, alert levels and detector states of one model."""
    return {
        **model.summary(),
        "partition": partition,
        "model_version": model.model_version,
        "levels": dict(model.levels),
        "detectors": detector_states(model),
    }


def read_model_summaries(redis_url: str, prefix: str, group: str) -> list[dict[str, Any]]:
    """Counters and windowed metrics per model, as plain dicts."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [m.summary() for m in read_models(client, prefix, group)]
    finally:
        client.close()


def kafka_end_offsets(
    options: Mapping[str, Any], topics: Mapping[str, str], timeout_s: float = 10.0
) -> dict[tuple[str, int], int]:
    """High watermarks of the input topics, keyed by (kind, partition); kind -> topic name."""
    from kafka import KafkaConsumer, TopicPartition

    timeout_ms = int(timeout_s * 1000)
    settings: dict[str, Any] = {**options, "enable_auto_commit": False}
    defaults = getattr(KafkaConsumer, "DEFAULT_CONFIG", {})
    for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if key in defaults:
            settings[key] = timeout_ms
    consumer = KafkaConsumer(**settings)
    try:
        tps: dict[TopicPartition, tuple[str, int]] = {}
        for kind, topic in topics.items():
            for p in consumer.partitions_for_topic(topic) or ():
                tps[TopicPartition(topic, p)] = (kind, p)
        if not tps:
            return {}
        ends = {
            tp: int(o) for tp, o in consumer.end_offsets(list(tps), timeout_ms=timeout_ms).items()
        }
        # Some brokers (Tansu) answer ListOffsets with the last batch's base offset + 1; the high
        # watermark of a fetch from there is exact, so refine with one fetch per partition.
        fetchable = [tp for tp, end in ends.items() if end > 0]
        if fetchable:
            consumer.assign(fetchable)
            for tp in fetchable:
                consumer.seek(tp, ends[tp] - 1)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=200, max_records=1)
                if all(consumer.highwater(tp) is not None for tp in fetchable):
                    break
            for tp in fetchable:
                high = consumer.highwater(tp)
                if high is not None:
                    ends[tp] = max(ends[tp], int(high))
        return {tps[tp]: offset for tp, offset in ends.items()}
    finally:
        consumer.close()
