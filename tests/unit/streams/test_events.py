"""Event contract v1: what the decoder accepts, what it refuses, and the reasons it gives."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import (
    MAX_FEATURES,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    MAX_STRING_CHARS,
    MAX_TIMESTAMP_MS,
    DecodedRecord,
    InvalidEvent,
    Label,
    Prediction,
    decode_labels,
    decode_predictions,
    validate_label,
    validate_prediction,
)

RECORD_TS = 1_700_000_000_000
KEY = b"fraud-model"


def pred(**fields: object) -> dict[str, object]:
    """A valid prediction object, with ``fields`` replaced (``...`` removes the field)."""
    event: dict[str, object] = {
        "model_id": "fraud-model",
        "prediction_id": "p-1",
        "prediction": True,
        "score": 0.25,
        "features": {"age": 41, "income": 52_000.5, "country": "DE", "new": False, "x": None},
        "latency_ms": 3.5,
        "timestamp": 1_714_564_800_000,
        "model_version": "2024.05",
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


def lab(**fields: object) -> dict[str, object]:
    """A valid label object, with ``fields`` replaced (``...`` removes the field)."""
    event: dict[str, object] = {
        "model_id": "fraud-model",
        "prediction_id": "p-1",
        "label": False,
        "timestamp": 1_714_564_900_000,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


def decode(obj: object, key: bytes | None = KEY, ts: int = RECORD_TS) -> DecodedRecord:
    return decode_predictions(key, orjson.dumps(obj), ts)


def one(obj: object, key: bytes | None = KEY, ts: int = RECORD_TS) -> Prediction:
    """Decode a single-event record that must be valid."""
    record = decode(obj, key, ts)
    assert record.errors == []
    (event,) = record.events
    assert isinstance(event, Prediction)
    return event


def error(obj: object, key: bytes | None = KEY) -> str:
    """Decode a single-event record that must be refused; return its one reason."""
    record = decode(obj, key)
    assert record.events == []
    (reason,) = record.errors
    return reason


# --------------------------------------------------------------------------------------------
# Valid events


def test_full_prediction_decodes_every_field() -> None:
    event = one(pred())
    assert event == Prediction(
        model_id="fraud-model",
        prediction_id="p-1",
        prediction=True,
        timestamp_ms=1_714_564_800_000,
        score=0.25,
        features={"age": 41, "income": 52_000.5, "country": "DE", "new": False, "x": None},
        latency_ms=3.5,
        model_version="2024.05",
    )


def test_minimal_prediction_takes_the_record_timestamp() -> None:
    event = one({"model_id": "m", "prediction_id": "1", "prediction": 0.5}, key=None)
    assert event == Prediction("m", "1", 0.5, RECORD_TS)
    assert event.score is None and event.features is None and event.latency_ms is None


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, bool), (False, bool), (1, int), (0, int), (-3, int), (2.5, float), ("cat", str)],
)
def test_prediction_keeps_its_json_type(value: object, kind: type) -> None:
    event = one(pred(prediction=value))
    assert event.prediction == value and type(event.prediction) is kind


def test_bool_prediction_is_not_turned_into_an_int() -> None:
    assert one(pred(prediction=True)).prediction is True
    assert one(pred(prediction=False)).prediction is False


def test_unknown_fields_are_ignored() -> None:
    event = one(pred(extra={"nested": [1, 2]}, schema="v9", label=True))
    assert event == one(pred())


def test_null_optional_fields_mean_absent() -> None:
    event = one(
        pred(score=None, features=None, latency_ms=None, model_version=None, timestamp=None)
    )
    assert (event.score, event.features, event.latency_ms, event.model_version) == (None,) * 4
    assert event.timestamp_ms == RECORD_TS


def test_int_score_and_latency_become_floats() -> None:
    event = one(pred(score=1, latency_ms=4))
    assert event.score == 1.0 and type(event.score) is float
    assert event.latency_ms == 4.0 and type(event.latency_ms) is float


def test_decoded_events_are_frozen_ordinary_dataclasses() -> None:
    event = one(pred(features=None))
    assert type(event) is Prediction
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.score = 0.9  # type: ignore[misc]
    assert hash(event) == hash(
        Prediction(**{f.name: getattr(event, f.name) for f in dataclasses.fields(event)})
    )
    assert pickle.loads(pickle.dumps(event)) == event
    assert dataclasses.replace(event, score=0.5).score == 0.5
    assert "Prediction(model_id='fraud-model'" in repr(event)
    label = decode_labels(KEY, orjson.dumps(lab()), RECORD_TS).events[0]
    assert type(label) is Label
    with pytest.raises(dataclasses.FrozenInstanceError):
        label.label = 1  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Field by field: valid and invalid values (single-event record, so the reason has no index)


@pytest.mark.parametrize(
    "model_id", ["m", "a.b_c:d/e-f", "A-Z.09", "x" * MAX_ID_CHARS, "team/model:v2"]
)
def test_valid_model_ids(model_id: str) -> None:
    assert one(pred(model_id=model_id), key=model_id.encode()).model_id == model_id


@pytest.mark.parametrize(
    ("model_id", "reason"),
    [
        (..., "model_id: required field missing"),
        (None, "model_id: must be a string, got null"),
        (42, "model_id: must be a string, got 42"),
        (True, "model_id: must be a string, got true"),
        (["m"], "model_id: must be a string, got an array"),
        ("", "model_id: must be 1 to 200 characters long, got 0"),
        ("x" * 201, "model_id: must be 1 to 200 characters long, got 201"),
        ("a b", 'model_id: may only contain A-Z a-z 0-9 . _ : / -, got "a b"'),
        ("modèle", 'model_id: may only contain A-Z a-z 0-9 . _ : / -, got "modèle"'),
        ("m\n", 'model_id: may only contain A-Z a-z 0-9 . _ : / -, got "m\\n"'),
        ("m\\x", 'model_id: may only contain A-Z a-z 0-9 . _ : / -, got "m\\\\x"'),
    ],
)
def test_invalid_model_ids(model_id: object, reason: str) -> None:
    assert error(pred(model_id=model_id), key=None) == reason


@pytest.mark.parametrize("prediction_id", ["1", "x" * MAX_ID_CHARS, "ünïcode ok", " "])
def test_valid_prediction_ids(prediction_id: str) -> None:
    assert one(pred(prediction_id=prediction_id)).prediction_id == prediction_id


@pytest.mark.parametrize(
    ("prediction_id", "reason"),
    [
        (..., "prediction_id: required field missing"),
        (None, "prediction_id: must be a string, got null"),
        (17, "prediction_id: must be a string, got 17"),
        ("", "prediction_id: must be 1 to 200 characters long, got 0"),
        ("x" * 201, "prediction_id: must be 1 to 200 characters long, got 201"),
    ],
)
def test_invalid_prediction_ids(prediction_id: object, reason: str) -> None:
    assert error(pred(prediction_id=prediction_id)) == reason


@pytest.mark.parametrize("value", ["", "x" * MAX_STRING_CHARS, 0, -(2**63), 2**64 - 1, 1e308])
def test_valid_prediction_values(value: object) -> None:
    assert one(pred(prediction=value)).prediction == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (..., "prediction: required field missing"),
        (None, "prediction: must be a finite number, a string or a bool, got null"),
        ({"a": 1}, "prediction: must be a finite number, a string or a bool, got an object"),
        ([1], "prediction: must be a finite number, a string or a bool, got an array"),
        ("x" * 1001, "prediction: string longer than 1000 characters (1001)"),
    ],
)
def test_invalid_prediction_values(value: object, reason: str) -> None:
    assert error(pred(prediction=value)) == reason


@pytest.mark.parametrize("score", [0, 1, 0.0, 1.0, 0.5, 5e-324])
def test_valid_scores(score: float) -> None:
    assert one(pred(score=score)).score == score


@pytest.mark.parametrize(
    ("score", "shown"),
    [
        (1.7, "1.7"),
        (-0.1, "-0.1"),
        (2, "2"),
        (True, "true"),
        (False, "false"),
        ("0.5", '"0.5"'),
        ([], "an array"),
        ({}, "an object"),
    ],
)
def test_invalid_scores(score: object, shown: str) -> None:
    assert error(pred(score=score)) == f"score: must be a number in [0, 1], got {shown}"


@pytest.mark.parametrize("latency", [0, 0.0, 3.25, 10**6, 2**64 - 1])
def test_valid_latencies(latency: float) -> None:
    assert one(pred(latency_ms=latency)).latency_ms == float(latency)


@pytest.mark.parametrize(
    ("latency", "shown"),
    [(-1, "-1"), (-0.5, "-0.5"), (True, "true"), ("3", '"3"'), ([3], "an array")],
)
def test_invalid_latencies(latency: object, shown: str) -> None:
    assert (
        error(pred(latency_ms=latency)) == f"latency_ms: must be a finite number >= 0, got {shown}"
    )


@pytest.mark.parametrize("version", ["", "v1", "x" * MAX_ID_CHARS])
def test_valid_model_versions(version: str) -> None:
    assert one(pred(model_version=version)).model_version == version


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (3, "model_version: must be a string, got 3"),
        (True, "model_version: must be a string, got true"),
        ("x" * 201, "model_version: must be at most 200 characters long, got 201"),
    ],
)
def test_invalid_model_versions(version: object, reason: str) -> None:
    assert error(pred(model_version=version)) == reason


# Features


def test_features_accept_numbers_strings_bools_and_null() -> None:
    features = {"n": -2, "f": 0.5, "s": "x" * MAX_STRING_CHARS, "b": True, "none": None, "e": ""}
    assert one(pred(features=features)).features == features


def test_empty_features_object_is_kept() -> None:
    assert one(pred(features={})).features == {}


def test_feature_limits_are_inclusive() -> None:
    many = {f"f{i}": i for i in range(MAX_FEATURES)}
    assert one(pred(features=many)).features == many
    long_name = {"n" * MAX_ID_CHARS: 1}
    assert one(pred(features=long_name)).features == long_name


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ([1, 2], "features: must be an object, got an array"),
        ("age=3", 'features: must be an object, got "age=3"'),
        (3, "features: must be an object, got 3"),
        ({f"f{i}": i for i in range(1001)}, "features: at most 1000 features allowed, got 1001"),
        ({"": 1}, 'features: name "" must be 1 to 200 characters long'),
        ({"n" * 201: 1}, 'features: name "' + "n" * 40 + '..." must be 1 to 200 characters long'),
        (
            {"age": [1]},
            "features.age: must be a finite number, a string, a bool or null, got an array",
        ),
        (
            {"age": {"v": 1}},
            "features.age: must be a finite number, a string, a bool or null, got an object",
        ),
        ({"ok": 1, "city": "x" * 1001}, "features.city: string longer than 1000 characters (1001)"),
    ],
)
def test_invalid_features(features: object, reason: str) -> None:
    assert error(pred(features=features)) == reason


# Timestamps


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (0, 0),
        (1_714_564_800_123, 1_714_564_800_123),
        (MAX_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
        (1.7e12, 1_700_000_000_000),
        (-0.0, 0),
        ("2024-05-01T12:00:00Z", 1_714_564_800_000),
        ("2024-05-01T12:00:00z", 1_714_564_800_000),
        ("2024-05-01t12:00:00Z", 1_714_564_800_000),
        ("2024-05-01 12:00:00Z", 1_714_564_800_000),
        ("2024-05-01T12:00:00+00:00", 1_714_564_800_000),
        ("2024-05-01T12:00:00-00:00", 1_714_564_800_000),
        ("2024-05-01T14:00:00+02:00", 1_714_564_800_000),
        ("2024-05-01T06:30:00-05:30", 1_714_564_800_000),
        ("2024-05-02T11:59:00+23:59", 1_714_564_800_000),
        ("2024-05-01T12:00:00.1Z", 1_714_564_800_100),
        ("2024-05-01T12:00:00.25Z", 1_714_564_800_250),
        ("2024-05-01T12:00:00.250Z", 1_714_564_800_250),
        ("2024-05-01T12:00:00.123456Z", 1_714_564_800_123),
        ("2024-05-01T12:00:00.999999999+01:00", 1_714_561_200_999),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("9999-12-31T23:59:59.999Z", MAX_TIMESTAMP_MS),
    ],
)
def test_valid_timestamps(timestamp: object, expected: int) -> None:
    assert one(pred(timestamp=timestamp)).timestamp_ms == expected


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        (
            True,
            "timestamp: must be epoch milliseconds (an integer) or an RFC 3339 string, got true",
        ),
        (
            [1],
            "timestamp: must be epoch milliseconds (an integer) or an RFC 3339 string, "
            "got an array",
        ),
        (-1, "timestamp: epoch milliseconds must be in [0, 253402300799999], got -1"),
        (
            MAX_TIMESTAMP_MS + 1,
            "timestamp: epoch milliseconds must be in [0, 253402300799999], got 253402300800000",
        ),
        (1e300, "timestamp: epoch milliseconds must be in [0, 253402300799999], got 1e+300"),
        (1.5, "timestamp: must be a whole number of epoch milliseconds, got 1.5"),
        (
            "2024-02-30T00:00:00Z",
            'timestamp: invalid date-time "2024-02-30T00:00:00Z" (day is out of range for month)',
        ),
        (
            "2023-02-29T00:00:00Z",
            'timestamp: invalid date-time "2023-02-29T00:00:00Z" (day is out of range for month)',
        ),
        (
            "2024-13-01T00:00:00Z",
            'timestamp: invalid date-time "2024-13-01T00:00:00Z" (month must be in 1..12)',
        ),
        (
            "2024-05-01T24:00:00Z",
            'timestamp: invalid date-time "2024-05-01T24:00:00Z" (hour must be in 0..23)',
        ),
        (
            "2024-05-01T12:60:00Z",
            'timestamp: invalid date-time "2024-05-01T12:60:00Z" (minute must be in 0..59)',
        ),
        (
            "2024-05-01T23:59:60Z",
            'timestamp: invalid date-time "2024-05-01T23:59:60Z" (second must be in 0..59)',
        ),
        (
            "0000-01-01T00:00:00Z",
            'timestamp: invalid date-time "0000-01-01T00:00:00Z" (year 0 is out of range)',
        ),
        (
            "2024-05-01T12:00:00+24:00",
            'timestamp: invalid time-zone offset in "2024-05-01T12:00:00+24:00"',
        ),
        (
            "2024-05-01T12:00:00+02:60",
            'timestamp: invalid time-zone offset in "2024-05-01T12:00:00+02:60"',
        ),
        (
            "1969-12-31T23:59:59.999Z",
            'timestamp: "1969-12-31T23:59:59.999Z" is before 1970-01-01T00:00:00Z',
        ),
        (
            "1970-01-01T00:30:00+01:00",
            'timestamp: "1970-01-01T00:30:00+01:00" is before 1970-01-01T00:00:00Z',
        ),
        (
            "9999-12-31T23:00:00-01:00",
            'timestamp: "9999-12-31T23:00:00-01:00" is after 9999-12-31T23:59:59.999Z',
        ),
    ],
)
def test_invalid_timestamps(timestamp: object, reason: str) -> None:
    assert error(pred(timestamp=timestamp)) == reason


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00",  # no time zone
        "2024-05-01",  # date only
        "2024-05-01T12:00Z",  # no seconds
        "20240501T120000Z",  # ISO 8601 basic format, not RFC 3339
        "2024-W18-3T12:00:00Z",  # week date
        "2024-05-01T12:00:00.Z",  # empty fraction
        "2024-05-01T12:00:00+0200",  # offset without colon
        "2024-05-01T12:00:00+02",
        "2024-05-01T12:00:00 UTC",
        " 2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00Z ",
        "2024-05-01T12:00:00Z\n",
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z",  # non-ASCII digits
        "1714564800000",  # epoch ms as a string
        "",
    ],
)
def test_non_rfc3339_strings_are_refused(text: str) -> None:
    assert error(pred(timestamp=text)).startswith(
        "timestamp: must be epoch milliseconds or an RFC 3339 date-time with a time-zone offset"
    )


def test_missing_timestamp_without_record_timestamp_is_refused() -> None:
    record = decode_predictions(KEY, orjson.dumps(pred(timestamp=...)), -1)
    assert record.errors == ["timestamp: missing, and the record has no timestamp"]
    record = decode_predictions(KEY, orjson.dumps(pred(timestamp=5)), -1)
    assert record.errors == [] and record.events[0].timestamp_ms == 5


# --------------------------------------------------------------------------------------------
# Labels


def test_valid_label() -> None:
    record = decode_labels(KEY, orjson.dumps(lab(label="fraud", timestamp=...)), RECORD_TS)
    assert record.errors == []
    assert record.events == [Label("fraud-model", "p-1", "fraud", RECORD_TS)]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"label": ...}, "label: required field missing"),
        ({"label": None}, "label: must be a finite number, a string or a bool, got null"),
        ({"label": {"y": 1}}, "label: must be a finite number, a string or a bool, got an object"),
        ({"label": "x" * 1001}, "label: string longer than 1000 characters (1001)"),
        ({"model_id": "a b"}, 'model_id: may only contain A-Z a-z 0-9 . _ : / -, got "a b"'),
        ({"prediction_id": ""}, "prediction_id: must be 1 to 200 characters long, got 0"),
        ({"timestamp": "yesterday"}, "timestamp: must be epoch milliseconds or an RFC 3339"),
    ],
)
def test_invalid_labels(fields: dict[str, object], reason: str) -> None:
    record = decode_labels(None, orjson.dumps(lab(**fields)), RECORD_TS)
    assert record.events == []
    assert len(record.errors) == 1 and record.errors[0].startswith(reason)


def test_label_keeps_bool_and_ignores_prediction_fields() -> None:
    record = decode_labels(None, orjson.dumps(lab(label=True, score=9, features=[1])), RECORD_TS)
    assert record.errors == [] and record.events[0].label is True  # type: ignore[union-attr]


def test_a_prediction_is_not_a_label() -> None:
    record = decode_labels(KEY, orjson.dumps(pred()), RECORD_TS)
    assert record.errors == ["label: required field missing"]


# --------------------------------------------------------------------------------------------
# Record level: key, envelope, bytes


def test_key_must_match_model_id() -> None:
    assert error(pred(model_id="a"), key=b"b") == "model_id 'a' does not match record key 'b'"
    assert one(pred(model_id="a"), key=None).model_id == "a"
    assert error(pred(), key=b"") == "model_id 'fraud-model' does not match record key ''"


def test_undecodable_key_matches_nothing_and_is_shown_escaped() -> None:
    assert error(pred(), key=b"fraud-model\xff") == (
        "model_id 'fraud-model' does not match record key 'fraud-model\\xff'"
    )


def test_label_key_must_match_model_id() -> None:
    record = decode_labels(b"other", orjson.dumps(lab()), RECORD_TS)
    assert record.errors == ["model_id 'fraud-model' does not match record key 'other'"]


def test_envelope_keeps_order_and_all_valid_events() -> None:
    batch = [pred(prediction_id=f"p{i}", prediction=i) for i in range(5)]
    record = decode(batch)
    assert record.errors == []
    assert [e.prediction_id for e in record.events] == ["p0", "p1", "p2", "p3", "p4"]
    assert record.events == [validate_prediction(e, RECORD_TS) for e in batch]


def test_envelope_keeps_valid_events_and_reports_invalid_ones_by_index() -> None:
    batch: list[object] = [
        pred(prediction_id="a"),
        pred(prediction_id="b", score=1.7),
        "not an event",
        pred(prediction_id="c"),
        None,
        [pred()],
        pred(prediction_id="d", features={"age": float("1e308")}, timestamp="2024-05-01T12:00:00Z"),
        pred(prediction_id="e", model_id="other"),
    ]
    record = decode(batch)
    assert [e.prediction_id for e in record.events] == ["a", "c", "d"]
    assert record.errors == [
        "event[1]: score: must be a number in [0, 1], got 1.7",
        'event[2]: expected a JSON object, got "not an event"',
        "event[4]: expected a JSON object, got null",
        "event[5]: expected a JSON object, got an array",
        "event[7]: model_id 'other' does not match record key 'fraud-model'",
    ]


def test_envelope_without_key_is_one_model_decided_by_its_first_valid_event() -> None:
    batch = [pred(model_id="bad id"), pred(model_id="a"), pred(model_id="b"), pred(model_id="a")]
    record = decode(batch, key=None)
    assert [e.model_id for e in record.events] == ["a", "a"]
    assert record.errors == [
        'event[0]: model_id: may only contain A-Z a-z 0-9 . _ : / -, got "bad id"',
        "event[2]: model_id 'b' differs from the envelope's model_id 'a' (one model per envelope)",
    ]


def test_envelope_with_wrong_key_refuses_every_event() -> None:
    record = decode([pred(), pred()], key=b"x")
    assert record.events == []
    assert record.errors == [
        "event[0]: model_id 'fraud-model' does not match record key 'x'",
        "event[1]: model_id 'fraud-model' does not match record key 'x'",
    ]


def test_label_envelope() -> None:
    batch = [lab(prediction_id="1"), lab(prediction_id="2", label=[]), lab(prediction_id="3")]
    record = decode_labels(KEY, orjson.dumps(batch), RECORD_TS)
    assert [e.prediction_id for e in record.events] == ["1", "3"]
    assert record.errors == [
        "event[1]: label: must be a finite number, a string or a bool, got an array"
    ]


def test_empty_envelope_is_refused() -> None:
    assert decode([]).errors == ["empty batch envelope: expected at least one event"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "null value: expected a JSON event object or array of events"),
        (b"", "invalid JSON: Input is a zero-length, empty document"),
        (b"{", "invalid JSON: "),
        (b'{"model_id": NaN}', "invalid JSON: "),
        (b'{"score": Infinity}', "invalid JSON: "),
        (b'{"score": 1e400}', "invalid JSON: number is infinity"),
        (b"[" * 2000 + b"]" * 2000, "invalid JSON: "),
        (
            b'{"model_id": "\xff"}',
            "invalid UTF-8: 'utf-8' codec can't decode byte 0xff in position 14",
        ),
        (b"\xef\xbb\xbf{}", "invalid JSON: "),  # a UTF-8 byte-order mark is not JSON
        (b"42", "expected a JSON object or an array of objects, got 42"),
        (b'"event"', 'expected a JSON object or an array of objects, got "event"'),
        (b"null", "expected a JSON object or an array of objects, got null"),
        (b"true", "expected a JSON object or an array of objects, got true"),
    ],
)
def test_whole_record_errors(value: bytes | None, reason: str) -> None:
    record = decode_predictions(KEY, value, RECORD_TS)
    assert record.events == []
    assert len(record.errors) == 1 and record.errors[0].startswith(reason), record.errors


def test_record_size_limit() -> None:
    body = orjson.dumps(pred())
    exact = body + b" " * (MAX_RECORD_BYTES - len(body))
    assert len(exact) == MAX_RECORD_BYTES
    assert decode_predictions(KEY, exact, RECORD_TS).errors == []
    record = decode_predictions(KEY, exact + b" ", RECORD_TS)
    assert record.events == []
    assert record.errors == [f"oversize: {MAX_RECORD_BYTES + 1} bytes > 1048576"]


def test_bytearray_and_memoryview_values_decode_too() -> None:
    body = orjson.dumps(pred())
    assert decode_predictions(KEY, bytearray(body), 0).events == decode(pred()).events  # type: ignore[arg-type]
    assert decode_predictions(KEY, memoryview(body), 0).events == decode(pred()).events  # type: ignore[arg-type]


def test_reasons_never_echo_huge_values() -> None:
    reason = error(pred(score="y" * 500_000))
    assert len(reason) < 120


# --------------------------------------------------------------------------------------------
# validate_* on Python objects (the SDK path): stricter inputs than JSON can carry


class FloatLike(float):
    """Stands in for numpy.float64, a float subclass."""


class StrLike(str):
    """A str subclass."""


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prediction": math.nan}, "prediction: non-finite number, got NaN"),
        ({"prediction": math.inf}, "prediction: non-finite number, got Infinity"),
        ({"prediction": -math.inf}, "prediction: non-finite number, got -Infinity"),
        (
            {"prediction": 2**64},
            "prediction: integer out of range (must fit 64 bits), got 18446744073709551616",
        ),
        ({"prediction": -(2**63) - 1}, "prediction: integer out of range (must fit 64 bits)"),
        (
            {"prediction": 10**400},
            "prediction: integer out of range (must fit 64 bits), got an integer of 1329 bits",
        ),
        (
            {"prediction": b"yes"},
            "prediction: must be a finite number, a string or a bool, got a bytes",
        ),
        (
            {"prediction": (1,)},
            "prediction: must be a finite number, a string or a bool, got an array",
        ),
        ({"features": {"age": math.nan}}, "features.age: non-finite number, got NaN"),
        ({"features": {"age": math.inf}}, "features.age: non-finite number, got Infinity"),
        ({"features": {"age": 2**70}}, "features.age: integer out of range (must fit 64 bits)"),
        (
            {"features": {"age": {1, 2}}},
            "features.age: must be a finite number, a string, a bool or null, got a set",
        ),
        ({"features": {3: 1.0}}, "features: names must be strings, got 3"),
        ({"features": {None: 1.0}}, "features: names must be strings, got null"),
        ({"score": math.nan}, "score: must be a number in [0, 1], got NaN"),
        ({"score": 10**400}, "score: must be a number in [0, 1], got an integer of 1329 bits"),
        ({"latency_ms": math.inf}, "latency_ms: must be a finite number >= 0, got Infinity"),
        ({"latency_ms": math.nan}, "latency_ms: must be a finite number >= 0, got NaN"),
        (
            {"latency_ms": 2**65},
            "latency_ms: must be a finite number >= 0, got 36893488147419103232",
        ),
        (
            {"timestamp": math.nan},
            "timestamp: must be a whole number of epoch milliseconds, got NaN",
        ),
        (
            {"timestamp": math.inf},
            "timestamp: must be a whole number of epoch milliseconds, got Infinity",
        ),
        ({"timestamp": 10**400}, "timestamp: epoch milliseconds must be in [0, 253402300799999]"),
        (
            {"model_id": StrLike("a b")},
            'model_id: may only contain A-Z a-z 0-9 . _ : / -, got "a b"',
        ),
        ({"features": {"\ud800": "x" * 1001}}, "features.\ud800: string longer than 1000"),
    ],
)
def test_python_objects_that_json_cannot_carry(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_prediction(pred(**fields), RECORD_TS)
    assert caught.value.reason.startswith(reason), caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_validate_normalises_subclasses_to_plain_types() -> None:
    event = validate_prediction(
        pred(
            model_id=StrLike("fraud-model"),
            prediction=FloatLike(0.5),
            score=FloatLike(0.25),
            features={"age": FloatLike(3.0), "city": StrLike("Oslo")},
            timestamp=FloatLike(1000.0),
        ),
        RECORD_TS,
    )
    assert type(event.model_id) is str and type(event.prediction) is float
    assert type(event.score) is float and event.timestamp_ms == 1000
    assert event.features is not None
    assert [type(v) for v in event.features.values()] == [float, str]


def test_validate_accepts_any_mapping_and_copies_features() -> None:
    features: dict[str, Any] = {"age": 3}
    source = MappingProxyType(pred(features=features))
    event = validate_prediction(source, RECORD_TS)
    features["age"] = 99
    features["new"] = 1
    assert event.features == {"age": 3}
    assert isinstance(event.features, Mapping)


def test_validate_refuses_non_objects() -> None:
    for obj in (None, 3, "event", [pred()], b"{}"):
        with pytest.raises(InvalidEvent, match=r"^expected a JSON object, got "):
            validate_prediction(obj, RECORD_TS)
        with pytest.raises(InvalidEvent, match=r"^expected a JSON object, got "):
            validate_label(obj, RECORD_TS)


def test_validate_label() -> None:
    assert validate_label(lab(), 0) == Label("fraud-model", "p-1", False, 1_714_564_900_000)
    with pytest.raises(InvalidEvent, match=r"^label: non-finite number, got NaN$"):
        validate_label(lab(label=math.nan), 0)


def test_validate_and_decode_agree() -> None:
    obj = pred(timestamp="2024-05-01T12:00:00.5+01:00")
    assert validate_prediction(obj, RECORD_TS) == one(obj)


# --------------------------------------------------------------------------------------------
# Properties

ids = st.text(alphabet="abcXYZ019._:/-", min_size=1, max_size=MAX_ID_CHARS)
finite = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.one_of(st.booleans(), finite, ints, st.text(max_size=50))
feature_values = st.one_of(st.none(), scalars)
rfc3339 = st.builds(
    lambda dt, frac, off: dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + off,
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)),
    st.sampled_from(["", ".5", ".123", ".123456789"]),
    st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "z"]),
)
timestamps = st.one_of(st.integers(0, MAX_TIMESTAMP_MS), rfc3339, st.just(...))


@st.composite
def predictions(draw: st.DrawFn, model_id: str | None = None) -> dict[str, object]:
    event: dict[str, object] = {
        "model_id": model_id if model_id is not None else draw(ids),
        "prediction_id": draw(st.text(min_size=1, max_size=MAX_ID_CHARS)),
        "prediction": draw(scalars),
    }
    optional = {
        "score": st.floats(0, 1),
        "features": st.dictionaries(st.text(min_size=1, max_size=20), feature_values, max_size=8),
        "latency_ms": st.floats(0, 1e9),
        "timestamp": timestamps,
        "model_version": st.text(max_size=MAX_ID_CHARS),
        "unknown_extra": scalars,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            value = draw(strategy)
            if value is not ...:
                event[name] = value
    return event


def expected_prediction(obj: dict[str, Any], default_ts: int) -> Prediction:
    """What a valid prediction object must decode to, computed independently of the decoder."""
    ts = obj.get("timestamp", default_ts)
    if isinstance(ts, str):  # as generated by `rfc3339`: whole seconds, optional fraction, offset
        text = ts.replace("z", "+00:00").replace("Z", "+00:00")
        seconds, tail = text[:19], text[19:]
        digits = tail[1:-6] if tail.startswith(".") else ""  # the offset is always 6 chars
        moment = datetime.fromisoformat(seconds + tail[-6:])
        ts = int(moment.timestamp()) * 1000 + int((digits + "000")[:3])
    return Prediction(
        model_id=obj["model_id"],
        prediction_id=obj["prediction_id"],
        prediction=obj["prediction"],
        timestamp_ms=ts,
        score=obj.get("score"),
        features=obj.get("features"),
        latency_ms=obj.get("latency_ms"),
        model_version=obj.get("model_version"),
    )


@given(predictions(), st.booleans())
def test_any_valid_prediction_round_trips(obj: dict[str, Any], keyed: bool) -> None:
    key = obj["model_id"].encode() if keyed else None
    record = decode_predictions(key, orjson.dumps(obj), RECORD_TS)
    assert record.errors == []
    (event,) = record.events
    assert event == expected_prediction(obj, RECORD_TS)
    assert type(event.prediction) is type(obj["prediction"])
    assert validate_prediction(obj, RECORD_TS) == event


@given(st.lists(predictions(model_id="m:1"), min_size=1, max_size=20))
def test_any_valid_envelope_round_trips(batch: list[dict[str, Any]]) -> None:
    record = decode_predictions(b"m:1", orjson.dumps(batch), RECORD_TS)
    assert record.errors == []
    assert record.events == [expected_prediction(obj, RECORD_TS) for obj in batch]


@given(ids, st.text(min_size=1, max_size=MAX_ID_CHARS), scalars, st.integers(0, MAX_TIMESTAMP_MS))
def test_any_valid_label_round_trips(model_id: str, pid: str, label: Any, ts: int) -> None:
    obj = {"model_id": model_id, "prediction_id": pid, "label": label, "timestamp": ts}
    record = decode_labels(model_id.encode(), orjson.dumps(obj), RECORD_TS)
    assert record.errors == []
    assert record.events == [Label(model_id, pid, label, ts)]
    assert type(record.events[0].label) is type(label)  # type: ignore[union-attr]


def check_decoded(record: DecodedRecord) -> None:
    """Invariants of any decode result."""
    assert isinstance(record, DecodedRecord)
    assert all(isinstance(reason, str) and reason for reason in record.errors)
    assert record.events or record.errors


@given(
    st.binary(max_size=2000), st.one_of(st.none(), st.binary(max_size=30)), st.integers(-5, 2**50)
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_raise(value: bytes, key: bytes | None, ts: int) -> None:
    check_decoded(decode_predictions(key, value, ts))
    check_decoded(decode_labels(key, value, ts))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), finite, ints, st.text(max_size=30)),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "model_id",
        "prediction_id",
        "prediction",
        "label",
        "score",
        "features",
        "latency_ms",
        "timestamp",
        "model_version",
        "other",
    ]
)


@st.composite
def mutated_events(draw: st.DrawFn) -> object:
    """Valid events with some fields replaced by arbitrary JSON (or removed)."""
    event = draw(predictions()) if draw(st.booleans()) else lab()
    for _ in range(draw(st.integers(0, 3))):
        name = draw(field_names)
        if draw(st.booleans()):
            event[name] = draw(json_values)
        else:
            event.pop(name, None)
    return event


@given(
    st.one_of(json_values, mutated_events(), st.lists(mutated_events(), max_size=5)),
    st.one_of(st.none(), st.just(b"fraud-model"), ids.map(str.encode)),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_json_never_raises(doc: object, key: bytes | None) -> None:
    value = orjson.dumps(doc)
    for decoder in (decode_predictions, decode_labels):
        record = decoder(key, value, RECORD_TS)
        check_decoded(record)
        if isinstance(doc, list) and doc:
            assert len(record.events) + len(record.errors) == len(doc)
            assert all(r.startswith("event[") for r in record.errors)


@given(st.one_of(json_values, mutated_events()))
def test_validate_raises_only_invalid_event(obj: object) -> None:
    for validate in (validate_prediction, validate_label):
        try:
            validate(obj, RECORD_TS)
        except InvalidEvent as exc:
            assert exc.reason


def test_round_trip_property_also_covers_rfc3339_reference() -> None:
    """The property tests' reference conversion agrees with a hand-checked value."""
    obj = pred(timestamp="2024-05-01T14:00:00.250+02:00")
    assert expected_prediction(obj, 0).timestamp_ms == 1_714_564_800_250


def test_model_id_cache_eviction_keeps_checking(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.events as events_module

    monkeypatch.setattr(events_module, "_KNOWN_MODEL_IDS_MAX", 3)
    monkeypatch.setattr(events_module, "_KNOWN_MODEL_IDS", set())
    for i in range(10):
        assert one(pred(model_id=f"m{i}"), key=None).model_id == f"m{i}"
        assert error(pred(model_id=f"m {i}"), key=None).startswith("model_id: may only contain")
    assert len(events_module._KNOWN_MODEL_IDS) <= 3


def test_caller_features_are_copied_and_float_subclasses_made_plain() -> None:
    features: dict[str, object] = {"age": 41, "income": 52_000.5, "country": "DE", "x": None}
    event = validate_prediction(pred(features=features), 0)
    assert event.features == features and event.features is not features
    features["age"] = 42  # the caller's dict stays the caller's
    assert event.features is not None and event.features["age"] == 41
    odd = validate_prediction(pred(features={"f": FloatLike(0.5), "s": StrLike("a")}), 0)
    assert odd.features is not None
    assert [type(v) for v in odd.features.values()] == [float, str]
