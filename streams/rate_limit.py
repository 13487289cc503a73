"""Per-model rate limit for notifications, with a tally of what it held back.

A sliding window: a model may have at most ``limit`` messages sent in any ``window_s`` seconds.
Alerts over the limit are not lost silently: the limiter keeps a :class:`SuppressedAlerts` tally
per model, which the notifier puts in the model's next message (an alert, or a summary of its own
as soon as the window has room again). Time comes from an injected clock, so tests use a fake one.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelRateLimiter", "SuppressedAlerts"]


@dataclass
class SuppressedAlerts:
    """Alerts of one model that the rate limit kept from the webhook since its last message."""

    model_id: str
    first_at: float
    last_at: float
    count: int = 0
    by_severity: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    by_signal: Counter[str] = field(default_factory=Counter)
    first_alert_id: str = ""
    last_alert_id: str = ""

    def add(self, alert: Mapping[str, Any], at: float) -> None:
        """Count one more held-back alert; ``at`` is wall time (epoch seconds)."""
        self.count += 1
        self.last_at = at
        self.by_severity[str(alert.get("severity", "unknown"))] += 1
        self.by_type[str(alert.get("type", "unknown"))] += 1
        self.by_signal[str(alert.get("signal", "unknown"))] += 1
        alert_id = str(alert.get("alert_id", ""))
        self.first_alert_id = self.first_alert_id or alert_id
        self.last_alert_id = alert_id


class ModelRateLimiter:
    """At most ``limit`` messages per model in any ``window_s`` seconds (``limit`` None: no limit).

    Parameters
    ----------
    limit
        Messages allowed per model and window; ``None`` allows everything.
    window_s
        Length of the sliding window in seconds.
    clock
        Monotonic seconds, for the window.
    wall_clock
        Epoch seconds, for the times shown in summaries.
    """

    def __init__(
        self,
        limit: int | None,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1 (or None for no limit)")
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._sent: dict[str, deque[float]] = {}
        self._suppressed: dict[str, SuppressedAlerts] = {}

    def _recent(self, model_id: str, now: float) -> deque[float]:
        """Send times of ``model_id`` inside the window ending ``now`` (older ones dropped)."""
        times = self._sent.setdefault(model_id, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def has_room(self, model_id: str) -> bool:
        """Whether a message for ``model_id`` would be allowed now (nothing is consumed)."""
        if self.limit is None:
            return True
        return len(self._recent(model_id, self._clock())) < self.limit

    def try_acquire(self, model_id: str) -> bool:
        """Take one of the model's slots in the window; False (nothing taken) when none is free."""
        if self.limit is None:
            return True
        now = self._clock()
        times = self._recent(model_id, now)
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def suppress(self, model_id: str, alert: Mapping[str, Any]) -> SuppressedAlerts:
        """Record an alert held back for ``model_id``; returns the model's running tally."""
        at = self._wall_clock()
        tally = self._suppressed.get(model_id)
        if tally is None:
            tally = self._suppressed[model_id] = SuppressedAlerts(model_id, at, at)
        tally.add(alert, at)
        return tally

    def take_suppressed(self, model_id: str) -> SuppressedAlerts | None:
        """The model's tally, removed (the caller reports it), or None if nothing was held back."""
        return self._suppressed.pop(model_id, None)

    def summaries_due(self) -> list[str]:
        """Models with held-back alerts whose window has room again (their summary can go out)."""
        return [m for m in sorted(self._suppressed) if self.has_room(m)]

    def pending(self) -> list[SuppressedAlerts]:
        """Every tally not reported yet (for the log line at shutdown)."""
        return [self._suppressed[m] for m in sorted(self._suppressed)]

    def forget_idle(self) -> None:
        """Forget models with no recent message and nothing held back (bounds memory)."""
        now = self._clock()
        for model_id in list(self._sent):
            if not self._recent(model_id, now) and model_id not in self._suppressed:
                del self._sent[model_id]

    def describe(self) -> str:
        """The limit in words, for messages: ``"10 per 60 s"`` or ``"none"``."""
        return "none" if self.limit is None else f"{self.limit} per {self.window_s:g} s"
