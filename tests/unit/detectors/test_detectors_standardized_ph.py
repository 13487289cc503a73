"""StandardizedPageHinkley: quiet on stationary signals, quick on a one-sd shift."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import PageHinkley, StandardizedPageHinkley
from detectors.page_hinkley import update_columns

SD = {"normal": 1.0, "t3": math.sqrt(3.0), "lognormal": math.sqrt((math.e - 1) * math.e)}


def draw(rng: np.random.Generator, dist: str, size: int) -> np.ndarray:
    if dist == "normal":
        return rng.standard_normal(size)
    if dist == "t3":
        return rng.standard_t(3, size)
    return rng.lognormal(0.0, 1.0, size)


@pytest.mark.parametrize("dist", list(SD))
def test_no_alarm_on_long_stationary_streams(dist: str) -> None:
    rng = np.random.default_rng(2024)
    assert StandardizedPageHinkley().update_many(draw(rng, dist, 200_000)) == []


def test_raw_river_defaults_are_noisy_where_standardised_ones_are_not() -> None:
    rng = np.random.default_rng(11)
    xs = rng.standard_normal(100_000)
    assert len(PageHinkley().update_many(xs.tolist())) > 20
    assert StandardizedPageHinkley().update_many(xs) == []


@pytest.mark.parametrize("dist", list(SD))
def test_one_sd_shift_is_flagged_within_100_values(dist: str) -> None:
    rng = np.random.default_rng(7)
    delays = []
    for _ in range(25):
        d = StandardizedPageHinkley()
        assert d.update_many(draw(rng, dist, 3000)) == []
        hits = d.update_many(draw(rng, dist, 300) + SD[dist])
        delays.append(hits[0] + 1 if hits else math.inf)
    assert float(np.median(delays)) <= 60
    assert sum(d <= 100 for d in delays) >= 23


def test_downward_shift_and_modes() -> None:
    rng = np.random.default_rng(3)
    base, low = rng.normal(5.0, 2.0, 2000), rng.normal(3.0, 2.0, 200)
    assert StandardizedPageHinkley(mode="both").update_many(np.r_[base, low])
    assert StandardizedPageHinkley(mode="down").update_many(np.r_[base, low])
    assert not StandardizedPageHinkley(mode="up").update_many(np.r_[base, low])


def test_no_alarm_during_warmup_whatever_the_values() -> None:
    d = StandardizedPageHinkley(warmup=100)
    hits = d.update_many([0.0] * 50 + [1e6] * 49)
    assert hits == []
    assert d.stats()["warmup_left"] == 1.0


def test_constant_warmup_does_not_blow_up() -> None:
    d = StandardizedPageHinkley(warmup=500)
    assert d.update_many([5.0] * 5000) == []
    stats = d.stats()
    assert stats["std"] == pytest.approx(5e-6)  # the documented floor: 1e-6 * max(1, |mean|)
    assert all(math.isfinite(v) for v in stats.values())
    hits = d.update_many([6.0] * 20)
    assert hits and hits[0] < 10  # z-scores clip at 3, so a few values are needed
    assert all(math.isfinite(v) for v in d.stats().values())


def test_reference_statistics_skip_warmup() -> None:
    d = StandardizedPageHinkley(reference_mean=100.0, reference_std=10.0)
    assert d.update_many([100.0] * 20 + [130.0] * 10) == [26]
    assert d.stats()["mean"] == 100.0 and d.stats()["std"] == 10.0
    with pytest.raises(ValueError):
        StandardizedPageHinkley(reference_mean=1.0)


def test_reference_persists_after_a_drift() -> None:
    """The detector does not silently re-learn: a persisting shift keeps alarming."""
    rng = np.random.default_rng(5)
    d = StandardizedPageHinkley()
    d.update_many(rng.standard_normal(2000))
    mean, std = d.stats()["mean"], d.stats()["std"]
    hits = d.update_many(rng.standard_normal(1000) + 1.0)
    assert len(hits) >= 10
    assert (d.stats()["mean"], d.stats()["std"]) == (mean, std)
    # The cumulative statistic restarted after each alarm.
    assert all(b - a > 1 for a, b in itertools.pairwise(hits))


def test_alarm_evidence() -> None:
    d = StandardizedPageHinkley(reference_mean=0.0, reference_std=1.0, threshold=16.0)
    d.update_many([0.0] * 10 + [2.0] * 20)
    for x in [2.0] * 20:
        d.update(x)
        if d.drift_detected:
            break
    s = d.stats()
    assert s["statistic"] > s["threshold"] == 16.0
    assert s["up"] == s["statistic"] and s["down"] == 0.0
    assert s["z"] == 2.0


def test_non_finite_input_is_refused_without_touching_state() -> None:
    d = StandardizedPageHinkley(warmup=2)
    d.update_many([1.0, 2.0, 3.0])
    before = d.to_state()
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            d.update(bad)
    assert d.to_state() == before


@pytest.mark.parametrize("alpha", [1.0, 0.999])
def test_update_many_can_stop_at_the_first_drift(alpha: float) -> None:
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.standard_normal(400), rng.normal(2.0, 1.0, 300)])
    loop = StandardizedPageHinkley(warmup=100, alpha=alpha)
    first = next(i for i, x in enumerate(xs) if (loop.update(float(x)), loop.drift_detected)[1])

    bulk = StandardizedPageHinkley(warmup=100, alpha=alpha)
    assert bulk.update_many(xs, stop_at_drift=True) == [first]
    assert bulk.drift_detected and bulk.n == first + 1
    assert bulk.to_state() == loop.to_state()  # nothing after the detection was taken
    # the rest goes on exactly as one update at a time would
    rest = bulk.update_many(xs[first + 1 :])
    assert [first + 1 + h for h in rest] == [
        i for i in range(first + 1, len(xs)) if (loop.update(float(xs[i])), loop.drift_detected)[1]
    ]
    assert bulk.to_state() == loop.to_state()


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 6),
    n=st.integers(0, 400),
)
def test_update_columns_is_update_many_per_row(seed: int, k: int, n: int) -> None:
    """Any mix of modes, parameters, states (drifted ones too) and values, huge ones included."""
    rng = np.random.default_rng(seed)
    detectors, copies = [], []
    for _ in range(k):
        params = {
            "reference_mean": float(rng.normal(0, 5)),
            "reference_std": float(rng.uniform(0.1, 3)),
            "delta": float(rng.uniform(0, 1)),
            "threshold": float(rng.uniform(2, 30)),
            "mode": str(rng.choice(["both", "up", "down"])),
            "clip": float(rng.uniform(1, 5)),
        }
        d = StandardizedPageHinkley(**params)
        d.update_many(rng.normal(0, 5, int(rng.integers(0, 300))))  # any state, drifted or not
        detectors.append(d)
        copies.append(StandardizedPageHinkley.from_state(d.to_state()))
    columns = rng.normal(rng.normal(0, 5, (k, 1)), 3, (k, n))
    if n:
        columns[rng.integers(0, k), rng.integers(0, n)] = 1e308  # overflows z, then clips
    got = update_columns(detectors, columns)
    for r, d in enumerate(copies):
        hits = d.update_many(columns[r], stop_at_drift=True)
        assert got[r] == (hits[0] if hits else None)
        assert detectors[r].to_state() == d.to_state()


def test_update_columns_refuses_detectors_it_cannot_take() -> None:
    learning = StandardizedPageHinkley(warmup=10)
    with pytest.raises(ValueError, match="reference"):
        update_columns([learning], np.zeros((1, 5)))
    smoothed = StandardizedPageHinkley(reference_mean=0.0, reference_std=1.0, alpha=0.99)
    assert not smoothed.columns_ready
    with pytest.raises(ValueError, match="2 columns"):
        update_columns(
            [StandardizedPageHinkley(reference_mean=0.0, reference_std=1.0)], np.zeros((2, 5))
        )
