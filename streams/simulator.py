"""Three simulated models with injected drifts, for the demo, `driftline send` tests and replay.

Pure and seeded: no I/O (except :func:`write_jsonl`), no wall clock. A :class:`Simulation` yields
``SimEvent(send_at, kind, event)`` tuples in time order, where ``event`` is a v1 prediction or label
object (DESIGN.md) and ``send_at`` is seconds since the start of the stream.

- ``churn-classifier``: concept drift. Score and features are stationary; after the change point the
  label disagrees with the prediction more often (accuracy ≈ 0.92 → ≈ 0.70).
- ``fraud-detector``: data drift. Feature ``amount`` shifts by +1.5 standard deviations; the score
  does not depend on it and accuracy stays ≈ 0.95.
- ``demand-regressor``: prediction drift. The prediction shifts from N(100, 10) to N(115, 10); the
  label tracks it (label = prediction + N(0, 5)), so the error does not change.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson

__all__ = [
    "DEFAULT_START_MS",
    "MODEL_IDS",
    "Evaluation",
    "FalseAlarm",
    "Injection",
    "InjectionResult",
    "SimEvent",
    "Simulation",
    "evaluate_alerts",
    "observed_ms",
    "prediction_index",
    "write_jsonl",
]

Kind = Literal["prediction", "label"]
DriftType = Literal["concept_drift", "data_drift", "prediction_drift"]

MODEL_IDS: tuple[str, ...] = ("churn-classifier", "fraud-detector", "demand-regressor")
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed epoch keeps output stable

_VERSIONS = {
    "churn-classifier": "churn-v3",
    "fraud-detector": "fraud-v12",
    "demand-regressor": "demand-v7",
}
_INJECTED: dict[str, tuple[DriftType, str]] = {
    "churn-classifier": ("concept_drift", "error_rate"),
    "fraud-detector": ("data_drift", "feature:amount"),
    "demand-regressor": ("prediction_drift", "prediction"),
}

# Accuracy of the classifiers before / after their change points.
CHURN_ACCURACY = (0.92, 0.70)
FRAUD_ACCURACY = 0.95
# Fraud `amount`: mean before, standard deviation; after the change the mean moves by 1.5 sd.
FRAUD_AMOUNT = (50.0, 20.0)
# Demand prediction: mean before, mean after, standard deviation; label noise sd.
DEMAND_PREDICTION = (100.0, 115.0, 10.0)
DEMAND_LABEL_NOISE = 5.0


class SimEvent(NamedTuple):
    """One event to publish: when (seconds from stream start), which topic kind, the JSON object."""

    send_at: float
    kind: Kind
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Injection:
    """A drift injected into one model's stream, starting at prediction index ``change_index``.

    ``change_at_ms`` is the event time of that first drifted prediction and ``rate_per_model``
    the model's predictions per second (both optional; they refine the scoring of alerts).
    """

    model_id: str
    type: DriftType
    signal: str
    change_index: int
    change_at_ms: int | None = None
    rate_per_model: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON reports)."""
        return asdict(self)


def prediction_index(prediction_id: str) -> int | None:
    """The per-model index in a simulated ``prediction_id`` (``"<model>-0001234"`` → 1234)."""
    _, sep, tail = prediction_id.rpartition("-")
    if not sep or not tail.isdigit():
        return None
    return int(tail)


@dataclass(frozen=True, slots=True)
class _ModelStream:
    """One model's generated columns (numpy arrays, one entry per prediction)."""

    model_id: str
    times: np.ndarray[Any, np.dtype[np.float64]]
    label_times: np.ndarray[Any, np.dtype[np.float64]]
    predictions: list[Any]
    scores: list[float] | None
    labels: list[Any]
    features: dict[str, list[Any]]
    latencies: list[float]


