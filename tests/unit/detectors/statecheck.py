"""Shared checks for encodable detectors: restore mid-stream, and refuse or survive bad state.

Not a test module itself; the ``test_detectors_*`` modules call these with their own objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import pytest
from hypothesis import strategies as st

from detectors import StateDecodeError, codec, decode, encode

Feed = Callable[[Any, Any], None]
Observe = Callable[[Any], Any]


def resume_matches_straight(
    factory: Callable[[], Any], feed: Feed, observe: Observe, items: Sequence[Any], split: int
) -> None:
    """Encode → decode after `split` items changes nothing a caller can see, bytes included."""
    straight = factory()
    seen_straight = []
    for item in items:
        feed(straight, item)
        seen_straight.append(observe(straight))

    resumed = factory()
    seen_resumed = []
    for item in items[:split]:
        feed(resumed, item)
        seen_resumed.append(observe(resumed))
    blob = encode(resumed)
    restored = decode(blob, type(resumed))
    assert observe(restored) == observe(resumed)
    assert encode(restored) == blob
    for item in items[split:]:
        feed(restored, item)
        seen_resumed.append(observe(restored))

    assert seen_resumed == seen_straight
    assert encode(restored) == encode(straight)


def still_usable(obj: Any, feed: Feed, items: Sequence[Any]) -> None:
    """A decoded object must take more input, report and encode without crashing."""
    for item in items:
        feed(obj, item)
    if hasattr(obj, "stats"):
        obj.stats()
    decode(encode(obj))


def every_truncation_is_refused(obj: Any) -> None:
    blob = encode(obj)
    for cut in range(len(blob)):
        with pytest.raises(StateDecodeError):
            decode(blob[:cut])


BAD_VALUES: list[Any] = [None, "x", -1, 0, 2.5, -0.5, [], {}, True, [1, "a"], 2**63, [-1]]


def fields_are_validated(obj: Any, feed: Feed, items: Sequence[Any]) -> None:
    """Replace each top-level (and one nested level of) state field by junk of every kind.

    Decoding must raise `StateDecodeError`, or give an object that keeps working.
    """
    name = codec._BY_CLASS[type(obj)]
    state = obj.to_state()
    variants: list[dict[str, Any]] = []
    for key, value in state.items():
        for bad in BAD_VALUES:
            variants.append({**state, key: bad})
        variants.append({k: v for k, v in state.items() if k != key})
        if isinstance(value, dict):
            for sub in value:
                for bad in BAD_VALUES:
                    variants.append({**state, key: {**value, sub: bad}})
        if isinstance(value, list) and value:
            for bad in BAD_VALUES:
                variants.append({**state, key: [*value[:-1], bad]})
                variants.append({**state, key: [*value, bad]})
    for variant in variants:
        blob = bytes((codec.VERSION,)) + msgpack.packb({"t": name, "s": variant})
        try:
            restored = decode(blob)
        except StateDecodeError:
            continue
        still_usable(restored, feed, items)


def mutated_bytes_never_crash(obj: Any, feed: Feed, items: Sequence[Any], draw: Any) -> None:
    """Flip up to three bytes: decoding refuses, or yields an object that keeps working."""
    blob = bytearray(encode(obj))
    for _ in range(draw.draw(st.integers(1, 3))):
        blob[draw.draw(st.integers(0, len(blob) - 1))] = draw.draw(st.integers(0, 255))
    try:
        restored = decode(bytes(blob))
    except StateDecodeError:
        return
    still_usable(restored, feed, items)
