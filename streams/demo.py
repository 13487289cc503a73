"""`driftline demo`: three simulated models with injected drifts, end to end on the embedded stack.

Starts a private broker + Redis (:class:`EmbeddedStack`) and ``workers`` worker processes, publishes
the simulated stream (:mod:`streams.simulator`) in real time, shows progress and alerts live, waits
until the workers have processed everything, and scores the alerts against the injected drifts:
exit code 0 only if every drift was detected and there was no false alarm.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streams.alert_view import alert_text, format_alert
from streams.config import Config, ConfigError, load_config, parse_config
from streams.embedded import EmbeddedStack, EmbeddedStackError
from streams.simulator import Evaluation, Simulation, evaluate_alerts, observed_ms
from streams.worker_process import WorkerProcess, stop_all

__all__ = ["run_demo"]

INPUT_PARTITIONS = 4
SESSION_TIMEOUT_MS = 6000  # Tansu completes a fresh group join after ~half of this
HEARTBEAT_MS = 1000
STOP_GRACE_S = 10.0
PROCESS_TIMEOUT_S = 60.0
ALERT_GRACE_S = 5.0
PLAIN_PROGRESS_EVERY_S = 5.0
_LOG_TAIL_LINES = 40


class DemoError(RuntimeError):
    """The demo cannot go on (a worker died, the stack failed); the message says why."""


class _Terminated(BaseException):
    """SIGTERM received: unwind like Ctrl-C so everything started is stopped."""


# -- workers ------------------------------------------------------------------------------------


def _web_port() -> int:
    """A localhost port that was free a moment ago, for a worker's web server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_workers(
    count: int, config_file: Path, stack: EmbeddedStack, log_dir: Path
) -> list[WorkerProcess]:
    """Start ``count`` worker processes, each logging to a file in ``log_dir``.

    Their web ports are chosen here, so the status pages can be shown before the workers serve.
    """
    workers: list[WorkerProcess] = []
    for i in range(count):
        worker = WorkerProcess(
            log_dir / f"worker-{i}.log",
            stack.bootstrap_servers,
            stack.redis_url,
            config_file,
            web_port=_web_port(),
        )
        try:
            workers.append(worker.start())
        except OSError as exc:
            raise DemoError(f"cannot start worker {i}: {exc}") from exc
    return workers


def _check_workers(workers: list[WorkerProcess]) -> None:
    """Raise :class:`DemoError` if a worker has exited."""
    for i, w in enumerate(workers):
        if not w.running:
            raise DemoError(f"worker {i} exited with code {w.returncode}")


def _status_pages(workers: list[WorkerProcess]) -> list[str]:
    """One line per worker: the URL of its status page (the web server is on localhost)."""
    return [
        f"status page of worker {i}: http://127.0.0.1:{w.web_port}/ "
        "(JSON at /api/status, metrics at /metrics)"
        for i, w in enumerate(workers)
    ]


# -- config -------------------------------------------------------------------------------------


def _demo_config(config: Config, stack: EmbeddedStack, directory: Path) -> tuple[Config, Path]:
    """The user's config with demo connection settings, written to ``directory``.

    Short session timeouts (Tansu's group join waits ~half of it), the web server on localhost,
    and, when Redis is not the stack's own, a unique key prefix so earlier runs' state is not used.
    """
    data = config.model_dump(mode="json")
    kafka = data["kafka"]
    kafka["session_timeout_ms"] = min(int(kafka["session_timeout_ms"]), SESSION_TIMEOUT_MS)
    kafka["heartbeat_interval_ms"] = min(int(kafka["heartbeat_interval_ms"]), HEARTBEAT_MS)
    kafka["partitions"] = INPUT_PARTITIONS
    data["worker"]["web_host"] = "127.0.0.1"
    if not stack.owns_redis:
        data["state"]["key_prefix"] = f"{data['state']['key_prefix']}-demo-{uuid.uuid4().hex[:8]}"
    path = directory / "demo-config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return parse_config(data, str(path)), path


