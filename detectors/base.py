"""The interface every driftline detector and windowed metric follows.

Modelled on river's drift detectors: call ``update(x)``, then read ``drift_detected`` (and
``warning_detected``). Flags are plain attributes, true only right after the update that raised
them. On top of river's API each object can export its complete state as msgpack-able primitives
(``to_state``) and be rebuilt from it (``from_state``), which is how workers checkpoint to Redis
without pickle; ``detectors.codec`` adds the version byte and the type name.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from detectors.state import State

__all__ = ["Detector", "Encodable", "check_finite"]

_D = TypeVar("_D", bound="Detector")


class Encodable(Protocol):
    """Anything the codec can store: exports and restores its full state."""

    def to_state(self) -> State:
        """The complete state as msgpack-able primitives."""
        ...

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Encodable:
        """Rebuild an object from `to_state` output."""
        ...


class Detector(abc.ABC):
    """A univariate online drift detector.

    Attributes
    ----------
    drift_detected
        True only after the update that detected a drift.
    warning_detected
        True only after an update that is in the warning zone (always False for detectors
        without a warning zone).
    n
        Number of values seen since the detector was created (drifts do not reset it).

    """

    __slots__ = ("drift_detected", "n", "warning_detected")

    drift_detected: bool
    warning_detected: bool
    n: int

    @abc.abstractmethod
    def update(self, x: float) -> None:
        """Feed one value, then read ``drift_detected``."""

    def update_many(self, xs: Iterable[float]) -> list[int]:
        """Feed several values; return the positions in `xs` at which a drift was detected.

        Identical to calling `update` on each value in turn; afterwards the flags describe
        the last value.
        """
        hits = []
        for i, x in enumerate(xs):
            self.update(x)
            if self.drift_detected:
                hits.append(i)
        return hits

    @abc.abstractmethod
    def stats(self) -> dict[str, float]:
        """The evidence behind the current flags, for alert messages."""

    @abc.abstractmethod
    def to_state(self) -> State:
        """The complete state (parameters included) as msgpack-able primitives."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls: type[_D], state: Mapping[str, Any]) -> _D:
        """Rebuild a detector from `to_state` output; bad input raises ``StateDecodeError``."""


def check_finite(x: float) -> float:
    """Return `x` as a float, refusing NaN and infinities.

    A single non-finite value would poison a running sum forever (and that state would then be
    checkpointed), so detectors refuse it before touching their state.

    Examples
    --------
    >>> check_finite(1)
    1.0
    >>> check_finite(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: detector input must be a finite number, got nan

    """
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"detector input must be a finite number, got {v}")
    return v
