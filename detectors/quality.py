"""Windowed and cumulative data-quality rates (missing, non-finite, wrong type, unseen category)."""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["DEFAULT_THRESHOLD", "RATES", "DataQualityRates"]

RATES = ("missing", "non_finite", "wrong_type", "unseen_category")
"""The tracked problems, in the order of the state and of ``stats()``."""

DEFAULT_THRESHOLD = 0.05
"""Windowed rate above which a problem is flagged, unless set otherwise."""


Row = tuple[int, int, int, int, int]
"""One event's counts: total_fields, missing, non_finite, wrong_type, unseen_category."""


def _checked(row: tuple[Any, ...]) -> Row:
    """`row` as five ints with each count in [0, total_fields], or ValueError."""
    t, m, nf, wt, uc = row
    if not (
        t.__class__ is int
        and m.__class__ is int
        and nf.__class__ is int
        and wt.__class__ is int
        and uc.__class__ is int
    ):
        t, m, nf, wt, uc = _as_ints(t, m, nf, wt, uc)
    if not (0 <= m <= t and 0 <= nf <= t and 0 <= wt <= t and 0 <= uc <= t):
        raise ValueError(
            f"counts must be integers in [0, total_fields], got {(t, m, nf, wt, uc)} "
            "(total_fields, missing, non_finite, wrong_type, unseen_category)"
        )
    return (t, m, nf, wt, uc)


