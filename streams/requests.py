"""What retrain and review requests share: schema version, deterministic ids, the record's head.

A request's id hashes its kind, the model and the source position of the event that raised it, as
an alert id does, so a replay (after a crash, or ``driftline replay``) raises the same ids and a
consumer de-duplicates redelivered requests on ``request_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson

from streams.alerts import SourcePosition, rfc3339_ms, stable_id

REQUEST_SCHEMA_VERSION = 1
RequestKind = Literal["retrain", "review"]


def request_id(kind: RequestKind, model_id: str, position: SourcePosition) -> str:
    """Deterministic id of a request: the same kind, model and triggering event give the same id.

    Parameters
    ----------
    kind
        ``retrain`` or ``review``; part of the hash, so the two kinds never share an id.
    model_id
        The model the request is about.
    position
        Where the triggering event came from (input kind, partition, offset, index in envelope).

    Returns
    -------
    str
        32 hexadecimal digits.
    """
    return stable_id("request", kind, model_id, position=position)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Base of :class:`~streams.retrain.RetrainRequest` and :class:`~streams.review.ReviewRequest`:
    the fields every request record starts with, and its serialisation."""

    kind: ClassVar[RequestKind]
    request_id: str
    model_id: str
    model_version: str | None

    def details(self, emitted_at_ms: int) -> dict[str, Any]:
        """The fields of this kind of request (after the common head)."""
        raise NotImplementedError

    def to_dict(self, emitted_at_ms: int) -> dict[str, Any]:
        """The JSON object published on the request topic.

        Parameters
        ----------
        emitted_at_ms
            Wall time of publication (epoch ms): ``emitted_at``, the only field that differs when
            a request is delivered again.

        Returns
        -------
        dict
            ``v`` (schema version), ``type`` (the kind), ``request_id``, ``model_id``,
            ``model_version``, ``emitted_at``, then the kind's own fields.
        """
        return {
            "v": REQUEST_SCHEMA_VERSION,
            "type": self.kind,
            "request_id": self.request_id,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "emitted_at": rfc3339_ms(emitted_at_ms),
            **self.details(emitted_at_ms),
        }

    def to_json(self, emitted_at_ms: int) -> bytes:
        """Serialised record value (non-finite floats, e.g. in alert stats, become null)."""
        return orjson.dumps(self.to_dict(emitted_at_ms))
