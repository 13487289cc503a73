"""Faust's aiokafka transport with a configurable fetch wait and eager record delivery.

Faust creates its worker consumer with ``fetch_max_wait_ms=1500`` and no setting to change it.
Apache Kafka answers a fetch as soon as a record is there, so the value rarely matters; a broker
that holds every fetch for the full wait (Tansu, the embedded broker) adds up to that much to the
time from an event to its alert. ``kafka.fetch_max_wait_ms`` sets it instead.

Faust hands each fetched record to its streams with ``Service.wait_first(deliver(record),
suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per record, so that a delivery blocked
on a full stream buffer can be abandoned when a rebalance suspends the flow. Almost every delivery
finishes without blocking, so :class:`DriftlineConsumer` runs the delivery's first step inline
and only falls back to ``wait_first`` (with the same cancellation) when it does block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator, Iterable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TransportT
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; its worker consumer uses the app's ``fetch_max_wait_ms``."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # read by AIOKafkaConsumer.start() when it builds its fetcher
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class Resumed:
    """The rest of a coroutine that was stepped once by hand and suspended on ``awaiting``.

    Awaiting it (in a task) continues the coroutine where it stopped; cancellation and errors
    thrown into the task reach the coroutine, as if it had run in the task from the start.
    """

    __slots__ = ("_awaiting", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], awaiting: Any) -> None:
        self._coro = coro
        self._awaiting = awaiting

    def __await__(self) -> Generator[Any, None, Any]:
        coro, awaiting = self._coro, self._awaiting
        while True:
            try:
                yield awaiting
            except BaseException as exc:
                try:
                    awaiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                awaiting = coro.send(None)
            except StopIteration as done:
                return done.value


def _close(args: tuple[WaitArgT, ...]) -> None:
    for arg in args:
        if asyncio.iscoroutine(arg):
            arg.close()  # never started: closing avoids a "never awaited" warning


class DriftlineConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with :class:`FetchWaitConsumerThread`, an eager
    ``wait_first``, and pauses that hold while the stream buffer is under pressure."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # Faust stops fetching a partition whose stream buffer is nearly full (on_buffer_full) and
    # fetches it again once the buffer drains (on_buffer_drop), whether or not the partition was
    # paused in between, and it keeps delivering such a partition's fetched records: a pause
    # taken while the buffer is full would be silently undone.
    def pause_partitions(self, tps: Iterable[TP]) -> None:
        """Stop fetching ``tps`` until :meth:`resume_partitions`, buffer pressure or not."""
        paused = set(tps)
        super().pause_partitions(paused)
        self._buffered_partitions.difference_update(paused)

    def on_buffer_drop(self, tp: TP) -> None:
        """The stream buffer drained: fetch ``tp`` again, unless it is paused."""
        if tp in self._paused_partitions:
            self._buffered_partitions.discard(tp)
            return
        super().on_buffer_drop(tp)

    async def wait_first(self, *coros: WaitArgT, timeout: Seconds | None = None) -> WaitResults:
        """``Service.wait_first``, but a first coroutine that finishes without suspending is
        just run: no tasks. One that suspends continues in ``Service.wait_first``, unchanged."""
        if coros and asyncio.iscoroutine(coros[0]) and not self.should_stop:
            first = coros[0]
            try:
                awaiting = first.send(None)
            except StopIteration as done:
                _close(coros[1:])
                return WaitResults([first], [done.value], False)
            except BaseException:
                _close(coros[1:])
                raise
            coros = (Resumed(first, awaiting), *coros[1:])
        # mode annotates timeout as Seconds with None as its default: None is its "no timeout"
        return await super().wait_first(*coros, timeout=timeout)  # type: ignore[arg-type]


class FetchWaitTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`DriftlineConsumer`."""

    Consumer = DriftlineConsumer


class DriftlineApp(faust.App):
    """A faust app whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return FetchWaitTransport(self.conf.broker_consumer, self)
