"""`driftline notify` against the real (embedded) broker and Redis, with a local HTTP webhook.

The webhook is a stdlib ``http.server`` in a thread that answers from a script (a status, or
closing the connection) and records every request. The notifier runs in a thread with its own
stop event; one test runs the CLI as a subprocess and stops it with SIGTERM.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.alerts import Alert
from streams.config import Config, Connections, load_config
from streams.embedded import EmbeddedStack
from streams.notify import Notifier, NotifyStats, webhook_namespace
from streams.webhook import redact_url
from tests.integration.pipeline import write_config

SECRET_PATH = "/services/T0000/B0000/s3cr3tT0k3n"
FAST_RETRY = {"first_delay_s": 0.1, "max_delay_s": 0.4}


# -- the webhook --------------------------------------------------------------------------------


@dataclass
class Received:
    """One request the webhook got: when (monotonic), its path, body and what it answered."""

    at: float
    path: str
    body: dict[str, Any]
    answer: str


@dataclass
class WebhookServer:
    """A local webhook; ``script`` holds the answers to the next requests, then 503 while
    ``failing`` is set, else 200."""

    script: list[tuple[int, dict[str, str]] | str] = field(default_factory=list)
    failing: bool = False
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def delivered(self) -> list[dict[str, Any]]:
        """Bodies answered with 2xx, in order."""
        with self.lock:
            return [r.body for r in self.received if r.answer.startswith("2")]

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` messages were delivered; returns them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.delivered()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"webhook got {len(self.delivered())} of {count} messages")


def _handler(server: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = orjson.loads(self.rfile.read(length))
            with server.lock:
                step: tuple[int, dict[str, str]] | str = (503 if server.failing else 200, {})
                if server.script:
                    step = server.script.pop(0)
                answer = step if isinstance(step, str) else str(step[0])
                server.received.append(Received(time.monotonic(), self.path, body, answer))
            if step == "close":
                self.close_connection = True
                self.connection.close()
                return
            assert not isinstance(step, str)
            status, headers = step
            payload = b"ok" if status < 300 else b"no_service"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    """A webhook on 127.0.0.1 whose URL carries a secret path, as Slack's do."""
    state = WebhookServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}{SECRET_PATH}"
    thread = threading.Thread(target=httpd.serve_forever, name="webhook", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# -- alerts and the notifier --------------------------------------------------------------------


def make_alert(n: int, model: str = "churn", severity: str = "critical") -> Alert:
    return Alert(
        alert_id=f"a{n:04d}-{model}",
        type="concept_drift",
        model_id=model,
        model_version="v3",
        signal="error_rate",
        detector="adwin",
        severity=severity,  # type: ignore[arg-type]
        prediction_id=f"{model}-{n}",
        observed_at_ms=1_767_225_600_000 + n,
        value=0.3,
        threshold=0.002,
        window=800,
        stats={"mean_before": 0.08, "mean_after": 0.3},
        message=f"{model}: error rate rose from 0.08 to 0.3 (alert {n}).",
    )


def alert_records(alerts: list[Alert]) -> list[bytes]:
    return [a.to_json(1_767_225_601_000) for a in alerts]


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def handled(stats: NotifyStats) -> int:
    """Records the notifier is finished with (summaries are not records)."""
    return stats.delivered + stats.duplicates + stats.suppressed + stats.dropped + stats.invalid


def alert_id_of(body: dict[str, Any]) -> str:
    """The "Alert id" field of a posted alert message."""
    fields = body["attachments"][0]["fields"]
    return str(next(f["value"] for f in fields if f["title"] == "Alert id"))


@dataclass
class NotifyCase:
    """One test's broker, Redis, webhook and prefixed config."""

    stack: EmbeddedStack
    prefix: str
    tmp_path: Path
    webhook: WebhookServer
    redis: redis.Redis

    def config(self, **notify: Any) -> Config:
        """The test's config (prefixed topics, group and keys); creates the alert topics."""
        settings: dict[str, Any] = {"start_from": "earliest", "retry": FAST_RETRY, **notify}
        config = load_config(write_config(self.tmp_path, self.prefix, notify=settings))
        topics = config.kafka.topics
        self.stack.create_topics([topics.drift_alerts, topics.performance_alerts], partitions=1)
        return config

    def publish(self, topic: str, values: list[bytes]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.stack.bootstrap_servers, acks="all")
        try:
            for value in values:
                producer.send(topic, key=b"k", value=value)
            producer.flush()
        finally:
            producer.close()

    @contextmanager
    def running(self, config: Config) -> Iterator[tuple[Notifier, NotifyStats]]:
        """A notifier in a thread; stopped (and required to stop within 20 s) on exit."""
        connections = Connections(
            bootstrap_servers=self.stack.bootstrap_servers, redis_url=self.stack.redis_url
        )
        notifier = Notifier(config, connections, self.webhook.url)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                notifier.run()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, name="notifier", daemon=True)
        thread.start()
        try:
            yield notifier, notifier.stats
        finally:
            notifier.stop.set()
            thread.join(20)
            assert not thread.is_alive(), "notifier did not stop within 20 s"
        if errors:
            raise errors[0]

    def committed(self, group: str, topic: str) -> int | None:
        """The group's committed offset of partition 0 of ``topic``."""
        consumer = KafkaConsumer(bootstrap_servers=self.stack.bootstrap_servers, group_id=group)
        try:
            offset = consumer.committed(TopicPartition(topic, 0))
            return None if offset is None else int(offset)
        finally:
            consumer.close(autocommit=False)

    def marked_sent(self, alert_id: str) -> bool:
        """Whether the de-duplication key of ``alert_id`` (for this webhook) exists."""
        namespace = webhook_namespace(self.webhook.url)
        return bool(self.redis.exists(f"{self.prefix}:notify:{namespace}:{alert_id}"))