class Simulation:
    """A deterministic simulated stream of predictions and delayed labels for the three models.

    ``rate_per_model`` predictions per second per model for ``duration_s`` seconds; the change point
    of every model is at ``change_fraction`` of its stream. Labels follow their prediction after a
    uniform random delay in ``label_delay_s`` (event time). Same arguments → same events.
    """

    def __init__(
        self,
        rate_per_model: float,
        duration_s: float,
        *,
        seed: int = 7,
        change_fraction: float = 0.5,
        start_ms: int = DEFAULT_START_MS,
        label_delay_s: tuple[float, float] = (0.2, 3.0),
        models: Sequence[str] = MODEL_IDS,
    ) -> None:
        if rate_per_model <= 0:
            raise ValueError("rate_per_model must be > 0")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        if duration_s < 0:
            raise ValueError("duration_s must be >= 0")
        if not 0.0 < change_fraction < 1.0:
            raise ValueError("change_fraction must be between 0 and 1 (exclusive)")
        low, high = label_delay_s
        if not 0.0 < low <= high:
            raise ValueError("label_delay_s must be (low, high) with 0 < low <= high")
        unknown = [m for m in models if m not in _INJECTED]
        if unknown:
            raise ValueError(f"unknown simulated models {unknown}; choose from {list(MODEL_IDS)}")
        self.rate_per_model = float(rate_per_model)
        self.duration_s = float(duration_s)
        self.seed = seed
        self.change_fraction = change_fraction
        self.start_ms = start_ms
        self.label_delay_s = (float(low), float(high))
        self.models: tuple[str, ...] = tuple(models)
        self.n_predictions = round(self.rate_per_model * self.duration_s)
        self.change_index = int(self.n_predictions * change_fraction)

    @property
    def injections(self) -> list[Injection]:
        """The drifts injected into this stream, one per model."""
        return [
            Injection(
                model_id=m,
                type=_INJECTED[m][0],
                signal=_INJECTED[m][1],
                change_index=self.change_index,
                change_at_ms=self._ms(self._time_of(k, self.change_index)),
                rate_per_model=self.rate_per_model,
            )
            for k, m in enumerate(self.models)
        ]

    def events(self) -> Iterator[SimEvent]:
        """All predictions and labels of all models, in ``send_at`` order (stable tie-break)."""
        streams = [self._generate(k, m) for k, m in enumerate(self.models)]
        n = self.n_predictions
        if n == 0:
            return
        times: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        kinds: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        owners: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        for k, s in enumerate(streams):
            times += [s.times, s.label_times]
            kinds += [np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)]
            owners += [np.full(n, k, dtype=np.int64)] * 2
        all_times = np.concatenate(times)
        all_kinds = np.concatenate(kinds)
        all_owners = np.concatenate(owners)
        all_index = np.tile(np.arange(n, dtype=np.int64), 2 * len(streams))
        # lexsort: last key is primary → time, then predictions before labels, model, index.
        order = np.lexsort((all_index, all_owners, all_kinds, all_times))
        for pos in order.tolist():
            s = streams[int(all_owners[pos])]
            i = int(all_index[pos])
            if all_kinds[pos] == 0:
                yield SimEvent(float(s.times[i]), "prediction", self._prediction(s, i))
            else:
                yield SimEvent(float(s.label_times[i]), "label", self._label(s, i))

    def __iter__(self) -> Iterator[SimEvent]:
        return self.events()

    def expected_counts(self) -> dict[str, dict[str, int]]:
        """Per model: how many predictions and labels the stream holds."""
        return {
            m: {"predictions": self.n_predictions, "labels": self.n_predictions}
            for m in self.models
        }

    # -- generation -------------------------------------------------------------------------

    def _rng(self, model_id: str) -> np.random.Generator:
        """A generator per model, so one model's stream does not depend on the others."""
        entropy = [self.seed, zlib.crc32(model_id.encode("utf-8"))]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def _time_of(self, k: int, index: int) -> float:
        """Send time of prediction ``index`` of model ``k``; models interleave evenly."""
        return float(index / self.rate_per_model + k / (self.rate_per_model * len(self.models)))

    def _generate(self, k: int, model_id: str) -> _ModelStream:
        rng = self._rng(model_id)
        n, c = self.n_predictions, self.change_index
        offset = k / (self.rate_per_model * len(self.models))
        times = np.arange(n, dtype=np.float64) / self.rate_per_model + offset
        label_times = times + rng.uniform(*self.label_delay_s, size=n)
        latencies = np.round(5.0 + rng.gamma(2.0, 4.0, size=n), 2).tolist()
        after = np.arange(n) >= c
        scores: list[float] | None
        if model_id == "churn-classifier":
            score = rng.beta(2.0, 5.0, size=n)
            pred = (score > 0.5).astype(np.int64)
            accuracy = np.where(after, CHURN_ACCURACY[1], CHURN_ACCURACY[0])
            correct = rng.random(n) < accuracy
            label = np.where(correct, pred, 1 - pred)
            features: dict[str, list[Any]] = {
                "tenure": np.round(rng.normal(24.0, 6.0, size=n), 2).tolist(),
                "monthly_spend": np.round(rng.normal(70.0, 15.0, size=n), 2).tolist(),
            }
            predictions: list[Any] = pred.tolist()
            labels: list[Any] = label.tolist()
            scores = np.round(score, 5).tolist()
        elif model_id == "fraud-detector":
            score = rng.beta(1.0, 12.0, size=n)
            pred = (score > 0.5).astype(np.int64)
            correct = rng.random(n) < FRAUD_ACCURACY
            label = np.where(correct, pred, 1 - pred)
            mean, sd = FRAUD_AMOUNT
            amount = rng.normal(0.0, sd, size=n) + np.where(after, mean + 1.5 * sd, mean)
            features = {
                "amount": np.round(amount, 2).tolist(),
                "hour": rng.integers(0, 24, size=n).tolist(),
            }
            predictions, labels = pred.tolist(), label.tolist()
            scores = np.round(score, 5).tolist()
        else:  # demand-regressor
            before_mean, after_mean, sd = DEMAND_PREDICTION
            value = rng.normal(0.0, sd, size=n) + np.where(after, after_mean, before_mean)
            truth = value + rng.normal(0.0, DEMAND_LABEL_NOISE, size=n)
            features = {"temperature": np.round(rng.normal(15.0, 8.0, size=n), 2).tolist()}
            predictions = np.round(value, 3).tolist()
            labels = np.round(truth, 3).tolist()
            scores = None
        return _ModelStream(
            model_id, times, label_times, predictions, scores, labels, features, latencies
        )

    def _ms(self, seconds: float) -> int:
        return self.start_ms + round(seconds * 1000.0)

    def _prediction(self, s: _ModelStream, i: int) -> dict[str, Any]:
        event: dict[str, Any] = {
            "model_id": s.model_id,
            "prediction_id": f"{s.model_id}-{i:07d}",
            "prediction": s.predictions[i],
        }
        if s.scores is not None:
            event["score"] = s.scores[i]
        event["features"] = {name: column[i] for name, column in s.features.items()}
        event["latency_ms"] = s.latencies[i]
        event["timestamp"] = self._ms(float(s.times[i]))
        event["model_version"] = _VERSIONS[s.model_id]
        return event

    def _label(self, s: _ModelStream, i: int) -> dict[str, Any]:
        return {
            "model_id": s.model_id,
            "prediction_id": f"{s.model_id}-{i:07d}",
            "label": s.labels[i],
            "timestamp": self._ms(float(s.label_times[i])),
        }


