"""Label-free accuracy estimate of a calibrated binary classifier, from its scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors._rolling import RollingMean
from detectors.codec import register
from detectors.state import State, StateReader

__all__ = ["ExpectedAccuracy"]


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
    ``stats()`` keys (once there is a prediction): ``value`` (window mean), ``cumulative``,
    ``window_n``.

    """

    __slots__ = ("_mean", "threshold")

    def __init__(self, window: int = 500, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self._mean = RollingMean(window)

    def update(self, score: float, predicted_positive: bool | None = None) -> None:
        """Add one prediction: its `score` and, optionally, whether it predicted the positive."""
        s = float(score)
        if not 0.0 <= s <= 1.0:  # also refuses NaN
            raise ValueError(f"score must be a probability in [0, 1], got {score!r}")
        if predicted_positive is None:
            predicted_positive = s >= self.threshold
        self._mean.add(s if predicted_positive else 1.0 - s)

    @property
    def window(self) -> int:
        """Predictions the window holds when full."""
        return self._mean.window

    @property
    def n(self) -> int:
        """Predictions seen since creation."""
        return self._mean.n

    @property
    def window_n(self) -> int:
        """Predictions currently in the window."""
        return self._mean.window_n

    @property
    def value(self) -> float | None:
        """Expected accuracy over the window; None before the first prediction."""
        return self._mean.value

    @property
    def cumulative(self) -> float | None:
        """Expected accuracy since creation; None before the first prediction."""
        return self._mean.cumulative

    def stats(self) -> dict[str, float]:
        """``value``, ``cumulative`` and ``window_n`` (once there is a prediction)."""
        value, cumulative = self._mean.value, self._mean.cumulative
        if value is None or cumulative is None:
            return {}
        return {"value": value, "cumulative": cumulative, "window_n": float(self.window_n)}

    def to_state(self) -> State:
        """Threshold and the rolling mean of expected correctness."""
        return {"threshold": self.threshold, "mean": self._mean.to_state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ExpectedAccuracy:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "expected_accuracy")
        mean = RollingMean.from_state(r.get_map("mean"), low=0.0, high=1.0)
        e = cls(window=mean.window, threshold=r.get_float("threshold", low=0.0, high=1.0))
        e._mean = mean
        return e
