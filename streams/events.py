"""Decoding and validation of prediction and label events (event contract v1, see DESIGN.md).

Pure code: no Kafka, Redis or faust. The worker, ``driftline replay`` (over a file) and the producer
SDK all call it, so a record is judged the same way everywhere.

A record value is UTF-8 JSON: one event object, or a JSON array of event objects of one model (a
batch envelope). Decoding never raises on bad input; it returns the valid events plus a precise
reason for each invalid part, which the worker sends to the dead-letter topic.

Contract details that DESIGN.md leaves open, decided here:

* Unknown fields are ignored, so producers may add fields before consumers know them (forward
  compatibility). A misspelt optional field is therefore silently absent.
* ``null`` for an optional field means "absent" (``"score": null`` is no score;
  ``"timestamp": null`` takes the record timestamp). Required fields must not be null.
* ``prediction`` / ``label`` and feature values keep their JSON type: ``true`` stays a bool, ``1``
  an int, ``1.0`` a float. ``score`` and ``latency_ms`` become floats. Strings may be empty.
* Numbers must be finite; integers must fit 64 bits (what orjson reads and writes as integers).
* A present record key must equal the event's ``model_id`` (co-partitioning of predictions and
  labels depends on it); a missing key (``None``) is accepted.
* ``timestamp`` is epoch milliseconds (an int, or an integral float) or an RFC 3339 date-time with
  a time-zone offset; it must lie in [1970-01-01, 9999-12-31]. Sub-millisecond digits are
  truncated. Without a timestamp the record timestamp is used; if that is negative (Kafka's "no
  timestamp"), the event is invalid.
* Every invalid event is reported with the first problem found in it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, make_dataclass
from datetime import datetime
from typing import Any, Final, TypeAlias, TypeVar

import orjson

__all__ = [
    "MAX_FEATURES",
    "MAX_ID_CHARS",
    "MAX_RECORD_BYTES",
    "MAX_STRING_CHARS",
    "MAX_TIMESTAMP_MS",
    "DecodedRecord",
    "FeatureValue",
    "InvalidEvent",
    "Label",
    "Prediction",
    "Scalar",
    "decode_labels",
    "decode_predictions",
    "validate_label",
    "validate_prediction",
]

MAX_RECORD_BYTES: Final = 1_048_576
"""Largest record value accepted; larger values are rejected whole, before parsing."""
MAX_ID_CHARS: Final = 200
"""Maximum length of ``model_id``, ``prediction_id``, ``model_version`` and feature names."""
MAX_STRING_CHARS: Final = 1000
"""Maximum length of a string prediction, label or feature value."""
MAX_FEATURES: Final = 1000
"""Maximum number of features in one event."""
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a ``datetime`` can represent."""

Scalar: TypeAlias = float | str | bool
"""A prediction, label or non-null feature value."""
FeatureValue: TypeAlias = float | str | bool | None
"""A feature value; ``None`` is a missing value (JSON null), which data-quality checks count."""


@dataclass(slots=True, frozen=True)
class Prediction:
    """One model output, as published on the ``predictions`` topic.

    ``features`` is a plain dict owned by the event (treat it as read-only); because of it, an event
    with features is not hashable.
    """

    model_id: str
    prediction_id: str
    prediction: float | str | bool
    timestamp_ms: int
    score: float | None = None
    features: Mapping[str, float | str | bool | None] | None = None
    latency_ms: float | None = None
    model_version: str | None = None


@dataclass(slots=True, frozen=True)
class Label:
    """Ground truth for an earlier (or later) prediction, from the ``labels`` topic."""

    model_id: str
    prediction_id: str
    label: float | str | bool
    timestamp_ms: int


