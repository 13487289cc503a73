"""RollingMean's state: whole windows are compacted in one pass, exactly as value by value."""

from __future__ import annotations

from array import array

import pytest

from detectors._rolling import RollingMean, _compact, _compact_all


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 0.0, 1.0, 1.0],  # accuracies: every value whole
        [0.5, 1.0, 0.0],  # mixed
        [-0.0, 1.0],  # negative zero stays a float
        [2.0**53, -(2.0**53)],  # the largest whole numbers kept as ints
        [2.0**53 + 2.0, 3.0],  # beyond them: floats
        [1e300, -7.0],
        [],
    ],
)
def test_compact_all_equals_compact_each(values: list[float]) -> None:
    packed = _compact_all(array("d", values))
    expected = [_compact(v) for v in values]
    assert packed == expected
    assert [type(v) for v in packed] == [type(v) for v in expected]
    assert [str(v) for v in packed] == [str(v) for v in expected]  # -0.0 keeps its sign


def test_window_state_round_trips_in_window_order() -> None:
    m = RollingMean(window=4)
    for v in [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]:  # the ring has come round
        m.add(v)
    state = m.to_state()
    assert state["buffer"] == [1, 1, 0, 1] and all(type(v) is int for v in state["buffer"])
