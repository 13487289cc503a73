"""LabelJoin: both arrival orders join, the release order is label-offset order, TTL expiry."""

from __future__ import annotations

import random
from typing import Any

from streams.events import Prediction
from streams.join import BufferedLabel, Expired, LabelJoin, Outcome, buffer_field, pending_field


def label(pid: str, ts: int, offset: int, value: object = 1) -> BufferedLabel:
    return BufferedLabel("m", pid, value, ts, offset, 0)  # type: ignore[arg-type]


def test_label_after_prediction_waits_for_stream_time() -> None:
    join = LabelJoin(ttl_ms=10_000, max_pending=100)
    assert join.add_prediction("m", "a", 1, 1_000, 0, 0) is None
    join.add_label(label("a", 2_000, 0))
    assert list(join.release(False)) == []  # prediction stream has not passed t=2000 yet
    join.add_prediction("m", "b", 0, 2_500, 1, 0)
    (out,) = list(join.release(False))
    assert isinstance(out, Outcome) and out.prediction_id == "a" and out.via == "label"


def test_caught_up_releases_immediately() -> None:
    join = LabelJoin(ttl_ms=10_000, max_pending=100)
    join.add_prediction("m", "a", 1, 1_000, 0, 0)
    join.add_label(label("a", 5_000, 0))
    (out,) = list(join.release(True))
    assert isinstance(out, Outcome)


def test_label_before_prediction_joins_on_prediction() -> None:
    join = LabelJoin(ttl_ms=10_000, max_pending=100)
    join.add_label(label("a", 1_000, 0, value=0))
    assert list(join.release(True)) == [None]  # parked: prediction unknown
    out = join.add_prediction("m", "a", 0, 900, 7, 0)
    assert isinstance(out, Outcome) and out.via == "prediction" and out.offset == 7


def test_release_order_is_label_offset_order_regardless_of_interleaving() -> None:
    def run(interleave: bool) -> list[str]:
        join = LabelJoin(ttl_ms=10_000, max_pending=100)
        released: list[str] = []
        preds = [(f"p{i}", 1_000 + i * 10) for i in range(20)]
        labels = [label(f"p{i}", 1_000 + i * 10 + 5, i) for i in reversed(range(20))]
        labels.sort(key=lambda b: b.offset)
        if interleave:
            for (pid, ts), lab in zip(preds, labels, strict=True):
                join.add_prediction("m", pid, 1, ts, 0, 0)
                join.add_label(lab)
                released += [o.prediction_id for o in join.release(False) if isinstance(o, Outcome)]
        else:
            for lab in labels:
                join.add_label(lab)
            for pid, ts in preds:
                join.add_prediction("m", pid, 1, ts, 0, 0)
                released += [o.prediction_id for o in join.release(False) if isinstance(o, Outcome)]
        released += [o.prediction_id for o in join.release(True) if isinstance(o, Outcome)]
        return released

    assert run(True) == run(False)
    assert len(run(True)) == 20


def test_expiry_in_event_time_is_counted_not_joined() -> None:
    join = LabelJoin(ttl_ms=1_000, max_pending=100)
    join.add_prediction("m", "old", 1, 0, 0, 0)
    join.add_prediction("m", "new", 1, 5_000, 1, 0)
    expired = join.expire(labels_caught_up=True)
    assert expired == [Expired("m", "old", "prediction")]
    join.add_label(label("old", 5_100, 0))
    assert list(join.release(True)) == [None]  # parked as orphan label
    join.add_prediction("m", "x", 1, 9_000, 2, 0)
    assert join.expire(labels_caught_up=True) == [
        Expired("m", "new", "prediction"),
        Expired("m", "old", "label"),
    ]
    assert join.pending == 1


def test_late_label_beyond_ttl_is_expired_at_join() -> None:
    join = LabelJoin(ttl_ms=1_000, max_pending=100)
    join.add_prediction("m", "a", 1, 0, 0, 0)
    join.add_label(label("a", 2_000, 0))
    assert list(join.release(True)) == [Expired("m", "a", "prediction")]


def test_pending_cap_evicts_oldest() -> None:
    join = LabelJoin(ttl_ms=10**9, max_pending=2)
    for i in range(4):
        join.add_prediction("m", f"p{i}", 1, i, i, 0)
    assert [e.prediction_id for e in join.expire(labels_caught_up=True)] == ["p0", "p1"]


