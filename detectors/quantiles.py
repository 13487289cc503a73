"""Streaming quantiles with relative accuracy (DDSketch), and a latency-quantile detector."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from detectors._values import raw_field
from detectors.base import Detector, check_finite
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["MAX_VALUE", "DDSketch", "LatencyQuantile"]

MAX_VALUE = 1e300
"""Largest value a sketch accepts (bucket values beyond it could overflow)."""

_BELOW_ALL = -(1 << 40)
"""A bucket key below every real one (keys of positive floats are above -40000)."""


def _check_value(x: float) -> float:
    v = check_finite(x)
    if not 0.0 <= v <= MAX_VALUE:
        raise ValueError(f"sketch values must be in [0, {MAX_VALUE:g}], got {v}")
    return v


@register("ddsketch")
class DDSketch:
    r"""Quantile sketch with relative accuracy `relative_accuracy` (Masson et al., VLDB 2019).

    Positive values fall into logarithmic buckets: with $\gamma = (1 + \alpha) / (1 - \alpha)$,
    bucket $k$ holds $(\gamma^{k-1}, \gamma^k]$ and stands for $2\gamma^k / (1 + \gamma)$, which is
    within a factor $1 \pm \alpha$ of every value in it. Zeros are counted apart. A quantile is the
    bucket value at rank $q\,(n - 1)$, so it is within $\alpha$ (relative) of the exact order
    statistic at that rank. Sketches with the same accuracy merge exactly (bucket counts add).

    The state is the bucket counts: about $\ln(\max / \min) / (2\alpha)$ buckets, e.g. 350 for
    latencies from 1 ms to 1 s at 1%. Past `max_buckets` the lowest buckets are merged into one
    (accuracy is then lost only for the smallest values: the high quantiles stay exact).
    Deterministic: the same values give the same state, whatever their order.

    Parameters
    ----------
    relative_accuracy
        $\alpha$, in [1e-6, 0.99].
    max_buckets
        Most buckets kept.

    Examples
    --------
    >>> from detectors import DDSketch
    >>> s = DDSketch()
    >>> for v in range(1, 1001):
    ...     s.update(float(v))
    >>> [round(s.quantile(q), 1) for q in (0.5, 0.95, 0.99)]
    [497.8, 944.0, 982.6]
    >>> s.count, len(s.to_state()["keys"])
    (1000, 200)

    Notes
    -----
    ``stats()`` keys: ``count``, and ``p50``, ``p95``, ``p99`` once there is a value.

    """

    __slots__ = (
        "_bins",
        "_floor",
        "_gamma",
        "_ln_gamma",
        "_multiplier",
        "count",
        "max_buckets",
        "relative_accuracy",
        "zero_count",
    )

    def __init__(self, relative_accuracy: float = 0.01, max_buckets: int = 2048) -> None:
        if not 1e-6 <= relative_accuracy <= 0.99:
            raise ValueError(f"relative_accuracy must be in [1e-6, 0.99], got {relative_accuracy}")
        if max_buckets < 2:
            raise ValueError(f"max_buckets must be >= 2, got {max_buckets}")
        self.relative_accuracy = float(relative_accuracy)
        self.max_buckets = int(max_buckets)
        self._gamma = (1.0 + self.relative_accuracy) / (1.0 - self.relative_accuracy)
        self._ln_gamma = math.log(self._gamma)
        self._multiplier = 1.0 / self._ln_gamma
        self.count = 0
        """Values added."""
        self.zero_count = 0
        """Zeros added."""
        self._bins: dict[int, int] = {}
        self._floor: int | None = None  # after a collapse, lower keys are counted here

    def key(self, x: float) -> int:
        """Bucket key of a positive value (before any collapse)."""
        return math.ceil(math.log(x) * self._multiplier)

    def value(self, key: int) -> float:
        """The value bucket `key` stands for."""
        return math.exp(key * self._ln_gamma) * 2.0 / (1.0 + self._gamma)

    def update(self, x: float) -> None:
        """Add one value (finite, >= 0)."""
        self._add(_check_value(x))

    def _add(self, x: float) -> int | None:
        """Add a checked value; return the key it was counted under (None for zero)."""
        self.count += 1
        if x == 0.0:
            self.zero_count += 1
            return None
        k = math.ceil(math.log(x) * self._multiplier)
        floor = self._floor
        if floor is not None and k < floor:
            k = floor
        bins = self._bins
        bins[k] = bins.get(k, 0) + 1
        if len(bins) > self.max_buckets:
            k = max(k, self._collapse())
        return k

    def _collapse(self) -> int:
        """Merge the lowest buckets so that `max_buckets` remain; return the new floor key."""
        keys = sorted(self._bins)
        cut = len(keys) - self.max_buckets
        floor = keys[cut]
        self._bins[floor] += sum(self._bins.pop(k) for k in keys[:cut])
        self._floor = floor
        return floor

    @property
    def collapsed(self) -> bool:
        """True once low buckets were merged."""
        return self._floor is not None

    def count_above(self, key: int) -> int:
        """Values counted under bucket keys greater than `key`."""
        return sum(c for k, c in self._bins.items() if k > key)

    def merge(self, other: DDSketch) -> None:
        """Add another sketch's counts (same relative accuracy) to this one."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("only sketches with the same relative accuracy merge")
        self.count += other.count
        self.zero_count += other.zero_count
        bins = self._bins
        floor = self._floor
        for k, c in other._bins.items():
            if floor is not None and k < floor:
                k = floor
            bins[k] = bins.get(k, 0) + c
        if len(bins) > self.max_buckets:
            self._collapse()

    def quantile(self, q: float) -> float | None:
        """Estimate of the `q`-quantile (within the relative accuracy); None when empty."""
        return _quantile(self, [self], q)

    def stats(self) -> dict[str, float]:
        """``count``, and ``p50``, ``p95``, ``p99`` once there is a value."""
        return _summary([self])

    def to_state(self) -> State:
        """Parameters, counts and the buckets, sorted by key."""
        keys = sorted(self._bins)
        return {
            "relative_accuracy": self.relative_accuracy,
            "max_buckets": self.max_buckets,
            "count": self.count,
            "zero_count": self.zero_count,
            "floor": self._floor,
            "keys": keys,
            "counts": [self._bins[k] for k in keys],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DDSketch:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "ddsketch")
        s = cls(
            relative_accuracy=r.get_float("relative_accuracy"),
            max_buckets=r.get_int("max_buckets"),
        )
        s.count = r.get_int("count", minimum=0)
        s.zero_count = r.get_int("zero_count", minimum=0)
        floor = raw_field(state, "floor", "ddsketch")
        if floor is not None:
            floor = r.get_int("floor")
        keys = r.get_list("keys")
        counts = r.get_list("counts")
        if len(keys) != len(counts) or len(keys) > s.max_buckets:
            raise StateDecodeError("ddsketch: keys and counts do not fit")
        for k in keys:
            if k.__class__ is not int or not _BELOW_ALL < k < -_BELOW_ALL:
                raise StateDecodeError("ddsketch: bucket keys must be integers")
        if any(b <= a for a, b in itertools.pairwise(keys)):
            raise StateDecodeError("ddsketch: bucket keys must be increasing")
        if not all(c.__class__ is int and c > 0 for c in counts):
            raise StateDecodeError("ddsketch: bucket counts must be positive integers")
        if s.zero_count + sum(counts) != s.count:
            raise StateDecodeError("ddsketch: counts do not add up")
        if floor is not None and (not keys or keys[0] != floor):
            raise StateDecodeError("ddsketch: the collapse floor must be the lowest key")
        s._floor = floor
        s._bins = dict(zip(keys, counts, strict=True))
        return s


