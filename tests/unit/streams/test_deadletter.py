"""Dead letters keep the exact original bytes, where they came from, and why they were refused."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.deadletter import (
    DEAD_LETTER_SCHEMA_VERSION,
    DEAD_LETTER_TOPIC,
    MAX_REASON_CHARS,
    MAX_REASONS,
    REASON_CATEGORIES,
    dead_letter_record,
    parse_dead_letter,
    reason_category,
)
from streams.events import MAX_RECORD_BYTES, decode_predictions


def letter(
    key: bytes | None = b"fraud-model",
    value: bytes | None = b'{"model_id": "fraud-model", "score": 1.7}',
    reasons: list[str] | None = None,
    timestamp_ms: int | None = 1_714_564_800_000,
    max_value_bytes: int | None = None,
) -> tuple[bytes | None, bytes]:
    return dead_letter_record(
        topic="predictions",
        partition=3,
        offset=1234,
        key=key,
        value=value,
        reasons=["score: must be a number in [0, 1], got 1.7"] if reasons is None else reasons,
        timestamp_ms=timestamp_ms,
        max_value_bytes=max_value_bytes,
    )


def test_topic_name_and_schema_version() -> None:
    assert DEAD_LETTER_TOPIC == "driftline-dead-letter"
    assert DEAD_LETTER_SCHEMA_VERSION == 1


def test_value_fields() -> None:
    key, value = letter(reasons=["event[0]: bad", "event[2]: worse"])
    assert key == b"fraud-model"
    assert orjson.loads(value) == {
        "v": 1,
        "topic": "predictions",
        "partition": 3,
        "offset": 1234,
        "timestamp_ms": 1_714_564_800_000,
        "key_b64": base64.b64encode(b"fraud-model").decode(),
        "value_b64": base64.b64encode(b'{"model_id": "fraud-model", "score": 1.7}').decode(),
        "size": 41,
        "value_truncated": False,
        "reason": "event[0]: bad; event[2]: worse",
        "reasons": ["event[0]: bad", "event[2]: worse"],
    }


def test_round_trip_restores_exact_bytes() -> None:
    original = b'\xff\x00{"not": json \xfe\n'
    key, value = letter(key=b"\x80key", value=original)
    parsed = parse_dead_letter(value)
    assert key == b"\x80key"
    assert parsed["key"] == b"\x80key"
    assert parsed["value"] == original
    assert parsed["size"] == len(original)
    assert parsed["topic"] == "predictions"
    assert (parsed["partition"], parsed["offset"]) == (3, 1234)
    assert parsed["timestamp_ms"] == 1_714_564_800_000
    assert parsed["reasons"] == ["score: must be a number in [0, 1], got 1.7"]
    assert parsed["reason"] == "score: must be a number in [0, 1], got 1.7"
    assert parsed["value_truncated"] is False
    assert parsed["v"] == 1


def test_null_key_value_and_timestamp() -> None:
    key, value = letter(key=None, value=None, timestamp_ms=None, reasons=["null value"])
    assert key is None
    document = orjson.loads(value)
    assert document["key_b64"] is None and document["value_b64"] is None
    assert document["size"] == 0 and document["timestamp_ms"] is None
    parsed = parse_dead_letter(value)
    assert parsed["key"] is None and parsed["value"] is None and parsed["timestamp_ms"] is None


def test_empty_key_and_value_are_not_null() -> None:
    key, value = letter(key=b"", value=b"")
    parsed = parse_dead_letter(value)
    assert key == b"" and parsed["key"] == b"" and parsed["value"] == b"" and parsed["size"] == 0


def test_same_input_gives_the_same_bytes() -> None:
    assert letter() == letter()


def test_reasons_are_bounded() -> None:
    reasons = [f"event[{i}]: score: must be a number in [0, 1], got 2" for i in range(5000)]
    _, value = letter(reasons=reasons)
    parsed = parse_dead_letter(value)
    assert len(parsed["reasons"]) == MAX_REASONS + 1
    assert parsed["reasons"][:MAX_REASONS] == reasons[:MAX_REASONS]
    assert parsed["reasons"][-1] == f"... and {5000 - MAX_REASONS} more reasons"
    assert parsed["reason"] == "; ".join(parsed["reasons"])
    long_reason = "x" * (MAX_REASON_CHARS + 500)
    assert parse_dead_letter(letter(reasons=[long_reason])[1])["reasons"] == [
        "x" * MAX_REASON_CHARS + "..."
    ]


def test_oversize_value_can_be_truncated_to_fit_the_broker() -> None:
    original = bytes(range(256)) * 10
    _, value = letter(value=original, max_value_bytes=100)
    parsed = parse_dead_letter(value)
    assert parsed["value"] == original[:100]
    assert parsed["value_truncated"] is True
    assert parsed["size"] == len(original)
    _, value = letter(value=original, max_value_bytes=len(original))
    assert parse_dead_letter(value)["value"] == original
    assert parse_dead_letter(value)["value_truncated"] is False


def test_reason_that_is_not_valid_unicode_does_not_break_the_dead_letter() -> None:
    _, value = letter(reasons=["features.\ud800: bad"])
    assert parse_dead_letter(value)["reasons"] == ["features.\\ud800: bad"]


def test_decode_then_dead_letter_then_replay_gives_the_same_verdict() -> None:
    original = orjson.dumps(
        [
            {"model_id": "m", "prediction_id": "1", "prediction": 1},
            {"model_id": "m", "prediction_id": "2", "prediction": 1, "score": True},
        ]
    )
    decoded = decode_predictions(b"m", original, 5)
    assert decoded.errors == ["event[1]: score: must be a number in [0, 1], got true"]
    key, value = dead_letter_record(
        topic="predictions",
        partition=0,
        offset=7,
        key=b"m",
        value=original,
        reasons=decoded.errors,
        timestamp_ms=5,
    )
    parsed = parse_dead_letter(value)
    assert key == parsed["key"] == b"m"
    assert parsed["reason"] == "event[1]: score: must be a number in [0, 1], got true"
    replayed = decode_predictions(parsed["key"], parsed["value"], parsed["timestamp_ms"] or -1)
    assert replayed == decoded


@given(
    st.one_of(st.none(), st.binary(max_size=64)),
    st.one_of(st.none(), st.binary(max_size=4096)),
    st.lists(st.text(max_size=80), max_size=5),
    st.one_of(st.none(), st.integers(-1, 2**62)),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**62),
)
def test_any_bytes_round_trip(
    key: bytes | None,
    value: bytes | None,
    reasons: list[str],
    timestamp_ms: int | None,
    partition: int,
    offset: int,
) -> None:
    out_key, out_value = dead_letter_record(
        topic="labels",
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        reasons=reasons,
        timestamp_ms=timestamp_ms,
    )
    parsed = parse_dead_letter(out_value)
    assert out_key == key
    assert (parsed["key"], parsed["value"]) == (key, value)
    assert (parsed["partition"], parsed["offset"], parsed["timestamp_ms"]) == (
        partition,
        offset,
        timestamp_ms,
    )
    assert parsed["reasons"] == reasons and parsed["reason"] == "; ".join(reasons)
    assert parsed["size"] == (0 if value is None else len(value))


def valid_document() -> dict[str, object]:
    return orjson.loads(letter()[1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{", "dead letter: invalid JSON"),
        (b"[]", "dead letter: expected a JSON object"),
        (orjson.dumps({**valid_document(), "v": 2}), "unsupported schema version 2"),
        (orjson.dumps({**valid_document(), "v": True}), "field 'v' must be an integer"),
        (
            orjson.dumps({k: v for k, v in valid_document().items() if k != "offset"}),
            "missing field 'offset'",
        ),
        (
            orjson.dumps({k: v for k, v in valid_document().items() if k != "timestamp_ms"}),
            "missing field 'timestamp_ms'",
        ),
        (orjson.dumps({**valid_document(), "value_b64": "!!!"}), "'value_b64' is not valid base64"),
        (orjson.dumps({**valid_document(), "key_b64": 3}), "'key_b64' must be a base64 string"),
        (orjson.dumps({**valid_document(), "reasons": [1]}), "'reasons' must be a list of strings"),
        (orjson.dumps({**valid_document(), "partition": "3"}), "'partition' must be an integer"),
        (orjson.dumps({**valid_document(), "topic": None}), "'topic' must be a string"),
        (orjson.dumps({**valid_document(), "value_truncated": 0}), "'value_truncated' must be"),
    ],
)
def test_parse_refuses_what_is_not_a_dead_letter(value: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_dead_letter(value)


def test_every_decoder_failure_has_its_reason_category() -> None:
    good = {"model_id": "m", "prediction_id": "p", "prediction": 1, "timestamp": 1}
    cases = {
        "null_value": (b"m", None),
        "oversize": (b"m", b" " * (MAX_RECORD_BYTES + 1)),
        "invalid_json": (b"m", b"{nope"),
        "empty_envelope": (b"m", b"[]"),
        "not_an_object": (b"m", b"42"),
        "key_mismatch": (b"other", orjson.dumps(good)),
        "mixed_models": (None, orjson.dumps([good, {**good, "model_id": "n"}])),
        "invalid_field": (b"m", orjson.dumps({**good, "score": 2})),
    }
    assert set(cases) == set(REASON_CATEGORIES)
    for category, (key, value) in cases.items():
        decoded = decode_predictions(key, value, 0)
        assert decoded.errors, category
        assert reason_category(decoded.errors[0]) == category, decoded.errors
    assert reason_category(decode_predictions(b"m", b"\xff\xfe", 0).errors[0]) == "invalid_json"