def test_dirty_tracking_and_restore_round_trip() -> None:
    join = LabelJoin(ttl_ms=10_000, max_pending=100)
    join.add_prediction("m", "a", 1.5, 1_000, 0, 0)
    join.add_prediction("m", "b", "cat", 1_001, 1, 0)
    join.add_label(label("c", 3_000, 4))
    upserts, deletes = join.take_dirty()
    assert deletes == []
    assert set(upserts) == {b"p\x00m\x00a", b"p\x00m\x00b", b"b\x004\x000"}
    restored = LabelJoin(ttl_ms=10_000, max_pending=100)
    restored.restore_meta(join.meta_state())
    restored.restore_pending(list(upserts.items()))
    assert restored.predictions == join.predictions
    assert list(restored.buffer) == list(join.buffer)
    assert restored.prediction_time == join.prediction_time
    assert restored.take_dirty() == ({}, [])  # a restored state has nothing to write back
    join.add_label(label("a", 1_000, 5))
    list(join.release(True))
    _, deletes = join.take_dirty()
    assert b"p\x00m\x00a" in deletes
    assert b"b\x004\x000" in deletes  # released after it was checkpointed


def test_checkpoint_carries_buffer_changes_not_the_buffer() -> None:
    join = LabelJoin(ttl_ms=10_000, max_pending=100)
    for i in range(100):
        join.add_label(label(f"x{i}", 5_000 + i, i))
    upserts, _ = join.take_dirty()
    assert len(upserts) == 100
    assert "buf" not in join.meta_state()
    join.add_label(label("y", 6_000, 100))
    join.add_prediction("m", "z", 1, 5_000, 0, 0)  # releases x0 only (t=5000)
    assert len([o for o in join.release(False) if o is None]) == 1
    upserts, deletes = join.take_dirty()
    assert set(upserts) == {b"b\x00100\x000", b"p\x00m\x00z", b"l\x00m\x00x0"}
    assert deletes == [b"b\x000\x000"]


def test_halves_joined_between_checkpoints_are_never_written() -> None:
    join = LabelJoin(ttl_ms=10_000, max_pending=100)
    join.add_prediction("m", "a", 1, 1_000, 0, 0)
    join.add_label(label("a", 1_000, 0))
    list(join.release(False))
    assert join.take_dirty() == ({}, [])  # neither the prediction nor the label reached Redis


def test_checkpoints_keep_a_mirror_of_the_halves_exact() -> None:
    """Random adds, joins, duplicates, expiries and checkpoints: applying every take_dirty to a
    dict (as the store applies it to the Redis hash) always gives the halves in memory."""
    rng = random.Random(3)
    join = LabelJoin(ttl_ms=500, max_pending=40)
    mirror: dict[bytes, Any] = {}
    for step in range(5_000):  # the step is also the record offset
        pid = f"p{rng.randrange(120)}"  # few ids: duplicates and re-used keys happen
        ts = step + rng.randrange(-50, 50)
        action = rng.random()
        if action < 0.45:
            join.add_prediction("m", pid, rng.randrange(2), ts, step, 0)
        elif action < 0.9:
            join.add_label(label(pid, ts, step))
        elif action < 0.95:
            list(join.release(rng.random() < 0.5))
        else:
            join.expire(rng.random() < 0.5)
        if join.releasable():
            list(join.release(False))
        if rng.random() < 0.05:
            upserts, deletes = join.take_dirty()
            for name in deletes:
                mirror.pop(name, None)
            mirror.update(upserts)
            expected = {pending_field("p", k): list(v) for k, v in join.predictions.items()}
            expected |= {pending_field("l", k): list(v) for k, v in join.labels.items()}
            expected |= {
                buffer_field(b.offset, b.index): [
                    b.model_id,
                    b.prediction_id,
                    b.label,
                    b.timestamp_ms,
                ]
                for b in join.buffer
            }
            assert {k: list(v) for k, v in mirror.items()} == expected


