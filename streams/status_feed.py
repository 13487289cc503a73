"""What the worker's status page shows: model health, a short history per model, recent alerts.

In memory only and per worker (each worker shows the models of the partitions it owns); the
history starts when the worker does. Recording costs one sample per model every
``sample_every_ms`` at most, on the models a batch touched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson

from streams.alerts import Alert
from streams.model_health import ModelHealth
from streams.model_state import ModelState

HISTORY_POINTS = 120
RECENT_ALERTS = 50


class StatusFeed:
    """Recent alerts and a windowed-metric history per model, for ``/api/status``."""

    def __init__(
        self,
        sample_every_ms: int = 5_000,
        history_points: int = HISTORY_POINTS,
        recent_alerts: int = RECENT_ALERTS,
    ) -> None:
        self.sample_every_ms = sample_every_ms
        self.history_points = history_points
        self.alerts: deque[dict[str, Any]] = deque(maxlen=recent_alerts)
        self.history: dict[str, deque[tuple[int, float]]] = {}

    def record(self, models: Iterable[ModelState], alerts: Iterable[Alert], now_ms: int) -> None:
        """Sample the windowed metric of ``models`` (if due) and keep ``alerts``."""
        for alert in alerts:
            self.alerts.appendleft(orjson.loads(alert.to_json(now_ms)))
        for model in models:
            perf = model.performance
            if perf is None or perf.value is None:
                continue
            points = self.history.get(model.model_id)
            if points is None:
                points = self.history[model.model_id] = deque(maxlen=self.history_points)
            elif now_ms - points[-1][0] < self.sample_every_ms:
                continue
            points.append((now_ms, float(perf.value)))

    def forget(self, keep: set[str]) -> None:
        """Drop the history of models this worker no longer owns."""
        for model_id in [m for m in self.history if m not in keep]:
            del self.history[model_id]

    def snapshot(self, worker_id: str, models: list[ModelHealth], now_ms: int) -> dict[str, Any]:
        """The JSON document of ``/api/status``; models worst first, then by id."""
        rows = []
        for h in sorted(models, key=lambda m: (-m.health, m.model_id)):
            rows.append(
                {
                    "model_id": h.model_id,
                    "task": h.task,
                    "health": h.health_name,
                    "metric": h.metric,
                    "metric_value": h.metric_value,
                    "metric_threshold": h.metric_threshold,
                    "expected_accuracy": h.expected_accuracy,
                    "error_rate": h.error_rate,
                    "join_rate": h.join_rate,
                    "predictions": h.counters.get("predictions", 0),
                    "labels": h.counters.get("labels", 0),
                    "signals": [
                        {"signal": s, "detector": d, "level": level}
                        for (s, d), level in sorted(h.signals.items())
                        if level > 0
                    ],
                    "psi": dict(sorted(h.psi.items())),
                    "latency_ms": h.latency_ms,
                    "history": [list(p) for p in self.history.get(h.model_id, ())],
                }
            )
        return {
            "worker_id": worker_id,
            "generated_at_ms": now_ms,
            "models": rows,
            "alerts": list(self.alerts),
        }
