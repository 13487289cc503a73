"""Drift detectors for error streams (1 = the model was wrong, 0 = right).

`DDM`, `EDDM`, `HDDM_A` and `HDDM_W` reproduce river's ``drift.binary`` classes of the same names
flag for flag (drift and warning), with river's default parameters and an encodable state.
river's HDDM_W keeps part of its state in Rust objects that cannot be exported, so all four are
reimplemented here, following river's arithmetic operation by operation; the unit tests compare
them with river on the same streams.

Inputs must lie in [0, 1] (booleans are fine); anything else raises ``ValueError`` before the
state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from detectors.base import Detector
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["DDM", "EDDM", "HDDM_A", "HDDM_W"]


def _check_unit(x: float) -> float:
    v = float(x)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"error-stream detectors take values in [0, 1], got {v}")
    return v


def _check_confidence(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"confidence levels must be in (0, 1), got {value}")
    return float(value)


def _pair(r: StateReader, key: str) -> tuple[float, float]:
    items = r.get_floats(key)
    if len(items) != 2:
        raise StateDecodeError(f"field {key!r} must hold 2 numbers, got {len(items)}")
    return items[0], items[1]


@register("ddm")
class DDM(Detector):
    r"""Drift Detection Method (Gama et al., 2004), identical to ``river.drift.binary.DDM``.

    Tracks the error rate $p_i$ and its binomial standard deviation $s_i$, remembers them where
    $p_i + s_i$ was lowest, and warns / flags a drift when $p_i + s_i$ exceeds
    $p_{min} + w\,s_{min}$ / $p_{min} + d\,s_{min}$.

    Parameters
    ----------
    warm_start
        Values needed before a warning or drift can be flagged.
    warning_threshold
        $w$, in standard deviations.
    drift_threshold
        $d$, in standard deviations.

    Examples
    --------
    >>> import random
    >>> from detectors import DDM
    >>> rng = random.Random(42)
    >>> ddm = DDM()
    >>> stream = rng.choices([0, 1], k=1000) + rng.choices([0, 1], k=1000, weights=[0.3, 0.7])
    >>> print_warning = True
    >>> for i, x in enumerate(stream):
    ...     ddm.update(x)
    ...     if ddm.warning_detected and print_warning:
    ...         print(f"Warning detected at index {i}")
    ...         print_warning = False
    ...     if ddm.drift_detected:
    ...         print(f"Change detected at index {i}")
    ...         print_warning = True
    Warning detected at index 1084
    Change detected at index 1334
    Warning detected at index 1492

    Notes
    -----
    ``stats()`` keys: ``error_rate`` ($p_i$), ``std`` ($s_i$) and, once past the warm start,
    ``p_min``, ``s_min``, ``warning_level`` and ``drift_level`` (what $p_i + s_i$ is
    compared with).

    """

    __slots__ = (
        "_count",
        "_p",
        "_p_min",
        "_ps_min",
        "_s_min",
        "drift_threshold",
        "warm_start",
        "warning_threshold",
    )

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        self.warm_start = int(warm_start)
        self.warning_threshold = float(warning_threshold)
        self.drift_threshold = float(drift_threshold)
        self.n = 0
        self._reset()

    def _reset(self) -> None:
        self.drift_detected = False
        self.warning_detected = False
        self._count = 0.0
        self._p = 0.0
        self._p_min: float | None = None
        self._s_min: float | None = None
        self._ps_min = math.inf

    def update(self, x: float) -> None:
        """Add one outcome (1 = error); read the flags afterwards."""
        x = _check_unit(x)
        if self.drift_detected:
            self._reset()
        self.n += 1
        self._count += 1.0
        self._p += (1.0 / self._count) * (x - self._p)
        p_i = self._p
        s_i = math.sqrt(p_i * (1 - p_i) / self._count)
        if self._count > self.warm_start:
            if p_i + s_i <= self._ps_min:
                self._p_min = p_i
                self._s_min = s_i
                self._ps_min = p_i + s_i
            assert self._p_min is not None and self._s_min is not None
            level = p_i + s_i
            self.warning_detected = level > self._p_min + self.warning_threshold * self._s_min
            if level > self._p_min + self.drift_threshold * self._s_min:
                self.drift_detected = True
                self.warning_detected = False

    def stats(self) -> dict[str, float]:
        """Error rate and levels; see the class notes for the keys."""
        std = math.sqrt(self._p * (1 - self._p) / self._count) if self._count else 0.0
        out = {"error_rate": self._p, "std": std}
        if self._p_min is not None and self._s_min is not None:
            out["p_min"] = self._p_min
            out["s_min"] = self._s_min
            out["warning_level"] = self._p_min + self.warning_threshold * self._s_min
            out["drift_level"] = self._p_min + self.drift_threshold * self._s_min
        return out

    def to_state(self) -> State:
        """Parameters and running statistics."""
        return {
            "warm_start": self.warm_start,
            "warning_threshold": self.warning_threshold,
            "drift_threshold": self.drift_threshold,
            "n": self.n,
            "drift": self.drift_detected,
            "warning": self.warning_detected,
            "count": self._count,
            "p": self._p,
            "p_min": self._p_min,
            "s_min": self._s_min,
            "ps_min": self._ps_min,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DDM:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "ddm")
        d = cls(
            warm_start=r.get_int("warm_start"),
            warning_threshold=r.get_float("warning_threshold"),
            drift_threshold=r.get_float("drift_threshold"),
        )
        d.n = r.get_int("n", minimum=0)
        d.drift_detected = r.get_bool("drift")
        d.warning_detected = r.get_bool("warning")
        d._count = r.get_float("count", low=0.0)
        d._p = r.get_float("p", low=0.0, high=1.0)
        d._p_min = r.get_optional_float("p_min")
        d._s_min = r.get_optional_float("s_min")
        d._ps_min = r.get_float("ps_min")
        if (d._p_min is None) != (d._s_min is None):
            raise StateDecodeError("ddm: 'p_min' and 's_min' go together")
        return d


@register("eddm")
class EDDM(Detector):
    r"""Early Drift Detection Method (Baena-García et al., 2006), identical to river's EDDM.

    Watches the distance between consecutive errors: with $p'_i$ and $s'_i$ its running mean
    and standard deviation, the level $(p'_i + 2 s'_i) / \max(p' + 2 s')$ falling below `alpha`
    warns and below `beta` flags a drift. As in river, the flags only change on errors, and a
    warning raised earlier stays set on the update that flags the drift.

    Parameters
    ----------
    warm_start
        Values and errors needed before a warning or drift can be flagged.
    alpha
        Warning level.
    beta
        Drift level; at most `alpha`.

    Examples
    --------
    >>> import random
    >>> from detectors import EDDM
    >>> rng = random.Random(42)
    >>> eddm = EDDM(alpha=0.8, beta=0.75)
    >>> stream = rng.choices([0, 1], k=1000) + rng.choices([0, 1], k=1000, weights=[0.3, 0.7])
    >>> print_warning = True
    >>> for i, x in enumerate(stream):
    ...     eddm.update(x)
    ...     if eddm.warning_detected and print_warning:
    ...         print(f"Warning detected at index {i}")
    ...         print_warning = False
    ...     if eddm.drift_detected:
    ...         print(f"Change detected at index {i}")
    ...         print_warning = True
    Warning detected at index 1059
    Change detected at index 1278

    Notes
    -----
    ``stats()`` keys: ``distance_mean``, ``distance_std`` (between errors), ``p2s_max``
    (largest $p' + 2s'$ so far, -1 before the first error) and ``level`` (the ratio compared
    with `alpha` and `beta`, 1.0 until defined).

    """

    __slots__ = (
        "_dist_count",
        "_dist_mean",
        "_dist_s",
        "_last_error",
        "_n_errors",
        "_p2s_max",
        "_seen",
        "alpha",
        "beta",
        "warm_start",
    )

    def __init__(self, warm_start: int = 30, alpha: float = 0.95, beta: float = 0.9) -> None:
        if alpha < beta:
            raise ValueError("'alpha' must be greater or equal to 'beta'.")
        self.warm_start = int(warm_start)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.n = 0
        self._reset()

    def _reset(self) -> None:
        self.drift_detected = False
        self.warning_detected = False
        # river.stats.Var (ddof=1) of the distances between errors: weight, mean, sum of squares.
        self._dist_count = 0.0
        self._dist_mean = 0.0
        self._dist_s = 0.0
        self._seen = 0
        self._last_error = 0
        self._n_errors = 0
        self._p2s_max = -1.0

    def _distance_std(self) -> float:
        var = self._dist_s / (self._dist_count - 1) if self._dist_count > 1 else 0.0
        return float(var**0.5)  # river uses ** 0.5, which may differ from sqrt in the last bit

    def update(self, x: float) -> None:
        """Add one outcome (1 = error); read the flags afterwards."""
        x = _check_unit(x)
        if self.drift_detected:
            self._reset()
        self.n += 1
        self._seen += 1
        if x == 1:
            self._n_errors += 1
            dist = self._seen - self._last_error
            mean_old = self._dist_mean
            self._dist_count += 1.0
            self._dist_mean += (1.0 / self._dist_count) * (dist - self._dist_mean)
            self._dist_s += 1.0 * (dist - mean_old) * (dist - self._dist_mean)
            if self._seen > self.warm_start:
                p2s = self._dist_mean + 2 * self._distance_std()
                if p2s > self._p2s_max:
                    self._p2s_max = p2s
                elif self._n_errors > self.warm_start:
                    level = p2s / self._p2s_max
                    if level < self.beta:
                        self.drift_detected = True
                    elif level < self.alpha:
                        self.warning_detected = True
                    else:
                        self.warning_detected = False
            self._last_error = self._seen

    def stats(self) -> dict[str, float]:
        """Distances between errors and the level; see the class notes for the keys."""
        std = self._distance_std()
        p2s = self._dist_mean + 2 * std
        return {
            "distance_mean": self._dist_mean,
            "distance_std": std,
            "p2s_max": self._p2s_max,
            "level": p2s / self._p2s_max if self._p2s_max > 0 else 1.0,
        }

    def to_state(self) -> State:
        """Parameters and running statistics."""
        return {
            "warm_start": self.warm_start,
            "alpha": self.alpha,
            "beta": self.beta,
            "n": self.n,
            "drift": self.drift_detected,
            "warning": self.warning_detected,
            "dist": [self._dist_count, self._dist_mean, self._dist_s],
            "seen": self._seen,
            "last_error": self._last_error,
            "n_errors": self._n_errors,
            "p2s_max": self._p2s_max,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EDDM:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "eddm")
        d = cls(
            warm_start=r.get_int("warm_start"),
            alpha=r.get_float("alpha"),
            beta=r.get_float("beta"),
        )
        d.n = r.get_int("n", minimum=0)
        d.drift_detected = r.get_bool("drift")
        d.warning_detected = r.get_bool("warning")
        dist = r.get_floats("dist")
        if len(dist) != 3:
            raise StateDecodeError("eddm: 'dist' must hold [count, mean, sum of squares]")
        d._dist_count, d._dist_mean, d._dist_s = dist
        if not (d._dist_count >= 0.0 and d._dist_s >= 0.0):
            raise StateDecodeError("eddm: 'dist' count and sum of squares must be >= 0")
        d._seen = r.get_int("seen", minimum=0)
        d._last_error = r.get_int("last_error", minimum=0)
        d._n_errors = r.get_int("n_errors", minimum=0)
        d._p2s_max = r.get_float("p2s_max")
        if not (d._p2s_max == -1.0 or d._p2s_max > 0.0):
            raise StateDecodeError("eddm: 'p2s_max' must be -1 or positive")
        return d


@register("hddm_a")
class HDDM_A(Detector):
    """Hoeffding drift detection, moving-average test (Frías-Blanco et al., 2014).

    Identical to ``river.drift.binary.HDDM_A``. Compares the mean since the last reset with the
    mean up to the cut point where it was lowest (and, two-sided, highest); a difference beyond
    the Hoeffding bound for `drift_confidence` / `warning_confidence` flags a drift / warning.

    Parameters
    ----------
    drift_confidence
        Confidence level of the drift test.
    warning_confidence
        Confidence level of the warning test.
    two_sided_test
        Also flag decreases of the mean.

    Examples
    --------
    >>> import random
    >>> from detectors import HDDM_A
    >>> rng = random.Random(42)
    >>> hddm_a = HDDM_A()
    >>> stream = rng.choices([0, 1], k=1000) + rng.choices([0, 1], k=1000, weights=[0.3, 0.7])
    >>> print_warning = True
    >>> for i, x in enumerate(stream):
    ...     hddm_a.update(x)
    ...     if hddm_a.warning_detected and print_warning:
    ...         print(f"Warning detected at index {i}")
    ...         print_warning = False
    ...     if hddm_a.drift_detected:
    ...         print(f"Change detected at index {i}")
    ...         print_warning = True
    Warning detected at index 451
    Change detected at index 1206

    Notes
    -----
    ``stats()`` keys: ``mean`` (since the last reset), ``mean_min`` / ``mean_max`` (at the cut
    points), ``increase`` (``mean - mean_min``) and ``decrease`` (``mean_max - mean``).

    """

    __slots__ = (
        "_max_mean",
        "_max_n",
        "_min_mean",
        "_min_n",
        "_z_mean",
        "_z_n",
        "drift_confidence",
        "two_sided_test",
        "warning_confidence",
    )

    def __init__(
        self,
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        two_sided_test: bool = False,
    ) -> None:
        self.drift_confidence = _check_confidence(drift_confidence)
        self.warning_confidence = _check_confidence(warning_confidence)
        self.two_sided_test = bool(two_sided_test)
        self.n = 0
        self._reset()

    def _reset(self) -> None:
        self.drift_detected = False
        self.warning_detected = False
        # Three river.stats.Mean: global (z), at the minimum cut point, at the maximum one.
        self._z_n = 0.0
        self._z_mean = 0.0
        self._min_n = 0.0
        self._min_mean = 0.0
        self._max_n = 0.0
        self._max_mean = 0.0

    def _bound(self, n: float) -> float:
        return math.sqrt(1.0 / (2 * n) * math.log(1.0 / self.drift_confidence))

    def _mean_incr(self, confidence: float) -> bool:
        if self._min_n == self._z_n:
            return False
        m = (self._z_n - self._min_n) / self._min_n * (1.0 / self._z_n)
        eps = math.sqrt(m / 2 * math.log(2.0 / confidence))
        return self._z_mean - self._min_mean >= eps

    def _mean_decr(self, confidence: float) -> bool:
        if self._max_n == self._z_n:
            return False
        m = (self._z_n - self._max_n) / self._max_n * (1.0 / self._z_n)
        eps = math.sqrt(m / 2 * math.log(2.0 / confidence))
        return self._max_mean - self._z_mean >= eps

    def update(self, x: float) -> None:
        """Add one outcome (1 = error); read the flags afterwards."""
        x = _check_unit(x)
        if self.drift_detected:
            self._reset()
        self.n += 1
        self._z_n += 1.0
        self._z_mean += (1.0 / self._z_n) * (x - self._z_mean)
        if self._min_n == 0:
            self._min_n, self._min_mean = self._z_n, self._z_mean
        if self._max_n == 0:
            self._max_n, self._max_mean = self._z_n, self._z_mean
        eps_z = self._bound(self._z_n)
        if self._min_mean + self._bound(self._min_n) >= self._z_mean + eps_z:
            self._min_n, self._min_mean = self._z_n, self._z_mean
        if self._max_mean - self._bound(self._max_n) <= self._z_mean - eps_z:
            self._max_n, self._max_mean = self._z_n, self._z_mean
        if self._mean_incr(self.drift_confidence):
            self.warning_detected = False
            self.drift_detected = True
        elif self._mean_incr(self.warning_confidence):
            self.warning_detected = True
            self.drift_detected = False
        else:
            self.warning_detected = False
            self.drift_detected = False
        if self.two_sided_test:
            if self._mean_decr(self.drift_confidence):
                self.drift_detected = True
            elif self._mean_decr(self.warning_confidence):
                self.warning_detected = True

    def stats(self) -> dict[str, float]:
        """Means at the cut points; see the class notes for the keys."""
        return {
            "mean": self._z_mean,
            "mean_min": self._min_mean,
            "mean_max": self._max_mean,
            "increase": self._z_mean - self._min_mean,
            "decrease": self._max_mean - self._z_mean,
        }

    def to_state(self) -> State:
        """Parameters and the three running means as [weight, mean]."""
        return {
            "drift_confidence": self.drift_confidence,
            "warning_confidence": self.warning_confidence,
            "two_sided_test": self.two_sided_test,
            "n": self.n,
            "drift": self.drift_detected,
            "warning": self.warning_detected,
            "z": [self._z_n, self._z_mean],
            "min": [self._min_n, self._min_mean],
            "max": [self._max_n, self._max_mean],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> HDDM_A:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "hddm_a")
        d = cls(
            drift_confidence=r.get_float("drift_confidence"),
            warning_confidence=r.get_float("warning_confidence"),
            two_sided_test=r.get_bool("two_sided_test"),
        )
        d.n = r.get_int("n", minimum=0)
        d.drift_detected = r.get_bool("drift")
        d.warning_detected = r.get_bool("warning")
        d._z_n, d._z_mean = _pair(r, "z")
        d._min_n, d._min_mean = _pair(r, "min")
        d._max_n, d._max_mean = _pair(r, "max")
        if not (0.0 <= d._min_n <= d._z_n and 0.0 <= d._max_n <= d._z_n):
            raise StateDecodeError("hddm_a: cut-point weights must lie in [0, global weight]")
        if (d._min_n == 0.0 or d._max_n == 0.0) and d._z_n > 0.0:
            raise StateDecodeError("hddm_a: cut points must be set once values were seen")
        return d


class _Sample:
    """river's HDDM_W ``SampleInfo``: an EWMA (first value taken as is) and its bound term."""

    __slots__ = ("ewma", "ibc", "init")

    def __init__(self, ewma: float = 0.0, init: bool = False, ibc: float = 1.0) -> None:
        self.ewma = ewma
        self.init = init
        self.ibc = ibc

    def update(
        self, x: float, lam: float, one_minus_lam: float, lam_sq: float, c_sq: float
    ) -> None:
        self.ewma = lam * x + one_minus_lam * self.ewma if self.init else x
        self.init = True
        self.ibc = lam_sq + c_sq * self.ibc

    def copy(self) -> _Sample:
        return _Sample(self.ewma, self.init, self.ibc)

    def to_list(self) -> list[Any]:
        return [self.ewma, self.init, self.ibc]

    @classmethod
    def from_list(cls, value: object, key: str) -> _Sample:
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not isinstance(value[1], bool)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[::2])
        ):
            raise StateDecodeError(f"hddm_w: field {key!r} must be [ewma, init, ibc]")
        return cls(float(value[0]), value[1], float(value[2]))