def test_labels_taken_at_once_are_labels_buffered_and_released() -> None:
    """take_labels gives the outputs, halves, expiry watermark and checkpoint changes of
    add_label for each label of the record followed by release."""
    rng = random.Random(5)
    buffered = LabelJoin(ttl_ms=500, max_pending=40)
    direct = LabelJoin(ttl_ms=500, max_pending=40)
    got: dict[str, list[Any]] = {"buffered": [], "direct": []}
    at_once = 0
    for step in range(3_000):  # the step is also the record offset
        action = rng.random()
        if action < 0.45:
            pid = f"p{rng.randrange(120)}"
            ts = step + rng.randrange(-50, 50)
            for join in (buffered, direct):
                join.add_prediction("m", pid, 1, ts, step, 0)
        elif action < 0.9:
            record = [
                BufferedLabel(
                    "m", f"p{rng.randrange(120)}", 1, step + rng.randrange(-50, 50), step, i
                )
                for i in range(rng.randrange(1, 6))
            ]
            for lab in record:
                buffered.add_label(lab)
            taken = direct.take_labels(record, step)
            at_once += len(taken)
            got["direct"] += taken
        else:
            for join in (buffered, direct):
                join.expire(False)
        for name, join in (("buffered", buffered), ("direct", direct)):
            if join.releasable():
                got[name] += join.release(False)
        assert direct.label_time == buffered.label_time  # the expiry watermark
        if rng.random() < 0.05:
            (up_a, del_a), (up_b, del_b) = buffered.take_dirty(), direct.take_dirty()
            assert (up_a, sorted(del_a)) == (up_b, sorted(del_b))
    assert got["direct"] == got["buffered"]
    assert (direct.predictions, direct.labels) == (buffered.predictions, buffered.labels)
    assert list(direct.buffer) == list(buffered.buffer)
    assert 500 < at_once < len(got["direct"]) - 500  # both ways are taken, often


def test_predictions_added_unjoined_are_predictions_added_one_by_one() -> None:
    """add_unjoined (while nothing_to_join) keeps the halves, the stream time and the checkpoint
    changes that add_prediction would."""
    rng = random.Random(9)
    one = LabelJoin(ttl_ms=500, max_pending=10_000)
    bulk = LabelJoin(ttl_ms=500, max_pending=10_000)
    for step in range(300):
        batch = [
            Prediction(
                "m", f"p{rng.randrange(400)}", rng.randrange(2), step * 10 + rng.randrange(-30, 30)
            )
            for _ in range(rng.randrange(1, 20))
        ]
        for p in batch:
            one.add_prediction("m", p.prediction_id, p.prediction, p.timestamp_ms, step, 0)
        assert bulk.nothing_to_join()
        bulk.add_unjoined("m", batch)
        waiting = sorted(pid for _, pid in bulk.predictions)
        for pid in rng.sample(waiting, min(len(waiting), rng.randrange(4))):
            for join in (one, bulk):  # labels for waiting predictions: halves joined and gone
                join.add_label(label(pid, step * 10, step))
                assert None not in list(join.release(True))  # joined (or expired), not parked
        if rng.random() < 0.3:
            for join in (one, bulk):  # some halves go, so later adds re-use and re-set keys
                join.expire(True)
        if rng.random() < 0.2:
            (up_a, del_a), (up_b, del_b) = one.take_dirty(), bulk.take_dirty()
            assert (up_a, sorted(del_a)) == (up_b, sorted(del_b))
        assert (bulk.predictions, bulk.prediction_time) == (one.predictions, one.prediction_time)
    bulk.add_label(label("p1", 10**9, 1))
    assert not bulk.nothing_to_join()


def test_buffer_in_an_older_meta_record_is_restored_and_moved_to_fields() -> None:
    old_meta = {"pt": 10, "lt": 20, "buf": [["m", "a", 1, 15, 7, 0], ["m", "b", 0, 20, 8, 2]]}
    join = LabelJoin(ttl_ms=10_000, max_pending=100)
    join.restore_meta(old_meta)
    join.restore_pending([])
    assert [(b.prediction_id, b.offset, b.index) for b in join.buffer] == [("a", 7, 0), ("b", 8, 2)]
    assert (join.prediction_time, join.label_time) == (10, 20)
    upserts, _ = join.take_dirty()
    assert upserts == {b"b\x007\x000": ["m", "a", 1, 15], b"b\x008\x002": ["m", "b", 0, 20]}
