"""Detection benchmark: false alarms, detection delays and cost of driftline's detector defaults.

Every figure puts our default (what the pipeline runs) beside river's default on the *same* values.

Methodology
-----------
False alarms (stationary streams)
    N(0,1), Student-t(3), lognormal(0,1) for numeric detectors; Bernoulli(0.1) for error-stream
    detectors; a 5-category feature with fixed frequencies for categorical detectors. Each stream
    is drawn for several seeds (`Params.seeds` x `Params.values_per_seed` values, each seed with
    fresh detectors) and every alarm is counted. Page-Hinkley detectors are replaced by a fresh
    one after each alarm, as the pipeline does (so ours re-learns its warm-up); the others keep
    running as they are (ADWIN, DDM & co. reset themselves; PSI keeps its reference). The rate is
    alarms per million *monitored* values: values a fresh detector spends in its warm-up (1000 for
    ours and the PSI reference, ``min_instances`` = 30 for river's Page-Hinkley) are not counted.
    The JSON also gives a one-sided 95% Poisson upper bound.

Detection after an abrupt change
    For each change point, with its own seed, fresh detectors get a stationary prefix (2000
    values for numeric / categorical signals, 5000 for error streams: warm-up done, ADWIN has a
    window), then the changed distribution. The delay is the number of changed values fed up to
    and including the one that raised the first alarm (1 = the first changed value); no alarm
    within the cap (5000 / 20000 values) is a miss. Median and p90 are nearest-rank quantiles
    over *all* change points with misses counted as infinitely late, so they are never flattered
    by dropping misses (shown as ``>cap``). An alarm during the prefix is a false alarm for that
    trial and is reported; the detector then carries on as the pipeline would (Page-Hinkley is
    replaced by a fresh one). Changes: mean +1 sd, mean +0.5 sd, variance x2 (N(0,1) to
    N(0, sqrt 2)), error rate 0.10 to 0.20, and a categorical frequency shift (20 points of mass
    from the most to the least frequent category, PSI about 0.39).

Cost and state size
    Measured in the main process after the parallel parts, on the first stationary stream of the
    detector's signal. Each repeat builds fresh detectors, feeds 10k values untimed, then times
    `Params.cost_values` values with ``time.perf_counter_ns`` (gc off): an ``update`` loop that
    also reads ``drift_detected`` (the pipeline's per-event path), and ``update_many`` where our
    class has its own (numpy for Page-Hinkley and PSI). Ours and river's are timed alternately
    within each repeat and the best repeat is kept, so the ours/river ratio is taken under the
    same machine noise. State size is ``len(detectors.encode(det))`` after the 10k values; river's
    column shows its pickle size for scale only (the pipeline never pickles).

Targets, judged for the defaults the pipeline runs (marked ``*``): at most 1 false alarm per
million values on every stationary stream of the signal; detection rate >= 99% with median delay
<= 100 values for a +1 sd mean shift (Page-Hinkley) and <= 1000 labels for an error rate 0.10 to
0.20 (ADWIN); ``update`` cost <= 2 us per value. Optional detectors are reported without a
verdict. Slow detectors (river's KSWIN: ~225 us per update) run with `Params.slow`, the issue's
minimum sizes; threshold detectors (latency quantile) get cost and state size only.

Adding a detector: one `DetectorSpec` entry in `DETECTORS` (see the registration point).
Runtime: about 4 to 7 minutes on 2 (shared) cores for the full run, ~15 s for ``--quick``.
"""

from __future__ import annotations

import gc
import math
import pickle
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from river import drift
from river.drift import binary as river_binary

import detectors
from bench import BenchResult, Row, RunOptions, Verdict

__all__ = [
    "CHANGES",
    "DETECTORS",
    "FULL",
    "QUICK",
    "STATIONARY",
    "Change",
    "DelayTarget",
    "DetectorSpec",
    "Impl",
    "Params",
    "Stream",
    "run",
]

Array = npt.NDArray[Any]
SignalKind = Literal["numeric", "errors", "categorical", "latency"]
Draw = Callable[[np.random.Generator, int], Array]

BASE_SEED = 20_240_611
"""Root of every random stream: the same code gives the same values on every machine."""

FA_TARGET_PER_MILLION = 1.0
COST_TARGET_NS = 2000.0


# -- parameters -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Params:
    """Sizes of one run."""

    values_per_seed: int
    """Values per stationary stream and seed."""
    seeds: int
    """Independent seeds per stationary stream."""
    trials: int
    """Change points per (detector, change)."""
    trial_chunk: int
    """Change points per parallel task."""
    cost_warm: int
    """Untimed values before timing (and before measuring the state size)."""
    cost_values: int
    """Timed values per repeat."""
    cost_repeats: int
    """Repeats; the best is kept."""
    river_fraction: float = 1.0
    """Share of each stationary seed fed to river's implementation."""
    slow: Params | None = None
    """Sizes for detectors marked ``slow`` (default: these)."""

    def describe(self) -> dict[str, Any]:
        """The sizes, for the JSON."""
        out = {k: v for k, v in vars(self).items() if k != "slow"}
        out["values_per_stream"] = self.values_per_seed * self.seeds
        return out


