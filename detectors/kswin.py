"""KSWIN (Kolmogorov-Smirnov windowing), flag for flag like river's, with an encodable state.

river's ``drift.KSWIN`` keeps a ``random.Random`` and a deque, and calls ``scipy.stats.ks_2samp``
on every update once its window is full. This module repeats that update step by step, making the
same calls on the same ``random.Random`` (so the sampled positions are the same), and gets the same
p-values: both samples have `stat_size` values, so for up to 10000 values scipy's "auto" method
is its exact one, whose statistic and p-value depend only on the sample size and on the largest
gap between the two empirical distribution functions in counts. That gap is computed here in
integers and the (statistic, p-value) pair is asked of scipy once per gap value and cached, which
makes an update about 10 times cheaper than river's. Larger samples call scipy directly.

The generator's state is stored explicitly: ``random.Random.getstate()`` is ``(3, words, gauss)``
with ``words`` the 624 Mersenne-Twister words plus the position (625 ints) and ``gauss`` the
cached normal deviate (None or a float); the state keeps them as ``rng_version``, ``rng_words``
(a list) and ``rng_gauss``.
"""

from __future__ import annotations

import functools
import itertools
import random
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from detectors._values import raw_field
from detectors.base import Detector, check_finite
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["KSWIN"]

_EXACT_MAX_N = 10000  # scipy.stats.ks_2samp: method "auto" is exact up to this sample size