def _delete_state(redis_url: str, key_prefix: str) -> None:
    """Remove this run's keys from a Redis the stack does not own."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{key_prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


# -- monitor: alerts and model summaries, in a background thread --------------------------------


@dataclass
class _Monitor:
    """Collects alerts (manual assignment, from the beginning, no group) and model summaries."""

    bootstrap_servers: str
    alert_topics: list[str]
    redis_url: str
    key_prefix: str
    group: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_error: str | None = None
    alert_error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _seen: set[str] = field(default_factory=set)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="driftline-demo-monitor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def snapshot(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        with self.lock:
            return list(self.alerts), {k: dict(v) for k, v in self.summaries.items()}

    def _run(self) -> None:
        consumer = None
        next_status = 0.0
        try:
            while not self._stop.is_set():
                if consumer is None:
                    consumer = self._open_consumer()
                if consumer is not None:
                    self._poll_alerts(consumer)
                else:
                    self._stop.wait(0.5)
                if time.monotonic() >= next_status:
                    self._refresh_status()
                    next_status = time.monotonic() + 1.0
        finally:
            if consumer is not None:
                consumer.close()

    def _open_consumer(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        consumer = None
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id="driftline-demo-alerts",
            )
            parts = [
                TopicPartition(t, p)
                for t in self.alert_topics
                for p in sorted(consumer.partitions_for_topic(t))
            ]
            if not parts:
                raise RuntimeError(f"no partitions for {self.alert_topics}")
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
        except Exception as exc:  # the broker is local; report and retry
            with self.lock:
                self.alert_error = f"alert consumer: {exc}"
            if consumer is not None:
                consumer.close()
            return None
        return consumer

    def _poll_alerts(self, consumer: Any) -> None:
        try:
            batches = consumer.poll(timeout_ms=200)
        except Exception as exc:
            with self.lock:
                self.alert_error = f"alert consumer: {exc}"
            self._stop.wait(0.5)
            return
        records = sorted(
            (r for b in batches.values() for r in b),
            key=lambda r: (r.timestamp, r.topic, r.partition, r.offset),
        )
        for record in records:
            try:
                alert = orjson.loads(record.value)
            except (orjson.JSONDecodeError, TypeError):
                continue
            if not isinstance(alert, dict):
                continue
            aid = alert.get("alert_id")
            with self.lock:
                if isinstance(aid, str):
                    if aid in self._seen:
                        continue
                    self._seen.add(aid)
                self.alerts.append(alert)

    def _refresh_status(self) -> None:
        try:
            from streams.status import read_model_summaries

            rows = read_model_summaries(self.redis_url, self.key_prefix, self.group)
        except Exception as exc:  # not written yet, Redis busy, ...: show "-" and go on
            with self.lock:
                self.status_error = f"{type(exc).__name__}: {exc}"
            return
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:
            mid = str(row.get("model_id"))
            into = merged.setdefault(mid, {"model_id": mid})
            for key, value in row.items():
                if key in ("predictions", "labels", "joined", "alerts") and isinstance(value, int):
                    into[key] = into.get(key, 0) + value
                elif value is not None or key not in into:
                    into[key] = value
        with self.lock:
            self.summaries = merged
            self.status_error = None


# -- the view ------------------------------------------------------------------------------------


@dataclass
class _Progress:
    """What has been published so far, per model and kind."""

    sim: Simulation
    started: float = field(default_factory=time.monotonic)
    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    rate_window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    phase: str = "producing"

    def __post_init__(self) -> None:
        self.sent = {m: {"predictions": 0, "labels": 0} for m in self.sim.models}

    @property
    def total(self) -> int:
        return sum(c["predictions"] + c["labels"] for c in self.sent.values())

    def sample_rate(self) -> float:
        """Events per second over the last ~2 s."""
        now = time.monotonic()
        self.rate_window.append((now, self.total))
        while len(self.rate_window) > 2 and now - self.rate_window[0][0] > 2.0:
            self.rate_window.popleft()
        t0, n0 = self.rate_window[0]
        return (self.total - n0) / (now - t0) if now > t0 else 0.0


def _metric(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "-"
    value = summary.get("window_metric")
    if not isinstance(value, (int, float)):
        return "-"
    name = "acc" if summary.get("task") == "classification" else "mae"
    return f"{name} {value:.3f}"


def _count(summary: dict[str, Any] | None, key: str) -> str:
    if summary is None or not isinstance(summary.get(key), int):
        return "-"
    return str(summary[key])


def _render(progress: _Progress, monitor: _Monitor, pages: list[str], rate: float) -> Group:
    alerts, summaries = monitor.snapshot()
    elapsed = time.monotonic() - progress.started
    header = Text.assemble(
        ("driftline demo", "bold"),
        f"  {progress.phase}  {elapsed:5.1f}s / {progress.sim.duration_s:g}s  ",
        (f"{rate:7.0f} events/s", "cyan"),
        f"  published {progress.total}  alerts {len(alerts)}",
    )
    for line in pages:
        header.append(f"\n{line}", style="dim")
    table = Table(expand=False)
    for col in (
        "model",
        "injected",
        "predictions sent/processed",
        "labels sent/processed",
        "joined",
        "window metric",
        "alerts",
    ):
        table.add_column(col)
    by_model: dict[str, int] = {}
    for a in alerts:
        by_model[str(a.get("model_id"))] = by_model.get(str(a.get("model_id")), 0) + 1
    for inj in progress.sim.injections:
        sent = progress.sent[inj.model_id]
        summary = summaries.get(inj.model_id)
        state = (
            f"{inj.type} from #{inj.change_index}"
            if sent["predictions"] > inj.change_index
            else "not yet"
        )
        n_alerts = by_model.get(inj.model_id, 0)
        table.add_row(
            inj.model_id,
            state,
            f"{sent['predictions']}/{_count(summary, 'predictions')}",
            f"{sent['labels']}/{_count(summary, 'labels')}",
            _count(summary, "joined"),
            _metric(summary),
            Text(str(n_alerts), style="bold red" if n_alerts else "green"),
        )
    parts: list[Any] = [header, table]
    if alerts:
        parts.append(Text("latest alerts", style="bold"))
        parts += [alert_text(a) for a in alerts[-8:]]
    if monitor.status_error:
        parts.append(Text(f"(model status unavailable: {monitor.status_error})", style="dim"))
    if monitor.alert_error:
        parts.append(Text(f"({monitor.alert_error})", style="dim"))
    return Group(*parts)


def _plain_line(progress: _Progress, monitor: _Monitor, rate: float) -> str:
    _, summaries = monitor.snapshot()
    elapsed = time.monotonic() - progress.started
    models = "; ".join(
        f"{m} {c['predictions']}/{_count(summaries.get(m), 'predictions')} pred "
        f"{_metric(summaries.get(m))}"
        for m, c in progress.sent.items()
    )
    return (
        f"[{elapsed:6.1f}s] {progress.phase}: published {progress.total} events "
        f"({rate:.0f}/s); sent/processed: {models}"
    )


class _View:
    """Live rich view on a terminal; plain progress lines (and one line per alert) otherwise."""

    def __init__(
        self, console: Console, progress: _Progress, monitor: _Monitor, workers: list[WorkerProcess]
    ) -> None:
        self.console = console
        self.progress = progress
        self.monitor = monitor
        self.workers = workers
        self.live: Live | None = None
        self.pages = _status_pages(workers)
        self._next_plain = 0.0
        self._printed_alerts = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        if self.console.is_terminal:
            rate = self.progress.sample_rate()
            with Live(
                _render(self.progress, self.monitor, self.pages, rate),
                console=self.console,
                refresh_per_second=4,
                transient=False,
            ) as live:
                self.live = live
                try:
                    yield
                finally:
                    self.refresh(force=True)
                    self.live = None
        else:
            yield
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        rate = self.progress.sample_rate()
        if self.live is not None:
            self.live.update(_render(self.progress, self.monitor, self.pages, rate))
            return
        alerts, _ = self.monitor.snapshot()
        for alert in alerts[self._printed_alerts :]:
            self.console.print(f"ALERT {format_alert(alert)}", markup=False, soft_wrap=True)
        self._printed_alerts = len(alerts)
        if force or now >= self._next_plain:
            self.console.print(
                _plain_line(self.progress, self.monitor, rate), markup=False, soft_wrap=True
            )
            self._next_plain = now + PLAIN_PROGRESS_EVERY_S


# -- producing and waiting -----------------------------------------------------------------------


def _produce(
    sim: Simulation,
    config: Config,
    bootstrap: str,
    progress: _Progress,
    view: _View,
    workers: list[WorkerProcess],
) -> None:
    """Publish the simulation in real time: each event when its ``send_at`` comes."""
    from kafka import KafkaProducer

    topics = config.kafka.topics
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=10,
        batch_size=256 * 1024,
        client_id="driftline-demo",
    )
    try:
        events = iter(sim)
        pending = next(events, None)
        started = time.monotonic()
        progress.started = started
        next_refresh = 0.0
        while pending is not None:
            now = time.monotonic() - started
            burst = 0
            while pending is not None and pending.send_at <= now and burst < 5000:
                ev = pending.event
                topic = topics.predictions if pending.kind == "prediction" else topics.labels
                producer.send(topic, key=ev["model_id"].encode("utf-8"), value=orjson.dumps(ev))
                progress.sent[ev["model_id"]][
                    "predictions" if pending.kind == "prediction" else "labels"
                ] += 1
                pending = next(events, None)
                burst += 1
            if time.monotonic() >= next_refresh:
                _check_workers(workers)
                view.refresh()
                next_refresh = time.monotonic() + 0.25
            if pending is not None:
                wait = pending.send_at - (time.monotonic() - started)
                if wait > 0:
                    time.sleep(min(wait, 0.05))
        producer.flush()
    finally:
        producer.close()


def _processed_all(progress: _Progress, monitor: _Monitor) -> bool:
    _, summaries = monitor.snapshot()
    for model, sent in progress.sent.items():
        if sent["predictions"] == 0 and sent["labels"] == 0:
            continue
        s = summaries.get(model)
        if s is None:
            return False
        if s.get("predictions", 0) < sent["predictions"] or s.get("labels", 0) < sent["labels"]:
            return False
    return True


def _wait_processed(
    progress: _Progress, monitor: _Monitor, view: _View, workers: list[WorkerProcess]
) -> bool:
    """Wait until every sent event shows in the workers' state (or time out); True if so."""
    progress.phase = "waiting for workers"
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    done = False
    while time.monotonic() < deadline:
        _check_workers(workers)
        view.refresh()
        if _processed_all(progress, monitor):
            done = True
            break
        time.sleep(0.25)
    progress.phase = "collecting alerts"
    grace_end = time.monotonic() + ALERT_GRACE_S
    while time.monotonic() < grace_end:
        view.refresh()
        time.sleep(0.25)
    progress.phase = "done"
    return done


