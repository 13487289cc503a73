"""The embedded stack carries Kafka traffic through consumer groups and serves Redis."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from streams.embedded import EmbeddedStack, EmbeddedStackError

# Tansu completes a fresh group join after ~half the session timeout: keep it short.
GROUP_SETTINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def _group_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_SETTINGS,
    )


def _poll_until(consumer: KafkaConsumer, expected: int, timeout: float = 30.0) -> list[Any]:
    """Poll until `expected` records arrived (or `timeout`); return them."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


def test_produce_and_consume_through_a_consumer_group(stack: EmbeddedStack, prefix: str) -> None:
    topic = f"{prefix}-events"
    stack.create_topics([topic], partitions=4)
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    sent = {f"v{i}": f"model-{i % 7}" for i in range(60)}
    for value, key in sent.items():
        producer.send(topic, key=key.encode(), value=value.encode())
    producer.flush()
    producer.close()

    consumer = _group_consumer(stack.bootstrap_servers, topic, f"{prefix}-group")
    try:
        records = _poll_until(consumer, len(sent))
        assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2, 3}
        consumer.commit()
    finally:
        consumer.close()

    assert sorted(r.value.decode() for r in records) == sorted(sent)
    partitions_per_key: dict[str, set[int]] = defaultdict(set)
    for r in records:
        partitions_per_key[r.key.decode()].add(r.partition)
    assert all(len(p) == 1 for p in partitions_per_key.values()), partitions_per_key
    assert len({p for ps in partitions_per_key.values() for p in ps}) > 1

    # The committed offsets hold: a new member of the group gets the partitions and nothing old.
    again = _group_consumer(stack.bootstrap_servers, topic, f"{prefix}-group")
    try:
        deadline = time.monotonic() + 30
        leftovers: list[Any] = []
        while not again.assignment() and time.monotonic() < deadline:
            leftovers += _poll_until(again, 1, timeout=0.2)
        leftovers += _poll_until(again, 1, timeout=1.0)
        assert len(again.assignment()) == 4
        assert leftovers == []
    finally:
        again.close()


def test_create_topics_is_idempotent_and_checks_partitions(
    stack: EmbeddedStack, prefix: str
) -> None:
    names = [f"{prefix}-predictions", f"{prefix}-labels"]
    stack.create_topics(names, partitions=3)
    stack.create_topics(names, partitions=3)
    with pytest.raises(EmbeddedStackError, match="already exists with 3 partitions"):
        stack.create_topics(names[:1], partitions=5)


def test_redis_set_and_get(redis_client: redis.Redis, prefix: str) -> None:
    assert redis_client.ping()
    redis_client.set(f"{prefix}:k", b"value")
    redis_client.hset(f"{prefix}:{{p0}}:h", mapping={"a": "1"})
    assert redis_client.get(f"{prefix}:k") == b"value"
    assert redis_client.hgetall(f"{prefix}:{{p0}}:h") == {b"a": b"1"}


def test_stop_and_start_redis_keep_the_data() -> None:
    with EmbeddedStack(use_env_redis_url=False) as own:
        url = own.redis_url
        client = redis.Redis.from_url(url)
        client.set("k", "before restart")
        client.rpush("l", 1, 2, 3)
        old_pid = own.redis_pid

        own.stop_redis()
        assert own.redis_pid is None
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(url, retry=None).ping()

        own.start_redis()
        assert own.redis_url == url
        assert own.redis_pid not in (None, old_pid)
        assert client.get("k") == b"before restart"
        assert client.lrange("l", 0, -1) == [b"1", b"2", b"3"]
        client.close()


def test_redis_data_dir_persists_across_stacks(tmp_path: Path) -> None:
    data = tmp_path / "redis-data"
    with EmbeddedStack(use_env_redis_url=False, redis_data_dir=data) as first:
        client = redis.Redis.from_url(first.redis_url)
        client.set("survives", "yes")
        client.close()
    assert data.is_dir()
    with EmbeddedStack(use_env_redis_url=False, redis_data_dir=data) as second:
        client = redis.Redis.from_url(second.redis_url)
        assert client.get("survives") == b"yes"
        client.close()


def test_stop_leaves_nothing_running() -> None:
    own = EmbeddedStack(use_env_redis_url=False).start()
    pids = [own.broker_pid, own.redis_pid]
    tmp = own.log_dir.parent
    assert all(pids) and (own.log_dir / "tansu.log").exists()
    own.stop()
    own.stop()  # idempotent
    assert not own.running
    assert not tmp.exists()
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_given_redis_is_not_started_or_stopped(stack: EmbeddedStack) -> None:
    with EmbeddedStack(redis_url=stack.redis_url) as borrower:
        assert not borrower.owns_redis
        assert borrower.redis_url == stack.redis_url
        assert borrower.redis_pid is None
        with pytest.raises(EmbeddedStackError, match="given REDIS_URL"):
            borrower.stop_redis()
    assert redis.Redis.from_url(stack.redis_url).ping()
