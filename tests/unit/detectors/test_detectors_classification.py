"""ClassificationMetrics equals a direct computation, windowed and cumulative; restores exactly."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import ClassificationMetrics, StateDecodeError, decode, encode
from tests.unit.detectors import statecheck

Outcome = tuple[Any, Any]


def binary_direct(outcomes: list[Outcome], positive: Any) -> dict[str, float | None]:
    tp = sum(t == positive and p == positive for t, p in outcomes)
    fp = sum(t != positive and p == positive for t, p in outcomes)
    fn = sum(t == positive and p != positive for t, p in outcomes)
    n = len(outcomes)
    return {
        "accuracy": sum(t == p for t, p in outcomes) / n if n else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
    }


def macro_direct(outcomes: list[Outcome]) -> dict[str, float | None]:
    """scikit-learn's macro averages (zero_division=0) over the labels present."""
    if not outcomes:
        return dict.fromkeys(("accuracy", "precision", "recall", "f1"))
    labels = {t for t, _ in outcomes} | {p for _, p in outcomes}
    precision, recall, f1 = [], [], []
    for c in labels:
        tp = sum(t == c and p == c for t, p in outcomes)
        pred = sum(p == c for _, p in outcomes)
        true = sum(t == c for t, _ in outcomes)
        pr = tp / pred if pred else 0.0
        rc = tp / true if true else 0.0
        precision.append(pr)
        recall.append(rc)
        f1.append(2 * pr * rc / (pr + rc) if pr + rc else 0.0)
    return {
        "accuracy": sum(t == p for t, p in outcomes) / len(outcomes),
        "precision": math.fsum(precision) / len(labels),
        "recall": math.fsum(recall) / len(labels),
        "f1": math.fsum(f1) / len(labels),
    }


def approx(d: dict[str, float | None]) -> dict[str, Any]:
    return {
        k: (None if v is None else pytest.approx(v, rel=1e-12, abs=1e-15)) for k, v in d.items()
    }


labels = st.sampled_from([0, 1, 2, "a", "b"])
outcome_lists = st.lists(st.tuples(labels, labels), max_size=120)


@settings(max_examples=60, deadline=None)
@given(outcomes=outcome_lists, window=st.integers(1, 30))
def test_binary_matches_direct_computation(outcomes: list[Outcome], window: int) -> None:
    m = ClassificationMetrics(window=window, positive=1)
    for i, (t, p) in enumerate(outcomes):
        m.update(t, p)
        recent = outcomes[max(0, i + 1 - window) : i + 1]
        assert m.window == binary_direct(recent, 1)  # exact: one division of integers
        assert m.cumulative == binary_direct(outcomes[: i + 1], 1)
        assert (m.n, m.window_n) == (i + 1, len(recent))
    if not outcomes:
        assert m.stats() == {"window_n": 0.0, "n": 0.0}


@settings(max_examples=60, deadline=None)
@given(outcomes=outcome_lists, window=st.integers(1, 30))
def test_multiclass_matches_macro_averages(outcomes: list[Outcome], window: int) -> None:
    m = ClassificationMetrics(window=window, positive=None)
    for i, (t, p) in enumerate(outcomes):
        m.update(t, p)
        recent = outcomes[max(0, i + 1 - window) : i + 1]
        assert m.window == approx(macro_direct(recent))
        assert m.cumulative == approx(macro_direct(outcomes[: i + 1]))


def test_long_runs_stay_exact() -> None:
    rng = random.Random(3)
    m = ClassificationMetrics(window=500)
    outcomes = [(rng.random() < 0.3, rng.random() < 0.35) for _ in range(50_000)]
    for t, p in outcomes:
        m.update(t, p)
    assert m.window == binary_direct(outcomes[-500:], True)
    assert m.cumulative == binary_direct(outcomes, True)


def test_a_drop_shows_in_the_window_first() -> None:
    rng = np.random.default_rng(8)
    m = ClassificationMetrics(window=500)
    for _ in range(5000):
        y = int(rng.random() < 0.5)
        m.update(y, y if rng.random() < 0.95 else 1 - y)
    for _ in range(500):
        y = int(rng.random() < 0.5)
        m.update(y, y if rng.random() < 0.7 else 1 - y)
    window, cumulative = m.window, m.cumulative
    assert window["accuracy"] == pytest.approx(0.7, abs=0.05)
    assert cumulative["accuracy"] == pytest.approx(0.927, abs=0.02)
    assert window["f1"] is not None and cumulative["f1"] is not None
    assert window["f1"] < cumulative["f1"] - 0.15