# -- report --------------------------------------------------------------------------------------


def _report_table(evaluation: Evaluation) -> Table:
    table = Table(title="injected drifts")
    for col in (
        "model",
        "type",
        "signal",
        "injected at",
        "detected",
        "delay (events)",
        "delay (s)",
        "detector",
        "related alerts",
    ):
        table.add_column(col)
    for r in evaluation.results:
        alert = r.alert or {}
        related = "-"
        if r.related:
            related = f"{len(r.related)} performance"
            first = observed_ms(r.related[0])
            if first is not None and r.injection.change_at_ms is not None:
                related += f" (first after {(first - r.injection.change_at_ms) / 1000:.1f}s)"
        table.add_row(
            r.injection.model_id,
            r.injection.type,
            r.injection.signal,
            str(r.injection.change_index),
            Text("yes", style="green") if r.detected else Text("no", style="bold red"),
            "-" if r.delay_events is None else str(r.delay_events),
            "-" if r.delay_s is None else f"{r.delay_s:.2f}",
            "-" if not alert else str(alert.get("detector")),
            related,
        )
    return table


def _print_report(console: Console, evaluation: Evaluation) -> None:
    console.print(_report_table(evaluation))
    console.print(
        "delay: predictions the model made (events) and event time (s) from the first drifted "
        "prediction to the alert.",
        style="dim",
        soft_wrap=True,
    )
    if evaluation.false_alarms:
        console.print(Text(f"false alarms: {len(evaluation.false_alarms)}", style="bold red"))
        for fa in evaluation.false_alarms:
            console.print(
                f"  {format_alert(fa.alert)}\n    -> {fa.reason}", markup=False, soft_wrap=True
            )
    else:
        console.print(Text("false alarms: none", style="green"))


