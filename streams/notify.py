"""``driftline notify``: post every alert once to a Slack-compatible webhook.

A Kafka consumer in its own group (``notify.group_id``, default ``<kafka.group_id>-notify``)
reads both alert topics. Each record is handled in partition order:

1. not an alert (not JSON, no ``alert_id`` or ``model_id``): logged with the reason and skipped;
2. its ``alert_id`` already sent to this webhook (a Redis key, see :class:`SentAlerts`): skipped;
3. over the model's rate limit: counted, logged, and reported in the model's next message
   (an alert, or a summary of its own once the window has room again);
4. otherwise POSTed (:mod:`streams.webhook` retries), and marked sent in Redis after a 2xx.

Offsets are committed only for records handled that way, so a stop or crash re-reads the rest.
The Redis mark follows the 2xx, so a crash between the two re-sends that one alert: delivery is
at least once, with duplicates only in that window. While it waits (webhook retries, a Redis
outage) the notifier keeps polling its consumer with every partition paused, so it stays in the
group however long the wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from streams.config import Config, Connections
from streams.rate_limit import ModelRateLimiter, SuppressedAlerts
from streams.redis_errors import REDIS_TRANSIENT_ERRORS
from streams.slack import alert_message, suppressed_message, suppressed_text
from streams.webhook import Backoff, Outcome, WebhookClient, wait_or_stop

__all__ = [
    "InvalidAlert",
    "Notifier",
    "NotifyStats",
    "SentAlerts",
    "parse_alert",
    "stop_on_signals",
    "webhook_namespace",
]

log = logging.getLogger("driftline.notify")

T = TypeVar("T")

MAX_ALERT_ID_CHARS = 200
_POLL_MS = 500
_MAX_POLL_RECORDS = 100
_KEEPALIVE_EVERY_S = 1.0
_TOPIC_WAIT_NOTICE_S = 5.0
_REDIS_BACKOFF = Backoff(first_s=0.1, max_s=5.0)


class InvalidAlert(ValueError):
    """A record on an alert topic that is not an alert; the message says why."""


def parse_alert(value: bytes | None) -> dict[str, Any]:
    """Decode one alert record; raise :class:`InvalidAlert` naming what is wrong.

    Only ``alert_id`` (for de-duplication) and ``model_id`` (for the rate limit) are required;
    the message shows every other field that is there.
    """
    if value is None:
        raise InvalidAlert("empty record (no value)")
    try:
        alert = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidAlert(f"not JSON ({exc})") from None
    if not isinstance(alert, dict):
        raise InvalidAlert(f"not a JSON object but {type(alert).__name__}")
    for name in ("alert_id", "model_id"):
        field = alert.get(name)
        if not isinstance(field, str) or not field:
            raise InvalidAlert(f"no {name} (a non-empty string is required)")
    if len(alert["alert_id"]) > MAX_ALERT_ID_CHARS:
        raise InvalidAlert(f"alert_id longer than {MAX_ALERT_ID_CHARS} characters")
    return alert


def webhook_namespace(url: str) -> str:
    """A short, one-way hash of the webhook URL: de-duplication is per destination."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


class SentAlerts:
    """Which alert ids were delivered to one webhook, in Redis, each for ``ttl_s`` seconds.

    Key: ``<state.key_prefix>:notify:<webhook_namespace(url)>:<alert_id>``, value: the wall time
    (epoch ms) of the delivery. Set with NX, so the first delivery's time is kept.
    """

    def __init__(self, client: redis.Redis, key_prefix: str, namespace: str, ttl_s: int) -> None:
        self.client = client
        self.key_prefix = f"{key_prefix}:notify:{namespace}:"
        self.ttl_s = ttl_s

    def key(self, alert_id: str) -> str:
        """The Redis key of one alert id."""
        return self.key_prefix + alert_id

    def was_sent(self, alert_id: str) -> bool:
        """Whether ``alert_id`` was delivered to this webhook within the TTL."""
        return bool(self.client.exists(self.key(alert_id)))

    def mark_sent(self, alert_id: str, sent_at_ms: int) -> bool:
        """Remember ``alert_id`` as delivered; False if already marked (a concurrent send)."""
        return bool(self.client.set(self.key(alert_id), sent_at_ms, nx=True, ex=self.ttl_s))