def test_undefined_values_are_none_and_left_out_of_stats() -> None:
    m = ClassificationMetrics(positive="spam")
    assert m.window == dict.fromkeys(("accuracy", "precision", "recall", "f1"))
    m.update("ham", "ham")
    assert m.window == {"accuracy": 1.0, "precision": None, "recall": None, "f1": None}
    assert set(m.stats()) == {"accuracy", "cumulative_accuracy", "window_n", "n"}
    m.update("spam", "ham")
    assert m.window["recall"] == 0.0 and m.window["precision"] is None
    assert m.window["f1"] == 0.0


def test_class_cap_folds_later_labels_together() -> None:
    m = ClassificationMetrics(positive=None, max_classes=3)
    for y in ["a", "b", "c", "d", "e", "f"]:
        m.update(y, y)
    assert m.classes == ["a", "b", "c"]
    m.update("d", "e")  # both fold into the overflow class, a true positive of it
    assert m.window["accuracy"] == 6 / 7  # but not a correct prediction
    assert m.window["recall"] == 1.0
    restored = decode(encode(m), ClassificationMetrics)
    assert restored.window == m.window and restored.classes == m.classes


def test_labels_are_checked_and_compare_by_equality() -> None:
    m = ClassificationMetrics(positive=True)
    m.update(1, 1.0)
    m.update(np.int64(1), np.bool_(True))
    assert m.window["precision"] == 1.0
    for bad in (None, math.nan, [1], b"x"):
        with pytest.raises(ValueError):
            m.update(bad, 1)  # type: ignore[arg-type]
    assert m.n == 2
    with pytest.raises(ValueError):
        ClassificationMetrics(window=0)
    for cap in (0, 2**40):
        with pytest.raises(ValueError):
            ClassificationMetrics(positive=None, max_classes=cap)


# --- state ---------------------------------------------------------------------------------


CASES = {
    "binary": lambda: ClassificationMetrics(window=7),
    "binary str": lambda: ClassificationMetrics(window=5, positive="b"),
    "multiclass": lambda: ClassificationMetrics(window=6, positive=None),
    "multiclass capped": lambda: ClassificationMetrics(window=4, positive=None, max_classes=2),
}


def feed(m: Any, outcome: Outcome) -> None:
    m.update(*outcome)


def observe(m: Any) -> tuple[Any, ...]:
    return (m.window, m.cumulative, m.n, m.window_n, m.stats(), m.classes)


@pytest.mark.parametrize("case", ["binary", "binary str", "multiclass", "multiclass capped"])
@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(outcome_lists, max_size=5))
def test_update_many_equals_updates_in_turn(case: str, chunks: list[list[Outcome]]) -> None:
    bulk, one = CASES[case](), CASES[case]()
    for chunk in chunks:
        bulk.update_many([t for t, _ in chunk], [p for _, p in chunk])
        for outcome in chunk:
            one.update(*outcome)
        assert observe(bulk) == observe(one)
        assert bulk.to_state() == one.to_state()


def test_update_many_checks_every_label_first() -> None:
    m = ClassificationMetrics(positive=None)
    with pytest.raises(ValueError):
        m.update_many(["a", "b", None], ["a", "b", "c"])  # type: ignore[list-item]
    assert (m.n, m.classes) == (0, [])
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        m.update_many(["a", "b"], ["a"])


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None)
@given(outcomes=outcome_lists, split=st.floats(0.0, 1.0))
def test_restore_mid_stream_is_invisible(case: str, outcomes: list[Outcome], split: float) -> None:
    statecheck.resume_matches_straight(
        CASES[case], feed, observe, outcomes, int(split * len(outcomes))
    )


def sample_outcomes(seed: int, n: int) -> list[Outcome]:
    rng = random.Random(seed)
    pool: list[Any] = [0, 1, 2, "a", "b", True]
    return [(rng.choice(pool), rng.choice(pool)) for _ in range(n)]


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_state_is_refused(case: str) -> None:
    m = CASES[case]()
    for outcome in sample_outcomes(0, 30):
        feed(m, outcome)
    statecheck.every_truncation_is_refused(m)
    statecheck.fields_are_validated(m, feed, sample_outcomes(1, 20))
    state = m.to_state()
    for bad in ({"buffer": [99999]}, {"tp": [10**6] * len(state["tp"])}, {"positive": [1]}):
        with pytest.raises(StateDecodeError):
            ClassificationMetrics.from_state({**state, **bad})


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_crash(case: str, data: Any) -> None:
    m = CASES[case]()
    for outcome in sample_outcomes(2, 40):
        feed(m, outcome)
    statecheck.mutated_bytes_never_crash(m, feed, sample_outcomes(3, 20), data)


def test_state_size() -> None:
    m = ClassificationMetrics()
    for outcome in sample_outcomes(4, 2000):
        m.update(int(outcome[0] == 1), int(outcome[1] == 1))
    assert len(encode(m)) < 700
