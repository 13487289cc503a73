"""`driftline alerts`: tail the alert topics, pretty (one line per alert) or as JSON lines.

The consumer uses manual assignment of every partition and no consumer group, so tailing never
joins (or disturbs) a group and starts at once.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from rich.console import Console
from rich.text import Text

__all__ = ["SEVERITY_STYLES", "alert_text", "format_alert", "kafka_client_options", "tail_alerts"]

SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow"}
_POLL_MS = 500
_TOPIC_WAIT_NOTICE_S = 5.0


def _time_of(alert: dict[str, Any]) -> str:
    """``observed_at`` (RFC 3339) as ``YYYY-MM-DD HH:MM:SS.mmm``; whatever is there otherwise."""
    raw = alert.get("observed_at") or alert.get("emitted_at")
    if not isinstance(raw, str):
        return "-" if raw is None else str(raw)
    date, sep, clock = raw.partition("T")
    if not sep:
        return raw
    return f"{date} {clock.rstrip('Z')[:12]}"


def _field(alert: dict[str, Any], name: str) -> str:
    value = alert.get(name)
    return "-" if value is None else str(value)


def format_alert(alert: dict[str, Any]) -> str:
    """One plain-text line: time, severity, type, model, signal, detector, message, event."""
    severity = _field(alert, "severity").upper()
    line = (
        f"{_time_of(alert)}  {severity:<8} {_field(alert, 'type'):<16} "
        f"{_field(alert, 'model_id')}  {_field(alert, 'signal')}  [{_field(alert, 'detector')}]"
    )
    message = alert.get("message")
    if message:
        line += f"  {message}"
    if alert.get("prediction_id") is not None:
        line += f"  (at {alert['prediction_id']})"
    return line


def alert_text(alert: dict[str, Any]) -> Text:
    """The same line as :func:`format_alert`, with the severity coloured for rich."""
    severity = _field(alert, "severity")
    text = Text(f"{_time_of(alert)}  ", style="dim")
    text.append(f"{severity.upper():<8}", style=SEVERITY_STYLES.get(severity, "bold"))
    text.append(f" {_field(alert, 'type'):<16} ", style="cyan")
    text.append(_field(alert, "model_id"), style="bold")
    text.append(f"  {_field(alert, 'signal')}  ")
    text.append(f"[{_field(alert, 'detector')}]", style="magenta")
    message = alert.get("message")
    if message:
        text.append(f"  {message}")
    if alert.get("prediction_id") is not None:
        text.append(f"  (at {alert['prediction_id']})", style="dim")
    return text


def kafka_client_options(bootstrap_servers: str, kafka_options: dict[str, Any]) -> dict[str, Any]:
    """kafka-python kwargs: ``kafka_options`` (security etc.) plus these bootstrap servers."""
    opts = dict(kafka_options)
    opts["bootstrap_servers"] = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
    return opts


def _assign_all(consumer: Any, topics: list[str], deadline: float | None) -> bool:
    """Assign every partition of ``topics``, waiting for topics that do not exist yet."""
    from kafka import TopicPartition

    started = time.monotonic()
    noticed = False
    while True:
        missing: list[str] = []
        parts: list[Any] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                missing.append(topic)
            else:
                parts += [TopicPartition(topic, p) for p in sorted(found)]
        if not missing:
            consumer.assign(parts)
            return True
        if deadline is not None and time.monotonic() >= deadline:
            print(f"driftline: alert topics not found: {', '.join(missing)}", file=sys.stderr)
            return False
        if not noticed and time.monotonic() - started >= _TOPIC_WAIT_NOTICE_S:
            print(f"driftline: waiting for topics {', '.join(missing)} to exist…", file=sys.stderr)
            noticed = True
        time.sleep(0.5)


def tail_alerts(
    bootstrap_servers: str,
    topics: list[str],
    as_json: bool,
    from_beginning: bool,
    max_alerts: int | None,
    timeout_s: float | None,
    kafka_options: dict[str, Any],
) -> int:
    """Print alerts from ``topics`` as they arrive; return an exit code.

    Starts at the end of each partition unless ``from_beginning``. Stops after ``max_alerts``
    alerts or ``timeout_s`` seconds if given; Ctrl-C stops too. Exit code 0, except 1 when the
    timeout passed before ``max_alerts`` alerts arrived or the topics never appeared.
    ``as_json`` prints each alert object as one compact JSON line (records that are not JSON
    objects are reported on stderr and skipped).
    """
    from kafka import KafkaConsumer

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    console = Console(highlight=False, soft_wrap=True)
    consumer = KafkaConsumer(
        **kafka_client_options(bootstrap_servers, kafka_options),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        client_id="driftline-alerts",
    )
    seen = 0
    try:
        if not _assign_all(consumer, list(topics), deadline):
            return 1
        assigned = list(consumer.assignment())
        if from_beginning:
            consumer.seek_to_beginning(*assigned)
        else:
            consumer.seek_to_end(*assigned)
            for tp in assigned:  # resolve "end" now, so alerts published from here on show
                consumer.position(tp)
        while max_alerts is None or seen < max_alerts:
            wait_ms = _POLL_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return 0 if max_alerts is None else 1
                wait_ms = max(1, min(_POLL_MS, int(left * 1000)))
            batches = consumer.poll(timeout_ms=wait_ms)
            records = [r for batch in batches.values() for r in batch]
            records.sort(key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))
            for record in records:
                try:
                    alert = orjson.loads(record.value) if record.value is not None else None
                except orjson.JSONDecodeError:
                    alert = None
                if not isinstance(alert, dict):
                    print(
                        f"driftline: skipping non-alert record {record.topic}/"
                        f"{record.partition}@{record.offset}",
                        file=sys.stderr,
                    )
                    continue
                if as_json:
                    sys.stdout.write(orjson.dumps(alert).decode("utf-8") + "\n")
                    sys.stdout.flush()
                else:
                    console.print(alert_text(alert))
                seen += 1
                if max_alerts is not None and seen >= max_alerts:
                    break
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()
