"""DDSketch and LatencyQuantile: relative accuracy, exact merges, windowed alarms, exact state."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import DDSketch, LatencyQuantile, StateDecodeError, decode, encode
from tests.unit.detectors import statecheck
from tests.unit.detectors.flagcheck import flag_changes, flag_changes_until

values = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-6, 1e9), st.sampled_from([1.0, 2.0, 100.0])),
    min_size=1,
    max_size=300,
)
quantiles = st.floats(0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(xs=values, q=quantiles, accuracy=st.sampled_from([0.01, 0.05]))
def test_quantile_is_within_the_relative_accuracy(
    xs: list[float], q: float, accuracy: float
) -> None:
    s = DDSketch(relative_accuracy=accuracy)
    for x in xs:
        s.update(x)
    exact = sorted(xs)[math.floor(q * (len(xs) - 1))]
    got = s.quantile(q)
    assert got is not None
    assert abs(got - exact) <= accuracy * exact * (1 + 1e-9)


@settings(max_examples=50, deadline=None)
@given(a=values, b=values)
def test_merge_equals_one_sketch_of_both(a: list[float], b: list[float]) -> None:
    sa, sb, both = DDSketch(), DDSketch(), DDSketch()
    for x in a:
        sa.update(x)
        both.update(x)
    for x in b:
        sb.update(x)
        both.update(x)
    sa.merge(sb)
    assert encode(sa) == encode(both)
    shuffled = DDSketch()
    for x in random.Random(0).sample(a + b, len(a + b)):
        shuffled.update(x)
    assert encode(shuffled) == encode(both)  # order does not matter


def test_collapsing_keeps_the_high_quantiles() -> None:
    rng = np.random.default_rng(1)
    xs = rng.lognormal(0.0, 3.0, 20_000)
    s = DDSketch(max_buckets=400)
    for x in xs:
        s.update(float(x))
    assert s.collapsed and len(s.to_state()["keys"]) == 400 and s.count == 20_000
    exact = {q: float(np.sort(xs)[math.floor(q * (len(xs) - 1))]) for q in (0.5, 0.95, 0.99)}
    for q in (0.95, 0.99):
        assert s.quantile(q) == pytest.approx(exact[q], rel=0.01)
    low = s.quantile(0.5)
    assert low is not None and low > exact[0.5] * 1.01  # merged low buckets read high
    assert s.stats()["count"] == 20_000 and set(s.stats()) == {"count", "p50", "p95", "p99"}


def test_sketch_inputs_are_checked() -> None:
    s = DDSketch()
    for bad in (-1.0, math.nan, math.inf, 1e301):
        with pytest.raises(ValueError):
            s.update(bad)
    assert s.count == 0 and s.quantile(0.5) is None and s.stats() == {"count": 0.0}
    with pytest.raises(ValueError):
        s.quantile(1.5)
    with pytest.raises(ValueError):
        s.merge(DDSketch(relative_accuracy=0.02))
    for kwargs in (
        {"relative_accuracy": 0.0},
        {"relative_accuracy": 1.0},
        {"relative_accuracy": 1e-300},
        {"max_buckets": 1},
    ):
        with pytest.raises(ValueError):
            DDSketch(**kwargs)  # type: ignore[arg-type]


# --- LatencyQuantile -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    xs=st.lists(st.one_of(st.just(0.0), st.floats(0.1, 1000.0)), max_size=200),
    q=quantiles,
    threshold=st.one_of(st.just(0.0), st.floats(0.1, 1000.0)),
    window=st.integers(1, 40),
    min_samples=st.integers(1, 20),
    max_buckets=st.sampled_from([2, 5, 2048]),
)
def test_flag_equals_the_recent_quantile_test(
    xs: list[float], q: float, threshold: float, window: int, min_samples: int, max_buckets: int
) -> None:
    d = LatencyQuantile(
        q=q, threshold_ms=threshold, window=window, min_samples=min_samples, max_buckets=max_buckets
    )
    for i, x in enumerate(xs):
        d.update(x)
        recent = d.stats()["count"]
        assert window <= recent + window <= 2 * window + min(i, window - 1) + 1
        value = d.quantile()
        expected = recent >= min_samples and value is not None and value > threshold
        assert d.drift_detected == expected, i


def test_recent_values_span_one_to_two_windows() -> None:
    d = LatencyQuantile(window=10)
    counts = []
    for i in range(40):
        d.update(float(i))
        counts.append(int(d.stats()["count"]))
    assert counts[:10] == [*range(1, 10), 10]
    assert counts[10:20] == [*range(11, 20), 10]
    assert d.quantile(0.0) == pytest.approx(30.0, rel=0.01)  # the older values are gone


def test_quiet_when_the_threshold_is_above_normal_latency() -> None:
    rng = np.random.default_rng(2)
    d = LatencyQuantile(q=0.99, threshold_ms=400.0)  # lognormal(4, 0.5) has p99 near 175 ms
    assert d.update_many(rng.lognormal(4.0, 0.5, 200_000).tolist()) == []
    assert d.stats()["quantile"] == pytest.approx(175.0, rel=0.1)


def test_a_spike_is_flagged_then_ages_out() -> None:
    rng = np.random.default_rng(3)
    d = LatencyQuantile(q=0.95, threshold_ms=200.0, window=500)
    d.update_many(rng.lognormal(4.0, 0.5, 3000).tolist())
    hits = d.update_many(rng.lognormal(6.0, 0.3, 300).tolist())  # ~400 ms
    assert hits and hits[0] < 100
    after = d.update_many(rng.lognormal(4.0, 0.5, 1500).tolist())
    assert after and after[-1] < 1000  # gone within two windows
    assert not d.drift_detected


def test_without_threshold_it_only_reports() -> None:
    d = LatencyQuantile(threshold_ms=None, min_samples=1)
    assert d.update_many([1e6] * 200) == []
    assert set(d.stats()) == {"count", "p50", "p95", "p99", "quantile", "n"}
    assert LatencyQuantile().stats() == {"count": 0.0, "n": 0.0}


def test_latency_parameters_are_checked() -> None:
    for kwargs in ({"q": 1.5}, {"threshold_ms": -1.0}, {"window": 0}, {"min_samples": 0}):
        with pytest.raises(ValueError):
            LatencyQuantile(**kwargs)  # type: ignore[arg-type]


# --- state ---------------------------------------------------------------------------------

CASES = {
    "sketch": lambda: DDSketch(),
    "sketch collapsing": lambda: DDSketch(relative_accuracy=0.1, max_buckets=3),
    "latency": lambda: LatencyQuantile(q=0.9, threshold_ms=50.0, window=12, min_samples=5),
    "latency collapsing": lambda: LatencyQuantile(
        q=0.5, threshold_ms=5.0, window=7, min_samples=1, max_buckets=3
    ),
    "latency report only": lambda: LatencyQuantile(window=5),
}


def stream(seed: int, segments: list[tuple[float, int]]) -> list[float]:
    rng = random.Random(seed)
    return [
        0.0 if rng.random() < 0.05 else rng.lognormvariate(level * 5.0, 1.0)
        for level, n in segments
        for _ in range(n)
    ]


def feed(d: Any, x: float) -> None:
    d.update(x)


def observe(d: Any) -> tuple[Any, ...]:
    if isinstance(d, DDSketch):
        return (d.count, d.stats(), d.quantile(0.3))
    return (d.drift_detected, d.n, d.stats())


segments = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 40)), min_size=1, max_size=4)


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), segs=segments, split=st.floats(0.0, 1.0))
def test_restore_mid_stream_is_invisible(
    case: str, seed: int, segs: list[tuple[float, int]], split: float
) -> None:
    xs = stream(seed, segs)
    statecheck.resume_matches_straight(CASES[case], feed, observe, xs, int(split * len(xs)))


def test_round_trip_streams_do_drift() -> None:
    xs = stream(1, [(0.0, 30), (1.0, 30)])
    for case in ("latency", "latency collapsing"):
        assert CASES[case]().update_many(xs), case


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_state_is_refused(case: str) -> None:
    d = CASES[case]()
    for x in stream(0, [(0.3, 20), (0.8, 20)]):
        d.update(x)
    statecheck.every_truncation_is_refused(d)
    statecheck.fields_are_validated(d, feed, stream(1, [(0.5, 20)]))


def test_inconsistent_sketch_states_are_refused() -> None:
    s = DDSketch()
    for x in [0.0, 1.0, 5.0, 5.0]:
        s.update(x)
    state = s.to_state()
    for bad in (
        {"count": 5},
        {"keys": [3, 1, 2]},
        {"counts": [1, 0, 2]},
        {"floor": 1000},
        {"keys": [81, 0]},
        {"counts": [1, 1]},
        {"counts": [0, 3]},
        {"keys": [0, 2**50]},
    ):
        with pytest.raises(StateDecodeError):
            DDSketch.from_state({**state, **bad})
    d = LatencyQuantile(window=3)
    d.update_many([1.0, 2.0, 3.0, 4.0])
    state = d.to_state()
    with pytest.raises(StateDecodeError):
        LatencyQuantile.from_state({**state, "current": state["previous"]})  # full current
    with pytest.raises(StateDecodeError):
        LatencyQuantile.from_state({**state, "n": 1})


@pytest.mark.parametrize("case", ["sketch", "latency collapsing"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_crash(case: str, data: Any) -> None:
    d = CASES[case]()
    for x in stream(2, [(0.3, 30), (0.9, 30)]):
        d.update(x)
    statecheck.mutated_bytes_never_crash(d, feed, stream(3, [(0.5, 20)]), data)


def test_state_size() -> None:
    rng = np.random.default_rng(5)
    d = LatencyQuantile()
    d.update_many(rng.lognormal(4.0, 0.5, 5500).tolist())
    assert len(decode(encode(d)).to_state()["previous"]["keys"]) < 300
    assert len(encode(d)) < 2500


def test_update_until_stops_where_the_flag_changes() -> None:
    rng = np.random.default_rng(5)
    xs = [*rng.lognormal(3, 0.2, 1500), *rng.lognormal(3.8, 0.2, 800), *rng.lognormal(3, 0.2, 1500)]
    params = {"q": 0.95, "threshold_ms": 40.0, "min_samples": 100, "window": 300}
    one, bulk = LatencyQuantile(**params), LatencyQuantile(**params)
    changes, got = flag_changes(one, xs), flag_changes_until(bulk, xs)
    assert len(changes) >= 2  # over the threshold and back
    assert got == changes
    assert bulk.to_state() == one.to_state()