@pytest.fixture
def case(
    stack: EmbeddedStack,
    prefix: str,
    tmp_path: Path,
    webhook: WebhookServer,
    redis_client: redis.Redis,
) -> NotifyCase:
    return NotifyCase(stack, prefix, tmp_path, webhook, redis_client)


# -- tests --------------------------------------------------------------------------------------


def test_notify_posts_each_alert_once_as_slack_json(
    case: NotifyCase, caplog: pytest.LogCaptureFixture
) -> None:
    config = case.config()
    topics = config.kafka.topics
    drift = [make_alert(1, "churn", "critical"), make_alert(2, "fraud", "warning")]
    perf = dataclasses.replace(make_alert(3, "churn"), type="performance")
    case.publish(topics.drift_alerts, [*alert_records(drift), b"{not json", b"[1, 2]"])
    # the same alert again, as a worker re-publishes it after a crash
    case.publish(topics.drift_alerts, alert_records(drift[:1]))
    case.publish(topics.performance_alerts, alert_records([perf]))
    caplog.set_level(logging.DEBUG)

    with case.running(config) as (notifier, stats):
        wait_until(lambda: handled(stats) == 6, "all six records handled")
        group = notifier.group_id
        wait_until(lambda: case.committed(group, topics.drift_alerts) == 5, "offsets committed")

    assert (stats.delivered, stats.duplicates, stats.invalid) == (3, 1, 2)
    bodies = case.webhook.delivered()
    assert len(bodies) == 3 and len(case.webhook.received) == 3
    assert {r.path for r in case.webhook.received} == {SECRET_PATH}
    by_model_type = {}
    for body in bodies:
        assert isinstance(body["text"], str) and "\n" not in body["text"]
        attachment = body["attachments"][0]
        fields = {f["title"]: f["value"] for f in attachment["fields"]}
        by_model_type[(fields["Model"], fields["Type"])] = (body["text"], attachment, fields)
    text, attachment, fields = by_model_type[("churn (v3)", "concept_drift")]
    assert text.startswith("[CRITICAL] concept_drift on churn (error_rate, adwin): churn: error")
    assert attachment["color"] == "#d40e0d"
    assert fields["Severity"] == "critical" and fields["Signal"] == "error_rate"
    assert fields["Alert id"] == "a0001-churn" and fields["Value"] == "0.3"
    assert orjson.loads(fields["Stats"]) == {"mean_after": 0.3, "mean_before": 0.08}
    text, _, fields = by_model_type[("fraud (v3)", "concept_drift")]
    assert text.startswith("[WARNING] concept_drift on fraud") and fields["Severity"] == "warning"
    assert ("churn (v3)", "performance") in by_model_type
    assert case.committed(group, topics.performance_alerts) == 1

    namespace = webhook_namespace(case.webhook.url)
    for alert_id in ("a0001-churn", "a0002-fraud", "a0003-churn"):
        key = f"{case.prefix}:notify:{namespace}:{alert_id}"
        assert 0 < int(case.redis.ttl(key)) <= config.notify.dedup_ttl_s
    log_text = caplog.text
    assert "s3cr3tT0k3n" not in log_text and SECRET_PATH not in log_text
    assert "not JSON" in log_text and "not a JSON object but list" in log_text
    assert "already sent" in log_text


