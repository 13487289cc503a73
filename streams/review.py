"""Review requests: a rate-limited sample of low-confidence predictions for humans to label.

A classifier's prediction is a candidate when its ``score`` lies within ``margin`` of the decision
``threshold``. A fixed fraction of candidates is taken, chosen by a hash of model and prediction id
(no random generator, so a replay takes the same ones), and at most ``max_per_window`` per model in
each tumbling window of ``window_ms`` event time; the window and its count are part of the
checkpointed model state. Each request goes to ``review-requests`` (key = ``model_id``) and says
how the label comes back: an ordinary label event on the ``labels`` topic with the same
``prediction_id``, joined like any other label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from streams.alerts import SourcePosition, rfc3339_ms
from streams.config import ReviewRequestSettings
from streams.events import Prediction
from streams.model_state import ModelState
from streams.requests import RequestKind, RequestRecord, request_id

_HASH_SPACE = float(2**64)


@dataclass(frozen=True, slots=True)
class ReviewRequest(RequestRecord):
    """One prediction to be labelled by a person, and where the label goes."""

    kind: ClassVar[RequestKind] = "review"
    prediction_id: str
    prediction: float | str | bool
    score: float
    features: Mapping[str, float | str | bool | None]
    timestamp_ms: int
    threshold: float
    margin: float
    labels_topic: str
    label_by_ms: int

    def details(self, emitted_at_ms: int) -> dict[str, Any]:
        """The prediction as it was published, why it was picked, and ``label_with``: the topic,
        key and label event (fill in ``label``) that feed the answer back to the detectors."""
        return {
            "prediction_id": self.prediction_id,
            "prediction": self.prediction,
            "score": self.score,
            "features": self.features,
            "timestamp": self.timestamp_ms,
            "observed_at": rfc3339_ms(self.timestamp_ms),
            "reason": "low_confidence",
            "threshold": self.threshold,
            "margin": self.margin,
            "label_with": {
                "topic": self.labels_topic,
                "key": self.model_id,
                "event": {
                    "model_id": self.model_id,
                    "prediction_id": self.prediction_id,
                    "label": None,
                },
            },
            "label_by": rfc3339_ms(self.label_by_ms),
            "message": (
                f"{self.model_id}: please label prediction {self.prediction_id!r} (score "
                f"{self.score:.3g}, within {self.margin:g} of the threshold {self.threshold:g}); "
                f"publish {{model_id, prediction_id, label}} to topic {self.labels_topic!r} with "
                f"key {self.model_id!r} before {rfc3339_ms(self.label_by_ms)}."
            ),
        }


class ReviewDecision(Enum):
    """What :meth:`ReviewSampler.consider` did with a prediction (the value: its batch count)."""

    NOT_A_CANDIDATE = "review_not_a_candidate"
    NOT_SAMPLED = "review_not_sampled"
    RATE_LIMITED = "review_rate_limited"
    REQUESTED = "review_requests"


class ReviewSampler:
    """Picks low-confidence predictions for review; its state lives in :class:`ModelState`.

    Parameters
    ----------
    labels_topic
        Where labels go back (named in every request).
    join_ttl_ms
        How long a prediction waits for its label (``join.ttl_ms``): a label later than that is
        not joined, so each request carries the deadline.
    """

    def __init__(self, labels_topic: str, join_ttl_ms: int) -> None:
        self.labels_topic = labels_topic
        self.join_ttl_ms = join_ttl_ms

    def consider(
        self,
        model: ModelState,
        settings: ReviewRequestSettings,
        prediction: Prediction,
        position: SourcePosition,
        requests: list[ReviewRequest],
    ) -> ReviewDecision:
        """Append a review request for ``prediction`` if it is picked.

        Parameters
        ----------
        model
            The prediction's model; its review window and counters are updated on a request.
        settings
            The model's review settings (threshold, margin, sample rate, rate limit).
        prediction
            A classifier's prediction with a score.
        position
            Its source position (the request id hashes it).
        requests
            The batch's review requests; a new one is appended.

        Returns
        -------
        ReviewDecision
            What happened, for the batch's counts.
        """
        score = prediction.score
        threshold, margin = settings.threshold, settings.margin
        if score is None or not threshold - margin <= score <= threshold + margin:
            return ReviewDecision.NOT_A_CANDIDATE
        if settings.sample_rate < 1.0 and (
            sample_point(prediction.model_id, prediction.prediction_id) >= settings.sample_rate
        ):
            return ReviewDecision.NOT_SAMPLED
        window = prediction.timestamp_ms // settings.window_ms
        if window > model.review_window:  # an older window's late event counts in the current one
            model.review_window, model.review_taken = window, 0
        if model.review_taken >= settings.max_per_window:
            return ReviewDecision.RATE_LIMITED
        model.review_taken += 1
        model.counters["review_requests"] += 1
        requests.append(
            ReviewRequest(
                request_id=request_id("review", model.model_id, position),
                model_id=model.model_id,
                model_version=model.model_version,
                prediction_id=prediction.prediction_id,
                prediction=prediction.prediction,
                score=score,
                features=prediction.features or {},
                timestamp_ms=prediction.timestamp_ms,
                threshold=threshold,
                margin=margin,
                labels_topic=self.labels_topic,
                label_by_ms=prediction.timestamp_ms + self.join_ttl_ms,
            )
        )
        return ReviewDecision.REQUESTED


def sample_point(model_id: str, prediction_id: str) -> float:
    """A prediction's fixed point in [0, 1): it is sampled when this is below the sample rate.

    Parameters
    ----------
    model_id, prediction_id
        Identify the prediction; the same pair always gives the same point.

    Returns
    -------
    float
        Uniform over predictions (the first 8 bytes of a BLAKE2b hash, scaled).
    """
    digest = hashlib.blake2b(f"{model_id}\x1f{prediction_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE
