"""DataQualityRates: exact windowed and cumulative rates, thresholds, restorable state."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import DataQualityRates, StateDecodeError, encode
from detectors.quality import RATES
from tests.unit.detectors import statecheck

Row = tuple[int, int, int, int, int]  # total_fields, missing, non_finite, wrong_type, unseen


@st.composite
def rows(draw: Any) -> Row:
    total = draw(st.integers(0, 8))
    m, nf, wt, uc = (draw(st.integers(0, total)) for _ in range(4))
    return total, m, nf, wt, uc


def feed(q: Any, row: Row) -> None:
    total, m, nf, wt, uc = row
    q.update(total_fields=total, missing=m, non_finite=nf, wrong_type=wt, unseen_category=uc)


def direct(part: list[Row]) -> dict[str, float]:
    fields = sum(r[0] for r in part)
    return {
        name: (sum(r[i] for r in part) / fields if fields else 0.0)
        for i, name in enumerate(RATES, 1)
    }


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(rows(), max_size=150),
    window=st.integers(1, 30),
    threshold=st.floats(0.0, 1.0),
    min_samples=st.integers(1, 30),
)
def test_matches_direct_computation(
    data: list[Row], window: int, threshold: float, min_samples: int
) -> None:
    min_samples = min(min_samples, window)
    q = DataQualityRates(window=window, threshold=threshold, min_samples=min_samples)
    for i, row in enumerate(data):
        feed(q, row)
        recent = data[max(0, i + 1 - window) : i + 1]
        rates = direct(recent)
        assert q.rates() == rates
        assert q.cumulative() == direct(data[: i + 1])
        enough = len(recent) >= min_samples and sum(r[0] for r in recent) > 0
        breached = tuple(name for name in RATES if enough and rates[name] > threshold)
        assert q.breached == breached
        assert q.drift_detected == bool(breached)


def test_flags_a_rising_missing_rate_and_recovers() -> None:
    rng = np.random.default_rng(1)
    q = DataQualityRates()
    for _ in range(20_000):  # 1% missing, 0.1% wrong type: quiet
        feed(q, (10, int(rng.binomial(10, 0.01)), 0, int(rng.binomial(10, 0.001)), 0))
        assert not q.drift_detected
    hits = []
    for i in range(2000):  # a broken upstream: 20% missing
        feed(q, (10, int(rng.binomial(10, 0.2)), 0, 0, 0))
        if q.drift_detected:
            hits.append(i)
    assert hits and hits[0] < 300 and q.breached == ("missing",)
    for _ in range(1000):
        feed(q, (10, 0, 0, 0, 0))
    assert not q.drift_detected
    assert q.stats()["missing_cumulative"] == pytest.approx(q.cumulative()["missing"])


def test_per_rate_thresholds_and_min_samples() -> None:
    q = DataQualityRates(window=10, threshold={"unseen_category": 0.5}, min_samples=3)
    assert q.thresholds == {
        "missing": 0.05,
        "non_finite": 0.05,
        "wrong_type": 0.05,
        "unseen_category": 0.5,
    }
    feed(q, (2, 0, 0, 0, 2))
    feed(q, (2, 0, 0, 0, 2))
    assert not q.drift_detected  # only two events
    feed(q, (2, 0, 1, 0, 0))
    assert q.breached == ("non_finite", "unseen_category")
    feed(q, (0, 0, 0, 0, 0))  # an event without watched fields changes no rate
    assert q.breached == ("non_finite", "unseen_category")
    assert q.stats()["window_fields"] == 6 and q.stats()["window_n"] == 4


def test_inputs_and_parameters_are_checked() -> None:
    q = DataQualityRates()
    for bad in ((2, 3, 0, 0, 0), (-1, 0, 0, 0, 0), (2, 0, -1, 0, 0)):
        with pytest.raises(ValueError):
            feed(q, bad)
    with pytest.raises(ValueError):
        q.update(total_fields=2.0, missing=1)  # type: ignore[arg-type]
    feed(q, (np.int64(3), 1, 0, 0, 0))  # type: ignore[arg-type]
    assert q.n == 1 and isinstance(q.to_state()["columns"][0][0], int)
    for kwargs in (
        {"window": 0},
        {"min_samples": 0},
        {"min_samples": 2000},
        {"threshold": 1.5},
        {"threshold": {"typo": 0.1}},
    ):
        with pytest.raises(ValueError):
            DataQualityRates(**kwargs)  # type: ignore[arg-type]


# --- state ---------------------------------------------------------------------------------

CASES = {
    "default": lambda: DataQualityRates(window=6, min_samples=2),
    "thresholds": lambda: DataQualityRates(window=4, threshold={"missing": 0.3}, min_samples=1),
}


def observe(q: Any) -> tuple[Any, ...]:
    return (q.drift_detected, q.breached, q.n, q.stats())


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None)
@given(data=st.lists(rows(), max_size=60), split=st.floats(0.0, 1.0))
def test_restore_mid_stream_is_invisible(case: str, data: list[Row], split: float) -> None:
    statecheck.resume_matches_straight(CASES[case], feed, observe, data, int(split * len(data)))


def sample(seed: int, n: int) -> list[Row]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        total = rng.randint(0, 6)
        out.append((total, *(rng.randint(0, total) for _ in range(4))))
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_state_is_refused(case: str) -> None:
    q = CASES[case]()
    for row in sample(0, 20):
        feed(q, row)
    statecheck.every_truncation_is_refused(q)
    statecheck.fields_are_validated(q, feed, sample(1, 10))
    state = q.to_state()
    for bad in (
        {"columns": [[1], [2], [0], [0], [0]]},  # more missing than fields
        {"cumulative": [0, 0, 0, 0, 0]},  # below the window's sums
        {"thresholds": [0.1, 0.1]},
    ):
        with pytest.raises(StateDecodeError):
            DataQualityRates.from_state({**state, **bad})


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_crash(data: Any) -> None:
    q = CASES["default"]()
    for row in sample(2, 20):
        feed(q, row)
    statecheck.mutated_bytes_never_crash(q, feed, sample(3, 10), data)


def test_state_size() -> None:
    q = DataQualityRates()
    for row in sample(4, 3000):
        feed(q, row)
    assert len(encode(q)) < 5200  # 5 small ints per event in the window
