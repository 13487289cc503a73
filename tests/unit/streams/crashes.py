"""Applying records the way a worker does when it crashes now and then (no broker, no Redis)."""

from __future__ import annotations

import asyncio
import random

from streams.processor import BatchResult, PartitionState, Processor, SourceRecord
from streams.state import InMemoryStateStore


def apply_with_crashes(
    processor: Processor, recs: list[SourceRecord], seed: int, crash_rate: float = 0.3
) -> tuple[PartitionState, list[BatchResult]]:
    """Apply ``recs`` of partition 0 in random batches, checkpointing each through a store.

    Now and then a batch "crashes" after its outputs were produced: its state is dropped, the
    partition is loaded again from the last checkpoint and the records after it are re-read.

    Parameters
    ----------
    processor
        Applies the records.
    recs
        Both input topics of partition 0, each in offset order.
    seed
        Seeds the batch sizes and the crashes.
    crash_rate
        Chance that a batch (not the last) crashes.

    Returns
    -------
    tuple
        The final partition state, and every batch's result (crashed ones included: their
        outputs were delivered before the crash).
    """

    async def go() -> tuple[PartitionState, list[BatchResult]]:
        store = InMemoryStateStore(processor)
        part = await store.assign(0, "w1")
        results: list[BatchResult] = []
        rng = random.Random(seed)
        pos = 0
        while pos < len(recs):
            size = rng.randint(50, 900)
            batch = recs[pos : pos + size]
            done = pos + size >= len(recs)
            results.append(
                processor.apply(part, batch, predictions_caught_up=done, labels_caught_up=done)
            )
            if rng.random() < crash_rate and not done:
                part = await store.assign(0, "w2")
                restart = min(part.offsets["predictions"], part.offsets["labels"])
                pos = next((i for i, r in enumerate(recs) if r.offset > restart), 0)
                continue
            await store.checkpoint(part)
            pos += size
        return part, results

    return asyncio.run(go())