def write_jsonl(path: str | os.PathLike[str], events: Iterable[SimEvent]) -> dict[str, int]:
    """Write events (e.g. a :class:`Simulation`) as JSON lines; return counts per kind."""
    counts = {"prediction": 0, "label": 0}
    with Path(path).open("wb") as fh:
        for ev in events:
            fh.write(orjson.dumps(ev.event))
            fh.write(b"\n")
            counts[ev.kind] += 1
    return counts


# -- scoring alerts against the injections ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class InjectionResult:
    """How one injected drift was detected: the first alert of its type at or after the change.

    ``related`` holds performance alerts on a concept-drift model after the change: consequences
    of the drift, shown but neither a detection of it nor a false alarm.
    """

    injection: Injection
    alert: dict[str, Any] | None
    related: tuple[dict[str, Any], ...] = ()

    @property
    def detected(self) -> bool:
        """True if an alert of the injected type fired at or after the change point."""
        return self.alert is not None

    @property
    def delay_events(self) -> int | None:
        """Predictions the model made from the change until the alert (in event time).

        Falls back to :attr:`index_delta` without a known rate or ``observed_at``. The two agree
        for alerts raised on predictions; for label-driven alerts (concept drift, performance)
        the index may be from before the change, as labels arrive in their own order.
        """
        rate, delay = self.injection.rate_per_model, self.delay_s
        if rate is not None and delay is not None:
            return round(delay * rate)
        return self.index_delta

    @property
    def index_delta(self) -> int | None:
        """The detecting alert's prediction index minus the change index."""
        if self.alert is None:
            return None
        index = prediction_index(str(self.alert.get("prediction_id", "")))
        return None if index is None else index - self.injection.change_index

    @property
    def delay_s(self) -> float | None:
        """Event-time seconds from the first drifted prediction to the alert's ``observed_at``."""
        if self.alert is None or self.injection.change_at_ms is None:
            return None
        observed = observed_ms(self.alert)
        return None if observed is None else (observed - self.injection.change_at_ms) / 1000.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the demo's JSON report."""
        alert = self.alert or {}
        return {
            **self.injection.to_dict(),
            "detected": self.detected,
            "delay_events": self.delay_events,
            "delay_s": self.delay_s,
            "index_delta": self.index_delta,
            "detector": alert.get("detector"),
            "alert_signal": alert.get("signal"),
            "alert_id": alert.get("alert_id"),
            "prediction_id": alert.get("prediction_id"),
            "related": [
                {k: a.get(k) for k in ("type", "signal", "detector", "prediction_id", "alert_id")}
                for a in self.related
            ],
        }