@dataclass
class NotifyStats:
    """What the notifier did since it started."""

    delivered: int = 0
    duplicates: int = 0
    suppressed: int = 0
    summaries: int = 0
    dropped: int = 0
    invalid: int = 0

    def __str__(self) -> str:
        return (
            f"{self.delivered} delivered, {self.duplicates} already sent, {self.suppressed} "
            f"held back by the rate limit ({self.summaries} summaries), {self.dropped} dropped, "
            f"{self.invalid} invalid records"
        )


class _Stopped(Exception):
    """The stop event was set while waiting; unwind without committing the record in hand."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the notifier which partitions a rebalance took away.

    Only records them: the listener may run on the consumer's IO thread, where blocking calls
    (a commit) are not allowed; the notifier applies them when its poll returns.
    """

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.notifier.partitions_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.notifier.partitions_assigned(set(assigned))


class Notifier:
    """Consumes the alert topics and posts each alert to the webhook (see the module doc).

    Parameters
    ----------
    config
        The driftline configuration (``kafka``, ``state.key_prefix`` and ``notify`` are used).
    connections
        Kafka and Redis connection settings, TLS/SASL included.
    webhook_url
        Where to POST; a secret, logged as scheme and host only.
    stop
        Set it (a signal handler, a test) to stop after the message in hand.
    """

    def __init__(
        self,
        config: Config,
        connections: Connections,
        webhook_url: str,
        stop: threading.Event | None = None,
    ) -> None:
        settings = config.notify
        self.stop = stop if stop is not None else threading.Event()
        self.group_id = settings.consumer_group(config.kafka.group_id)
        topics = config.kafka.topics
        self.topics = [topics.drift_alerts, topics.performance_alerts]
        self.stats = NotifyStats()
        self._config = config
        self._connections = connections
        retry = settings.retry
        self.webhook = WebhookClient(
            webhook_url,
            timeout_s=settings.timeout_s,
            backoff=Backoff(retry.first_delay_s, retry.max_delay_s),
            max_retry_after_s=retry.max_retry_after_s,
            give_up_after_s=retry.give_up_after_s,
            stop=self.stop,
            tick=self._keepalive,
        )
        limit = settings.rate_limit
        self.limiter = ModelRateLimiter(limit.max_per_model, limit.window_s)
        self.redis = redis.Redis.from_url(
            connections.redis_url,
            socket_connect_timeout=5.0,
            socket_timeout=10.0,
            health_check_interval=15,
        )
        self.sent = SentAlerts(
            self.redis,
            config.state.key_prefix,
            webhook_namespace(webhook_url),
            settings.dedup_ttl_s,
        )
        self._consumer: KafkaConsumer | None = None
        self._pending: deque[Any] = deque()  # ConsumerRecords fetched, not handled yet
        self._done: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._in_hand: TopicPartition | None = None  # partition of the record being handled
        self._in_hand_lost = False  # its partition went to another member meanwhile
        self._revoking: set[TopicPartition] = set()  # revoked by a rebalance still going on
        self._lost: set[TopicPartition] = set()  # revoked and not assigned back; not applied yet
        self._rebalance_lock = threading.Lock()
        self._last_poll = time.monotonic()
        self._redis_down_since: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def check_redis(self) -> None:
        """Ping Redis once; raises ``redis.RedisError`` when it cannot be reached."""
        self.redis.ping()

    def run(self) -> NotifyStats:
        """Consume and post until :attr:`stop` is set; commits what was handled, then returns.

        Raises ``kafka.errors.KafkaError`` when the brokers cannot be reached at start.
        """
        try:
            self._consumer = consumer = self._connect()
            if not self._wait_for_topics(consumer):
                return self.stats
            consumer.subscribe(self.topics, listener=_Rebalance(self))
            log.info(
                "posting alerts from %s to webhook %s (consumer group %s, rate limit %s)",
                ", ".join(self.topics),
                self.webhook.redacted,
                self.group_id,
                self._limit(),
            )
            self._loop(consumer)
        except _Stopped:
            pass
        finally:
            self._close()
        return self.stats

    def _connect(self) -> KafkaConsumer:
        kafka = self._config.kafka
        return KafkaConsumer(
            **self._connections.kafka_python_options(),
            group_id=self.group_id,
            client_id="driftline-notify",
            enable_auto_commit=False,
            auto_offset_reset=self._config.notify.start_from,
            max_poll_records=_MAX_POLL_RECORDS,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        )

    def _close(self) -> None:
        """Commit what was handled, report held-back alerts, leave the group, disconnect."""
        try:
            if self._consumer is not None:
                self._commit()
                for tally in self.limiter.pending():
                    self._unreported(tally, "stopping")
                self._consumer.close(autocommit=False)
                log.info("stopped: %s", self.stats)
        finally:
            self.redis.close()

    def _loop(self, consumer: KafkaConsumer) -> None:
        while not self.stop.is_set():
            if not self._pending:
                paused = consumer.paused()
                if paused:
                    consumer.resume(*paused)
                self._take(consumer.poll(timeout_ms=_POLL_MS))
            self._post_due_summaries()
            while self._pending and not self.stop.is_set():
                record = self._pending.popleft()
                tp = TopicPartition(record.topic, record.partition)
                self._in_hand, self._in_hand_lost = tp, False
                if not self._handle(record):
                    return
                if not self._in_hand_lost:  # else the partition's new owner re-reads it
                    self._done[tp] = record.offset + 1
                self._in_hand = None
                if time.monotonic() - self._last_poll >= _KEEPALIVE_EVERY_S:
                    self._keepalive(0.0)
            self._commit()

    def _wait_for_topics(self, consumer: KafkaConsumer) -> bool:
        """Wait until both alert topics exist (a new deployment may start before the workers)."""
        started = time.monotonic()
        noticed = False
        while not self.stop.is_set():
            missing = [t for t in self.topics if not consumer.partitions_for_topic(t)]
            if not missing:
                return True
            if not noticed and time.monotonic() - started >= _TOPIC_WAIT_NOTICE_S:
                log.warning("waiting for topics %s to exist", ", ".join(missing))
                noticed = True
            self.stop.wait(1.0)
        return False

    # -- records --------------------------------------------------------------------------------
    def _take(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        """Queue polled records in each partition's order, after forgetting lost partitions."""
        self._last_poll = time.monotonic()
        with self._rebalance_lock:
            lost, self._lost = self._lost, set()
        if lost:
            # Records of lost partitions are left to their new owner, which starts at the
            # last commit. Partitions assigned back keep their position and queued records.
            self._pending = deque(
                r for r in self._pending if TopicPartition(r.topic, r.partition) not in lost
            )
            for tp in lost:
                self._done.pop(tp, None)
            self._in_hand_lost = self._in_hand_lost or self._in_hand in lost
        for records in batches.values():
            self._pending.extend(records)

    def _handle(self, record: Any) -> bool:
        """Handle one record (see the module doc); False if stopped before it was done."""
        where = f"{record.topic}/{record.partition}@{record.offset}"
        try:
            alert = parse_alert(record.value)
        except InvalidAlert as exc:
            self.stats.invalid += 1
            log.warning("skipping record %s: %s", where, exc)
            return True
        alert_id, model_id = alert["alert_id"], alert["model_id"]
        if self._redis_call(lambda: self.sent.was_sent(alert_id), "the de-duplication check"):
            self.stats.duplicates += 1
            log.debug("alert %s (%s) was already sent; skipped", alert_id, where)
            return True
        if not self.limiter.try_acquire(model_id):
            running = self.limiter.suppress(model_id, alert)
            self.stats.suppressed += 1
            log.warning(
                "rate limit (%s) reached for model %s: alert %s (%s) not posted; %d held back, "
                "reported in the model's next message",
                self._limit(),
                model_id,
                alert_id,
                where,
                running.count,
            )
            return True
        tally = self.limiter.take_suppressed(model_id)
        try:
            body = orjson.dumps(alert_message(alert, tally, self._limit()))
        except (TypeError, ValueError) as exc:  # defensive: formatting must not stop the loop
            self.stats.invalid += 1
            log.warning("skipping record %s: cannot format alert %s: %r", where, alert_id, exc)
            self._unreported(tally, "its alert could not be formatted")
            return True
        delivery = self.webhook.post(body, cancelled=lambda: self._in_hand_lost)
        if delivery.outcome is Outcome.STOPPED:
            if self.stop.is_set():
                self._unreported(tally, "stopping")
                return False
            log.info("alert %s (%s): its partition moved to another notifier", alert_id, where)
            self._unreported(tally, "its partition moved")
            return True
        if delivery.delivered:
            now_ms = int(time.time() * 1000)
            if not self._redis_call(lambda: self.sent.mark_sent(alert_id, now_ms), "marking sent"):
                log.info("alert %s was marked sent meanwhile by another notifier", alert_id)
            self.stats.delivered += 1
            if tally is not None:
                self.stats.summaries += 1
            log.info("posted alert %s (%s, model %s)", alert_id, where, model_id)
            return True
        self.stats.dropped += 1
        log.error(
            "dropped alert %s (%s, model %s): %s after %d attempts: %s",
            alert_id,
            where,
            model_id,
            "webhook refused it" if delivery.outcome is Outcome.REJECTED else "gave up",
            delivery.attempts,
            delivery.detail,
        )
        self._unreported(tally, "its message was dropped")
        return True

    def _post_due_summaries(self) -> None:
        """Post a summary for each model with held-back alerts whose window has room again."""
        self.limiter.forget_idle()
        for model_id in self.limiter.summaries_due():
            if self.stop.is_set() or not self.limiter.try_acquire(model_id):
                return
            tally = self.limiter.take_suppressed(model_id)
            if tally is None:
                continue
            delivery = self.webhook.post(orjson.dumps(suppressed_message(tally, self._limit())))
            if delivery.delivered:
                self.stats.summaries += 1
                log.info("posted the summary of %d held-back alerts of %s", tally.count, model_id)
            elif delivery.outcome is Outcome.STOPPED:
                self._unreported(tally, "stopping")
                raise _Stopped
            else:
                self._unreported(tally, f"the summary was dropped ({delivery.detail})")

    def _unreported(self, tally: SuppressedAlerts | None, why: str) -> None:
        if tally is not None:
            log.warning("%s; not reported: %s", why, suppressed_text(tally, self._limit()))

    def _limit(self) -> str:
        return self.limiter.describe()

    # -- Kafka ----------------------------------------------------------------------------------
    def _keepalive(self, timeout_s: float) -> None:
        """Poll for up to ``timeout_s`` with every partition paused: stays in the group (and
        takes part in rebalances) without fetching more.

        Records can still arrive from partitions assigned by a rebalance during this poll; they
        are queued (and paused at the next call).
        """
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        if assigned:
            consumer.pause(*assigned)
        try:
            self._take(consumer.poll(timeout_ms=int(timeout_s * 1000)))
        except KafkaError as exc:
            log.warning("polling the alert topics while waiting failed: %r", exc)

    def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Rebalance listener: ``revoked`` may come back; known when the rebalance completes."""
        with self._rebalance_lock:
            self._revoking |= revoked

    def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Rebalance listener: what was revoked and is not in ``assigned`` is lost."""
        with self._rebalance_lock:
            self._lost |= self._revoking - assigned
            self._revoking = set()
        names = ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(assigned))
        log.info("assigned partitions: %s", names or "none")

    def _commit(self) -> None:
        """Commit the offsets of handled records on the partitions this consumer still owns."""
        consumer = self._consumer
        if consumer is None or not self._done:
            return
        owned = consumer.assignment()
        offsets = {
            tp: OffsetAndMetadata(offset, "") for tp, offset in self._done.items() if tp in owned
        }
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit refused after a rebalance (%s); the new owner re-reads", exc)
        except KafkaError as exc:
            log.warning("commit failed (%r); retried with the next one", exc)
            return
        for tp, meta in offsets.items():
            if self._done.get(tp) == meta.offset:
                del self._done[tp]

    # -- Redis ----------------------------------------------------------------------------------
    def _redis_call(self, call: Callable[[], T], what: str) -> T:
        """Run a Redis call, retrying with capped backoff while Redis is unavailable."""
        retry = 0
        while True:
            try:
                result = call()
            except REDIS_TRANSIENT_ERRORS as exc:
                retry += 1
                if self._redis_down_since is None:
                    self._redis_down_since = time.monotonic()
                    log.error(
                        "Redis unavailable during %s (%s: %s); waiting, retrying with backoff",
                        what,
                        type(exc).__name__,
                        exc,
                    )
                if not wait_or_stop(self.stop, _REDIS_BACKOFF.delay(retry), self._keepalive):
                    raise _Stopped from None
                continue
            if self._redis_down_since is not None:
                log.warning(
                    "Redis reachable again after %.1f s; resumed",
                    time.monotonic() - self._redis_down_since,
                )
                self._redis_down_since = None
            return result


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT (Ctrl-C) set ``stop`` instead of killing the process."""

    def _handler(signum: int, frame: object) -> None:
        log.info("%s received; stopping after the message in hand", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