@functools.cache
def _ks_equal_sizes(n: int, gap: int) -> tuple[float, float]:
    """scipy's (statistic, p-value) for two samples of `n` values whose ECDFs differ by gap/n."""
    import numpy as np
    from scipy import stats

    a = np.arange(n, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        res = stats.ks_2samp(a, a + gap, method="auto")
    return float(res.statistic), float(res.pvalue)


def _ks_2samp(sample: list[float], recent: list[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of two equally large samples, as river calls it."""
    n = len(sample)
    if n > _EXACT_MAX_N:
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            res = stats.ks_2samp(sample, recent, method="auto")
        return float(res.statistic), float(res.pvalue)
    a = sorted(sample)
    b = sorted(recent)
    i = j = gap = 0
    while i < n and j < n:
        v = a[i] if a[i] < b[j] else b[j]
        while i < n and a[i] <= v:
            i += 1
        while j < n and b[j] <= v:
            j += 1
        d = i - j if i > j else j - i
        if d > gap:
            gap = d
    return _ks_equal_sizes(n, gap)


@register("river_kswin")
class KSWIN(Detector):
    r"""Kolmogorov-Smirnov windowing drift detector (Raab et al., 2020), identical to river's.

    Keeps the last `window_size` values. Once the window is full, every update compares its
    newest `stat_size` values with `stat_size` values drawn without replacement from the older
    part, with a two-sample Kolmogorov-Smirnov test; a drift is flagged when the p-value is at
    most `alpha` and the statistic above 0.1. As in river, the update after a drift starts from an
    empty window and a generator re-seeded with `seed`, and non-finite input is refused here
    (river would take it).

    Parameters
    ----------
    alpha
        Significance of the test; river advises below 0.01.
    window_size
        Values in the sliding window.
    stat_size
        Values in each of the two tested samples; below `window_size` (river accepts equality
        but then fails on the first full window).
    seed
        Seed of the sampler. None seeds from the operating system, like river, at creation and
        again at every reset after a drift, so replays (and a restored detector, after its next
        drift) differ; pass a seed wherever alerts must be reproducible.
    window
        Values to start with (river's cold-start option).

    Examples
    --------
    >>> import random
    >>> from detectors import KSWIN
    >>> rng = random.Random(12345)
    >>> kswin = KSWIN(alpha=0.0001, seed=42)
    >>> stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    >>> for i, x in enumerate(stream):
    ...     kswin.update(x)
    ...     if kswin.drift_detected:
    ...         print(f"Change detected at index {i}, input value: {x}")
    Change detected at index 1016, input value: 6

    The same as ``river.drift.KSWIN`` on this stream (its docstring example).

    Notes
    -----
    ``p_value`` (attribute) is river's: 0 until the first test and after a reset.
    ``stats()`` keys: ``p_value``, ``statistic`` (of the last test), ``window_n``, ``alpha``.

    """

    __slots__ = (
        "_rng",
        "_statistic",
        "_window",
        "alpha",
        "p_value",
        "seed",
        "stat_size",
        "window_size",
    )

    def __init__(
        self,
        alpha: float = 0.005,
        window_size: int = 100,
        stat_size: int = 30,
        seed: int | None = None,
        window: Sequence[float] | None = None,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not 1 <= stat_size < window_size:
            raise ValueError(
                f"need 1 <= stat_size < window_size, got {stat_size} and {window_size}"
            )
        if seed is not None and (seed.__class__ is not int or not -(2**63) <= seed < 2**64):
            raise ValueError(f"seed must be a 64-bit integer or None, got {seed!r}")
        self.alpha = float(alpha)
        self.window_size = int(window_size)
        self.stat_size = int(stat_size)
        self.seed = seed
        self.n = 0
        self.warning_detected = False
        self._statistic = 0.0
        self._reset()
        if window is not None and len(window):
            self._window.extend(check_finite(v) for v in window)

    def _reset(self) -> None:
        self.drift_detected = False
        self.p_value = 0.0
        self._window: deque[float] = deque(maxlen=self.window_size)
        self._rng = random.Random(self.seed)

    def update(self, x: float) -> None:
        """Add one value; read ``drift_detected`` afterwards."""
        x = check_finite(x)
        if self.drift_detected:
            self._reset()
        self.n += 1
        w = self._window
        w.append(x)
        ws, ss = self.window_size, self.stat_size
        if len(w) >= ws:
            sample = [w[r] for r in self._rng.sample(range(ws - ss), ss)]
            recent = list(itertools.islice(w, ws - ss, ws))
            self._statistic, self.p_value = _ks_2samp(sample, recent)
            if self.p_value <= self.alpha and self._statistic > 0.1:
                self.drift_detected = True
                self._window = deque(recent, maxlen=ws)
            else:
                self.drift_detected = False
        else:
            self.drift_detected = False

    def stats(self) -> dict[str, float]:
        """Last test and window size; see the class notes for the keys."""
        return {
            "p_value": self.p_value,
            "statistic": self._statistic,
            "window_n": float(len(self._window)),
            "alpha": self.alpha,
        }

    def to_state(self) -> State:
        """Parameters, window, last test and the sampler's generator state."""
        version, words, gauss = self._rng.getstate()
        return {
            "alpha": self.alpha,
            "window_size": self.window_size,
            "stat_size": self.stat_size,
            "seed": self.seed,
            "n": self.n,
            "drift": self.drift_detected,
            "p_value": self.p_value,
            "statistic": self._statistic,
            "window": list(self._window),
            "rng_version": version,
            "rng_words": list(words),
            "rng_gauss": gauss,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> KSWIN:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "river_kswin")
        seed = raw_field(state, "seed", "river_kswin")
        d = cls(
            alpha=r.get_float("alpha"),
            window_size=r.get_int("window_size"),
            stat_size=r.get_int("stat_size"),
            seed=None if seed is None else r.get_int("seed"),
        )
        d.n = r.get_int("n", minimum=0)
        d.drift_detected = r.get_bool("drift")
        d.p_value = r.get_float("p_value", low=0.0, high=1.0)
        d._statistic = r.get_float("statistic", low=0.0, high=1.0)
        window = r.get_floats("window")
        if len(window) > d.window_size or not all(v - v == 0.0 for v in window):
            raise StateDecodeError("river_kswin: window must be at most window_size finite values")
        d._window.extend(window)
        if r.get_int("rng_version") != 3:
            raise StateDecodeError("river_kswin: unsupported random generator state version")
        words = r.get_list("rng_words")
        if len(words) != 625 or not all(w.__class__ is int and 0 <= w < 2**32 for w in words):
            raise StateDecodeError("river_kswin: generator state must be 625 32-bit integers")
        if not words[-1] <= 624:
            raise StateDecodeError("river_kswin: generator position must be <= 624")
        gauss = r.get_optional_float("rng_gauss")
        d._rng.setstate((3, tuple(words), gauss))
        return d
