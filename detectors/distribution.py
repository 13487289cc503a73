r"""Windowed PSI and Jensen-Shannon distance against a reference, for numeric and categorical data.

Both detectors learn a reference distribution from the first `reference_size` values (or take one
as given), then compare a sliding window of the last `window` values with it. Updates are O(1): a
value is mapped to its bucket once, a ring buffer of bucket indices and per-bucket counts are kept
up to date, and the statistics are recomputed only every `check_every` values (O(buckets)).

The reported levels are the usual PSI rules of thumb, ``warning=0.1`` and ``critical=0.25``. A
window of a few hundred values has sampling noise, though: under no change, PSI is roughly
$(1/W + 1/R)\,\chi^2_{k-1}$ for $W$ window values, $R$ reference values and $k$ buckets, which
for 50 equally frequent categories averages about 0.15 and tops 0.25 some 20 times per million
values. So by default (``noise_gate=True``) a flag also needs the PSI to clear that noise:
``drift_detected`` needs
$\mathrm{PSI} \ge \max(\text{critical}, (1/W + 1/R)\,q_{k-1}(Z_{drift}))$ and ``warning_detected``
the same with `warning` and $Z_{warning}$, where $q_{\nu}(z)$ is the Wilson-Hilferty
approximation of the $\chi^2_\nu$ quantile at $z$ standard deviations. With the default sizes
and up to 24 buckets (10 numeric bins, a handful of categories) the drift level stays 0.25, so
the drift flag is exactly the PSI rule; the warning level rises a little above 0.1 (0.111 for 10
bins). The effective levels are in ``stats()`` (``drift_level``, ``warning_level``).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from detectors._values import Category, raw_field
from detectors._values import check_category as _check_category
from detectors.base import Detector, check_finite
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = [
    "OTHER",
    "UNSEEN",
    "Z_DRIFT",
    "Z_WARNING",
    "CategoricalPSI",
    "Category",
    "NumericPSI",
]

Z_DRIFT = 5.5
"""Standard deviations of the noise-level chi-square quantile behind ``drift_detected``."""

Z_WARNING = 4.0
"""Standard deviations of the noise-level chi-square quantile behind ``warning_detected``."""

OTHER = "__other__"
"""Name of the bucket of reference categories beyond the kept ones."""

UNSEEN = "__unseen__"
"""Name of the bucket of categories absent from the reference."""


def _chi2_quantile(dof: int, z: float) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile `z` standard deviations up."""
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def _check_levels(warning: float, critical: float) -> tuple[float, float]:
    if not 0.0 < warning <= critical:
        raise ValueError(f"need 0 < warning <= critical, got {warning} and {critical}")
    return float(warning), float(critical)


