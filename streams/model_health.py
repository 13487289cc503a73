"""A model's health at a glance, from its in-memory state: what /metrics and the status page show.

Levels: 0 ok, 1 warning, 2 critical. Level-style conditions (thresholds, PSI, baseline drops) keep
the level they paged until they recover; one-shot detectors (Page-Hinkley, ADWIN, DDM & co.,
KSWIN) count as a warning while their last alert is inside the model's cooldown, measured in the
same events as the cooldown itself (predictions, or labelled predictions for the error signals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors import ADWIN
from streams.config import Detection
from streams.model_state import ModelState

# signals whose cooldown counts labelled predictions (joined outcomes) rather than predictions
_OUTCOME_SIGNALS = frozenset({"error_rate", "abs_error"})
_LEVEL_DETECTORS = frozenset({"threshold", "psi", "baseline"})
HEALTH_NAMES = ("ok", "warning", "critical")


@dataclass(slots=True)
class ModelHealth:
    """One model's current figures; ``None`` where a figure does not apply or has no data yet."""

    model_id: str
    task: str | None
    health: int
    counters: dict[str, int]
    metric: str | None = None  # "accuracy" (classification) or "mae" (regression)
    metric_value: float | None = None
    metric_threshold: float | None = None
    expected_accuracy: float | None = None
    error_rate: float | None = None
    join_rate: float | None = None
    # (signal, detector) -> level
    signals: dict[tuple[str, str], int] = field(default_factory=dict)
    psi: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def health_name(self) -> str:
        """``ok``, ``warning`` or ``critical``."""
        return HEALTH_NAMES[self.health]


def model_health(model: ModelState, settings: Detection) -> ModelHealth:
    """Snapshot of ``model`` (settings give the thresholds and the cooldown)."""
    counters = dict(model.counters)
    signals: dict[tuple[str, str], int] = {}
    for key, level in model.levels.items():
        signal, _, detector = key.partition("|")
        signals[(signal, detector)] = level
    for key, at in model.last_alert.items():
        signal, _, detector = key.partition("|")
        if detector in _LEVEL_DETECTORS:
            continue
        clock = counters["joined"] if signal in _OUTCOME_SIGNALS else counters["predictions"]
        if clock - at < max(settings.cooldown_events, 1):
            signals[(signal, detector)] = max(signals.get((signal, detector), 0), 1)
    health = max(signals.values(), default=0)

    out = ModelHealth(model.model_id, model.task, health, counters, signals=signals)
    perf = model.performance
    if perf is not None:
        out.metric = "accuracy" if model.task == "classification" else "mae"
        value = perf.value
        out.metric_value = None if value is None else float(value)
        cfg = settings.performance
        out.metric_threshold = cfg.min_accuracy if out.metric == "accuracy" else cfg.max_mae
    if model.expected is not None:
        out.expected_accuracy = model.expected.value
    if isinstance(model.error, ADWIN) and counters["joined"]:
        out.error_rate = float(model.error.estimation)
    if counters["predictions"]:
        out.join_rate = counters["joined"] / counters["predictions"]
    for name, det in model.psi.items():
        stats = det.stats()
        if "psi" in stats:
            out.psi[name] = float(stats["psi"])
    if model.latency is not None and model.latency.n:
        stats = model.latency.stats()
        out.latency_ms = {q: float(stats[q]) for q in ("p50", "p95", "p99") if q in stats}
    return out
