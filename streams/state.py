"""Partition state stores: assign → apply batches → checkpoint → revoke.

Per source partition, all keys share one Redis hash tag (``{prefix:group:N}``) so the store works
on Redis Cluster and the checkpoint is one atomic Lua call:

- ``…:meta``    hash: ``epoch``, ``off:predictions``, ``off:labels``, ``join`` (msgpack), ``owner``
- ``…:models``  hash: model_id → :meth:`ModelState.encode` bytes
- ``…:pending`` hash: pending join half → msgpack ``[value, timestamp_ms]``, and buffered label
  (``b`` NUL offset NUL index) → msgpack ``[model_id, prediction_id, label, timestamp_ms]``

Assignment increments the epoch; a checkpoint carrying an older epoch is refused, so a zombie
worker (one whose partitions were reassigned while it was paused) cannot overwrite newer state.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from streams.model_state import ModelState
from streams.processor import PartitionState, Processor


class StaleEpochError(RuntimeError):
    """The partition was reassigned: this worker's state for it is no longer authoritative."""

    def __init__(self, partition: int, mine: int, current: str | None) -> None:
        super().__init__(
            f"partition {partition}: checkpoint refused, epoch {mine} is stale "
            f"(store has {current})"
        )
        self.partition = partition


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The dirty part of a partition's state, encoded, ready to write atomically."""

    partition: int
    epoch: int
    meta: dict[str, bytes]
    models: dict[str, bytes]
    pending_set: dict[bytes, bytes]
    pending_del: list[bytes]


ENCODED_MODELS = 256
"""Models per partition that keep their encoded detectors between checkpoints (~10 KB each at
steady state): the busiest ones, so a checkpoint re-encodes only the side a batch touched,
without holding a copy of every model's state when a worker has thousands."""


def take_checkpoint(part: PartitionState) -> Checkpoint:
    """Encode what changed since the last checkpoint and clear the dirty marks."""
    models = {mid: part.models[mid].encode() for mid in sorted(part.dirty_models)}
    kept = part.encoded_models
    for mid in models:
        kept[mid] = None
        kept.move_to_end(mid)
    while len(kept) > ENCODED_MODELS:
        mid, _ = kept.popitem(last=False)
        if mid in part.models:
            part.models[mid].forget_encoded()
    part.dirty_models.clear()
    upserts, deletes = part.join.take_dirty()
    pack = msgpack.Packer(use_bin_type=True).pack  # one packer for all the halves
    meta = {
        "off:predictions": str(part.offsets["predictions"]).encode(),
        "off:labels": str(part.offsets["labels"]).encode(),
        "join": msgpack.packb(part.join.meta_state(), use_bin_type=True),
    }
    return Checkpoint(
        partition=part.partition,
        epoch=part.epoch,
        meta=meta,
        models=models,
        pending_set={k: pack(v) for k, v in upserts.items()},
        pending_del=deletes,
    )


def restore_partition(
    processor: Processor,
    partition: int,
    epoch: int,
    meta: Mapping[bytes, bytes],
    models: Mapping[bytes, bytes],
    pending: Iterable[tuple[bytes, bytes]],
) -> PartitionState:
    """Rebuild a partition's state from stored hashes (inverse of :func:`take_checkpoint`)."""
    part = processor.new_partition(partition)
    part.epoch = epoch
    part.offsets["predictions"] = int(meta.get(b"off:predictions", b"-1"))
    part.offsets["labels"] = int(meta.get(b"off:labels", b"-1"))
    if b"join" in meta:
        part.join.restore_meta(msgpack.unpackb(meta[b"join"], raw=False))
    part.models = {mid.decode(): ModelState.decode(blob) for mid, blob in models.items()}
    part.join.restore_pending(
        [(field, msgpack.unpackb(blob, raw=False)) for field, blob in pending]
    )
    return part


class StateStore(abc.ABC):
    """Where partition state lives between batches and across workers."""

    @abc.abstractmethod
    async def assign(self, partition: int, owner: str) -> PartitionState:
        """Take ownership: bump the epoch, load the state."""

    @abc.abstractmethod
    async def write(self, cp: Checkpoint) -> None:
        """Write one checkpoint atomically; raise StaleEpochError if fenced off.

        A failed write may be retried with the same ``cp``: it carries everything dirty.
        """

    async def checkpoint(self, part: PartitionState) -> None:
        """Encode the partition's dirty state and write it."""
        await self.write(take_checkpoint(part))

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    async def ping(self) -> None:  # noqa: B027 - nothing to reach by default
        """Raise if the store cannot be reached."""


