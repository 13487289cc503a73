"""RedisStateStore against a real Redis: checkpoints round-trip, in chunks, fenced by epoch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgpack
import pytest
import redis

from streams.config import load_config
from streams.embedded import EmbeddedStack
from streams.join import BufferedLabel
from streams.model_state import ModelState
from streams.processor import Processor
from streams.state import Checkpoint, RedisStateStore, StaleEpochError, take_checkpoint
from tests.integration.pipeline import write_config


def test_checkpoint_round_trip_with_thousands_of_fields_and_binary_values(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: redis.Redis
) -> None:
    processor = Processor(load_config(write_config(tmp_path, prefix)))

    async def run() -> None:
        store = RedisStateStore.from_url(stack.redis_url, processor, prefix, prefix)
        try:
            part = await store.assign(3, "w1")
            for i in range(2_501):  # more than one Lua chunk of fields
                part.join.add_prediction("m\u00e9", f"p{i}", i % 2, 1_000 + i, i, 0)
            part.models["m\u00e9"] = ModelState("m\u00e9")
            part.dirty_models.add("m\u00e9")
            part.offsets["predictions"] = 2_500
            await store.checkpoint(part)
            # values that are not UTF-8 survive the trip through Lua (model blobs are msgpack)
            await store.write(Checkpoint(3, part.epoch, {"blob": b"\xff\x00\xfe"}, {}, {}, []))
            restored = await store.assign(3, "w2")
            assert restored.epoch == part.epoch + 1
            assert restored.offsets["predictions"] == 2_500
            assert restored.join.predictions == part.join.predictions
            assert set(restored.models) == {"m\u00e9"}
            meta_key, _, pending_key = store.keys(3)
            assert redis_client.hget(meta_key, "blob") == b"\xff\x00\xfe"
            assert restored.models["m\u00e9"].encode() == part.models["m\u00e9"].encode()
            # deletes, in more than one chunk, from the new owner
            for i in range(1_500):
                restored.join.add_label(BufferedLabel("m\u00e9", f"p{i}", 1, 2_000_000, i, 0))
            list(restored.join.release(True))
            await store.write(take_checkpoint(restored))
            assert redis_client.hlen(pending_key) == 2_501 - 1_500
            # the first owner is fenced off
            with pytest.raises(StaleEpochError):
                await store.write(take_checkpoint(part))
            assert msgpack.unpackb(redis_client.hget(pending_key, b"p\x00m\xc3\xa9\x00p2000"))
        finally:
            await store.close()

    asyncio.run(run())
