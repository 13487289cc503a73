"""Cut a stream into batches whose window counts from the start of the previous batch.

Faust's ``take_events(n, within)`` starts its ``within`` timer once the previous batch has been
processed, so a worker that needs ``P`` seconds per batch cycles every ``P + within`` seconds and
a record that arrives during a batch waits for that batch, the whole window and its own batch.
Near saturation that wait grows as ``within * (1 + u) / (1 - u)`` at utilisation ``u``.
:class:`BatchWindow` is fed small batches (``take_events`` with a short ``within``) and hands
them on once ``window_s`` have passed since the previous batch *began*, or ``max_records``
have gathered: a busy worker then starts its next batch as soon as the last one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["BatchWindow", "feed_interval"]

log = logging.getLogger(__name__)

E = TypeVar("E")

_MAX_FEED_INTERVAL_S = 0.02


def feed_interval(window_s: float) -> float:
    """How often to hand a window what has arrived: often enough to add little to any wait."""
    return min(window_s, _MAX_FEED_INTERVAL_S)


class BatchWindow(Generic[E]):
    """Gather items and process them in order, at most ``max_records`` at a time.

    A batch is processed once ``window_s`` seconds have passed since the previous one began, or
    as soon as ``max_records`` items are waiting; items that would take a batch past
    ``max_records`` start the next one. Items are never dropped and never reordered; one batch
    is processed at a time.

    Examples
    --------
    >>> import asyncio
    >>> batches = []
    >>> async def process(items):
    ...     batches.append(list(items))
    >>> async def main():
    ...     window = BatchWindow(process, max_records=3, window_s=60.0)
    ...     await window.add([1, 2])   # the first batch is due at once
    ...     await window.add([3])      # waits for the window...
    ...     await window.add([4, 5])   # ...or for 3 items
    ...     await window.close()
    >>> asyncio.run(main())
    >>> batches
    [[1, 2], [3, 4, 5]]
    """

    def __init__(
        self,
        process: Callable[[list[E]], Awaitable[None]],
        max_records: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self._process = process
        self.max_records = max_records
        self.window_s = window_s
        self._clock = clock
        self._pending: list[E] = []
        self._started = float("-inf")  # when the previous batch began
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Items gathered and not yet handed on."""
        return len(self._pending)

    def due_in(self) -> float:
        """Seconds until the window of the next batch closes (<= 0: it has)."""
        return self._started + self.window_s - self._clock()

    async def add(self, items: Sequence[E]) -> None:
        """Gather ``items``; process a batch now if one is due."""
        if self._pending and len(self._pending) + len(items) > self.max_records:
            await self.flush()
        self._pending.extend(items)
        if len(self._pending) >= self.max_records or self.due_in() <= 0:
            await self.flush()
        elif self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_when_due())

    async def flush(self) -> None:
        """Process what has gathered (if anything), now; later callers wait their turn."""
        async with self._lock:
            items, self._pending = self._pending, []
            if items:
                self._started = self._clock()
                await self._process(items)

    async def close(self) -> None:
        """Stop the timer; what is still gathered is not processed."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
            # a failure of its batch was reported by process itself
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await timer

    async def _flush_when_due(self) -> None:
        """Process what gathered once its window closes, if no new items come to do it."""
        try:
            while self._pending:
                wait = self.due_in()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    await self.flush()
        except Exception:  # process reports (and acts on) its own failures
            log.debug("batch processing failed from the window timer", exc_info=True)
        finally:
            if self._timer is asyncio.current_task():
                self._timer = None
