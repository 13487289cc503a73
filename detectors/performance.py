"""Windowed and cumulative performance metrics with exact, restorable state.

Each metric keeps the last `window` values in a ring buffer plus a running sum, so reading it is
O(1). Accuracy counts in integers, which is exact. The error metrics add floats; to stop rounding
error from building up over a long run, the window sum is recomputed exactly (``math.fsum``) every
`window` updates and the cumulative sum is compensated (Neumaier). Everything, the buffer included,
is in the state, so a restored metric continues bit-identically.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any, TypeVar

import numpy as np

from detectors._ring import pushed_out
from detectors.base import check_finite
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["WindowedAccuracy", "WindowedMAE", "WindowedRMSE"]

_M = TypeVar("_M", bound="_WindowedErrorMean")


def _check_window(window: int) -> int:
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return int(window)


@register("windowed_accuracy")
class WindowedAccuracy:
    """Accuracy over the last `window` outcomes and since the start.

    Parameters
    ----------
    window
        Number of most recent outcomes in `value`.

    Examples
    --------
    >>> from detectors import WindowedAccuracy
    >>> acc = WindowedAccuracy(window=4)
    >>> print(acc.value)
    None
    >>> for correct in [True, True, False, True, False, False]:
    ...     acc.update(correct)
    >>> acc.value, acc.window_n, acc.cumulative, acc.n
    (0.25, 4, 0.5, 6)

    """

    __slots__ = ("_buffer", "_correct", "_window_correct", "n", "window")

    def __init__(self, window: int = 500) -> None:
        self.window = _check_window(window)
        self.n = 0
        """Outcomes seen since creation."""
        self._correct = 0
        self._window_correct = 0
        self._buffer: deque[int] = deque(maxlen=self.window)

    def update(self, correct: bool) -> None:
        """Add one outcome: True (or 1) when the prediction was right."""
        c = int(correct)
        if c != correct or c not in (0, 1):
            raise ValueError(f"correct must be a bool or 0/1, got {correct!r}")
        buf = self._buffer
        if len(buf) == self.window:
            self._window_correct -= buf[0]
        buf.append(c)
        self._window_correct += c
        self._correct += c
        self.n += 1

    def update_many(self, corrects: Sequence[bool | int]) -> None:
        """Add several outcomes; the same state as calling `update` on each in turn.

        Examples
        --------
        >>> acc = WindowedAccuracy(window=4)
        >>> acc.update_many([True, True, False, True, False, False])
        >>> acc.value, acc.window_n, acc.cumulative, acc.n
        (0.25, 4, 0.5, 6)

        """
        cs = [int(c) for c in corrects]
        for c, given in zip(cs, corrects, strict=True):
            if c != given or c not in (0, 1):
                raise ValueError(f"correct must be a bool or 0/1, got {given!r}")
        buf = self._buffer
        left = sum(pushed_out(buf, cs, self.window))
        added = sum(cs)
        buf.extend(cs)
        self._window_correct += added - left
        self._correct += added
        self.n += len(cs)

    def values_after(self, corrects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windowed accuracy and window size after each of `corrects` (0/1), were they added
        in turn; the state does not change. The values are those `value` would read.

        Examples
        --------
        >>> acc = WindowedAccuracy(window=2)
        >>> acc.update(True)
        >>> values, sizes = acc.values_after(np.array([0, 0, 1]))
        >>> values.tolist(), sizes.tolist()
        ([0.5, 0.0, 0.5], [2, 2, 2])

        """
        buf, window = self._buffer, self.window
        held, n = len(buf), len(corrects)
        # the stream as buffer + corrects; after the k-th new outcome the window is its
        # positions [ends[k] - sizes[k], ends[k]); only the outcomes that leave are read back
        leaving = min(held, max(0, held + n - window))
        stream = np.empty(leaving + n, dtype=np.int64)
        stream[:leaving] = list(islice(buf, 0, leaving))
        stream[leaving:] = corrects
        ends = np.arange(held + 1, held + n + 1)
        sizes = np.minimum(ends, window)
        prefix = np.zeros(leaving + n + 1, dtype=np.int64)
        np.cumsum(stream, out=prefix[1:])
        new = prefix[leaving + 1 :] - prefix[leaving]  # new outcomes' running sum
        left = prefix[np.maximum(ends - window, 0)]  # (starts index the same prefix: see above)
        return (self._window_correct + new - left) / sizes, sizes

    @property
    def window_n(self) -> int:
        """Outcomes currently in the window."""
        return len(self._buffer)

    @property
    def value(self) -> float | None:
        """Accuracy over the window; None before the first outcome."""
        return self._window_correct / len(self._buffer) if self._buffer else None

    @property
    def cumulative(self) -> float | None:
        """Accuracy since creation; None before the first outcome."""
        return self._correct / self.n if self.n else None

    def stats(self) -> dict[str, float]:
        """``value``, ``cumulative`` and ``window_n`` (once there is an outcome)."""
        if not self.n:
            return {}
        return {
            "value": self._window_correct / len(self._buffer),
            "cumulative": self._correct / self.n,
            "window_n": float(len(self._buffer)),
        }

    def to_state(self) -> State:
        """Window size, counters and the window's outcomes, oldest first."""
        return {
            "window": self.window,
            "n": self.n,
            "correct": self._correct,
            "buffer": list(self._buffer),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WindowedAccuracy:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "windowed_accuracy")
        m = cls(window=r.get_int("window"))
        m.n = r.get_int("n", minimum=0)
        m._correct = r.get_int("correct", minimum=0)
        buffer = r.get_list("buffer")
        if len(buffer) > m.window or len(buffer) > m.n or m._correct > m.n:
            raise StateDecodeError("windowed_accuracy: counters and buffer do not fit together")
        for item in buffer:
            if item.__class__ is not int or item not in (0, 1):
                raise StateDecodeError("windowed_accuracy: buffer must hold 0/1 integers")
        m._buffer.extend(buffer)
        m._window_correct = sum(buffer)
        return m


