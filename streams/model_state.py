"""ModelState: one model's counters and detectors, with an explicit versioned encoding.

The processor owns the update rules; this module only holds state and turns it into bytes and back
(msgpack, a version byte, detector states through :mod:`detectors.codec`; never pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from detectors import (
    ADWIN,
    DDM,
    EDDM,
    HDDM_A,
    HDDM_W,
    KSWIN,
    BaselineDrop,
    CategoricalPSI,
    ClassificationMetrics,
    DataQualityRates,
    ExpectedAccuracy,
    LatencyQuantile,
    NumericPSI,
    StandardizedPageHinkley,
    StateDecodeError,
    WindowedAccuracy,
    WindowedMAE,
    WindowedRMSE,
    decode,
    encode,
)
from streams.config import Detection

MODEL_STATE_VERSION = 2  # 2: retrain cooldown and review window added
Task = Literal["classification", "regression"]
ErrorDetector = ADWIN | DDM | EDDM | HDDM_A | HDDM_W | StandardizedPageHinkley

COUNTERS = (
    "predictions",
    "labels",
    "joined",
    "late_joins",
    "expired_predictions",
    "expired_labels",
    "alerts",
    "retrain_requests",
    "review_requests",
)

_ERROR_DETECTORS: dict[str, type[ADWIN | DDM | EDDM | HDDM_A | HDDM_W]] = {
    "adwin": ADWIN,
    "ddm": DDM,
    "eddm": EDDM,
    "hddm_a": HDDM_A,
    "hddm_w": HDDM_W,
}

# field name -> the detector classes it may hold (checked on decode)
_SINGLE: dict[str, tuple[type[Any], ...]] = {
    "error": (ADWIN, DDM, EDDM, HDDM_A, HDDM_W, StandardizedPageHinkley),
    "performance": (WindowedAccuracy, WindowedMAE),
    "output": (StandardizedPageHinkley, KSWIN),
    "classification": (ClassificationMetrics,),
    "rmse": (WindowedRMSE,),
    "baseline": (BaselineDrop,),
    "expected": (ExpectedAccuracy,),
    "latency": (LatencyQuantile,),
    "latency_ph": (StandardizedPageHinkley,),
    "quality": (DataQualityRates,),
}
_MAPS: dict[str, tuple[type[Any], ...]] = {
    "features": (StandardizedPageHinkley, KSWIN),
    "psi": (NumericPSI, CategoricalPSI),
}


Side = Literal["predictions", "outcomes"]
# the detectors each side of the stream updates: a record touches one side's detectors only
_SIDES: dict[Side, tuple[str, ...]] = {
    "predictions": ("expected", "output", "latency", "latency_ph", "quality", "features", "psi"),
    "outcomes": ("error", "performance", "classification", "rmse", "baseline"),
}
assert sorted(_SIDES["predictions"] + _SIDES["outcomes"]) == sorted([*_SINGLE, *_MAPS])


@dataclass(slots=True)
class ModelState:
    """Everything driftline remembers about one model on one partition."""

    model_id: str
    task: Task | None = None
    model_version: str | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    # classification: ADWIN (or DDM & co.) on 0/1 errors; regression: Page-Hinkley (up) on |error|
    error: ErrorDetector | None = None
    performance: WindowedAccuracy | WindowedMAE | None = None
    classification: ClassificationMetrics | None = None
    rmse: WindowedRMSE | None = None
    baseline: BaselineDrop | None = None
    expected: ExpectedAccuracy | None = None
    output: StandardizedPageHinkley | KSWIN | None = None
    output_signal: str | None = None
    latency: LatencyQuantile | None = None
    latency_ph: StandardizedPageHinkley | None = None
    quality: DataQualityRates | None = None
    features: dict[str, StandardizedPageHinkley | KSWIN] = field(default_factory=dict)
    psi: dict[str, NumericPSI | CategoricalPSI] = field(default_factory=dict)
    # feature name -> "n" (numeric) or "c" (categorical), as first seen
    feature_kinds: dict[str, str] = field(default_factory=dict)
    # (signal, detector) -> value of the event counter at the last alert, for cooldowns
    last_alert: dict[str, int] = field(default_factory=dict)
    # alert key -> level last paged (0 ok, 1 warning, 2 critical), for level-style alerts
    levels: dict[str, int] = field(default_factory=dict)
    # event time of the last retrain request (its cooldown starts there); None: never requested
    retrain_last_ms: int | None = None
    # review sampling: the event-time window being filled (-1: none yet) and requests taken in it
    review_window: int = -1
    review_taken: int = 0
    # encode() keeps each side's encoded detectors until that side is touched again
    encoded: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    stale: set[Side] = field(
        default_factory=lambda: {"predictions", "outcomes"}, repr=False, compare=False
    )

    def forget_encoded(self) -> None:
        """Drop the kept encoded detectors (memory); the next encode() encodes everything."""
        self.encoded.clear()
        self.stale.update(_SIDES)

    def touched(self, side: Side) -> None:
        """Say that ``side``'s detectors may change (or be replaced) before the next encode.

        Whatever updates detectors calls this first; encode() re-encodes only touched sides.
        """
        self.stale.add(side)

    def ensure_task(self, task: Task, settings: Detection) -> None:
        """Fix the task on the first prediction and build the outcome detectors for it."""
        if self.task is not None:
            return
        self.task = task
        self.stale.update(_SIDES)
        cd = settings.concept_drift
        if cd.enabled and task == "classification":
            if cd.detector == "adwin":
                self.error = ADWIN(
                    delta=cd.delta,
                    clock=cd.clock,
                    min_window_length=cd.min_window_length,
                    grace_period=cd.grace_period,
                )
            else:
                self.error = _ERROR_DETECTORS[cd.detector]()
        elif cd.enabled and cd.abs_error.enabled:
            ph = cd.abs_error
            self.error = StandardizedPageHinkley(
                warmup=ph.warmup, delta=ph.delta, threshold=ph.threshold, mode="up"
            )
        perf = settings.performance
        if perf.enabled:
            if task == "classification":
                self.performance = WindowedAccuracy(window=perf.window)
                self.classification = ClassificationMetrics(window=perf.window)
            else:
                self.performance = WindowedMAE(window=perf.window)
                self.rmse = WindowedRMSE(window=perf.window)
            if perf.baseline.enabled:
                self.baseline = BaselineDrop(
                    baseline=perf.baseline.size,
                    window=perf.window,
                    max_drop=perf.baseline.max_drop,
                    higher_is_better=task == "classification",
                )

    def encode(self) -> bytes:
        """Versioned bytes of this state."""
        encoded = self.encoded
        for side in self.stale:
            for name in _SIDES[side]:
                if name in _MAPS:
                    encoded[name] = {key: encode(det) for key, det in getattr(self, name).items()}
                else:
                    det = getattr(self, name)
                    encoded[name] = None if det is None else encode(det)
        self.stale.clear()
        single = {name: encoded[name] for name in _SINGLE if encoded[name] is not None}
        maps = {name: encoded[name] for name in _MAPS}
        body = {
            "id": self.model_id,
            "task": self.task,
            "ver": self.model_version,
            "c": self.counters,
            "d": single,
            "m": maps,
            "outsig": self.output_signal,
            "fk": self.feature_kinds,
            "la": self.last_alert,
            "lv": self.levels,
            "rt": self.retrain_last_ms,
            "rv": [self.review_window, self.review_taken],
        }
        return bytes([MODEL_STATE_VERSION]) + msgpack.packb(body, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> ModelState:
        """Inverse of :meth:`encode`; a wrong version or corrupt bytes raise StateDecodeError."""
        if not data:
            raise StateDecodeError("model state: empty")
        if data[0] != MODEL_STATE_VERSION:
            raise StateDecodeError(f"model state: unknown version {data[0]}")
        try:
            body = msgpack.unpackb(data[1:], raw=False, strict_map_key=False)
            counters = dict.fromkeys(COUNTERS, 0)
            counters.update(body["c"])
            retrain_last_ms = body["rt"]
            review_window, review_taken = body["rv"]
            if not (retrain_last_ms is None or type(retrain_last_ms) is int):
                raise StateDecodeError(f"model state: rt holds {retrain_last_ms!r}")
            if not (type(review_window) is int and type(review_taken) is int):
                raise StateDecodeError(f"model state: rv holds {body['rv']!r}")
            state = cls(
                model_id=body["id"],
                task=body["task"],
                model_version=body["ver"],
                counters=counters,
                output_signal=body["outsig"],
                feature_kinds=dict(body["fk"]),
                last_alert=dict(body["la"]),
                levels=dict(body["lv"]),
                retrain_last_ms=retrain_last_ms,
                review_window=review_window,
                review_taken=review_taken,
            )
            for name, blob in body["d"].items():
                if name not in _SINGLE:
                    raise StateDecodeError(f"model state: unknown detector slot {name!r}")
                setattr(state, name, _checked(decode(blob), _SINGLE[name], name))
            for name, blobs in body["m"].items():
                if name not in _MAPS:
                    raise StateDecodeError(f"model state: unknown detector map {name!r}")
                setattr(
                    state,
                    name,
                    {k: _checked(decode(b), _MAPS[name], f"{name}.{k}") for k, b in blobs.items()},
                )
        except StateDecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, msgpack.UnpackException) as exc:
            raise StateDecodeError(f"model state: corrupt ({exc!r})") from exc
        return state

    def summary(self) -> dict[str, Any]:
        """Counters and current metrics, for status output and the demo view."""
        perf = self.performance
        out: dict[str, Any] = {
            "model_id": self.model_id,
            "task": self.task,
            **self.counters,
            "window_metric": None if perf is None else perf.value,
            "error_rate": self.error.estimation if isinstance(self.error, ADWIN) else None,
        }
        if self.classification is not None:
            out["precision"] = self.classification.window.get("precision")
            out["recall"] = self.classification.window.get("recall")
            out["f1"] = self.classification.window.get("f1")
        if self.rmse is not None:
            out["rmse"] = self.rmse.value
        if self.expected is not None:
            out["expected_accuracy"] = self.expected.value
        if self.latency is not None and self.latency.n:
            stats = self.latency.stats()
            out.update({k: stats[k] for k in ("p50", "p95", "p99") if k in stats})
        out["drift"] = {
            name: round(det.stats()["psi"], 4) for name, det in sorted(self.psi.items())
        }
        return out


def _checked(obj: object, allowed: tuple[type[Any], ...], where: str) -> Any:
    if not isinstance(obj, allowed):
        raise StateDecodeError(f"model state: {where} holds {type(obj).__name__}")
    return obj
