"""The faust worker: a thin agent that hands batches to the processor core.

Per batch (``take_events`` of up to N records or T ms): decode and apply per partition, produce
dead letters, alerts and (when enabled) retrain and review requests and wait for their delivery,
then checkpoint each touched partition in one atomic Redis call. Faust acks the batch only after
this returns.

Redis is authoritative for positions, Kafka's committed offsets are advisory. On every assignment,
before faust resumes fetching (``on_rebalance_complete``), the worker bumps each partition's epoch,
loads its state, commits the stored positions to Kafka and seeks there, so the first record it
fetches is the one after the last applied; records fetched under an older group generation are
dropped, never applied (they are fetched again from the stored position).

Failures: Redis errors are retried with capped backoff (the batch waits, nothing is consumed
meanwhile; logged once when Redis goes away and once when it is back); alert delivery is retried
the same way while the broker is unavailable. Any other error while applying a batch drops every
partition's in-memory state (nothing of the failed batch is checkpointed) and stops the worker
with a non-zero exit, so it restarts from the last checkpoint instead of continuing with a hole.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
from faust.types import TP, EventT
from kafka.errors import KafkaError as SyncKafkaError
from prometheus_client import Counter, Gauge

from streams.batch_window import BatchWindow, feed_interval
from streams.config import Config, Connections
from streams.continuity import Continuity, OffsetContinuity
from streams.metrics import WorkerMetrics
from streams.model_health import ModelHealth, model_health
from streams.model_metrics import ModelMetricsCollector
from streams.processor import BatchResult, PartitionState, Processor, SourceRecord
from streams.redis_errors import REDIS_TRANSIENT_ERRORS
from streams.state import RedisStateStore, StaleEpochError, StateStore, take_checkpoint
from streams.status_feed import StatusFeed
from streams.status_page import STATUS_PAGE_HEADERS, STATUS_PAGE_HTML
from streams.topics import ensure_topics
from streams.transport import DriftlineApp

log = logging.getLogger("driftline.worker")

# transient Redis errors, plus socket errors the asyncio client lets through
_REDIS_RETRYABLE: tuple[type[BaseException], ...] = (*REDIS_TRANSIENT_ERRORS, OSError)
_END_OFFSETS_TIMEOUT_S = 5.0
_READY_TIMEOUT_S = 2.0
_DELIVERY_SLOW_S = 15.0
# how far (event time) one input topic may run ahead of the other before it is paused: half the
# join TTL, within these limits
_MIN_SKEW_MS = 1_000
_MAX_SKEW_MS = 60_000  # unacknowledged alerts after this long are reported as a Kafka outage
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
_FAIL_EXIT_AFTER_S = 20.0
_FAIL_EXIT_CODE = 70  # EX_SOFTWARE
_SHUTDOWN_CHECKPOINT_S = 10.0

T = TypeVar("T")
EndOffsetsFn = Callable[[list[TP]], Awaitable[Mapping[TP, int]]]


def _kafka_retryable() -> tuple[type[BaseException], ...]:
    """Producer errors worth retrying (aiokafka's, plus timeouts)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError
    from aiokafka.errors import KafkaError as AioKafkaError

    return (
        KafkaConnectionError,
        KafkaTimeoutError,
        RequestTimedOutError,
        AioKafkaError,
        SyncKafkaError,
        asyncio.TimeoutError,
        ConnectionError,
    )


class _Superseded(Exception):
    """A newer rebalance started while an assignment was being loaded."""


class WorkerFailed(RuntimeError):
    """The worker hit an error it cannot continue from without losing data."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Per-process settings that are not in the config file."""

    web_port: int
    web_host: str
    worker_id: str


class _Outage:
    """Logs one line when a dependency becomes unavailable and one when it is back."""

    def __init__(self, name: str, gauge: Gauge) -> None:
        self.name = name
        self.down = False
        self.since = 0.0
        self.gauge = gauge
        gauge.set(1)

    def failed(self, what: str, exc: BaseException) -> None:
        if not self.down:
            self.down, self.since = True, time.monotonic()
            self.gauge.set(0)
            log.error(
                "%s unavailable during %s (%s: %s); stopped consuming, retrying with backoff",
                self.name,
                what,
                type(exc).__name__,
                exc,
            )

    def ok(self) -> None:
        if self.down:
            self.down = False
            self.gauge.set(1)
            log.warning(
                "%s reachable again after %.1f s; resumed", self.name, time.monotonic() - self.since
            )


class WorkerRuntime:
    """Owns the partitions assigned to this worker and applies batches to them."""

    def __init__(
        self,
        app: faust.App,
        config: Config,
        store: StateStore,
        processor: Processor,
        metrics: WorkerMetrics,
        worker_id: str,
        end_offsets: EndOffsetsFn | None = None,
    ) -> None:
        self.app = app
        self.end_offsets = end_offsets if end_offsets is not None else self._consumer_end_offsets
        self.config = config
        self.store = store
        self.processor = processor
        self.metrics = metrics
        self.worker_id = worker_id
        self.topics = config.kafka.topics
        self._kinds = {self.topics.predictions: "predictions", self.topics.labels: "labels"}
        self.parts: dict[int, PartitionState] = {}
        self.lock = asyncio.Lock()

        def output(name: str) -> Any:
            return app.topic(name, key_serializer="raw", value_serializer="raw")

        self._drift_topic = output(self.topics.drift_alerts)
        self._perf_topic = output(self.topics.performance_alerts)
        self._dead_topic = output(self.topics.dead_letter)
        self._retrain_topic = output(self.topics.retrain_requests)
        self._review_topic = output(self.topics.review_requests)
        r = metrics.registry
        self.redis = _Outage(
            "Redis",
            Gauge("driftline_redis_up", "1 while Redis answers, 0 during an outage", registry=r),
        )
        self.kafka = _Outage(
            "Kafka (alert delivery)",
            Gauge("driftline_kafka_produce_up", "0 while alerts cannot be delivered", registry=r),
        )
        self.stale_generation = Counter(
            "driftline_records_stale_generation",
            "Records fetched before the latest rebalance, dropped (they are fetched again)",
            registry=r,
        )
        self.offset_holes = Counter(
            "driftline_offset_holes",
            "Holes in an input partition's offsets that were still there after a re-fetch",
            registry=r,
        )
        self.paused_gauge = Gauge(
            "driftline_inputs_paused",
            "Input partitions paused because their topic is ahead of the other in event time",
            registry=r,
        )
        # group generation the loaded state belongs to (-1: nothing loaded)
        self.generation = -1
        # bumped by every revocation, so a load that a newer rebalance overtook is abandoned
        self._rebalances = 0
        self.failed: BaseException | None = None
        self._crash_task: asyncio.Task[None] | None = None
        self._continuity = OffsetContinuity()
        self.refetched = Counter(
            "driftline_records_refetched",
            "Records after a hole in the fetched offsets, dropped and fetched again",
            registry=r,
        )
        # input partitions paused because their topic ran ahead of the other in event time
        self._paused: set[TP] = set()
        ttl = config.join.ttl_ms
        self.max_skew_ms = max(_MIN_SKEW_MS, min(ttl // 2, _MAX_SKEW_MS))
        # a partition is checkpointed after a batch once this has passed since its last one
        self.checkpoint_every_s = config.worker.checkpoint_every_ms / 1000
        self._unsaved: set[int] = set()  # partitions applied to since their last checkpoint
        self._checkpointed_at: dict[int, float] = {}  # monotonic time of the last checkpoint
        self.feed = StatusFeed()

    # -- rebalance --------------------------------------------------------------------------
    async def on_revoked(self, revoked: Iterable[TP]) -> None:
        """Forget revoked partitions at once, without waiting for an in-flight batch.

        Never blocks the rebalance (not even during a Redis outage): a batch still retrying its
        checkpoint for a revoked partition finishes it if its epoch is still current, and is
        refused (stale epoch) once the new owner has loaded the partition.
        """
        self._rebalances += 1
        gone = sorted({tp.partition for tp in revoked if tp.topic in self._kinds})
        for p in gone:
            self.parts.pop(p, None)
            self._forget(p)
        self.generation = -1
        self._continuity.reset()
        self._paused.clear()  # faust pauses and resumes everything around a rebalance
        self.metrics.partitions.set(len(self.parts))
        if gone:
            log.info("revoked partitions %s", gone)

    async def on_rebalance_complete(self) -> None:
        """Load the assigned partitions and position the consumer; runs before faust fetches.

        Faust awaits this before it resumes the paused partitions, seeks them to Kafka's committed
        offsets and resumes the flow. So the stored positions are committed first (Kafka's
        offsets may be ahead: records acked but not applied, or a Redis restored from an older
        snapshot) and the consumer is seeked there: nothing is fetched from anywhere else.
        """
        if self.failed is not None:
            return
        rebalances = self._rebalances
        generation = self.app.consumer_generation_id
        tps = sorted(
            (tp for tp in self.app.consumer.assignment() if tp.topic in self._kinds),
            key=lambda tp: (tp.partition, tp.topic),
        )
        partitions = sorted({tp.partition for tp in tps})

        def superseded() -> bool:
            return (
                self._rebalances != rebalances
                or self.app.consumer_generation_id != generation
                or self.app.should_stop
            )

        try:
            async with self.lock:
                loaded: dict[int, PartitionState] = {}
                for p in partitions:
                    loaded[p] = await self._retry_redis(
                        self._loader(p), f"loading partition {p}", superseded
                    )
                resume = {tp: loaded[tp.partition].offsets[self._kinds[tp.topic]] + 1 for tp in tps}
                if superseded():
                    raise _Superseded
                if resume:
                    # faust's public commit() only commits acked offsets; this one commits these
                    consumer: Any = self.app.consumer
                    committed = await consumer._commit(resume)
                    if not committed:
                        # the group rebalanced under us; the next assignment loads again
                        log.info("commit of stored positions refused (group rebalancing)")
                        raise _Superseded
                    await self.app.consumer.seek_wait(resume)
                if superseded():
                    raise _Superseded
                self.parts = loaded
                # just read from Redis: nothing to write until the next interval
                self._unsaved.clear()
                self._checkpointed_at = dict.fromkeys(loaded, time.monotonic())
                self.generation = generation
                self.metrics.partitions.set(len(loaded))
        except _Superseded:
            log.info("assignment of generation %s superseded by a newer rebalance", generation)
            return
        except Exception as exc:
            await self._fail(exc, f"loading partitions {partitions}")
            raise
        log.info(
            "assigned partitions %s (generation %s, epochs %s), resuming at %s",
            partitions,
            generation,
            [loaded[p].epoch for p in partitions],
            {f"{tp.topic}[{tp.partition}]": off for tp, off in resume.items()},
        )

    # -- observation ----------------------------------------------------------------------------
    def model_health(self) -> list[ModelHealth]:
        """Snapshot of every model in the partitions this worker owns."""
        settings_for = self.processor.settings_for
        return [
            model_health(model, settings_for(mid))
            for part in list(self.parts.values())
            for mid, model in list(part.models.items())
        ]

    async def readiness(self) -> dict[str, Any]:
        """``/readyz``: partitions assigned and loaded, Redis and the broker answering."""
        checks: dict[str, Any] = {
            "partitions": sorted(self.parts) if self.generation != -1 else [],
            "failed": self.failed is not None,
        }
        try:
            await asyncio.wait_for(self.store.ping(), _READY_TIMEOUT_S)
            checks["redis"] = True
        except Exception as exc:  # any failure means not ready; the reason is shown
            checks["redis"] = False
            checks["redis_error"] = type(exc).__name__
        owned = sorted(self.parts)
        probe = [TP(self.topics.predictions, owned[0] if owned else 0)]
        try:
            await asyncio.wait_for(self.end_offsets(probe), _READY_TIMEOUT_S)
            checks["kafka"] = True
        except Exception as exc:
            checks["kafka"] = False
            checks["kafka_error"] = type(exc).__name__
        checks["ready"] = bool(
            checks["partitions"] and checks["redis"] and checks["kafka"] and not checks["failed"]
        )
        return checks

    def status(self) -> dict[str, Any]:
        """``/api/status``: models, their recent history and the latest alerts."""
        health = self.model_health()
        self.feed.forget({h.model_id for h in health})
        return self.feed.snapshot(self.worker_id, health, int(time.time() * 1000))

    def partition_lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records not yet applied) per owned input partition, from the
        consumer's last fetched high watermarks."""
        out = []
        for p, part in sorted(self.parts.items()):
            for topic, kind in self._kinds.items():
                try:
                    high = self.app.consumer.highwater(TP(topic, p))
                except Exception:  # consumer not ready or partition unknown yet
                    continue
                if high is not None:
                    out.append((topic, p, max(0, high - part.offsets[kind] - 1)))
        return out

    def _loader(self, partition: int) -> Callable[[], Awaitable[PartitionState]]:
        return lambda: self.store.assign(partition, self.worker_id)

    # -- batches ----------------------------------------------------------------------------
    async def process(self, events: Sequence[EventT[Any]]) -> None:
        """Apply one batch from the agent; an unexpected error stops the worker (see _fail)."""
        try:
            await self._process(events)
        except asyncio.CancelledError:
            self._drop_all("cancelled mid-batch")
            raise
        except Exception as exc:
            await self._fail(exc, "applying a batch")
            raise

    async def _process(self, events: Sequence[EventT[Any]]) -> None:
        if self.failed is not None:
            raise WorkerFailed("worker stopped after an earlier failure") from self.failed
        async with self.lock:
            by_partition: dict[int, list[SourceRecord]] = {}
            stale = dropped = 0
            nxt: dict[TP, int] = {}  # next offset expected per input partition in this batch
            cut: set[TP] = set()  # input partitions with a hole in this batch: sought back
            for event in events:
                m = event.message
                if m.generation_id != self.generation or m.partition not in self.parts:
                    # fetched before the latest rebalance, or a partition we do not own (any
                    # more): it is read again by whoever loads the partition from Redis
                    stale += 1
                    continue
                tp = m.tp
                if tp in cut or not self._contiguous(tp, m.offset, nxt):
                    cut.add(tp)
                    dropped += 1
                    continue
                by_partition.setdefault(m.partition, []).append(
                    SourceRecord(
                        m.topic, m.partition, m.offset, m.key, m.value, round(m.timestamp * 1000)
                    )
                )
            if dropped:
                self.refetched.inc(dropped)
            if stale:
                self.stale_generation.inc(stale)
                self.metrics.records_not_owned.inc(stale)
            for p, records in by_partition.items():
                part = self.parts.get(p)
                if part is None:  # revoked while an earlier partition's batch was written
                    self.metrics.records_not_owned.inc(len(records))
                    continue
                caught_up = await self._caught_up(part)
                if self.parts.get(p) is not part:  # revoked while asking the broker
                    self.metrics.records_not_owned.inc(len(records))
                    continue
                result = self.processor.apply(
                    part, records, predictions_caught_up=caught_up[0], labels_caught_up=caught_up[1]
                )
                await self._finish(part, result)
                if self.parts.get(p) is part:
                    await self._align(part)
            for tp in cut:
                part = self.parts.get(tp.partition)
                if part is not None and tp not in self._paused:
                    # a paused partition is sought when it is resumed
                    await self.app.consumer.seek_wait({tp: part.offsets[self._kinds[tp.topic]] + 1})

    def _contiguous(self, tp: TP, offset: int, nxt: dict[TP, int]) -> bool:
        """Whether to apply ``offset`` of ``tp`` now (see :mod:`streams.continuity`)."""
        part = self.parts[tp.partition]
        expected = nxt.get(tp, part.offsets[self._kinds[tp.topic]] + 1)
        verdict = self._continuity.check(tp, expected, offset)
        if verdict is Continuity.HOLE:
            log.debug("%s: expected offset %d, got %d; seeking back", tp, expected, offset)
            return False
        if verdict is Continuity.GONE:
            self.offset_holes.inc()
            log.error(
                "%s[%d]: offsets %d..%d are not in Kafka (retention, compaction or transaction "
                "markers) and are not applied",
                tp.topic,
                tp.partition,
                expected,
                offset - 1,
            )
        if verdict is not Continuity.APPLIED:
            nxt[tp] = offset + 1
        return True

    async def tick(self) -> None:
        """Release labels of idle partitions whose prediction stream has nothing more to read."""
        if self.failed is not None:
            return
        try:
            async with self.lock:
                for p, part in list(self.parts.items()):
                    await self._align(part)
                    if self.parts.get(p) is not part:  # revoked during the await
                        continue
                    if part.join.buffer or part.join.pending:
                        await self._release_idle(part)
                    if self.parts.get(p) is part and p in self._unsaved:
                        await self._checkpoint_if_due(part)
        except asyncio.CancelledError:
            self._drop_all("cancelled mid-tick")
            raise
        except Exception as exc:
            await self._fail(exc, "releasing idle labels")
            raise

    async def _release_idle(self, part: PartitionState) -> None:
        caught_up = await self._caught_up(part)
        if not caught_up[0] or self.parts.get(part.partition) is not part:
            return
        before = part.join.pending
        result = self.processor.apply(
            part, [], predictions_caught_up=True, labels_caught_up=caught_up[1]
        )
        if result.alerts or part.dirty_models or part.join.pending != before:
            await self._finish(part, result)

    async def _align(self, part: PartitionState) -> None:
        """Keep the two input topics of a partition within ``max_skew_ms`` of event time.

        The label join waits for the slower topic (a prediction is only expired once the label
        stream has passed it, a label only released once the prediction stream has), so if one
        topic were read far ahead of the other - catching up a backlog, say - pending halves
        would pile up for the whole gap. The topic that is ahead is paused until the other
        catches up (or has nothing more to read). A resumed partition is sought back to the
        record after the last applied one: faust silently drops records of a partition that is
        paused while its fetched records are being handed out.
        """
        p = part.partition
        pt, lt = part.join.prediction_time, part.join.label_time
        tps = {"predictions": TP(self.topics.predictions, p), "labels": TP(self.topics.labels, p)}
        done = {kind: self._cached_caught_up(tp, part.offsets[kind]) for kind, tp in tps.items()}
        ahead = {"predictions": pt - lt, "labels": lt - pt}
        other = {"predictions": "labels", "labels": "predictions"}
        for kind, tp in tps.items():
            gap = ahead[kind]
            # an empty stream (-1) counts as infinitely behind; hysteresis: resume at half the gap
            limit = self.max_skew_ms // 2 if tp in self._paused else self.max_skew_ms
            wanted = gap > limit and not done[other[kind]]
            if wanted and tp not in self._paused:
                self.app.consumer.pause_partitions([tp])
                self._paused.add(tp)
                log.debug("paused %s: %d ms ahead of %s", tp, gap, other[kind])
            elif not wanted and tp in self._paused:
                # reposition while still paused, so nothing is fetched from the old position
                await self.app.consumer.seek_wait({tp: part.offsets[kind] + 1})
                if self.parts.get(p) is not part or tp not in self._paused:
                    continue  # a rebalance came in meanwhile: it repositions everything itself
                self._paused.discard(tp)
                self.app.consumer.resume_partitions([tp])
                log.debug("resumed %s at %d", tp, part.offsets[kind] + 1)
        self.paused_gauge.set(len(self._paused))

    def _cached_caught_up(self, tp: TP, offset: int) -> bool:
        try:
            high = self.app.consumer.highwater(tp)
        except Exception:  # consumer not ready or partition unknown yet
            return False
        return high is not None and offset + 1 >= high

    async def _caught_up(self, part: PartitionState) -> tuple[bool, bool]:
        """Whether each input topic's partition has nothing more to read right now.

        The consumer's cached high watermark comes from the last fetch and may predate records
        appended since: a label read now may refer to a prediction appended after that fetch. So
        when the cached value says "caught up", the broker is asked for the current end offset
        (a prediction acked before its label was produced is then always seen as unread), which
        keeps the release order of labels independent of fetch timing.
        """
        partition = part.partition
        tps = (TP(self.topics.predictions, partition), TP(self.topics.labels, partition))
        positions = (part.offsets["predictions"] + 1, part.offsets["labels"] + 1)
        maybe: list[TP] = []
        for tp, pos in zip(tps, positions, strict=True):
            try:
                high = self.app.consumer.highwater(tp)
            except Exception:  # consumer not ready or partition unknown yet
                high = None
            if high is not None and pos >= high:
                maybe.append(tp)
        if not maybe:
            return False, False
        try:
            fresh = await asyncio.wait_for(self.end_offsets(maybe), _END_OFFSETS_TIMEOUT_S)
        except Exception as exc:  # broker unreachable: assume there is more to read
            log.debug("end offsets of %s unavailable: %r", maybe, exc)
            return False, False
        done = tuple(
            tp in maybe and fresh.get(tp) is not None and pos >= fresh[tp]
            for tp, pos in zip(tps, positions, strict=True)
        )
        return done[0], done[1]

    async def _consumer_end_offsets(self, tps: list[TP]) -> Mapping[TP, int]:
        return await self.app.consumer.highwaters(*tps)

    async def _finish(self, part: PartitionState, result: BatchResult) -> None:
        """Produce a batch's outputs (retrying while the broker is away), then checkpoint the
        partition if its ``checkpoint_every_ms`` is up."""
        self._unsaved.add(part.partition)
        await self._emit(part, result)
        if self.parts.get(part.partition) is part:
            await self._checkpoint_if_due(part)

    async def _checkpoint_if_due(self, part: PartitionState) -> None:
        last = self._checkpointed_at.get(part.partition)
        if last is None or time.monotonic() - last >= self.checkpoint_every_s:
            await self._checkpoint(part)

    async def checkpoint_all(self) -> None:
        """Write every partition changed since its last checkpoint (at a graceful stop)."""
        async with self.lock:
            for p, part in list(self.parts.items()):
                if p in self._unsaved and self.parts.get(p) is part:
                    await self._checkpoint(part)

    async def _emit(self, part: PartitionState, result: BatchResult) -> None:
        self.metrics.observe_batch(part.partition, result)
        now_ms = int(time.time() * 1000)
        self.feed.record(
            (part.models[m] for m in part.dirty_models if m in part.models), result.alerts, now_ms
        )
        outputs: list[tuple[Any, bytes | None, bytes]] = [
            (self._dead_topic, key, value) for key, value in result.dead_letters
        ]
        for alert in result.alerts:
            topic = self._drift_topic if alert.is_drift else self._perf_topic
            outputs.append((topic, alert.model_id.encode(), alert.to_json(now_ms)))
            log.warning(
                "ALERT %s %s %s %s: %s",
                alert.severity,
                alert.type,
                alert.model_id,
                alert.signal,
                alert.message,
            )
        # requests travel with the alerts: delivered (retried) before the checkpoint
        for retrain in result.retrain_requests:
            outputs.append(
                (self._retrain_topic, retrain.model_id.encode(), retrain.to_json(now_ms))
            )
            log.warning(
                "RETRAIN REQUEST %s %s: %s", retrain.model_id, retrain.request_id, retrain.message
            )
        for review in result.review_requests:
            outputs.append((self._review_topic, review.model_id.encode(), review.to_json(now_ms)))
        if outputs:
            await self._deliver(outputs)

    async def _checkpoint(self, part: PartitionState) -> None:
        """Write the partition's changes (retrying while Redis is away); a stale epoch drops
        the partition."""
        cp = take_checkpoint(part)
        started = time.perf_counter()
        try:
            await self._retry_redis(
                lambda: self.store.write(cp), f"checkpoint of partition {part.partition}"
            )
        except StaleEpochError as exc:
            log.warning("%s; dropping it until the next assignment", exc)
            self.metrics.checkpoint_failures.labels(reason="stale_epoch").inc()
            if self.parts.get(part.partition) is part:
                del self.parts[part.partition]
                self._forget(part.partition)
                self.metrics.partitions.set(len(self.parts))
            return
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        if self.parts.get(part.partition) is part:
            self._unsaved.discard(part.partition)
            self._checkpointed_at[part.partition] = time.monotonic()

    def _forget(self, partition: int) -> None:
        self._unsaved.discard(partition)
        self._checkpointed_at.pop(partition, None)

    async def _deliver(self, outputs: list[tuple[Any, bytes | None, bytes]]) -> None:
        """Send every record and wait for the broker's acks; resend what failed.

        The producer retries on its own while the broker is away, so slow acknowledgements are
        only reported (once per outage) and waited for; records whose send failed are sent again
        after a backoff. Resending is safe: alerts and requests carry stable ids (consumers
        de-duplicate), dead letters name their source offset.
        """
        retryable = _kafka_retryable()
        delay = _BACKOFF_FIRST_S
        todo = list(outputs)
        while todo:
            pending: dict[asyncio.Future[Any], tuple[Any, bytes | None, bytes]] = {}
            failed: list[tuple[Any, bytes | None, bytes]] = []
            error: BaseException | None = None
            for item in todo:
                topic, key, value = item
                try:
                    pending[await topic.send(key=key, value=value)] = item
                except retryable as exc:
                    failed.append(item)
                    error = exc
            waiting = set(pending)
            while waiting:
                done, waiting = await asyncio.wait(waiting, timeout=_DELIVERY_SLOW_S)
                if waiting:
                    self.kafka.failed(
                        "alert delivery",
                        TimeoutError(
                            f"{len(waiting)} records unacknowledged after {_DELIVERY_SLOW_S:g} s"
                        ),
                    )
                for fut in done:
                    problem = fut.exception()
                    if problem is None:
                        continue
                    if not isinstance(problem, retryable):
                        raise problem
                    failed.append(pending[fut])
                    error = problem
            if not failed:
                break
            assert error is not None
            self.kafka.failed("alert delivery", error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)
            todo = failed
        self.kafka.ok()

    async def _retry_redis(
        self,
        make: Callable[[], Awaitable[T]],
        what: str,
        superseded: Callable[[], bool] | None = None,
    ) -> T:
        """Run a Redis call, retrying with capped exponential backoff while Redis is away.

        Retrying a checkpoint is safe (it writes absolute values under the epoch check); retrying
        an assignment at worst bumps the epoch twice.
        """
        delay = _BACKOFF_FIRST_S
        while True:
            try:
                result = await make()
            except _REDIS_RETRYABLE as exc:
                self.metrics.checkpoint_failures.labels(reason="redis_unavailable").inc()
                self.redis.failed(what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
                if superseded is not None and superseded():
                    raise _Superseded from None
                continue
            self.redis.ok()
            return result

    # -- failure ----------------------------------------------------------------------------
    def _drop_all(self, why: str) -> None:
        """Forget every partition's in-memory state so nothing half-applied is checkpointed."""
        if self.parts:
            log.warning("%s: dropping in-memory state of partitions %s", why, sorted(self.parts))
        self.parts = {}
        self._unsaved.clear()
        self._checkpointed_at.clear()
        self.generation = -1
        self.metrics.partitions.set(0)

    async def _fail(self, exc: BaseException, what: str) -> None:
        """Stop the worker: continuing would apply later records on top of a hole."""
        if self.failed is not None:
            return
        self.failed = exc
        partitions = sorted(self.parts)
        self._drop_all("worker failed")
        log.critical(
            "unexpected error while %s: %r. Partitions %s keep their last checkpoint (nothing "
            "of this batch was written); stopping the worker so that it restarts from there.",
            what,
            exc,
            partitions,
            exc_info=exc,
        )
        self.metrics.checkpoint_failures.labels(reason="worker_failed").inc()
        # Crash from a task of its own: awaited from inside the agent, faust's consumer shutdown
        # waits for the very batch that is failing and the process never exits. The watchdog is
        # the last resort if shutdown hangs anyway; the state is safe in Redis either way.
        self._crash_task = asyncio.get_running_loop().create_task(self.app.crash(exc))
        watchdog = threading.Timer(_FAIL_EXIT_AFTER_S, _hard_exit, args=(_FAIL_EXIT_CODE,))
        watchdog.daemon = True
        watchdog.start()


def _hard_exit(code: int) -> None:
    log.critical(
        "worker did not shut down within %.0f s of a fatal error; exiting", _FAIL_EXIT_AFTER_S
    )
    logging.shutdown()
    os._exit(code)


class EndOffsets:
    """Current end offsets from the broker, through a small client of its own.

    Faust's consumer serialises calls with its fetch long-poll (up to a second each); this
    group-less aiokafka consumer answers in a round trip.
    """

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self._client: Any = None
        self._starting = asyncio.Lock()

    async def __call__(self, tps: list[TP]) -> Mapping[TP, int]:
        client = await self._ensure()
        from aiokafka import TopicPartition

        found = await client.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return {TP(tp.topic, tp.partition): int(offset) for tp, offset in found.items()}

    async def _ensure(self) -> Any:
        async with self._starting:
            if self._client is None:
                from aiokafka import AIOKafkaConsumer

                c = self.connections
                options: dict[str, Any] = {
                    "bootstrap_servers": c.bootstrap_servers,
                    "group_id": None,
                    "enable_auto_commit": False,
                    "request_timeout_ms": 10_000,
                    "security_protocol": c.security_protocol,
                }
                if c.security_protocol in ("SSL", "SASL_SSL"):
                    options["ssl_context"] = _ssl_context(c)
                if c.sasl_mechanism:
                    options["sasl_mechanism"] = c.sasl_mechanism
                    options["sasl_plain_username"] = c.sasl_username
                    options["sasl_plain_password"] = c.sasl_password
                client = AIOKafkaConsumer(**options)
                try:
                    await client.start()
                except BaseException:
                    await client.stop()
                    raise
                self._client = client
            return self._client

    async def close(self) -> None:
        """Stop the client if it was started."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for ``--web-port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _broker_url(connections: Connections) -> str:
    hosts = [h.strip() for h in connections.bootstrap_servers.split(",") if h.strip()]
    return ";".join(f"kafka://{h}" for h in hosts)


def _ssl_context(connections: Connections) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=connections.ssl_cafile)
    if connections.ssl_certfile:
        context.load_cert_chain(connections.ssl_certfile, connections.ssl_keyfile)
    return context


def _credentials(connections: Connections) -> Any:
    ssl_context = None
    if connections.security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = _ssl_context(connections)
    if connections.sasl_mechanism:
        return faust.SASLCredentials(
            username=connections.sasl_username or "",
            password=connections.sasl_password or "",
            mechanism=connections.sasl_mechanism,
            ssl_context=ssl_context,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


def create_app(config: Config, connections: Connections, options: WorkerOptions) -> faust.App:
    """Build the faust app with the ingest agent, rebalance hooks, timer and web routes."""
    kafka = config.kafka
    app = DriftlineApp(
        kafka.group_id,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        broker=_broker_url(connections),
        broker_credentials=_credentials(connections),
        store="memory://",
        web_port=options.web_port,
        web_host=options.web_host,
        web_bind=options.web_host,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        # records handed to the stream but not yet applied: a topic paused for running ahead
        # still delivers them, so this bounds how far past the skew limit it gets (faust: 4096)
        stream_buffer_maxsize=config.worker.checkpoint_every_records,
        producer_acks=-1,
    )
    processor = Processor(config)
    store = RedisStateStore.from_url(
        connections.redis_url, processor, config.state.key_prefix, kafka.group_id
    )
    metrics = WorkerMetrics()
    end_offsets = EndOffsets(connections)
    runtime = WorkerRuntime(app, config, store, processor, metrics, options.worker_id, end_offsets)
    metrics.registry.register(
        ModelMetricsCollector(
            runtime.model_health, runtime.partition_lag, config.metrics.max_models
        )
    )
    source = app.topic(
        kafka.topics.predictions, kafka.topics.labels, key_serializer="raw", value_serializer="raw"
    )
    batch_records = config.worker.checkpoint_every_records
    batch_seconds = config.worker.batch_every_ms / 1000

    window: BatchWindow[EventT[Any]] = BatchWindow(runtime.process, batch_records, batch_seconds)

    @app.agent(source, name="driftline-ingest")
    async def ingest(stream: Any) -> None:  # faust.Stream; its stubs lack take_events
        async for events in stream.take_events(batch_records, within=feed_interval(batch_seconds)):
            await window.add(events)

    @app.timer(max(batch_seconds, 0.2))
    async def release_idle() -> None:
        await runtime.tick()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _rebalance_complete(sender: faust.App, **_: Any) -> None:
        await runtime.on_rebalance_complete()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(sender: faust.App, revoked: set[TP], **_: Any) -> None:
        await runtime.on_revoked(revoked)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _shutdown(sender: faust.App, **_: Any) -> None:
        await window.close()
        try:  # what was applied since the last checkpoints need not be redone after a restart
            await asyncio.wait_for(runtime.checkpoint_all(), _SHUTDOWN_CHECKPOINT_S)
        except Exception as exc:  # redone after the restart instead
            log.warning("final checkpoints not written (%r); the next owner redoes that work", exc)
        await end_offsets.close()
        await store.close()

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "worker_id": options.worker_id})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        checks = await runtime.readiness()
        return web.json(checks, status=200 if checks["ready"] else 503)

    @app.page("/api/status")
    async def api_status(web: Any, request: Any) -> Any:
        return web.json(runtime.status())

    @app.page("/")  # registered before faust's own "/" (production index), so it wins
    async def status_page(web: Any, request: Any) -> Any:
        return web.html(STATUS_PAGE_HTML, headers=dict(STATUS_PAGE_HEADERS))

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        # aiohttp refuses a charset inside content_type=; Prometheus' type carries one
        return web.bytes(body, headers={"Content-Type": content_type})

    app.driftline_runtime = runtime  # type: ignore[attr-defined]

    @app.task
    async def announce() -> None:
        host = "127.0.0.1" if options.web_host in ("0.0.0.0", "") else options.web_host
        log.warning(
            "driftline worker %s web server: http://%s:%d/ (metrics at /metrics)",
            options.worker_id,
            host,
            options.web_port,
        )

    return app


def run_worker(
    config: Config, connections: Connections, web_port: int | None, loglevel: str = "info"
) -> None:
    """Ensure topics, then run a faust worker until stopped (SIGTERM/SIGINT stop it cleanly)."""
    port = config.worker.web_port if web_port is None else web_port
    if port == 0:
        port = free_port()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    ensure_topics(config, connections)
    log.info("Redis %s, Kafka %s", connections.redacted_redis_url(), connections.bootstrap_servers)
    app = create_app(
        config,
        connections,
        WorkerOptions(web_port=port, web_host=config.worker.web_host, worker_id=worker_id),
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
