"""The ``driftline`` command line: worker, dev, demo, alerts, notify, send, replay, status."""

from __future__ import annotations

import logging
import signal
import sys

import click

from streams.config import Config, ConfigError, Connections, load_config


def _load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML config (default: config/driftline.yaml if present, else packaged defaults).",
)

loglevel_option = click.option(
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)


def _setup_logging(loglevel: str) -> None:
    logging.basicConfig(
        level=loglevel.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
    )


@click.group()
@click.version_option(package_name="driftline")
def main() -> None:
    """driftline: streaming drift and performance monitoring for models in production."""


@main.command()
@config_option
@click.option(
    "--web-port",
    type=int,
    default=None,
    help="Port of the status page, /metrics, /healthz and /readyz (0 = pick a free one). "
    "Default: worker.web_port.",
)
@loglevel_option
def worker(config_path: str | None, web_port: int | None, loglevel: str) -> None:
    """Run a worker (one member of the consumer group). Reads KAFKA_BOOTSTRAP_SERVERS, REDIS_URL."""
    from streams.worker import run_worker

    config = _load(config_path)
    _setup_logging(loglevel)
    from kafka.errors import KafkaError

    from streams.topics import TopicLayoutError

    connections = Connections.from_env()
    try:
        run_worker(config, connections, web_port, loglevel)
    except TopicLayoutError as exc:
        raise click.ClickException(str(exc)) from None
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot reach Kafka at {connections.bootstrap_servers} "
            f"(KAFKA_BOOTSTRAP_SERVERS): {type(exc).__name__}: {exc}"
        ) from None


@main.command()
@config_option
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 16))
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(1, 256))
def dev(config_path: str | None, workers: int, partitions: int) -> None:
    """Embedded stack (broker + Redis + workers) without the simulator, until Ctrl-C."""
    from streams.devstack import run_dev

    sys.exit(run_dev(_load(config_path), config_path, workers, partitions))


@main.command()
@config_option
@click.option("--duration", default=60.0, show_default=True, help="Seconds of simulated traffic.")
@click.option("--rate", default=300, show_default=True, help="Predictions per second per model.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the detection table as JSON here.",
)
def demo(
    config_path: str | None,
    duration: float,
    rate: int,
    workers: int,
    seed: int,
    json_out: str | None,
) -> None:
    """Simulate three drifting models on the embedded stack and report what was detected."""
    from streams.demo import run_demo

    if config_path is not None:
        _load(config_path)
    sys.exit(
        run_demo(
            duration_s=duration,
            rate_per_model=rate,
            workers=workers,
            config_path=config_path,
            seed=seed,
            json_out=json_out,
        )
    )


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert, not the newest.")
@click.option("--max", "max_alerts", type=int, default=None, help="Stop after N alerts.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Stop after N seconds.")
def alerts(
    config_path: str | None,
    as_json: bool,
    from_beginning: bool,
    max_alerts: int | None,
    timeout_s: float | None,
) -> None:
    """Tail the drift and performance alert topics."""
    from streams.alert_view import tail_alerts

    config = _load(config_path)
    conn = Connections.from_env()
    topics = [config.kafka.topics.drift_alerts, config.kafka.topics.performance_alerts]
    options = conn.kafka_python_options()
    bootstrap = ",".join(options.pop("bootstrap_servers"))
    sys.exit(
        tail_alerts(bootstrap, topics, as_json, from_beginning, max_alerts, timeout_s, options)
    )


@main.command()
@config_option
@click.option(
    "--webhook",
    "webhook_url",
    envvar="DRIFTLINE_WEBHOOK_URL",
    show_envvar=True,
    required=True,
    help="Slack-compatible incoming-webhook URL. It is a secret: prefer the variable.",
)
@loglevel_option
def notify(config_path: str | None, webhook_url: str, loglevel: str) -> None:
    """Post each alert once to a webhook (Slack JSON), rate-limited per model, until stopped.

    Reads KAFKA_BOOTSTRAP_SERVERS and REDIS_URL; settings under `notify:` in the config.
    """
    import redis
    from kafka.errors import KafkaError

    from streams.notify import Notifier, stop_on_signals
    from streams.webhook import validate_webhook_url

    config = _load(config_path)
    try:
        validate_webhook_url(webhook_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _setup_logging(loglevel)
    if loglevel != "debug":  # kafka-python narrates every connection at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)
    connections = Connections.from_env()
    notifier = Notifier(config, connections, webhook_url)
    try:
        notifier.check_redis()
    except redis.RedisError as exc:
        raise click.ClickException(
            f"cannot reach Redis at {connections.redacted_redis_url()} (REDIS_URL): {exc}"
        ) from None
    try:
        with stop_on_signals(notifier.stop):
            notifier.run()
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot reach Kafka at {connections.bootstrap_servers} "
            f"(KAFKA_BOOTSTRAP_SERVERS): {type(exc).__name__}: {exc}"
        ) from None


@main.command()
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def send(config_path: str | None, file: str, no_progress: bool) -> None:
    """Publish a JSON-lines file of prediction and label events."""
    from streams.send import send_file

    config = _load(config_path)
    conn = Connections.from_env()
    options = conn.kafka_python_options()
    bootstrap = ",".join(options.pop("bootstrap_servers"))
    result = send_file(file, bootstrap, config.kafka.topics, not no_progress, options)
    click.echo(str(result))


