"""DataQualityRates: exact windowed and cumulative rates, thresholds, restorable state."""

from __future__ import annotations

import itertools
import random
from collections import deque
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


class Naive:
    """Reference: every event's row in a deque, sums recomputed from scratch."""

    def __init__(self, window: int, threshold: float, min_samples: int) -> None:
        self.rows: deque[Row] = deque(maxlen=window)
        self.seen: list[Row] = []
        self.threshold, self.min_samples = threshold, min_samples

    def update(self, row: Row) -> None:
        self.rows.append(row)
        self.seen.append(row)

    def stats(self) -> dict[str, float]:
        win = [sum(r[i] for r in self.rows) for i in range(5)]
        cum = [sum(r[i] for r in self.seen) for i in range(5)]
        out: dict[str, float] = {}
        for i, name in enumerate(RATES, 1):
            out[f"{name}_rate"] = win[i] / win[0] if win[0] else 0.0
            out[f"{name}_cumulative"] = cum[i] / cum[0] if cum[0] else 0.0
        out.update(window_n=float(len(self.rows)), window_fields=float(win[0]), n=len(self.seen))
        return out

    def breached(self) -> tuple[str, ...]:
        stats = self.stats()
        if len(self.rows) < self.min_samples or not stats["window_fields"]:
            return ()
        return tuple(name for name in RATES if stats[f"{name}_rate"] > self.threshold)


def expand(state: dict[str, Any]) -> list[Row]:
    """The window's events from the run-length encoded state."""
    runs = zip(zip(*state["rows"], strict=True), state["counts"], strict=True)
    return [row for row, count in runs for _ in range(count)]


@settings(max_examples=80, deadline=None)
@given(
    runs=st.lists(st.tuples(rows(), st.integers(1, 40)), max_size=30),
    window=st.integers(1, 60),
    threshold=st.floats(0.0, 1.0),
    min_samples=st.integers(1, 60),
)
def test_run_length_window_matches_a_naive_window(
    runs: list[tuple[Row, int]], window: int, threshold: float, min_samples: int
) -> None:
    """Long runs of one row (and evictions mid-run) give exactly the naive rates and flags."""
    min_samples = min(min_samples, window)
    q = DataQualityRates(window=window, threshold=threshold, min_samples=min_samples)
    naive = Naive(window, threshold, min_samples)
    for row, repeat in runs:
        for _ in range(repeat):
            feed(q, row)
            naive.update(row)
            assert q.stats() == naive.stats()
            assert q.breached == naive.breached()
            assert q.drift_detected == bool(naive.breached())
        state = q.to_state()
        assert expand(state) == list(naive.rows)
        packed = list(zip(*state["rows"], strict=True))
        assert all(a != b for a, b in itertools.pairwise(packed))  # maximal runs
        assert len(packed) <= len(runs)


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
    assert q.n == 1 and isinstance(q.to_state()["rows"][0][0], int)
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
        {"rows": [[1], [2], [0], [0], [0]], "counts": [1]},  # more missing than fields
        {"cumulative": [0, 0, 0, 0, 0]},  # below the window's sums
        {"thresholds": [0.1, 0.1]},
    ):
        with pytest.raises(StateDecodeError):
            DataQualityRates.from_state({**state, **bad})


