"""Checkpointing: encode → decode mid-stream changes nothing; bad bytes never decode silently."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import (
    ADWIN,
    DDM,
    EDDM,
    HDDM_A,
    HDDM_W,
    PageHinkley,
    StandardizedPageHinkley,
    StateDecodeError,
    WindowedAccuracy,
    WindowedMAE,
    WindowedRMSE,
    codec,
    decode,
    encode,
)

Factory = Callable[[], Any]

# (factory, kind of input): "real" streams of floats, "binary" streams of 0/1.
CASES: dict[str, tuple[Factory, str]] = {
    "adwin": (ADWIN, "real"),
    "adwin clock=1": (lambda: ADWIN(delta=0.1, clock=1, min_window_length=2), "real"),
    "adwin small buckets": (lambda: ADWIN(delta=0.3, clock=3, max_buckets=2), "real"),
    "page_hinkley": (lambda: PageHinkley(threshold=5.0, min_instances=5), "real"),
    "page_hinkley up": (lambda: PageHinkley(threshold=3.0, mode="up", alpha=0.9), "real"),
    "sph": (lambda: StandardizedPageHinkley(warmup=20, threshold=4.0), "real"),
    "sph faded down": (
        lambda: StandardizedPageHinkley(warmup=10, threshold=3.0, alpha=0.95, mode="down"),
        "real",
    ),
    "sph reference": (
        lambda: StandardizedPageHinkley(reference_mean=0.0, reference_std=2.0, threshold=4.0),
        "real",
    ),
    "ddm": (lambda: DDM(warm_start=10), "binary"),
    "eddm": (lambda: EDDM(warm_start=5), "binary"),
    "hddm_a": (lambda: HDDM_A(two_sided_test=True), "binary"),
    "hddm_w": (lambda: HDDM_W(two_sided_test=True), "binary"),
    "accuracy": (lambda: WindowedAccuracy(window=7), "binary"),
    "mae": (lambda: WindowedMAE(window=7), "real"),
    "rmse": (lambda: WindowedRMSE(window=5), "real"),
}
DETECTOR_CASES = [name for name in CASES if not name.startswith(("accuracy", "mae", "rmse"))]


def make_stream(kind: str, seed: int, segments: list[tuple[float, int]]) -> list[Any]:
    """Piecewise-stationary stream: segment levels in [0, 1] so every case can drift."""
    rng = random.Random(seed)
    out: list[Any] = []
    for level, length in segments:
        for _ in range(length):
            if kind == "binary":
                out.append(rng.random() < level)
            else:
                out.append(rng.gauss(level * 6.0, 1.0))
    return out


def observe(obj: Any) -> tuple[Any, ...]:
    """Everything a caller can see after an update."""
    if hasattr(obj, "drift_detected"):
        return (obj.drift_detected, obj.warning_detected, obj.n, obj.stats())
    return (obj.value, obj.cumulative, obj.n, obj.window_n)


streams = st.builds(
    lambda seed, segments: (seed, segments),
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 150)), min_size=1, max_size=5),
)


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=streams, split=st.floats(0.0, 1.0))
def test_restore_mid_stream_is_invisible(
    case: str, spec: tuple[int, list[tuple[float, int]]], split: float
) -> None:
    factory, kind = CASES[case]
    xs = make_stream(kind, *spec)
    k = int(split * len(xs))

    straight = factory()
    seen_straight = []
    for x in xs:
        straight.update(x)
        seen_straight.append(observe(straight))

    resumed = factory()
    seen_resumed = []
    for x in xs[:k]:
        resumed.update(x)
        seen_resumed.append(observe(resumed))
    blob = encode(resumed)
    restored = decode(blob, type(resumed))
    assert observe(restored) == observe(resumed)
    assert encode(restored) == blob
    for x in xs[k:]:
        restored.update(x)
        seen_resumed.append(observe(restored))

    assert seen_resumed == seen_straight
    assert encode(restored) == encode(straight)


def test_round_trip_streams_do_drift() -> None:
    """The property above sees drifts, not only quiet streams."""
    xs = make_stream("real", 1, [(0.5, 300), (1.0, 300), (0.0, 300)])
    bits = make_stream("binary", 1, [(0.05, 300), (0.9, 300)])
    for name in DETECTOR_CASES:
        factory, kind = CASES[name]
        d = factory()
        assert d.update_many(xs if kind == "real" else bits), name


def test_restore_right_after_a_drift_keeps_the_pending_reset() -> None:
    xs = make_stream("real", 3, [(0.0, 400), (1.0, 400)])
    for name in DETECTOR_CASES:
        factory, kind = CASES[name]
        if kind != "real":
            continue
        a = factory()
        hit = a.update_many(xs)[0]
        a = factory()
        a.update_many(xs[: hit + 1])
        b = decode(encode(a))
        assert b.drift_detected and b.stats() == a.stats()
        for x in xs[hit + 1 :]:
            a.update(x)
            b.update(x)
            assert (a.drift_detected, a.stats()) == (b.drift_detected, b.stats())


def test_encoding_is_deterministic_and_floats_exact() -> None:
    a = StandardizedPageHinkley(reference_mean=0.1, reference_std=0.3)
    b = StandardizedPageHinkley(reference_mean=0.1, reference_std=0.3)
    for x in [0.1 + 0.2, -0.0, 1e-308, 5e-324, 1.7976931348623157e308 / 1e300]:
        a.update(x)
        b.update(x)
    assert encode(a) == encode(b)
    restored = decode(encode(a))
    assert restored.to_state() == a.to_state()
    ph = PageHinkley()
    assert math.isinf(decode(encode(ph), PageHinkley)._min_increase)  # inf survives


def test_every_registered_type_round_trips_fresh() -> None:
    for name, cls in codec.registered().items():
        obj = cls()
        assert encode(decode(encode(obj))) == encode(obj), name


# --- bad input -------------------------------------------------------------------------------


def sample_blob() -> bytes:
    d = ADWIN()
    d.update_many(make_stream("real", 9, [(0.0, 200), (1.0, 100)]))
    return encode(d)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00" + sample_blob()[1:], "version 0"),
        (b"\x02" + sample_blob()[1:], "version 2"),
        (b"\xff", "version 255"),
        (b"\x01", "corrupt or truncated"),
        (b"\x01\xc1", "corrupt or truncated"),  # 0xc1 is never used by msgpack
        (sample_blob() + b"\x00", "corrupt or truncated"),  # trailing garbage
        (b"\x01" + msgpack.packb([1, 2]), "expected a map"),
        (b"\x01" + msgpack.packb({"t": "adwin"}), "expected a map"),
        (b"\x01" + msgpack.packb({"t": 3, "s": {}}), "type name"),
        (b"\x01" + msgpack.packb({"t": "kswin", "s": {}}), "unknown detector type 'kswin'"),
        (b"\x01" + msgpack.packb({"t": "adwin", "s": []}), "must be a map"),
        (b"\x01" + msgpack.packb({"t": "adwin", "s": {}}), "missing field"),
        (b"\x01" + msgpack.packb({1: "adwin", 2: {}}), "corrupt"),
    ],
)
def test_bad_bytes_raise_state_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(StateDecodeError, match=message):
        decode(data)


def test_every_truncation_is_refused() -> None:
    blob = sample_blob()
    for cut in range(len(blob)):
        with pytest.raises(StateDecodeError):
            decode(blob[:cut])


def test_state_that_does_not_fit_its_type_is_refused() -> None:
    state = ADWIN().to_state()
    for key, bad in [
        ("clock", 0),
        ("clock", "32"),
        ("width", 3),
        ("totals", [[1.0, "x"]]),
        ("tick", -1),
        ("drift", 1),
    ]:
        broken = dict(state, **{key: bad})
        with pytest.raises(StateDecodeError):
            decode(b"\x01" + msgpack.packb({"t": "adwin", "s": broken}))
    with pytest.raises(StateDecodeError, match="expected StandardizedPageHinkley"):
        decode(encode(PageHinkley()), StandardizedPageHinkley)


def test_unregistered_objects_are_not_encoded() -> None:
    with pytest.raises(TypeError):
        encode(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mutated_bytes_never_fail_other_than_state_decode_error(case: str, data: Any) -> None:
    """A flipped byte may decode to another valid state, but never to one that crashes."""
    factory, kind = CASES[case]
    obj = factory()
    for x in make_stream(kind, 0, [(0.2, 60), (0.9, 60)]):
        obj.update(x)
    blob = bytearray(encode(obj))
    for _ in range(data.draw(st.integers(1, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        restored = decode(bytes(blob))
    except StateDecodeError:
        return
    for x in make_stream(kind, 1, [(0.5, 40)]):
        restored.update(x)
    if hasattr(restored, "stats"):
        restored.stats()


# --- update_many --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", DETECTOR_CASES)
@settings(max_examples=30, deadline=None)
@given(spec=streams, as_array=st.booleans(), chunks=st.integers(1, 4))
def test_update_many_equals_loop(
    case: str, spec: tuple[int, list[tuple[float, int]]], as_array: bool, chunks: int
) -> None:
    factory, kind = CASES[case]
    xs = make_stream(kind, *spec)
    looped = factory()
    expected = []
    for i, x in enumerate(xs):
        looped.update(x)
        if looped.drift_detected:
            expected.append(i)
    batched = factory()
    got = []
    bounds = np.linspace(0, len(xs), chunks + 1).astype(int)
    for lo, hi in itertools.pairwise(bounds):
        part = xs[lo:hi]
        hits = batched.update_many(np.asarray(part, dtype=float) if as_array else part)
        got.extend(int(lo) + h for h in hits)
    assert got == expected
    assert encode(batched) == encode(looped)
    assert observe(batched) == observe(looped)


@pytest.mark.parametrize("case", ["adwin", "sph", "page_hinkley"])
def test_update_many_stops_at_a_bad_value_like_the_loop(case: str) -> None:
    factory, _ = CASES[case]
    xs: list[float] = [*make_stream("real", 4, [(0.0, 50), (1.0, 50)]), math.nan, 1.0]
    looped, batched = factory(), factory()
    with pytest.raises(ValueError):
        for x in xs:
            looped.update(x)
    with pytest.raises(ValueError):
        batched.update_many(xs)
    assert encode(batched) == encode(looped)