FULL = Params(
    values_per_seed=1_000_000,
    seeds=10,
    trials=400,
    trial_chunk=50,
    cost_warm=10_000,
    cost_values=200_000,
    cost_repeats=5,
    # River's KSWIN takes ~225 us per update, ours ~50 us: the minimum sizes.
    slow=Params(
        values_per_seed=1_000_000,
        seeds=1,
        trials=50,
        trial_chunk=5,
        cost_warm=10_000,
        cost_values=5_000,
        cost_repeats=3,
        river_fraction=0.02,  # river's KSWIN raises ~1300 alarms per million: 20k values do
    ),
)
QUICK = Params(
    values_per_seed=50_000,
    seeds=2,
    trials=20,
    trial_chunk=10,
    cost_warm=10_000,
    cost_values=20_000,
    cost_repeats=2,
    slow=Params(
        values_per_seed=5_000,
        seeds=1,
        trials=2,
        trial_chunk=1,
        cost_warm=2_000,
        cost_values=500,
        cost_repeats=1,
        river_fraction=0.4,
    ),
)


# -- streams ----------------------------------------------------------------------------------
CATEGORIES = ("c0", "c1", "c2", "c3", "c4")
CATEGORY_P = (0.40, 0.25, 0.15, 0.12, 0.08)
"""Fixed frequencies of the stationary categorical feature."""
CATEGORY_P_SHIFTED = (0.20, 0.25, 0.15, 0.12, 0.28)
"""After the shift: 20 points of mass move from the most to the least frequent category."""


def _normal(mean: float, std: float) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> Array:
        return rng.normal(mean, std, n)

    return draw


def _student_t(rng: np.random.Generator, n: int) -> Array:
    return rng.standard_t(3, n)


def _lognormal(mean: float, sigma: float) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> Array:
        return rng.lognormal(mean, sigma, n)

    return draw


def _bernoulli(p: float) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> Array:
        return (rng.random(n) < p).astype(np.float64)

    return draw


def _categorical(p: Sequence[float]) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> Array:
        return rng.choice(len(CATEGORIES), size=n, p=np.asarray(p))

    return draw


@dataclass(frozen=True)
class Stream:
    """A stationary stream."""

    name: str
    kind: SignalKind
    draw: Draw


@dataclass(frozen=True)
class Change:
    """An abrupt change: `before` for `prefix` values, then `after` for at most `cap` values."""

    name: str
    kind: SignalKind
    before: Draw
    after: Draw
    prefix: int
    cap: int


STATIONARY: tuple[Stream, ...] = (
    Stream("N(0,1)", "numeric", _normal(0.0, 1.0)),
    Stream("Student-t(3)", "numeric", _student_t),
    Stream("lognormal(0,1)", "numeric", _lognormal(0.0, 1.0)),
    Stream("errors Bernoulli(0.1)", "errors", _bernoulli(0.1)),
    Stream("categorical 5 fixed p", "categorical", _categorical(CATEGORY_P)),
    Stream("latency ms lognormal(4,0.5)", "latency", _lognormal(4.0, 0.5)),
)

CHANGES: tuple[Change, ...] = (
    Change("mean +1sd", "numeric", _normal(0.0, 1.0), _normal(1.0, 1.0), 2000, 5000),
    Change("mean +0.5sd", "numeric", _normal(0.0, 1.0), _normal(0.5, 1.0), 2000, 5000),
    Change("variance x2", "numeric", _normal(0.0, 1.0), _normal(0.0, math.sqrt(2.0)), 2000, 5000),
    Change("error rate 0.10->0.20", "errors", _bernoulli(0.1), _bernoulli(0.2), 5000, 20000),
    Change(
        "category shift",
        "categorical",
        _categorical(CATEGORY_P),
        _categorical(CATEGORY_P_SHIFTED),
        2000,
        5000,
    ),
)


def _inputs(kind: SignalKind, values: Array, batch: bool) -> Any:
    """What a detector is fed: numpy for ``update_many``, Python objects for ``update``."""
    if kind == "categorical":
        return [CATEGORIES[int(c)] for c in values]
    return values if batch else values.tolist()


def _rng(*parts: str | int) -> np.random.Generator:
    words = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence([BASE_SEED, *words]))


# -- detectors --------------------------------------------------------------------------------
class DriftDetector(Protocol):
    """river's detector API, which ours follow."""

    def update(self, x: Any, /) -> Any:
        """Feed one value."""

    @property
    def drift_detected(self) -> bool:
        """True right after the update that detected a drift."""


