"""Alerts: the contract objects published to ``drift-alerts`` and ``performance-alerts``.

An alert's id is a hash of what raised it (model, signal, detector, source position), so replaying
the same input yields the same ids; consumers de-duplicate on ``alert_id``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import orjson

AlertType = Literal[
    "concept_drift", "data_drift", "prediction_drift", "performance", "data_quality"
]
Severity = Literal["warning", "critical"]

DRIFT_TYPES: frozenset[str] = frozenset({"concept_drift", "data_drift", "prediction_drift"})
ALERT_SCHEMA_VERSION = 1


@dataclass(slots=True)  # not frozen: built per event, frozen __init__ is slower
class SourcePosition:
    """Where the triggering event came from.

    ``source`` is the input kind (``predictions`` or ``labels``), not the topic name, so ids stay
    the same when an operator renames topics.
    """

    source: str
    partition: int
    offset: int
    index: int = 0


def stable_id(*parts: str, position: SourcePosition) -> str:
    """32 hex digits of a hash of ``parts`` and the triggering event's position (deterministic)."""
    raw = "\x1f".join(
        (
            *parts,
            position.source,
            str(position.partition),
            str(position.offset),
            str(position.index),
        )
    )
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


def alert_id(model_id: str, signal: str, detector: str, position: SourcePosition) -> str:
    """Deterministic id: the same model, signal, detector and triggering event give the same id."""
    return stable_id(model_id, signal, detector, position=position)


def rfc3339_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC string with millisecond precision."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, with every field of the v1 alert contract (DESIGN.md)."""

    alert_id: str
    type: AlertType
    model_id: str
    model_version: str | None
    signal: str
    detector: str
    severity: Severity
    prediction_id: str
    observed_at_ms: int
    value: float | None
    threshold: float | None
    window: int | None
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def is_drift(self) -> bool:
        """Drift alerts go to the drift topic; performance and data-quality to the other."""
        return self.type in DRIFT_TYPES

    def to_dict(self, emitted_at_ms: int) -> dict[str, Any]:
        """The JSON object published on the alert topic; ``emitted_at`` is wall time."""
        return {
            "v": ALERT_SCHEMA_VERSION,
            "alert_id": self.alert_id,
            "type": self.type,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "signal": self.signal,
            "detector": self.detector,
            "severity": self.severity,
            "prediction_id": self.prediction_id,
            "observed_at": rfc3339_ms(self.observed_at_ms),
            "emitted_at": rfc3339_ms(emitted_at_ms),
            "value": self.value,
            "threshold": self.threshold,
            "window": self.window,
            "stats": self.stats,
            "message": self.message,
        }

    def to_json(self, emitted_at_ms: int) -> bytes:
        """Serialised record value; non-finite floats in ``stats`` become null (valid JSON)."""
        return orjson.dumps(self.to_dict(emitted_at_ms))
