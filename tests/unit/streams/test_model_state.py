"""ModelState.encode: a side's detectors are re-encoded only when that side was touched."""

from __future__ import annotations

import dataclasses

import pytest

from detectors import decode
from streams import state
from streams.config import parse_config
from streams.model_state import ModelState
from streams.processor import Processor

SETTINGS = parse_config({}).detection_for("m")


def fresh_bytes(model: ModelState) -> bytes:
    return dataclasses.replace(model, encoded={}, stale={"predictions", "outcomes"}).encode()


def test_untouched_sides_reuse_their_bytes_and_touched_ones_do_not() -> None:
    model = ModelState("m")
    model.ensure_task("classification", SETTINGS)
    assert model.error is not None and model.performance is not None
    first = model.encode()
    model.error.update(1.0)
    model.performance.update(False)
    assert model.encode() == first  # not touched: the cached bytes (a caller's promise broken)
    model.touched("outcomes")
    assert model.encode() == fresh_bytes(model) != first
    model.output = None  # a replaced detector counts as a change of its side
    model.touched("predictions")
    assert model.encode() == fresh_bytes(model)


def test_a_task_fixed_after_an_encode_brings_its_detectors_into_the_bytes() -> None:
    """A model first seen through a label is encoded without detectors; the prediction that
    fixes its task creates the outcome detectors, which the next encode must carry."""
    model = ModelState("m")
    empty = model.encode()
    model.touched("predictions")
    model.ensure_task("classification", SETTINGS)
    assert model.encode() == fresh_bytes(model) != empty
    restored = ModelState.decode(model.encode())
    assert restored.error is not None and decode(model.encoded["error"]) is not None


def test_checkpoints_keep_encoded_detectors_for_the_most_recent_models_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state, "ENCODED_MODELS", 2)
    part = Processor(parse_config({})).new_partition(0)
    for mid in ("a", "b", "c"):
        part.models[mid] = ModelState(mid)
        part.models[mid].ensure_task("classification", SETTINGS)
        part.dirty_models.add(mid)
    state.take_checkpoint(part)
    assert list(part.encoded_models) == ["b", "c"]  # encoded in id order; "a" is the oldest
    assert not part.models["a"].encoded and part.models["b"].encoded
    part.dirty_models.add("a")
    part.models["a"].touched("outcomes")
    cp = state.take_checkpoint(part)
    assert list(part.encoded_models) == ["c", "a"] and not part.models["b"].encoded
    assert cp.models["a"] == fresh_bytes(part.models["a"])