@register("data_quality_rates")
class DataQualityRates:
    """Share of fields with each data-quality problem, over the last `window` events and overall.

    Each update is one event: how many of its `total_fields` watched fields were missing,
    non-finite, of the wrong type, or an unseen category. A rate is problem fields over watched
    fields (over the window's events, or all events). Counting is exact (integers), so windowed
    rates equal a direct computation. The window is stored run-length encoded (consecutive
    identical events are one row with a count), so a steady stream costs a few runs, not one
    row per event.

    ``drift_detected`` is set on every update where, with at least `min_samples` events in the
    window, some windowed rate is above its threshold (level-triggered: the alert policy's
    cooldown decides how often that reaches a human); `breached` names those rates.

    Parameters
    ----------
    window
        Events in the sliding window.
    threshold
        One threshold for every rate, or a mapping rate name → threshold (names from `RATES`;
        rates left out keep `DEFAULT_THRESHOLD`). A threshold of 1 disables a rate.
    min_samples
        Events the window needs before a flag can be raised.

    Examples
    --------
    >>> from detectors import DataQualityRates
    >>> q = DataQualityRates(window=100, min_samples=10, threshold={"missing": 0.2})
    >>> for i in range(30):
    ...     q.update(total_fields=5, missing=1 if i % 2 else 0, wrong_type=1 if i == 3 else 0)
    >>> q.drift_detected, q.breached
    (False, ())
    >>> for i in range(30):
    ...     q.update(total_fields=5, missing=2)
    >>> q.drift_detected, q.breached
    (True, ('missing',))
    >>> {k: round(v, 3) for k, v in q.stats().items() if k.startswith(("missing", "wrong"))}
    {'missing_rate': 0.25, 'missing_cumulative': 0.25, 'wrong_type_rate': 0.003, \
'wrong_type_cumulative': 0.003}

    Notes
    -----
    ``stats()`` keys: ``<rate>_rate`` (window) and ``<rate>_cumulative`` for each name in
    `RATES`, ``window_n`` (events in the window), ``window_fields`` (fields in the window), ``n``
    (events since creation). Rates are 0 while no field was watched.

    State: the window is ``rows`` (five lists, one per column: ``total_fields`` and the four
    problem counts, one entry per run) and ``counts`` (events per run), oldest run first;
    consecutive runs differ.

    """

    __slots__ = (
        "_breached",
        "_counts",
        "_cumulative",
        "_limits",
        "_rows",
        "_window",
        "_window_n",
        "drift_detected",
        "min_samples",
        "n",
        "thresholds",
        "warning_detected",
        "window",
    )

    def __init__(
        self,
        window: int = 1000,
        threshold: float | Mapping[str, float] = DEFAULT_THRESHOLD,
        min_samples: int = 100,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 1 <= min_samples <= window:
            raise ValueError(f"min_samples must be in [1, window], got {min_samples}")
        self.window = int(window)
        self.min_samples = int(min_samples)
        self.thresholds = _thresholds(threshold)
        """Threshold per rate name (fixed at construction)."""
        self._limits = tuple(self.thresholds[name] for name in RATES)
        self.n = 0
        """Events seen since creation."""
        self.drift_detected = False
        self.warning_detected = False
        # Sums of (fields, missing, non_finite, wrong_type, unseen_category).
        self._window = [0] * 5
        self._cumulative = [0] * 5
        # The window, run-length encoded: distinct consecutive rows and their event counts.
        self._rows: deque[tuple[int, int, int, int, int]] = deque()
        self._counts: deque[int] = deque()
        self._window_n = 0
        self._breached: tuple[str, ...] = ()

    def update(
        self,
        *,
        total_fields: int,
        missing: int = 0,
        non_finite: int = 0,
        wrong_type: int = 0,
        unseen_category: int = 0,
    ) -> None:
        """Add one event's counts; read ``drift_detected`` afterwards."""
        self._add(_checked((total_fields, missing, non_finite, wrong_type, unseen_category)))

    def update_until_breached(self, rows: Sequence[Row], start: int = 0) -> int:
        """Feed events as rows ``(total_fields, missing, non_finite, wrong_type,
        unseen_category)`` from ``rows[start]`` on, until one leaves a rate above its threshold;
        return that row's position (read `breached` and `stats()` now), or ``len(rows)``.

        Identical to calling `update` on each row in turn, stopping there.

        Examples
        --------
        >>> q = DataQualityRates(window=10, min_samples=5, threshold={"missing": 0.2})
        >>> rows = [(4, 0, 0, 0, 0)] * 6 + [(4, 4, 0, 0, 0)] * 4
        >>> q.update_until_breached(rows), q.breached
        (7, ('missing',))

        """
        add = self._add
        n = len(rows)
        i = start
        while i < n:
            row = _checked(rows[i])
            if not self._breached and self._steady(row):
                # a full window of this very row: more of it changes only the cumulative sums
                end = i + 1
                while end < n and rows[end] == row:
                    end += 1
                self._repeat(row, end - i)
                i = end
                continue
            add(row)
            if self._breached:
                return i
            i += 1
        return n

    def _steady(self, row: Row) -> bool:
        """Whether the window is full of `row` alone (then adding it changes no rate)."""
        return self._window_n == self.window and len(self._rows) == 1 and self._rows[0] == row

    def _repeat(self, row: Row, times: int) -> None:
        """Add `row` `times` times to a window that is full of it (see `_steady`)."""
        cum = self._cumulative
        for i, count in enumerate(row):
            cum[i] += count * times
        self.n += times

    def _add(self, row: Row) -> None:
        t, m, nf, wt, uc = row
        rows = self._rows
        counts = self._counts
        win = self._window
        if self._window_n == self.window:
            o = rows[0]
            c = counts[0]
            if c == 1:
                rows.popleft()
                counts.popleft()
            else:
                counts[0] = c - 1
            if o != row:  # an equal row leaves the sums as they are
                win[0] += t - o[0]
                win[1] += m - o[1]
                win[2] += nf - o[2]
                win[3] += wt - o[3]
                win[4] += uc - o[4]
        else:
            self._window_n += 1
            win[0] += t
            win[1] += m
            win[2] += nf
            win[3] += wt
            win[4] += uc
        if rows and rows[-1] == row:
            counts[-1] += 1
        else:
            rows.append(row)
            counts.append(1)
        cum = self._cumulative
        cum[0] += t
        cum[1] += m
        cum[2] += nf
        cum[3] += wt
        cum[4] += uc
        self.n += 1
        self._evaluate()

    def _evaluate(self) -> None:
        win = self._window
        fields = win[0]
        if self._window_n < self.min_samples or not fields:
            self._breached = ()
        else:
            th = self._limits
            if (
                win[1] / fields > th[0]
                or win[2] / fields > th[1]
                or win[3] / fields > th[2]
                or win[4] / fields > th[3]
            ):
                self._breached = tuple(
                    name for i, name in enumerate(RATES) if win[i + 1] / fields > th[i]
                )
            else:
                self._breached = ()
        self.drift_detected = bool(self._breached)

    @property
    def breached(self) -> tuple[str, ...]:
        """Names of the rates above their threshold after the last update."""
        return self._breached

    def rates(self) -> dict[str, float]:
        """Windowed rate per name."""
        fields = self._window[0]
        return {
            name: (self._window[i] / fields if fields else 0.0) for i, name in enumerate(RATES, 1)
        }

    def cumulative(self) -> dict[str, float]:
        """Rate per name since creation."""
        fields = self._cumulative[0]
        return {
            name: (self._cumulative[i] / fields if fields else 0.0)
            for i, name in enumerate(RATES, 1)
        }

    def stats(self) -> dict[str, float]:
        """Windowed and cumulative rates and sizes; see the class notes for the keys."""
        out: dict[str, float] = {}
        cumulative = self.cumulative()
        for name, rate in self.rates().items():
            out[f"{name}_rate"] = rate
            out[f"{name}_cumulative"] = cumulative[name]
        out["window_n"] = float(self._window_n)
        out["window_fields"] = float(self._window[0])
        out["n"] = float(self.n)
        return out

    def to_state(self) -> State:
        """Parameters, cumulative sums and the window's runs (see the class notes)."""
        columns = list(zip(*self._rows, strict=True)) if self._rows else [()] * 5
        return {
            "window": self.window,
            "thresholds": [self.thresholds[name] for name in RATES],
            "min_samples": self.min_samples,
            "n": self.n,
            "cumulative": list(self._cumulative),
            "rows": [list(c) for c in columns],
            "counts": list(self._counts),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DataQualityRates:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "data_quality_rates")
        thresholds = r.get_floats("thresholds")
        if len(thresholds) != len(RATES):
            raise StateDecodeError("data_quality_rates: one threshold per rate expected")
        try:
            q = cls(
                window=r.get_int("window"),
                threshold=dict(zip(RATES, thresholds, strict=True)),
                min_samples=r.get_int("min_samples"),
            )
        except StateDecodeError:
            raise
        except ValueError as exc:
            raise StateDecodeError(f"data_quality_rates: {exc}") from None
        q.n = r.get_int("n", minimum=0)
        cumulative = r.get_list("cumulative")
        columns = r.get_list("rows")
        counts = r.get_list("counts")
        if len(cumulative) != 5 or len(columns) != 5:
            raise StateDecodeError("data_quality_rates: five sums and five columns expected")
        if not all(c.__class__ is int and c >= 0 for c in cumulative):
            raise StateDecodeError("data_quality_rates: sums must be integers >= 0")
        if not all(isinstance(c, list) and len(c) == len(counts) for c in columns):
            raise StateDecodeError("data_quality_rates: one row entry per count expected")
        if len(counts) > q.window:
            raise StateDecodeError("data_quality_rates: more runs than the window")
        if not all(c.__class__ is int and c > 0 for c in counts):
            raise StateDecodeError("data_quality_rates: run counts must be integers > 0")
        window_n = sum(counts)
        if window_n > q.window or window_n > q.n:
            raise StateDecodeError("data_quality_rates: more events than the window or the count")
        rows: list[tuple[int, int, int, int, int]] = list(zip(*columns, strict=True))
        win = q._window
        previous = None
        for row, count in zip(rows, counts, strict=True):
            if not all(v.__class__ is int and 0 <= v <= row[0] for v in row):
                raise StateDecodeError("data_quality_rates: rows must be counts <= total_fields")
            if row == previous:
                raise StateDecodeError("data_quality_rates: consecutive runs must differ")
            previous = row
            for i in range(5):
                win[i] += row[i] * count
        if any(c < w or c > cumulative[0] for c, w in zip(cumulative[1:], win[1:], strict=True)):
            raise StateDecodeError("data_quality_rates: cumulative sums do not fit the window")
        if cumulative[0] < win[0]:
            raise StateDecodeError("data_quality_rates: cumulative sums do not fit the window")
        q._cumulative = list(cumulative)
        q._rows.extend(rows)
        q._counts.extend(counts)
        q._window_n = window_n
        q._evaluate()
        return q


def _thresholds(threshold: float | Mapping[str, float]) -> dict[str, float]:
    if isinstance(threshold, Mapping):
        unknown = set(threshold) - set(RATES)
        if unknown:
            raise ValueError(f"unknown rate names {sorted(unknown)}; known: {RATES}")
        out = {name: float(threshold.get(name, DEFAULT_THRESHOLD)) for name in RATES}
    else:
        out = dict.fromkeys(RATES, float(threshold))
    for name, value in out.items():
        if not 0.0 <= value <= 1.0 or math.isnan(value):
            raise ValueError(f"threshold for {name!r} must be in [0, 1], got {value}")
    return out


def _as_ints(*values: Any) -> tuple[int, int, int, int, int]:
    """The five counts as ints (numpy integers welcome); anything else raises ``ValueError``."""
    try:
        t, m, nf, wt, uc = (operator.index(v) for v in values)
    except TypeError:
        raise ValueError(f"counts must be integers, got {values}") from None
    return t, m, nf, wt, uc
