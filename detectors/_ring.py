"""Sliding windows kept as bounded deques (internal)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import TypeVar

__all__ = ["pushed_out"]

_T = TypeVar("_T")


def pushed_out(buffer: deque[_T], added: Sequence[_T], window: int) -> list[_T]:
    """The values that appending `added` to `buffer`, a window of at most `window` values,
    pushes out, oldest first: the buffer's oldest, then, when more are added than the window
    holds, the first of `added`.

    Examples
    --------
    >>> pushed_out(deque([1, 2, 3]), [4, 5], window=4)
    [1]
    >>> pushed_out(deque([1, 2]), [3, 4, 5, 6], window=3)
    [1, 2, 3]

    """
    leaving = len(buffer) + len(added) - window
    if leaving <= 0:
        return []
    out = list(islice(buffer, 0, leaving))
    if leaving > len(buffer):
        out += added[: leaving - len(buffer)]
    return out