def test_notify_retries_failures_and_drops_refused_alerts(
    case: NotifyCase, caplog: pytest.LogCaptureFixture
) -> None:
    config = case.config()
    topic = config.kafka.topics.drift_alerts
    case.webhook.script = [
        (503, {}),
        (503, {}),
        "close",
        (429, {"Retry-After": "1"}),
        (200, {}),  # alert 1 delivered on the 5th attempt
        (400, {}),  # alert 2 refused: dropped, not retried
        (500, {}),
        (200, {}),  # alert 3 on the 2nd attempt
    ]
    case.publish(topic, alert_records([make_alert(1), make_alert(2), make_alert(3)]))
    caplog.set_level(logging.INFO)

    with case.running(config) as (notifier, stats):
        wait_until(lambda: handled(stats) == 3, "three alerts handled", timeout_s=60)
        group = notifier.group_id
        wait_until(lambda: case.committed(group, topic) == 3, "offsets committed")

    assert (stats.delivered, stats.dropped) == (2, 1)
    received = case.webhook.received
    assert [r.answer for r in received] == [
        "503",
        "503",
        "close",
        "429",
        "200",
        "400",
        "500",
        "200",
    ]
    ids = [alert_id_of(r.body) for r in received]
    assert ids == ["a0001-churn"] * 5 + ["a0002-churn"] + ["a0003-churn"] * 2
    assert received[4].at - received[3].at >= 0.9, "Retry-After: 1 was not honoured"
    assert [case.marked_sent(f"a000{n}-churn") for n in (1, 2, 3)] == [True, False, True]
    assert "dropped alert a0002-churn" in caplog.text and "HTTP 400" in caplog.text
    assert "retrying in" in caplog.text and SECRET_PATH not in caplog.text


def test_notify_restart_and_new_group_do_not_resend(case: NotifyCase) -> None:
    config = case.config()
    topic = config.kafka.topics.drift_alerts
    case.publish(topic, alert_records([make_alert(n) for n in range(1, 4)]))

    with case.running(config) as (_, stats):
        wait_until(lambda: stats.delivered == 3, "first three delivered")
    case.publish(topic, alert_records([make_alert(n) for n in range(4, 6)]))

    # same group: resumes after its committed offsets
    with case.running(config) as (_, stats):
        wait_until(lambda: handled(stats) == 2, "two new alerts handled")
    assert (stats.delivered, stats.duplicates) == (2, 0)

    # a new group (no offsets, reads from the beginning), same Redis: all five already sent
    other_group = config.model_copy(
        update={"notify": config.notify.model_copy(update={"group_id": f"{case.prefix}-other"})}
    )
    with case.running(other_group) as (_, stats):
        wait_until(lambda: handled(stats) == 5, "five alerts seen again")
    assert (stats.delivered, stats.duplicates) == (0, 5)
    sent_ids = [alert_id_of(b) for b in case.webhook.delivered()]
    assert sent_ids == [f"a000{n}-churn" for n in range(1, 6)]


