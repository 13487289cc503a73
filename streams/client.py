"""Producer SDK: log predictions and labels from a serving process (event contract v1, DESIGN.md).

    with Monitor(bootstrap_servers="localhost:9092") as monitor:
        monitor.log_prediction("churn", "req-1", prediction=1, score=0.83, features={"age": 41})
        monitor.log_label("churn", "req-1", label=0)

Every event is validated here with the worker's own rules (``streams.events.validate_prediction`` /
``validate_label``), so a bad call fails at once with a ``ValueError`` naming the field, instead of
turning up later in the dead-letter topic. Valid events are encoded with orjson and collected per
topic and model into batch envelopes (a JSON array of events of one model = one record, key =
``model_id``). An envelope is sent when it holds ``max_batch_events`` events, when the next event
would take it over ``max_batch_bytes``, or ``linger_ms`` after its first event (a daemon thread
sends those), and on :meth:`Monitor.flush` / :meth:`Monitor.close`.

``linger_ms`` defaults to 200: a model logging 50 predictions a second then sends envelopes of
about ten events rather than two or three, and the worker's cost per record (faust's, mostly) is
shared by that many events; 200 ms is small next to the one-second alert latency the pipeline
keeps (docs/performance.md). Lower it if the events must reach the topic sooner.

Events without a ``timestamp`` get the current time (epoch ms) when logged, so they carry event time
rather than the time the envelope happened to be sent.

Delivery failures (after kafka-python's own retries) go to ``on_error(exc, events)`` if given; that
callback runs on a kafka-python I/O thread or the caller's thread, and must be quick. Without it the
failures are collected and raised as one :class:`DeliveryError` by the next ``flush()`` or
``close()``. All methods are thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Protocol

import orjson

from streams.events import MAX_RECORD_BYTES, validate_label, validate_prediction

__all__ = [
    "DeliveryError",
    "Envelope",
    "EnvelopeBuffer",
    "ErrorCallback",
    "Monitor",
    "Producer",
]

Event = dict[str, Any]
ErrorCallback = Callable[[BaseException, list[Event]], None]
"""``on_error(exc, events)``: the exception, and the events of the envelope not delivered."""

_MAX_REPORTED: Final = 5
_MIN_WAIT_S: Final = 0.001  # the linger thread never spins


@dataclass(slots=True)
class Envelope:
    """One record to send: events of one model for one topic, and the encoded JSON array."""

    topic: str
    model_id: str
    events: list[Event]
    value: bytes


@dataclass(slots=True)
class _Pending:
    started: float
    events: list[Event] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    size: int = 2  # "[" + "]"

    def envelope(self, topic: str, model_id: str) -> Envelope:
        return Envelope(topic, model_id, self.events, b"[" + b",".join(self.parts) + b"]")


class EnvelopeBuffer:
    """Per-(topic, model) event buffers that turn into envelopes; no Kafka, no locking, no threads.

    ``clock`` returns seconds (monotonic); tests pass a fake one. An envelope is emitted by
    :meth:`add` when it reaches ``max_events`` events or when the next event would push its encoded
    size over ``max_bytes`` (a single event larger than that gets an envelope of its own), by
    :meth:`due` once ``linger_ms`` have passed since its first event, and by :meth:`drain`.
    """

    def __init__(
        self,
        max_events: int = 100,
        max_bytes: int = 512_000,
        linger_ms: float = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"max_batch_events must be >= 1, got {max_events}")
        if max_bytes < 3:
            raise ValueError(f"max_batch_bytes must be >= 3, got {max_bytes}")
        if linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_ms = linger_ms
        self._clock = clock
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._count = 0

    def __len__(self) -> int:
        """Number of buffered events."""
        return self._count

    def add(self, topic: str, model_id: str, event: Event, encoded: bytes) -> list[Envelope]:
        """Buffer one encoded event; return the envelopes this completes (oldest first)."""
        ready: list[Envelope] = []
        key = (topic, model_id)
        pending = self._pending.get(key)
        if pending is not None and pending.size + 1 + len(encoded) > self.max_bytes:
            ready.append(self._pop(key))
            pending = None
        if pending is None:
            pending = self._pending[key] = _Pending(started=self._clock())
        if pending.events:
            pending.size += 1  # ","
        pending.size += len(encoded)
        pending.events.append(event)
        pending.parts.append(encoded)
        self._count += 1
        if (
            len(pending.events) >= self.max_events
            or pending.size >= self.max_bytes
            or self.linger_ms <= 0
        ):
            ready.append(self._pop(key))
        return ready

    def due(self) -> list[Envelope]:
        """Remove and return the envelopes whose first event is at least ``linger_ms`` old."""
        limit = self._clock() - self.linger_ms / 1000.0
        keys: list[tuple[str, str]] = []
        # insertion order is the order of first events: stop at the first that is not due
        for key, pending in self._pending.items():
            if pending.started > limit:
                break
            keys.append(key)
        return [self._pop(key) for key in keys]

    def next_due_in(self) -> float | None:
        """Seconds until the oldest envelope is due (<= 0: now); ``None`` if nothing is buffered."""
        for pending in self._pending.values():
            return pending.started + self.linger_ms / 1000.0 - self._clock()
        return None

    def drain(self) -> list[Envelope]:
        """Remove and return every buffered envelope."""
        return [self._pop(key) for key in list(self._pending)]

    def _pop(self, key: tuple[str, str]) -> Envelope:
        pending = self._pending.pop(key)
        self._count -= len(pending.events)
        return pending.envelope(*key)


class DeliveryError(Exception):
    """Envelopes that could not be delivered; ``failures`` holds ``(exception, events)`` pairs."""

    def __init__(self, failures: list[tuple[BaseException, list[Event]]]) -> None:
        self.failures = failures
        events = sum(len(events) for _, events in failures)
        shown = "; ".join(f"{type(exc).__name__}: {exc}" for exc, _ in failures[:_MAX_REPORTED])
        more = (
            f"; and {len(failures) - _MAX_REPORTED} more" if len(failures) > _MAX_REPORTED else ""
        )
        super().__init__(
            f"{len(failures)} envelope(s) with {events} event(s) were not delivered: {shown}{more}"
        )


def _default(obj: Any) -> Any:
    """orjson fallback for numbers of other types that validation accepted (e.g. numpy scalars)."""
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _timestamp(value: int | float | str | datetime | None) -> int | float | str:
    if value is None:
        return time.time_ns() // 1_000_000
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp: a datetime needs a time zone (tzinfo)")
        return int(value.timestamp() * 1000)
    return value


class Producer(Protocol):
    """What Monitor needs of kafka-python's ``KafkaProducer`` (a stand-in can be injected)."""

    def send(self, topic: str, value: bytes | None = ..., key: bytes | None = ...) -> Any: ...

    def flush(self, timeout: float | None = ...) -> None: ...

    def close(self, timeout: float | None = ...) -> None: ...