def test_inconsistent_runs_are_refused() -> None:
    q = DataQualityRates(window=10, min_samples=1)
    for row in [(4, 1, 0, 0, 0)] * 3 + [(4, 0, 0, 0, 0)] * 4:
        feed(q, row)
    state = q.to_state()
    assert state["rows"] == [[4, 4], [1, 0], [0, 0], [0, 0], [0, 0]] and state["counts"] == [3, 4]
    assert DataQualityRates.from_state(state).stats() == q.stats()
    rows_ = state["rows"]
    for bad in (
        {"counts": [3, 0]},  # an empty run
        {"counts": [3, -1]},
        {"counts": [3, True]},
        {"counts": [3, 4.0]},
        {"counts": [3]},  # fewer counts than rows
        {"counts": [3, 4, 1]},
        {"counts": [3, 8]},  # more events than the window
        {"n": 6},  # more events in the window than seen
        {"rows": [[4, 4], [0, 0], [0, 0], [0, 0], [0, 0]]},  # two runs of one row
        {"rows": [[4, 4], [1, 0], [0, 0], [0, 0]]},  # four columns
        {"rows": [[4, 4], [1, 0], [0, 0], [0, 0], [0]]},  # ragged columns
        {"rows": [[4, 4], [1, 5], [0, 0], [0, 0], [0, 0]]},  # more missing than fields
        {"rows": [[4, 4], [1, -1], [0, 0], [0, 0], [0, 0]]},
        {"rows": [[4, 4], [1, 0], [0, 0], [0, 0], [0, 0.0]]},
        {"rows": [[*rows_[0]], [1, 1], [0, 0], [0, 0], [0, 0]]},  # window sums above cumulative
        {"cumulative": [27, 3, 0, 0, 0]},  # window fields (28) above cumulative
        {"cumulative": [28, 2, 0, 0, 0]},
        {"cumulative": [28, 29, 0, 0, 0]},  # more missing than fields overall
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
    rng = random.Random(5)
    q = DataQualityRates()
    for _ in range(3000):  # a field missing in 1% of the events: ~20 runs in the window
        feed(q, (10, int(rng.random() < 0.01), 0, 0, 0))
    assert len(encode(q)) < 400
    q = DataQualityRates()
    for row in sample(4, 3000):  # the worst case: hardly two equal events in a row
        feed(q, row)
    assert len(encode(q)) < 6200  # 5 small ints and a count per run


def test_update_until_breached_stops_where_update_would_first_breach() -> None:
    rng = random.Random(4)
    rows = [
        (5, int(rng.random() < 0.02 + 0.4 * (i > 600)), 0, int(rng.random() < 0.004), 0)
        for i in range(1200)
    ]
    one = DataQualityRates(window=200, min_samples=50)
    first = len(rows)
    for i, (t, m, nf, wt, uc) in enumerate(rows):
        one.update(total_fields=t, missing=m, non_finite=nf, wrong_type=wt, unseen_category=uc)
        if one.breached:
            first = i
            break
    assert first < len(rows)
    bulk = DataQualityRates(window=200, min_samples=50)
    assert bulk.update_until_breached(rows[:first]) == first  # no breach before it
    assert bulk.update_until_breached(rows, start=first) == first
    assert bulk.to_state() == one.to_state() and bulk.breached == one.breached


def test_update_until_breached_checks_each_row() -> None:
    q = DataQualityRates(window=10, min_samples=5)
    with pytest.raises(ValueError, match="total_fields"):
        q.update_until_breached([(2, 0, 0, 0, 0), (2, 3, 0, 0, 0)])
    assert q.n == 1


@pytest.mark.parametrize("missing", [0, 2])  # a steady window under, and over, the threshold
def test_update_until_breached_through_long_runs_of_one_row(missing: int) -> None:
    rows = [(4, missing, 0, 0, 0)] * 700 + [(4, 0, 0, 1, 0)] * 3 + [(4, missing, 0, 0, 0)] * 400
    one, bulk = DataQualityRates(window=100), DataQualityRates(window=100)
    stops_one = []
    for i, (t, m, nf, wt, uc) in enumerate(rows):
        one.update(total_fields=t, missing=m, non_finite=nf, wrong_type=wt, unseen_category=uc)
        if one.breached:
            stops_one.append(i)
    stops_bulk, start = [], 0
    while (i := bulk.update_until_breached(rows, start)) < len(rows):
        stops_bulk.append(i)
        start = i + 1
    assert stops_bulk == stops_one
    assert bulk.to_state() == one.to_state() and bulk.stats() == one.stats()
    assert bool(stops_one) == bool(missing)