def test_notify_rebalance_during_retries_delivers_each_alert_once(
    case: NotifyCase, caplog: pytest.LogCaptureFixture
) -> None:
    config = case.config()
    case.publish(config.kafka.topics.drift_alerts, alert_records([make_alert(1), make_alert(2)]))
    case.webhook.failing = True
    caplog.set_level(logging.INFO)

    def assignments() -> int:
        return caplog.text.count("assigned partitions:")

    with case.running(config) as (_, first):
        wait_until(lambda: len(case.webhook.received) >= 2, "the first notifier retrying")
        with case.running(config) as (_, second):
            # Both members get an assignment; if the partitions went to the second one, the
            # first stops retrying the alert in hand and leaves it to the new owner.
            wait_until(lambda: assignments() >= 3, "the rebalance")
            case.webhook.failing = False
            case.webhook.wait_for(2)
            wait_until(lambda: handled(first) + handled(second) == 2, "both alerts handled")

    assert [alert_id_of(b) for b in case.webhook.delivered()] == ["a0001-churn", "a0002-churn"]
    assert first.delivered + second.delivered == 2


def test_notify_rate_limit_holds_back_and_summarises(case: NotifyCase) -> None:
    window_s = 3.0
    config = case.config(rate_limit={"max_per_model": 3, "window_s": window_s})
    burst = [make_alert(n, "hot", "critical" if n % 2 else "warning") for n in range(1, 11)]
    records = alert_records([*burst, make_alert(11, "calm")])
    case.publish(config.kafka.topics.drift_alerts, records)

    with case.running(config) as (_, stats):
        wait_until(lambda: handled(stats) == 11, "eleven alerts handled")
        case.webhook.wait_for(5)  # 3 hot alerts, 1 calm alert, then the summary of 7 held back

    assert (stats.delivered, stats.suppressed, stats.summaries) == (4, 7, 1)
    received = [r for r in case.webhook.received if "hot" in r.body["text"]]
    assert len(received) == 4
    assert [alert_id_of(r.body) for r in received[:3]] == ["a0001-hot", "a0002-hot", "a0003-hot"]
    summary = received[3].body
    assert summary["text"] == "[RATE LIMITED] 7 alerts for hot not posted"
    detail = summary["attachments"][0]["text"]
    assert "severity 4 warning, 3 critical" in detail
    assert "first a0004-hot, last a0010-hot" in detail and "3 per 3 s" in detail
    # never more than 3 messages for the model in any window (HTTP latency as slack)
    times = [r.at for r in received]
    for start in times:
        assert sum(start <= t < start + window_s - 0.5 for t in times) <= 3
    assert times[3] - times[0] >= window_s - 0.5
    assert len([r for r in case.webhook.received if "calm" in r.body["text"]]) == 1


def test_notify_cli_stops_cleanly_on_sigterm(case: NotifyCase) -> None:
    config = case.config()
    topic = config.kafka.topics.performance_alerts
    case.publish(topic, alert_records([make_alert(1)]))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": case.stack.bootstrap_servers,
        "REDIS_URL": case.stack.redis_url,
        "DRIFTLINE_WEBHOOK_URL": case.webhook.url,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    config_path = case.tmp_path / f"{case.prefix}.yaml"  # written by case.config()
    log_path = case.tmp_path / "notify.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "notify", "--config", str(config_path)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            case.webhook.wait_for(1, timeout_s=60)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_path.read_text()
    assert code == 0, output
    assert "SIGTERM received" in output and "stopped: 1 delivered" in output
    assert "Traceback" not in output
    assert f"webhook {redact_url(case.webhook.url)} " in output
    assert SECRET_PATH not in output and "s3cr3tT0k3n" not in output
    assert case.committed(f"{case.prefix}-notify", topic) == 1