class InMemoryStateStore(StateStore):
    """Keeps encoded checkpoints in dicts; for unit tests and ``driftline replay``."""

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self.epochs: dict[int, int] = {}
        self.meta: dict[int, dict[bytes, bytes]] = {}
        self.models: dict[int, dict[bytes, bytes]] = {}
        self.pending: dict[int, dict[bytes, bytes]] = {}

    async def assign(self, partition: int, owner: str) -> PartitionState:
        epoch = self.epochs.get(partition, 0) + 1
        self.epochs[partition] = epoch
        return restore_partition(
            self.processor,
            partition,
            epoch,
            self.meta.get(partition, {}),
            self.models.get(partition, {}),
            list(self.pending.get(partition, {}).items()),
        )

    async def write(self, cp: Checkpoint) -> None:
        current = self.epochs.get(cp.partition, 0)
        if current != cp.epoch:
            raise StaleEpochError(cp.partition, cp.epoch, str(current))
        self.meta.setdefault(cp.partition, {}).update({k.encode(): v for k, v in cp.meta.items()})
        self.models.setdefault(cp.partition, {}).update(
            {k.encode(): v for k, v in cp.models.items()}
        )
        pending = self.pending.setdefault(cp.partition, {})
        pending.update(cp.pending_set)
        for field in cp.pending_del:
            pending.pop(field, None)


# KEYS: meta, models, pending. ARGV: epoch, then three msgpack arrays (field, value, field,
# value, ...) to HSET into meta, models and pending, and one of pending fields to HDEL. Four blobs
# instead of one argument per field: redis-py packs every argument in Python, which cost more
# than the whole Lua call once a checkpoint carried a few hundred pending halves.
_CHECKPOINT_LUA = """
local cur = redis.call('HGET', KEYS[1], 'epoch')
if cur ~= ARGV[1] then
  return redis.error_reply('STALE_EPOCH ' .. tostring(cur))
end
local function each_chunk(cmd, key, items)
  local n = #items
  local i = 1
  while i <= n do
    local last = math.min(i + 999, n)  -- 1000 items: whole field/value pairs for HSET
    redis.call(cmd, key, unpack(items, i, last))
    i = last + 1
  end
end
each_chunk('HSET', KEYS[1], cmsgpack.unpack(ARGV[2]))
each_chunk('HSET', KEYS[2], cmsgpack.unpack(ARGV[3]))
each_chunk('HSET', KEYS[3], cmsgpack.unpack(ARGV[4]))
each_chunk('HDEL', KEYS[3], cmsgpack.unpack(ARGV[5]))
return 1
"""

_ASSIGN_LUA = """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return epoch
"""


def _pack_flat(mapping: Mapping[Any, bytes]) -> bytes:
    """``[field, value, field, value, ...]`` as msgpack raw strings (all Lua sees is strings)."""
    flat: list[Any] = []
    for item in mapping.items():
        flat.extend(item)
    return msgpack.packb(flat, use_bin_type=False)


def partition_keys(prefix: str, group: str, partition: int) -> tuple[str, str, str]:
    """The three keys of one partition, sharing the hash tag ``{prefix:group:partition}``."""
    tag = f"{{{prefix}:{group}:{partition}}}"
    return f"{tag}:meta", f"{tag}:models", f"{tag}:pending"


class RedisStateStore(StateStore):
    """Partition state in Redis with epoch fencing, one Lua call per checkpoint."""

    def __init__(
        self, client: aioredis.Redis, processor: Processor, prefix: str, group: str
    ) -> None:
        self.client = client
        self.processor = processor
        self.prefix = prefix
        self.group = group
        self._checkpoint = client.register_script(_CHECKPOINT_LUA)
        self._assign = client.register_script(_ASSIGN_LUA)

    @classmethod
    def from_url(
        cls, url: str, processor: Processor, prefix: str, group: str, **options: Any
    ) -> RedisStateStore:
        """Connect with a redis URL (``rediss://`` for TLS; AUTH in the URL or options).

        Calls time out (``socket_timeout``, default 10 s) so a Redis that hangs instead of
        refusing connections surfaces as a retryable error rather than a stuck worker.
        """
        options.setdefault("socket_connect_timeout", 5.0)
        options.setdefault("socket_timeout", 10.0)
        options.setdefault("health_check_interval", 15)
        return cls(aioredis.Redis.from_url(url, **options), processor, prefix, group)

    def keys(self, partition: int) -> tuple[str, str, str]:
        """Keys of one partition."""
        return partition_keys(self.prefix, self.group, partition)

    async def assign(self, partition: int, owner: str) -> PartitionState:
        meta_key, models_key, pending_key = self.keys(partition)
        epoch = int(await self._assign(keys=[meta_key], args=[owner]))
        # the client is created without decode_responses, so every field and value is bytes
        meta = cast("dict[bytes, bytes]", await self.client.hgetall(meta_key))
        models = cast("dict[bytes, bytes]", await self.client.hgetall(models_key))
        pending: list[tuple[bytes, bytes]] = []
        async for field, value in self.client.hscan_iter(pending_key, count=10_000):
            pending.append((field, value))
        return restore_partition(self.processor, partition, epoch, meta, models, pending)

    async def write(self, cp: Checkpoint) -> None:
        args: list[str | bytes] = [str(cp.epoch)]
        for mapping in (cp.meta, cp.models, cp.pending_set):
            args.append(_pack_flat(mapping))
        args.append(msgpack.packb(cp.pending_del, use_bin_type=False))
        try:
            await self._checkpoint(keys=list(self.keys(cp.partition)), args=args)
        except ResponseError as exc:
            if str(exc).startswith("STALE_EPOCH"):
                raise StaleEpochError(cp.partition, cp.epoch, str(exc).split(" ", 1)[-1]) from None
            raise

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        await self.client.ping()