@dataclass(frozen=True)
class Impl:
    """One implementation of a detector, with the defaults under test."""

    make: Callable[[], DriftDetector]
    label: str = ""
    """How it is built, for the JSON (default: ``module.Class()`` of `make`)."""
    restart_on_alarm: bool = False
    """Replace it by a fresh one after each alarm (the pipeline does this for Page-Hinkley)."""
    warmup: int = 0
    """Values a fresh instance needs before it can alarm; not counted as monitored."""

    def describe(self) -> str:
        """`label`, or ``package.Class()`` from the shortest module path that exports `make`."""
        if self.label:
            return self.label
        name = getattr(self.make, "__qualname__", None)
        module = getattr(self.make, "__module__", None)
        if not isinstance(name, str) or not isinstance(module, str) or "<" in name:
            return repr(self.make)
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if getattr(sys.modules.get(prefix), name, None) is self.make:
                return f"{prefix}.{name}()"
        return f"{module}.{name}()"


@dataclass(frozen=True)
class DelayTarget:
    """Target for one change: detection rate at least `min_rate`, median delay at most
    `max_median` values."""

    min_rate: float
    max_median: int


@dataclass(frozen=True)
class DetectorSpec:
    """A detector under test: our default beside river's, on the streams of its signal kind."""

    name: str
    kind: SignalKind
    ours: Impl
    river: Impl | None
    production: bool
    """A default the pipeline runs: the targets are judged (false alarms, cost, `delay_targets`)."""
    delay_targets: Mapping[str, DelayTarget] = field(default_factory=dict)
    """Change name -> target (only judged when `production`)."""
    slow: bool = False
    """Run with `Params.slow` sizes (the issue's minimum: 1M values, 50 change points)."""
    cost_only: bool = False
    """Only cost and state size (no drift flag worth counting, e.g. a threshold detector)."""

    def impls(self) -> Iterator[tuple[str, Impl]]:
        """("ours", impl), then ("river", impl) if there is a baseline."""
        yield "ours", self.ours
        if self.river is not None:
            yield "river", self.river


# ---------------------------------------------------------------------------------------------
# REGISTRATION POINT for detectors: one DetectorSpec each. `kind` picks the stationary streams
# and changes above ("numeric", "errors", "categorical", "latency"); `river=None` when river has
# no counterpart; `production=True` for what the pipeline runs by default (targets are judged for
# those only); `slow=True` for detectors that need the reduced `Params.slow` sizes; `cost_only`
# for detectors without a statistical alarm worth counting. A constructor that needs arguments:
# Impl(lambda: X(arg=...), label="X(arg=...)"). Categorical detectors get ``str`` values
# ("c0".."c4"); the others get floats (numpy arrays through ``update_many`` when our class has
# its own).
# ---------------------------------------------------------------------------------------------
DETECTORS: list[DetectorSpec] = [
    DetectorSpec(
        "page_hinkley",
        "numeric",
        Impl(detectors.StandardizedPageHinkley, restart_on_alarm=True, warmup=1000),
        Impl(drift.PageHinkley, restart_on_alarm=True, warmup=30),
        production=True,
        delay_targets={"mean +1sd": DelayTarget(0.99, 100)},
    ),
    DetectorSpec(
        "adwin",
        "errors",
        Impl(detectors.ADWIN),
        Impl(drift.ADWIN),
        production=True,
        delay_targets={"error rate 0.10->0.20": DelayTarget(0.99, 1000)},
    ),
    # Windowed PSI for features (DESIGN.md's data-drift defaults); river has no counterpart.
    # Not reset after a flag (see their docs): a lasting excursion is counted at every check.
    DetectorSpec(
        "numeric_psi",
        "numeric",
        Impl(detectors.NumericPSI, warmup=1000),
        None,
        production=True,
    ),
    DetectorSpec(
        "categorical_psi",
        "categorical",
        Impl(detectors.CategoricalPSI, warmup=1000),
        None,
        production=True,
    ),
    # Optional error-stream detectors.
    DetectorSpec("ddm", "errors", Impl(detectors.DDM), Impl(river_binary.DDM), production=False),
    DetectorSpec("eddm", "errors", Impl(detectors.EDDM), Impl(river_binary.EDDM), production=False),
    DetectorSpec(
        "hddm_a", "errors", Impl(detectors.HDDM_A), Impl(river_binary.HDDMA), production=False
    ),
    DetectorSpec(
        "hddm_w", "errors", Impl(detectors.HDDM_W), Impl(river_binary.HDDMW), production=False
    ),
    # KSWIN samples with its own random.Random: a fixed seed keeps the run reproducible. Slow:
    # river's takes ~225 us per update.
    DetectorSpec(
        "kswin",
        "numeric",
        Impl(lambda: detectors.KSWIN(seed=7), label="detectors.KSWIN(seed=7)"),
        Impl(lambda: drift.KSWIN(seed=7), label="river.drift.KSWIN(seed=7)"),
        production=False,
        slow=True,
    ),
    # Latency quantile with a threshold: no statistical alarm to count; cost and size only.
    DetectorSpec(
        "latency_quantile",
        "latency",
        Impl(detectors.LatencyQuantile),
        None,
        production=False,
        cost_only=True,
    ),
]


def _spec(name: str) -> DetectorSpec:
    for s in DETECTORS:
        if s.name == name:
            return s
    raise KeyError(name)


def _stream(name: str) -> Stream:
    for s in STATIONARY:
        if s.name == name:
            return s
    raise KeyError(name)


