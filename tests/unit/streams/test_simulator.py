"""The simulator: deterministic, drifts where and how it says, labels after their predictions."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(_ROOT))

from streams.simulator import (  # noqa: E402
    MODEL_IDS,
    Injection,
    SimEvent,
    Simulation,
    evaluate_alerts,
    observed_ms,
    prediction_index,
    write_jsonl,
)

RATE, DURATION = 200, 40.0  # 8000 predictions per model, change at 4000


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(RATE, DURATION, seed=11)


@pytest.fixture(scope="module")
def events(sim: Simulation) -> list[SimEvent]:
    return list(sim)


def _predictions(events: list[SimEvent], model: str) -> list[dict[str, Any]]:
    return [e.event for e in events if e.kind == "prediction" and e.event["model_id"] == model]


def _labels(events: list[SimEvent], model: str) -> dict[str, Any]:
    return {
        e.event["prediction_id"]: e.event["label"]
        for e in events
        if e.kind == "label" and e.event["model_id"] == model
    }


def _split(sim: Simulation, rows: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """Rows before and at/after the change point (by the index in their prediction_id)."""
    before: list[Any] = []
    after: list[Any] = []
    for r in rows:
        index = prediction_index(r["prediction_id"])
        assert index is not None
        (before if index < sim.change_index else after).append(r)
    return before, after


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = list(Simulation(50, 10, seed=3))
    b = list(Simulation(50, 10, seed=3))
    c = list(Simulation(50, 10, seed=4))
    assert a == b
    assert a != c
    assert len(a) == 2 * 3 * 500


def test_counts_ids_and_injections(sim: Simulation, events: list[SimEvent]) -> None:
    assert sim.n_predictions == RATE * DURATION
    assert sim.change_index == sim.n_predictions // 2
    for model in MODEL_IDS:
        preds = _predictions(events, model)
        assert [p["prediction_id"] for p in preds] == [
            f"{model}-{i:07d}" for i in range(sim.n_predictions)
        ]
        assert len(_labels(events, model)) == sim.n_predictions
        for p in preds[:50]:
            assert p["latency_ms"] >= 0 and isinstance(p["timestamp"], int)
            assert isinstance(p["model_version"], str)
    assert {(i.model_id, i.type, i.signal) for i in sim.injections} == {
        ("churn-classifier", "concept_drift", "error_rate"),
        ("fraud-detector", "data_drift", "feature:amount"),
        ("demand-regressor", "prediction_drift", "prediction"),
    }
    assert all(i.change_index == sim.change_index for i in sim.injections)
    first_drifted = {
        e.event["model_id"]: e.event["timestamp"]
        for e in events
        if e.kind == "prediction" and e.event["prediction_id"].endswith(f"-{sim.change_index:07d}")
    }
    assert {i.model_id: i.change_at_ms for i in sim.injections} == first_drifted


def test_events_are_in_time_order_and_labels_follow_their_prediction(
    sim: Simulation, events: list[SimEvent]
) -> None:
    times = [e.send_at for e in events]
    assert times == sorted(times)
    sent_at: dict[str, tuple[float, int]] = {}
    delays = []
    for e in events:
        pid = e.event["prediction_id"]
        if e.kind == "prediction":
            sent_at[pid] = (e.send_at, e.event["timestamp"])
        else:
            assert pid in sent_at, "label published before its prediction"
            delay = e.send_at - sent_at[pid][0]
            delays.append(delay)
            assert e.event["timestamp"] >= sent_at[pid][1]
    assert min(delays) >= 0.2 and max(delays) <= 3.0
    assert np.mean(delays) == pytest.approx(1.6, abs=0.1)


def test_churn_concept_drift_changes_accuracy_only(sim: Simulation, events: list[SimEvent]) -> None:
    preds = _predictions(events, "churn-classifier")
    labels = _labels(events, "churn-classifier")
    before, after = _split(sim, preds)

    def acc(rows: list[dict[str, Any]]) -> float:
        return float(np.mean([r["prediction"] == labels[r["prediction_id"]] for r in rows]))

    assert acc(before) == pytest.approx(0.92, abs=0.015)
    assert acc(after) == pytest.approx(0.70, abs=0.02)
    for name in ("score",):
        assert np.mean([r[name] for r in before]) == pytest.approx(
            np.mean([r[name] for r in after]), abs=0.01
        )
    for feature, sd in (("tenure", 6.0), ("monthly_spend", 15.0)):
        mb = np.mean([r["features"][feature] for r in before])
        ma = np.mean([r["features"][feature] for r in after])
        assert abs(mb - ma) < 0.1 * sd
    assert all(r["prediction"] == int(r["score"] > 0.5) for r in preds)


def test_fraud_data_drift_shifts_amount_not_score_or_accuracy(
    sim: Simulation, events: list[SimEvent]
) -> None:
    preds = _predictions(events, "fraud-detector")
    labels = _labels(events, "fraud-detector")
    before, after = _split(sim, preds)
    amount_b = np.array([r["features"]["amount"] for r in before])
    amount_a = np.array([r["features"]["amount"] for r in after])
    shift_in_sd = (amount_a.mean() - amount_b.mean()) / amount_b.std()
    assert shift_in_sd == pytest.approx(1.5, abs=0.1)
    assert abs(np.mean([r["score"] for r in before]) - np.mean([r["score"] for r in after])) < 0.01
    assert (
        abs(
            np.mean([r["features"]["hour"] for r in before])
            - np.mean([r["features"]["hour"] for r in after])
        )
        < 0.5
    )
    for rows in (before, after):
        acc = np.mean([r["prediction"] == labels[r["prediction_id"]] for r in rows])
        assert acc == pytest.approx(0.95, abs=0.015)


def test_demand_prediction_drift_keeps_the_error(sim: Simulation, events: list[SimEvent]) -> None:
    preds = _predictions(events, "demand-regressor")
    labels = _labels(events, "demand-regressor")
    before, after = _split(sim, preds)
    assert all("score" not in r and isinstance(r["prediction"], float) for r in preds)
    assert np.mean([r["prediction"] for r in before]) == pytest.approx(100, abs=1)
    assert np.mean([r["prediction"] for r in after]) == pytest.approx(115, abs=1)

    def mae(rows: list[dict[str, Any]]) -> float:
        return float(np.mean([abs(r["prediction"] - labels[r["prediction_id"]]) for r in rows]))

    assert mae(before) == pytest.approx(mae(after), rel=0.08)
    assert mae(before) == pytest.approx(5 * np.sqrt(2 / np.pi), rel=0.08)


def test_change_fraction_and_start_time() -> None:
    sim = Simulation(10, 100, change_fraction=0.25, start_ms=1_000_000)
    assert sim.change_index == 250
    first = next(iter(sim))
    assert first.send_at == 0.0 and first.event["timestamp"] == 1_000_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_model": 0, "duration_s": 1},
        {"rate_per_model": 1, "duration_s": 1, "change_fraction": 1.0},
        {"rate_per_model": 1, "duration_s": 1, "models": ["nope"]},
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Simulation(**kwargs)


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    sim = Simulation(20, 2, seed=5)
    path = tmp_path / "stream.jsonl"
    counts = write_jsonl(path, sim)
    assert counts == {"prediction": 120, "label": 120}
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [e.event for e in sim]


# -- scoring alerts against injections ----------------------------------------------------------

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z; one prediction per 10 ms in these tests
INJ = [
    Injection("churn-classifier", "concept_drift", "error_rate", 1000, START + 10_000),
    Injection("demand-regressor", "prediction_drift", "prediction", 1000, START + 10_000),
]


def _alert(
    aid: str, kind: str, model: str, index: int, detector: str = "d", at_ms: int | None = None
) -> dict[str, Any]:
    ms = START + 10 * index if at_ms is None else at_ms
    observed = f"2026-01-01T00:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"
    return {
        "alert_id": aid,
        "type": kind,
        "model_id": model,
        "signal": "s",
        "detector": detector,
        "prediction_id": f"{model}-{index:07d}",
        "observed_at": observed,
    }


def test_observed_ms_parses_rfc3339_and_epoch() -> None:
    assert observed_ms(_alert("a", "x", "m", 1000)) == START + 10_000
    assert observed_ms({"observed_at": 5}) == 5
    assert observed_ms({"observed_at": "garbage"}) is None
    assert observed_ms({}) is None


def test_evaluate_picks_the_earliest_matching_alert_and_dedupes() -> None:
    alerts = [
        _alert("a", "concept_drift", "churn-classifier", 1300, "adwin"),
        _alert("b", "concept_drift", "churn-classifier", 1200, "ddm"),
        _alert("a", "concept_drift", "churn-classifier", 1300, "adwin"),
        _alert("c", "performance", "churn-classifier", 1400, "threshold"),
        _alert("d", "prediction_drift", "demand-regressor", 1025),
    ]
    ev = evaluate_alerts(INJ, alerts)
    churn, demand = ev.results
    assert churn.detected and churn.index_delta == 200 and churn.alert is not None
    assert churn.alert["detector"] == "ddm"
    assert [a["alert_id"] for a in churn.related] == ["c"]
    assert demand.index_delta == 25 and demand.delay_s == pytest.approx(0.25)
    assert demand.delay_events == 25  # no rate given: the index difference
    assert ev.false_alarms == () and ev.passed
    assert ev.to_dict()["injections"][0]["related"][0]["detector"] == "threshold"


def test_label_driven_alert_on_an_earlier_prediction_counts_if_observed_after_change() -> None:
    # The label completing ADWIN's evidence belongs to prediction 990 but arrived (event time)
    # 1.5 s after the change, behind labels of drifted predictions: a detection, delay -10.
    late = _alert("a", "concept_drift", "churn-classifier", 990, "adwin", START + 11_500)
    ev = evaluate_alerts(INJ[:1], [late])
    assert ev.passed
    assert ev.results[0].index_delta == -10
    assert ev.results[0].delay_s == pytest.approx(1.5)
    # With the rate known, the delay counts the predictions made in those 1.5 s.
    with_rate = [dataclasses.replace(INJ[0], rate_per_model=100.0)]
    assert evaluate_alerts(with_rate, [late]).results[0].delay_events == 150
    # Observed before the change time, it is a false alarm.
    early = _alert("b", "concept_drift", "churn-classifier", 990, "adwin", START + 9_950)
    assert not evaluate_alerts(INJ[:1], [early]).passed


def test_evaluate_false_alarms_and_missed_drifts() -> None:
    alerts = [
        _alert("e", "concept_drift", "churn-classifier", 999),  # before the change
        _alert("f", "data_drift", "demand-regressor", 2000),  # wrong type
        _alert("g", "performance", "demand-regressor", 2000),  # not a concept-drift model
        _alert("h", "data_drift", "fraud-detector", 2000),  # no injection for the model
        {
            "alert_id": "i",
            "type": "concept_drift",
            "model_id": "churn-classifier",
            "prediction_id": "other-thing",
        },
    ]
    ev = evaluate_alerts(INJ, alerts)
    assert not ev.passed
    assert [r.detected for r in ev.results] == [False, False]
    assert [f.alert["alert_id"] for f in ev.false_alarms] == ["e", "f", "g", "h", "i"]
    assert "before the change" in ev.false_alarms[0].reason
