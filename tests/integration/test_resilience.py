"""Nothing lost, nothing counted twice: crashes, scale-out, zombies, Redis outages, join TTL.

The chaos tests stream one deterministic input (20 models over 4 partitions, 100,000 labelled
predictions with injected concept, data, prediction and regression drift) through real worker
processes, the real broker and a real Redis while something goes wrong, and compare the outcome
with an uninterrupted run of the same input: per-model counters (all but ``late_joins``, which
depends on how the two topics interleave) and the set of alert ids must be equal.

The random moments come from ``DRIFTLINE_CHAOS_SEED`` if set, else a fresh seed; it is printed
(pytest shows it with a failure) so a failing schedule can be replayed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis

from streams.embedded import EmbeddedStack
from streams.join import parse_buffer_field
from streams.state import _CHECKPOINT_LUA, partition_keys
from streams.status import read_partitions
from tests.integration.pipeline import (
    BackgroundProducer,
    Pipeline,
    Record,
    all_processed,
    applied_records,
    counters,
    metric_values,
    wait_for_applied,
    write_config,
)
from tests.integration.tcp_gate import TcpGate

T0 = 1_700_000_000_000
MODELS = 20
PER_MODEL = 5_000
STEP_MS = 10
WINDOW_MS = 2_000  # event time per producer window
PARTITIONS = 4
TOTAL = 2 * MODELS * PER_MODEL  # every prediction gets a label


@dataclass(frozen=True)
class Dataset:
    """The input, as the producer windows, and what every model must end up with."""

    windows: list[tuple[list[Record], list[Record]]]
    expected: dict[str, tuple[int, int]]  # model -> (predictions, labels)


@functools.cache
def dataset() -> Dataset:
    """20 models, 5,000 predictions each, every one labelled 20-400 ms (event time) later.

    By ``model % 5``: 0 accuracy falls from 95 % to 60 % (concept drift, performance), 1 a feature
    shifts by 2 sd (data drift), 2 the score distribution flips (prediction drift), 3 a regressor's
    output shifts by 2.5 sd (prediction drift), 4 nothing changes. Change points are drawn per
    model in the middle 20 % of its stream.
    """
    rng = np.random.default_rng(20_261_122)
    preds: list[tuple[int, str, bytes]] = []
    labels: list[tuple[int, str, bytes]] = []
    i = np.arange(PER_MODEL)
    for m in range(MODELS):
        mid = f"model-{m:02d}"
        kind = m % 5
        after = i >= int(PER_MODEL * rng.uniform(0.4, 0.6))
        ts = T0 + i * STEP_MS + m
        delay = rng.integers(20, 400, PER_MODEL)
        if kind == 3:
            y = rng.normal(100, 10, PER_MODEL) + np.where(after, 25.0, 0.0)
            truth = y + rng.normal(0, 2, PER_MODEL)
            pred_values: list[dict[str, Any]] = [{"prediction": float(v)} for v in y]
            label_values: list[Any] = [float(v) for v in truth]
        else:
            score = rng.beta(2, 5, PER_MODEL)
            if kind == 2:
                score = np.where(after, rng.beta(5, 2, PER_MODEL), score)
            x = rng.normal(0, 1, PER_MODEL) + np.where(after & (kind == 1), 2.0, 0.0)
            plan = rng.choice(["basic", "pro", "team"], PER_MODEL, p=[0.6, 0.3, 0.1])
            correct = rng.random(PER_MODEL) < np.where(after & (kind == 0), 0.6, 0.95)
            classes = (score > 0.5).astype(int)
            pred_values = [
                {
                    "prediction": int(c),
                    "score": round(float(s), 6),
                    "features": {"x": round(float(v), 6), "plan": str(p_)},
                    "model_version": "v1",
                }
                for c, s, v, p_ in zip(classes, score, x, plan, strict=True)
            ]
            label_values = [
                int(c) if ok else 1 - int(c) for c, ok in zip(classes, correct, strict=True)
            ]
        for k in range(PER_MODEL):
            t = int(ts[k])
            pid = f"{mid}-{k}"
            event = {"model_id": mid, "prediction_id": pid, "timestamp": t, **pred_values[k]}
            preds.append((t, mid, orjson.dumps(event)))
            lt = t + int(delay[k])
            label = {"model_id": mid, "prediction_id": pid, "label": label_values[k]}
            labels.append((lt, mid, orjson.dumps({**label, "timestamp": lt})))
    preds.sort(key=lambda r: (r[0], r[1]))
    labels.sort(key=lambda r: (r[0], r[1]))
    n_windows = (max(r[0] for r in labels) - T0) // WINDOW_MS + 1
    windows: list[tuple[list[Record], list[Record]]] = [([], []) for _ in range(n_windows)]
    # a label's window is never before its prediction's: the producer sends it after
    for t, mid, value in preds:
        windows[(t - T0) // WINDOW_MS][0].append((mid.encode(), value))
    for t, mid, value in labels:
        windows[(t - T0) // WINDOW_MS][1].append((mid.encode(), value))
    expected = {f"model-{m:02d}": (PER_MODEL, PER_MODEL) for m in range(MODELS)}
    return Dataset(windows, expected)


@dataclass
class Outcome:
    """What a run left behind."""

    counters: dict[str, dict[str, int]]
    alert_ids: set[str]
    alert_types: Counter[str]
    seconds: float


def chaos_random(name: str) -> random.Random:
    """A seeded RNG for one test's schedule; the seed is printed for replays."""
    seed = int(os.environ.get("DRIFTLINE_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"{name}: DRIFTLINE_CHAOS_SEED={seed}")
    return random.Random(seed)


def run_pipeline(
    stack: EmbeddedStack,
    tmp_path: Path,
    name: str,
    workers: int = 2,
    chaos: Callable[[Pipeline], None] | None = None,
    redis_urls: Sequence[str] = (),
    **sections: Any,
) -> Outcome:
    """Stream the dataset through fresh topics with ``workers`` workers while ``chaos`` runs.

    Worker ``i`` reaches Redis at ``redis_urls[i]`` if given (a gate), else the stack's.
    """
    data = dataset()
    prefix = f"{name}{uuid.uuid4().hex[:8]}"
    p = Pipeline(
        stack, write_config(tmp_path, prefix, partitions=PARTITIONS, **sections), tmp_path / name
    )
    started = time.monotonic()
    try:
        p.create_topics()
        for i in range(workers):
            p.start_worker(redis_urls[i] if i < len(redis_urls) else None)
        producer = BackgroundProducer(stack.bootstrap_servers, p.topics, data.windows)
        producer.start()
        if chaos is not None:
            chaos(p)
        producer.finish()
        done = p.wait_until(all_processed(data.expected), timeout_s=240, what=f"{name}: all events")
        result = counters(done)
        alerts = p.alerts()
        for w in p.workers:
            assert w.running, f"{w.log_path.name} exited ({w.returncode}):\n{w.tail()}"
        return Outcome(
            counters=result,
            alert_ids={a["alert_id"] for a in alerts},
            alert_types=Counter(a["type"] for a in alerts),
            seconds=time.monotonic() - started,
        )
    finally:
        p.close()
        with contextlib.suppress(redis.RedisError):
            keys = list(p.redis.scan_iter(match=f"*{prefix}*", count=1000))
            if keys:
                p.redis.delete(*keys)


@pytest.fixture(scope="module")
def reference(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The uninterrupted run the chaos runs must equal (2 workers, nothing goes wrong)."""
    out = run_pipeline(stack, tmp_path_factory.mktemp("reference"), "ref")
    for mid, c in out.counters.items():
        assert c["predictions"] == c["labels"] == c["joined"] == PER_MODEL, (mid, c)
        assert c["expired_predictions"] == c["expired_labels"] == 0, (mid, c)
    # several kinds of alerts, so that every detector's state has to survive the chaos
    assert {"concept_drift", "data_drift", "prediction_drift", "performance"} <= set(
        out.alert_types
    ), out.alert_types
    print(f"reference run: {out.seconds:.1f} s, alerts {dict(out.alert_types)}")
    return out


def assert_same(outcome: Outcome, reference: Outcome, seed_hint: str = "") -> None:
    """Counters and alert ids equal the uninterrupted run, with a readable diff if not."""
    differing = {
        mid: (outcome.counters.get(mid), reference.counters.get(mid))
        for mid in set(outcome.counters) | set(reference.counters)
        if outcome.counters.get(mid) != reference.counters.get(mid)
    }
    assert not differing, f"{seed_hint} counters differ (got, uninterrupted): {differing}"
    missing = reference.alert_ids - outcome.alert_ids
    extra = outcome.alert_ids - reference.alert_ids
    assert not missing and not extra, (
        f"{seed_hint} alert ids differ: {len(missing)} missing, {len(extra)} extra"
    )


def owners(p: Pipeline) -> dict[int, str | None]:
    """Partition -> owner recorded at its last assignment."""
    rows = read_partitions(p.redis, p.config.state.key_prefix, p.config.kafka.group_id)
    return {r["partition"]: r["owner"] for r in rows}


def worker_id(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# -- 1. crash ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_five_random_moments_changes_nothing(
    stack: EmbeddedStack, tmp_path: Path, reference: Outcome
) -> None:
    rnd = chaos_random("crash")
    moments = sorted(rnd.uniform(0.05, 0.85) for _ in range(5))
    kills: list[int] = []

    def chaos(p: Pipeline) -> None:
        for fraction in moments:
            wait_for_applied(p, int(fraction * TOTAL))
            victim = rnd.choice(p.workers)
            victim.kill()
            assert victim.returncode == -signal.SIGKILL
            kills.append(applied_records(p))
            victim.start()
            victim.web_url()

    outcome = run_pipeline(stack, tmp_path, "crash", chaos=chaos)
    print(f"crash run: {outcome.seconds:.1f} s, killed at {kills} of {TOTAL} records")
    assert len(kills) == 5 and max(kills) < TOTAL, "every kill must land mid-stream"
    assert_same(outcome, reference, f"kills at {kills}:")


# -- 2. scale out and in ----------------------------------------------------------------------


@pytest.mark.slow
def test_scaling_from_one_to_three_workers_and_back_changes_nothing(
    stack: EmbeddedStack, tmp_path: Path, reference: Outcome
) -> None:
    rnd = chaos_random("scale")
    events: list[tuple[str, int]] = []

    def chaos(p: Pipeline) -> None:
        for fraction in (0.1, 0.3):
            wait_for_applied(p, int(fraction * TOTAL))
            new = p.start_worker()
            events.append((f"start worker {len(p.workers)}", applied_records(p)))
            # it joined the group once it logged its (possibly empty) assignment
            new.wait_for_log(r"assigned partitions \[", 60)
        # faust's sticky assignor gives 4 partitions to 3 workers as 2/2/0 (balanced up to
        # ceil(4/3)); stop one that owns partitions so that the idle one has to take over
        owned = set(owners(p).values())
        victim = rnd.choice([w for w in p.workers if worker_id(w.pid) in owned])
        wait_for_applied(p, int(0.55 * TOTAL))
        events.append((f"SIGTERM {victim.log_path.name}", applied_records(p)))
        assert victim.stop() == 0, victim.tail()
        p.workers.remove(victim)
        wait_for(
            lambda: worker_id(victim.pid) not in owners(p).values(),
            "the stopped worker's partitions to move",
        )
        events.append(("partitions moved", applied_records(p)))
        assert set(owners(p).values()) <= {worker_id(w.pid) for w in p.workers}

    outcome = run_pipeline(stack, tmp_path, "scale", workers=1, chaos=chaos)
    print(f"scale run: {outcome.seconds:.1f} s, {events}")
    assert all(n < TOTAL for _, n in events), f"every step must land mid-stream: {events}"
    assert_same(outcome, reference, f"{events}:")


# -- 3. zombie --------------------------------------------------------------------------------


@pytest.mark.slow
def test_paused_worker_is_fenced_off_and_rejoins(
    stack: EmbeddedStack, tmp_path: Path, reference: Outcome
) -> None:
    rnd = chaos_random("zombie")
    notes: dict[str, Any] = {}
    gates = [TcpGate.for_url(stack.redis_url) for _ in range(2)]
    checkpoint_sha = hashlib.sha1(_CHECKPOINT_LUA.encode()).hexdigest().encode()

    def chaos(p: Pipeline) -> None:
        wait_for_applied(p, int(rnd.uniform(0.15, 0.35) * TOTAL))
        z = rnd.randrange(2)
        zombie, other, gate = p.workers[z], p.workers[1 - z], gates[z]
        zombie_url = zombie.web_url()
        # pause it with a checkpoint in flight: sent, not yet seen by Redis (a GC or VM pause
        # at the worst moment). Left to chance, the pause mostly lands between batches.
        gate.hold()
        wait_for(lambda: checkpoint_sha in gate.held(), "a checkpoint of the zombie in flight")
        zombie.signal(signal.SIGSTOP)
        notes["paused_at"] = applied_records(p)
        # the session times out; the other worker is assigned everything and bumps the epochs
        wait_for(
            lambda: set(owners(p).values()) == {worker_id(other.pid)},
            "the paused worker's partitions to be reassigned",
        )
        notes["reassigned_at"] = applied_records(p)
        gate.release()  # the stale checkpoint reaches Redis now
        zombie.signal(signal.SIGCONT)
        # ... and is refused by the epoch fence
        zombie.wait_for_log(r"checkpoint refused, epoch \d+ is stale", 30)
        failures = metric_values(zombie_url, "driftline_checkpoint_failures_total")
        assert failures.get('{reason="stale_epoch"}', 0) >= 1, failures
        # it rejoins the group and gets partitions back
        wait_for(
            lambda: worker_id(zombie.pid) in owners(p).values(),
            "the former zombie to own a partition again",
        )
        notes["rejoined_at"] = applied_records(p)
        assert zombie.running

    try:
        outcome = run_pipeline(
            stack, tmp_path, "zombie", chaos=chaos, redis_urls=[g.url for g in gates]
        )
    finally:
        for g in gates:
            g.close()
    print(f"zombie run: {outcome.seconds:.1f} s, {notes}")
    assert notes["rejoined_at"] < TOTAL, f"the zombie must rejoin mid-stream: {notes}"
    assert_same(outcome, reference, f"{notes}:")


# -- 4. Redis outage --------------------------------------------------------------------------

OUTAGE_S = 20.0


@pytest.fixture
def private_stack(stack: EmbeddedStack) -> Iterator[EmbeddedStack]:
    """A stack whose Redis this test may stop: the session's, unless that one was given."""
    if stack.owns_redis:
        yield stack
    else:
        with EmbeddedStack(use_env_redis_url=False) as own:
            yield own


@pytest.mark.slow
def test_redis_outage_longer_than_the_session_timeout_changes_nothing(
    private_stack: EmbeddedStack, tmp_path: Path, reference: Outcome
) -> None:
    rnd = chaos_random("outage")
    notes: dict[str, Any] = {}
    first_two: list[Any] = []

    def consumed(url: str) -> float:
        return sum(metric_values(url, "driftline_records_consumed_total").values())

    def chaos(p: Pipeline) -> None:
        first_two.extend(p.workers)
        urls = [w.web_url() for w in p.workers]
        notes["stopped_at"] = wait_for_applied(p, int(rnd.uniform(0.15, 0.5) * TOTAL))
        private_stack.stop_redis()
        started = time.monotonic()
        time.sleep(4)
        before = [consumed(u) for u in urls]
        assert [metric_values(u, "driftline_redis_up")[""] for u in urls] == [0.0, 0.0]
        # a rebalance in the middle of the outage: a third worker joins (its load waits too)
        p.start_worker()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
        after = [consumed(u) for u in urls]
        assert after == before, "workers must not consume while Redis is down"
        for w in p.workers:
            assert w.running, w.tail()
        private_stack.start_redis()
        notes["outage_s"] = round(time.monotonic() - started, 1)
        wait_for(
            lambda: all(metric_values(u, "driftline_redis_up")[""] == 1.0 for u in urls),
            "workers to see Redis again",
        )
        notes["resumed_at"] = applied_records(p)

    outcome = run_pipeline(private_stack, tmp_path, "outage", chaos=chaos)
    print(f"outage run: {outcome.seconds:.1f} s, {notes}")
    assert notes["resumed_at"] < TOTAL, f"the outage must land mid-stream: {notes}"
    assert_same(outcome, reference, f"{notes}:")
    for w in first_two:
        log = w.log_text()
        # one line when Redis went away and one when it came back, not one per retry
        assert log.count("Redis unavailable during") == 1, w.tail(60)
        assert log.count("Redis reachable again") == 1, w.tail(60)


@pytest.mark.slow
def test_broker_frozen_for_twenty_seconds_changes_nothing(
    tmp_path: Path, reference: Outcome
) -> None:
    rnd = chaos_random("broker")
    notes: dict[str, Any] = {}
    with EmbeddedStack(use_env_redis_url=False) as own:
        broker = own.broker_pid
        assert broker is not None

        def chaos(p: Pipeline) -> None:
            notes["frozen_at"] = wait_for_applied(p, int(rnd.uniform(0.15, 0.5) * TOTAL))
            os.kill(broker, signal.SIGSTOP)  # requests hang: no fetch, no heartbeat, no ack
            try:
                time.sleep(OUTAGE_S)
                for w in p.workers:
                    assert w.running, w.tail()
            finally:
                os.kill(broker, signal.SIGCONT)
            notes["resumed_at"] = applied_records(p)

        outcome = run_pipeline(own, tmp_path, "broker", chaos=chaos)
    print(f"broker run: {outcome.seconds:.1f} s, {notes}")
    assert notes["resumed_at"] < TOTAL, f"the freeze must land mid-stream: {notes}"
    assert_same(outcome, reference, f"{notes}:")


# -- 5. label-join TTL ------------------------------------------------------------------------

TTL_MS = 2_000
TTL_MODELS = 8
TTL_PREDICTIONS = 12_000  # per model, 10 ms apart: 120 s of event time, 60 TTLs
LABEL_EVERY = 4  # every 4th prediction gets a label 50-300 ms later; the rest never do


def _pending(client: redis.Redis, prefix: str, partition: int) -> int:
    """Pending join halves stored for the partition (its hash also holds buffered labels)."""
    key = partition_keys(prefix, prefix, partition)[2]
    return sum(
        1 for field, _ in client.hscan_iter(key, count=5000) if parse_buffer_field(field) is None
    )


@pytest.mark.slow
def test_expired_join_halves_are_counted_and_pending_state_stays_bounded(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: redis.Redis
) -> None:
    rng = np.random.default_rng(5)
    p = Pipeline(
        stack,
        write_config(tmp_path, prefix, partitions=PARTITIONS, join={"ttl_ms": TTL_MS}),
        tmp_path,
    )
    p.create_topics()
    models = [f"ttl-{m}" for m in range(TTL_MODELS)]
    preds: list[Record] = []
    labels: list[Record] = []
    for k in range(TTL_PREDICTIONS):
        for mid in models:
            t = T0 + k * STEP_MS
            event = {"model_id": mid, "prediction_id": f"{mid}-{k}", "timestamp": t}
            preds.append((mid.encode(), orjson.dumps({**event, "prediction": 1, "score": 0.7})))
            if k % LABEL_EVERY == 0:
                lt = t + int(rng.integers(50, 300))
                labels.append((mid.encode(), orjson.dumps({**event, "timestamp": lt, "label": 1})))
    labels.sort(key=lambda r: orjson.loads(r[1])["timestamp"])
    labelled = len(range(0, TTL_PREDICTIONS, LABEL_EVERY))
    try:
        # all up front: expiry then depends only on the input (the label stream time)
        producer = BackgroundProducer(stack.bootstrap_servers, p.topics, [(preds, labels)])
        producer.start()
        producer.finish()
        p.start_worker()
        per_partition = Counter(_partition_of(mid) for mid in models)
        # A prediction expires once the label stream has passed it by the TTL, and the label
        # stream may lag the predictions by the worker's skew limit (half the TTL, at least 1 s).
        # The leading topic is paused after a batch, and records faust fetched before the pause
        # are still delivered, so the lead can reach about twice that; plus one batch that may
        # be applied before expiry runs. Without expiry it would grow to 9,000 a model.
        skew_ms = max(1_000, TTL_MS // 2)
        bound = {
            part: 2 * n * ((TTL_MS + skew_ms) // STEP_MS + 1)
            + 2 * p.config.worker.checkpoint_every_records
            for part, n in per_partition.items()
        }
        peak = dict.fromkeys(per_partition, 0)
        mid_run_expired = 0
        total = TTL_MODELS * TTL_PREDICTIONS
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for part in per_partition:
                peak[part] = max(peak[part], _pending(redis_client, prefix, part))
            models_now = p.models()
            seen = sum(m.counters["predictions"] for m in models_now.values())
            if not mid_run_expired and total // 3 < seen < total // 2:
                mid_run_expired = sum(
                    m.counters["expired_predictions"] for m in models_now.values()
                )
            if all_processed({mid: (TTL_PREDICTIONS, labelled) for mid in models})(models_now):
                break
            time.sleep(0.1)
        final = p.wait_until(
            all_processed({mid: (TTL_PREDICTIONS, labelled) for mid in models}), what="all events"
        )
        time.sleep(1.0)  # the idle timer's last expiry pass
        final = p.models()
        print(f"pending peak per partition {peak}, bound {bound}")
        assert mid_run_expired > 0, "halves must expire while the stream runs"
        for part, n in peak.items():
            assert 0 < n <= bound[part], (part, n, bound[part])
        pending_now = {part: _pending(redis_client, prefix, part) for part in per_partition}
        for mid in models:
            c = final[mid].counters
            assert c["joined"] == labelled, c  # every label came within the TTL
            assert c["expired_labels"] == 0, c
            waiting = TTL_PREDICTIONS - labelled - c["expired_predictions"]
            # only the last TTL's worth of unlabelled predictions may still be waiting
            assert 0 <= waiting <= TTL_MS // STEP_MS + 1, (mid, c)
        assert sum(pending_now.values()) == sum(
            TTL_PREDICTIONS - labelled - final[mid].counters["expired_predictions"]
            for mid in models
        )
        status = _status_json(p)
        by_partition = {row["partition"]: row for row in status["partitions"]}
        for part, n in pending_now.items():
            assert by_partition[part]["join_pending"] == n
    finally:
        p.close()


def _partition_of(model_id: str) -> int:
    from streams.replay import partition_for

    return partition_for(model_id.encode(), PARTITIONS)


# -- driftline status -------------------------------------------------------------------------


def _status(p: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "status", "--config", str(p.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **p.stack.env()},
    )


def _status_json(p: Pipeline) -> dict[str, Any]:
    result = _status(p, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = orjson.loads(result.stdout)
    return data


def test_status_shows_owners_epochs_offsets_lag_and_model_state(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: redis.Redis
) -> None:
    p = Pipeline(stack, write_config(tmp_path, prefix, partitions=PARTITIONS), tmp_path)
    p.create_topics()
    models = [f"st-{m}" for m in range(6)]
    n = 400
    try:
        preds, labels = [], []
        for mid in models:
            for k in range(n):
                event = {"model_id": mid, "prediction_id": f"{mid}-{k}", "timestamp": T0 + k}
                preds.append({**event, "prediction": k % 2, "score": 0.3 + 0.4 * (k % 2)})
                labels.append({**event, "timestamp": T0 + k + 5, "label": k % 2})
        p.send(p.topics.predictions, preds)
        p.send(p.topics.labels, labels)
        worker = p.start_worker()
        p.wait_until(all_processed({mid: (n, n) for mid in models}), what="all events")
        time.sleep(0.5)
        assert worker.stop() == 0
        # records nobody has read yet show up as lag on their partition
        late = models[0]
        p.send(
            p.topics.predictions,
            [
                {"model_id": late, "prediction_id": f"late-{k}", "prediction": 1, "timestamp": T0}
                for k in range(25)
            ],
        )

        status = _status_json(p)
        parts = {row["partition"]: row for row in status["partitions"]}
        assert sorted(parts) == list(range(PARTITIONS))
        per_partition = Counter(_partition_of(mid) for mid in models)
        for part, row in parts.items():
            if part not in per_partition:  # never had a record: never assigned state
                continue
            assert row["owner"] == worker_id(worker.pid)
            assert row["epoch"] >= 1
            count = per_partition[part] * n
            assert row["offset_predictions"] == count - 1
            assert row["offset_labels"] == count - 1
            assert row["lag_labels"] == 0
            assert row["lag_predictions"] == (25 if part == _partition_of(late) else 0), row
            assert row["join_pending"] == 0
        by_model = {m["model_id"]: m for m in status["models"]}
        assert sorted(by_model) == models
        for mid in models:
            m = by_model[mid]
            assert (m["predictions"], m["labels"], m["joined"]) == (n, n, n)
            assert m["partition"] == _partition_of(mid)
            assert m["window_metric"] == 1.0  # every label matched its prediction
            detectors = m["detectors"]
            assert detectors["error"]["detector"] == "adwin"
            assert "score" in {d.get("signal") for d in detectors.values()}

        table = _status(p)
        assert table.returncode == 0, table.stderr
        for word in ("partition", "owner", "epoch", "lag", *models):
            assert word in table.stdout
    finally:
        p.close()


# -- an unexpected error stops the worker instead of skipping data ------------------------------

_FAULTY_WORKER = textwrap.dedent(
    """
    import sys
    from streams import processor

    original = processor.Processor.apply
    calls = 0

    def apply(self, part, records, **kwargs):
        global calls
        records = list(records)
        if records:
            calls += 1
            if calls == 3:
                raise ValueError("injected bug")
        return original(self, part, records, **kwargs)

    processor.Processor.apply = apply
    from streams.cli import main

    main(sys.argv[1:])
    """
)


@pytest.mark.slow
def test_unexpected_error_stops_the_worker_and_a_restart_loses_nothing(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: redis.Redis
) -> None:
    # every batch checkpointed, so that the ones before the bad batch are surely in Redis
    worker = {"checkpoint_every_records": 500, "checkpoint_every_ms": 1}
    p = Pipeline(stack, write_config(tmp_path, prefix, partitions=2, worker=worker), tmp_path)
    p.create_topics()
    models = [f"bug-{m}" for m in range(4)]
    n = 3000
    try:
        p.send(
            p.topics.predictions,
            [
                {"model_id": mid, "prediction_id": f"{mid}-{k}", "prediction": 1, "score": 0.9}
                for k in range(n)
                for mid in models
            ],
        )
        script = tmp_path / "faulty_worker.py"
        script.write_text(_FAULTY_WORKER)
        cmd = [sys.executable, str(script), "worker", "--web-port", "0"]
        faulty = subprocess.run(
            [*cmd, "--config", str(p.config_path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **p.stack.env(), "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        log = faulty.stdout + faulty.stderr
        assert faulty.returncode != 0, log[-3000:]
        assert "unexpected error while applying a batch: ValueError('injected bug')" in log
        stored = sum(m.counters["predictions"] for m in p.models().values())
        assert 0 < stored < n * len(models)  # the batches before the bad one are kept

        p.start_worker()
        done = p.wait_until(all_processed({mid: (n, 0) for mid in models}), what="all events")
        assert {mid: done[mid].counters["predictions"] for mid in models} == dict.fromkeys(
            models, n
        )
    finally:
        p.close()
