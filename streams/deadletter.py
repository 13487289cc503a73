"""Dead-letter records: malformed input kept with its original bytes, origin and reasons.

A record that fails decoding is not dropped and does not stop the worker: it is republished to the
``driftline-dead-letter`` topic as one JSON object (schema version ``v`` = 1) so an operator can see
why it was refused and replay the exact bytes after a fix. Pure code, no Kafka client.

Value fields: ``v``, ``topic``, ``partition``, ``offset``, ``timestamp_ms`` (the original record
time, or null), ``key_b64`` / ``value_b64`` (the original bytes, base64, null when absent),
``size`` (length of the original value; 0 for a null value), ``value_truncated``, ``reason`` (the
reasons joined with "; ") and ``reasons`` (the list). The record key is the original key, so a
model's dead letters stay in one partition, in order.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final, TypedDict

import orjson

__all__ = [
    "DEAD_LETTER_SCHEMA_VERSION",
    "DEAD_LETTER_TOPIC",
    "MAX_REASONS",
    "MAX_REASON_CHARS",
    "REASON_CATEGORIES",
    "DeadLetter",
    "dead_letter_record",
    "parse_dead_letter",
    "reason_category",
]

DEAD_LETTER_TOPIC: Final = "driftline-dead-letter"
DEAD_LETTER_SCHEMA_VERSION: Final = 1
MAX_REASONS: Final = 100
"""Reasons kept per record; a 1 MiB envelope of broken events could otherwise give thousands."""
MAX_REASON_CHARS: Final = 1000
"""Longest single reason kept; longer ones are cut (the original bytes hold the full story)."""


class DeadLetter(TypedDict):
    """A parsed dead-letter value, with the original key and value restored to bytes."""

    v: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    size: int
    value_truncated: bool
    reason: str
    reasons: list[str]


def _b64(data: bytes | None) -> str | None:
    """Base64 text of ``data``, or None for an absent key/value."""
    return None if data is None else base64.b64encode(data).decode("ascii")


# (category, marker in the decoder's reason text), first match wins; see streams/events.py
_CATEGORY_MARKERS: Final = (
    ("null_value", "null value"),
    ("oversize", "oversize:"),
    ("invalid_json", "invalid JSON"),
    ("invalid_json", "invalid UTF-8"),
    ("empty_envelope", "empty batch envelope"),
    ("not_an_object", "expected a JSON object"),
    ("key_mismatch", "does not match record key"),
    ("mixed_models", "(one model per envelope)"),
)
REASON_CATEGORIES: Final = (
    "null_value",
    "oversize",
    "invalid_json",
    "empty_envelope",
    "not_an_object",
    "key_mismatch",
    "mixed_models",
    "invalid_field",
)
"""The bounded set of dead-letter reasons counted in ``driftline_dead_letters_total{reason}``."""


def reason_category(reason: str) -> str:
    """The category of a decoder reason: one of `REASON_CATEGORIES` (``invalid_field``, a field
    that breaks the event contract, unless the text says otherwise).

    >>> reason_category("event[3]: score: must be a number in [0, 1], got 2")
    'invalid_field'
    >>> reason_category("invalid JSON: unexpected character: line 1 column 2 (char 1)")
    'invalid_json'
    """
    for category, marker in _CATEGORY_MARKERS:
        if marker in reason:
            return category
    return "invalid_field"


def _bounded_reasons(reasons: list[str]) -> list[str]:
    """Cap the number and length of reasons so one bad record cannot make a huge dead letter."""
    kept = [
        reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "..."
        for reason in reasons[:MAX_REASONS]
    ]
    if len(reasons) > MAX_REASONS:
        kept.append(f"... and {len(reasons) - MAX_REASONS} more reasons")
    return kept


def dead_letter_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reasons: list[str],
    timestamp_ms: int | None,
    max_value_bytes: int | None = None,
) -> tuple[bytes | None, bytes]:
    """Build the (key, value) of the dead-letter record for a refused input record.

    ``max_value_bytes`` (optional) keeps only that many leading bytes of a larger value and sets
    ``value_truncated``, so the dead letter fits the broker's message size limit (base64 adds a
    third). By default the whole value is kept.
    """
    kept_value = value
    truncated = False
    if value is not None and max_value_bytes is not None and len(value) > max_value_bytes:
        kept_value = value[: max(max_value_bytes, 0)]
        truncated = True
    kept_reasons = _bounded_reasons(reasons)
    document = {
        "v": DEAD_LETTER_SCHEMA_VERSION,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "key_b64": _b64(key),
        "value_b64": _b64(kept_value),
        "size": 0 if value is None else len(value),
        "value_truncated": truncated,
        "reason": "; ".join(kept_reasons),
        "reasons": kept_reasons,
    }
    try:
        encoded = orjson.dumps(document)
    except orjson.JSONEncodeError:
        # Only text that is not valid Unicode (lone surrogates from a Python caller) gets here.
        safe = [r.encode("utf-8", "backslashreplace").decode("utf-8") for r in kept_reasons]
        document["reasons"] = safe
        document["reason"] = "; ".join(safe)
        document["topic"] = topic.encode("utf-8", "backslashreplace").decode("utf-8")
        encoded = orjson.dumps(document)
    return key, encoded


def _get(document: dict[str, object], name: str) -> object:
    """Fetch a required field of a dead-letter document."""
    if name not in document:
        raise ValueError(f"dead letter: missing field {name!r}")
    return document[name]


def _wrong(name: str, expected: str, item: object) -> ValueError:
    """Error for a field of the wrong JSON type."""
    return ValueError(f"dead letter: field {name!r} must be {expected}, got {type(item).__name__}")


def _int(document: dict[str, object], name: str) -> int:
    """A required integer field (a bool is not an integer here)."""
    item = _get(document, name)
    if not isinstance(item, int) or isinstance(item, bool):
        raise _wrong(name, "an integer", item)
    return item


def _str(document: dict[str, object], name: str) -> str:
    """A required string field."""
    item = _get(document, name)
    if not isinstance(item, str):
        raise _wrong(name, "a string", item)
    return item


def _bytes(document: dict[str, object], name: str) -> bytes | None:
    """A required base64 field (strict: no stray characters) decoded; null stays None."""
    item = _get(document, name)
    if item is None:
        return None
    if not isinstance(item, str):
        raise _wrong(name, "a base64 string or null", item)
    try:
        return base64.b64decode(item, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"dead letter: field {name!r} is not valid base64 ({exc})") from exc


def parse_dead_letter(value: bytes) -> DeadLetter:
    """Read a dead-letter value back, with the original key and value as bytes.

    Used by tooling (inspect, replay) and tests; raises ValueError for anything that is not a
    dead letter of a supported schema version.
    """
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"dead letter: invalid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ValueError("dead letter: expected a JSON object")
    version = _int(document, "v")
    if version != DEAD_LETTER_SCHEMA_VERSION:
        raise ValueError(
            f"dead letter: unsupported schema version {version} "
            f"(this driftline reads {DEAD_LETTER_SCHEMA_VERSION})"
        )
    reasons = _get(document, "reasons")
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise _wrong("reasons", "a list of strings", reasons)
    truncated = _get(document, "value_truncated")
    if not isinstance(truncated, bool):
        raise _wrong("value_truncated", "a bool", truncated)
    return DeadLetter(
        v=version,
        topic=_str(document, "topic"),
        partition=_int(document, "partition"),
        offset=_int(document, "offset"),
        timestamp_ms=None
        if _get(document, "timestamp_ms") is None
        else _int(document, "timestamp_ms"),
        key=_bytes(document, "key_b64"),
        value=_bytes(document, "value_b64"),
        size=_int(document, "size"),
        value_truncated=truncated,
        reason=_str(document, "reason"),
        reasons=list(reasons),
    )
