"""NumericPSI and CategoricalPSI: quiet on stationary streams, quick on shifts, exact to restore."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from detectors import CategoricalPSI, NumericPSI, StateDecodeError, decode, encode
from detectors.distribution import OTHER, UNSEEN
from tests.unit.detectors import statecheck

SD = {"normal": 1.0, "t3": math.sqrt(3.0), "lognormal": math.sqrt((math.e - 1) * math.e)}


def draw(rng: np.random.Generator, dist: str, size: int) -> np.ndarray:
    if dist == "normal":
        return rng.standard_normal(size)
    if dist == "t3":
        return rng.standard_t(3, size)
    return rng.lognormal(0.0, 1.0, size)


def categories(rng: np.random.Generator, probs: list[float], size: int) -> list[str]:
    names = np.array([f"c{i}" for i in range(len(probs))])
    return names[rng.choice(len(probs), size, p=np.asarray(probs) / sum(probs))].tolist()


def flags(d: Any) -> tuple[bool, bool]:
    return d.drift_detected, d.warning_detected


# --- numeric behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize("dist", list(SD))
def test_numeric_quiet_on_long_stationary_streams(dist: str) -> None:
    rng = np.random.default_rng(2024)
    for _ in range(2):  # two independent references
        d = NumericPSI()
        assert d.update_many(draw(rng, dist, 500_000)) == []
        assert d.stats()["psi"] < 0.1


@pytest.mark.parametrize("dist", list(SD))
def test_numeric_one_sd_shift_is_flagged_within_a_window(dist: str) -> None:
    rng = np.random.default_rng(7)
    delays = []
    for _ in range(20):
        d = NumericPSI()
        pre = 1000 + 500 + int(rng.integers(0, 50))  # reference, full window, random phase
        assert d.update_many(draw(rng, dist, pre)) == []
        hits = d.update_many(draw(rng, dist, 1000) + SD[dist])
        delays.append(hits[0] + 1 if hits else math.inf)
    assert max(delays) <= 500
    assert float(np.median(delays)) <= 320


def test_numeric_flags_only_at_checks_and_keep_flagging_a_persistent_shift() -> None:
    rng = np.random.default_rng(1)
    d = NumericPSI(reference_size=200, window=100, check_every=10)
    d.update_many(rng.standard_normal(400))
    hits = d.update_many(rng.standard_normal(300) + 3.0)
    assert hits and all((b - a) % 10 == 0 for a, b in itertools.pairwise(hits))
    assert len(hits) > 15  # the window is not reset after a drift
    d.update(3.0)
    assert not d.drift_detected  # not a check update
    d.reset_window()
    assert d.stats()["window_n"] == 0 and d.stats()["psi"] == 0.0
    assert d.update_many(rng.standard_normal(99) + 3.0) == []  # window not full yet
    d.update(3.0)
    assert d.drift_detected


def test_numeric_warning_zone() -> None:
    rng = np.random.default_rng(3)
    d = NumericPSI(noise_gate=False)
    d.update_many(rng.standard_normal(1500))
    seen = set()
    for x in rng.standard_normal(2000) + 0.6:  # a moderate shift passes through the warning zone
        d.update(x)
        if d.warning_detected:
            assert not d.drift_detected
            assert 0.1 <= d.stats()["psi"] < 0.25
            seen.add("warning")
        if d.drift_detected:
            seen.add("drift")
    assert seen == {"warning", "drift"}


def test_constant_reference_sees_moves_both_ways() -> None:
    for new in (5.5, 4.5):
        d = NumericPSI(reference_size=100, window=50)
        d.update_many([5.0] * 200)
        assert d.stats()["psi"] < 0.01
        assert d.update_many([new] * 50)
    # A reference tied at its maximum gets a bin just above it.
    d = NumericPSI.from_reference([1.0, 2.0] + [3.0] * 50)
    assert d.edges is not None and d.edges[-1] == math.nextafter(3.0, math.inf)


def test_from_reference_equals_warmup_and_given_edges() -> None:
    rng = np.random.default_rng(11)
    ref = rng.standard_normal(300).tolist()
    stream = (rng.standard_normal(600) + np.repeat([0.0, 0.8], 300)).tolist()
    warm = NumericPSI(reference_size=300, window=100)
    warm.update_many(ref)
    given_ = NumericPSI.from_reference(ref, window=100)
    assert given_.edges is not None and given_.reference_freqs is not None
    counts = [round(f * 300) for f in given_.reference_freqs]
    explicit = NumericPSI(
        reference_size=300, window=100, reference_edges=given_.edges, reference_freqs=counts
    )
    for x in stream:
        for d in (warm, given_, explicit):
            d.update(x)
        assert warm.stats() == given_.stats() == explicit.stats()
        assert flags(warm) == flags(given_) == flags(explicit)
    assert warm.update_many([]) == [] and warm.stats()["psi"] > 0.25


def test_statistics_match_a_direct_computation() -> None:
    rng = np.random.default_rng(5)
    d = NumericPSI(reference_size=400, window=200, bins=8, eps=1e-3, check_every=200)
    xs = np.r_[rng.standard_normal(400), rng.normal(0.3, 1.2, 200)]
    d.update_many(xs)
    assert d.edges is not None and d.reference_freqs is not None
    k = len(d.edges) + 1
    q = np.bincount(np.searchsorted(d.edges, xs[400:], side="right"), minlength=k) / 200
    p = np.asarray(d.reference_freqs)
    ps, qs = (p + 1e-3) / (1 + k * 1e-3), (q + 1e-3) / (1 + k * 1e-3)
    assert d.stats()["psi"] == pytest.approx(float(np.sum((qs - ps) * np.log(qs / ps))), rel=1e-12)
    assert d.stats()["js"] == pytest.approx(float(jensenshannon(ps, qs, base=2)), rel=1e-9)


def test_numeric_inputs_and_parameters_are_checked() -> None:
    d = NumericPSI(reference_size=10, window=5)
    d.update_many(range(12))
    before = encode(d)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError):
            d.update(bad)
    assert encode(d) == before
    for kwargs in (
        {"window": 1},
        {"bins": 1},
        {"bins": 2**40},
        {"warning": 0.3, "critical": 0.2},
        {"check_every": 0},
        {"check_every": 600},
        {"reference_size": 1},
        {"reference_edges": [1.0]},
        {"reference_edges": [1.0, 1.0], "reference_freqs": [1, 1, 1]},
        {"reference_edges": [1.0], "reference_freqs": [1, 1, 1]},
        {"reference_edges": [1.0], "reference_freqs": [0, 0]},
    ):
        with pytest.raises(ValueError):
            NumericPSI(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NumericPSI.from_reference([1.0])


# --- categorical behaviour ------------------------------------------------------------------

BASE = [0.5, 0.3, 0.15, 0.05]
SHIFTED = [0.3, 0.3, 0.2, 0.2]


@pytest.mark.parametrize(
    "probs",
    [BASE, [1.0] * 50, list(1.0 / np.arange(1, 101)), [1.0] * 3000],
    ids=["4 fixed", "50 equal", "100 zipf", "3000 equal"],
)
def test_categorical_quiet_on_stationary_streams(probs: list[float]) -> None:
    rng = np.random.default_rng(2025)
    d = CategoricalPSI()
    assert d.update_many(categories(rng, probs, 300_000)) == []


def test_noise_gate_is_what_keeps_many_categories_quiet() -> None:
    rng = np.random.default_rng(4)
    stream = categories(rng, [1.0] * 50, 100_000)
    gated, raw = CategoricalPSI(window=300), CategoricalPSI(window=300, noise_gate=False)
    assert gated.update_many(stream) == []
    assert len(raw.update_many(stream)) > 20
    assert gated.stats()["drift_level"] > 0.25 == raw.stats()["drift_level"]


def test_categorical_frequency_shift_is_flagged_within_about_a_window() -> None:
    rng = np.random.default_rng(9)
    delays = []
    for _ in range(30):
        d = CategoricalPSI()
        pre = 1500 + int(rng.integers(0, 50))
        assert d.update_many(categories(rng, BASE, pre)) == []
        hits = d.update_many(categories(rng, SHIFTED, 2000))
        delays.append(hits[0] + 1 if hits else math.inf)
    assert float(np.median(delays)) <= 550
    assert sum(x <= 750 for x in delays) >= 27


def test_unseen_and_other_buckets() -> None:
    rng = random.Random(1)
    ref = [f"top{i}" for i in range(5) for _ in range(100)]
    ref += [f"rare{i}" for i in range(20) for _ in range(2)]
    d = CategoricalPSI.from_reference(ref, max_categories=3, window=100)
    assert d.categories == ["top0", "top1", "top2"]
    names = [name for name, _, _ in d.breakdown()]
    assert names == ["top0", "top1", "top2", OTHER, UNSEEN]
    d.update_many(rng.choices(["top0", "top1", "top2", "top3", "rare1", "new!"], k=100))
    by_name = {name: (p, q) for name, p, q in d.breakdown()}
    assert by_name[OTHER][0] == pytest.approx(240 / 540)
    assert by_name[UNSEEN][0] == 0.0  # no category was seen once in the reference
    assert d.stats()["unseen_rate"] == by_name[UNSEEN][1] > 0
    assert d.stats()["other_rate"] == by_name[OTHER][1] > 0
    # Lots of new categories is drift.
    assert d.update_many([f"new{i}" for i in range(100)])
    assert d.stats()["unseen_rate"] == 1.0


def test_good_turing_unseen_mass_for_long_tails() -> None:
    ref = ["a"] * 500 + [f"once{i}" for i in range(100)]
    d = CategoricalPSI.from_reference(ref)
    assert d.breakdown()[-1][1] == pytest.approx(100 / 600)
    given_ = CategoricalPSI(reference={"a": 5, "b": 1})
    assert given_.breakdown()[-1][1] == 0.0  # no estimate from a given mapping


def test_min_frequency_folds_rare_categories() -> None:
    ref = ["a"] * 990 + ["b"] * 9 + ["c"]
    assert CategoricalPSI.from_reference(ref).categories == ["a"]
    assert CategoricalPSI.from_reference(ref, min_frequency=0.0).categories == ["a", "b", "c"]


def test_categorical_from_reference_equals_warmup() -> None:
    rng = np.random.default_rng(12)
    ref = categories(rng, BASE, 400)
    stream = categories(rng, BASE, 300) + categories(rng, SHIFTED, 300)
    warm = CategoricalPSI(reference_size=400, window=100)
    warm.update_many(ref)
    given_ = CategoricalPSI.from_reference(ref, window=100)
    for x in stream:
        warm.update(x)
        given_.update(x)
        assert (flags(warm), warm.stats()) == (flags(given_), given_.stats())


def test_categorical_values_and_parameters_are_checked() -> None:
    d = CategoricalPSI(reference_size=5, window=3)
    d.update_many([True, 1, 1.0, np.int64(1), "1", np.str_("x"), 2.5])
    assert d.categories[0] is True  # True, 1, 1.0 and np.int64(1) are one category
    before = encode(d)
    for bad in (None, math.nan, [1], (1,), b"x", 2**64):
        with pytest.raises(ValueError):
            d.update(bad)  # type: ignore[arg-type]
    assert encode(d) == before
    for kwargs in ({"max_categories": 0}, {"min_frequency": 1.0}, {"reference": {}}):
        with pytest.raises(ValueError):
            CategoricalPSI(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CategoricalPSI(reference={"a": -1.0, "b": 2.0})


# --- update_many, state ----------------------------------------------------------------------

NUMERIC_CASES = {
    "warm-up": lambda: NumericPSI(reference_size=30, window=20, bins=4, check_every=3),
    "check every value": lambda: NumericPSI(
        reference_size=10, window=5, check_every=1, bins=3, noise_gate=False
    ),
    "given": lambda: NumericPSI(
        window=12, reference_edges=[-0.5, 0.5], reference_freqs=[1, 2, 1], check_every=12
    ),
}
CATEGORICAL_CASES = {
    "warm-up": lambda: CategoricalPSI(reference_size=30, window=20, max_categories=3),
    "check every value": lambda: CategoricalPSI(
        reference_size=10, window=5, check_every=1, noise_gate=False
    ),
    "given": lambda: CategoricalPSI(reference={"a": 3, "b": 1, 7: 1}, window=10, check_every=4),
}


def numeric_stream(seed: int, segments: list[tuple[float, int]]) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(level * 3.0, 1.0) for level, n in segments for _ in range(n)]


def categorical_stream(seed: int, segments: list[tuple[float, int]]) -> list[Any]:
    rng = random.Random(seed)
    values: list[Any] = ["a", "b", 7, True, "d", "e"]
    return [
        rng.choices(values, weights=[1.0, level + 0.1, 0.5, level, 0.2, level * 0.3])[0]
        for level, n in segments
        for _ in range(n)
    ]


segments = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 60)), min_size=1, max_size=5)


def observe(d: Any) -> tuple[Any, ...]:
    return (flags(d), d.n, d.stats(), d.ready)


@pytest.mark.parametrize("case", list(NUMERIC_CASES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), segs=segments, chunks=st.integers(1, 5), arr=st.booleans())
def test_numeric_update_many_equals_loop(
    case: str, seed: int, segs: list[tuple[float, int]], chunks: int, arr: bool
) -> None:
    xs = numeric_stream(seed, segs)
    looped, batched = NUMERIC_CASES[case](), NUMERIC_CASES[case]()
    expected = [i for i, x in enumerate(xs) if (looped.update(x), looped.drift_detected)[1]]
    got: list[int] = []
    for lo, hi in itertools.pairwise(np.linspace(0, len(xs), chunks + 1).astype(int)):
        part = xs[lo:hi]
        got += [int(lo) + h for h in batched.update_many(np.asarray(part) if arr else part)]
    assert got == expected
    assert observe(batched) == observe(looped)
    assert encode(batched) == encode(looped)


@pytest.mark.parametrize("case", list(CATEGORICAL_CASES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), segs=segments, chunks=st.integers(1, 5))
def test_categorical_update_many_equals_loop(
    case: str, seed: int, segs: list[tuple[float, int]], chunks: int
) -> None:
    xs = categorical_stream(seed, segs)
    looped, batched = CATEGORICAL_CASES[case](), CATEGORICAL_CASES[case]()
    expected = [i for i, x in enumerate(xs) if (looped.update(x), looped.drift_detected)[1]]
    got: list[int] = []
    for lo, hi in itertools.pairwise(np.linspace(0, len(xs), chunks + 1).astype(int)):
        got += [int(lo) + h for h in batched.update_many(xs[lo:hi])]
    assert got == expected
    assert observe(batched) == observe(looped)
    assert encode(batched) == encode(looped)


def test_update_many_stops_at_a_bad_value_like_the_loop() -> None:
    xs: list[Any] = [*numeric_stream(4, [(0.0, 40), (1.0, 40)]), math.nan, 1.0]
    cs: list[Any] = [*categorical_stream(4, [(0.0, 40), (1.0, 40)]), None, "a"]
    for factory, items in ((NUMERIC_CASES["warm-up"], xs), (CATEGORICAL_CASES["warm-up"], cs)):
        looped, batched = factory(), factory()
        with pytest.raises(ValueError):
            for x in items:
                looped.update(x)
        with pytest.raises(ValueError):
            batched.update_many(items)
        assert encode(batched) == encode(looped)


def feed(d: Any, x: Any) -> None:
    d.update(x)


@pytest.mark.parametrize("case", list(NUMERIC_CASES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), segs=segments, split=st.floats(0.0, 1.0))
def test_numeric_restore_mid_stream_is_invisible(
    case: str, seed: int, segs: list[tuple[float, int]], split: float
) -> None:
    xs = numeric_stream(seed, segs)
    statecheck.resume_matches_straight(NUMERIC_CASES[case], feed, observe, xs, int(split * len(xs)))


@pytest.mark.parametrize("case", list(CATEGORICAL_CASES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), segs=segments, split=st.floats(0.0, 1.0))
def test_categorical_restore_mid_stream_is_invisible(
    case: str, seed: int, segs: list[tuple[float, int]], split: float
) -> None:
    xs = categorical_stream(seed, segs)
    statecheck.resume_matches_straight(
        CATEGORICAL_CASES[case], feed, observe, xs, int(split * len(xs))
    )


def test_round_trip_streams_do_drift() -> None:
    """The properties above see drifts, not only quiet streams."""
    xs = numeric_stream(1, [(0.0, 60), (1.0, 60)])
    cs = categorical_stream(1, [(0.0, 60), (1.0, 60)])
    for case in NUMERIC_CASES:
        assert NUMERIC_CASES[case]().update_many(xs), case
    for case in CATEGORICAL_CASES:
        assert CATEGORICAL_CASES[case]().update_many(cs), case


def warmed(case: str, kind: str) -> Any:
    if kind == "numeric":
        d = NUMERIC_CASES[case]()
        d.update_many(numeric_stream(0, [(0.2, 40), (0.9, 40)]))
    else:
        d = CATEGORICAL_CASES[case]()
        d.update_many(categorical_stream(0, [(0.2, 40), (0.9, 40)]))
    return d


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_corrupt_state_is_refused(kind: str) -> None:
    items = (
        numeric_stream(2, [(0.5, 30)]) if kind == "numeric" else categorical_stream(2, [(0.5, 30)])
    )
    for case in NUMERIC_CASES if kind == "numeric" else CATEGORICAL_CASES:
        d = warmed(case, kind)
        statecheck.every_truncation_is_refused(d)
        statecheck.fields_are_validated(d, feed, items)
    fresh = (
        NumericPSI(reference_size=20) if kind == "numeric" else CategoricalPSI(reference_size=20)
    )
    for x in items[:7]:
        fresh.update(x)
    statecheck.fields_are_validated(fresh, feed, items)  # in warm-up
    with pytest.raises(StateDecodeError, match="expected"):
        decode(encode(fresh), CategoricalPSI if kind == "numeric" else NumericPSI)


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_crash(kind: str, data: Any) -> None:
    items = (
        numeric_stream(3, [(0.5, 30)]) if kind == "numeric" else categorical_stream(3, [(0.5, 30)])
    )
    statecheck.mutated_bytes_never_crash(warmed("warm-up", kind), feed, items, data)


def test_state_size() -> None:
    rng = np.random.default_rng(0)
    d = NumericPSI()
    d.update_many(rng.standard_normal(2000))
    assert len(encode(d)) < 1200
    c = CategoricalPSI()
    c.update_many(categories(rng, BASE, 2000))
    assert len(encode(c)) < 1200


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=st.integers(2, 60), check_every=st.integers(1, 60), seed=st.integers(0, 2**16))
def test_values_to_check_lands_on_every_check(
    kind: str, window: int, check_every: int, seed: int
) -> None:
    check_every = min(check_every, window)
    rng = random.Random(seed)
    if kind == "numeric":
        det: Any = NumericPSI(reference_size=30, window=window, check_every=check_every)
        values: list[Any] = [rng.gauss(0.0, 1.0) for _ in range(600)]
    else:
        det = CategoricalPSI(reference_size=30, window=window, check_every=check_every)
        values = [rng.choice("abcd") for _ in range(600)]
    loop = det.from_state(det.to_state())
    checks = [i for i, x in enumerate(values) if (loop.update(x), loop.just_checked)[1]]
    landed: list[int] = []
    pos = 0
    while pos < len(values):
        stop = pos + det.values_to_check()
        det.update_many(values[pos:stop])
        if stop <= len(values):
            assert det.just_checked
            landed.append(stop - 1)
        pos = stop
    assert landed == checks
    assert det.to_state() == loop.to_state()
