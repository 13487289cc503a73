"""A sliding-window and cumulative mean of floats with exact, restorable state (internal).

The same arithmetic as `detectors.performance`: a ring buffer and a running window sum that is
recomputed exactly (``math.fsum``) every `window` additions, so rounding error cannot build up, and
a compensated (Neumaier) cumulative sum. Everything is in the state, so a restored mean continues
bit-identically. The window is an ``array('d')`` ring (8 bytes a value).
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from detectors.state import State, StateDecodeError, StateReader

__all__ = ["RollingMean"]


class RollingMean:
    """Mean of the last `window` values and of all values.

    Examples
    --------
    >>> m = RollingMean(window=2)
    >>> for v in [1.0, 0.0, 0.5]:
    ...     m.add(v)
    >>> m.value, m.cumulative, m.window_n, m.n
    (0.25, 0.5, 2, 3)

    """

    __slots__ = ("_buffer", "_cum_comp", "_cum_sum", "_since_resum", "_window_sum", "n", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.n = 0
        # The window, grown to `window` values as they arrive (a decoded window size is not trusted
        # with an allocation up front), then a ring. The resum schedule doubles as the ring's
        # position: while filling, _since_resum == len(_buffer); once full, the oldest value (the
        # next to overwrite) is at _since_resum, so at each resum the ring is in window order.
        self._buffer = array("d")
        self._window_sum = 0.0
        self._since_resum = 0
        self._cum_sum = 0.0
        self._cum_comp = 0.0

    def add(self, v: float) -> None:
        """Add one finite value (the caller checks it)."""
        buf = self._buffer
        window = self.window
        i = self._since_resum
        if len(buf) == window:
            self._window_sum -= buf[i]
            buf[i] = v
        else:
            buf.append(v)
            if len(buf) == window:
                self._buffer = buf = array("d", buf)  # exact size: drops the growth slack
        i += 1
        if i >= window:
            self._window_sum = math.fsum(buf)  # oldest first, as the ring has come round
            self._since_resum = 0
        else:
            self._window_sum += v
            self._since_resum = i
        s = self._cum_sum + v
        if abs(self._cum_sum) >= abs(v):
            self._cum_comp += (self._cum_sum - s) + v
        else:
            self._cum_comp += (v - s) + self._cum_sum
        self._cum_sum = s
        self.n += 1

    def _values(self) -> array[float]:
        """The window's values, oldest first."""
        buf, i = self._buffer, self._since_resum
        return buf[i:] + buf[:i] if i and len(buf) == self.window else buf

    def clear_window(self) -> None:
        """Forget the window (the cumulative mean is kept)."""
        self._buffer = array("d")
        self._window_sum = 0.0
        self._since_resum = 0

    @property
    def full(self) -> bool:
        """True when the window holds `window` values."""
        return len(self._buffer) == self.window

    @property
    def window_n(self) -> int:
        """Values in the window."""
        return len(self._buffer)

    @property
    def value(self) -> float | None:
        """Mean of the window; None when it is empty."""
        return self._window_sum / len(self._buffer) if self._buffer else None

    def mean_of_full(self) -> float:
        """`value` once the window is `full` (no None to rule out on a hot path)."""
        return self._window_sum / self.window

    @property
    def cumulative(self) -> float | None:
        """Mean of every value added; None before the first."""
        return (self._cum_sum + self._cum_comp) / self.n if self.n else None

    def to_state(self) -> State:
        """Window size, count, sums and the window's values, oldest first (whole ones as ints)."""
        return {
            "window": self.window,
            "n": self.n,
            "buffer": _compact_all(self._values()),
            "window_sum": self._window_sum,
            "since_resum": self._since_resum,
            "cum_sum": self._cum_sum,
            "cum_comp": self._cum_comp,
        }

    @classmethod
    def from_state(
        cls, r: StateReader, low: float = -math.inf, high: float = math.inf
    ) -> RollingMean:
        """Rebuild from `to_state` output read by `r`; values must lie in ``[low, high]``."""
        m = cls(window=r.get_int("window", minimum=1))
        m.n = r.get_int("n", minimum=0)
        buffer = r.get_floats("buffer")
        if len(buffer) > m.window or len(buffer) > m.n:
            raise StateDecodeError("rolling mean: buffer larger than the window or the count")
        if not all(math.isfinite(v) and low <= v <= high for v in buffer):
            raise StateDecodeError(f"rolling mean: values must be finite and in [{low}, {high}]")
        m._window_sum = r.get_float("window_sum", finite=True)
        m._since_resum = i = r.get_int("since_resum", minimum=0)
        if i >= m.window or (i != len(buffer) and len(buffer) < m.window):
            raise StateDecodeError(
                "rolling mean: since_resum must be below the window, and count the values "
                "until the window is full"
            )
        # The ring puts the oldest value at since_resum (see __init__).
        k = m.window - i
        m._buffer = array("d", buffer[k:] + buffer[:k] if len(buffer) == m.window else buffer)
        m._cum_sum = r.get_float("cum_sum", finite=True)
        m._cum_comp = r.get_float("cum_comp", finite=True)
        return m


def _compact_all(values: array[float]) -> list[float | int]:
    """`_compact` on each value; a window of whole numbers (0/1 accuracies) in one numpy pass.

    A checkpoint encodes every model that changed, so this runs for every window of every
    active model each time: one call per value made it most of a model's encoding time.
    """
    arr = np.frombuffer(values, dtype=np.float64)
    whole = (arr == np.trunc(arr)) & (np.abs(arr) <= 2**53) & ~((arr == 0.0) & np.signbit(arr))
    if whole.all():
        return arr.astype(np.int64).tolist()  # type: ignore[no-any-return]
    return [_compact(v) for v in values]


def _compact(v: float) -> float | int:
    """Small whole numbers as ints (1 byte in msgpack instead of 9); they decode to the same
    float. Negative zero stays a float, so its sign survives."""
    if v.is_integer() and -(2**53) <= v <= 2**53 and (v or math.copysign(1.0, v) > 0):
        return int(v)
    return v
