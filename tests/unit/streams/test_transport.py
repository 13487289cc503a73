"""The worker's faust consumer uses the configured fetch wait instead of faust's fixed 1500 ms."""

from __future__ import annotations

import asyncio

from streams.transport import DriftlineApp, FetchWaitConsumerThread


def test_worker_consumer_uses_configured_fetch_wait() -> None:
    async def build() -> int:
        app = DriftlineApp(
            "transport-test", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=37, web_enabled=False
        )
        consumer_thread = app.consumer._thread
        assert isinstance(consumer_thread, FetchWaitConsumerThread)
        consumer = consumer_thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()  # never started: only closes its client

    assert asyncio.run(build()) == 37
