"""``driftline dev``: the embedded stack with workers, for local development, until Ctrl-C."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

from streams.config import Config
from streams.embedded import EmbeddedStack
from streams.worker_process import WorkerProcess


def run_dev(config: Config, config_path: str | None, workers: int, partitions: int) -> int:
    """Start broker, Redis (unless REDIS_URL) and ``workers`` workers; print how to connect."""
    topics = config.kafka.topics
    log_dir = Path(tempfile.mkdtemp(prefix="driftline-dev-"))
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    procs: list[WorkerProcess] = []
    with EmbeddedStack() as stack:
        stack.create_topics([topics.predictions, topics.labels], partitions=partitions)
        stack.create_topics(
            [topics.drift_alerts, topics.performance_alerts, topics.dead_letter], partitions=1
        )
        for i in range(workers):
            procs.append(
                WorkerProcess(
                    log_dir / f"worker{i}.log",
                    stack.bootstrap_servers,
                    stack.redis_url,
                    config_path,
                ).start()
            )
        urls = [w.web_url() for w in procs]
        print(f"KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap_servers}")
        print(f"REDIS_URL={stack.redis_url}")
        print(
            f"topics: {topics.predictions}, {topics.labels} ({partitions} partitions) -> "
            f"{topics.drift_alerts}, {topics.performance_alerts}, {topics.dead_letter}"
        )
        for url in urls:
            print(f"worker: {url}")
        print(f"logs: {log_dir}")
        print("Ctrl-C stops everything.", flush=True)
        try:
            while not stop:
                for w in procs:
                    if not w.running:
                        print(f"a worker exited ({w.returncode}); see {w.log_path}", flush=True)
                        return 1
                time.sleep(0.5)
        finally:
            for w in procs:
                w.stop()
    print("stopped.")
    return 0
