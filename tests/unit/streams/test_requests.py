"""Retrain and review requests from the processor core: when they are raised, their rate limits,
their state across checkpoints, and their determinism (no broker, no Redis)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest

from detectors import StateDecodeError
from streams.alerts import Alert, SourcePosition
from streams.config import Config, RetrainRequestSettings, parse_config
from streams.model_state import MODEL_STATE_VERSION, ModelState
from streams.processor import BatchResult, PartitionState, Processor, SourceRecord
from streams.requests import request_id
from streams.retrain import RetrainDecision, RetrainPolicy, RetrainRequest
from streams.review import sample_point
from tests.unit.streams.crashes import apply_with_crashes

T0 = 1_700_000_000_000
STEP_MS = 1_000  # one prediction a second (event time)
HOUR_MS = 3_600_000


def config(**detection: Any) -> Config:
    return parse_config({"detection": {"cooldown_events": 200, **detection}})


def classifier_records(
    correct: Sequence[bool],
    scores: Sequence[float] | None = None,
    model_id: str = "m",
    features: bool = False,
) -> list[SourceRecord]:
    """A prediction and its label per outcome, interleaved; event time STEP_MS apart."""
    out = []
    for i, ok in enumerate(correct):
        ts = T0 + i * STEP_MS
        score = 0.9 if scores is None else float(scores[i])
        prediction = int(score > 0.5)
        event: dict[str, Any] = {
            "model_id": model_id,
            "prediction_id": f"{model_id}-{i}",
            "prediction": prediction,
            "score": score,
            "timestamp": ts,
            "model_version": "v7",
        }
        if features:
            event["features"] = {"x": i % 7, "plan": "pro"}
        label = {
            "model_id": model_id,
            "prediction_id": f"{model_id}-{i}",
            "label": prediction if ok else 1 - prediction,
            "timestamp": ts,
        }
        key = model_id.encode()
        out.append(SourceRecord("predictions", 0, i, key, orjson.dumps(event), ts))
        out.append(SourceRecord("labels", 0, i, key, orjson.dumps(label), ts))
    return out


def periodic(phases: Sequence[tuple[int, int, int]]) -> list[bool]:
    """Exact error rates: per phase (period, wrong per period, outcomes)."""
    return [i % period >= wrong for period, wrong, n in phases for i in range(n)]


def concept_drift_outcomes(seed: int = 3) -> list[bool]:
    """95 % right, then 55 % right: concept drift, and accuracy far below the critical level."""
    rng = np.random.default_rng(seed)
    return [bool(ok) for ok in rng.random(6000) < np.repeat([0.95, 0.55], 3000)]


def run(
    cfg: Config, recs: list[SourceRecord], batch: int | None = None
) -> tuple[PartitionState, BatchResult]:
    """Apply ``recs`` to fresh state (in batches of ``batch``); everything they produced."""
    processor = Processor(cfg)
    part = processor.new_partition(0)
    total = BatchResult()
    size = batch or len(recs)
    for start in range(0, len(recs), size):
        last = start + size >= len(recs)
        out = processor.apply(
            part, recs[start : start + size], predictions_caught_up=last, labels_caught_up=last
        )
        total.alerts += out.alerts
        total.retrain_requests += out.retrain_requests
        total.review_requests += out.review_requests
        total.counts.update(out.counts)
    return part, total


def triggers(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if RetrainPolicy.triggers(a)]


# -- retrain requests -------------------------------------------------------------------------

RETRAIN_ON = {"retrain_requests": {"enabled": True, "cooldown_ms": 86_400_000}}


def test_concept_drift_raises_one_retrain_request_with_its_evidence() -> None:
    part, out = run(config(**RETRAIN_ON), classifier_records(concept_drift_outcomes()))
    drift = [a for a in out.alerts if a.type == "concept_drift"]
    assert drift, "the scenario must raise concept drift"
    assert len(triggers(out.alerts)) >= 2  # drift and critical accuracy: the cooldown holds back
    [request] = out.retrain_requests
    assert out.counts["retrain_requests"] == 1
    assert out.counts["retrain_suppressed_by_cooldown"] >= 1
    first = triggers(out.alerts)[0]
    assert request.alerts[0] == first and first.type == "concept_drift"
    assert int(first.prediction_id.split("-")[1]) >= 3000
    record = orjson.loads(request.to_json(T0 + 10**9))
    assert record["v"] == 1 and record["type"] == "retrain"
    assert record["model_id"] == "m" and record["model_version"] == "v7"
    assert record["reasons"] == ["concept_drift"]
    assert record["alert_ids"] == [first.alert_id]
    evidence = record["alerts"][0]
    assert evidence["alert_id"] == first.alert_id and evidence["signal"] == "error_rate"
    assert evidence["value"] == first.value and evidence["threshold"] == first.threshold
    assert evidence["stats"]["mean_after"] > evidence["stats"]["mean_before"]
    assert record["counters"]["joined"] > 3000 and record["counters"]["predictions"] > 3000
    assert record["counters"]["retrain_requests"] == 1
    assert record["window_metric"]["name"] == "accuracy"
    assert record["window_metric"]["value"] < 0.95
    assert record["observed_at"] == evidence["observed_at"]
    assert (
        record["cooldown_ms"] == 86_400_000 and record["next_request_from"] > record["observed_at"]
    )
    assert "retraining requested" in record["message"]
    assert part.models["m"].retrain_last_ms == first.observed_at_ms
    assert part.models["m"].counters["retrain_requests"] == 1


def test_critical_performance_requests_retraining_and_warnings_do_not() -> None:
    cfg = config(
        concept_drift={"enabled": False},
        performance={"window": 200, "min_samples": 100, "min_accuracy": 0.8},
        **RETRAIN_ON,
    )
    # 95 % right, 75 % (warning), 95 % (re-armed), 60 % (critical)
    warn_only = periodic([(20, 1, 600), (4, 1, 600), (20, 1, 600)])
    _, quiet = run(cfg, classifier_records(warn_only, features=True))
    assert {a.severity for a in quiet.alerts} == {"warning"}
    assert quiet.retrain_requests == [] and quiet.counts["retrain_requests"] == 0

    _, out = run(cfg, classifier_records([*warn_only, *periodic([(5, 2, 600)])], features=True))
    critical = [a for a in out.alerts if a.severity == "critical"]
    assert [(a.type, a.signal) for a in critical] == [("performance", "accuracy")]
    [request] = out.retrain_requests
    assert request.reasons == ["critical_performance"]
    assert [a.alert_id for a in request.alerts] == [critical[0].alert_id]
    assert request.window_metric is not None and request.window_metric["value"] < 0.7


def test_no_retrain_requests_and_no_state_when_disabled() -> None:
    part, out = run(config(), classifier_records(concept_drift_outcomes()))
    assert triggers(out.alerts) and out.retrain_requests == []
    assert part.models["m"].retrain_last_ms is None
    assert part.models["m"].counters["retrain_requests"] == 0


def test_cooldown_in_event_time_spaces_the_requests() -> None:
    recs = classifier_records(concept_drift_outcomes())
    _, every = run(config(retrain_requests={"enabled": True, "cooldown_ms": 0}), recs)
    trigger_times = sorted({a.observed_at_ms for a in triggers(every.alerts)})
    # one request per triggering event: concept drift, then critical accuracy 344 s later
    assert [r.observed_at_ms for r in every.retrain_requests] == trigger_times
    assert len(trigger_times) >= 2
    kept_by_cooldown = {}
    for minutes in (5, 10):
        cooldown = minutes * 60_000
        _, spaced = run(config(retrain_requests={"enabled": True, "cooldown_ms": cooldown}), recs)
        times = [r.observed_at_ms for r in spaced.retrain_requests]
        assert all(b - a >= cooldown for a, b in itertools.pairwise(times))
        kept: list[int] = []  # what a greedy event-time cooldown keeps
        for t in trigger_times:
            if not kept or t >= kept[-1] + cooldown:
                kept.append(t)
        assert times == kept
        assert spaced.counts["retrain_suppressed_by_cooldown"] == len(trigger_times) - len(kept)
        kept_by_cooldown[minutes] = len(times)
    assert kept_by_cooldown[5] > kept_by_cooldown[10] >= 1


def test_alerts_of_one_event_share_one_request() -> None:
    policy = RetrainPolicy()
    model = ModelState("m", task="classification")
    settings = RetrainRequestSettings(enabled=True, cooldown_ms=1000)
    pos = SourcePosition("labels", 0, 42)
    requests: list[RetrainRequest] = []
    drift = make_alert("concept_drift", "warning", "error_rate", T0)
    perf = make_alert("performance", "critical", "accuracy", T0)
    assert policy.consider(model, settings, drift, pos, requests) is RetrainDecision.REQUESTED
    assert policy.consider(model, settings, perf, pos, requests) is RetrainDecision.ADDED_TO_REQUEST
    [request] = requests
    assert request.alerts == (drift, perf)
    assert request.reasons == ["concept_drift", "critical_performance"]
    assert request.request_id == request_id("retrain", "m", pos)


def test_retrain_policy_cooldown_boundaries_and_time_going_backwards() -> None:
    policy = RetrainPolicy()
    model = ModelState("m", task="classification")
    settings = RetrainRequestSettings(enabled=True, cooldown_ms=1000)
    requests: list[RetrainRequest] = []

    def consider(ts: int, offset: int, severity: str = "critical") -> RetrainDecision:
        alert = make_alert("performance", severity, "accuracy", ts)
        return policy.consider(
            model, settings, alert, SourcePosition("labels", 0, offset), requests
        )

    assert consider(T0, 1, "warning") is RetrainDecision.NOT_A_TRIGGER
    assert consider(T0, 2) is RetrainDecision.REQUESTED
    assert consider(T0 + 999, 3) is RetrainDecision.COOLDOWN
    assert consider(T0 - 5_000, 4) is RetrainDecision.COOLDOWN  # older than the last request
    assert consider(T0 + 1000, 5) is RetrainDecision.REQUESTED
    assert [r.observed_at_ms for r in requests] == [T0, T0 + 1000]
    assert model.counters["retrain_requests"] == 2


def make_alert(alert_type: Any, severity: Any, signal: str, observed_ms: int) -> Alert:
    return Alert(
        alert_id=f"{alert_type}-{signal}-{observed_ms}",
        type=alert_type,
        model_id="m",
        model_version=None,
        signal=signal,
        detector="threshold",
        severity=severity,
        prediction_id="p",
        observed_at_ms=observed_ms,
        value=0.5,
        threshold=0.8,
        window=200,
        stats={},
        message="m: something happened.",
    )


def test_retrain_request_ids_do_not_depend_on_batching() -> None:
    cfg = config(retrain_requests={"enabled": True, "cooldown_ms": 0})
    recs = classifier_records(concept_drift_outcomes(5))
    _, whole = run(cfg, recs)
    _, batched = run(cfg, recs, batch=333)
    assert whole.retrain_requests
    assert [r.request_id for r in batched.retrain_requests] == [
        r.request_id for r in whole.retrain_requests
    ]
    assert [r.to_dict(0) for r in batched.retrain_requests] == [
        r.to_dict(0) for r in whole.retrain_requests
    ]


# -- checkpoints ------------------------------------------------------------------------------


BOTH_ON = {
    "retrain_requests": {"enabled": True, "cooldown_ms": 30 * 60_000},
    "review_requests": {
        "enabled": True,
        "margin": 0.1,
        "max_per_window": 4,
        "window_ms": 60_000,
    },
}


def test_requests_survive_checkpoint_restore_and_crashes() -> None:
    cfg = config(**BOTH_ON)
    rng = np.random.default_rng(11)
    recs = classifier_records(concept_drift_outcomes(7), scores=rng.random(6000).tolist())
    ref_part, ref = run(cfg, recs)
    assert len(ref.retrain_requests) >= 1 and len(ref.review_requests) > 100
    for seed in (1, 2, 3):
        part, results = apply_with_crashes(Processor(cfg), recs, seed)
        retrain = [r.request_id for result in results for r in result.retrain_requests]
        review = [r.request_id for result in results for r in result.review_requests]
        assert len(review) > len(ref.review_requests)  # the crashed batches' were delivered too
        # redelivered after a crash at most; never a request the uninterrupted run lacks
        assert set(retrain) == {r.request_id for r in ref.retrain_requests}
        assert set(review) == {r.request_id for r in ref.review_requests}
        model, ref_model = part.models["m"], ref_part.models["m"]
        assert model.counters == ref_model.counters
        assert model.retrain_last_ms == ref_model.retrain_last_ms
        assert (model.review_window, model.review_taken) == (
            ref_model.review_window,
            ref_model.review_taken,
        )


def test_model_state_encodes_request_state_strictly() -> None:
    model = ModelState("m", task="classification")
    model.retrain_last_ms, model.review_window, model.review_taken = T0, 472_222, 3
    model.counters["retrain_requests"], model.counters["review_requests"] = 1, 9
    back = ModelState.decode(model.encode())
    assert (back.retrain_last_ms, back.review_window, back.review_taken) == (T0, 472_222, 3)
    assert back.counters == model.counters
    assert ModelState.decode(ModelState("n").encode()).retrain_last_ms is None

    import msgpack

    body = msgpack.unpackb(model.encode()[1:], raw=False)
    for key, bad in (("rt", "soon"), ("rt", 1.5), ("rv", [1]), ("rv", [1, True]), ("rv", None)):
        blob = bytes([MODEL_STATE_VERSION]) + msgpack.packb({**body, key: bad})
        with pytest.raises(StateDecodeError):
            ModelState.decode(blob)
    missing = {k: v for k, v in body.items() if k != "rv"}
    with pytest.raises(StateDecodeError):
        ModelState.decode(bytes([MODEL_STATE_VERSION]) + msgpack.packb(missing))
    with pytest.raises(StateDecodeError, match="unknown version 1"):
        ModelState.decode(bytes([1]) + msgpack.packb(body))


# -- review requests --------------------------------------------------------------------------

REVIEW = {"enabled": True, "threshold": 0.5, "margin": 0.05, "max_per_window": 1000}


def uniform_scores(n: int, seed: int = 0) -> list[float]:
    return [float(s) for s in np.random.default_rng(seed).random(n)]


def test_review_picks_exactly_the_low_confidence_predictions() -> None:
    scores = uniform_scores(3000)
    scores[:4] = [0.45, 0.55, 0.449, 0.551]  # the bounds are inclusive
    part, out = run(
        config(review_requests=REVIEW), classifier_records([True] * 3000, scores, features=True)
    )
    expected = [f"m-{i}" for i, s in enumerate(scores) if 0.45 <= s <= 0.55]
    assert [r.prediction_id for r in out.review_requests] == expected
    assert {"m-0", "m-1"} <= set(expected) and not {"m-2", "m-3"} & set(expected)
    assert (
        out.counts["review_requests"]
        == len(expected)
        == part.models["m"].counters["review_requests"]
    )
    record = orjson.loads(out.review_requests[0].to_json(T0))
    assert record["v"] == 1 and record["type"] == "review"
    assert record["model_id"] == "m" and record["model_version"] == "v7"
    assert record["prediction_id"] == "m-0" and record["score"] == 0.45
    assert record["prediction"] == 0 and record["features"] == {"x": 0, "plan": "pro"}
    assert record["timestamp"] == T0 and record["observed_at"] == "2023-11-14T22:13:20.000Z"
    assert record["reason"] == "low_confidence"
    assert (record["threshold"], record["margin"]) == (0.5, 0.05)
    assert record["label_with"] == {
        "topic": "labels",
        "key": "m",
        "event": {"model_id": "m", "prediction_id": "m-0", "label": None},
    }
    assert record["label_by"] == "2023-11-15T22:13:20.000Z"  # timestamp + join.ttl_ms
    assert "labels" in record["message"] and "m-0" in record["message"]
    assert record["request_id"] == request_id("review", "m", SourcePosition("predictions", 0, 0))


def test_review_rate_limit_per_event_time_window() -> None:
    cfg = config(
        review_requests={**REVIEW, "margin": 0.2, "max_per_window": 3, "window_ms": 60_000}
    )
    scores = uniform_scores(3000, seed=1)
    _, out = run(cfg, classifier_records([True] * 3000, scores))
    per_window = Counter((r.timestamp_ms // 60_000) for r in out.review_requests)
    candidates: Counter[int] = Counter()
    for i, s in enumerate(scores):
        if 0.3 <= s <= 0.7:
            candidates[(T0 + i * STEP_MS) // 60_000] += 1
    # the first three candidates of every minute, no more
    assert per_window == {w: min(3, n) for w, n in candidates.items()}
    assert out.counts["review_rate_limited"] == sum(max(0, n - 3) for n in candidates.values())
    first_of: dict[int, list[str]] = {}
    for i, s in enumerate(scores):
        w = (T0 + i * STEP_MS) // 60_000
        if 0.3 <= s <= 0.7 and len(first_of.setdefault(w, [])) < 3:
            first_of[w].append(f"m-{i}")
    assert [r.prediction_id for r in out.review_requests] == [
        pid for w in sorted(first_of) for pid in first_of[w]
    ]


def test_review_sample_rate_takes_a_fixed_hash_chosen_fraction() -> None:
    cfg = config(review_requests={**REVIEW, "margin": 0.5, "sample_rate": 0.25})
    _, out = run(cfg, classifier_records([True] * 4000, uniform_scores(4000, seed=2)))
    picked = [r.prediction_id for r in out.review_requests]
    assert picked == [f"m-{i}" for i in range(4000) if sample_point("m", f"m-{i}") < 0.25]
    assert 0.2 < len(picked) / 4000 < 0.3


def test_review_requests_are_identical_on_replay_whatever_the_batching() -> None:
    cfg = config(review_requests={**REVIEW, "max_per_window": 2, "window_ms": 30_000})
    recs = classifier_records([True] * 3000, uniform_scores(3000, seed=4), features=True)
    _, first = run(cfg, recs)
    _, again = run(cfg, recs)
    _, batched = run(cfg, recs, batch=257)
    assert first.review_requests
    expected = [r.to_dict(T0) for r in first.review_requests]
    assert [r.to_dict(T0) for r in again.review_requests] == expected
    assert [r.to_dict(T0) for r in batched.review_requests] == expected
    assert [r.to_json(T0) for r in again.review_requests] == [
        r.to_json(T0) for r in first.review_requests
    ]


def test_no_review_requests_for_regressors_unscored_or_when_disabled() -> None:
    regress = [
        SourceRecord(
            "predictions",
            0,
            i,
            b"r",
            orjson.dumps({"model_id": "r", "prediction_id": f"r-{i}", "prediction": 0.5}),
            T0 + i,
        )
        for i in range(300)
    ]
    _, out = run(config(review_requests=REVIEW), regress)
    assert out.review_requests == []
    recs = classifier_records([True] * 300, [0.5] * 300)
    part, off = run(config(), recs)
    assert off.review_requests == [] and off.retrain_requests == []
    assert part.models["m"].review_window == -1


def test_request_topics_are_those_enabled_by_defaults_or_an_override() -> None:
    assert parse_config({}).request_topics() == []
    assert config(**BOTH_ON).request_topics() == ["retrain-requests", "review-requests"]
    overridden = parse_config(
        {
            "kafka": {"topics": {"review_requests": "to-label"}},
            "overrides": [
                {"match": "fraud-*", "detection": {"review_requests": {"enabled": True}}}
            ],
        }
    )
    assert overridden.request_topics() == ["to-label"]
    assert overridden.detection_for("fraud-1").review_requests.enabled
    assert not overridden.detection_for("churn").review_requests.enabled
