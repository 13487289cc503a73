"""LabelJoin: both arrival orders join, the release order is label-offset order, TTL expiry."""

from __future__ import annotations

from streams.join import BufferedLabel, Expired, LabelJoin, Outcome


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
    assert deletes == [] and len(upserts) == 2
    restored = LabelJoin(ttl_ms=10_000, max_pending=100)
    restored.restore_pending(list(upserts.items()))
    restored.restore_meta(join.meta_state())
    assert restored.predictions == join.predictions
    assert list(restored.buffer) == list(join.buffer)
    assert restored.prediction_time == join.prediction_time
    join.add_label(label("a", 1_000, 5))
    list(join.release(True))
    _, deletes = join.take_dirty()
    assert b"p\x00m\x00a" in deletes