def _change(name: str) -> Change:
    for c in CHANGES:
        if c.name == name:
            return c
    raise KeyError(name)


def _has_update_many(det: object) -> bool:
    """True when the class provides its own (faster) ``update_many``, not the base-class loop."""
    own = getattr(type(det), "update_many", None)
    return own is not None and own is not detectors.Detector.update_many


# -- feeding ----------------------------------------------------------------------------------
class Monitor:
    """Feeds a stream to one implementation the way the pipeline would, counting alarms."""

    def __init__(self, impl: Impl, kind: SignalKind) -> None:
        self.impl = impl
        self.kind = kind
        self.det = impl.make()
        self.batch = _has_update_many(self.det)
        self.fed = 0
        self.alarms = 0
        self.restarts = 0
        self._life_start = 0
        self._warm_done = 0

    @property
    def monitored(self) -> int:
        """Values fed after the warm-up of the instance that received them."""
        current = min(self.impl.warmup, self.fed - self._life_start)
        return self.fed - self._warm_done - current

    def _restart(self) -> None:
        self._warm_done += min(self.impl.warmup, self.fed - self._life_start)
        self._life_start = self.fed
        self.det = self.impl.make()
        self.restarts += 1

    def feed(self, values: Array, stop_at_first: bool = False) -> list[int]:
        """Feed `values`; positions (in `values`) of the alarms. With `stop_at_first`, stop
        after the first alarm (the rest of `values` is not fed)."""
        xs = _inputs(self.kind, values, self.batch)
        if self.batch:
            hits = self._feed_batch(xs, stop_at_first)
        else:
            hits = self._feed_loop(xs, stop_at_first)
        self.alarms += len(hits)
        return hits

    def _feed_loop(self, xs: Sequence[Any], stop: bool) -> list[int]:
        hits: list[int] = []
        det = self.det
        update = det.update
        restart = self.impl.restart_on_alarm
        base = self.fed
        for i, x in enumerate(xs):
            update(x)
            if det.drift_detected:
                hits.append(i)
                self.fed = base + i + 1
                if restart:
                    self._restart()
                    det = self.det
                    update = det.update
                if stop:
                    return hits
        self.fed = base + len(xs)
        return hits

    def _feed_batch(self, xs: Any, stop: bool) -> list[int]:
        hits: list[int] = []
        restart = self.impl.restart_on_alarm
        base = self.fed
        n = len(xs)
        chunk = 64 if stop else n
        pos = 0
        while pos < n:
            end = min(n, pos + chunk)
            found: list[int] = self.det.update_many(xs[pos:end])  # type: ignore[attr-defined]
            if found and (stop or restart):
                hits.append(pos + found[0])
                pos += found[0] + 1
                self.fed = base + pos
                if restart:
                    self._restart()  # the old instance's later values are discarded
                if stop:
                    return hits
                continue
            hits.extend(pos + f for f in found)
            pos = end
            if stop:
                chunk = min(chunk * 2, 4096)
        self.fed = base + n
        return hits


