"""ADWIN with an explicit, encodable state.

river's ADWIN lives in Rust and exposes neither its buckets nor a way to serialise them, so this is
a line-for-line reimplementation of river's algorithm (ADWIN2 bucket compression, the ``clock``
between cut checks, the same cut test and arithmetic order). It flags drift at exactly the same
updates as ``river.drift.ADWIN`` with the same parameters; the unit tests hold it to that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from detectors.base import Detector, check_finite
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["ADWIN"]


@register("adwin")
class ADWIN(Detector):
    r"""Adaptive windowing drift detector (Bifet & Gavaldà, 2007), state-compatible with river.

    Keeps a window of recent values, compressed into buckets of 1, 2, 4, … values (at most
    `max_buckets` per size). Every `clock` updates it tests each split of the window into an older
    part $W_0$ and a newer part $W_1$; when $|\hat\mu_0 - \hat\mu_1|$ exceeds the Bernstein-style
    bound for confidence `delta`, the oldest buckets are dropped and a drift is flagged. As in
    river, the update after a drift starts from an empty window.

    Parameters
    ----------
    delta
        Significance of the cut test; smaller means fewer false alarms and later detections.
    clock
        Test for a cut every `clock` updates (1 = every update).
    max_buckets
        Buckets kept per size before two are merged.
    min_window_length
        Both sub-windows must hold at least this many values for a split to be tested.
    grace_period
        No test until the window holds more than this many values.

    Examples
    --------
    >>> import random
    >>> from detectors import ADWIN
    >>> rng = random.Random(12345)
    >>> adwin = ADWIN()
    >>> stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    >>> for i, x in enumerate(stream):
    ...     adwin.update(x)
    ...     if adwin.drift_detected:
    ...         print(f"Change detected at index {i}")
    ...         evidence = adwin.stats()
    Change detected at index 1023

    The same index as ``river.drift.ADWIN`` on this stream. The evidence for the alert:

    >>> {k: round(v, 2) for k, v in evidence.items() if k.endswith(("before", "after"))}
    {'n_before': 992.0, 'mean_before': 0.49, 'n_after': 32.0, 'mean_after': 4.5}

    Notes
    -----
    ``stats()`` keys: ``width`` (values in the window), ``estimation`` (window mean), ``variance``
    (population variance of the window). On the update that flags a drift it also has
    ``n_before``/``mean_before`` (the values the cut dropped) and ``n_after``/``mean_after`` (the
    window kept).

    """

    __slots__ = (
        "_before",
        "_tick",
        "_total",
        "_totals",
        "_variance",
        "_variances",
        "_width",
        "clock",
        "delta",
        "grace_period",
        "max_buckets",
        "min_window_length",
        "n_detections",
    )

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if clock < 1:
            raise ValueError(f"clock must be >= 1, got {clock}")
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be >= 1, got {max_buckets}")
        if min_window_length < 1:
            raise ValueError(f"min_window_length must be >= 1, got {min_window_length}")
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0, got {grace_period}")
        self.delta = float(delta)
        self.clock = int(clock)
        self.max_buckets = int(max_buckets)
        self.min_window_length = int(min_window_length)
        self.grace_period = int(grace_period)
        self.n = 0
        self.n_detections = 0
        """Drifts detected since creation."""
        self.drift_detected = False
        self.warning_detected = False
        # Level i holds the totals/variances of buckets of 2**i values, oldest bucket first.
        self._totals: list[list[float]] = [[]]
        self._variances: list[list[float]] = [[]]
        self._width = 0
        self._total = 0.0
        self._variance = 0.0  # sum of squared deviations, like river's
        self._tick = 0
        self._before: tuple[int, float] | None = None  # (count, total) dropped by the last drift

    def _reset(self) -> None:
        self._totals = [[]]
        self._variances = [[]]
        self._width = 0
        self._total = 0.0
        self._variance = 0.0
        self._tick = 0
        self._before = None
        self.drift_detected = False

    @property
    def width(self) -> int:
        """Number of values in the window."""
        return self._width

    @property
    def estimation(self) -> float:
        """Mean of the window (0.0 when empty)."""
        return self._total / self._width if self._width else 0.0

    def update(self, x: float) -> None:
        """Add one value; ``drift_detected`` tells whether the window was cut.

        Examples
        --------
        >>> d = ADWIN(clock=1)
        >>> for x in [0.0] * 100 + [1.0] * 30:
        ...     d.update(x)
        ...     if d.drift_detected:
        ...         print(d.n, d.stats()["n_before"], d.width)
        116 16.0 100

        """
        if x.__class__ is not float or x - x != 0.0:
            x = check_finite(x)
        if self.drift_detected:
            self._reset()
        self.n += 1
        totals0 = self._totals[0]
        totals0.append(x)
        self._variances[0].append(0.0)
        width = self._width + 1
        if width > 1:
            # Same operation order as river so the float results agree bit for bit.
            dv = x - self._total / (width - 1)
            self._variance += (width - 1) * dv * dv / width
        self._total += x
        self._width = width
        if len(totals0) > self.max_buckets:
            self._compress()
        self._tick += 1
        if self._tick % self.clock == 0 and width > self.grace_period:
            self._detect()

    def update_many(self, xs: Iterable[float], stop_at_drift: bool = False) -> list[int]:
        """Feed several values; positions in `xs` where a drift was detected.

        Identical to looping over `update` (also when a bad value raises midway: the values
        before it are applied), but keeps the hot counters in local variables. With
        `stop_at_drift`, stops right after the first detection, so its `stats()` can be read
        before the next value resets the window.

        Examples
        --------
        >>> ADWIN().update_many([0.0] * 500 + [1.0] * 200)
        [511]
        >>> d = ADWIN()
        >>> d.update_many([0.0] * 500 + [1.0] * 200, stop_at_drift=True), d.n
        ([511], 512)

        """
        if isinstance(xs, np.ndarray):
            xs = xs.tolist()  # Python floats skip the per-value conversion
        hits: list[int] = []
        max_buckets = self.max_buckets
        clock = self.clock
        grace = self.grace_period
        totals0 = self._totals[0]
        variances0 = self._variances[0]
        width = self._width
        total = self._total
        variance = self._variance
        tick = self._tick
        n = self.n
        try:
            for i, x in enumerate(xs):
                if x.__class__ is not float or x - x != 0.0:
                    x = check_finite(x)
                if self.drift_detected:
                    self._reset()
                    totals0 = self._totals[0]
                    variances0 = self._variances[0]
                    width = tick = 0
                    total = variance = 0.0
                n += 1
                totals0.append(x)
                variances0.append(0.0)
                width += 1
                if width > 1:
                    dv = x - total / (width - 1)
                    variance += (width - 1) * dv * dv / width
                total += x
                if len(totals0) > max_buckets:
                    self._compress()
                tick += 1
                if tick % clock == 0 and width > grace:
                    self._width = width
                    self._total = total
                    self._variance = variance
                    self._detect()
                    if self.drift_detected:
                        hits.append(i)
                        width = self._width
                        total = self._total
                        variance = self._variance
                        if stop_at_drift:
                            break
        finally:
            self._width = width
            self._total = total
            self._variance = variance
            self._tick = tick
            self.n = n
        return hits

    def _compress(self) -> None:
        """Merge the two oldest buckets of every full level into the next level."""
        totals = self._totals
        variances = self._variances
        full = self.max_buckets + 1
        idx = 0
        while len(totals[idx]) == full:
            t = totals[idx]
            v = variances[idx]
            size = 1 << idx
            t0 = t[0]
            t1 = t[1]
            mu1 = t0 / size
            mu2 = t1 / size
            merged_var = v[0] + v[1] + size * 0.5 * (mu1 - mu2) * (mu1 - mu2)
            if idx + 1 == len(totals):
                totals.append([])
                variances.append([])
            totals[idx + 1].append(t0 + t1)
            variances[idx + 1].append(merged_var)
            del t[:2]
            del v[:2]
            idx += 1

    def _delete_oldest(self) -> tuple[int, float]:
        """Drop the oldest bucket; return its (count, total)."""
        last = len(self._totals) - 1
        size = 1 << last
        t = self._totals[last]
        v = self._variances[last]
        u = t[0]
        mu = u / size
        self._width -= size
        self._total -= u
        mu_window = self._total / self._width
        w = self._width
        self._variance -= v[0] + size * w * (mu - mu_window) * (mu - mu_window) / (size + w)
        del t[0]
        del v[0]
        # river pops only the emptied level; with max_buckets=1 the level below can be empty too,
        # which panics river's next deletion, so drop every empty trailing level.
        while len(self._totals) > 1 and not self._totals[-1]:
            self._totals.pop()
            self._variances.pop()
        return size, u

    def _detect(self) -> None:
        """Test every split of the window; drop old buckets while some split is significant."""
        mwl = self.min_window_length
        mwl1 = mwl - 1  # ints keep (n - mwl + 1.0) exact, as river's f64 arithmetic is
        sqrt = math.sqrt
        dropped_n = 0
        dropped_total = 0.0
        cut = True
        while cut:
            cut = False
            width = self._width
            delta_prime = math.log(2.0 * math.log(width) / self.delta)
            window_var = self._variance / width
            bias = 2.0 / 3.0 * delta_prime
            n0 = 0
            n1 = width
            u0 = 0.0
            u1 = self._total
            totals = self._totals
            for idx in range(len(totals) - 1, -1, -1):
                size = 1 << idx
                # river stops before the newest value: W1 is never empty.
                bucket = totals[idx] if idx else totals[0][:-1]
                for t in bucket:
                    n0 += size
                    n1 -= size
                    u0 += t
                    u1 -= t
                    if n1 >= mwl and n0 >= mwl:
                        m_recip = 1.0 / (n0 - mwl1) + 1.0 / (n1 - mwl1)
                        arg = 2.0 * m_recip * window_var * delta_prime
                        # river takes sqrt of a negative as NaN, which never cuts.
                        if arg >= 0.0 and abs(u0 / n0 - u1 / n1) > sqrt(arg) + bias * m_recip:
                            cut = True
                            break
                if cut:
                    break
            if cut:
                size, u = self._delete_oldest()
                dropped_n += size
                dropped_total += u
                self.drift_detected = True
        if self.drift_detected:
            self.n_detections += 1
            self._before = (dropped_n, dropped_total)

    def stats(self) -> dict[str, float]:
        """Window evidence; see the class notes for the keys."""
        width = self._width
        mean = self._total / width if width else 0.0
        out = {
            "width": float(width),
            "estimation": mean,
            "variance": self._variance / width if width else 0.0,
        }
        if self.drift_detected and self._before is not None:
            n_before, total_before = self._before
            out["n_before"] = float(n_before)
            out["mean_before"] = total_before / n_before
            out["n_after"] = float(width)
            out["mean_after"] = mean
        return out

    def to_state(self) -> State:
        """Parameters, window buckets and counters."""
        return {
            "delta": self.delta,
            "clock": self.clock,
            "max_buckets": self.max_buckets,
            "min_window_length": self.min_window_length,
            "grace_period": self.grace_period,
            "n": self.n,
            "n_detections": self.n_detections,
            "drift": self.drift_detected,
            "tick": self._tick,
            "width": self._width,
            "total": self._total,
            "variance": self._variance,
            "totals": [list(level) for level in self._totals],
            "variances": [list(level) for level in self._variances],
            "before": None if self._before is None else [self._before[0], self._before[1]],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ADWIN:
        """Rebuild from `to_state` output, checking the bucket layout is consistent."""
        r = StateReader(state, "adwin")
        d = cls(
            delta=r.get_float("delta"),
            clock=r.get_int("clock"),
            max_buckets=r.get_int("max_buckets"),
            min_window_length=r.get_int("min_window_length"),
            grace_period=r.get_int("grace_period"),
        )
        d.n = r.get_int("n", minimum=0)
        d.n_detections = r.get_int("n_detections", minimum=0)
        d.drift_detected = r.get_bool("drift")
        d._tick = r.get_int("tick", minimum=0)
        d._width = r.get_int("width", minimum=0)
        d._total = r.get_float("total")
        d._variance = r.get_float("variance")
        totals = r.get_float_rows("totals")
        variances = r.get_float_rows("variances")
        if not totals or [len(t) for t in totals] != [len(v) for v in variances]:
            raise StateDecodeError("adwin: 'totals' and 'variances' must be non-empty and aligned")
        if any(len(t) > d.max_buckets for t in totals):
            raise StateDecodeError("adwin: a bucket level holds more than max_buckets buckets")
        width = sum(len(t) << i for i, t in enumerate(totals))
        if width != d._width:
            raise StateDecodeError(f"adwin: buckets hold {width} values but width is {d._width}")
        d._totals = totals
        d._variances = variances
        before = r.get_optional_floats("before")
        if before is not None:
            if len(before) != 2 or not before[0] >= 1.0 or not before[0].is_integer():
                raise StateDecodeError("adwin: 'before' must be null or [count, total]")
            d._before = (int(before[0]), before[1])
        return d