class _WindowedPSI(Detector):
    """Sliding window of bucket indices compared with reference frequencies."""

    __slots__ = (
        "_buffer",
        "_counts",
        "_drift_level",
        "_js",
        "_psi",
        "_ref_freqs",
        "_ref_n",
        "_ref_smooth",
        "_since_check",
        "_warning_level",
        "check_every",
        "critical",
        "eps",
        "noise_gate",
        "warning",
        "window",
    )

    _kind = ""

    def __init__(
        self,
        window: int,
        warning: float,
        critical: float,
        eps: float,
        check_every: int | None,
        noise_gate: bool,
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = int(window)
        self.check_every = max(1, self.window // 10) if check_every is None else int(check_every)
        if not 1 <= self.check_every <= self.window:
            raise ValueError(f"check_every must be in [1, window], got {check_every}")
        self.warning, self.critical = _check_levels(warning, critical)
        if not 0.0 < eps < 0.01:
            raise ValueError(f"eps must be in (0, 0.01), got {eps}")
        self.eps = float(eps)
        self.noise_gate = bool(noise_gate)
        self.n = 0
        self.drift_detected = False
        self.warning_detected = False
        self._ref_freqs: list[float] | None = None
        self._ref_smooth: list[float] = []
        self._ref_n = 0
        self._warning_level = self.warning
        self._drift_level = self.critical
        self._buffer: deque[int] = deque(maxlen=self.window)
        self._counts: list[int] = []
        self._since_check = 0
        self._psi = 0.0
        self._js = 0.0

    # -- reference --------------------------------------------------------------------------

    def _pseudo_count(self) -> float:
        """Added to every window count before the comparison."""
        raise NotImplementedError

    def _install(self, freqs: list[float], ref_n: int, normalise: bool = True) -> None:
        """Fix the reference frequencies; derive the smoothed ones and the flag levels."""
        if normalise:
            total = math.fsum(freqs)
            if not total > 0.0 or not math.isfinite(total):
                raise ValueError("reference frequencies must be >= 0 with a positive sum")
            freqs = [f / total for f in freqs]
        k = len(freqs)
        eps = self.eps
        self._ref_freqs = freqs
        self._ref_smooth = [(f + eps) / (1.0 + k * eps) for f in freqs]
        self._ref_n = ref_n
        self._counts = [0] * k
        self._buffer.clear()
        self._since_check = 0
        self._warning_level, self._drift_level = self.warning, self.critical
        if self.noise_gate:
            dof = max(1, sum(f > 0.0 for f in freqs) - 1)
            scale = 1.0 / self.window + 1.0 / ref_n
            self._warning_level = max(self.warning, scale * _chi2_quantile(dof, Z_WARNING))
            self._drift_level = max(self.critical, scale * _chi2_quantile(dof, Z_DRIFT))

    @property
    def ready(self) -> bool:
        """True once the reference is known (after warm-up, or from the start if given)."""
        return self._ref_freqs is not None

    @property
    def just_checked(self) -> bool:
        """True right after an update that compared the window with the reference.

        Between checks the flags are False whatever the last PSI was; callers that track an
        alert level re-arm it only on a check that came back below the warning level.
        """
        return self._since_check == 0 and len(self._buffer) == self.window

    def values_to_check(self) -> int:
        """How many more values it takes to reach the next comparison with the reference.

        Counts what is left of learning the reference. Feeding exactly that many with
        `update_many` ends on the check, with `just_checked` True and the flags set by it: a
        caller that acts on every check can still feed values in bulk.

        >>> psi = NumericPSI(reference_size=100, window=50, check_every=10)
        >>> psi.values_to_check()
        150
        >>> _ = psi.update_many([float(i % 7) for i in range(150)])
        >>> psi.just_checked, psi.values_to_check()
        (True, 10)
        """
        if self._ref_freqs is None:
            return self._reference_left() + self.window
        return max(self.window - len(self._buffer), self.check_every - self._since_check, 1)

    def _reference_left(self) -> int:
        """Values still to learn before the reference is fixed."""
        raise NotImplementedError

    # -- window -----------------------------------------------------------------------------

    def _push(self, b: int) -> None:
        """One bucket index into the window; check every `check_every` values once full."""
        buf = self._buffer
        counts = self._counts
        if len(buf) == self.window:
            counts[buf[0]] -= 1
        buf.append(b)
        counts[b] += 1
        self._since_check += 1
        if self._since_check >= self.check_every and len(buf) == self.window:
            self._check()

    def _push_many(self, bins: np.ndarray) -> list[int]:
        """`_push` on each index in turn, with numpy between checks; positions of drifts.

        Costs the number of values given, not the window size: only the values leaving the
        window are read back from it.
        """
        m = int(bins.size)
        hits: list[int] = []
        if m == 0:
            return hits
        w = self.window
        buf = self._buffer
        k = len(self._counts)
        counts = np.asarray(self._counts, dtype=np.int64)
        values = bins.tolist()
        since = self._since_check
        last_check = -1
        pos = 0
        while pos < m:
            fill = len(buf)
            j = pos + max(w - fill - 1, self.check_every - since - 1, 0)
            stop = min(j, m - 1)
            n = stop + 1 - pos  # at most the window: the leaving values are all in `buf`
            leaving = fill + n - w
            if leaving > 0:
                old = np.fromiter(itertools.islice(buf, leaving), np.int64, leaving)
                counts -= np.bincount(old, minlength=k)
            counts += np.bincount(bins[pos : stop + 1], minlength=k)
            buf.extend(values[pos : stop + 1])  # the deque's maxlen drops the leaving ones
            since += n
            if stop == j:
                self._counts = counts.tolist()
                self._check()
                since = 0
                last_check = j
                if self.drift_detected:
                    hits.append(j)
            pos = stop + 1
        if last_check != m - 1:
            self.drift_detected = self.warning_detected = False
        self._counts = counts.tolist()
        self._since_check = since
        return hits

    def _check(self) -> None:
        self._since_check = 0
        self._psi, self._js = self._compare()
        self.drift_detected = self._psi >= self._drift_level
        self.warning_detected = not self.drift_detected and self._psi >= self._warning_level

    def _compare(self) -> tuple[float, float]:
        """PSI and Jensen-Shannon distance (base 2) of the window against the reference."""
        a = self._pseudo_count()
        denom = self.window + a * len(self._counts)  # checks only run on a full window
        psi = kl_ref = kl_win = 0.0
        for c, p in zip(self._counts, self._ref_smooth, strict=True):
            q = (c + a) / denom
            psi += (q - p) * math.log(q / p)
            m = 0.5 * (p + q)
            kl_ref += p * math.log2(p / m)
            kl_win += q * math.log2(q / m)
        return psi, math.sqrt(min(1.0, max(0.0, 0.5 * (kl_ref + kl_win))))

    def reset_window(self) -> None:
        """Empty the window, keeping the reference; checks resume once it is full again."""
        self._buffer.clear()
        self._counts = [0] * len(self._counts)
        self._since_check = 0
        self._psi = self._js = 0.0
        self.drift_detected = self.warning_detected = False

    def stats(self) -> dict[str, float]:
        """Statistics of the last check and the levels; see the class notes for the keys."""
        return {
            "psi": self._psi,
            "js": self._js,
            "warning": self.warning,
            "critical": self.critical,
            "warning_level": self._warning_level,
            "drift_level": self._drift_level,
            "window_n": float(len(self._buffer)),
            "buckets": float(len(self._counts)),
        }

    # -- state ------------------------------------------------------------------------------

    def _window_state(self) -> State:
        return {
            "n": self.n,
            "drift": self.drift_detected,
            "warning_flag": self.warning_detected,
            "buffer": list(self._buffer),
            "since_check": self._since_check,
            "psi": self._psi,
            "js": self._js,
        }

    def _restore_window(self, r: StateReader) -> None:
        self.n = r.get_int("n", minimum=0)
        self.drift_detected = r.get_bool("drift")
        self.warning_detected = r.get_bool("warning_flag")
        if self.drift_detected and self.warning_detected:
            raise StateDecodeError(f"{self._kind}: drift and warning flags are exclusive")
        buffer = r.get_list("buffer")
        k = len(self._counts)
        if len(buffer) > self.window or (buffer and self._ref_freqs is None):
            raise StateDecodeError(f"{self._kind}: window buffer does not fit")
        for b in buffer:
            if b.__class__ is not int or not 0 <= b < k:
                raise StateDecodeError(f"{self._kind}: window buffer holds a bad bucket index")
            self._counts[b] += 1
        self._buffer.extend(buffer)
        self._since_check = r.get_int("since_check", minimum=0)
        self._psi = r.get_float("psi", finite=True, low=0.0)
        self._js = r.get_float("js", finite=True, low=0.0, high=1.0)

    def _restore_reference(self, r: StateReader, freqs_key: str, buckets: int) -> None:
        freqs = r.get_floats(freqs_key)
        if len(freqs) != buckets or not all(0.0 <= f <= 1.0 for f in freqs):
            raise StateDecodeError(f"{self._kind}: reference frequencies do not fit")
        if abs(math.fsum(freqs) - 1.0) > 1e-9:
            raise StateDecodeError(f"{self._kind}: reference frequencies must sum to 1")
        self._install(freqs, r.get_int("n", minimum=1), normalise=False)

    @classmethod
    def _common_params(cls, r: StateReader) -> dict[str, Any]:
        return {
            "window": r.get_int("window"),
            "warning": r.get_float("warning"),
            "critical": r.get_float("critical"),
            "eps": r.get_float("eps"),
            "check_every": r.get_int("check_every"),
            "noise_gate": r.get_bool("noise_gate"),
        }

    def _common_state(self) -> State:
        return {
            "window": self.window,
            "warning": self.warning,
            "critical": self.critical,
            "eps": self.eps,
            "check_every": self.check_every,
            "noise_gate": self.noise_gate,
        }


def _quantile_edges(values: Sequence[float], bins: int) -> list[float]:
    """Distinct interior quantiles of `values`, plus a cut just above the maximum if it is tied."""
    arr = np.asarray(values, dtype=float)
    edges = sorted(set(np.quantile(arr, np.arange(1, bins) / bins).tolist()))
    top = float(arr.max())
    if edges and edges[-1] >= top:
        above = math.nextafter(top, math.inf)
        if math.isfinite(above):
            edges.append(above)
    return edges


@register("numeric_psi")
class NumericPSI(_WindowedPSI):
    r"""Population stability index of a numeric signal: a sliding window against a reference.

    The first `reference_size` values are the reference: they set the bin edges (their
    quantiles at $1/b, 2/b, \dots$ for $b$ = `bins`) and the reference bin frequencies $p_i$.
    Afterwards every value is binned against those edges; once `window` values are in, and then
    every `check_every` values, the window frequencies $q_i$ are compared with the reference:

    $$\mathrm{PSI} = \sum_i (\tilde q_i - \tilde p_i) \ln(\tilde q_i / \tilde p_i),$$

    with $\tilde f = (f + \varepsilon) / (1 + k\varepsilon)$ smoothing away empty bins, and
    the Jensen-Shannon distance (base 2, in [0, 1]) of the same smoothed frequencies.
    ``drift_detected`` is set by a check with PSI at or above the drift level (`critical`, or the
    sampling-noise level if higher; see the module notes), ``warning_detected`` by one at or above
    the warning level but below the drift level. Both are False on updates without a check.

    After a drift nothing is reset: the window keeps sliding, so a persistent change is flagged
    again at every check (every `check_every` values) until the window looks like the reference
    again; the alert policy's cooldown decides how often that reaches a human. Call
    `reset_window` to start a fresh window, or build a new detector to accept a new normal.

    Parameters
    ----------
    reference_size
        Values learned as the reference (ignored when the reference is given).
    window
        Values in the sliding window.
    bins
        Quantile bins of the reference (2 to 1000); tied quantiles are merged, and a bin just
        above the reference maximum is added when the maximum is tied (so a constant signal that
        moves up is still seen).
    warning, critical
        PSI reporting levels (rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major).
    eps
        Smoothing added to each frequency, so empty bins give a finite PSI.
    check_every
        Values between two computations of the statistics; default ``window // 10``.
    noise_gate
        Raise the flag levels to the sampling-noise level of the window when that is higher.
    reference_edges, reference_freqs
        A known reference: interior bin edges (strictly increasing) and the frequencies (or
        counts) of the ``len(reference_edges) + 1`` bins. Then there is no warm-up, and
        `reference_size` only enters the noise level.

    Examples
    --------
    >>> import random
    >>> from detectors import NumericPSI
    >>> rng = random.Random(1)
    >>> psi = NumericPSI()
    >>> before = [rng.gauss(0.0, 1.0) for _ in range(3000)]  # 1000 reference, then stationary
    >>> after = [rng.gauss(1.0, 1.0) for _ in range(1000)]  # +1 standard deviation
    >>> hits = psi.update_many(before + after)
    >>> hits[0] - len(before)  # values after the shift until the first alarm
    249
    >>> {k: round(v, 3) for k, v in psi.stats().items() if k in ("psi", "js", "drift_level")}
    {'psi': 0.989, 'js': 0.404, 'drift_level': 0.25}

    With a known reference there is no warm-up:

    >>> psi = NumericPSI.from_reference(before[:1000], window=200)
    >>> psi.ready, len(psi.stats()) > 0
    (True, True)

    Notes
    -----
    Calibration of the defaults (reference 1000, window 500, 10 bins, checks every 50 values):
    100 streams of 10^6 values per distribution, each with its own reference, gave no drift flag
    at all on N(0, 1), Student-t(3) or lognormal(0, 1) (largest PSI 0.15: binning by reference
    quantiles makes PSI distribution-free for continuous data) and 0.8-0.9 warning flags per
    million values. Over 1000 streams, a +1 sd mean shift is flagged after 274 values (median;
    90th percentile 317, worst 408) on N(0, 1), 206 (242, 288) on Student-t(3) and 163 (190, 236)
    on lognormal(0, 1).

    ``stats()`` keys: ``psi`` and ``js`` (of the last check; 0 before the first),
    ``warning`` and ``critical`` (the reporting levels), ``warning_level`` and ``drift_level``
    (the levels the flags use), ``window_n`` (values in the window), ``buckets`` (bins).

    """

    __slots__ = ("_edges", "_learn", "bins", "reference_size")

    _kind = "numeric_psi"

    def __init__(
        self,
        reference_size: int = 1000,
        window: int = 500,
        bins: int = 10,
        warning: float = 0.1,
        critical: float = 0.25,
        eps: float = 1e-4,
        check_every: int | None = None,
        noise_gate: bool = True,
        reference_edges: Sequence[float] | None = None,
        reference_freqs: Sequence[float] | None = None,
    ) -> None:
        super().__init__(window, warning, critical, eps, check_every, noise_gate)
        if reference_size < 2:
            raise ValueError(f"reference_size must be >= 2, got {reference_size}")
        if not 2 <= bins <= 1000:
            raise ValueError(f"bins must be in [2, 1000], got {bins}")
        self.reference_size = int(reference_size)
        self.bins = int(bins)
        self._learn: list[float] = []
        self._edges: list[float] | None = None
        if (reference_edges is None) != (reference_freqs is None):
            raise ValueError("give both reference_edges and reference_freqs, or neither")
        if reference_edges is not None and reference_freqs is not None:
            edges = [check_finite(e) for e in reference_edges]
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError("reference_edges must be strictly increasing")
            freqs = [check_finite(f) for f in reference_freqs]
            if len(freqs) != len(edges) + 1 or min(freqs) < 0.0:
                raise ValueError("reference_freqs needs len(reference_edges) + 1 values >= 0")
            self._edges = edges
            self._install(freqs, self.reference_size)

    @classmethod
    def from_reference(cls, values: Iterable[float], **kwargs: Any) -> NumericPSI:
        """A detector whose reference is `values`, exactly as if they had been its warm-up."""
        xs = [check_finite(v) for v in values]
        if len(xs) < 2:
            raise ValueError("a reference needs at least 2 values")
        d = cls(reference_size=len(xs), **kwargs)
        d._set_reference(xs)
        return d

    def _pseudo_count(self) -> float:
        return self.eps * self.window

    def _reference_left(self) -> int:
        return self.reference_size - len(self._learn)

    def _set_reference(self, values: list[float]) -> None:
        edges = _quantile_edges(values, self.bins)
        counts = [0] * (len(edges) + 1)
        for v in values:
            counts[bisect.bisect_right(edges, v)] += 1
        self._edges = edges
        self._learn = []
        self._install([float(c) for c in counts], len(values))

    def update(self, x: float) -> None:
        """Add one value; read ``drift_detected`` afterwards."""
        x = check_finite(x)
        self.n += 1
        self.drift_detected = self.warning_detected = False
        edges = self._edges
        if edges is None:
            self._learn.append(x)
            if len(self._learn) == self.reference_size:
                self._set_reference(self._learn)
            return
        self._push(bisect.bisect_right(edges, x))

    def update_many(self, xs: Iterable[float]) -> list[int]:
        """Feed several values (vectorised); positions in `xs` where a drift was flagged.

        Identical to calling `update` on each value in turn, including stopping with
        ``ValueError`` at the first non-finite value after taking the ones before it.
        """
        arr = np.asarray(xs if isinstance(xs, np.ndarray) else list(xs), dtype=float).ravel()
        finite = np.isfinite(arr)
        stop = arr.size if finite.all() else int(np.argmin(finite))
        hits: list[int] = []
        pos = 0
        if stop and self._edges is None:
            take = min(stop, self.reference_size - len(self._learn))
            self._learn.extend(arr[:take].tolist())
            self.n += take
            self.drift_detected = self.warning_detected = False
            pos = take
            if len(self._learn) == self.reference_size:
                self._set_reference(self._learn)
        if pos < stop and self._edges is not None:
            bins = np.searchsorted(np.asarray(self._edges), arr[pos:stop], side="right")
            hits = [pos + h for h in self._push_many(bins.astype(np.int64))]
            self.n += stop - pos
        if stop < arr.size:
            check_finite(float(arr[stop]))
        return hits

    @property
    def edges(self) -> list[float] | None:
        """Interior bin edges (None during warm-up); bin i holds ``edges[i-1] <= x < edges[i]``."""
        return None if self._edges is None else list(self._edges)

    @property
    def reference_freqs(self) -> list[float] | None:
        """Reference bin frequencies (None during warm-up)."""
        return None if self._ref_freqs is None else list(self._ref_freqs)

    def to_state(self) -> State:
        """Parameters, warm-up values or reference, and the window's bin indices."""
        reference = None
        if self._edges is not None and self._ref_freqs is not None:
            reference = {"edges": self._edges, "freqs": self._ref_freqs, "n": self._ref_n}
        return {
            "reference_size": self.reference_size,
            "bins": self.bins,
            **self._common_state(),
            "learn": list(self._learn),
            "reference": reference,
            **self._window_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> NumericPSI:
        """Rebuild from `to_state` output."""
        r = StateReader(state, cls._kind)
        d = cls(
            reference_size=r.get_int("reference_size"),
            bins=r.get_int("bins"),
            **cls._common_params(r),
        )
        learn = r.get_floats("learn")
        if len(learn) >= d.reference_size or not all(math.isfinite(v) for v in learn):
            raise StateDecodeError(f"{cls._kind}: warm-up values do not fit")
        d._learn = learn
        if raw_field(state, "reference", cls._kind) is None:
            if len(learn) != r.get_int("n"):
                raise StateDecodeError(f"{cls._kind}: warm-up values do not match n")
        else:
            if learn:
                raise StateDecodeError(f"{cls._kind}: warm-up values beside a reference")
            ref = r.get_map("reference")
            edges = ref.get_floats("edges")
            if not all(math.isfinite(e) for e in edges) or any(
                b <= a for a, b in itertools.pairwise(edges)
            ):
                raise StateDecodeError(f"{cls._kind}: edges must be finite and increasing")
            d._edges = edges
            d._restore_reference(ref, "freqs", len(edges) + 1)
        d._restore_window(r)
        return d


@register("categorical_psi")
class CategoricalPSI(_WindowedPSI):
    r"""Population stability index of a categorical signal: a sliding window against a reference.

    The first `reference_size` values are the reference. Its `max_categories` most frequent
    categories get a bucket each (ties: first seen first), provided they make up at least
    `min_frequency` of the reference; the other reference categories share an ``__other__``
    bucket, and categories never seen in the reference go to an ``__unseen__`` bucket. The
    reference frequency of ``__unseen__`` is the Good-Turing estimate of the unseen mass: the
    share of the reference taken by (folded) categories seen exactly once, which moves there from
    ``__other__``. A long-tailed but stationary signal keeps meeting new categories, and that is
    not drift.

    Windows and checks work as in `NumericPSI`: every `check_every` values once `window` values
    are in, PSI and the Jensen-Shannon distance of window and reference frequencies are computed.
    The window counts get half a pseudo-count each (Krichevsky-Trofimov), the reference
    frequencies `eps`: with plain ``eps`` smoothing a rare category that happens to be absent from
    the window adds ``p ln(p / eps)`` to PSI, which made stationary 50-category streams alarm.
    After a drift nothing is reset (see `NumericPSI`).

    Parameters
    ----------
    reference_size
        Values learned as the reference (when given as a mapping, only the noise level uses it).
    window
        Values in the sliding window.
    max_categories
        Most categories with a bucket of their own.
    warning, critical
        PSI reporting levels.
    min_frequency
        Reference share a category needs for its own bucket; rarer ones go to ``__other__``
        (a bucket expected to hold only a handful of window values makes PSI noisy).
    eps
        Smoothing added to each reference frequency.
    check_every
        Values between two computations of the statistics; default ``window // 10``.
    noise_gate
        Raise the flag levels to the sampling-noise level of the window when that is higher.
    reference
        A known reference: category → frequency or count. Then there is no warm-up and no
        unseen-mass estimate.

    Examples
    --------
    >>> import random
    >>> from detectors import CategoricalPSI
    >>> rng = random.Random(3)
    >>> psi = CategoricalPSI()
    >>> colours = ["red", "green", "blue", "white"]
    >>> before = rng.choices(colours, weights=[0.5, 0.3, 0.15, 0.05], k=3000)
    >>> after = rng.choices(colours, weights=[0.3, 0.3, 0.2, 0.2], k=1000)
    >>> hits = psi.update_many(before + after)
    >>> hits[0] - len(before)  # values after the shift until the first alarm
    499
    >>> {k: round(v, 3) for k, v in psi.stats().items() if k in ("psi", "unseen_rate")}
    {'psi': 0.409, 'unseen_rate': 0.0}
    >>> [(c, round(p, 2), round(q, 2)) for c, p, q in psi.breakdown()][:2]
    [('red', 0.51, 0.28), ('green', 0.29, 0.31)]

    Notes
    -----
    Calibration of the defaults (reference 1000, window 500, checks every 50 values), each stream
    with its own reference: no drift flag in 10^8 values with frequencies [0.5, 0.3, 0.15, 0.05]
    (largest PSI 0.10), nor in 2x10^7 values each of 10, 50, 300 or 5000 equally frequent
    categories or 20, 50, 100 or 1000 Zipf-distributed ones; 0-5 warning flags per million values.
    Without the noise gate, 50 equal categories give 35 drift flags per million. Over 1000
    streams, the shift from [0.5, 0.3, 0.15, 0.05] to [0.3, 0.3, 0.2, 0.2] (PSI 0.32 once the
    window is full, so barely over 0.25) is flagged after 446 values (median; 90th percentile
    519; 83% within one window, 97% within 1.5 windows).

    ``stats()`` keys: those of `NumericPSI` (``buckets`` counts ``__other__`` and ``__unseen__``)
    plus ``unseen_rate`` and ``other_rate``: shares of the current window in those buckets.

    """

    __slots__ = (
        "_categories",
        "_folded",
        "_index",
        "_learn",
        "max_categories",
        "min_frequency",
        "reference_size",
    )

    _kind = "categorical_psi"
    _PSEUDO = 0.5

    def __init__(
        self,
        reference_size: int = 1000,
        window: int = 500,
        max_categories: int = 50,
        warning: float = 0.1,
        critical: float = 0.25,
        min_frequency: float = 0.01,
        eps: float = 1e-4,
        check_every: int | None = None,
        noise_gate: bool = True,
        reference: Mapping[Category, float] | None = None,
    ) -> None:
        super().__init__(window, warning, critical, eps, check_every, noise_gate)
        if reference_size < 2:
            raise ValueError(f"reference_size must be >= 2, got {reference_size}")
        if max_categories < 1:
            raise ValueError(f"max_categories must be >= 1, got {max_categories}")
        if not 0.0 <= min_frequency < 1.0:
            raise ValueError(f"min_frequency must be in [0, 1), got {min_frequency}")
        self.reference_size = int(reference_size)
        self.max_categories = int(max_categories)
        self.min_frequency = float(min_frequency)
        # Warm-up: category -> count, in order of first appearance.
        self._learn: dict[Category, int] = {}
        self._categories: list[Category] = []
        self._folded: list[Category] = []
        self._index: dict[Category, int] = {}
        if reference is not None:
            cats = [_check_category(c) for c in reference]
            weights = [check_finite(w) for w in reference.values()]
            if not weights or min(weights) < 0.0:
                raise ValueError("reference needs at least one category, with weights >= 0")
            self._set_reference(cats, weights, self.reference_size, good_turing=False)

    @classmethod
    def from_reference(cls, values: Iterable[Category], **kwargs: Any) -> CategoricalPSI:
        """A detector whose reference is `values`, exactly as if they had been its warm-up."""
        counts: dict[Category, int] = {}
        for v in values:
            c = _check_category(v)
            counts[c] = counts.get(c, 0) + 1
        total = sum(counts.values())
        if total < 2:
            raise ValueError("a reference needs at least 2 values")
        d = cls(reference_size=total, **kwargs)
        d._learn = counts
        d._learned()
        return d

    def _pseudo_count(self) -> float:
        return self._PSEUDO

    def _reference_left(self) -> int:
        return self.reference_size - self.n  # during warm-up, n counts warm-up values

    def _learned(self) -> None:
        counts = self._learn
        self._set_reference(list(counts), [float(c) for c in counts.values()], sum(counts.values()))
        self._learn = {}

    def _set_reference(
        self, cats: list[Category], weights: list[float], ref_n: int, good_turing: bool = True
    ) -> None:
        """Buckets from category weights (counts, or frequencies when not `good_turing`)."""
        total = math.fsum(weights)
        if not total > 0.0:
            raise ValueError("reference weights must have a positive sum")
        order = sorted(range(len(cats)), key=lambda i: (-weights[i], i))
        floor = self.min_frequency * total
        top = [i for i in order[: self.max_categories] if weights[i] >= floor]
        kept = set(top)
        folded = [i for i in range(len(cats)) if i not in kept]
        # Good-Turing: the categories seen once estimate the mass of the unseen ones, and their
        # own counts overstate their true share, so that mass moves from __other__ to __unseen__.
        once = math.fsum(1.0 for i in folded if weights[i] == 1.0) if good_turing else 0.0
        freqs = [weights[i] / total for i in top]
        freqs.append((math.fsum(weights[i] for i in folded) - once) / total)
        freqs.append(once / total)
        self._categories = [cats[i] for i in top]
        self._folded = [cats[i] for i in folded]
        self._build_index()
        self._install(freqs, ref_n)

    def _build_index(self) -> None:
        other = len(self._categories)
        index: dict[Category, int] = dict.fromkeys(self._folded, other)
        index.update((c, i) for i, c in enumerate(self._categories))
        if len(index) != other + len(self._folded):
            raise ValueError("reference categories must be distinct")
        self._index = index

    def is_unseen(self, x: Category) -> bool:
        """True when the reference is known and never contained `x` (a data-quality signal)."""
        return self._ref_freqs is not None and x not in self._index

    def update(self, x: Category) -> None:
        """Add one category; read ``drift_detected`` afterwards."""
        x = _check_category(x)
        self.n += 1
        self.drift_detected = self.warning_detected = False
        if self._ref_freqs is None:
            learn = self._learn
            learn[x] = learn.get(x, 0) + 1
            if self.n == self.reference_size:  # during warm-up, n counts warm-up values
                self._learned()
            return
        self._push(self._index.get(x, len(self._categories) + 1))

    def update_many(self, xs: Iterable[Category]) -> list[int]:
        """Feed several categories; positions in `xs` where a drift was flagged.

        Identical to calling `update` on each in turn (an invalid category raises after the
        ones before it were taken); the window part is vectorised.
        """
        items = list(xs)
        pos = 0
        while pos < len(items) and self._ref_freqs is None:
            self.update(items[pos])
            pos += 1
        unseen = len(self._categories) + 1
        get = self._index.get
        bins: list[int] = []
        error: ValueError | None = None
        for x in items[pos:]:
            try:
                bins.append(get(_check_category(x), unseen))
            except ValueError as exc:
                error = exc
                break
        hits = [pos + h for h in self._push_many(np.asarray(bins, dtype=np.int64))]
        self.n += len(bins)
        if error is not None:
            raise error
        return hits

    def breakdown(self) -> list[tuple[str, float, float]]:
        """Per bucket: (category as text, reference frequency, current window frequency)."""
        if self._ref_freqs is None:
            return []
        names = [str(c) for c in self._categories] + [OTHER, UNSEEN]
        size = len(self._buffer)
        return [
            (name, p, (c / size if size else 0.0))
            for name, p, c in zip(names, self._ref_freqs, self._counts, strict=True)
        ]

    @property
    def categories(self) -> list[Category]:
        """Reference categories with a bucket of their own, most frequent first."""
        return list(self._categories)

    def stats(self) -> dict[str, float]:
        """Statistics of the last check, levels and window shares; see the class notes."""
        out = super().stats()
        size = len(self._buffer)
        k = len(self._categories)
        out["unseen_rate"] = self._counts[k + 1] / size if size else 0.0
        out["other_rate"] = self._counts[k] / size if size else 0.0
        return out

    def to_state(self) -> State:
        """Parameters, warm-up counts or reference, and the window's bucket indices."""
        reference = None
        if self._ref_freqs is not None:
            reference = {
                "categories": list(self._categories),
                "folded": list(self._folded),
                "freqs": self._ref_freqs,
                "n": self._ref_n,
            }
        return {
            "reference_size": self.reference_size,
            "max_categories": self.max_categories,
            "min_frequency": self.min_frequency,
            **self._common_state(),
            "learn_categories": list(self._learn),
            "learn_counts": list(self._learn.values()),
            "reference": reference,
            **self._window_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> CategoricalPSI:
        """Rebuild from `to_state` output."""
        r = StateReader(state, cls._kind)
        d = cls(
            reference_size=r.get_int("reference_size"),
            max_categories=r.get_int("max_categories"),
            min_frequency=r.get_float("min_frequency"),
            **cls._common_params(r),
        )
        cats = _categories(r, "learn_categories")
        counts = r.get_list("learn_counts")
        if len(counts) != len(cats) or not all(c.__class__ is int and c > 0 for c in counts):
            raise StateDecodeError(f"{cls._kind}: warm-up counts do not fit")
        d._learn = dict(zip(cats, counts, strict=True))
        if len(d._learn) != len(cats) or sum(counts) >= d.reference_size:
            raise StateDecodeError(f"{cls._kind}: warm-up counts do not fit")
        if raw_field(state, "reference", cls._kind) is None:
            if sum(counts) != r.get_int("n"):
                raise StateDecodeError(f"{cls._kind}: warm-up counts do not match n")
        else:
            if cats:
                raise StateDecodeError(f"{cls._kind}: warm-up counts beside a reference")
            ref = r.get_map("reference")
            d._categories = _categories(ref, "categories")
            d._folded = _categories(ref, "folded")
            if len(d._categories) > d.max_categories:
                raise StateDecodeError(f"{cls._kind}: more categories than max_categories")
            try:
                d._build_index()
            except ValueError as exc:
                raise StateDecodeError(f"{cls._kind}: {exc}") from None
            d._restore_reference(ref, "freqs", len(d._categories) + 2)
        d._restore_window(r)
        return d


def _categories(r: StateReader, key: str) -> list[Category]:
    out = []
    for item in r.get_list(key):
        try:
            out.append(_check_category(item))
        except ValueError as exc:
            raise StateDecodeError(f"categorical_psi: field {key!r}: {exc}") from None
    return out