def _quantile(mapping: DDSketch, sketches: list[DDSketch], q: float) -> float | None:
    """The `q`-quantile of the union of `sketches` (same accuracy), valued by `mapping`."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    count = sum(s.count for s in sketches)
    if not count:
        return None
    rank = q * (count - 1)
    cum = sum(s.zero_count for s in sketches)
    if rank < cum:
        return 0.0
    if len(sketches) == 1:
        bins = sketches[0]._bins
    else:
        bins = {}
        for s in sketches:
            for k, c in s._bins.items():
                bins[k] = bins.get(k, 0) + c
    keys = sorted(bins)
    for k in keys:
        cum += bins[k]
        if cum > rank:
            return mapping.value(k)
    return mapping.value(keys[-1])


def _summary(sketches: list[DDSketch]) -> dict[str, float]:
    count = sum(s.count for s in sketches)
    out = {"count": float(count)}
    if count:
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            out[name] = _quantile(sketches[0], sketches, q) or 0.0
    return out


@register("latency_quantile")
class LatencyQuantile(Detector):
    """A quantile of recent latencies, with an alarm when it exceeds a threshold.

    Values go into a current `DDSketch`; when it holds `window` values it becomes the previous
    sketch and a new current one starts (the older previous one is dropped). "Recent" is the
    union of the two: the last `window` to ``2 * window - 1`` values. So a spike ages out within
    two windows, and reading a quantile never needs the raw values.

    With `threshold_ms` set, ``drift_detected`` is True after every update where at least
    `min_samples` recent values are held and the recent `q`-quantile exceeds the threshold
    (level-triggered; the alert policy's cooldown decides how often that reaches a human). The
    test is O(1): the sketch's quantile exceeds the threshold exactly when at most
    ``q * (count - 1)`` recent values sit in buckets valued at or below it, a count kept up to
    date.

    Parameters
    ----------
    q
        The quantile watched, in [0, 1].
    threshold_ms
        Alarm level for that quantile (in the values' unit); None: never flag, only report.
    min_samples
        Recent values needed before a flag can be raised.
    window
        Values per sketch before rotation.
    relative_accuracy, max_buckets
        Of the sketches.

    Examples
    --------
    >>> import random
    >>> from detectors import LatencyQuantile
    >>> rng = random.Random(0)
    >>> lq = LatencyQuantile(q=0.99, threshold_ms=250.0)
    >>> normal = [rng.lognormvariate(4.0, 0.5) for _ in range(5000)]  # median 55 ms
    >>> slow = [rng.lognormvariate(5.0, 0.5) for _ in range(500)]  # median 150 ms
    >>> hits = lq.update_many(normal + slow)
    >>> hits[0] - len(normal)  # values after the slowdown until the first alarm
    92
    >>> {k: round(v) for k, v in lq.stats().items() if k in ("quantile", "p50", "count")}
    {'count': 1500, 'p50': 72, 'quantile': 340}

    Back to normal, the slow values age out within two windows:

    >>> recovery = lq.update_many([rng.lognormvariate(4.0, 0.5) for _ in range(2000)])
    >>> recovery[-1], lq.drift_detected, round(lq.quantile())
    (1498, False, 179)

    Notes
    -----
    ``stats()`` keys: ``count`` (recent values), ``n`` (values since creation), and once there
    is a recent value ``quantile`` (the recent `q`-quantile), ``p50``, ``p95``, ``p99``; plus
    ``threshold`` when set.

    """

    __slots__ = (
        "_above",
        "_current",
        "_cut",
        "_previous",
        "min_samples",
        "q",
        "threshold_ms",
        "window",
    )

    def __init__(
        self,
        q: float = 0.99,
        threshold_ms: float | None = None,
        min_samples: int = 100,
        window: int = 1000,
        relative_accuracy: float = 0.01,
        max_buckets: int = 2048,
    ) -> None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        self.q = float(q)
        self.threshold_ms = None if threshold_ms is None else _check_value(threshold_ms)
        self.min_samples = int(min_samples)
        self.window = int(window)
        self._current = DDSketch(relative_accuracy, max_buckets)
        self._previous = DDSketch(relative_accuracy, max_buckets)
        self._cut = self._cut_key()
        self._above = [0, 0]  # recent values above the cut: previous, current
        self.n = 0
        self.drift_detected = False
        self.warning_detected = False

    def _cut_key(self) -> int:
        """The highest bucket key whose value is at or below the threshold."""
        t = self.threshold_ms
        if t is None or t == 0.0:
            return _BELOW_ALL
        s = self._current
        k = s.key(t)
        while s.value(k) > t:
            k -= 1
        while s.value(k + 1) <= t:
            k += 1
        return k

    def update(self, x: float) -> None:
        """Add one latency; read ``drift_detected`` afterwards."""
        x = _check_value(x)
        self.n += 1
        cur = self._current
        floor = cur._floor
        k = cur._add(x)
        if cur._floor != floor:  # low buckets were merged upwards: recount
            self._above[1] = cur.count_above(self._cut)
        elif k is not None and k > self._cut:
            self._above[1] += 1
        if cur.count == self.window:
            self._previous = cur
            self._current = DDSketch(cur.relative_accuracy, cur.max_buckets)
            self._above = [self._above[1], 0]
        self._evaluate()

    def update_until(self, xs: Sequence[float], drifting: bool, start: int = 0) -> int:
        """Feed ``xs[start:]`` until ``drift_detected`` is no longer `drifting`; return the
        position of the value that changed it (read `stats()` now), or ``len(xs)``.

        Identical to calling `update` on each value in turn, stopping there.

        Examples
        --------
        >>> d = LatencyQuantile(q=0.5, threshold_ms=100.0, min_samples=3, window=10)
        >>> xs = [50.0, 60.0, 70.0, 200.0, 300.0, 400.0, 500.0]
        >>> d.update_until(xs, drifting=False)  # the median passes 100 ms at the 7th value
        6
        >>> round(d.quantile())
        198

        """
        update = self.update
        for i in range(start, len(xs)):
            update(xs[i])
            if self.drift_detected != drifting:
                return i
        return len(xs)

    def _evaluate(self) -> None:
        count = self._previous.count + self._current.count
        if self.threshold_ms is None or count < self.min_samples:
            self.drift_detected = False
            return
        at_or_below = count - self._above[0] - self._above[1]
        self.drift_detected = at_or_below <= self.q * (count - 1)

    def quantile(self, q: float | None = None) -> float | None:
        """The recent `q`-quantile (default: the watched one); None when nothing is recent."""
        return _quantile(self._current, [self._previous, self._current], self.q if q is None else q)

    def stats(self) -> dict[str, float]:
        """Recent quantiles and counts; see the class notes for the keys."""
        out = _summary([self._previous, self._current])
        value = self.quantile()
        if value is not None:
            out["quantile"] = value
        out["n"] = float(self.n)
        if self.threshold_ms is not None:
            out["threshold"] = self.threshold_ms
        return out

    def to_state(self) -> State:
        """Parameters and both sketches."""
        return {
            "q": self.q,
            "threshold_ms": self.threshold_ms,
            "min_samples": self.min_samples,
            "window": self.window,
            "n": self.n,
            "previous": self._previous.to_state(),
            "current": self._current.to_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LatencyQuantile:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "latency_quantile")
        r.get_map("previous"), r.get_map("current")  # present and maps
        previous = DDSketch.from_state(state["previous"])
        current = DDSketch.from_state(state["current"])
        d = cls(
            q=r.get_float("q"),
            threshold_ms=r.get_optional_float("threshold_ms"),
            min_samples=r.get_int("min_samples"),
            window=r.get_int("window"),
            relative_accuracy=current.relative_accuracy,
            max_buckets=current.max_buckets,
        )
        if (previous.relative_accuracy, previous.max_buckets) != (
            current.relative_accuracy,
            current.max_buckets,
        ):
            raise StateDecodeError("latency_quantile: the two sketches differ in parameters")
        if current.count >= d.window or previous.count not in (0, d.window):
            raise StateDecodeError("latency_quantile: sketch counts do not fit the window")
        d.n = r.get_int("n", minimum=0)
        if d.n < previous.count + current.count:
            raise StateDecodeError("latency_quantile: n is below the recent count")
        d._previous, d._current = previous, current
        d._above = [previous.count_above(d._cut), current.count_above(d._cut)]
        d._evaluate()
        return d