class _WindowedErrorMean:
    """Mean of a per-value transform of the error over a window and since the start."""

    __slots__ = ("_buffer", "_cum_comp", "_cum_sum", "_since_resum", "_window_sum", "n", "window")

    _kind = ""

    def __init__(self, window: int = 500) -> None:
        self.window = _check_window(window)
        self.n = 0
        """Errors seen since creation."""
        self._buffer: deque[float] = deque(maxlen=self.window)
        self._window_sum = 0.0
        self._since_resum = 0
        self._cum_sum = 0.0
        self._cum_comp = 0.0

    @staticmethod
    def _transform(error: float) -> float:
        raise NotImplementedError

    @staticmethod
    def _finish(mean: float) -> float:
        raise NotImplementedError

    def update(self, error: float) -> None:
        """Add one error, ``y_pred - y_true`` (the sign does not matter)."""
        v = self._transform(check_finite(error))
        if v == math.inf:
            raise ValueError(f"error {error!r} overflows {self._kind}")
        buf = self._buffer
        if len(buf) == self.window:
            self._window_sum -= buf[0]
        buf.append(v)
        self._since_resum += 1
        if self._since_resum >= self.window:
            self._window_sum = math.fsum(buf)
            self._since_resum = 0
        else:
            self._window_sum += v
        # Neumaier's compensated summation for the unbounded cumulative sum.
        s = self._cum_sum + v
        if abs(self._cum_sum) >= abs(v):
            self._cum_comp += (self._cum_sum - s) + v
        else:
            self._cum_comp += (v - s) + self._cum_sum
        self._cum_sum = s
        self.n += 1

    @property
    def window_n(self) -> int:
        """Errors currently in the window."""
        return len(self._buffer)

    @property
    def value(self) -> float | None:
        """The metric over the window; None before the first error."""
        if not self._buffer:
            return None
        return self._finish(max(self._window_sum, 0.0) / len(self._buffer))

    @property
    def cumulative(self) -> float | None:
        """The metric since creation; None before the first error."""
        if not self.n:
            return None
        return self._finish(max(self._cum_sum + self._cum_comp, 0.0) / self.n)

    def stats(self) -> dict[str, float]:
        """``value``, ``cumulative`` and ``window_n`` (once there is an error)."""
        value = self.value
        cumulative = self.cumulative
        if value is None or cumulative is None:
            return {}
        return {"value": value, "cumulative": cumulative, "window_n": float(len(self._buffer))}

    def to_state(self) -> State:
        """Window size, sums and the window's transformed errors, oldest first."""
        return {
            "window": self.window,
            "n": self.n,
            "buffer": list(self._buffer),
            "window_sum": self._window_sum,
            "since_resum": self._since_resum,
            "cum_sum": self._cum_sum,
            "cum_comp": self._cum_comp,
        }

    @classmethod
    def from_state(cls: type[_M], state: Mapping[str, Any]) -> _M:
        """Rebuild from `to_state` output."""
        r = StateReader(state, cls._kind)
        m = cls(window=r.get_int("window"))
        m.n = r.get_int("n", minimum=0)
        buffer = r.get_floats("buffer")
        if len(buffer) > m.window or len(buffer) > m.n:
            raise StateDecodeError(f"{cls._kind}: buffer larger than the window or the count")
        if not all(v >= 0.0 and math.isfinite(v) for v in buffer):
            raise StateDecodeError(f"{cls._kind}: buffer must hold finite non-negative numbers")
        m._buffer.extend(buffer)
        m._window_sum = r.get_float("window_sum", finite=True)
        m._since_resum = r.get_int("since_resum", minimum=0)
        m._cum_sum = r.get_float("cum_sum", finite=True)
        m._cum_comp = r.get_float("cum_comp", finite=True)
        return m


@register("windowed_mae")
class WindowedMAE(_WindowedErrorMean):
    """Mean absolute error over the last `window` errors and since the start.

    The caller passes the error ``y_pred - y_true`` (either sign); its absolute value is taken.

    Parameters
    ----------
    window
        Number of most recent errors in `value`.

    Examples
    --------
    >>> from detectors import WindowedMAE
    >>> mae = WindowedMAE(window=2)
    >>> for error in [1.0, -3.0, 0.5]:
    ...     mae.update(error)
    >>> mae.value, mae.cumulative, mae.window_n
    (1.75, 1.5, 2)

    """

    __slots__ = ()
    _kind = "windowed_mae"

    @staticmethod
    def _transform(error: float) -> float:
        return abs(error)

    @staticmethod
    def _finish(mean: float) -> float:
        return mean


@register("windowed_rmse")
class WindowedRMSE(_WindowedErrorMean):
    """Root mean squared error over the last `window` errors and since the start.

    The caller passes the error ``y_pred - y_true``.

    Parameters
    ----------
    window
        Number of most recent errors in `value`.

    Examples
    --------
    >>> from detectors import WindowedRMSE
    >>> rmse = WindowedRMSE(window=2)
    >>> for error in [3.0, -4.0, 0.0]:
    ...     rmse.update(error)
    >>> round(rmse.value, 4), round(rmse.cumulative, 4)
    (2.8284, 2.8868)

    """

    __slots__ = ()
    _kind = "windowed_rmse"

    @staticmethod
    def _transform(error: float) -> float:
        return error * error

    @staticmethod
    def _finish(mean: float) -> float:
        return math.sqrt(mean)