def _failure_reasons(evaluation: Evaluation) -> list[str]:
    reasons = [
        f"{r.injection.type} on {r.injection.model_id} was not detected"
        for r in evaluation.results
        if not r.detected
    ]
    if evaluation.false_alarms:
        reasons.append(f"{len(evaluation.false_alarms)} false alarm(s)")
    return reasons


# -- entry point ---------------------------------------------------------------------------------


def run_demo(
    duration_s: float = 60,
    rate_per_model: int = 300,
    workers: int = 2,
    config_path: str | None = None,
    seed: int = 7,
    json_out: str | None = None,
) -> int:
    """Run the demo end to end; return 0 if every injected drift was detected without false alarms.

    Everything started here (broker, Redis, workers) is stopped before returning, also on Ctrl-C
    or SIGTERM (exit code 130 / 143).
    """
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        console.print(f"driftline demo: invalid configuration:\n{exc}", markup=False)
        return 2
    if workers < 1:
        console.print("driftline demo: need at least one worker")
        return 2
    try:
        sim = Simulation(rate_per_model, duration_s, seed=seed, start_ms=int(time.time() * 1000))
    except ValueError as exc:
        console.print(f"driftline demo: {exc}", markup=False)
        return 2

    previous_term: Any = None
    previous_int: Any = signal.getsignal(signal.SIGINT)
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:

        def _on_term(signum: int, frame: FrameType | None) -> None:
            raise _Terminated()

        previous_term = signal.signal(signal.SIGTERM, _on_term)

    tmp = Path(tempfile.mkdtemp(prefix="driftline-demo-"))
    stack = EmbeddedStack()
    procs: list[WorkerProcess] = []
    monitor: _Monitor | None = None
    demo_config: Config | None = None
    failed = False
    try:
        console.print(
            f"driftline demo: {len(sim.models)} models x {rate_per_model} predictions/s "
            f"for {duration_s:g}s, {workers} worker(s), seed {seed}; drifts injected at "
            f"prediction #{sim.change_index}"
        )
        stack.start()
        demo_config, config_file = _demo_config(config, stack, tmp)
        topics = demo_config.kafka.topics
        stack.create_topics([topics.predictions, topics.labels], INPUT_PARTITIONS)
        stack.create_topics([topics.drift_alerts, topics.performance_alerts, topics.dead_letter], 1)
        procs = _start_workers(workers, config_file, stack, tmp)
        for line in _status_pages(procs):
            console.print(line, markup=False, soft_wrap=True)
        monitor = _Monitor(
            stack.bootstrap_servers,
            [topics.drift_alerts, topics.performance_alerts],
            stack.redis_url,
            demo_config.state.key_prefix,
            demo_config.kafka.group_id,
        )
        monitor.start()
        progress = _Progress(sim)
        view = _View(console, progress, monitor, procs)
        with view.running():
            _produce(sim, demo_config, stack.bootstrap_servers, progress, view, procs)
            processed = _wait_processed(progress, monitor, view, procs)
        alerts, _ = monitor.snapshot()
        evaluation = evaluate_alerts(sim.injections, alerts)
        _print_report(console, evaluation)
        reasons = _failure_reasons(evaluation)
        if not processed:
            console.print(
                f"warning: the workers had not processed every event after "
                f"{PROCESS_TIMEOUT_S:g}s"
                + (f" ({monitor.status_error})" if monitor.status_error else "")
            )
        if json_out:
            _, summaries = monitor.snapshot()
            report = {
                **evaluation.to_dict(),
                "reasons": reasons,
                "all_processed": processed,
                "alerts": len(alerts),
                "settings": {
                    "duration_s": duration_s,
                    "rate_per_model": rate_per_model,
                    "workers": workers,
                    "seed": seed,
                },
                "sent": progress.sent,
                "processed": summaries,
            }
            Path(json_out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        if reasons:
            failed = True
            console.print(Text("FAILED: " + "; ".join(reasons), style="bold red"))
            return 1
        console.print(
            Text("OK: every injected drift was detected, no false alarms", style="bold green")
        )
        return 0
    except KeyboardInterrupt:
        console.print("\ndriftline demo: interrupted; stopping")
        return 130
    except _Terminated:
        console.print("\ndriftline demo: terminated; stopping")
        return 143
    except (DemoError, EmbeddedStackError) as exc:
        failed = True
        console.print(Text(f"driftline demo: {exc}", style="bold red"))
        return 1
    finally:
        if on_main:  # a second Ctrl-C or SIGTERM must not cut the cleanup short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if monitor is not None:
            monitor.stop()
        stop_all(procs, STOP_GRACE_S)
        if failed:
            for i, w in enumerate(procs):
                console.print(
                    f"--- worker {i} log ({w.log_path.name}, last lines) ---", markup=False
                )
                console.print(w.tail(), markup=False, highlight=False)
        if demo_config is not None and stack.running and not stack.owns_redis:
            with contextlib.suppress(Exception):
                _delete_state(stack.redis_url, demo_config.state.key_prefix)
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if on_main:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous_int is None else previous_int)
            signal.signal(
                signal.SIGTERM, signal.SIG_DFL if previous_term is None else previous_term
            )
