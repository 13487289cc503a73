"""Validation of categorical values and class labels, and of raw state fields (internal)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from detectors.state import StateDecodeError

__all__ = ["Category", "check_category", "raw_field"]

Category = str | int | float | bool
"""A categorical value or class label. Values compare with Python equality, so ``True``, ``1``
and ``1.0`` are one category."""


def check_category(x: object) -> Category:
    """Return `x` as a plain str, int (64-bit), finite float or bool, or raise ``ValueError``.

    Subclasses and numpy scalars are converted to the plain type, so states hold only msgpack
    primitives.

    Examples
    --------
    >>> import numpy as np
    >>> check_category("red"), check_category(np.int64(3)), check_category(np.str_("a"))
    ('red', 3, 'a')
    >>> check_category(None)
    Traceback (most recent call last):
    ...
    ValueError: a category or label must be a str, int, float or bool, got NoneType

    """
    cls = x.__class__
    if cls is str or cls is bool:
        return x  # type: ignore[return-value]
    if cls is int:
        return _check_int(x)  # type: ignore[arg-type]
    if cls is float:
        return _check_float(x)  # type: ignore[arg-type]
    if isinstance(x, str):
        return str(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return _check_int(int(x))
    if isinstance(x, numbers.Real):
        return _check_float(float(x))
    raise ValueError(f"a category or label must be a str, int, float or bool, got {cls.__name__}")


def _check_int(x: int) -> int:
    if not -(2**63) <= x < 2**64:
        raise ValueError(f"integer category or label out of the 64-bit range: {x}")
    return x


def _check_float(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError(f"a category or label must be finite, got {x}")
    return float(x)


def raw_field(state: Mapping[str, Any], key: str, where: str) -> Any:
    """``state[key]`` unchecked, or `StateDecodeError` naming the missing field."""
    try:
        return state[key]
    except KeyError:
        raise StateDecodeError(f"{where}: missing field {key!r}") from None
