"""Windowed metrics agree with a direct computation, stay exact on long runs and restore exactly."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import WindowedAccuracy, WindowedMAE, WindowedRMSE, decode, encode


@settings(max_examples=50, deadline=None)
@given(outcomes=st.lists(st.booleans(), max_size=300), window=st.integers(1, 40))
def test_accuracy_matches_direct_computation(outcomes: list[bool], window: int) -> None:
    acc = WindowedAccuracy(window=window)
    for i, c in enumerate(outcomes):
        acc.update(c)
        recent = outcomes[max(0, i + 1 - window) : i + 1]
        assert acc.value == float(Fraction(sum(recent), len(recent)))
        assert acc.cumulative == float(Fraction(sum(outcomes[: i + 1]), i + 1))
        assert acc.window_n == len(recent) and acc.n == i + 1
    if not outcomes:
        assert acc.value is None and acc.cumulative is None and acc.stats() == {}


@settings(max_examples=50, deadline=None)
@given(
    errors=st.lists(st.floats(-1e6, 1e6), max_size=300),
    window=st.integers(1, 40),
)
def test_error_metrics_match_direct_computation(errors: list[float], window: int) -> None:
    mae, rmse = WindowedMAE(window=window), WindowedRMSE(window=window)
    for i, e in enumerate(errors):
        mae.update(e)
        rmse.update(e)
        recent = errors[max(0, i + 1 - window) : i + 1]
        seen = errors[: i + 1]
        tol = 1e-9 * (1.0 + max(abs(v) for v in seen))
        assert mae.value == pytest.approx(math.fsum(abs(v) for v in recent) / len(recent), abs=tol)
        assert mae.cumulative == pytest.approx(math.fsum(abs(v) for v in seen) / len(seen), abs=tol)
        expected_rmse = math.sqrt(math.fsum(v * v for v in recent) / len(recent))
        assert rmse.value == pytest.approx(expected_rmse, rel=1e-9, abs=tol)
    if not errors:
        assert mae.value is None and rmse.cumulative is None


def test_long_runs_do_not_accumulate_rounding_error() -> None:
    rng = random.Random(1)
    mae = WindowedMAE(window=500)
    errors = []
    for i in range(200_000):
        # Mixed magnitudes are the worst case for a running sum.
        e = rng.expovariate(1.0) * (1e6 if i % 97 == 0 else 1e-3)
        errors.append(e)
        mae.update(e)
    exact = math.fsum(errors[-500:]) / 500
    assert mae.value == pytest.approx(exact, rel=1e-12)
    assert mae.cumulative == pytest.approx(math.fsum(errors) / len(errors), rel=1e-14)


def test_restore_continues_bit_identically() -> None:
    rng = random.Random(2)
    errors = [rng.gauss(0.0, 3.0) for _ in range(3000)]
    for cls in (WindowedMAE, WindowedRMSE):
        a, b = cls(window=500), cls(window=500)
        for e in errors[:1234]:
            a.update(e)
            b.update(e)
        b = decode(encode(b), cls)
        for e in errors[1234:]:
            a.update(e)
            b.update(e)
            assert (a.value, a.cumulative) == (b.value, b.cumulative)
        assert encode(a) == encode(b)


def test_invalid_inputs_are_refused() -> None:
    acc = WindowedAccuracy()
    for bad in (0.5, 2, "yes"):
        with pytest.raises((ValueError, TypeError)):
            acc.update(bad)  # type: ignore[arg-type]
    acc.update(1)
    acc.update(False)
    assert acc.value == 0.5
    mae = WindowedMAE()
    with pytest.raises(ValueError):
        mae.update(math.nan)
    with pytest.raises(ValueError):
        WindowedRMSE().update(1e200)  # its square overflows
    with pytest.raises(ValueError):
        WindowedMAE(window=0)


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(st.booleans(), max_size=60),
    chunks=st.lists(st.lists(st.booleans(), max_size=50), max_size=6),
    window=st.integers(1, 40),
)
def test_accuracy_columns_match_one_at_a_time(
    before: list[bool], chunks: list[list[bool]], window: int
) -> None:
    """values_after reads what value and window_n would after each update; update_many ends
    in the same state as updating one at a time."""
    bulk, one = WindowedAccuracy(window=window), WindowedAccuracy(window=window)
    for c in before:
        bulk.update(c)
        one.update(c)
    for chunk in chunks:
        values, sizes = bulk.values_after(np.array(chunk, dtype=np.int64))
        state = bulk.to_state()
        expected = []
        for c in chunk:
            one.update(c)
            expected.append((one.value, one.window_n))
        assert list(zip(values.tolist(), sizes.tolist(), strict=True)) == expected
        assert bulk.to_state() == state  # values_after changes nothing
        bulk.update_many(chunk)
        assert bulk.to_state() == one.to_state()
        assert (bulk.value, bulk.cumulative) == (one.value, one.cumulative)


def test_accuracy_update_many_refuses_what_update_refuses() -> None:
    acc = WindowedAccuracy(window=3)
    with pytest.raises(ValueError, match="0/1"):
        acc.update_many([1, 2])
    with pytest.raises(ValueError, match="0/1"):
        acc.update_many([0.5])
    assert acc.n == 0