@register("hddm_w")
class HDDM_W(Detector):
    """Hoeffding drift detection, weighted-average test (Frías-Blanco et al., 2014).

    Identical to ``river.drift.binary.HDDM_W``. Like `HDDM_A` but with exponentially weighted
    means (weight `lambda_val` on the newest value) and McDiarmid bounds.

    Parameters
    ----------
    drift_confidence
        Confidence level of the drift test.
    warning_confidence
        Confidence level of the warning test.
    lambda_val
        Weight of the newest value in the moving averages.
    two_sided_test
        Also flag decreases of the mean.

    Examples
    --------
    >>> import random
    >>> from detectors import HDDM_W
    >>> rng = random.Random(42)
    >>> hddm_w = HDDM_W()
    >>> stream = rng.choices([0, 1], k=1000) + rng.choices([0, 1], k=1000, weights=[0.3, 0.7])
    >>> print_warning = True
    >>> for i, x in enumerate(stream):
    ...     hddm_w.update(x)
    ...     if hddm_w.warning_detected and print_warning:
    ...         print(f"Warning detected at index {i}")
    ...         print_warning = False
    ...     if hddm_w.drift_detected:
    ...         print(f"Change detected at index {i}")
    ...         print_warning = True
    Warning detected at index 451
    Change detected at index 1077

    Notes
    -----
    ``stats()`` keys: ``ewma`` (whole stream since the last reset), ``increase`` and
    ``increase_bound`` (EWMA gain since the lowest cut point, and the drift bound it must
    exceed; the bound only once both sides have data), ``decrease`` and ``decrease_bound`` (the
    same downwards).

    """

    __slots__ = (
        "_c_lam_sq",
        "_decr_cut",
        "_incr_cut",
        "_lam_sq",
        "_one_minus_lam",
        "_s1_decr",
        "_s1_incr",
        "_s2_decr",
        "_s2_incr",
        "_total",
        "drift_confidence",
        "lambda_val",
        "two_sided_test",
        "warning_confidence",
    )

    def __init__(
        self,
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        lambda_val: float = 0.05,
        two_sided_test: bool = False,
    ) -> None:
        if not 0.0 <= lambda_val <= 1.0:
            raise ValueError(f"lambda_val must be in [0, 1], got {lambda_val}")
        self.drift_confidence = _check_confidence(drift_confidence)
        self.warning_confidence = _check_confidence(warning_confidence)
        self.lambda_val = float(lambda_val)
        self.two_sided_test = bool(two_sided_test)
        lam = self.lambda_val
        self._one_minus_lam = 1.0 - lam
        self._lam_sq = lam * lam
        self._c_lam_sq = (1 - lam) ** 2  # as river writes it: pow, not a product
        self.n = 0
        self._reset()

    def _reset(self) -> None:
        self.drift_detected = False
        self.warning_detected = False
        self._total = _Sample()
        self._s1_decr = _Sample()
        self._s1_incr = _Sample()
        self._s2_decr = _Sample()
        self._s2_incr = _Sample()
        self._incr_cut = math.inf
        self._decr_cut = -math.inf

    @staticmethod
    def _bound(ibc: float, confidence: float) -> float:
        return math.sqrt(ibc * math.log(1 / confidence) / 2)

    def _changed(self, s1: _Sample, s2: _Sample, confidence: float) -> bool:
        if not (s1.init and s2.init):
            return False
        return s2.ewma - s1.ewma > self._bound(s1.ibc + s2.ibc, confidence)

    def update(self, x: float) -> None:
        """Add one outcome (1 = error); read the flags afterwards."""
        x = _check_unit(x)
        if self.drift_detected:
            self._reset()
        self.n += 1
        step = (self.lambda_val, self._one_minus_lam, self._lam_sq, self._c_lam_sq)
        total = self._total
        total.update(x, *step)

        eps = self._bound(total.ibc, self.drift_confidence)
        if total.ewma + eps < self._incr_cut:
            self._incr_cut = total.ewma + eps
            self._s1_incr = total.copy()
            self._s2_incr = _Sample()
        else:
            self._s2_incr.update(x, *step)
        if self._changed(self._s1_incr, self._s2_incr, self.drift_confidence):
            self.warning_detected = False
            self.drift_detected = True
        elif self._changed(self._s1_incr, self._s2_incr, self.warning_confidence):
            self.warning_detected = True
            self.drift_detected = False
        else:
            self.warning_detected = False
            self.drift_detected = False

        eps = self._bound(total.ibc, self.drift_confidence)
        if total.ewma - eps > self._decr_cut:
            self._decr_cut = total.ewma - eps
            self._s1_decr = total.copy()
            self._s2_decr = _Sample()
        else:
            self._s2_decr.update(x, *step)
        if self.two_sided_test:
            if self._changed(self._s2_decr, self._s1_decr, self.drift_confidence):
                self.drift_detected = True
            elif self._changed(self._s2_decr, self._s1_decr, self.warning_confidence):
                self.warning_detected = True

    def stats(self) -> dict[str, float]:
        """Moving averages and bounds; see the class notes for the keys."""
        out = {"ewma": self._total.ewma}
        for name, lo, hi in (
            ("increase", self._s1_incr, self._s2_incr),
            ("decrease", self._s2_decr, self._s1_decr),
        ):
            if lo.init and hi.init:
                out[name] = hi.ewma - lo.ewma
                out[f"{name}_bound"] = self._bound(lo.ibc + hi.ibc, self.drift_confidence)
            else:
                out[name] = 0.0
        return out

    def to_state(self) -> State:
        """Parameters, the five weighted samples as [ewma, init, ibc] and the cut points."""
        return {
            "drift_confidence": self.drift_confidence,
            "warning_confidence": self.warning_confidence,
            "lambda_val": self.lambda_val,
            "two_sided_test": self.two_sided_test,
            "n": self.n,
            "drift": self.drift_detected,
            "warning": self.warning_detected,
            "total": self._total.to_list(),
            "s1_incr": self._s1_incr.to_list(),
            "s2_incr": self._s2_incr.to_list(),
            "s1_decr": self._s1_decr.to_list(),
            "s2_decr": self._s2_decr.to_list(),
            "incr_cut": self._incr_cut,
            "decr_cut": self._decr_cut,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> HDDM_W:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "hddm_w")
        d = cls(
            drift_confidence=r.get_float("drift_confidence"),
            warning_confidence=r.get_float("warning_confidence"),
            lambda_val=r.get_float("lambda_val"),
            two_sided_test=r.get_bool("two_sided_test"),
        )
        d.n = r.get_int("n", minimum=0)
        d.drift_detected = r.get_bool("drift")
        d.warning_detected = r.get_bool("warning")
        d._total = _Sample.from_list(r.get_list("total"), "total")
        d._s1_incr = _Sample.from_list(r.get_list("s1_incr"), "s1_incr")
        d._s2_incr = _Sample.from_list(r.get_list("s2_incr"), "s2_incr")
        d._s1_decr = _Sample.from_list(r.get_list("s1_decr"), "s1_decr")
        d._s2_decr = _Sample.from_list(r.get_list("s2_decr"), "s2_decr")
        d._incr_cut = r.get_float("incr_cut")
        d._decr_cut = r.get_float("decr_cut")
        samples = (d._total, d._s1_incr, d._s2_incr, d._s1_decr, d._s2_decr)
        if not all(s.ibc >= 0.0 for s in samples):
            raise StateDecodeError("hddm_w: 'ibc' terms must be >= 0")
        return d
