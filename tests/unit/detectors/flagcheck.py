"""Shared check for ``update_until``: where the drift flag changes, fed one value at a time or
until each change. Not a test module itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def flag_changes(detector: Any, xs: Sequence[float]) -> list[tuple[int, dict[str, float]]]:
    """Positions where ``drift_detected`` changed, with ``stats()`` there, by ``update``."""
    changes, drifting = [], False
    for i, x in enumerate(xs):
        detector.update(x)
        if detector.drift_detected != drifting:
            changes.append((i, detector.stats()))
            drifting = detector.drift_detected
    return changes


def flag_changes_until(detector: Any, xs: Sequence[float]) -> list[tuple[int, dict[str, float]]]:
    """The same, by ``update_until`` from each change to the next."""
    changes, drifting, start = [], False, 0
    while start < len(xs):
        i = detector.update_until(xs, drifting, start)
        if i == len(xs):
            break
        changes.append((i, detector.stats()))
        drifting, start = detector.drift_detected, i + 1
    return changes
