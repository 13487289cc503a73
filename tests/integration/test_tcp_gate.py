"""The chaos tests' TCP gate holds a request in flight and then delivers it, in order."""

from __future__ import annotations

import threading

import pytest
import redis

from streams.embedded import EmbeddedStack
from tests.integration.tcp_gate import TcpGate


def test_held_request_reaches_the_server_only_after_release(
    stack: EmbeddedStack, redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:gate"
    with TcpGate.for_url(stack.redis_url) as gate:
        client = redis.Redis.from_url(gate.url, socket_timeout=10)
        assert client.ping()
        gate.hold()
        done = threading.Event()
        results: list[object] = []

        def write() -> None:
            results.append(client.rpush(key, "a", "b"))
            done.set()

        threading.Thread(target=write, daemon=True).start()
        assert not done.wait(0.5), "the request must not be answered while held"
        assert redis_client.exists(key) == 0
        assert key.encode() in gate.held()
        gate.release()
        assert done.wait(5)
        assert results == [2]
        assert redis_client.lrange(key, 0, -1) == [b"a", b"b"]
        client.close()


def test_url_keeps_credentials_and_database() -> None:
    with TcpGate.for_url("redis://user:secret@127.0.0.1:6379/3") as gate:
        assert gate.url == f"redis://user:secret@127.0.0.1:{gate.port}/3"
    with pytest.raises(ValueError, match="no host and port"):
        TcpGate.for_url("redis:///tmp/redis.sock")
