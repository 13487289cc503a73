"""Throughput benchmark: driftline against the consume-and-decode ceiling, on the embedded broker.

One run, one machine, one broker (Tansu) and a private Redis:

1. ceiling: a group-less aiokafka consumer reading the single-event records and decoding each
   with orjson;
2. a bare faust agent that only decodes each record (faust's per-record cost);
3. a driftline worker end to end (decode, join, detectors, Redis checkpoints, alerts) on the same
   single-event records;
4. the same events as 100-event envelopes from the producer SDK;
5. alert latency (``log_prediction`` called -> alert consumed) at half the rate measured in 4;
6. one worker holding 10,000 models with 5 numeric signals each: worker RSS and Redis memory.

Rates of 1-4 are timed from the first record consumed to the last (for a worker: from its first
applied record to the checkpoint covering the last), so group joins and process start-up are not
counted for anyone.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2
from prometheus_client.parser import text_string_to_metric_families

from bench import BenchResult, Row, RunOptions
from streams.client import Monitor
from streams.config import load_config
from streams.embedded import EmbeddedStack
from streams.model_state import ModelState
from streams.processor import Processor, SourceRecord
from streams.state import RedisStateStore, partition_keys, take_checkpoint
from streams.worker_process import WorkerProcess

__all__ = ["run"]

PARTITIONS = 4
MODELS = 100
T0_MS = 1_700_000_000_000
SESSION_TIMEOUT_MS = 6000
FAST_DETECTION: dict[str, Any] = {
    "cooldown_events": 200,
    "prediction_drift": {"warmup": 100},
    "data_drift": {"warmup": 100},
}


@dataclass(frozen=True)
class Sizes:
    """How much each part of the benchmark processes."""

    events: int  # predictions + labels, over MODELS models (parts 1-4)
    latency_seconds: float  # part 5
    memory_models: int  # part 6
    memory_predictions_per_model: int  # new events per model after the seeded state
    steady_predictions: int  # labelled predictions that bring the seeded state to steady state


FULL = Sizes(events=1_000_000, latency_seconds=20.0, memory_models=10_000,
             memory_predictions_per_model=30, steady_predictions=5_000)  # fmt: skip
QUICK = Sizes(events=20_000, latency_seconds=4.0, memory_models=300,
              memory_predictions_per_model=10, steady_predictions=2_000)  # fmt: skip


# -- input -----------------------------------------------------------------------------------


def events(n_predictions: int, models: int, seed: int = 11) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``"predictions"`` | ``"labels"``, event): every prediction labelled, labels 1,000 later.

    Five numeric signals per model (score, three numeric features, latency) and one categorical
    feature; 10 % of the labels disagree with the prediction.
    """
    rng = np.random.default_rng(seed)
    chunk = 1000
    for start in range(0, n_predictions, chunk):
        k = np.arange(start, min(start + chunk, n_predictions))
        score = rng.beta(2, 5, len(k))
        x = rng.normal(0, 1, (len(k), 3))
        latency = rng.lognormal(1.0, 0.3, len(k))
        plan = rng.choice(["basic", "pro", "team"], len(k), p=[0.6, 0.3, 0.1])
        wrong = rng.random(len(k)) < 0.1
        labels: list[dict[str, Any]] = []
        for j, i in enumerate(k.tolist()):
            mid = f"model-{i % models:05d}"
            pid = f"p{i}"
            pred = int(score[j] > 0.5)
            yield (
                "predictions",
                {
                    "model_id": mid,
                    "prediction_id": pid,
                    "prediction": pred,
                    "score": round(float(score[j]), 5),
                    "features": {
                        "x1": round(float(x[j, 0]), 5),
                        "x2": round(float(x[j, 1]), 5),
                        "x3": round(float(x[j, 2]), 5),
                        "plan": str(plan[j]),
                    },
                    "latency_ms": round(float(latency[j]), 3),
                    "timestamp": T0_MS + i,
                },
            )
            label = 1 - pred if wrong[j] else pred
            labels.append(
                {"model_id": mid, "prediction_id": pid, "label": label, "timestamp": T0_MS + i + 1}
            )
        yield from (("labels", e) for e in labels)