@main.command()
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--partitions",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Partition count of the topics to emulate (default: kafka.partitions).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the alerts here as JSON lines (default: print them).",
)
def replay(config_path: str | None, file: str, partitions: int | None, out: str | None) -> None:
    """Run the detectors over a JSON-lines file of events, without Kafka or Redis.

    Same input and config give the same alerts (ids included) as the streaming pipeline
    for the file sent with `driftline send` to fresh topics of the same partition count.
    """
    import time

    from rich.console import Console
    from rich.table import Table

    from streams.alert_view import format_alert
    from streams.replay import replay_file

    config = _load(config_path)
    result = replay_file(file, config, partitions)
    now_ms = int(time.time() * 1000)
    console = Console()
    if out is not None:
        with open(out, "wb") as fh:
            for alert in result.alerts:
                fh.write(alert.to_json(now_ms) + b"\n")
        console.print(f"{len(result.alerts)} alerts written to {out}")
    else:
        for alert in result.alerts:
            click.echo(format_alert(alert.to_dict(now_ms)))
    table = Table(
        "model",
        "task",
        "predictions",
        "labels",
        "joined",
        "expired",
        "alerts",
        "window metric",
        title="per-model summary",
    )
    for mid in sorted(result.models):
        m = result.models[mid].summary()
        metric = m["window_metric"]
        table.add_row(
            mid,
            str(m["task"]),
            str(m["predictions"]),
            str(m["labels"]),
            str(m["joined"]),
            str(m["expired_predictions"] + m["expired_labels"]),
            str(m["alerts"]),
            "-" if metric is None else f"{metric:.4f}",
        )
    console.print(table)
    if result.dead_letters or result.skipped_lines:
        console.print(
            f"{len(result.dead_letters)} records would go to the dead-letter topic; "
            f"{len(result.skipped_lines)} lines skipped"
        )
        for lineno, reason in result.skipped_lines[:20]:
            console.print(f"  line {lineno}: {reason}")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object: partitions and models.")
def status(config_path: str | None, as_json: bool) -> None:
    """Per partition: owner, epoch, applied offsets, lag, pending joins; per model: counters,
    windowed metric and detector states (from Redis, lag from Kafka's end offsets)."""
    import orjson
    import redis

    from streams.status import (
        kafka_end_offsets,
        model_status,
        read_models_by_partition,
        read_partitions,
        with_lag,
    )

    config = _load(config_path)
    conn = Connections.from_env()
    prefix, group = config.state.key_prefix, config.kafka.group_id
    client = redis.Redis.from_url(conn.redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        parts = read_partitions(client, prefix, group)
        models = [model_status(p, m) for p, m in read_models_by_partition(client, prefix, group)]
    except redis.RedisError as exc:
        raise click.ClickException(
            f"cannot read the state from Redis at {conn.redacted_redis_url()} (REDIS_URL): {exc}"
        ) from None
    finally:
        client.close()
    topics = config.kafka.topics
    kafka_error = None
    try:
        ends = kafka_end_offsets(
            conn.kafka_python_options(),
            {"predictions": topics.predictions, "labels": topics.labels},
        )
    except Exception as exc:  # status still shows what Redis knows
        ends, kafka_error = {}, f"{type(exc).__name__}: {exc}"
    parts = with_lag(parts, ends)
    if as_json:
        body: dict[str, object] = {"partitions": parts, "models": models}
        if kafka_error:
            body["kafka_error"] = kafka_error
        click.echo(orjson.dumps(body).decode())
        return
    from rich.console import Console
    from rich.table import Table

    def num(value: object) -> str:
        return "?" if value is None else str(value)

    console = Console()
    if kafka_error:
        console.print(f"[yellow]lag unknown: cannot reach Kafka ({kafka_error})[/yellow]")
    table = Table(
        "partition",
        "owner (last assigned)",
        "epoch",
        "predictions offset",
        "labels offset",
        "lag predictions",
        "lag labels",
        "pending joins",
        title="partitions",
    )
    for p in parts:
        table.add_row(
            str(p["partition"]),
            str(p["owner"] or "-"),
            str(p["epoch"]),
            str(p["offset_predictions"]),
            str(p["offset_labels"]),
            num(p["lag_predictions"]),
            num(p["lag_labels"]),
            f"{p['join_pending']} (+{p['join_buffered']} buffered)",
        )
    console.print(table)
    level_names = {1: "warning", 2: "critical"}
    mt = Table(
        "model",
        "part.",
        "task",
        "predictions",
        "labels",
        "joined",
        "expired",
        "alerts",
        "window metric",
        "error rate",
        "levels",
        "detectors",
        title="models",
    )
    for m in models:
        metric, error_rate = m["window_metric"], m["error_rate"]
        levels = ", ".join(f"{s} {level_names.get(v, v)}" for s, v in m["levels"].items() if v)
        detectors = m["detectors"]
        drifting = [k for k, d in detectors.items() if d.get("drift_detected")]
        mt.add_row(
            m["model_id"],
            str(m["partition"]),
            str(m["task"]),
            str(m["predictions"]),
            str(m["labels"]),
            str(m["joined"]),
            str(m["expired_predictions"] + m["expired_labels"]),
            str(m["alerts"]),
            "-" if metric is None else f"{metric:.4f}",
            "-" if error_rate is None else f"{error_rate:.4f}",
            levels or "ok",
            f"{len(detectors)}" + (f" (drift: {', '.join(drifting)})" if drifting else ""),
        )
    console.print(mt)


def _ignore_sigpipe() -> None:
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


if __name__ == "__main__":
    _ignore_sigpipe()
    main()
