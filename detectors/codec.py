"""Versioned binary encoding of detector state (no pickle).

Layout: one version byte, then msgpack of ``{"t": <registered type name>, "s": <to_state()>}``.
Floats are packed as float64, so they round-trip bit for bit (inf, nan and -0.0 included), and maps
keep the key order ``to_state`` builds, so the same state always encodes to the same bytes.

Anything that cannot be decoded exactly raises `StateDecodeError`; the caller decides what to do
(the pipeline dead-letters it), a detector is never silently reset.

Examples
--------
>>> from detectors import PageHinkley, codec
>>> ph = PageHinkley()
>>> for x in [0.0, 1.0, 0.5]:
...     ph.update(x)
>>> blob = codec.encode(ph)
>>> blob[0] == codec.VERSION
True
>>> restored = codec.decode(blob, PageHinkley)
>>> codec.encode(restored) == blob
True
>>> codec.decode(b"\\x63" + blob[1:])
Traceback (most recent call last):
...
detectors.state.StateDecodeError: unsupported detector state version 99 (this build reads 1)

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgpack

from detectors.base import Encodable
from detectors.state import StateDecodeError

__all__ = ["VERSION", "StateDecodeError", "decode", "encode", "register", "registered"]

VERSION = 1
"""The format version written by `encode`; `decode` refuses any other."""

_E = TypeVar("_E")
_C = TypeVar("_C", bound=type[Any])

_BY_NAME: dict[str, type[Any]] = {}
_BY_CLASS: dict[type[Any], str] = {}


def register(name: str) -> Callable[[_C], _C]:
    """Class decorator: store instances of the class under the stable type name `name`.

    The name is written into every encoded state, so never rename a registered type; register a
    new name for an incompatible layout instead.
    """

    def decorate(cls: _C) -> _C:
        known = _BY_NAME.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"detector type name {name!r} is already registered to {known!r}")
        _BY_NAME[name] = cls
        _BY_CLASS[cls] = name
        return cls

    return decorate


def registered() -> dict[str, type[Any]]:
    """A copy of the registry: type name → class."""
    return dict(_BY_NAME)


def encode(obj: Encodable) -> bytes:
    """Encode a registered detector or metric: version byte + msgpack of type name and state."""
    name = _BY_CLASS.get(type(obj))
    if name is None:
        raise TypeError(f"{type(obj).__name__} is not a registered detector type")
    body: bytes = msgpack.packb({"t": name, "s": obj.to_state()}, use_bin_type=True)
    return bytes((VERSION,)) + body


@overload
def decode(data: bytes) -> Encodable: ...
@overload
def decode(data: bytes, expected: type[_E]) -> _E: ...
def decode(data: bytes, expected: type[Any] | None = None) -> Any:
    """Rebuild the object `encode` produced.

    Parameters
    ----------
    data
        Bytes from `encode`.
    expected
        If given, the decoded object must be an instance of this class.

    Raises
    ------
    StateDecodeError
        Empty, truncated or corrupt data, an unknown version byte or type name, a state that does
        not fit its type, or not an instance of `expected`.

    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StateDecodeError(f"detector state must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    if not raw:
        raise StateDecodeError("empty detector state")
    if raw[0] != VERSION:
        raise StateDecodeError(
            f"unsupported detector state version {raw[0]} (this build reads {VERSION})"
        )
    try:
        doc = msgpack.unpackb(raw[1:], raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise StateDecodeError(f"corrupt or truncated detector state: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"t", "s"}:
        raise StateDecodeError("corrupt detector state: expected a map with keys 't' and 's'")
    name = doc["t"]
    if not isinstance(name, str):
        raise StateDecodeError("corrupt detector state: type name is not a string")
    cls = _BY_NAME.get(name)
    if cls is None:
        raise StateDecodeError(f"unknown detector type {name!r} (known: {sorted(_BY_NAME)})")
    try:
        obj = cls.from_state(doc["s"])
    except StateDecodeError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
        raise StateDecodeError(f"{name}: state does not fit the type: {exc}") from exc
    if expected is not None and not isinstance(obj, expected):
        raise StateDecodeError(f"decoded a {name!r}, expected {expected.__name__}")
    return obj
