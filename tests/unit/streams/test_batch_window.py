"""BatchWindow: batches bounded in size, windows counted from the previous batch's start."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(_ROOT))

from streams.batch_window import BatchWindow, feed_interval  # noqa: E402


class Recorder:
    """A process callback that records batches (and when they began), optionally slowly."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.began: list[float] = []
        self.seconds = seconds

    async def __call__(self, items: list[int]) -> None:
        self.began.append(time.monotonic())
        self.batches.append(list(items))
        if self.seconds:
            await asyncio.sleep(self.seconds)


def test_a_first_batch_goes_at_once_and_later_items_wait_for_the_window() -> None:
    rec = Recorder()

    async def run() -> float:
        window = BatchWindow(rec, max_records=100, window_s=0.2)
        await window.add([1])
        await window.add([2])
        await window.add([3])
        assert rec.batches == [[1]] and window.pending == 2
        added = time.monotonic()
        await asyncio.sleep(0.4)  # nothing more arrives: the timer hands them on
        await window.close()
        return added

    added = asyncio.run(run())
    assert rec.batches == [[1], [2, 3]]
    assert rec.began[1] - rec.began[0] == pytest.approx(0.2, abs=0.05)
    assert rec.began[1] > added


def test_batches_never_exceed_max_records_and_keep_order() -> None:
    rec = Recorder()
    rnd = random.Random(7)
    items = list(range(2000))

    async def run() -> None:
        window = BatchWindow(rec, max_records=50, window_s=60.0)
        i = 0
        while i < len(items):
            n = rnd.randint(1, 50)
            await window.add(items[i : i + n])
            i += n
        await window.flush()
        await window.close()

    asyncio.run(run())
    assert all(1 <= len(b) <= 50 for b in rec.batches)
    assert [x for b in rec.batches for x in b] == items
    # full batches are cut without waiting for the 60 s window
    assert len(rec.batches) < 2000 / 25


def test_a_slow_batch_is_followed_at_once_not_after_another_window() -> None:
    rec = Recorder(seconds=0.3)  # processing takes longer than the window

    async def run() -> None:
        window = BatchWindow(rec, max_records=1000, window_s=0.1)
        first = asyncio.get_running_loop().create_task(window.add([1]))
        await asyncio.sleep(0.05)
        await window.add([2])  # arrives during the first batch
        await first
        await asyncio.sleep(0.02)
        assert rec.batches == [[1], [2]]
        await window.close()

    asyncio.run(run())
    # the second batch began when the first ended, not a window later
    assert rec.began[1] - rec.began[0] == pytest.approx(0.3, abs=0.06)


def test_the_timer_and_the_feed_never_process_two_batches_at_once() -> None:
    rec = Recorder(seconds=0.01)
    active = 0
    most = 0

    async def process(items: list[int]) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await rec(items)
        active -= 1

    async def run() -> None:
        window = BatchWindow(process, max_records=7, window_s=0.015)
        for i in range(300):
            await window.add([i])
            await asyncio.sleep(random.random() * 0.004)
        await asyncio.sleep(0.1)
        await window.close()

    asyncio.run(run())
    assert most == 1
    assert [x for b in rec.batches for x in b] == list(range(300))


def test_close_cancels_the_timer_and_leaves_gathered_items_unprocessed() -> None:
    rec = Recorder()

    async def run() -> int:
        window = BatchWindow(rec, max_records=10, window_s=0.1)
        await window.add([1])
        await window.add([2])
        await window.close()
        await asyncio.sleep(0.2)
        return window.pending

    assert asyncio.run(run()) == 1
    assert rec.batches == [[1]]


def test_a_failing_batch_from_the_timer_does_not_stop_later_batches() -> None:
    calls: list[list[int]] = []

    async def process(items: list[int]) -> None:
        calls.append(items)
        if items == [2]:
            raise RuntimeError("boom")  # the worker reports and acts on its own failures

    async def run() -> None:
        window = BatchWindow(process, max_records=10, window_s=0.05)
        await window.add([1])
        await window.add([2])  # waits for the window
        await asyncio.sleep(0.12)  # the timer processes [2], which fails
        await window.add([3])  # the window closed long ago: processed at once
        await asyncio.sleep(0.06)
        with pytest.raises(RuntimeError, match="boom"):
            await window.add([2])  # a batch the feed itself processes: its caller sees it
        await window.close()

    asyncio.run(run())
    assert calls == [[1], [2], [3], [2]]


def test_feed_interval_is_short_and_never_longer_than_the_window() -> None:
    assert feed_interval(0.15) == 0.02
    assert feed_interval(0.005) == 0.005


def test_max_records_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_records"):
        BatchWindow(Recorder(), max_records=0, window_s=0.1)
