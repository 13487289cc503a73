"""The worker's faust consumer: the configured fetch wait instead of faust's fixed 1500 ms, and
record deliveries run inline unless they block."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from faust.types import TP

from streams.transport import DriftlineApp, DriftlineConsumer, FetchWaitConsumerThread


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


def _eager_consumer(app: DriftlineApp) -> DriftlineConsumer:
    consumer = app.consumer
    assert isinstance(consumer, DriftlineConsumer)
    return consumer


def test_delivery_that_does_not_block_runs_inline_without_tasks() -> None:
    async def run() -> tuple[list[object], int]:
        app = DriftlineApp("eager-1", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=10,
                           web_enabled=False)  # fmt: skip
        consumer = _eager_consumer(app)
        flow = asyncio.Event()
        delivered: list[int] = []

        async def deliver(n: int) -> int:
            delivered.append(n)
            return n * 2

        before = len(asyncio.all_tasks())
        seen = 0
        for n in range(3):
            result = await consumer.wait_first(deliver(n), flow.wait())
            assert result.done and not result.stopped
            seen = max(seen, len(asyncio.all_tasks()) - before)
            assert result.results == [n * 2]
        return list(delivered), seen

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the unused flow.wait() is closed
        delivered, extra_tasks = asyncio.run(run())
    assert delivered == [0, 1, 2]
    assert extra_tasks == 0


def test_delivery_that_blocks_continues_and_can_be_abandoned_on_flow_suspension() -> None:
    async def run() -> tuple[list[str], list[str]]:
        app = DriftlineApp("eager-2", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=10,
                           web_enabled=False)  # fmt: skip
        consumer = _eager_consumer(app)
        suspend = asyncio.Event()
        room = asyncio.Event()
        steps: list[str] = []

        async def deliver(tag: str) -> str:
            steps.append(f"{tag}:start")
            try:
                await room.wait()  # a full buffer
            except asyncio.CancelledError:
                steps.append(f"{tag}:cancelled")
                raise
            await asyncio.sleep(0)  # a second suspension, as faust's delivery can have
            steps.append(f"{tag}:done")
            return tag

        # blocks, then finishes once there is room
        asyncio.get_running_loop().call_later(0.01, room.set)
        done = await consumer.wait_first(deliver("a"), suspend.wait())
        room.clear()
        # blocks, and is abandoned when the flow is suspended (a rebalance)
        asyncio.get_running_loop().call_later(0.01, suspend.set)
        abandoned = await consumer.wait_first(deliver("b"), suspend.wait())
        await asyncio.sleep(0.01)  # let the cancelled delivery unwind
        return steps, [str(x) for x in done.results + abandoned.results]

    steps, results = asyncio.run(run())
    assert steps == ["a:start", "a:done", "b:start", "b:cancelled"]
    assert results == ["a", "True"]  # the second returned what the suspension wait() did


def test_delivery_error_propagates() -> None:
    async def run() -> None:
        app = DriftlineApp("eager-3", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=10,
                           web_enabled=False)  # fmt: skip
        consumer = _eager_consumer(app)

        async def deliver() -> None:
            raise ValueError("undecodable")

        async def blocked_then_fails() -> None:
            await asyncio.sleep(0.001)
            raise KeyError("later")

        flow = asyncio.Event()
        with pytest.raises(ValueError, match="undecodable"):
            await consumer.wait_first(deliver(), flow.wait())
        with pytest.raises(KeyError, match="later"):
            await consumer.wait_first(blocked_then_fails(), flow.wait())

    asyncio.run(run())


def test_pause_holds_while_the_stream_buffer_drains() -> None:
    """Faust re-activates a partition when its stream buffer drains, paused or not."""

    async def run() -> tuple[bool, bool, bool]:
        app = DriftlineApp("eager-4", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=10,
                           web_enabled=False)  # fmt: skip
        consumer = _eager_consumer(app)
        a, b = TP("preds", 0), TP("labels", 0)
        consumer._set_active_tps({a, b})
        consumer.on_buffer_full(a)  # stream buffer nearly full: faust stops fetching a
        consumer.pause_partitions([a])  # the worker pauses a: it ran ahead of b
        consumer.on_buffer_drop(a)  # buffer drained
        paused_held = a not in consumer._get_active_partitions()
        delivered_anyway = a in consumer._buffered_partitions  # faust delivers those records
        consumer.resume_partitions([a])
        return paused_held, delivered_anyway, a in consumer._get_active_partitions()

    paused_held, delivered_anyway, resumed = asyncio.run(run())
    assert paused_held and not delivered_anyway and resumed
