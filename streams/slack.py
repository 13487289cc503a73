"""Slack-compatible webhook messages for alerts and for the alerts a rate limit held back.

A message is ``{"text": <one line>, "attachments": [...]}``: ``text`` is the readable one-line
summary (severity, type, model, signal, message) that every client shows, notifications
included; the attachment, coloured by severity, carries every field of the alert. Legacy
attachments rather than blocks, because Slack, Mattermost, Rocket.Chat and Discord's
Slack-compatible endpoint all render them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import orjson

from streams.rate_limit import SuppressedAlerts

__all__ = [
    "alert_message",
    "escape",
    "summary_line",
    "suppressed_message",
    "suppressed_text",
]

SEVERITY_COLORS = {"critical": "#d40e0d", "warning": "#e8a317"}
_OTHER_COLOR = "#439fe0"
_SUPPRESSED_COLOR = "#9e9e9e"
_MAX_MESSAGE_CHARS = 3000
_MAX_STATS_CHARS = 1500
_TOP_COUNTS = 5


def escape(text: str) -> str:
    """Escape the three characters Slack reserves for its markup (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(alert: Mapping[str, Any], name: str) -> str:
    value = alert.get(name)
    return "-" if value is None or value == "" else str(value)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def summary_line(alert: Mapping[str, Any]) -> str:
    """``[CRITICAL] concept_drift on churn (error_rate, adwin): <message>``, unescaped."""
    line = (
        f"[{_text(alert, 'severity').upper()}] {_text(alert, 'type')} on "
        f"{_text(alert, 'model_id')} ({_text(alert, 'signal')}, {_text(alert, 'detector')})"
    )
    message = alert.get("message")
    if message:
        line += f": {' '.join(str(message).split())}"
    return _clip(line, _MAX_MESSAGE_CHARS)


def _epoch_seconds(rfc3339: Any) -> int | None:
    if not isinstance(rfc3339, str):
        return None
    try:
        when = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(when.timestamp()) if when.tzinfo is not None else None


def _field(title: str, value: str, short: bool = True) -> dict[str, Any]:
    return {"title": title, "value": escape(value), "short": short}


def _alert_attachment(alert: Mapping[str, Any]) -> dict[str, Any]:
    model = _text(alert, "model_id")
    if alert.get("model_version") is not None:
        model += f" ({alert['model_version']})"
    fields = [
        _field("Severity", _text(alert, "severity")),
        _field("Type", _text(alert, "type")),
        _field("Model", model),
        _field("Signal", _text(alert, "signal")),
        _field("Detector", _text(alert, "detector")),
        _field("Value", _number(alert.get("value"))),
        _field("Threshold", _number(alert.get("threshold"))),
        _field("Window", _number(alert.get("window"))),
        _field("Prediction", _text(alert, "prediction_id")),
        _field("Observed at", _text(alert, "observed_at")),
        _field("Emitted at", _text(alert, "emitted_at")),
        _field("Alert id", _text(alert, "alert_id")),
    ]
    stats = alert.get("stats")
    if stats:
        rendered = orjson.dumps(stats, option=orjson.OPT_SORT_KEYS).decode("utf-8")
        fields.append(_field("Stats", _clip(rendered, _MAX_STATS_CHARS), short=False))
    attachment: dict[str, Any] = {
        "color": SEVERITY_COLORS.get(str(alert.get("severity")), _OTHER_COLOR),
        "fallback": escape(summary_line(alert)),
        "text": escape(_clip(_text(alert, "message"), _MAX_MESSAGE_CHARS)),
        "fields": fields,
        "footer": "driftline",
    }
    ts = _epoch_seconds(alert.get("observed_at"))
    if ts is not None:
        attachment["ts"] = ts
    return attachment


def _counts(counter: Counter[str]) -> str:
    top = counter.most_common(_TOP_COUNTS)
    text = ", ".join(f"{n} {name}" for name, n in top)
    rest = sum(counter.values()) - sum(n for _, n in top)
    return text + (f", {rest} other" if rest else "")


def _utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def suppressed_text(tally: SuppressedAlerts, limit: str) -> str:
    """One paragraph on the alerts a rate limit held back for one model, unescaped."""
    alerts = "1 alert" if tally.count == 1 else f"{tally.count} alerts"
    verb = "was" if tally.count == 1 else "were"
    if tally.count == 1:
        span, ids = f"at {_utc(tally.first_at)}", tally.first_alert_id
    else:
        span = f"between {_utc(tally.first_at)} and {_utc(tally.last_at)}"
        ids = f"first {tally.first_alert_id}, last {tally.last_alert_id}"
    return (
        f"{alerts} for {tally.model_id} {verb} not posted {span} (rate limit {limit} per "
        f"model): severity {_counts(tally.by_severity)}; type {_counts(tally.by_type)}; "
        f"signal {_counts(tally.by_signal)}; alert id {ids}. "
        "`driftline alerts --from-beginning` shows them all."
    )


def _suppressed_attachment(tally: SuppressedAlerts, limit: str) -> dict[str, Any]:
    text = escape(suppressed_text(tally, limit))
    return {"color": _SUPPRESSED_COLOR, "fallback": text, "text": text, "footer": "driftline"}


def alert_message(
    alert: Mapping[str, Any], suppressed: SuppressedAlerts | None = None, limit: str = ""
) -> dict[str, Any]:
    """The webhook body for one alert; ``suppressed`` adds what was held back before it."""
    attachments = [_alert_attachment(alert)]
    if suppressed is not None:
        attachments.append(_suppressed_attachment(suppressed, limit))
    return {"text": escape(summary_line(alert)), "attachments": attachments}


def suppressed_message(tally: SuppressedAlerts, limit: str) -> dict[str, Any]:
    """The webhook body that reports held-back alerts when no alert of the model went out."""
    alerts = "1 alert" if tally.count == 1 else f"{tally.count} alerts"
    line = f"[RATE LIMITED] {alerts} for {tally.model_id} not posted"
    return {"text": escape(line), "attachments": [_suppressed_attachment(tally, limit)]}
