"""A bare faust agent that only decodes each record: faust's per-record cost, for the throughput
benchmark. ``python -m bench.faust_bare BOOTSTRAP GROUP RECORDS TOPIC [TOPIC ...]`` prints one
JSON line ``{"records": n, "events": e, "seconds": s}`` (timed from the first record) and exits.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import faust
import orjson


def main(argv: list[str]) -> None:
    """Consume ``RECORDS`` records of the topics from the beginning, decoding each."""
    bootstrap, group, total_text, *topics = argv
    total = int(total_text)
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    source = app.topic(*topics, key_serializer="raw", value_serializer="raw")
    seen = {"records": 0, "events": 0}
    started: list[float] = []

    @app.agent(source, name="bare-decode")
    async def decode(stream: Any) -> None:
        async for value in stream:
            if not started:
                started.append(time.perf_counter())
            obj = orjson.loads(value)
            seen["records"] += 1
            seen["events"] += len(obj) if isinstance(obj, list) else 1
            if seen["records"] >= total:
                elapsed = time.perf_counter() - started[0]
                print(orjson.dumps({**seen, "seconds": elapsed}).decode(), flush=True)
                os._exit(0)  # the measurement is done; skip faust's graceful shutdown

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
