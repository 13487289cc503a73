"""ExpectedAccuracy: the mean of max(score, 1 - score), which calibrated scores make accurate."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import ExpectedAccuracy, StateDecodeError, decode, encode
from tests.unit.detectors import statecheck


@settings(max_examples=50, deadline=None)
@given(scores=st.lists(st.floats(0.0, 1.0), max_size=200), window=st.integers(1, 30))
def test_matches_direct_computation(scores: list[float], window: int) -> None:
    ea = ExpectedAccuracy(window=window)
    values = [max(s, 1.0 - s) if s != 0.5 else 0.5 for s in scores]
    quantised = [round(v * 65535) for v in values]
    for i, s in enumerate(scores):
        ea.update(s)
        start = max(0, i + 1 - window)
        recent = values[start : i + 1]
        # The window is kept in uint16 steps of 1/65535: exact on those, within half a step.
        assert ea.value == sum(quantised[start : i + 1]) / (len(recent) * 65535)
        assert ea.value == pytest.approx(math.fsum(recent) / len(recent), abs=0.5 / 65535)
        assert ea.cumulative == pytest.approx(math.fsum(values[: i + 1]) / (i + 1), rel=1e-12)
        assert ea.window_n == len(recent)
    if not scores:
        assert ea.value is None and ea.cumulative is None and ea.stats() == {}


def test_estimates_the_accuracy_of_a_calibrated_model() -> None:
    rng = np.random.default_rng(3)
    ea = ExpectedAccuracy(window=5000)
    scores = rng.beta(0.7, 0.7, 20_000)
    labels = rng.random(20_000) < scores  # calibrated: P(y = 1 | score) = score
    for s in scores:
        ea.update(float(s))
    actual = float(np.mean((scores >= 0.5) == labels))
    assert ea.cumulative == pytest.approx(actual, abs=0.01)


def test_less_confident_scores_show_as_a_drop() -> None:
    rng = np.random.default_rng(4)
    ea = ExpectedAccuracy(window=500)
    for s in rng.beta(0.5, 0.5, 3000):
        ea.update(float(s))
    before = ea.value
    for s in rng.beta(3.0, 3.0, 500):  # scores crowd around 0.5
        ea.update(float(s))
    assert before is not None and ea.value is not None
    assert ea.value < before - 0.1


def test_predicted_class_and_threshold() -> None:
    ea = ExpectedAccuracy(threshold=0.8)
    ea.update(0.7)  # predicted negative at threshold 0.8: right with probability 0.3
    assert ea.value == pytest.approx(0.3, abs=1e-5)
    ea.update(0.7, predicted_positive=True)
    assert ea.value == pytest.approx(0.5, abs=1e-5)


def test_inputs_and_parameters_are_checked() -> None:
    ea = ExpectedAccuracy()
    for bad in (-0.1, 1.5, math.nan, math.inf):
        with pytest.raises(ValueError):
            ea.update(bad)
    assert ea.n == 0
    with pytest.raises(ValueError):
        ExpectedAccuracy(window=0)
    with pytest.raises(ValueError):
        ExpectedAccuracy(threshold=1.2)


CASES = {
    "default": lambda: ExpectedAccuracy(window=7),
    "threshold": lambda: ExpectedAccuracy(window=3, threshold=0.3),
}


def feed(ea: Any, x: tuple[float, bool | None]) -> None:
    ea.update(*x)


def observe(ea: Any) -> tuple[Any, ...]:
    return (ea.value, ea.cumulative, ea.n, ea.window_n, ea.stats())


items = st.lists(st.tuples(st.floats(0.0, 1.0), st.sampled_from([None, True, False])))


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None)
@given(xs=items, split=st.floats(0.0, 1.0))
def test_restore_mid_stream_is_invisible(
    case: str, xs: list[tuple[float, bool | None]], split: float
) -> None:
    statecheck.resume_matches_straight(CASES[case], feed, observe, xs, int(split * len(xs)))


def sample(seed: int, n: int) -> list[tuple[float, bool | None]]:
    rng = random.Random(seed)
    return [(rng.random(), rng.choice([None, True, False])) for _ in range(n)]


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_state_is_refused(case: str) -> None:
    ea = CASES[case]()
    for x in sample(0, 20):
        feed(ea, x)
    statecheck.every_truncation_is_refused(ea)
    statecheck.fields_are_validated(ea, feed, sample(1, 20))
    state = ea.to_state()
    values = state["values"]
    for bad in (
        {"values": values[:-1]},  # not whole uint16s
        {"values": values + bytes(2)},  # more values than the window
        {"values": [1.0]},
        {"n": 2},  # more values than predictions
        {"cum_sum": 21.0},  # more than one per prediction
        {"cum_sum": -0.5},
    ):
        with pytest.raises(StateDecodeError):
            ExpectedAccuracy.from_state({**state, **bad})


def test_window_is_little_endian_uint16_oldest_first() -> None:
    ea = ExpectedAccuracy(window=3)
    for s in (0.9, 0.25, 0.5, 1.0):
        ea.update(s)
    expected = [round(c * 65535) for c in (0.75, 0.5, 1.0)]
    assert ea.to_state()["values"] == struct.pack("<3H", *expected)
    assert ea.value == sum(expected) / (3 * 65535)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_crash(data: Any) -> None:
    ea = CASES["default"]()
    for x in sample(2, 30):
        feed(ea, x)
    statecheck.mutated_bytes_never_crash(ea, feed, sample(3, 20), data)


def test_state_size() -> None:
    ea = ExpectedAccuracy()
    for x in sample(4, 1000):
        feed(ea, x)
    assert len(decode(encode(ea)).to_state()["values"]) == 1000
    assert len(encode(ea)) < 1200  # 500 uint16 values