# -- parallel tasks (top-level functions: they run in worker processes) -----------------------
def _stationary_task(
    spec_name: str, stream_name: str, seed: int, n: int, river_n: int
) -> list[dict[str, Any]]:
    spec = _spec(spec_name)
    values = _stream(stream_name).draw(_rng("stationary", stream_name, seed), n)
    out = []
    for impl_name, impl in spec.impls():
        mon = Monitor(impl, spec.kind)
        t0 = time.perf_counter()
        fed = values[:river_n] if impl_name == "river" else values
        mon.feed(fed)
        out.append(
            {
                "detector": spec_name,
                "impl": impl_name,
                "stream": stream_name,
                "seed": seed,
                "values": len(fed),
                "monitored": mon.monitored,
                "alarms": mon.alarms,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    return out


def _change_task(spec_name: str, change_name: str, first: int, stop: int) -> list[dict[str, Any]]:
    spec = _spec(spec_name)
    change = _change(change_name)
    out = []
    for trial in range(first, stop):
        rng = _rng("change", change_name, trial)
        before = change.before(rng, change.prefix)
        after = change.after(rng, change.cap)
        for impl_name, impl in spec.impls():
            mon = Monitor(impl, spec.kind)
            prefix_hits = mon.feed(before)
            hits = mon.feed(after, stop_at_first=True)
            out.append(
                {
                    "detector": spec_name,
                    "impl": impl_name,
                    "change": change_name,
                    "trial": trial,
                    "prefix_alarms": len(prefix_hits),
                    "delay": hits[0] + 1 if hits else None,
                }
            )
    return out


# -- statistics -------------------------------------------------------------------------------
def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a Poisson mean after observing `k` events.

    >>> round(poisson_upper(0), 3)
    2.996
    """
    alpha = 1.0 - confidence

    def cdf(lam: float) -> float:
        term = math.exp(-lam)
        total = term
        for i in range(1, k + 1):
            term *= lam / i
            total += term
        return total

    lo, hi = 0.0, max(10.0, 4.0 * k + 10.0)
    for _ in range(200):
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def nearest_rank(delays: Sequence[int | None], q: float) -> int | None:
    """Nearest-rank `q`-quantile of `delays`, misses (None) counted as infinitely late; None
    when the quantile is a miss (or there is no trial)."""
    if not delays:
        return None
    ordered = sorted(delays, key=lambda d: math.inf if d is None else d)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- costs ------------------------------------------------------------------------------------
def _time_loop(det: DriftDetector, xs: Sequence[Any]) -> int:
    update = det.update
    flagged = 0
    t0 = time.perf_counter_ns()
    for x in xs:
        update(x)
        flagged += det.drift_detected
    return time.perf_counter_ns() - t0


def _time_many(det: DriftDetector, xs: Any) -> int:
    t0 = time.perf_counter_ns()
    det.update_many(xs)  # type: ignore[attr-defined]
    return time.perf_counter_ns() - t0


def _warmed(impl: Impl, kind: SignalKind, warm: Array) -> DriftDetector:
    det = impl.make()
    for x in _inputs(kind, warm, batch=False):
        det.update(x)
    return det


def _state_bytes(det: DriftDetector, ours: bool) -> int | None:
    if ours:
        return len(detectors.encode(det))  # type: ignore[arg-type]
    try:
        return len(pickle.dumps(det))
    except Exception:  # some river objects may not pickle; the size is then unknown
        return None


def _measure_cost(spec: DetectorSpec, params: Params) -> list[dict[str, Any]]:
    """Best-of-repeats ns per value of ``update`` (and of our own ``update_many``), state size."""
    stream = _cost_stream(spec)
    warm = stream.draw(_rng("cost-warm", stream.name), params.cost_warm)
    timed = stream.draw(_rng("cost", stream.name), params.cost_values)
    loop_input = _inputs(spec.kind, timed, batch=False)
    batch_input = _inputs(spec.kind, timed, batch=True)
    samples: dict[tuple[str, str], list[int]] = {}
    own_many: dict[str, bool] = {}
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(params.cost_repeats):
            for impl_name, impl in spec.impls():  # alternate: both see the same machine noise
                det = _warmed(impl, spec.kind, warm)
                own_many[impl_name] = _has_update_many(det)
                gc.collect()
                gc.disable()
                ns = _time_loop(det, loop_input)
                gc.enable()
                samples.setdefault((impl_name, "update"), []).append(ns)
                if own_many[impl_name]:
                    det = _warmed(impl, spec.kind, warm)
                    gc.collect()
                    gc.disable()
                    ns = _time_many(det, batch_input)
                    gc.enable()
                    samples.setdefault((impl_name, "update_many"), []).append(ns)
    finally:
        if gc_was_enabled:
            gc.enable()
    n = params.cost_values
    out = []
    for impl_name, impl in spec.impls():
        # A separate instance: pickling a river detector slows its later updates about 2x.
        size = _state_bytes(_warmed(impl, spec.kind, warm), impl_name == "ours")
        upd = [v / n for v in samples.get((impl_name, "update"), [])]
        many = [v / n for v in samples.get((impl_name, "update_many"), [])]
        out.append(
            {
                "detector": spec.name,
                "impl": impl_name,
                "built_as": impl.describe(),
                "stream": stream.name,
                "update_ns": min(upd) if upd else None,
                "update_many_ns": min(many) if many else None,
                "own_update_many": own_many.get(impl_name, False),
                "state_bytes": size,
                "state_encoding": "detectors.encode" if impl_name == "ours" else "pickle",
                "state_after_values": params.cost_warm,
                "timed_values": n,
                "repeats": params.cost_repeats,
                "update_ns_samples": upd,
                "update_many_ns_samples": many,
            }
        )
    return out


def _cost_stream(spec: DetectorSpec) -> Stream:
    return next(s for s in STATIONARY if s.kind == spec.kind)


# -- orchestration ----------------------------------------------------------------------------
Task = tuple[float, Callable[..., list[dict[str, Any]]], tuple[Any, ...]]


def sizes(spec: DetectorSpec, params: Params) -> Params:
    """The sizes `spec` runs with: `params`, or `params.slow` for a slow detector."""
    return params.slow if spec.slow and params.slow is not None else params


def _river_values(p: Params) -> int:
    return max(1, round(p.values_per_seed * p.river_fraction))


def _tasks(params: Params) -> list[Task]:
    """Stationary and change tasks, each (rough cost, function, args)."""
    tasks: list[Task] = []
    for spec in DETECTORS:
        if spec.cost_only:
            continue
        p = sizes(spec, params)
        per_value = (50.0 if spec.slow else 5.0 if spec.kind == "errors" else 1.0) * (
            1 + (spec.river is not None)
        )
        for stream in (s for s in STATIONARY if s.kind == spec.kind):
            for seed in range(p.seeds):
                args = (spec.name, stream.name, seed, p.values_per_seed, _river_values(p))
                tasks.append((per_value * p.values_per_seed, _stationary_task, args))
        for change in (c for c in CHANGES if c.kind == spec.kind):
            for first in range(0, p.trials, p.trial_chunk):
                stop = min(p.trials, first + p.trial_chunk)
                weight = per_value * (stop - first) * (change.prefix + change.cap / 4)
                tasks.append((weight, _change_task, (spec.name, change.name, first, stop)))
    return tasks


def _run_tasks(tasks: list[Task], options: RunOptions, label: str) -> list[dict[str, Any]]:
    ordered = sorted(tasks, key=lambda t: -t[0])
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    step = max(1, len(ordered) // 10)
    if options.workers <= 1:
        for i, (_, fn, args) in enumerate(ordered, 1):
            results += fn(*args)
            if i % step == 0 or i == len(ordered):
                options.say(f"  {label}: {i}/{len(ordered)} ({time.perf_counter() - t0:.0f}s)")
        return results
    with ProcessPoolExecutor(max_workers=options.workers) as pool:
        futures: list[Future[list[dict[str, Any]]]] = [
            pool.submit(fn, *args) for _, fn, args in ordered
        ]
        for i, fut in enumerate(as_completed(futures), 1):
            results += fut.result()
            if i % step == 0 or i == len(ordered):
                options.say(f"  {label}: {i}/{len(ordered)} ({time.perf_counter() - t0:.0f}s)")
    return results


def _summarise_false_alarms(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keys: list[tuple[str, str, str]] = []
    for r in records:
        key = (r["detector"], r["stream"], r["impl"])
        if key not in keys:
            keys.append(key)
    for det, stream, impl in sorted(keys, key=_order_key):
        mine = sorted(
            (r for r in records if (r["detector"], r["stream"], r["impl"]) == (det, stream, impl)),
            key=lambda r: r["seed"],
        )
        alarms = sum(r["alarms"] for r in mine)
        monitored = sum(r["monitored"] for r in mine)
        out.append(
            {
                "detector": det,
                "stream": stream,
                "impl": impl,
                "seeds": len(mine),
                "values": sum(r["values"] for r in mine),
                "monitored_values": monitored,
                "alarms": alarms,
                "per_million": alarms / monitored * 1e6 if monitored else None,
                "upper95_per_million": (
                    poisson_upper(alarms) / monitored * 1e6 if monitored else None
                ),
                "per_seed": [
                    {k: r[k] for k in ("seed", "values", "monitored", "alarms", "seconds")}
                    for r in mine
                ],
            }
        )
    return out


def _summarise_changes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keys: list[tuple[str, str, str]] = []
    for r in records:
        key = (r["detector"], r["change"], r["impl"])
        if key not in keys:
            keys.append(key)
    for det, change_name, impl in sorted(keys, key=_order_key):
        change = _change(change_name)
        mine = sorted(
            (
                r
                for r in records
                if (r["detector"], r["change"], r["impl"]) == (det, change_name, impl)
            ),
            key=lambda r: r["trial"],
        )
        delays: list[int | None] = [r["delay"] for r in mine]
        found = [d for d in delays if d is not None]
        trials = len(mine)
        out.append(
            {
                "detector": det,
                "change": change_name,
                "impl": impl,
                "trials": trials,
                "prefix": change.prefix,
                "cap": change.cap,
                "detected": len(found),
                "detection_rate": len(found) / trials if trials else None,
                "median_delay": nearest_rank(delays, 0.5),
                "p90_delay": nearest_rank(delays, 0.9),
                "mean_delay_detected": sum(found) / len(found) if found else None,
                "prefix_false_alarm_trials": sum(r["prefix_alarms"] > 0 for r in mine),
                "prefix_false_alarms": sum(r["prefix_alarms"] for r in mine),
                "delays": delays,
            }
        )
    return out


def _order_key(key: tuple[str, str, str]) -> tuple[int, int, int]:
    det, where, impl = key
    names = [s.name for s in DETECTORS]
    places = [s.name for s in STATIONARY] + [c.name for c in CHANGES]
    return (
        names.index(det) if det in names else len(names),
        places.index(where) if where in places else len(places),
        0 if impl == "ours" else 1,
    )


# -- table and targets ------------------------------------------------------------------------
def _fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _fmt_delay(r: dict[str, Any] | None, key: str) -> str:
    if r is None:
        return "n/a"
    d = r[key]
    return f">{r['cap']}" if d is None else str(d)


def _fmt_pct(r: dict[str, Any] | None) -> str:
    if r is None or r["detection_rate"] is None:
        return "n/a"
    return f"{100 * r['detection_rate']:.1f}%"


def _fmt_alarms(r: dict[str, Any] | None) -> str:
    return "n/a" if r is None else f"{_fmt_rate(r['per_million'])} ({r['alarms']})"


def _fmt_prefix(r: dict[str, Any] | None) -> str:
    return "n/a" if r is None else f"{r['prefix_false_alarm_trials']}/{r['trials']} trials"


def _fmt_ns(ns: float | None) -> str:
    return "n/a" if ns is None else f"{ns:.0f}"


def _pick(
    records: list[dict[str, Any]], where_key: str, det: str, where: str, impl: str
) -> dict[str, Any] | None:
    for r in records:
        if (r["detector"], r[where_key], r["impl"]) == (det, where, impl):
            return r
    return None


class _Targets:
    """Collects every judged target for the JSON and returns the verdict for the table."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def judge(
        self, det: str, section: str, where: str, metric: str, op: str, goal: float, value: Any
    ) -> Verdict:
        measured = None if value is None else float(value)
        met = measured is not None and (measured <= goal if op == "<=" else measured >= goal)
        self.items.append(
            {
                "detector": det,
                "section": section,
                "stream": where,
                "metric": metric,
                "op": op,
                "target": goal,
                "measured": measured,
                "met": met,
            }
        )
        return "PASS" if met else "MISS"


def _label(spec: DetectorSpec) -> str:
    return spec.name + ("*" if spec.production else "")


def _false_alarm_rows(params: Params, fa: list[dict[str, Any]], targets: _Targets) -> list[Row]:
    group = (
        f"False alarms per million monitored values (stationary; {params.seeds} seeds x "
        f"{params.values_per_seed:,} values; alarm count in brackets)"
    )
    rows = []
    for spec in DETECTORS:
        for stream in (s for s in STATIONARY if s.kind == spec.kind):
            ours = _pick(fa, "stream", spec.name, stream.name, "ours")
            river = _pick(fa, "stream", spec.name, stream.name, "river")
            if ours is None:
                continue
            verdict: Verdict = "info"
            goal = ""
            if spec.production:
                goal = f"<= {FA_TARGET_PER_MILLION:g} /M"
                verdict = targets.judge(
                    spec.name,
                    "false_alarms",
                    stream.name,
                    "per_million",
                    "<=",
                    FA_TARGET_PER_MILLION,
                    ours["per_million"],
                )
            rows.append(
                Row(
                    group=group,
                    detector=_label(spec),
                    stream=stream.name,
                    metric="false alarms /M",
                    ours=_fmt_alarms(ours),
                    river=_fmt_alarms(river),
                    target=goal,
                    verdict=verdict,
                    measured=_fmt_rate(ours["per_million"]),
                )
            )
    return rows


def _change_rows(params: Params, ch: list[dict[str, Any]], targets: _Targets) -> list[Row]:
    group = (
        f"Detection after an abrupt change ({params.trials} change points each; delay = "
        "changed values up to the first alarm)"
    )
    rows = []
    for spec in DETECTORS:
        for change in (c for c in CHANGES if c.kind == spec.kind):
            ours = _pick(ch, "change", spec.name, change.name, "ours")
            river = _pick(ch, "change", spec.name, change.name, "river")
            if ours is None:
                continue
            goal = spec.delay_targets.get(change.name) if spec.production else None
            rate_t = med_t = ""
            rate_v: Verdict = "info"
            med_v: Verdict = "info"
            if goal is not None:
                rate_t = f">= {100 * goal.min_rate:g}%"
                rate_v = targets.judge(
                    spec.name,
                    "change_detection",
                    change.name,
                    "detection_rate",
                    ">=",
                    goal.min_rate,
                    ours["detection_rate"],
                )
                med_t = f"<= {goal.max_median}"
                med_v = targets.judge(
                    spec.name,
                    "change_detection",
                    change.name,
                    "median_delay",
                    "<=",
                    goal.max_median,
                    ours["median_delay"],
                )
            row = partial(Row, group, _label(spec), change.name)
            rows += [
                row(
                    metric="detected",
                    ours=_fmt_pct(ours),
                    river=_fmt_pct(river),
                    target=rate_t,
                    verdict=rate_v,
                    measured=_fmt_pct(ours),
                ),
                row(
                    metric="median delay",
                    ours=_fmt_delay(ours, "median_delay"),
                    river=_fmt_delay(river, "median_delay"),
                    target=med_t,
                    verdict=med_v,
                    measured=_fmt_delay(ours, "median_delay"),
                ),
                row(
                    metric="p90 delay",
                    ours=_fmt_delay(ours, "p90_delay"),
                    river=_fmt_delay(river, "p90_delay"),
                ),
                row(
                    metric=f"alarm in {change.prefix}-value prefix",
                    ours=_fmt_prefix(ours),
                    river=_fmt_prefix(river),
                ),
            ]
    return rows


def _cost_rows(params: Params, cost: list[dict[str, Any]], targets: _Targets) -> list[Row]:
    group = (
        f"Cost per value (best of {params.cost_repeats} x {params.cost_values:,} values) and "
        f"state size after {params.cost_warm:,} values"
    )
    rows = []
    for spec in DETECTORS:
        where = _cost_stream(spec).name
        ours = _pick(cost, "stream", spec.name, where, "ours")
        river = _pick(cost, "stream", spec.name, where, "river")
        if ours is None:
            continue
        o_ns = ours["update_ns"]
        r_ns = None if river is None else river["update_ns"]
        ratio = f" (ours {o_ns / r_ns:.2f}x)" if o_ns and r_ns else ""
        r_size = None if river is None else river["state_bytes"]
        row = partial(Row, group, _label(spec), where)
        goal = ""
        verdict: Verdict = "info"
        if spec.production:
            goal = f"<= {COST_TARGET_NS:g} ns"
            verdict = targets.judge(
                spec.name, "cost", where, "update_ns", "<=", COST_TARGET_NS, o_ns
            )
        rows += [
            row(
                metric="update ns/value",
                ours=_fmt_ns(o_ns),
                river=_fmt_ns(r_ns) + ratio,
                target=goal,
                verdict=verdict,
                measured=_fmt_ns(o_ns),
            ),
            row(
                metric="update_many ns/value",
                ours=_fmt_ns(ours["update_many_ns"]) if ours["own_update_many"] else "(loop)",
                river="n/a",
            ),
            row(
                metric="state bytes",
                ours=str(ours["state_bytes"]),
                river="n/a" if r_size is None else f"{r_size} (pickle)",
            ),
        ]
    return rows


# -- entry point ------------------------------------------------------------------------------
def run(options: RunOptions) -> BenchResult:
    """Run the detection benchmark (`QUICK` sizes when ``options.quick``)."""
    params = QUICK if options.quick else FULL
    t0 = time.perf_counter()
    tasks = _tasks(params)
    options.say(
        f"detection: {len(tasks)} stream tasks on {options.workers} worker(s)"
        f"{' (quick)' if options.quick else ''}"
    )
    records = _run_tasks(tasks, options, "streams")
    fa = _summarise_false_alarms([r for r in records if "stream" in r])
    ch = _summarise_changes([r for r in records if "change" in r])
    options.say("  cost: timing update / update_many")
    cost: list[dict[str, Any]] = []
    for spec in DETECTORS:
        cost += _measure_cost(spec, sizes(spec, params))
    judged = _Targets()
    rows = (
        _false_alarm_rows(params, fa, judged)
        + _change_rows(params, ch, judged)
        + _cost_rows(params, cost, judged)
    )
    targets = judged.items
    elapsed = time.perf_counter() - t0
    met = sum(t["met"] for t in targets)
    data: dict[str, Any] = {
        "quick": options.quick,
        "elapsed_seconds": round(elapsed, 1),
        "parameters": {
            "base_seed": BASE_SEED,
            "workers": options.workers,
            "sizes": params.describe(),
            "slow_sizes": None if params.slow is None else params.slow.describe(),
            "stationary_streams": [{"name": s.name, "kind": s.kind} for s in STATIONARY],
            "categories": list(CATEGORIES),
            "category_p": list(CATEGORY_P),
            "category_p_after_shift": list(CATEGORY_P_SHIFTED),
            "changes": [
                {"name": c.name, "kind": c.kind, "prefix": c.prefix, "cap": c.cap} for c in CHANGES
            ],
            "clock": "time.perf_counter_ns",
            "targets": {
                "false_alarms_per_million": FA_TARGET_PER_MILLION,
                "update_ns": COST_TARGET_NS,
                "delay": {
                    s.name: {k: vars(v) for k, v in s.delay_targets.items()}
                    for s in DETECTORS
                    if s.production and s.delay_targets
                },
            },
        },
        "detectors": [
            {
                "name": s.name,
                "kind": s.kind,
                "production_default": s.production,
                "slow": s.slow,
                "cost_only": s.cost_only,
                "ours": _describe_impl(s.ours),
                "river": None if s.river is None else _describe_impl(s.river),
            }
            for s in DETECTORS
        ],
        "false_alarms": fa,
        "change_detection": ch,
        "cost": cost,
        "targets": targets,
        "summary": {"targets": len(targets), "met": met, "all_met": met == len(targets)},
    }
    notes = [
        "* = a default the pipeline runs (DESIGN.md); targets are judged for these only.",
        *(
            f"{s.name}: ours = {s.ours.describe()}, river = "
            f"{'none' if s.river is None else s.river.describe()}"
            for s in DETECTORS
        ),
        "Page-Hinkley is replaced by a fresh detector after each alarm, as the pipeline does.",
        *_size_notes(params),
        f"elapsed {elapsed:.0f}s"
        + (
            "; QUICK MODE: sizes too small for the targets to mean anything"
            if options.quick
            else ""
        ),
    ]
    return BenchResult("detection", rows, data, notes)


def _describe_impl(impl: Impl) -> dict[str, Any]:
    return {
        "built_as": impl.describe(),
        "restart_on_alarm": impl.restart_on_alarm,
        "warmup_values_not_monitored": impl.warmup,
    }


def _size_notes(params: Params) -> list[str]:
    """Say which detectors ran with other sizes than the group titles say."""
    notes = []
    slow = params.slow
    names = [s.name for s in DETECTORS if s.slow]
    if slow is not None and names:
        notes.append(
            f"{', '.join(names)} (slow): {slow.seeds} seed(s) x {slow.values_per_seed:,} values, "
            f"river fed {_river_values(slow):,} of them; {slow.trials} change points; cost over "
            f"{slow.cost_values:,} values after {slow.cost_warm:,}, best of {slow.cost_repeats}."
        )
    cost_only = [s.name for s in DETECTORS if s.cost_only]
    if cost_only:
        notes.append(f"{', '.join(cost_only)}: cost and state size only (threshold alarm).")
    return notes