class InvalidEvent(ValueError):
    """An event breaks the contract; ``reason`` names the field and what was wrong with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class DecodedRecord:
    """Outcome of decoding one record: its valid events (in order) and reasons for the rest."""

    events: list[Prediction] | list[Label]
    errors: list[str]


# ---------------------------------------------------------------------------------------------
# Fast construction of the frozen dataclasses.
#
# A frozen dataclass's __init__ assigns every field through object.__setattr__: ~0.9 µs for
# Prediction's eight fields, more than parsing and validating the event. The decoder builds a
# mutable twin with the identical slot layout (generated from the same field list) and switches its
# __class__, which CPython allows between identical layouts (~0.27 µs). The result is an ordinary
# Prediction/Label: same type, equality, hash and immutability. Only validated values go in.


def _twin(cls: type[Any]) -> Any:
    """Return a mutable slots dataclass with exactly the fields (and slot layout) of ``cls``."""
    return make_dataclass(
        f"_{cls.__name__}Twin",
        [(f.name, f.type) for f in fields(cls)],
        slots=True,
        eq=False,
        repr=False,
    )


_PredictionTwin: Final = _twin(Prediction)
_LabelTwin: Final = _twin(Label)

# ---------------------------------------------------------------------------------------------
# Field checks. The hot path is inlined in _prediction/_label for exact JSON types; the helpers
# below handle everything else (errors, and int/float/str subclasses such as numpy scalars passed
# to validate_* by the SDK). Helpers return a value or a _Reason instead of raising, so no event,
# valid or not, costs an exception.

_INF: Final = math.inf
# orjson reads integers in [-2**63, 2**64 - 1] as int (larger ones as float) and cannot write
# larger ones, so an int outside this range can only come from a Python caller.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

_MODEL_ID_RE: Final = re.compile(r"[A-Za-z0-9._:/-]+")
# Model ids repeat endlessly on the hot path: remember the ones that passed the checks.
_KNOWN_MODEL_IDS: Final[set[str]] = set()
_KNOWN_MODEL_IDS_MAX: Final = 65_536

# RFC 3339 date-time (section 5.6; "t"/"z"/space allowed as the RFC's notes permit).
# datetime.fromisoformat is not used: on 3.11 it also accepts non-RFC forms (basic format, week
# dates, no seconds) and on 3.10 it rejects valid fractions that do not have 3 or 6 digits.
_RFC3339_RE: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))",
    re.ASCII,
)
_EPOCH_ORDINAL: Final = datetime(1970, 1, 1).toordinal()

_SHOW_CHARS: Final = 40
_SCALAR_TYPES: Final = "a finite number, a string or a bool"


class _Reason(str):
    """Why a field is invalid; a distinct type so helpers can return either a value or a reason."""

    __slots__ = ()


class _Missing:
    """Type of the marker for an absent field (distinct from JSON null)."""

    __slots__ = ()


_MISSING: Final = _Missing()


def _show(value: object) -> str:
    """Render an offending value for a reason: JSON-like, short, never the whole payload."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = str(value if len(value) <= _SHOW_CHARS else value[:_SHOW_CHARS] + "...")
        try:
            return orjson.dumps(text).decode()
        except orjson.JSONEncodeError:  # lone surrogates, only possible from Python callers
            return json.dumps(text)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(float(value))
    if isinstance(value, int):
        if -(10**30) < value < 10**30:
            return str(int(value))
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _scalar(value: object, field: str, expected: str = _SCALAR_TYPES) -> Scalar | _Reason:
    """Check a value for a scalar field (prediction, label, feature) off the fast path.

    Returns it as a plain bool/int/float/str or the reason it is invalid; ``expected`` lists the
    allowed types for that reason.
    """
    if value is _MISSING:
        return _Reason(f"{field}: required field missing")
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return _Reason(f"{field}: non-finite number, got {_show(value)}")
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return int(value)
        return _Reason(f"{field}: integer out of range (must fit 64 bits), got {_show(value)}")
    if isinstance(value, str):
        if len(value) <= MAX_STRING_CHARS:
            return str(value)
        return _Reason(f"{field}: string longer than {MAX_STRING_CHARS} characters ({len(value)})")
    return _Reason(f"{field}: must be {expected}, got {_show(value)}")


