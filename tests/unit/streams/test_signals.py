"""The processor's per-signal alerts beyond the basic ones: PSI, data quality, latency, options."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from streams.config import parse_config
from streams.model_state import ModelState
from streams.processor import Processor, SourceRecord

T0 = 1_700_000_000_000


def predictions(events: list[dict[str, Any]], model: str = "m") -> list[SourceRecord]:
    return [
        SourceRecord(
            "predictions",
            0,
            i,
            model.encode(),
            orjson.dumps(
                {"model_id": model, "prediction_id": f"{model}-{i}", "timestamp": T0 + i, **e}
            ),
            T0 + i,
        )
        for i, e in enumerate(events)
    ]


def run(config: dict[str, Any], recs: list[SourceRecord]) -> tuple[Any, Any]:
    processor = Processor(parse_config(config))
    part = processor.new_partition(0)
    result = processor.apply(part, recs, predictions_caught_up=True, labels_caught_up=True)
    return part, result.alerts


def index(alert: Any) -> int:
    return int(alert.prediction_id.rsplit("-", 1)[1])


def test_categorical_feature_shift_raises_psi_data_drift() -> None:
    rng = np.random.default_rng(1)
    before = rng.choice(["a", "b", "c", "d"], 3000, p=[0.5, 0.3, 0.15, 0.05])
    after = rng.choice(["a", "b", "c", "d"], 2000, p=[0.2, 0.2, 0.3, 0.3])
    recs = predictions([{"prediction": 1, "features": {"plan": str(c)}} for c in [*before, *after]])
    part, alerts = run({}, recs)
    psi = [a for a in alerts if a.detector == "psi"]
    assert psi and psi[0].signal == "feature:plan" and psi[0].type == "data_drift"
    assert all(index(a) >= 3000 for a in psi)
    assert part.models["m"].psi["plan"].stats()["psi"] > 0.25


def test_missing_features_raise_a_data_quality_alert_once() -> None:
    events = [{"prediction": 1.0, "features": {"x": 1.0, "y": 2.0}} for _ in range(1000)]
    events += [{"prediction": 1.0, "features": {"x": None, "y": 2.0}} for _ in range(1000)]
    _, alerts = run({}, predictions(events))
    quality = [a for a in alerts if a.type == "data_quality"]
    assert [(a.signal, a.severity) for a in quality] == [("missing_rate", "warning")]
    assert index(quality[0]) >= 1000


def test_a_data_quality_level_re_arms_only_well_below_the_limit() -> None:
    """The alert carries the windowed rate; a rate that dips just under the limit (above half
    of it) keeps the level, so only a clean spell lets the next breach page again."""

    def phase(n: int, missing_every: int | None) -> list[dict[str, Any]]:
        return [
            {
                "prediction": 1.0,
                "features": {
                    "x": None if missing_every and i % missing_every == 0 else 1.0,
                    "y": 2.0,
                },
            }
            for i in range(n)
        ]

    # missing share of fields: 0, 0.1, 0.04 (under 0.05, above 0.025), 0.1, 0, 0.1
    events = phase(300, None) + phase(300, 5) + phase(600, 12) + phase(300, 5)
    events += phase(600, None) + phase(300, 5)
    config = {"detection": {"cooldown_events": 10, "data_quality": {"window": 100}}}
    _, alerts = run(config, predictions(events))
    quality = [a for a in alerts if a.type == "data_quality"]
    assert [index(a) // 100 for a in quality] == [3, 21]  # in the first and last bad phases
    assert all(a.value is not None and 0.05 < a.value <= 0.1 for a in quality)


def test_feature_type_change_counts_as_wrong_type() -> None:
    events = [{"prediction": 1.0, "features": {"age": 30}} for _ in range(500)]
    events += [{"prediction": 1.0, "features": {"age": "thirty"}} for _ in range(200)]
    _, alerts = run({}, predictions(events))
    assert [a.signal for a in alerts if a.type == "data_quality"] == ["wrong_type_rate"]


def test_latency_threshold_and_creep() -> None:
    rng = np.random.default_rng(2)
    lat = [*rng.lognormal(3, 0.2, 3000), *rng.lognormal(3.6, 0.2, 1000)]
    config = {"detection": {"latency": {"threshold_ms": 50}}}
    _, alerts = run(config, predictions([{"prediction": 1.0, "latency_ms": float(x)} for x in lat]))
    lat_alerts = {(a.detector, a.type) for a in alerts if a.signal == "latency_ms"}
    assert lat_alerts == {("threshold", "performance"), ("page_hinkley", "performance")}
    assert all(index(a) >= 3000 for a in alerts if a.signal == "latency_ms")


def test_expected_accuracy_pages_only_when_configured() -> None:
    rng = np.random.default_rng(3)
    scores = [*rng.uniform(0.9, 1.0, 1000), *rng.uniform(0.5, 0.7, 1000)]
    events = [{"prediction": 1, "score": float(s)} for s in scores]
    _, default = run({}, predictions(events))
    assert not [a for a in default if a.signal == "expected_accuracy"]
    _, opted = run(
        {"detection": {"performance": {"expected_accuracy": {"min_accuracy": 0.8}}}},
        predictions(events),
    )
    expected = [a for a in opted if a.signal == "expected_accuracy"]
    assert len(expected) == 1 and index(expected[0]) >= 1000


def test_concept_drift_detector_is_configurable() -> None:
    rng = np.random.default_rng(4)
    recs: list[SourceRecord] = []
    for i in range(6000):
        ts = T0 + i
        wrong = rng.random() < (0.1 if i < 3000 else 0.4)
        recs.append(
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
                        "timestamp": ts,
                    }
                ),
                ts,
            )
        )
        recs.append(
            SourceRecord(
                "labels",
                0,
                i,
                b"m",
                orjson.dumps(
                    {
                        "model_id": "m",
                        "prediction_id": f"m-{i}",
                        "label": 0 if wrong else 1,
                        "timestamp": ts,
                    }
                ),
                ts,
            )
        )
    part, alerts = run({"detection": {"concept_drift": {"detector": "hddm_a"}}}, recs)
    concept = [a for a in alerts if a.type == "concept_drift"]
    assert concept and {a.detector for a in concept} == {"hddm_a"}
    assert index(concept[0]) >= 3000
    assert type(part.models["m"].error).__name__ == "HDDM_A"


def test_model_state_with_every_detector_round_trips() -> None:
    rng = np.random.default_rng(5)
    events = [
        {
            "prediction": int(rng.random() < 0.5),
            "score": float(rng.random()),
            "latency_ms": float(rng.lognormal(3, 0.3)),
            "features": {
                "x": float(rng.normal()),
                "plan": str(rng.choice(["a", "b"])),
                "gone": None,
            },
        }
        for _ in range(1500)
    ]
    part, _ = run({}, predictions(events))
    model = part.models["m"]
    assert model.psi and model.quality and model.latency and model.expected
    blob = model.encode()
    restored = ModelState.decode(blob)
    assert restored.encode() == blob
    assert restored.summary() == model.summary()


def test_kswin_option_sees_a_variance_change_and_replays_identically() -> None:
    rng = np.random.default_rng(6)
    x = [*rng.normal(0, 1, 2000), *rng.normal(0, 3, 1000)]
    events = [{"prediction": 1.0, "features": {"x": float(v)}} for v in x]
    config = {
        "detection": {
            "data_drift": {"detector": "kswin", "kswin_alpha": 0.0001, "psi": {"enabled": False}}
        }
    }
    _, first = run(config, predictions(events))
    _, again = run(config, predictions(events))
    kswin = [a for a in first if a.detector == "kswin"]
    assert kswin and kswin[0].signal == "feature:x" and index(kswin[0]) >= 2000
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
