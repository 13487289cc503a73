"""Integration fixtures: one embedded broker + Redis per session, a unique prefix per test.

Redis: ``$REDIS_URL`` if set (the tests then only touch keys carrying their own prefix), otherwise a
private redis-server started by the stack. No other Redis is ever used.

Every test under this directory is marked ``integration``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]
if str(_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(_ROOT))

from streams.embedded import EmbeddedStack  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from tests/integration with `integration`."""
    for item in items:
        if item.path.resolve().is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[EmbeddedStack]:
    """One embedded Tansu broker (+ private Redis unless REDIS_URL is set) for the session."""
    with EmbeddedStack() as embedded:
        yield embedded


@pytest.fixture
def prefix() -> str:
    """A unique prefix for this test's topics, consumer groups and Redis keys."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_client(stack: EmbeddedStack, prefix: str) -> Iterator[redis.Redis]:
    """A client for the stack's Redis; deletes the keys containing this test's prefix afterwards."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        yield client
    finally:
        try:
            keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