def _model_id(value: object) -> str | _Reason:
    """Check a model_id off the fast path; remembers valid ones."""
    if value is _MISSING:
        return _Reason("model_id: required field missing")
    if not isinstance(value, str):
        return _Reason(f"model_id: must be a string, got {_show(value)}")
    if not 0 < len(value) <= MAX_ID_CHARS:
        return _Reason(f"model_id: must be 1 to {MAX_ID_CHARS} characters long, got {len(value)}")
    if _MODEL_ID_RE.fullmatch(value) is None:
        return _Reason(f"model_id: may only contain A-Z a-z 0-9 . _ : / -, got {_show(value)}")
    plain = str(value)
    if len(_KNOWN_MODEL_IDS) >= _KNOWN_MODEL_IDS_MAX:
        _KNOWN_MODEL_IDS.clear()
    _KNOWN_MODEL_IDS.add(plain)
    return plain


def _prediction_id(value: object) -> str | _Reason:
    """Check a prediction_id off the fast path."""
    if value is _MISSING:
        return _Reason("prediction_id: required field missing")
    if not isinstance(value, str):
        return _Reason(f"prediction_id: must be a string, got {_show(value)}")
    if not 0 < len(value) <= MAX_ID_CHARS:
        return _Reason(
            f"prediction_id: must be 1 to {MAX_ID_CHARS} characters long, got {len(value)}"
        )
    return str(value)


