"""Our detectors flag exactly where river's do, on the same streams and parameters."""

from __future__ import annotations

import random
from typing import Any

import pytest
from river import drift

from detectors import ADWIN, DDM, EDDM, HDDM_A, HDDM_W, PageHinkley


def bernoulli_jumps(seed: int, rates: list[tuple[float, int]]) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.random() < p) for p, length in rates for _ in range(length)]


def gaussian_shifts(seed: int, segments: list[tuple[float, float, int]]) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sd) for mu, sd, length in segments for _ in range(length)]


STREAMS: dict[str, list[Any]] = {
    "bernoulli 0.1->0.3": bernoulli_jumps(1, [(0.1, 5000), (0.3, 5000)]),
    "bernoulli 0.3->0.1->0.5": bernoulli_jumps(2, [(0.3, 3000), (0.1, 3000), (0.5, 3000)]),
    "gauss mean shifts": gaussian_shifts(
        3, [(0.0, 1.0, 4000), (0.7, 1.0, 4000), (-1.0, 3.0, 3000)]
    ),
    "uniform ints": [float(v) for v in random.Random(4).choices(range(10), k=6000)],
    "large offset": gaussian_shifts(5, [(1e6, 10.0, 3000), (1e6 + 8.0, 10.0, 3000)]),
}

ADWIN_PARAMS = [
    {},
    {"clock": 1},
    {"delta": 0.1, "clock": 4, "max_buckets": 2, "min_window_length": 1, "grace_period": 0},
    {"delta": 1e-5, "max_buckets": 10, "min_window_length": 20, "grace_period": 100},
    {"delta": 0.5, "clock": 2, "max_buckets": 3, "min_window_length": 2, "grace_period": 5},
]


@pytest.mark.parametrize("params", ADWIN_PARAMS, ids=lambda p: str(p) or "defaults")
@pytest.mark.parametrize("stream", list(STREAMS), ids=str)
def test_adwin_matches_river(stream: str, params: dict[str, Any]) -> None:
    ours, theirs = ADWIN(**params), drift.ADWIN(**params)
    for i, x in enumerate(STREAMS[stream]):
        ours.update(x)
        theirs.update(x)
        assert ours.drift_detected == theirs.drift_detected, f"index {i}"
        # The window itself must agree bit for bit, not just the flags.
        assert (ours.width, ours._total, ours._variance) == (
            theirs.width,
            theirs.total,
            theirs.variance,
        ), f"index {i}"


def test_adwin_streams_do_drift() -> None:
    """Guard against a vacuous parity test: river does flag on these streams."""
    for name in ("bernoulli 0.1->0.3", "gauss mean shifts", "large offset"):
        d = drift.ADWIN()
        assert any((d.update(x), d.drift_detected)[1] for x in STREAMS[name]), name


def test_adwin_single_bucket_size_does_not_crash() -> None:
    # river 0.26 panics here (it deletes from an empty bucket level); we keep going.
    d = ADWIN(clock=1, max_buckets=1, delta=0.5, min_window_length=1, grace_period=1)
    hits = d.update_many(STREAMS["gauss mean shifts"])
    assert hits


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"mode": "up"},
        {"mode": "down"},
        {"threshold": 5.0, "delta": 0.1, "min_instances": 10},
        {"alpha": 0.99, "threshold": 3.0},
    ],
    ids=str,
)
@pytest.mark.parametrize("stream", list(STREAMS), ids=str)
def test_page_hinkley_matches_river(stream: str, params: dict[str, Any]) -> None:
    ours, theirs = PageHinkley(**params), drift.PageHinkley(**params)
    for i, x in enumerate(STREAMS[stream]):
        ours.update(x)
        theirs.update(x)
        assert ours.drift_detected == theirs.drift_detected, f"index {i}"
        assert ours._sum_increase == theirs._sum_increase
        assert ours._mean == theirs._x_mean.get()


BINARY_STREAMS = {
    name: [int(v) for v in STREAMS[name]] for name in STREAMS if name.startswith("bernoulli")
}
BINARY_STREAMS["rare errors"] = bernoulli_jumps(6, [(0.02, 4000), (0.08, 4000)])
BINARY_STREAMS["improving"] = bernoulli_jumps(7, [(0.5, 3000), (0.2, 3000), (0.6, 3000)])

BINARY_PAIRS = [
    pytest.param(name, ours, theirs, params, id=name)
    for name, ours, theirs, params in [
        ("ddm", DDM, drift.binary.DDM, {}),
        ("ddm tight", DDM, drift.binary.DDM, {"warm_start": 10, "drift_threshold": 2.5}),
        ("eddm", EDDM, drift.binary.EDDM, {}),
        ("eddm loose", EDDM, drift.binary.EDDM, {"alpha": 0.8, "beta": 0.75, "warm_start": 10}),
        ("hddm_a", HDDM_A, drift.binary.HDDMA, {}),
        ("hddm_a two-sided", HDDM_A, drift.binary.HDDMA, {"two_sided_test": True}),
        ("hddm_w", HDDM_W, drift.binary.HDDMW, {}),
        (
            "hddm_w two-sided",
            HDDM_W,
            drift.binary.HDDMW,
            {"two_sided_test": True, "lambda_val": 0.1},
        ),
    ]
]


@pytest.mark.parametrize(("name", "ours_cls", "river_cls", "params"), BINARY_PAIRS)
@pytest.mark.parametrize("stream", list(BINARY_STREAMS), ids=str)
def test_binary_detectors_match_river(
    stream: str, name: str, ours_cls: Any, river_cls: Any, params: dict[str, Any]
) -> None:
    ours, theirs = ours_cls(**params), river_cls(**params)
    drifts = warnings = 0
    for i, x in enumerate(BINARY_STREAMS[stream]):
        ours.update(x)
        theirs.update(x)
        assert ours.drift_detected == theirs.drift_detected, f"{name}: drift at index {i}"
        assert ours.warning_detected == theirs.warning_detected, f"{name}: warning at index {i}"
        drifts += theirs.drift_detected
        warnings += theirs.warning_detected
    if stream == "bernoulli 0.1->0.3" and name in ("ddm", "hddm_a", "hddm_w"):
        assert drifts and warnings  # the comparison is not vacuous


def test_binary_detectors_accept_bools_and_refuse_out_of_range() -> None:
    for cls in (DDM, EDDM, HDDM_A, HDDM_W):
        d = cls()
        d.update(True)
        d.update(False)
        with pytest.raises(ValueError):
            d.update(2.0)
        with pytest.raises(ValueError):
            d.update(float("nan"))
        assert d.n == 2


@pytest.mark.parametrize("stream", ["bernoulli 0.3->0.1->0.5", "gauss mean shifts"])
def test_adwin_update_many_stops_at_each_drift(stream: str) -> None:
    """Resuming after each stop gives the drifts, the evidence at each and the final state of
    one value at a time."""
    xs = STREAMS[stream]
    one, seen_one = ADWIN(), []
    for i, x in enumerate(xs):
        one.update(x)
        if one.drift_detected:
            seen_one.append((i, one.stats()))
    bulk, seen_bulk, start = ADWIN(), [], 0
    while True:
        hits = bulk.update_many(xs[start:], stop_at_drift=True)
        if not hits:
            break
        assert len(hits) == 1
        seen_bulk.append((start + hits[0], bulk.stats()))
        start += hits[0] + 1
    assert len(seen_one) >= 2
    assert seen_bulk == seen_one
    assert bulk.to_state() == one.to_state()
