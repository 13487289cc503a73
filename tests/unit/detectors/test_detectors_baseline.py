"""BaselineDrop: quiet on stationary metrics, quick on a real drop, exact to restore."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import BaselineDrop, decode, encode
from tests.unit.detectors import statecheck
from tests.unit.detectors.flagcheck import flag_changes, flag_changes_until


def bernoulli(rng: np.random.Generator, p: float, size: int) -> list[int]:
    return (rng.random(size) < p).astype(int).tolist()


@pytest.mark.parametrize("p", [0.99, 0.9, 0.7, 0.5])
def test_quiet_on_stationary_accuracy(p: float) -> None:
    rng = np.random.default_rng(2024)
    d = BaselineDrop()
    assert d.update_many(bernoulli(rng, p, 200_000)) == []


def test_the_plain_rule_is_noisy_on_a_500_window() -> None:
    """Why the noise gate is on by default."""
    rng = np.random.default_rng(1)
    xs = bernoulli(rng, 0.5, 50_000)
    assert len(BaselineDrop(z=None).update_many(xs)) > 100
    assert BaselineDrop().update_many(xs) == []


def test_drop_is_flagged_within_a_window() -> None:
    rng = np.random.default_rng(7)
    delays = []
    for _ in range(20):
        d = BaselineDrop()
        assert d.update_many(bernoulli(rng, 0.9, 1500)) == []
        hits = d.update_many(bernoulli(rng, 0.75, 1000))
        delays.append(hits[0] + 1 if hits else math.inf)
    assert max(delays) <= 500
    s = d.stats()
    assert s["drop"] == pytest.approx(s["baseline"] - s["current"])
    assert s["drop"] > s["level"] >= s["max_drop"] == 0.05


def test_flag_is_the_documented_rule() -> None:
    rng = random.Random(4)
    xs = [rng.random() < (0.9 if i < 700 else 0.8) for i in range(1500)]
    d = BaselineDrop(baseline=200, window=100, max_drop=0.05, z=None)
    for i, x in enumerate(xs):
        d.update(x)
        if i < 299:  # baseline, then the window filling up
            assert not d.drift_detected
            continue
        expected = sum(xs[:200]) / 200 - sum(xs[i - 99 : i + 1]) / 100 > 0.05
        assert d.drift_detected == expected, i
    assert 0 < len(BaselineDrop(baseline=200, window=100, z=None).update_many(xs)) < 1000


def test_level_adds_the_noise_gate() -> None:
    d = BaselineDrop(baseline=4, window=2, max_drop=0.01, z=2.0)
    d.update_many([1, 0, 1, 0])
    std = math.sqrt(1 / 3)
    assert d.stats()["std"] == pytest.approx(std)
    assert d.stats()["level"] == pytest.approx(2.0 * std * math.sqrt(1 / 2 + 1 / 4))


def test_lower_is_better_and_given_reference() -> None:
    d = BaselineDrop(reference_mean=1.0, window=3, max_drop=0.5, higher_is_better=False)
    assert d.ready and d.stats()["baseline_left"] == 0
    assert d.update_many([1.0, 1.2, 1.4, 2.0, 2.0, 0.0, 0.0]) == [3, 4]
    assert d.stats()["drop"] == pytest.approx(2.0 / 3 - 1.0)


def test_inputs_and_parameters_are_checked() -> None:
    d = BaselineDrop(baseline=3)
    d.update_many([1, 1])
    before = encode(d)
    with pytest.raises(ValueError):
        d.update(math.nan)
    assert encode(d) == before
    for kwargs in (
        {"baseline": 1},
        {"window": 0},
        {"max_drop": -0.1},
        {"z": -1.0},
        {"reference_std": 0.1},
        {"reference_mean": 0.9, "reference_std": -0.1},
    ):
        with pytest.raises(ValueError):
            BaselineDrop(**kwargs)  # type: ignore[arg-type]


# --- state ---------------------------------------------------------------------------------

CASES = {
    "warm-up": lambda: BaselineDrop(baseline=20, window=10, max_drop=0.1, z=1.0),
    "plain": lambda: BaselineDrop(baseline=5, window=3, max_drop=0.2, z=None),
    "reference": lambda: BaselineDrop(reference_mean=0.8, reference_std=0.3, window=8, z=0.5),
    "lower is better": lambda: BaselineDrop(baseline=10, window=5, higher_is_better=False),
}


def stream(seed: int, segments: list[tuple[float, int]]) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < level) for level, n in segments for _ in range(n)]


def feed(d: Any, x: float) -> None:
    d.update(x)


def observe(d: Any) -> tuple[Any, ...]:
    return (d.drift_detected, d.warning_detected, d.n, d.stats(), d.ready)


segments = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 60)), min_size=1, max_size=5)


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), segs=segments, split=st.floats(0.0, 1.0))
def test_restore_mid_stream_is_invisible(
    case: str, seed: int, segs: list[tuple[float, int]], split: float
) -> None:
    xs = stream(seed, segs)
    statecheck.resume_matches_straight(CASES[case], feed, observe, xs, int(split * len(xs)))


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), segs=segments, chunks=st.integers(1, 4))
def test_update_many_equals_loop(
    case: str, seed: int, segs: list[tuple[float, int]], chunks: int
) -> None:
    xs = stream(seed, segs)
    looped, batched = CASES[case](), CASES[case]()
    expected = [i for i, x in enumerate(xs) if (looped.update(x), looped.drift_detected)[1]]
    got: list[int] = []
    for lo, hi in itertools.pairwise(np.linspace(0, len(xs), chunks + 1).astype(int)):
        got += [int(lo) + h for h in batched.update_many(xs[lo:hi])]
    assert got == expected and encode(batched) == encode(looped)


def test_round_trip_streams_do_drift() -> None:
    xs = stream(1, [(0.9, 60), (0.1, 60)])
    for case in CASES:
        d = CASES[case]()
        assert d.update_many(xs if case != "lower is better" else [1 - x for x in xs]), case


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_state_is_refused(case: str) -> None:
    d = CASES[case]()
    d.update_many(stream(0, [(0.9, 15), (0.2, 15)]))
    statecheck.every_truncation_is_refused(d)
    statecheck.fields_are_validated(d, feed, stream(1, [(0.5, 20)]))
    assert decode(encode(d)).stats() == d.stats()


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_crash(case: str, data: Any) -> None:
    d = CASES[case]()
    d.update_many(stream(2, [(0.9, 30), (0.3, 30)]))
    statecheck.mutated_bytes_never_crash(d, feed, stream(3, [(0.5, 20)]), data)


def test_state_size() -> None:
    d = BaselineDrop()
    d.update_many(stream(4, [(0.9, 3000)]))
    assert len(encode(d)) < 1000  # 0/1 values are stored as 1-byte ints


def test_negative_zero_survives_a_round_trip() -> None:
    d = BaselineDrop(baseline=2, window=2, z=None)
    d.update_many([1.0, 0.0, -0.0, -0.0])
    restored = decode(encode(d))
    assert [math.copysign(1.0, v) for v in restored.to_state()["recent"]["buffer"]] == [-1.0] * 2
    assert encode(restored) == encode(d)


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_update_until_stops_where_the_flag_changes(higher_is_better: bool) -> None:
    xs = [float(x) for x in stream(3, [(0.9, 300), (0.6, 300), (0.9, 300), (0.5, 300)])]
    if not higher_is_better:
        xs = [1.0 - x for x in xs]
    params = {"baseline": 200, "window": 100, "higher_is_better": higher_is_better}
    one, bulk = BaselineDrop(**params), BaselineDrop(**params)
    changes, got = flag_changes(one, xs), flag_changes_until(bulk, xs)
    assert len(changes) >= 3  # into the drop, out of it, into it again
    assert got == changes
    assert bulk.to_state() == one.to_state()


def test_update_until_checks_values() -> None:
    d = BaselineDrop(baseline=2, window=2)
    with pytest.raises(ValueError, match="finite"):
        d.update_until([1.0, 1.0, 1.0, math.nan], drifting=False)
    assert d.n == 3