def produce_single(bootstrap: str, topics: dict[str, str], n_predictions: int) -> int:
    """One record per event with a plain kafka-python producer; returns the record count."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=256_000, acks=1,
    )  # fmt: skip
    n = 0
    for kind, event in events(n_predictions, MODELS):
        producer.send(topics[kind], key=event["model_id"].encode(), value=orjson.dumps(event))
        n += 1
    producer.flush()
    producer.close()
    return n


def produce_envelopes(bootstrap: str, topics: dict[str, str], n_predictions: int,
                      models: int = MODELS) -> None:  # fmt: skip
    """The same events through the SDK: validated, batched per model into 100-event envelopes."""
    with Monitor(
        bootstrap, predictions_topic=topics["predictions"], labels_topic=topics["labels"],
        max_batch_events=100, linger_ms=1000, acks=1, batch_size=256_000,
    ) as monitor:  # fmt: skip
        for kind, e in events(n_predictions, models):
            if kind == "predictions":
                monitor.log_prediction(
                    e["model_id"], e["prediction_id"], e["prediction"], score=e["score"],
                    features=e["features"], latency_ms=e["latency_ms"], timestamp=e["timestamp"],
                )  # fmt: skip
            else:
                monitor.log_label(e["model_id"], e["prediction_id"], e["label"], e["timestamp"])


def topic_names(prefix: str) -> dict[str, str]:
    """Input and output topics of one part of the benchmark."""
    return {
        "predictions": f"{prefix}-predictions",
        "labels": f"{prefix}-labels",
        "drift_alerts": f"{prefix}-drift-alerts",
        "performance_alerts": f"{prefix}-performance-alerts",
        "dead_letter": f"{prefix}-dead-letter",
    }


def create_topics(stack: EmbeddedStack, topics: dict[str, str]) -> None:
    stack.create_topics([topics["predictions"], topics["labels"]], partitions=PARTITIONS)
    stack.create_topics(
        [topics["drift_alerts"], topics["performance_alerts"], topics["dead_letter"]], partitions=1
    )


def end_offsets(bootstrap: str, topics: list[str]) -> int:
    """Records in the topics (sum of end offsets over all partitions)."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        # right after a flush the broker has been seen to report end offsets that were still
        # growing: read until two reads half a second apart agree
        last = -1
        while True:
            now = int(sum(consumer.end_offsets(tps).values()))
            if now == last:
                return now
            last = now
            time.sleep(0.5)
    finally:
        consumer.close()


# -- 1. the ceiling ----------------------------------------------------------------------------


async def _aiokafka_decode(bootstrap: str, topics: list[str], records: int) -> tuple[int, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=16_000_000,
        max_partition_fetch_bytes=4_000_000,
    )  # fmt: skip
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        seen = n_events = 0
        started = time.perf_counter()
        while seen < records:
            batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            for messages in batches.values():
                for m in messages:
                    obj = orjson.loads(m.value)
                    n_events += len(obj) if isinstance(obj, list) else 1
                seen += len(messages)
        return n_events, time.perf_counter() - started
    finally:
        await consumer.stop()


# -- 2. bare faust -----------------------------------------------------------------------------


