"""A drop of a metric's sliding-window mean below the model's own baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from detectors._rolling import RollingMean
from detectors.base import Detector, check_finite
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["BaselineDrop"]


@register("baseline_drop")
class BaselineDrop(Detector):
    r"""Flags when a metric's sliding-window mean falls `max_drop` below its baseline.

    The first `baseline` values (e.g. 1 for a correct prediction, 0 for a wrong one) set the
    baseline mean $b$ and standard deviation $s$; no flag is raised meanwhile. Alternatively give
    `reference_mean` (and `reference_std`) and there is no warm-up. Later values fill a sliding
    window of `window` values; once it is full, every update compares its mean $m$ with the
    baseline, and ``drift_detected`` is set when the drop $d = b - m$ exceeds

    $$\text{level} = \max\bigl(\text{max\_drop},\; z\,s\,\sqrt{1/W + 1/B}\bigr),$$

    i.e. when it is both as large as asked and larger than the sampling noise of a window of $W$
    values against a baseline of $B$ values. With ``z=None`` the level is `max_drop` alone.
    With ``higher_is_better=False`` (an error rate, a loss) a rise is a drop.

    The flag is level-triggered: it is set on every update while the window stays below the level
    (the alert policy's cooldown decides how often that reaches a human). Nothing is re-learned
    after a drift; build a new detector to accept a new normal.

    Parameters
    ----------
    baseline
        Values that form the baseline (ignored when `reference_mean` is given).
    window
        Values in the sliding window.
    max_drop
        Absolute drop that counts, in the metric's units.
    z
        Noise gate in standard errors of the difference of the two means; None disables it.
    higher_is_better
        False when the metric is an error (then a rise is flagged).
    reference_mean, reference_std
        A known baseline; without `reference_std` the noise gate is off.

    Examples
    --------
    >>> import random
    >>> from detectors import BaselineDrop
    >>> rng = random.Random(5)
    >>> d = BaselineDrop()
    >>> before = [int(rng.random() < 0.9) for _ in range(5000)]  # 90% correct
    >>> after = [int(rng.random() < 0.75) for _ in range(1000)]  # 75% correct
    >>> hits = d.update_many(before + after)
    >>> hits[0] - len(before)  # values after the change until the first alarm
    295
    >>> {k: round(v, 3) for k, v in d.stats().items() if k in ("baseline", "current", "level")}
    {'baseline': 0.893, 'current': 0.728, 'level': 0.085}

    Notes
    -----
    Without the gate, a window of 500 accuracy values against a baseline of 1000 is too noisy
    for a 0.05 drop: simulation of stationary Bernoulli streams (independent baseline per stream,
    5x10^7 values) gives 48 alarm episodes per million values at 90% accuracy, 800 at 70%. With
    the default ``z=5``: 0 at 99%, 0.9 at 90%, 0 at 70% and 0.02 at 50%. The price is a higher
    effective level at middling accuracies (0.08 at 90%, 0.13 at 70%); a drop from 90% to 80% is
    flagged after about 400 values (median). Use a longer window and baseline to resolve smaller
    drops.

    ``stats()`` keys: ``baseline`` (mean; the running mean during warm-up), ``std``, ``current``
    (window mean), ``drop`` (``baseline - current``, or the reverse when lower is better),
    ``max_drop``, ``level`` (the effective level), ``window_n``, ``baseline_left``.

    """

    __slots__ = (
        "_m2",
        "_mean",
        "_ready",
        "_recent",
        "_std",
        "_warm_n",
        "baseline",
        "higher_is_better",
        "max_drop",
        "reference_mean",
        "reference_std",
        "window",
        "z",
    )

    def __init__(
        self,
        baseline: int = 1000,
        window: int = 500,
        max_drop: float = 0.05,
        z: float | None = 5.0,
        higher_is_better: bool = True,
        reference_mean: float | None = None,
        reference_std: float | None = None,
    ) -> None:
        if reference_std is not None and reference_mean is None:
            raise ValueError("reference_std needs reference_mean")
        if baseline < 2 and reference_mean is None:
            raise ValueError(f"baseline must be >= 2, got {baseline}")
        if not max_drop >= 0.0 or not math.isfinite(max_drop):
            raise ValueError(f"max_drop must be finite and >= 0, got {max_drop}")
        if z is not None and not (z >= 0.0 and math.isfinite(z)):
            raise ValueError(f"z must be finite and >= 0, or None, got {z}")
        self.baseline = int(baseline)
        self.window = int(window)
        self.max_drop = float(max_drop)
        self.z = None if z is None else float(z)
        self.higher_is_better = bool(higher_is_better)
        self.reference_mean = None if reference_mean is None else check_finite(reference_mean)
        self.reference_std = None if reference_std is None else check_finite(reference_std)
        if self.reference_std is not None and self.reference_std < 0.0:
            raise ValueError("reference_std must be >= 0")
        self._recent = RollingMean(window)
        self.n = 0
        self.drift_detected = False
        self.warning_detected = False
        self._warm_n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._std: float | None = None
        self._ready = False  # derived: the baseline is fixed
        if self.reference_mean is not None:
            self._mean = self.reference_mean
            self._std = self.reference_std
            self._ready = True

    @property
    def ready(self) -> bool:
        """True once the baseline is fixed."""
        return self._ready

    def _level(self) -> float:
        std = self._std
        if self.z is None or std is None:
            return self.max_drop
        n_base = self.baseline if self.reference_mean is None else math.inf
        return max(self.max_drop, self.z * std * math.sqrt(1.0 / self.window + 1.0 / n_base))

    def update(self, x: float) -> None:
        """Add one metric value; read ``drift_detected`` afterwards."""
        x = check_finite(x)
        self.n += 1
        self.drift_detected = False
        if not self._ready:
            self._warm_n += 1
            d = x - self._mean
            self._mean += d / self._warm_n
            self._m2 += d * (x - self._mean)
            if self._warm_n == self.baseline:
                self._std = math.sqrt(self._m2 / (self._warm_n - 1))
                self._ready = True
            return
        recent = self._recent
        recent.add(x)
        if recent.full:
            self.drift_detected = self._drop() > self._level()

    def update_until(self, xs: Sequence[float], drifting: bool, start: int = 0) -> int:
        """Feed ``xs[start:]`` until, with the baseline fixed, ``drift_detected`` is no longer
        `drifting`; return the position of the value that changed it, or ``len(xs)``.

        Identical to calling `update` on each value in turn, stopping there: a caller that pages
        on entering the drop and re-arms on leaving it reads the flags and `stats()` only where
        they change.

        Examples
        --------
        >>> d = BaselineDrop(baseline=4, window=2, z=None, max_drop=0.3)
        >>> xs = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
        >>> d.update_until(xs, drifting=False)
        5
        >>> d.update_until(xs, drifting=True, start=6)
        8

        """
        n = len(xs)
        first = start
        while first < n and not self._ready:
            self.update(xs[first])
            if self._ready and self.drift_detected != drifting:
                return first
            first += 1
        level = self._level()  # fixed with the baseline
        mean, higher = self._mean, self.higher_is_better
        recent = self._recent
        add = recent.add
        for i in range(first, n):
            x = xs[i]
            if x.__class__ is not float or x - x != 0.0:
                x = check_finite(x)
            self.n += 1
            add(x)
            drift = False
            if recent.full:
                current = recent.mean_of_full()
                drift = (mean - current if higher else current - mean) > level
            self.drift_detected = drift
            if drift != drifting:
                return i
        return n

    def _drop(self) -> float:
        current = self._recent.value
        if current is None:
            return 0.0
        return self._mean - current if self.higher_is_better else current - self._mean

    def stats(self) -> dict[str, float]:
        """Baseline, window mean, drop and levels; see the class notes for the keys."""
        current = self._recent.value
        if self._std is not None:
            std = self._std
        else:
            std = math.sqrt(self._m2 / (self._warm_n - 1)) if self._warm_n > 1 else 0.0
        return {
            "baseline": self._mean,
            "std": std,
            "current": self._mean if current is None else current,
            "drop": self._drop(),
            "max_drop": self.max_drop,
            "level": self._level(),
            "window_n": float(self._recent.window_n),
            "baseline_left": float(0 if self.ready else self.baseline - self._warm_n),
        }

    def to_state(self) -> State:
        """Parameters, baseline accumulators and the window."""
        return {
            "baseline": self.baseline,
            "max_drop": self.max_drop,
            "z": self.z,
            "higher_is_better": self.higher_is_better,
            "reference_mean": self.reference_mean,
            "reference_std": self.reference_std,
            "n": self.n,
            "drift": self.drift_detected,
            "warm_n": self._warm_n,
            "mean": self._mean,
            "m2": self._m2,
            "std": self._std,
            "recent": self._recent.to_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BaselineDrop:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "baseline_drop")
        recent = RollingMean.from_state(r.get_map("recent"))
        d = cls(
            baseline=r.get_int("baseline"),
            window=recent.window,
            max_drop=r.get_float("max_drop"),
            z=r.get_optional_float("z"),
            higher_is_better=r.get_bool("higher_is_better"),
            reference_mean=r.get_optional_float("reference_mean"),
            reference_std=r.get_optional_float("reference_std"),
        )
        d._recent = recent
        d.n = r.get_int("n", minimum=0)
        d.drift_detected = r.get_bool("drift")
        d._warm_n = r.get_int("warm_n", minimum=0)
        d._mean = r.get_float("mean", finite=True)
        d._m2 = r.get_float("m2", finite=True, low=0.0)
        d._std = r.get_optional_float("std")
        if d._warm_n > d.baseline or (d._warm_n and d.reference_mean is not None):
            raise StateDecodeError("baseline_drop: warm-up count does not fit")
        if d.reference_mean is None and (d._std is None) != (d._warm_n < d.baseline):
            raise StateDecodeError("baseline_drop: std is set exactly when the baseline is")
        if d._std is not None and not (d._std >= 0.0 and math.isfinite(d._std)):
            raise StateDecodeError("baseline_drop: std must be finite and >= 0")
        if recent.n + d._warm_n != d.n:
            raise StateDecodeError("baseline_drop: counts do not add up")
        d._ready = d.reference_mean is not None or d._warm_n == d.baseline
        if recent.n and not d._ready:
            raise StateDecodeError("baseline_drop: window values before the baseline is fixed")
        return d