class Monitor:
    """Send prediction and label events to driftline over Kafka (kafka-python ``KafkaProducer``).

    ``kafka_options`` are passed to ``KafkaProducer`` (security, SASL, ``acks``, …), e.g.
    ``Monitor(**Connections.from_env().kafka_python_options())``. ``producer`` replaces the
    ``KafkaProducer`` (then ``bootstrap_servers`` and ``kafka_options`` are unused).
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str] = "localhost:9092",
        *,
        predictions_topic: str = "predictions",
        labels_topic: str = "labels",
        max_batch_events: int = 100,
        max_batch_bytes: int = 512_000,
        linger_ms: float = 200,
        on_error: ErrorCallback | None = None,
        producer: Producer | None = None,
        **kafka_options: Any,
    ) -> None:
        if max_batch_bytes > MAX_RECORD_BYTES:
            raise ValueError(
                f"max_batch_bytes must be <= {MAX_RECORD_BYTES} (the worker's record limit)"
            )
        self.predictions_topic = predictions_topic
        self.labels_topic = labels_topic
        self._buffer = EnvelopeBuffer(max_batch_events, max_batch_bytes, linger_ms)
        self._on_error = on_error
        self._lock = threading.RLock()  # buffer and sends (keeps a model's envelopes in order)
        self._errors_lock = threading.Lock()
        self._errors: list[tuple[BaseException, list[Event]]] = []
        self._closed = False
        if producer is None:
            from kafka import KafkaProducer

            options: dict[str, Any] = {"acks": "all", "linger_ms": 5, "client_id": "driftline-sdk"}
            options.update(kafka_options)
            if isinstance(bootstrap_servers, str):
                bootstrap_servers = bootstrap_servers.split(",")
            options["bootstrap_servers"] = bootstrap_servers
            producer = KafkaProducer(**options)
        self._producer: Producer = producer
        self._stop = threading.Event()
        # with nothing buffered, a new envelope is due one linger after its first event
        self._idle_wait = linger_ms / 1000.0 if linger_ms > 0 else 1.0
        self._thread = threading.Thread(target=self._run, name="driftline-monitor", daemon=True)
        self._thread.start()

    # -- public API ------------------------------------------------------------------------------

    def log_prediction(
        self,
        model_id: str,
        prediction_id: str,
        prediction: float | str | bool,
        score: float | None = None,
        features: Mapping[str, float | str | bool | None] | None = None,
        latency_ms: float | None = None,
        timestamp: int | float | str | datetime | None = None,
        model_version: str | None = None,
    ) -> None:
        """Validate and buffer one prediction; raises ``ValueError`` naming a bad field."""
        obj: Event = {
            "model_id": model_id,
            "prediction_id": prediction_id,
            "prediction": prediction,
            "timestamp": _timestamp(timestamp),
        }
        if score is not None:
            obj["score"] = score
        if features is not None:
            obj["features"] = dict(features) if isinstance(features, Mapping) else features
        if latency_ms is not None:
            obj["latency_ms"] = latency_ms
        if model_version is not None:
            obj["model_version"] = model_version
        event = validate_prediction(obj, -1)
        obj["timestamp"] = event.timestamp_ms
        self._add(self.predictions_topic, event.model_id, obj)

    def log_label(
        self,
        model_id: str,
        prediction_id: str,
        label: float | str | bool,
        timestamp: int | float | str | datetime | None = None,
    ) -> None:
        """Validate and buffer one label (ground truth for ``prediction_id``)."""
        obj: Event = {
            "model_id": model_id,
            "prediction_id": prediction_id,
            "label": label,
            "timestamp": _timestamp(timestamp),
        }
        event = validate_label(obj, -1)
        obj["timestamp"] = event.timestamp_ms
        self._add(self.labels_topic, event.model_id, obj)

    def flush(self, timeout: float | None = None) -> None:
        """Send every buffered event and wait for delivery; raise :class:`DeliveryError` if any
        envelope (since the last flush) failed and no ``on_error`` was given."""
        with self._lock:
            self._send(self._buffer.drain())
        self._producer.flush(timeout=timeout)
        self._raise_errors()

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the background thread and close the producer (idempotent)."""
        if self._closed:
            return
        self._stop.set()
        self._thread.join()
        try:
            with self._lock:
                self._closed = True
                self._send(self._buffer.drain())
            self._producer.flush(timeout=timeout)
        finally:
            self._producer.close(timeout=timeout)
        self._raise_errors()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _add(self, topic: str, model_id: str, obj: Event) -> None:
        encoded = orjson.dumps(obj, default=_default)
        if len(encoded) + 2 > MAX_RECORD_BYTES:
            raise ValueError(
                f"event is {len(encoded)} bytes encoded; a record may hold at most "
                f"{MAX_RECORD_BYTES} bytes (fewer or shorter features)"
            )
        with self._lock:
            if self._closed:
                raise RuntimeError("Monitor is closed")
            self._send(self._buffer.add(topic, model_id, obj, encoded))

    def _run(self) -> None:
        """Send each envelope when its linger is up (not up to a polling interval later)."""
        wait = self._idle_wait
        while not self._stop.wait(wait):
            with self._lock:
                if self._closed:
                    return
                self._send(self._buffer.due())
                next_due = self._buffer.next_due_in()
            wait = self._idle_wait if next_due is None else min(self._idle_wait, next_due)
            wait = max(wait, _MIN_WAIT_S)

    def _send(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            events = envelope.events
            try:
                future = self._producer.send(
                    envelope.topic, key=envelope.model_id.encode(), value=envelope.value
                )
            except Exception as exc:  # size, metadata timeout, closed producer: same path
                self._failed(exc, events)
                continue
            future.add_errback(self._errback(events))

    def _errback(self, events: list[Event]) -> Callable[[BaseException], None]:
        def errback(exc: BaseException) -> None:
            self._failed(exc, events)

        return errback

    def _failed(self, exc: BaseException, events: list[Event]) -> None:
        if self._on_error is not None:
            self._on_error(exc, events)
            return
        with self._errors_lock:
            self._errors.append((exc, events))

    def _raise_errors(self) -> None:
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            raise DeliveryError(errors)
