"""The processor core without a broker: alerts, dead letters, determinism, checkpoint/restore."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson

from streams.config import parse_config
from streams.processor import PartitionState, Processor, SourceRecord
from tests.unit.streams.crashes import apply_with_crashes

T0 = 1_700_000_000_000
N, CHANGE = 3000, 1500
CONFIG = parse_config(
    {
        "detection": {
            "cooldown_events": 200,
            "prediction_drift": {"warmup": 200},
            "data_drift": {"warmup": 200},
            "performance": {"window": 200, "min_samples": 100},
        }
    }
)


def records(seed: int = 0, mix_seed: int | None = None) -> list[SourceRecord]:
    """Predictions and labels of three drifting models, interleaved as a broker might.

    ``mix_seed`` changes only how the two topics interleave, not their contents.
    """
    rng = np.random.default_rng(seed)
    preds: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for i in range(N):
        after = i >= CHANGE
        ts = T0 + i * 10
        s = float(rng.beta(2, 5))
        p = int(s > 0.5)
        preds.append(
            {
                "model_id": "concept",
                "prediction_id": f"c-{i}",
                "prediction": p,
                "score": s,
                "timestamp": ts,
            }
        )
        ok = rng.random() < (0.55 if after else 0.95)
        labels.append(
            {
                "model_id": "concept",
                "prediction_id": f"c-{i}",
                "label": p if ok else 1 - p,
                "timestamp": ts + 30,
            }
        )
        preds.append(
            {
                "model_id": "data",
                "prediction_id": f"d-{i}",
                "prediction": "a",
                "features": {"x": float(rng.normal(2.0 if after else 0.0, 1))},
                "timestamp": ts,
            }
        )
        y = float(rng.normal(125 if after else 100, 10))
        preds.append(
            {"model_id": "regress", "prediction_id": f"r-{i}", "prediction": y, "timestamp": ts}
        )
        labels.append(
            {"model_id": "regress", "prediction_id": f"r-{i}", "label": y + 1, "timestamp": ts + 30}
        )
    out: list[SourceRecord] = []
    mix = np.random.default_rng(seed if mix_seed is None else mix_seed + 1000)
    p_off = l_off = 0
    pi = li = 0
    while pi < len(preds) or li < len(labels):
        if li >= len(labels) or (pi < len(preds) and mix.random() < 0.6):
            e = preds[pi]
            out.append(
                SourceRecord(
                    "predictions", 0, p_off, e["model_id"].encode(), orjson.dumps(e), e["timestamp"]
                )
            )
            pi, p_off = pi + 1, p_off + 1
        else:
            e = labels[li]
            out.append(
                SourceRecord(
                    "labels", 0, l_off, e["model_id"].encode(), orjson.dumps(e), e["timestamp"]
                )
            )
            li, l_off = li + 1, l_off + 1
    return out


def run(batches: list[list[SourceRecord]]) -> tuple[PartitionState, list[Any]]:
    processor = Processor(CONFIG)
    part = processor.new_partition(0)
    alerts = []
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        alerts += processor.apply(
            part, batch, predictions_caught_up=last, labels_caught_up=last
        ).alerts
    return part, alerts


def test_each_alert_type_after_its_change_and_none_before() -> None:
    part, alerts = run([records()])
    found = {(a.model_id, a.type, a.signal) for a in alerts}
    assert ("concept", "concept_drift", "error_rate") in found
    assert ("concept", "performance", "accuracy") in found
    assert ("data", "data_drift", "feature:x") in found
    assert ("regress", "prediction_drift", "prediction") in found
    for a in alerts:
        assert int(a.prediction_id.split("-")[1]) >= CHANGE, a
    c = part.models["concept"].counters
    assert c["predictions"] == N and c["labels"] == N and c["joined"] == N
    assert part.models["regress"].counters["joined"] == N
    assert part.join.pending == N  # the unlabelled "data" predictions wait for their TTL


def test_same_input_same_alert_ids_whatever_the_batching() -> None:
    recs = records(1)
    _, one = run([recs])
    rng = random.Random(5)
    cuts = sorted(rng.sample(range(1, len(recs)), 40))
    batches = [recs[a:b] for a, b in zip([0, *cuts], [*cuts, len(recs)], strict=True)]
    _, many = run(batches)
    assert [a.alert_id for a in many] == [a.alert_id for a in one]


def test_same_alert_ids_whatever_the_interleaving_of_the_two_topics() -> None:
    _, a = run([records(4, mix_seed=1)])
    _, b = run([records(4, mix_seed=2)])
    assert a and sorted(x.alert_id for x in a) == sorted(x.alert_id for x in b)


def test_crash_between_checkpoints_replays_to_identical_state() -> None:
    """Checkpoint, 'crash' (drop memory), reload, re-read from the last checkpoint."""
    recs = records(2)
    _, reference = run([recs])
    ref_part, _ = run([recs])

    part, results = apply_with_crashes(Processor(CONFIG), recs, seed=9)
    ids = {a.alert_id for result in results for a in result.alerts}
    assert {m: s.counters for m, s in part.models.items()} == {
        m: s.counters for m, s in ref_part.models.items()
    }
    assert ids == {a.alert_id for a in reference}


def test_malformed_records_become_dead_letters_and_valid_neighbours_apply() -> None:
    processor = Processor(CONFIG)
    part = processor.new_partition(3)
    good = {"model_id": "m", "prediction_id": "a", "prediction": 1, "score": 0.5}
    recs = [
        SourceRecord("predictions", 3, 0, b"m", orjson.dumps(good), T0),
        SourceRecord("predictions", 3, 1, b"m", b"\xff{nope", T0),
        SourceRecord(
            "predictions",
            3,
            2,
            b"m",
            orjson.dumps([{**good, "prediction_id": "b"}, {**good, "score": "x"}]),
            T0,
        ),
    ]
    result = processor.apply(part, recs)
    assert part.models["m"].counters["predictions"] == 2
    assert len(result.dead_letters) == 2
    first = orjson.loads(result.dead_letters[0][1])
    assert first["offset"] == 1 and first["partition"] == 3 and "UTF-8" in first["reason"]
    assert "event[1]: score" in orjson.loads(result.dead_letters[1][1])["reason"]


def test_records_at_or_below_applied_offsets_are_skipped() -> None:
    processor = Processor(CONFIG)
    part = processor.new_partition(0)
    recs = records(3)[:200]
    processor.apply(part, recs)
    before = {m: dict(s.counters) for m, s in part.models.items()}
    result = processor.apply(part, recs)
    assert result.counts["skipped"] == len(recs)
    assert {m: dict(s.counters) for m, s in part.models.items()} == before


def test_performance_pages_on_entering_warning_and_critical_then_rearms() -> None:
    config = parse_config(
        {
            "detection": {
                "cooldown_events": 0,
                "concept_drift": {"enabled": False},
                "performance": {
                    "window": 200,
                    "min_samples": 100,
                    "min_accuracy": 0.8,
                    "critical_margin": 0.1,
                },
            }
        }
    )
    # exact rates: 19/20 right, 3/4 right, 3/5 right, 19/20 right, 3/4 right
    phases = [(20, 1, 400), (4, 1, 400), (5, 2, 600), (20, 1, 400), (4, 1, 400)]
    correct = [i % period >= wrong for period, wrong, n in phases for i in range(n)]
    processor = Processor(config)
    part = processor.new_partition(0)
    preds, labels = [], []
    for i, ok in enumerate(correct):
        preds.append(
            SourceRecord(
                "predictions",
                0,
                i,
                b"m",
                orjson.dumps(
                    {
                        "model_id": "m",
                        "prediction_id": f"m-{i}",
                        "prediction": 1,
                        "score": 0.9,
                        "timestamp": T0 + i,
                    }
                ),
                T0 + i,
            )
        )
        labels.append(
            SourceRecord(
                "labels",
                0,
                i,
                b"m",
                orjson.dumps(
                    {
                        "model_id": "m",
                        "prediction_id": f"m-{i}",
                        "label": int(ok),
                        "timestamp": T0 + i,
                    }
                ),
                T0 + i,
            )
        )
    alerts = processor.apply(
        part,
        [r for pair in zip(preds, labels, strict=True) for r in pair],
        predictions_caught_up=True,
        labels_caught_up=True,
    ).alerts
    baseline = [a for a in alerts if a.detector == "baseline"]
    alerts = [a for a in alerts if a.detector == "threshold"]
    assert [a.severity for a in alerts] == ["warning", "critical", "warning"]
    # the drop from the model's own 95% baseline pages once per episode as well
    assert baseline and all(int(a.prediction_id.split("-")[1]) >= 400 for a in baseline)
    starts = [400, 800, 1800]
    for alert, start in zip(alerts, starts, strict=True):
        index = int(alert.prediction_id.split("-")[1])
        assert start <= index < start + 300, (alert.severity, index)


def test_regressor_concept_drift_uses_page_hinkley_on_absolute_error() -> None:
    rng = np.random.default_rng(8)
    processor = Processor(parse_config({}))
    part = processor.new_partition(0)
    recs = []
    for i in range(6000):
        y = float(rng.normal(50, 5))
        noise = float(rng.normal(0, 1 if i < 3000 else 3))
        ts = T0 + i
        recs.append(
            SourceRecord(
                "predictions",
                0,
                i,
                b"r",
                orjson.dumps(
                    {"model_id": "r", "prediction_id": f"r-{i}", "prediction": y, "timestamp": ts}
                ),
                ts,
            )
        )
        recs.append(
            SourceRecord(
                "labels",
                0,
                i,
                b"r",
                orjson.dumps(
                    {
                        "model_id": "r",
                        "prediction_id": f"r-{i}",
                        "label": y + noise,
                        "timestamp": ts,
                    }
                ),
                ts,
            )
        )
    recs.sort(key=lambda r: (r.timestamp_ms, r.topic))
    alerts = processor.apply(part, recs, predictions_caught_up=True, labels_caught_up=True).alerts
    concept = [a for a in alerts if a.type == "concept_drift"]
    assert [(a.signal, a.detector) for a in concept] == [("abs_error", "page_hinkley")]
    assert 3000 <= int(concept[0].prediction_id.split("-")[1]) < 3100
    others = [a for a in alerts if a.type != "concept_drift"]
    # the MAE also rose above the model's own baseline: a performance alert, after the change
    assert [(a.signal, a.detector) for a in others] == [("mae", "baseline")]
    assert int(others[0].prediction_id.split("-")[1]) >= 3000