def _rfc3339_ms(text: str) -> int | _Reason:
    """Convert an RFC 3339 date-time to epoch ms, or return the reason it is invalid."""
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        return _Reason(
            "timestamp: must be epoch milliseconds or an RFC 3339 date-time with a time-zone "
            f"offset (e.g. 2024-05-01T12:00:00.250Z), got {_show(text)}"
        )
    year, month, day, hour, minute, second, frac, sign, off_h, off_m = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    try:  # the C constructor validates the calendar; integer maths is faster than timedeltas
        days = datetime(int(year), int(month), int(day), hours, minutes, seconds).toordinal()
    except ValueError as exc:
        return _Reason(f"timestamp: invalid date-time {_show(text)} ({exc})")
    millis = ((((days - _EPOCH_ORDINAL) * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000
    if frac:
        millis += int(frac[:3].ljust(3, "0"))
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return _Reason(f"timestamp: invalid time-zone offset in {_show(text)}")
        offset_ms = (int(off_h) * 60 + int(off_m)) * 60_000
        millis += -offset_ms if sign == "+" else offset_ms
    if millis < 0:
        return _Reason(f"timestamp: {_show(text)} is before 1970-01-01T00:00:00Z")
    if millis > MAX_TIMESTAMP_MS:
        return _Reason(f"timestamp: {_show(text)} is after 9999-12-31T23:59:59.999Z")
    return millis


def _timestamp(value: object, default_ms: int) -> int | _Reason:
    """Resolve the event time in epoch ms off the fast path, or return why it is invalid."""
    if value is _MISSING or value is None:
        if default_ms >= 0:
            return default_ms
        return _Reason("timestamp: missing, and the record has no timestamp")
    if isinstance(value, str):
        return _rfc3339_ms(str(value))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _Reason(
            "timestamp: must be epoch milliseconds (an integer) or an RFC 3339 string, "
            f"got {_show(value)}"
        )
    if isinstance(value, float) and not value.is_integer():
        return _Reason(
            f"timestamp: must be a whole number of epoch milliseconds, got {_show(value)}"
        )
    if 0 <= value <= MAX_TIMESTAMP_MS:
        return int(value)
    return _Reason(
        f"timestamp: epoch milliseconds must be in [0, {MAX_TIMESTAMP_MS}], got {_show(value)}"
    )


def _features(value: object, from_json: bool) -> dict[str, FeatureValue] | _Reason | None:
    """Validate the ``features`` object; returns it (a copy unless ``from_json``) or a reason.

    ``from_json``: the object comes straight from orjson.loads, whose output needs fewer checks
    (keys are strings, numbers finite and within 64 bits) and belongs to the decoder.
    """
    if type(value) is dict:
        feats: dict[Any, Any] = value
        if len(feats) <= 1000:
            for name, item in feats.items():
                if type(name) is not str or not 0 < len(name) <= 200:
                    break
                kind = type(item)
                if kind is float:
                    if from_json or -_INF < item < _INF:  # NaN compares false
                        continue
                    break
                if kind is str:
                    if len(item) > 1000:
                        break
                elif kind is int:
                    if not (from_json or _INT_MIN <= item <= _INT_MAX):
                        break
                elif kind is not bool and item is not None:
                    break
            else:
                return feats if from_json else dict(feats)
    return _features_slow(value)


def _features_slow(value: object) -> dict[str, FeatureValue] | _Reason:
    """Validate ``features`` of any origin; returns a normalised copy or the first problem."""
    if not isinstance(value, Mapping):
        return _Reason(f"features: must be an object, got {_show(value)}")
    if len(value) > MAX_FEATURES:
        return _Reason(f"features: at most {MAX_FEATURES} features allowed, got {len(value)}")
    feats: dict[str, FeatureValue] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            return _Reason(f"features: names must be strings, got {_show(name)}")
        if not 0 < len(name) <= MAX_ID_CHARS:
            return _Reason(
                f"features: name {_show(name)} must be 1 to {MAX_ID_CHARS} characters long"
            )
        if item is None:
            feats[str(name)] = None
            continue
        checked = _scalar(item, f"features.{name}", "a finite number, a string, a bool or null")
        if isinstance(checked, _Reason):
            return checked
        feats[str(name)] = checked
    return feats


def _unit_interval(value: object) -> float | _Reason:
    """Check a ``score`` off the fast path: a number in [0, 1] (not a bool)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return _Reason(f"score: must be a number in [0, 1], got {_show(value)}")


def _non_negative(value: object, field: str) -> float | _Reason:
    """Check ``latency_ms`` off the fast path: a finite number >= 0 (not a bool)."""
    if isinstance(value, float) and 0.0 <= value < _INF:
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT_MAX:
        return float(value)
    return _Reason(f"{field}: must be a finite number >= 0, got {_show(value)}")


def _model_version(value: object) -> str | _Reason:
    """Check a ``model_version`` off the fast path: a string of at most 200 characters."""
    if not isinstance(value, str):
        return _Reason(f"model_version: must be a string, got {_show(value)}")
    if len(value) > MAX_ID_CHARS:
        return _Reason(
            f"model_version: must be at most {MAX_ID_CHARS} characters long, got {len(value)}"
        )
    return str(value)


# The two validators below are the hot path: fast checks for exact JSON types inline, helpers for
# anything else. Literal limits (200, 1000) mirror the MAX_* constants; tests pin both.


def _head(
    obj: object, value_field: str, default_ts: int
) -> tuple[dict[Any, Any], str, str, Scalar, int] | str:
    """Fields shared by predictions and labels: (doc, model_id, prediction_id, value, timestamp).

    Returns the first reason the object is invalid instead. The happy path stays inline checks
    (no exception, no call) because this runs for every event.
    """
    if type(obj) is dict:
        doc: dict[Any, Any] = obj
    elif isinstance(obj, Mapping):
        doc = dict(obj)
    else:
        return f"expected a JSON object, got {_show(obj)}"
    get = doc.get

    model_id = get("model_id", _MISSING)
    if type(model_id) is not str or model_id not in _KNOWN_MODEL_IDS:
        checked_id = _model_id(model_id)
        if isinstance(checked_id, _Reason):
            return checked_id
        model_id = checked_id

    prediction_id = get("prediction_id", _MISSING)
    if type(prediction_id) is not str or not 0 < len(prediction_id) <= 200:
        checked_pid = _prediction_id(prediction_id)
        if isinstance(checked_pid, _Reason):
            return checked_pid
        prediction_id = checked_pid

    value = get(value_field, _MISSING)
    kind = type(value)
    if not (
        kind is bool
        or (kind is float and -_INF < value < _INF)
        or (kind is str and len(value) <= 1000)
        or (kind is int and _INT_MIN <= value <= _INT_MAX)
    ):
        checked_value = _scalar(value, value_field)
        if isinstance(checked_value, _Reason):
            return checked_value
        value = checked_value

    timestamp = get("timestamp", _MISSING)
    if type(timestamp) is not int or not 0 <= timestamp <= 253_402_300_799_999:
        checked_ts = _timestamp(timestamp, default_ts)
        if isinstance(checked_ts, _Reason):
            return checked_ts
        timestamp = checked_ts

    return doc, model_id, prediction_id, value, timestamp


def _prediction(obj: object, default_ts: int, from_json: bool) -> Prediction | str:
    """Validate one prediction object; returns the event or the first reason it is invalid.

    ``from_json``: ``obj`` is fresh orjson output (see _features), else a caller's object.
    """
    head = _head(obj, "prediction", default_ts)
    if isinstance(head, str):
        return head
    doc, model_id, prediction_id, prediction, timestamp = head
    get = doc.get

    score = get("score")
    if score is not None and not (type(score) is float and 0.0 <= score <= 1.0):
        checked_score = _unit_interval(score)
        if isinstance(checked_score, _Reason):
            return checked_score
        score = checked_score

    features = get("features")
    if features is not None:
        checked_features = _features(features, from_json)
        if isinstance(checked_features, _Reason):
            return checked_features
        features = checked_features

    latency = get("latency_ms")
    if latency is not None and not (type(latency) is float and 0.0 <= latency < _INF):
        checked_latency = _non_negative(latency, "latency_ms")
        if isinstance(checked_latency, _Reason):
            return checked_latency
        latency = checked_latency

    version = get("model_version")
    if version is not None and not (type(version) is str and len(version) <= 200):
        checked_version = _model_version(version)
        if isinstance(checked_version, _Reason):
            return checked_version
        version = checked_version

    twin = _PredictionTwin(
        model_id, prediction_id, prediction, timestamp, score, features, latency, version
    )
    twin.__class__ = Prediction
    event: Prediction = twin
    return event


def _label(obj: object, default_ts: int, from_json: bool) -> Label | str:
    """Validate one label object; returns the event or the first reason it is invalid."""
    del from_json  # a Label holds nothing mutable, and its checks are cheap either way
    head = _head(obj, "label", default_ts)
    if isinstance(head, str):
        return head
    _, model_id, prediction_id, label, timestamp = head
    twin = _LabelTwin(model_id, prediction_id, label, timestamp)
    twin.__class__ = Label
    event: Label = twin
    return event


def validate_prediction(obj: object, default_timestamp_ms: int) -> Prediction:
    """Check a parsed prediction object against the contract and return it as a Prediction.

    ``default_timestamp_ms`` is the event time used when the object has no ``timestamp`` (the
    record timestamp; negative means "none"). Raises InvalidEvent naming the offending field.
    The SDK calls this before sending, so producers see the same errors the worker would give.
    """
    result = _prediction(obj, default_timestamp_ms, False)
    if isinstance(result, str):
        raise InvalidEvent(str(result))
    return result


def validate_label(obj: object, default_timestamp_ms: int) -> Label:
    """Check a parsed label object against the contract and return it as a Label.

    Same rules and errors as the worker applies; raises InvalidEvent naming the offending field.
    """
    result = _label(obj, default_timestamp_ms, False)
    if isinstance(result, str):
        raise InvalidEvent(str(result))
    return result


# ---------------------------------------------------------------------------------------------
# Record decoding.

_E = TypeVar("_E", Prediction, Label)


def _quote(text: str) -> str:
    """Quote an identifier for a reason, as in ``model_id 'x'``; long ones are cut."""
    if len(text) > _SHOW_CHARS:
        text = text[:_SHOW_CHARS] + "..."
    return "'" + text + "'"


def _parse_error(value: bytes, error: orjson.JSONDecodeError) -> str:
    """Say why a record value is not JSON, telling bad UTF-8 apart from bad syntax."""
    try:
        bytes(value).decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        return f"invalid UTF-8: {utf8_error}"
    return f"invalid JSON: {error}"


def _decode(
    key: bytes | None,
    value: bytes | None,
    record_timestamp_ms: int,
    check: Callable[[object, int, bool], _E | str],
) -> DecodedRecord:
    """Shared decoder: parse the record, validate each event, enforce key and envelope rules."""
    if value is None:
        return DecodedRecord([], ["null value: expected a JSON event object or array of events"])
    if len(value) > MAX_RECORD_BYTES:
        return DecodedRecord([], [f"oversize: {len(value)} bytes > {MAX_RECORD_BYTES}"])
    try:
        doc: object = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return DecodedRecord([], [_parse_error(value, exc)])

    # The key is compared as text. Undecodable bytes become "\\xNN" escapes, and since a valid
    # model_id has no backslash, such a key matches no event (and reads well in the reason).
    key_text = None if key is None else key.decode("utf-8", "backslashreplace")

    if type(doc) is dict:
        event = check(doc, record_timestamp_ms, True)
        if isinstance(event, str):
            return DecodedRecord([], [event])
        if key_text is not None and event.model_id != key_text:
            return DecodedRecord([], [_key_mismatch(event.model_id, key_text)])
        return DecodedRecord([event], [])

    if type(doc) is not list:
        return DecodedRecord(
            [], [f"expected a JSON object or an array of objects, got {_show(doc)}"]
        )
    if not doc:
        return DecodedRecord([], ["empty batch envelope: expected at least one event"])

    events: list[_E] = []
    errors: list[str] = []
    expected = key_text  # None: the first valid event decides the envelope's model
    for index, item in enumerate(doc):
        event = check(item, record_timestamp_ms, True)
        if isinstance(event, str):
            errors.append(f"event[{index}]: {event}")
            continue
        if event.model_id != expected:
            if key_text is not None:
                errors.append(f"event[{index}]: {_key_mismatch(event.model_id, key_text)}")
                continue
            if expected is not None:
                errors.append(
                    f"event[{index}]: model_id {_quote(event.model_id)} differs from the "
                    f"envelope's model_id {_quote(expected)} (one model per envelope)"
                )
                continue
            expected = event.model_id
        events.append(event)
    return DecodedRecord(events, errors)


def _key_mismatch(model_id: str, key_text: str) -> str:
    """Reason for an event whose model_id is not the record key."""
    return f"model_id {_quote(model_id)} does not match record key {_quote(key_text)}"


def decode_predictions(
    key: bytes | None, value: bytes | None, record_timestamp_ms: int
) -> DecodedRecord:
    """Decode a ``predictions`` record into its valid Prediction events and error reasons.

    Never raises for bad input. ``record_timestamp_ms`` (Kafka record time; negative = none) is the
    event time of events without a ``timestamp``.
    """
    return _decode(key, value, record_timestamp_ms, _prediction)


def decode_labels(
    key: bytes | None, value: bytes | None, record_timestamp_ms: int
) -> DecodedRecord:
    """Decode a ``labels`` record into its valid Label events and error reasons.

    Never raises for bad input; same record rules as decode_predictions.
    """
    return _decode(key, value, record_timestamp_ms, _label)
