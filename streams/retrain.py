"""Retrain requests: ask the retraining pipeline for a new model when its current one degraded.

A model's ``concept_drift`` alerts and its ``critical`` performance alerts raise one request on the
``retrain-requests`` topic (key = ``model_id``), carrying those alerts as evidence. Alerts raised by
the same event go into one request. After a request the model is quiet for ``cooldown_ms`` of
event time, measured on the triggering alerts' ``observed_at``; the time of the last request is
part of the checkpointed model state, so a restart, a rebalance or a replay requests exactly what
an uninterrupted run does, with the same ``request_id``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from streams.alerts import Alert, SourcePosition, rfc3339_ms
from streams.config import RetrainRequestSettings
from streams.model_state import ModelState
from streams.requests import RequestKind, RequestRecord, request_id


@dataclass(frozen=True, slots=True)
class RetrainRequest(RequestRecord):
    """One request to retrain a model, with the alerts that raised it as evidence."""

    kind: ClassVar[RequestKind] = "retrain"
    alerts: tuple[Alert, ...]
    counters: dict[str, int]
    window_metric: dict[str, Any] | None
    observed_at_ms: int
    cooldown_ms: int
    position: SourcePosition = field(compare=False)

    def details(self, emitted_at_ms: int) -> dict[str, Any]:
        """Why: the triggering alerts (full alert objects, as on the alert topics), the model's
        counters and windowed metric when the request was raised, and the cooldown."""
        return {
            "reasons": self.reasons,
            "alert_ids": [a.alert_id for a in self.alerts],
            "alerts": [a.to_dict(emitted_at_ms) for a in self.alerts],
            "counters": self.counters,
            "window_metric": self.window_metric,
            "observed_at": rfc3339_ms(self.observed_at_ms),
            "cooldown_ms": self.cooldown_ms,
            "next_request_from": rfc3339_ms(self.observed_at_ms + self.cooldown_ms),
            "message": self.message,
        }

    @property
    def message(self) -> str:
        """One human sentence: why retraining is requested."""
        why = "; ".join(a.message for a in self.alerts)
        return f"{self.model_id}: retraining requested ({', '.join(self.reasons)}). {why}"

    @property
    def reasons(self) -> list[str]:
        """``concept_drift`` and/or ``critical_performance``."""
        return sorted({_reason(a) for a in self.alerts})


class RetrainDecision(Enum):
    """What :meth:`RetrainPolicy.consider` did with an alert; the value names its batch count."""

    NOT_A_TRIGGER = "retrain_not_triggered"
    REQUESTED = "retrain_requests"
    ADDED_TO_REQUEST = "retrain_alerts_added"  # to the request an earlier alert of the event raised
    COOLDOWN = "retrain_suppressed_by_cooldown"


class RetrainPolicy:
    """Decides whether an alert raises a retrain request; its state lives in :class:`ModelState`.

    Nothing here reads the clock: the cooldown runs on event time, so the same input gives the
    same requests.
    """

    @staticmethod
    def triggers(alert: Alert) -> bool:
        """Whether ``alert`` asks for retraining: concept drift, or critical performance."""
        return alert.type == "concept_drift" or (
            alert.type == "performance" and alert.severity == "critical"
        )

    def consider(
        self,
        model: ModelState,
        settings: RetrainRequestSettings,
        alert: Alert,
        position: SourcePosition,
        requests: list[RetrainRequest],
    ) -> RetrainDecision:
        """Raise a request for ``alert`` unless the model is within its cooldown.

        Parameters
        ----------
        model
            The alert's model; its ``retrain_last_ms`` and counters are updated on a request.
        settings
            The model's retrain settings (enabled, ``cooldown_ms``).
        alert
            An alert just raised for ``model``.
        position
            Source position of the event that raised the alert (the request id hashes it).
        requests
            The batch's requests so far: a new request is appended, or the alert added to the last
            one when that was raised by the same event.

        Returns
        -------
        RetrainDecision
            What happened, for the batch's counts.
        """
        if not self.triggers(alert):
            return RetrainDecision.NOT_A_TRIGGER
        last = requests[-1] if requests else None
        if last is not None and last.model_id == model.model_id and last.position == position:
            requests[-1] = dataclasses.replace(
                last, alerts=(*last.alerts, alert), counters=dict(model.counters)
            )
            return RetrainDecision.ADDED_TO_REQUEST
        observed = alert.observed_at_ms
        previous = model.retrain_last_ms
        # an event older than the last request is inside the cooldown too (time never rewinds it)
        if previous is not None and observed < previous + settings.cooldown_ms:
            return RetrainDecision.COOLDOWN
        model.retrain_last_ms = observed
        model.counters["retrain_requests"] += 1
        requests.append(
            RetrainRequest(
                request_id=request_id("retrain", model.model_id, position),
                model_id=model.model_id,
                model_version=model.model_version,
                alerts=(alert,),
                counters=dict(model.counters),
                window_metric=window_metric(model),
                observed_at_ms=observed,
                cooldown_ms=settings.cooldown_ms,
                position=position,
            )
        )
        return RetrainDecision.REQUESTED


def window_metric(model: ModelState) -> dict[str, Any] | None:
    """The model's windowed accuracy (classification) or MAE (regression), if it has one.

    Parameters
    ----------
    model
        The model whose performance metric to report.

    Returns
    -------
    dict or None
        ``name``, windowed ``value``, ``window`` (labelled predictions in it), ``cumulative`` and
        ``n``; None before the metric has a value (or with performance tracking off).
    """
    perf = model.performance
    if perf is None or perf.value is None:
        return None
    return {
        "name": "accuracy" if model.task == "classification" else "mae",
        "value": perf.value,
        "window": perf.window_n,
        "cumulative": perf.cumulative,
        "n": perf.n,
    }


def _reason(alert: Alert) -> str:
    return "concept_drift" if alert.type == "concept_drift" else "critical_performance"
