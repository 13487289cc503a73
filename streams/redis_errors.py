"""Redis errors worth retrying, shared by the worker's state store and the notifier."""

from __future__ import annotations

from redis.exceptions import BusyLoadingError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Errors that go away by themselves: connection refused/reset, timeouts, a restarted Redis
# loading its data, a replica promoted after a failover, a cluster slot migrating.
REDIS_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    TryAgainError,
)
