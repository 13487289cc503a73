"""Label-free accuracy estimate of a calibrated binary classifier, from its scores."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping
from typing import Any

from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["ExpectedAccuracy"]

_SCALE = 65535
"""Expected correctness is kept in the window as ``round(c * _SCALE)`` (a uint16)."""


@register("expected_accuracy")
class ExpectedAccuracy:
    r"""Expected accuracy from predicted probabilities, over a sliding window and since the start.

    For a calibrated classifier, ``score`` $= P(y = 1 \mid x)$, so a prediction $\hat y$ is
    right with probability $s$ when $\hat y = 1$ and $1 - s$ when $\hat y = 0$. With the usual
    decision rule $\hat y = [s \ge 0.5]$ that is $\max(s, 1 - s)$. Averaged over recent
    predictions it estimates the accuracy the labels will show, before they arrive: a model that
    grows less sure (scores drifting towards 0.5) shows a drop here first. Feed it to a
    `BaselineDrop` to alarm on it.

    Assumptions: the scores are calibrated probabilities of the positive class, and the
    calibration still holds on the new data. Under concept drift a model can stay confidently
    wrong, which this estimate cannot see; only labels can (ADWIN on the error stream).

    Parameters
    ----------
    window
        Predictions in the sliding window.
    threshold
        Decision threshold of the classifier: ``score >= threshold`` predicts the positive
        class, when the prediction itself is not passed to `update`.

    Examples
    --------
    >>> from detectors import ExpectedAccuracy
    >>> ea = ExpectedAccuracy(window=2)
    >>> for score in [0.9, 0.2, 0.6]:
    ...     ea.update(score)
    >>> round(ea.value, 3), round(ea.cumulative, 3), ea.window_n
    (0.7, 0.767, 2)

    Passing the prediction covers models that do not threshold at 0.5:

    >>> ea.update(0.6, predicted_positive=False)
    >>> round(ea.value, 3)
    0.5

    Notes
    -----
    The window keeps each prediction's expected correctness quantised to a uint16,
    ``round(c * 65535)`` (resolution 1.5e-5, 2 bytes a prediction), with an exact integer sum:
    the windowed value is within 7.7e-6 of the unquantised mean. The cumulative value is a
    compensated sum of the unquantised values.

    ``stats()`` keys (once there is a prediction): ``value`` (window mean), ``cumulative``,
    ``window_n``.

    """

    __slots__ = ("_buffer", "_cum_comp", "_cum_sum", "_pos", "_sum", "n", "threshold", "window")

    def __init__(self, window: int = 500, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        """Predictions the window holds when full."""
        self.threshold = float(threshold)
        self.n = 0
        """Predictions seen since creation."""
        # Ring of quantised values, grown to `window` as they arrive (a decoded window size is not
        # trusted with an allocation up front), then reused: while not full the values are
        # _buffer in order and _pos is 0; once full, _pos is the oldest (the next to overwrite).
        self._buffer = array("H")
        self._pos = 0
        self._sum = 0  # of _buffer, exact
        self._cum_sum = 0.0  # Neumaier sum of the unquantised values
        self._cum_comp = 0.0

    def update(self, score: float, predicted_positive: bool | None = None) -> None:
        """Add one prediction: its `score` and, optionally, whether it predicted the positive."""
        s = float(score)
        if not 0.0 <= s <= 1.0:  # also refuses NaN
            raise ValueError(f"score must be a probability in [0, 1], got {score!r}")
        if predicted_positive is None:
            predicted_positive = s >= self.threshold
        c = s if predicted_positive else 1.0 - s
        q = (c * 65535.0).__round__()  # = round(c * _SCALE), without the builtin's lookup
        buf = self._buffer
        window = self.window
        if len(buf) == window:
            pos = self._pos
            self._sum += q - buf[pos]
            buf[pos] = q
            pos += 1
            self._pos = 0 if pos == window else pos
        else:
            buf.append(q)
            self._sum += q
            if len(buf) == window:
                self._buffer = array("H", buf)  # exact size: drops the growth slack
        # Neumaier; both terms are >= 0 (or -0.0), so no abs() is needed to pick the larger.
        cum = self._cum_sum
        t = cum + c
        if cum >= c:
            self._cum_comp += (cum - t) + c
        else:
            self._cum_comp += (c - t) + cum
        self._cum_sum = t
        self.n += 1

    @property
    def window_n(self) -> int:
        """Predictions currently in the window."""
        return len(self._buffer)

    @property
    def value(self) -> float | None:
        """Expected accuracy over the window; None before the first prediction."""
        n = len(self._buffer)
        return self._sum / (n * _SCALE) if n else None

    @property
    def cumulative(self) -> float | None:
        """Expected accuracy since creation; None before the first prediction."""
        return (self._cum_sum + self._cum_comp) / self.n if self.n else None

    def stats(self) -> dict[str, float]:
        """``value``, ``cumulative`` and ``window_n`` (once there is a prediction)."""
        value, cumulative = self.value, self.cumulative
        if value is None or cumulative is None:
            return {}
        return {"value": value, "cumulative": cumulative, "window_n": float(self.window_n)}

    def to_state(self) -> State:
        """Parameters, count, cumulative sum and the window (uint16 little-endian, oldest first)."""
        buf, pos = self._buffer, self._pos
        values = buf[pos:] + buf[:pos] if pos else buf
        if sys.byteorder == "big":  # the state is little-endian on every platform
            values = array("H", values)
            values.byteswap()
        return {
            "window": self.window,
            "threshold": self.threshold,
            "n": self.n,
            "values": values.tobytes(),
            "cum_sum": self._cum_sum,
            "cum_comp": self._cum_comp,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ExpectedAccuracy:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "expected_accuracy")
        e = cls(
            window=r.get_int("window", minimum=1),
            threshold=r.get_float("threshold", low=0.0, high=1.0),
        )
        e.n = r.get_int("n", minimum=0)
        raw = state.get("values")
        if not isinstance(raw, bytes):
            raise StateDecodeError(
                f"expected_accuracy: field 'values' must be bytes, got {type(raw).__name__}"
            )
        if len(raw) % 2 or len(raw) // 2 > e.window or len(raw) // 2 > e.n:
            raise StateDecodeError(
                "expected_accuracy: values must be uint16, no more than the window or the count"
            )
        values = array("H")
        values.frombytes(raw)
        if sys.byteorder == "big":
            values.byteswap()
        e._buffer = array("H", values)  # exact size
        e._sum = sum(values)
        e._cum_sum = r.get_float("cum_sum", finite=True, low=0.0)
        if e._cum_sum > e.n:
            raise StateDecodeError("expected_accuracy: cumulative sum above the count")
        e._cum_comp = r.get_float("cum_comp", finite=True)
        return e
