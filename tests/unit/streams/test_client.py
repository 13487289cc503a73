"""Producer SDK without a broker: validation at the log_* call and the envelope batching rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from streams.client import DeliveryError, EnvelopeBuffer, Monitor
from streams.events import Prediction, decode_predictions


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(i: int, model: str = "m", pad: int = 0) -> tuple[dict[str, Any], bytes]:
    obj: dict[str, Any] = {"model_id": model, "prediction_id": f"p{i}" + "x" * pad, "prediction": 1}
    return obj, orjson.dumps(obj)


def test_envelope_full_by_event_count() -> None:
    buf = EnvelopeBuffer(max_events=3, max_bytes=10_000, linger_ms=50, clock=FakeClock())
    out = []
    for i in range(7):
        obj, enc = event(i)
        out += buf.add("predictions", "m", obj, enc)
    assert [len(e.events) for e in out] == [3, 3]
    assert len(buf) == 1
    first = out[0]
    assert first.topic == "predictions" and first.model_id == "m"
    assert [e["prediction_id"] for e in orjson.loads(first.value)] == ["p0", "p1", "p2"]
    rest = buf.drain()
    assert [len(e.events) for e in rest] == [1] and len(buf) == 0


def test_envelope_split_by_bytes_never_exceeds_limit() -> None:
    obj, enc = event(0, pad=40)
    size = len(enc)
    limit = 2 + 3 * size + 2  # room for exactly three events and their commas
    buf = EnvelopeBuffer(max_events=100, max_bytes=limit, linger_ms=50, clock=FakeClock())
    out = []
    for i in range(10):
        obj, enc = event(i, pad=40 - len(str(i)) + 1)
        assert len(enc) == size
        out += buf.add("predictions", "m", obj, enc)
    out += buf.drain()
    assert [len(e.events) for e in out] == [3, 3, 3, 1]
    for env in out:
        assert len(env.value) <= limit
        assert len(orjson.loads(env.value)) == len(env.events)
    assert len(out[0].value) == limit


def test_oversized_single_event_gets_own_envelope() -> None:
    buf = EnvelopeBuffer(max_events=100, max_bytes=80, linger_ms=50, clock=FakeClock())
    small, small_enc = event(0)
    big, big_enc = event(1, pad=100)
    assert buf.add("predictions", "m", small, small_enc) == []
    out = buf.add("predictions", "m", big, big_enc)
    assert [e.events for e in out] == [[small], [big]]
    assert len(buf) == 0


def test_envelopes_per_model_and_topic() -> None:
    buf = EnvelopeBuffer(max_events=2, max_bytes=10_000, linger_ms=50, clock=FakeClock())
    for model in ("a", "b"):
        for topic in ("predictions", "labels"):
            obj, enc = event(0, model)
            assert buf.add(topic, model, obj, enc) == []
    out = buf.drain()
    assert sorted((e.topic, e.model_id) for e in out) == [
        ("labels", "a"),
        ("labels", "b"),
        ("predictions", "a"),
        ("predictions", "b"),
    ]


def test_linger_measured_from_first_event() -> None:
    clock = FakeClock()
    buf = EnvelopeBuffer(max_events=100, max_bytes=10_000, linger_ms=50, clock=clock)
    buf.add("predictions", "a", *event(0, "a"))
    clock.now += 0.030
    buf.add("predictions", "b", *event(1, "b"))
    buf.add("predictions", "a", *event(2, "a"))
    assert buf.due() == []
    clock.now += 0.020  # a's envelope is 50 ms old, b's 20 ms
    due = buf.due()
    assert [(e.model_id, len(e.events)) for e in due] == [("a", 2)]
    clock.now += 0.030
    assert [e.model_id for e in buf.due()] == ["b"]
    assert len(buf) == 0 and buf.due() == []


def test_next_due_in_follows_the_oldest_envelope() -> None:
    clock = FakeClock()
    buf = EnvelopeBuffer(max_events=100, max_bytes=10_000, linger_ms=50, clock=clock)
    assert buf.next_due_in() is None
    buf.add("predictions", "a", *event(0, "a"))
    clock.now += 0.030
    buf.add("labels", "b", *event(1, "b"))
    assert buf.next_due_in() == pytest.approx(0.020)
    clock.now += 0.020
    assert [e.model_id for e in buf.due()] == ["a"]
    assert buf.next_due_in() == pytest.approx(0.030)
    clock.now += 0.040
    assert buf.next_due_in() == pytest.approx(-0.010)


def test_zero_linger_sends_each_event() -> None:
    buf = EnvelopeBuffer(max_events=100, max_bytes=10_000, linger_ms=0, clock=FakeClock())
    assert len(buf.add("predictions", "m", *event(0))) == 1


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"max_events": 0}, "max_batch_events"), ({"linger_ms": -1}, "linger_ms")],
)
def test_buffer_rejects_bad_options(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        EnvelopeBuffer(**kwargs)


# -- Monitor without a broker: validation happens before anything is buffered ---------------------


class RefusingProducer:
    """A stand-in for KafkaProducer (our Producer protocol) whose sends all fail at once."""

    def __init__(self) -> None:
        self.sent = 0
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.sent += 1
        raise ConnectionError(f"no broker for {topic}")

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    mon = Monitor(linger_ms=60_000, producer=RefusingProducer())
    yield mon
    mon._buffer.drain()
    mon.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model_id": "bad id!"}, "model_id"),
        ({"model_id": ""}, "model_id"),
        ({"prediction_id": ""}, "prediction_id"),
        ({"prediction": None}, "prediction"),
        ({"prediction": [1]}, "prediction"),
        ({"score": 1.5}, "score"),
        ({"score": float("nan")}, "score"),
        ({"latency_ms": -3}, "latency_ms"),
        ({"features": {"a": [1]}}, "features"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"model_version": 3}, "model_version"),
    ],
)
def test_log_prediction_rejects_with_field_name(
    monitor: Monitor, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"model_id": "m", "prediction_id": "p1", "prediction": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        monitor.log_prediction(**args)
    assert len(monitor._buffer) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"label": None}, "label"),
        ({"prediction_id": 7}, "prediction_id"),
        ({"model_id": "a b"}, "model_id"),
    ],
)
def test_log_label_rejects_with_field_name(
    monitor: Monitor, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"model_id": "m", "prediction_id": "p1", "label": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        monitor.log_label(**args)


def test_valid_events_are_buffered_with_event_time(monitor: Monitor) -> None:
    monitor.log_prediction("m", "p1", 0.5, score=0.2, features={"x": 1.0, "y": None})
    monitor.log_prediction("m", "p2", "cat", timestamp="2024-05-01T12:00:00Z", model_version="v2")
    monitor.log_label("m", "p1", True, timestamp=1_700_000_000_000)
    assert len(monitor._buffer) == 3
    envs = {e.topic: e for e in monitor._buffer.drain()}
    decoded = decode_predictions(b"m", envs["predictions"].value, -1)
    assert decoded.errors == []
    first, second = decoded.events
    assert isinstance(second, Prediction)
    assert first.timestamp_ms > 1_700_000_000_000  # defaulted to now
    assert second.timestamp_ms == 1_714_564_800_000 and second.model_version == "v2"
    assert orjson.loads(envs["labels"].value) == [
        {"model_id": "m", "prediction_id": "p1", "label": True, "timestamp": 1_700_000_000_000}
    ]


def test_oversized_event_rejected(monitor: Monitor) -> None:
    features = {f"f{i:0199d}": "x" * 1000 for i in range(1000)}
    with pytest.raises(ValueError, match="bytes"):
        monitor.log_prediction("m", "p1", 1, features=features)


def test_max_batch_bytes_capped() -> None:
    with pytest.raises(ValueError, match="max_batch_bytes"):
        Monitor(max_batch_bytes=10_000_000, producer=RefusingProducer())


def test_send_failures_raise_on_flush_or_reach_on_error() -> None:
    producer = RefusingProducer()
    mon = Monitor(linger_ms=60_000, max_batch_events=2, producer=producer)
    for i in range(3):
        mon.log_prediction("m", f"p{i}", 1)
    with pytest.raises(DeliveryError, match=r"2 envelope.s. with 3 event.s.*no broker"):
        mon.flush()
    mon.flush()  # reported once
    mon.close()
    assert producer.closed and producer.sent == 2
    with pytest.raises(RuntimeError, match="closed"):
        mon.log_label("m", "p0", 1)

    seen: list[tuple[BaseException, list[dict[str, Any]]]] = []
    with Monitor(
        linger_ms=60_000, producer=RefusingProducer(), on_error=lambda e, ev: seen.append((e, ev))
    ) as mon:
        mon.log_label("m", "p0", 1)
    assert [(type(e), [x["prediction_id"] for x in ev]) for e, ev in seen] == [
        (ConnectionError, ["p0"])
    ]


def test_background_thread_sends_after_linger() -> None:
    producer = RefusingProducer()
    mon = Monitor(linger_ms=10, producer=producer, on_error=lambda e, ev: None)
    mon.log_prediction("m", "p0", 1)
    deadline = time.monotonic() + 5
    while producer.sent == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert producer.sent == 1 and len(mon._buffer) == 0
    mon.close()


def test_background_thread_sends_each_envelope_when_its_linger_is_up() -> None:
    sent: dict[bytes, float] = {}

    class TimingProducer(RefusingProducer):
        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
            assert key is not None
            sent[key] = time.monotonic()
            return super().send(topic, value, key)

    mon = Monitor(linger_ms=300, producer=TimingProducer(), on_error=lambda e, ev: None)
    logged: dict[bytes, float] = {}
    # staggered by a third of the linger: a thread polling every half linger sends one of them
    # at least 50 ms late, whatever its phase
    for mid in ("a", "b", "c"):
        logged[mid.encode()] = time.monotonic()
        mon.log_prediction(mid, "p0", 1)
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while len(sent) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    mon.close()
    delays = {k.decode(): round(sent[k] - logged[k], 3) for k in logged}
    assert all(0.3 <= d < 0.35 for d in delays.values()), delays


def test_delivery_error_summary() -> None:
    err = DeliveryError([(RuntimeError("boom"), [{"a": 1}, {"a": 2}]), (KeyError("k"), [{}])])
    assert "2 envelope(s) with 3 event(s)" in str(err)
    assert "RuntimeError: boom" in str(err)