def bare_faust(
    bootstrap: str, topics: list[str], records: int, timeout_s: float
) -> tuple[int, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.faust_bare", bootstrap, f"bare-{uuid.uuid4().hex[:8]}",
         str(records), *topics],
        capture_output=True, text=True, timeout=timeout_s,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    # faust's spinner may leave terminal escapes in front of the JSON
    lines = [ln[ln.index("{") :] for ln in out.stdout.splitlines() if "{" in ln]
    if not lines:
        raise RuntimeError(f"bare faust agent failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = orjson.loads(lines[-1])
    return int(result["events"]), float(result["seconds"])


# -- 3/4/5/6. a driftline worker ---------------------------------------------------------------


def write_config(directory: Path, prefix: str, topics: dict[str, str],
                 detection: dict[str, Any] | None = None) -> Path:  # fmt: skip
    data: dict[str, Any] = {
        "kafka": {
            "topics": topics,
            "group_id": prefix,
            "partitions": PARTITIONS,
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": 1000,
        },
        "state": {"key_prefix": prefix},
    }
    if detection is not None:
        data["detection"] = detection
    path = directory / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def applied_records(client: redis.Redis, prefix: str) -> int:
    """Records applied and checkpointed, from the stored offsets of every partition."""
    total = 0
    for p in range(PARTITIONS):
        meta = partition_keys(prefix, prefix, p)[0]
        for off in client.hmget(meta, ["off:predictions", "off:labels"]):
            total += int(off) + 1 if off is not None else 0
    return total


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def redis_bytes(client: redis.Redis, prefix: str) -> int:
    """Memory Redis reports for this run's keys (MEMORY USAGE, all of them)."""
    total = 0
    for key in client.scan_iter(match=f"{{{prefix}:*", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
    return total


def steady_model(config_path: Path, predictions: int) -> ModelState:
    """One model's state after ``predictions`` labelled predictions: every window full."""
    config = load_config(config_path)
    processor = Processor(config)
    part = processor.new_partition(0)
    offsets = {"predictions": 0, "labels": 0}
    topics = config.kafka.topics
    records = []
    for kind, event in events(predictions, 1):
        topic = topics.predictions if kind == "predictions" else topics.labels
        records.append(SourceRecord(topic, 0, offsets[kind], None, orjson.dumps(event),
                                    event["timestamp"]))  # fmt: skip
        offsets[kind] += 1
    for start in range(0, len(records), 1000):
        processor.apply(part, records[start : start + 1000], predictions_caught_up=True,
                        labels_caught_up=True)  # fmt: skip
    return part.models["model-00000"]


def kafka_partition(key: str, partitions: int = PARTITIONS) -> int:
    """The partition kafka-python's default partitioner picks for ``key`` (the SDK's key)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def seed_models(redis_url: str, config_path: Path, template: ModelState, models: int) -> int:
    """Store ``models`` copies of ``template`` (ids as :func:`events` names them) in each model's
    partition, as a worker's checkpoint would; returns the encoded bytes of one model."""
    config = load_config(config_path)
    processor = Processor(config)
    blob = template.encode()
    by_partition: dict[int, list[str]] = {}
    for i in range(models):
        mid = f"model-{i:05d}"
        by_partition.setdefault(kafka_partition(mid), []).append(mid)

    async def write() -> None:
        store = RedisStateStore.from_url(redis_url, processor, config.state.key_prefix,
                                         config.kafka.group_id)  # fmt: skip
        try:
            for p, ids in by_partition.items():
                part = await store.assign(p, "bench-seed")
                for mid in ids:
                    model = ModelState.decode(blob)
                    model.model_id = mid
                    part.models[mid] = model
                part.dirty_models.update(ids)
                await store.write(take_checkpoint(part))
        finally:
            await store.close()

    asyncio.run(write())
    return len(blob)


def applied_by_worker(url: str) -> int:
    """Records the worker has applied so far (its ``driftline_records_consumed`` counter)."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "driftline_records_consumed"
            for sample in family.samples
            if sample.name == "driftline_records_consumed_total"
        )
    )


def timed_worker(worker: WorkerProcess, client: redis.Redis, prefix: str, records: int,
                 timeout_s: float) -> tuple[float, int]:  # fmt: skip
    """Seconds from the first record applied to the checkpoint covering ``records``, and
    records timed.

    The start is read from the worker's counter, not from Redis: checkpoints come once a
    second (``worker.checkpoint_every_ms``), too coarse to time a short run by.
    """
    deadline = time.monotonic() + timeout_s
    url = worker.web_url()
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        if not worker.running:
            raise RuntimeError(f"worker exited:\n{worker.tail()}")
        now = time.perf_counter()
        if first is None:
            applied = applied_by_worker(url)
            if applied:
                first = (now, applied)
        elif applied_records(client, prefix) >= records:
            return now - first[0], records - first[1]
        time.sleep(0.05)
    raise RuntimeError(f"worker did not apply {records} records in {timeout_s:.0f} s")


def _collect_alerts(bootstrap: str, topics: list[str], out: Any, stop: Any) -> None:
    """Child process: each alert's prediction id and wall-clock arrival time, to ``out``.

    Its own process, so that the producer's work (and the GIL) cannot delay when an alert is
    seen. Wall clock on both sides: producer and collector run on the same host.
    """
    consumer = KafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
        # the embedded broker holds a fetch for its full wait: keep the instrument's short
        fetch_max_wait_ms=10,
    )  # fmt: skip
    try:
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=100).values():
                now = time.time()
                out.send([(orjson.loads(rec.value)["prediction_id"], now) for rec in batch])
    finally:
        consumer.close()
        out.send(None)


def _latency_events(predictions: int, seed: int = 3) -> list[tuple[str, str, int, float, float]]:
    """(model, prediction id, prediction, score, x) per prediction, made before the clock runs.

    The level of ``x`` flips between 0 and +3 sd three times per model, so alerts keep firing.
    """
    rng = np.random.default_rng(seed)
    scores = rng.beta(2, 5, predictions)
    noise = rng.normal(0, 1, predictions)
    period = max(150, predictions // MODELS // 3)
    out = []
    for k in range(predictions):
        mid = f"model-{k % MODELS:03d}"
        i = k // MODELS
        shift = 3.0 if (i // period) % 2 else 0.0
        score = round(float(scores[k]), 5)
        out.append((mid, f"{mid}-{i}", int(score > 0.5), score, round(float(noise[k]) + shift, 5)))
    return out


def alert_latency(stack: EmbeddedStack, workdir: Path, rate: float, seconds: float,
                  options: RunOptions) -> dict[str, Any]:  # fmt: skip
    """Publish at ``rate`` events/s with a recurring feature shift; latency per alert.

    Latency: from the ``log_prediction`` call to the alert read by a consumer in another process.
    """
    prefix = f"lat{uuid.uuid4().hex[:6]}"
    topics = topic_names(prefix)
    create_topics(stack, topics)
    client = redis.Redis.from_url(stack.redis_url)
    config = write_config(workdir, prefix, topics, FAST_DETECTION)
    worker = WorkerProcess(workdir / f"{prefix}.log", stack.bootstrap_servers, stack.redis_url,
                           config)  # fmt: skip
    worker.start()
    # enough predictions per model for a warm-up and two level flips, however slow the rate
    predictions = max(int(rate * seconds / 2), MODELS * 400)
    planned = _latency_events(predictions)
    sent: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    alert_topics = [topics["drift_alerts"], topics["performance_alerts"]]
    collector = ctx.Process(
        target=_collect_alerts,
        args=(stack.bootstrap_servers, alert_topics, sender, stop),
        daemon=True,
    )
    collector.start()
    try:
        worker.web_url()
        monitor = Monitor(stack.bootstrap_servers, predictions_topic=topics["predictions"],
                          labels_topic=topics["labels"], acks=1)  # fmt: skip
        step = 0.01
        start = time.perf_counter()
        k = 0
        while k < predictions:
            due = min(predictions, int((time.perf_counter() - start) * rate / 2) + 1)
            while k < due:
                mid, pid, pred, score, x = planned[k]
                ts = T0_MS + k
                sent[pid] = time.time()
                monitor.log_prediction(mid, pid, pred, score=score, features={"x": x},
                                       timestamp=ts)  # fmt: skip
                monitor.log_label(mid, pid, pred, timestamp=ts + 1)
                k += 1
            time.sleep(step)
        produced_s = time.perf_counter() - start
        monitor.close()
        wait_until = time.monotonic() + 60
        while time.monotonic() < wait_until and applied_records(client, prefix) < 2 * predictions:
            time.sleep(0.2)
        time.sleep(2.0)  # the last alerts reach the collector
    finally:
        stop.set()
        arrivals: list[tuple[str, float]] = []
        while receiver.poll(10):
            batch = receiver.recv()
            if batch is None:
                break
            arrivals.extend(batch)
        collector.join(timeout=10)
        worker.stop()
        client.close()
    lat = np.array(sorted(1000 * (t - sent[pid]) for pid, t in arrivals if pid in sent))
    options.say(f"throughput: {len(lat)} alerts, published {2 * predictions / produced_s:,.0f}/s")
    return {
        "rate_events_per_s": rate,
        "achieved_events_per_s": 2 * predictions / produced_s,
        "alerts": len(lat),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "max_ms": float(lat.max()) if len(lat) else None,
    }


# -- the run -----------------------------------------------------------------------------------


def run(options: RunOptions) -> BenchResult:
    """All six parts, in one run on one embedded stack."""
    sizes = QUICK if options.quick else FULL
    n_pred = sizes.events // 2
    data: dict[str, Any] = {"sizes": sizes.__dict__, "partitions": PARTITIONS, "models": MODELS}
    with (
        tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp,
        EmbeddedStack(use_env_redis_url=False) as stack,
    ):
        workdir = Path(tmp)
        client = redis.Redis.from_url(stack.redis_url)
        bootstrap = stack.bootstrap_servers
        single = topic_names(f"single{uuid.uuid4().hex[:6]}")
        envel = topic_names(f"envel{uuid.uuid4().hex[:6]}")
        create_topics(stack, single)
        create_topics(stack, envel)

        options.say(f"throughput: producing {sizes.events:,} single-event records")
        t = time.perf_counter()
        records_single = produce_single(bootstrap, single, n_pred)
        data["produce_single_s"] = time.perf_counter() - t
        options.say(f"throughput: producing {sizes.events:,} events as SDK envelopes")
        t = time.perf_counter()
        produce_envelopes(bootstrap, envel, n_pred)
        data["produce_envelopes_s"] = time.perf_counter() - t
        inputs = [single["predictions"], single["labels"]]
        env_inputs = [envel["predictions"], envel["labels"]]
        records_env = end_offsets(bootstrap, env_inputs)
        data["records"] = {"single": records_single, "envelopes": records_env}

        options.say("throughput: 1. aiokafka + orjson ceiling")
        ev, secs = asyncio.run(_aiokafka_decode(bootstrap, inputs, records_single))
        ceiling = ev / secs
        ev_env, secs_env = asyncio.run(_aiokafka_decode(bootstrap, env_inputs, records_env))
        ceiling_env = ev_env / secs_env

        options.say("throughput: 2. bare faust agent")
        ev, secs = bare_faust(bootstrap, inputs, records_single, timeout_s=1800)
        faust_rate = ev / secs

        rates: dict[str, float] = {}
        rss: dict[str, int] = {}
        for name, topics, records in (("single", single, records_single),
                                      ("envelopes", envel, records_env)):  # fmt: skip
            options.say(f"throughput: {3 if name == 'single' else 4}. driftline worker, {name}")
            prefix = topics["predictions"].rsplit("-", 1)[0]
            config = write_config(workdir, prefix, topics)
            worker = WorkerProcess(workdir / f"{name}.log", bootstrap, stack.redis_url, config)
            worker.start()
            try:
                worker.web_url()
                rss[f"{name}_start"] = rss_bytes(worker.pid)
                secs, timed = timed_worker(worker, client, prefix, records, timeout_s=3600)
                rss[f"{name}_end"] = rss_bytes(worker.pid)
            finally:
                worker.stop()
            per_event = sizes.events / records
            rates[name] = timed * per_event / secs
            data[f"redis_bytes_{name}"] = redis_bytes(client, prefix)

        options.say("throughput: 5. alert latency at half the envelope rate")
        latency = alert_latency(stack, workdir, rates["envelopes"] / 2, sizes.latency_seconds,
                                options)  # fmt: skip

        options.say(f"throughput: 6. {sizes.memory_models:,} steady-state models on one worker")
        mem_topics = topic_names(f"mem{uuid.uuid4().hex[:6]}")
        mem_prefix = mem_topics["predictions"].rsplit("-", 1)[0]
        create_topics(stack, mem_topics)
        config = write_config(workdir, mem_prefix, mem_topics)
        template = steady_model(config, sizes.steady_predictions)
        encoded_model = seed_models(stack.redis_url, config, template, sizes.memory_models)
        mem_preds = sizes.memory_models * sizes.memory_predictions_per_model
        produce_envelopes(bootstrap, mem_topics, mem_preds, models=sizes.memory_models)
        mem_records = end_offsets(bootstrap, [mem_topics["predictions"], mem_topics["labels"]])
        worker = WorkerProcess(workdir / "memory.log", bootstrap, stack.redis_url, config)
        worker.start()
        try:
            worker.web_url()
            timed_worker(worker, client, mem_prefix, mem_records, timeout_s=3600)
            time.sleep(1.0)
            mem_rss = rss_bytes(worker.pid)
        finally:
            worker.stop()
        mem_redis = redis_bytes(client, mem_prefix)
        client.close()

    data.update(
        ceiling_events_per_s=ceiling,
        ceiling_envelopes_events_per_s=ceiling_env,
        bare_faust_events_per_s=faust_rate,
        worker_single_events_per_s=rates["single"],
        worker_envelopes_events_per_s=rates["envelopes"],
        alert_latency=latency,
        rss_bytes=rss,
        memory={
            "models": sizes.memory_models,
            "predictions_per_model": sizes.memory_predictions_per_model,
            "steady_predictions": sizes.steady_predictions,
            "encoded_model_bytes": encoded_model,
            "worker_rss_bytes": mem_rss,
            "redis_bytes": mem_redis,
            "redis_bytes_per_model_part4": data["redis_bytes_envelopes"] / MODELS,
        },
    )
    return _result(data, sizes)


def _verdict(ok: bool) -> Any:
    return "PASS" if ok else "MISS"


def _result(data: dict[str, Any], sizes: Sizes) -> BenchResult:
    c, f = data["ceiling_events_per_s"], data["bare_faust_events_per_s"]
    s, e = data["worker_single_events_per_s"], data["worker_envelopes_events_per_s"]
    lat, mem = data["alert_latency"], data["memory"]
    mib = 1024 * 1024
    g = "throughput (events/s, first record to last)"
    rows = [
        Row(g, "1. aiokafka + orjson", "single-event records", "events/s", f"{c:,.0f}", ""),
        Row(g, "1. aiokafka + orjson", "100-event envelopes", "events/s",
            f"{data['ceiling_envelopes_events_per_s']:,.0f}", ""),
        Row(g, "2. bare faust agent", "single-event records", "events/s", f"{f:,.0f}", ""),
        Row(g, "3. driftline worker", "single-event records", "events/s", f"{s:,.0f}", "",
            ">= 70% of 2", _verdict(s >= 0.7 * f), f"{100 * s / f:.0f}%"),
        Row(g, "4. driftline worker", "100-event envelopes", "events/s", f"{e:,.0f}", "",
            ">= 25% of 1", _verdict(e >= 0.25 * c), f"{100 * e / c:.0f}%"),
    ]  # fmt: skip
    g5 = f"5. alert latency at {lat['rate_events_per_s']:,.0f} events/s ({lat['alerts']} alerts)"
    p99 = lat["p99_ms"]
    rows += [
        Row(g5, "log_prediction -> alert", "envelopes", "p50 ms",
            "n/a" if lat["p50_ms"] is None else f"{lat['p50_ms']:.0f}", ""),
        Row(g5, "log_prediction -> alert", "envelopes", "p99 ms",
            "n/a" if p99 is None else f"{p99:.0f}", "", "<= 1000 ms",
            _verdict(p99 is not None and p99 <= 1000), "n/a" if p99 is None else f"{p99:.0f}"),
    ]  # fmt: skip
    g6 = (f"6. one worker, {mem['models']:,} steady-state models x 5 numeric signals "
          f"(+{mem['predictions_per_model']} labelled predictions each)")  # fmt: skip
    rss_b, redis_b = mem["worker_rss_bytes"], mem["redis_bytes"]
    rows += [
        Row(g6, "model state", "encoded", "KB", f"{mem['encoded_model_bytes'] / 1e3:,.1f}", ""),
        Row(g6, "worker RSS", "measured", "MiB", f"{rss_b / mib:,.0f}", "", "<= 1024 MiB",
            _verdict(rss_b <= 1024 * mib), f"{rss_b / mib:,.0f}"),
        Row(g6, "Redis (MEMORY USAGE)", "measured", "MB", f"{redis_b / 1e6:,.1f}", "",
            "<= 200 MB", _verdict(redis_b <= 200e6), f"{redis_b / 1e6:,.1f}"),
    ]  # fmt: skip
    notes = [
        f"{sizes.events:,} events ({sizes.events // 2:,} predictions with 5 numeric signals and "
        f"a categorical feature, each labelled) over {MODELS} models, {PARTITIONS} partitions; "
        f"{data['records']['single']:,} single-event records, "
        f"{data['records']['envelopes']:,} envelope records.",
        f"Part 6 seeds Redis with {mem['models']:,} copies of one model's state after "
        f"{mem['steady_predictions']:,} labelled predictions (every window full), then the "
        "worker loads them all and applies new events for every model.",
    ]
    targets = [r for r in rows if r.verdict != "info"]
    data["targets"] = {r.detector + " " + r.stream: r.verdict for r in targets}
    return BenchResult("throughput", rows, data, notes)


if __name__ == "__main__":  # pragma: no cover - python -m bench throughput is the entry point
    sys.exit("run: python -m bench throughput")