@dataclass(frozen=True, slots=True)
class FalseAlarm:
    """An alert that matches no injected drift, and why."""

    alert: dict[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the demo's JSON report."""
        keys = ("alert_id", "type", "model_id", "signal", "detector", "prediction_id", "message")
        return {**{k: self.alert.get(k) for k in keys}, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Alerts scored against injections: detections per injection, then false alarms."""

    results: tuple[InjectionResult, ...]
    false_alarms: tuple[FalseAlarm, ...]

    @property
    def passed(self) -> bool:
        """Every injected drift detected and no false alarm."""
        return all(r.detected for r in self.results) and not self.false_alarms

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the demo's JSON report."""
        return {
            "passed": self.passed,
            "injections": [r.to_dict() for r in self.results],
            "false_alarms": [f.to_dict() for f in self.false_alarms],
        }


def observed_ms(alert: dict[str, Any]) -> int | None:
    """An alert's ``observed_at`` (RFC 3339 string or epoch ms) as epoch milliseconds."""
    raw = alert.get("observed_at")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return round(dt.timestamp() * 1000)


def _after_change(inj: Injection, index: int, observed: int | None) -> bool:
    """True if the alert's evidence can include drifted events.

    Either its prediction is at or after the change index, or its event time is later than the
    first drifted prediction's (label-driven alerts are raised on the label's event time, and
    labels of one model are applied in their own time order).
    """
    if index >= inj.change_index:
        return True
    return observed is not None and inj.change_at_ms is not None and observed > inj.change_at_ms


def evaluate_alerts(
    injections: Sequence[Injection], alerts: Iterable[dict[str, Any]]
) -> Evaluation:
    """Match alerts (de-duplicated on ``alert_id``) to injections.

    An alert detects an injection of its model if it has the injection's type and was raised
    after the change (see :func:`_after_change`); the earliest such alert (event time, then
    index) is the detection. A ``performance`` alert after the change of a concept-drift model is
    related (a consequence). Anything else is a false alarm.
    """
    by_model = {inj.model_id: inj for inj in injections}
    first: dict[str, tuple[tuple[float, int], dict[str, Any]]] = {}
    related: dict[str, list[dict[str, Any]]] = {inj.model_id: [] for inj in injections}
    false_alarms: list[FalseAlarm] = []
    seen: set[str] = set()
    for alert in alerts:
        aid = alert.get("alert_id")
        if isinstance(aid, str):
            if aid in seen:
                continue
            seen.add(aid)
        model_id = str(alert.get("model_id"))
        kind = alert.get("type")
        inj = by_model.get(model_id)
        if inj is None:
            false_alarms.append(FalseAlarm(alert, f"no drift was injected into {model_id}"))
            continue
        pid = alert.get("prediction_id")
        own = isinstance(pid, str) and pid.startswith(f"{model_id}-")
        index = prediction_index(pid) if own and isinstance(pid, str) else None
        observed = observed_ms(alert)
        if index is None:
            false_alarms.append(FalseAlarm(alert, f"unknown prediction_id {pid!r}"))
        elif not _after_change(inj, index, observed):
            false_alarms.append(
                FalseAlarm(alert, f"at prediction {index}, before the change at {inj.change_index}")
            )
        elif kind == inj.type:
            rank = (float("inf") if observed is None else float(observed), index)
            if model_id not in first or rank < first[model_id][0]:
                first[model_id] = (rank, alert)
        elif kind == "performance" and inj.type == "concept_drift":
            related[model_id].append(alert)
        else:
            false_alarms.append(FalseAlarm(alert, f"{kind} was not injected into {model_id}"))
    results = tuple(
        InjectionResult(
            injection=inj,
            alert=first[inj.model_id][1] if inj.model_id in first else None,
            related=tuple(related[inj.model_id]),
        )
        for inj in injections
    )
    return Evaluation(results=results, false_alarms=tuple(false_alarms))
