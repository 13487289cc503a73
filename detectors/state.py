"""Typed reading of decoded detector state.

State comes back from Redis or Kafka as plain msgpack values. `StateReader` fetches one field at a
time and checks its type, so a corrupt or foreign state raises `StateDecodeError` naming the field
instead of surfacing later as an odd `TypeError` deep in an update (or, worse, as a silent reset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["State", "StateDecodeError", "StateReader"]

State = dict[str, Any]
"""A detector's state: only msgpack-able primitives (int, float, str, bool, None, list, dict)."""


class StateDecodeError(ValueError):
    """Encoded detector state cannot be decoded: wrong version, unknown type, truncated or corrupt.

    Examples
    --------
    >>> isinstance(StateDecodeError("bad"), ValueError)
    True

    """


class StateReader:
    """Type-checked field access on one decoded state mapping.

    Parameters
    ----------
    state
        The decoded mapping.
    where
        Names the state in error messages, e.g. ``"adwin"``.

    Examples
    --------
    >>> r = StateReader({"n": 3, "mean": 0.5}, "demo")
    >>> r.get_int("n"), r.get_float("mean")
    (3, 0.5)
    >>> r.get_float("n")  # ints are accepted where floats are expected
    3.0
    >>> r.get_int("mean")
    Traceback (most recent call last):
    ...
    detectors.state.StateDecodeError: demo: field 'mean' must be int, got float

    """

    __slots__ = ("_state", "_where")

    def __init__(self, state: object, where: str) -> None:
        if not isinstance(state, Mapping):
            raise StateDecodeError(f"{where}: state must be a map, got {type(state).__name__}")
        self._state: Mapping[str, Any] = state
        self._where = where

    def _fail(self, key: str, expected: str, value: object) -> StateDecodeError:
        return StateDecodeError(
            f"{self._where}: field {key!r} must be {expected}, got {type(value).__name__}"
        )

    def _get(self, key: str) -> Any:
        try:
            return self._state[key]
        except KeyError:
            raise StateDecodeError(f"{self._where}: missing field {key!r}") from None

    def get_int(self, key: str, minimum: int | None = None) -> int:
        """An int (bools rejected), optionally at least `minimum`."""
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "int", value)
        if minimum is not None and value < minimum:
            raise StateDecodeError(
                f"{self._where}: field {key!r} must be >= {minimum}, got {value}"
            )
        return value

    def get_float(
        self,
        key: str,
        finite: bool = False,
        low: float | None = None,
        high: float | None = None,
    ) -> float:
        """A float (ints widened), optionally finite and within ``[low, high]``."""
        value = self._get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._fail(key, "float", value)
        out = float(value)
        if finite and not math.isfinite(out):
            raise StateDecodeError(f"{self._where}: field {key!r} must be finite, got {out}")
        if (low is not None and not out >= low) or (high is not None and not out <= high):
            raise StateDecodeError(
                f"{self._where}: field {key!r} must be in [{low}, {high}], got {out}"
            )
        return out

    def get_optional_float(self, key: str) -> float | None:
        """A float or None."""
        if self._get(key) is None:
            return None
        return self.get_float(key)

    def get_bool(self, key: str) -> bool:
        """A bool."""
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "bool", value)
        return value

    def get_str(self, key: str) -> str:
        """A str."""
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "str", value)
        return value

    def get_list(self, key: str) -> list[Any]:
        """A list (of anything; check the items yourself)."""
        value = self._get(key)
        if not isinstance(value, list):
            raise self._fail(key, "list", value)
        return value

    def get_floats(self, key: str) -> list[float]:
        """A list of floats (ints widened)."""
        return self._floats(key, self.get_list(key))

    def get_optional_floats(self, key: str) -> list[float] | None:
        """A list of floats, or None."""
        return None if self._get(key) is None else self.get_floats(key)

    def get_float_rows(self, key: str) -> list[list[float]]:
        """A list of lists of floats."""
        rows = []
        for row in self.get_list(key):
            if not isinstance(row, list):
                raise self._fail(key, "a list of lists", row)
            rows.append(self._floats(key, row))
        return rows

    def _floats(self, key: str, items: list[Any]) -> list[float]:
        out = []
        for item in items:
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                raise self._fail(key, "a list of floats", item)
            out.append(float(item))
        return out

    def get_map(self, key: str) -> StateReader:
        """A nested map, as a reader."""
        return StateReader(self._get(key), f"{self._where}.{key}")
