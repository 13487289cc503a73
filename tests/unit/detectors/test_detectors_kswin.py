"""KSWIN flags exactly where river's does, p-values included, and restores mid-stream exactly."""

from __future__ import annotations

import random
import warnings
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import drift
from scipy import stats

from detectors import KSWIN, StateDecodeError, codec, decode, encode
from detectors.kswin import _ks_2samp
from tests.unit.detectors import statecheck


def gaussian_shifts(seed: int, segments: list[tuple[float, float, int]]) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sd) for mu, sd, n in segments for _ in range(n)]


STREAMS: dict[str, list[float]] = {
    "mean shifts": gaussian_shifts(1, [(0.0, 1.0, 700), (1.0, 1.0, 700), (-1.0, 2.0, 600)]),
    "ties": [float(v) for v in random.Random(2).choices(range(4), k=1200)]
    + [float(v) for v in random.Random(3).choices(range(2, 6), k=800)],
}

PARAMS = [
    {"seed": 1},
    {"seed": 7, "alpha": 0.05, "window_size": 50, "stat_size": 10},
    {"seed": 3, "alpha": 0.0001, "window_size": 120, "stat_size": 50},
]


@pytest.mark.parametrize("params", PARAMS, ids=str)
@pytest.mark.parametrize("stream", list(STREAMS))
def test_matches_river(stream: str, params: dict[str, Any]) -> None:
    ours, theirs = KSWIN(**params), drift.KSWIN(**params)
    drifts = 0
    for i, x in enumerate(STREAMS[stream]):
        ours.update(x)
        theirs.update(x)
        assert ours.drift_detected == theirs.drift_detected, f"index {i}"
        assert ours.p_value == theirs.p_value, f"index {i}"
        drifts += theirs.drift_detected
    assert drifts  # the comparison is not vacuous


def test_matches_river_with_a_starting_window() -> None:
    start = gaussian_shifts(4, [(0.0, 1.0, 80)])
    xs = gaussian_shifts(5, [(0.0, 1.0, 300), (2.0, 1.0, 300)])
    ours, theirs = KSWIN(seed=2, window=start), drift.KSWIN(seed=2, window=start)
    hits = []
    for i, x in enumerate(xs):
        ours.update(x)
        theirs.update(x)
        assert (ours.drift_detected, ours.p_value) == (theirs.drift_detected, theirs.p_value)
        if ours.drift_detected:
            hits.append(i)
    assert hits


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    levels=st.integers(2, 1000),
    shift=st.integers(0, 5),
)
def test_cached_p_values_equal_scipy(n: int, seed: int, levels: int, shift: int) -> None:
    rng = random.Random(seed)
    a = [float(rng.randrange(levels)) for _ in range(n)]
    b = [float(rng.randrange(levels) + shift) for _ in range(n)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ks_2samp(a, b, method="auto")
    assert _ks_2samp(a, b) == (float(res.statistic), float(res.pvalue))


def test_large_samples_call_scipy_directly() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 10_001).tolist(), rng.normal(0.05, 1, 10_001).tolist()
    res = stats.ks_2samp(a, b, method="auto")
    assert _ks_2samp(a, b) == (float(res.statistic), float(res.pvalue))


def test_state_holds_the_generator_explicitly() -> None:
    d = KSWIN(seed=5)
    d.update_many(gaussian_shifts(6, [(0.0, 1.0, 150)]))
    state = d.to_state()
    assert state["rng_version"] == 3 and len(state["rng_words"]) == 625
    assert state["rng_gauss"] is None
    assert all(isinstance(w, int) for w in state["rng_words"])
    # Without a seed the generator comes from the OS, but the restored detector follows it
    # (until the reset after a drift, which draws a new OS seed, as river does).
    a = KSWIN()
    a.update_many(gaussian_shifts(7, [(0.0, 1.0, 150)]))
    b = decode(encode(a), KSWIN)
    xs = gaussian_shifts(8, [(0.0, 1.0, 200), (3.0, 1.0, 200)])
    first = next(i for i, x in enumerate(xs) if (a.update(x), a.drift_detected)[1])
    assert b.update_many(xs[: first + 1]) == [first]
    assert encode(a) == encode(b)


def test_parameters_and_inputs_are_checked() -> None:
    for kwargs in (
        {"alpha": 1.5},
        {"stat_size": 100},
        {"stat_size": 0},
        {"seed": "x"},
        {"seed": 2**70},
    ):
        with pytest.raises(ValueError):
            KSWIN(**kwargs)  # type: ignore[arg-type]
    d = KSWIN(seed=1)
    with pytest.raises(ValueError):
        d.update(float("nan"))
    assert d.n == 0


# --- state ---------------------------------------------------------------------------------

CASES = {
    "small": lambda: KSWIN(seed=3, alpha=0.05, window_size=20, stat_size=8),
    "default": lambda: KSWIN(seed=11),
}


def stream(seed: int, segments: list[tuple[float, int]]) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(level * 4.0, 1.0) for level, n in segments for _ in range(n)]


def feed(d: Any, x: float) -> None:
    d.update(x)


def observe(d: Any) -> tuple[Any, ...]:
    return (d.drift_detected, d.n, d.stats())


segments = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 80)), min_size=1, max_size=4)


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), segs=segments, split=st.floats(0.0, 1.0))
def test_restore_mid_stream_is_invisible(
    case: str, seed: int, segs: list[tuple[float, int]], split: float
) -> None:
    xs = stream(seed, segs)
    statecheck.resume_matches_straight(CASES[case], feed, observe, xs, int(split * len(xs)))


def test_restore_right_after_a_drift_keeps_the_pending_reset() -> None:
    xs = stream(1, [(0.0, 60), (1.0, 60), (0.0, 60)])
    a = CASES["small"]()
    hit = a.update_many(xs)[0]
    a = CASES["small"]()
    a.update_many(xs[: hit + 1])
    b = decode(encode(a), KSWIN)
    assert b.drift_detected
    assert a.update_many(xs[hit + 1 :]) == b.update_many(xs[hit + 1 :])
    assert encode(a) == encode(b)


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_state_is_refused(case: str) -> None:
    d = CASES[case]()
    d.update_many(stream(0, [(0.0, 70), (1.0, 70)]))
    statecheck.fields_are_validated(d, feed, stream(1, [(0.5, 30)]))
    state = d.to_state()
    name = codec._BY_CLASS[KSWIN]
    for bad in (
        {"rng_version": 2},
        {"rng_words": state["rng_words"][:-1]},
        {"rng_words": [*state["rng_words"][:-1], 625]},
        {"rng_words": [2**32, *state["rng_words"][1:]]},
        {"rng_gauss": "x"},
        {"window": [0.0] * (d.window_size + 1)},
        {"stat_size": d.window_size},
    ):
        with pytest.raises(StateDecodeError):
            decode(bytes((codec.VERSION,)) + msgpack.packb({"t": name, "s": {**state, **bad}}))


def test_every_truncation_is_refused() -> None:
    d = CASES["small"]()
    d.update_many(stream(0, [(0.0, 30)]))
    statecheck.every_truncation_is_refused(d)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_crash(data: Any) -> None:
    d = CASES["small"]()
    d.update_many(stream(2, [(0.0, 30), (1.0, 30)]))
    statecheck.mutated_bytes_never_crash(d, feed, stream(3, [(0.5, 30)]), data)


def test_state_size() -> None:
    d = KSWIN(seed=1)
    d.update_many(stream(4, [(0.0, 500)]))
    assert len(encode(d)) < 4300  # 100 float64 values and 625 generator words
