"""`driftline send`: publish a JSON-lines file of prediction and label events to Kafka.

A line whose object has a ``label`` field goes to the labels topic, one with ``prediction`` to the
predictions topic; the record key is the event's ``model_id`` and the value is the line as written.
Lines that cannot be sent (bad JSON, no ``model_id``, neither field) are counted with their line
number and reason, and the rest of the file is still sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from streams.alert_view import kafka_client_options
from streams.config import Topics

__all__ = ["MAX_REPORTED_SKIPS", "SendResult", "classify_line", "send_file"]

MAX_REPORTED_SKIPS = 1000  # reasons kept in SendResult.skipped_lines; `skipped` counts them all


@dataclass(slots=True)
class SendResult:
    """What :func:`send_file` published and what it skipped (line number, reason)."""

    predictions: int = 0
    labels: int = 0
    skipped: int = 0
    failed: int = 0
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        """Records handed to the producer (delivered unless counted in ``failed``)."""
        return self.predictions + self.labels

    @property
    def ok(self) -> bool:
        """True when every line was sent and delivered."""
        return self.skipped == 0 and self.failed == 0

    def summary(self, max_lines: int = 20) -> str:
        """Human-readable report: counts, then up to ``max_lines`` skipped lines with reasons."""
        out = [
            f"sent {_plural(self.predictions, 'prediction')} and "
            f"{_plural(self.labels, 'label')}; skipped {_plural(self.skipped, 'line')}; "
            f"{_plural(self.failed, 'delivery', 'deliveries')} failed"
        ]
        for lineno, reason in self.skipped_lines[:max_lines]:
            out.append(f"  line {lineno}: {reason}")
        if self.skipped > min(max_lines, len(self.skipped_lines)):
            out.append(f"  … and {self.skipped - min(max_lines, len(self.skipped_lines))} more")
        out += [f"  delivery error: {e}" for e in self.errors[:max_lines]]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.summary()


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def classify_line(raw: bytes, topics: Topics) -> tuple[str, bytes] | str:
    """(topic, key) for a line, or the reason it cannot be sent."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if "label" in obj:
        topic = topics.labels
    elif "prediction" in obj:
        topic = topics.predictions
    else:
        return "neither a 'prediction' nor a 'label' field"
    model_id = obj.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        return "no 'model_id' string (needed as the record key)"
    return topic, model_id.encode("utf-8")


def send_file(
    path: str,
    bootstrap_servers: str,
    topics: Topics,
    progress: bool,
    kafka_options: dict[str, Any],
) -> SendResult:
    """Publish every prediction and label line of ``path``; flush; return counts and skips.

    ``kafka_options`` are extra kafka-python settings (security, SASL), e.g. from
    :meth:`streams.config.Connections.kafka_python_options`. The progress bar goes to stderr.
    """
    from kafka import KafkaProducer

    result = SendResult()
    file_path = Path(path)
    total = os.path.getsize(file_path)

    def on_error(exc: BaseException) -> None:
        result.failed += 1
        if len(result.errors) < MAX_REPORTED_SKIPS:
            result.errors.append(str(exc) or type(exc).__name__)

    producer = KafkaProducer(
        **kafka_client_options(bootstrap_servers, kafka_options),
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        client_id="driftline-send",
    )
    bar = Progress(
        TextColumn("[bold]sending[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=False,
    )
    try:
        with bar, file_path.open("rb") as fh:
            task = bar.add_task(file_path.name, total=total)
            for lineno, line in enumerate(fh, start=1):
                bar.advance(task, len(line))
                raw = line.strip()
                if not raw:
                    continue
                target = classify_line(raw, topics)
                if isinstance(target, str):
                    result.skipped += 1
                    if len(result.skipped_lines) < MAX_REPORTED_SKIPS:
                        result.skipped_lines.append((lineno, target))
                    continue
                topic, key = target
                producer.send(topic, key=key, value=raw).add_errback(on_error)
                if topic == topics.labels:
                    result.labels += 1
                else:
                    result.predictions += 1
            producer.flush()
    finally:
        producer.close()
    return result
