"""LabelJoin: pairs labels with their predictions in a replayable order.

Labels are buffered in label-offset order and released once the partition's prediction stream has
passed the label's event time (or has nothing more to read), so the prediction it refers to has
already been seen. Error-stream detectors therefore see outcomes in label-offset order whatever
way the two topics happened to interleave (stream-time synchronisation, as in Kafka Streams).

Halves that wait longer than ``ttl_ms`` of event time are expired and counted, never joined, which
bounds the memory held for them. All state here is checkpointed with the partition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from streams.events import Label, Prediction

Value = float | str | bool
Key = tuple[str, str]


@dataclass(slots=True)  # not frozen: built per event, frozen __init__ is slower
class BufferedLabel:
    """A label read from the topic, not yet released to the join."""

    model_id: str
    prediction_id: str
    label: Value
    timestamp_ms: int
    offset: int
    index: int


@dataclass(slots=True)  # not frozen: built per event, frozen __init__ is slower
class Outcome:
    """A joined prediction and label; ``via`` says which half completed the pair."""

    model_id: str
    prediction_id: str
    prediction: Value
    label: Value
    timestamp_ms: int
    via: Literal["label", "prediction"]
    offset: int
    index: int


@dataclass(slots=True)  # not frozen: built per event, frozen __init__ is slower
class Expired:
    """A half that waited longer than the TTL for its other half."""

    model_id: str
    prediction_id: str
    kind: Literal["prediction", "label"]


class LabelJoin:
    """Deterministic prediction/label join for one source partition."""

    def __init__(self, ttl_ms: int, max_pending: int) -> None:
        self.ttl_ms = ttl_ms
        self.max_pending = max_pending
        # prediction waiting for a label: key -> (prediction, timestamp_ms)
        self.predictions: dict[Key, tuple[Value, int]] = {}
        # released label waiting for a late prediction: key -> (label, timestamp_ms)
        self.labels: dict[Key, tuple[Value, int]] = {}
        self.buffer: deque[BufferedLabel] = deque()
        self.prediction_time = -1
        self.label_time = -1
        self.dirty: set[tuple[str, Key]] = set()
        # dirty halves added since the last take_dirty that were not there before: not in Redis,
        # so one that goes again before the next checkpoint (most are joined within a batch)
        # costs the checkpoint nothing, rather than a delete of a field that was never written
        self.unsaved: set[tuple[str, Key]] = set()
        # buffered labels since the last take_dirty, by (offset, index): checkpoints carry the
        # change, not the whole buffer (it holds up to the topics' allowed skew, 60 s of labels)
        self.buffer_added: dict[tuple[int, int], BufferedLabel] = {}
        self.buffer_released: list[tuple[int, int]] = []

    # -- inputs -----------------------------------------------------------------------------
    def add_prediction(
        self,
        model_id: str,
        prediction_id: str,
        prediction: Value,
        timestamp_ms: int,
        offset: int,
        index: int,
    ) -> Outcome | Expired | None:
        """Record a prediction; joins at once if its label was released earlier."""
        key = (model_id, prediction_id)
        if timestamp_ms > self.prediction_time:
            self.prediction_time = timestamp_ms
        waiting = self.labels.pop(key, None)
        if waiting is not None:
            self._removed(("l", key))
            label, label_ts = waiting
            if self.prediction_time - label_ts > self.ttl_ms:
                return Expired(model_id, prediction_id, "label")
            return Outcome(
                model_id,
                prediction_id,
                prediction,
                label,
                max(timestamp_ms, label_ts),
                "prediction",
                offset,
                index,
            )
        self._added(("p", key), key in self.predictions)
        self.predictions[key] = (prediction, timestamp_ms)
        return None

    def nothing_to_join(self) -> bool:
        """Whether predictions added now can neither join (no label waits for one) nor let
        buffered labels go (none is buffered); then :meth:`add_unjoined` takes them."""
        return not self.labels and not self.buffer

    def add_unjoined(self, model_id: str, predictions: Iterable[Prediction]) -> None:
        """Record predictions of one model, as :meth:`add_prediction` would, while
        :meth:`nothing_to_join`."""
        halves = self.predictions
        added = self._added
        time = self.prediction_time
        for p in predictions:
            key = (model_id, p.prediction_id)
            added(("p", key), key in halves)
            halves[key] = (p.prediction, p.timestamp_ms)
            if p.timestamp_ms > time:
                time = p.timestamp_ms
        self.prediction_time = time

    def add_label(self, label: BufferedLabel) -> None:
        """Buffer a label; it is released by :meth:`release`."""
        if label.timestamp_ms > self.label_time:
            self.label_time = label.timestamp_ms
        self.buffer.append(label)
        self.buffer_added[(label.offset, label.index)] = label

    # -- release and expiry -----------------------------------------------------------------
    def releasable(self) -> bool:
        """Whether :meth:`release` without ``predictions_caught_up`` would release anything."""
        buffer = self.buffer
        return bool(buffer) and buffer[0].timestamp_ms <= self.prediction_time

    def release(self, predictions_caught_up: bool) -> Iterator[Outcome | Expired | None]:
        """Release buffered labels in offset order; yields outcomes, expiries, or None (parked)."""
        buffer = self.buffer
        while buffer and (predictions_caught_up or buffer[0].timestamp_ms <= self.prediction_time):
            lab = buffer.popleft()
            at = (lab.offset, lab.index)
            if self.buffer_added.pop(at, None) is None:
                self.buffer_released.append(at)
            yield self._join_label(
                lab.model_id, lab.prediction_id, lab.label, lab.timestamp_ms, lab.offset, lab.index
            )

    def take_labels(self, labels: Sequence[Label], offset: int) -> list[Outcome | Expired | None]:
        """A record's labels, in order: while nothing is buffered and the prediction stream has
        passed a label's event time, it is released at once (:meth:`_join_label`, its result
        returned); from the first one that has to wait, they are buffered (:meth:`add_label`)."""
        joined: list[Outcome | Expired | None] = []
        first, n = 0, len(labels)  # first: the first label to buffer
        if not self.buffer:  # joining labels buffers none, so this holds for the whole record
            time = self.prediction_time
            while first < n and labels[first].timestamp_ms <= time:
                lab = labels[first]
                joined.append(
                    self._join_label(
                        lab.model_id, lab.prediction_id, lab.label, lab.timestamp_ms, offset, first
                    )
                )
                first += 1
        for index in range(first, n):
            lab = labels[index]
            self.add_label(
                BufferedLabel(
                    lab.model_id, lab.prediction_id, lab.label, lab.timestamp_ms, offset, index
                )
            )
        return joined

    def _join_label(
        self,
        model_id: str,
        prediction_id: str,
        label: Value,
        timestamp_ms: int,
        offset: int,
        index: int,
    ) -> Outcome | Expired | None:
        """Take a label that would be released at once, as buffering and releasing it would:
        its outcome, its prediction expired, or None (parked for a late prediction)."""
        if timestamp_ms > self.label_time:  # as add_label would have (release repeats it)
            self.label_time = timestamp_ms
        key = (model_id, prediction_id)
        pending = self.predictions.pop(key, None)
        if pending is None:
            self._added(("l", key), key in self.labels)
            self.labels[key] = (label, timestamp_ms)
            return None
        self._removed(("p", key))
        prediction, pred_ts = pending
        if timestamp_ms - pred_ts > self.ttl_ms:
            return Expired(model_id, prediction_id, "prediction")
        return Outcome(
            model_id,
            prediction_id,
            prediction,
            label,
            max(timestamp_ms, pred_ts),
            "label",
            offset,
            index,
        )

    def expire(self, labels_caught_up: bool) -> list[Expired]:
        """Drop halves older than the TTL (in event time) and those over the size cap."""
        out: list[Expired] = []
        # A prediction may still be claimed by a label not read yet, so its clock is the slower
        # of the two streams unless the label stream has nothing more to read.
        watermark = self.prediction_time
        if not labels_caught_up:
            watermark = min(watermark, self.label_time)
        self._expire_from(self.predictions, "p", "prediction", watermark, out)
        self._expire_from(self.labels, "l", "label", self.prediction_time, out)
        return out

    def _expire_from(
        self,
        halves: dict[Key, tuple[Value, int]],
        tag: str,
        kind: Literal["prediction", "label"],
        watermark: int,
        out: list[Expired],
    ) -> None:
        # Insertion order is arrival order; stop at the first half still inside the TTL.
        while halves:
            key, (_, ts) = next(iter(halves.items()))
            if watermark - ts <= self.ttl_ms and len(halves) <= self.max_pending:
                break
            del halves[key]
            self._removed((tag, key))
            out.append(Expired(key[0], key[1], kind))

    def _added(self, half: tuple[str, Key], existed: bool) -> None:
        """Mark a half set; one that was neither in memory nor changed since the last
        checkpoint is not in Redis either."""
        if not existed and half not in self.dirty:
            self.unsaved.add(half)
        self.dirty.add(half)

    def _removed(self, half: tuple[str, Key]) -> None:
        """Mark a half gone; one never written needs no delete."""
        if half in self.unsaved:
            self.unsaved.discard(half)
            self.dirty.discard(half)
        else:
            self.dirty.add(half)

    @property
    def pending(self) -> int:
        """Halves waiting for their other half, plus labels not yet released."""
        return len(self.predictions) + len(self.labels) + len(self.buffer)

    # -- encoding ---------------------------------------------------------------------------
    def meta_state(self) -> dict[str, Any]:
        """Stream times, for the partition's meta record (the buffer goes with the halves)."""
        return {"pt": self.prediction_time, "lt": self.label_time}

    def restore_meta(self, meta: dict[str, Any]) -> None:
        """Inverse of :meth:`meta_state`."""
        self.prediction_time = int(meta.get("pt", -1))
        self.label_time = int(meta.get("lt", -1))
        # older checkpoints kept the whole buffer here: the next checkpoint moves it to fields
        for item in meta.get("buf", []):
            self.add_label(BufferedLabel(*item))

    def take_dirty(self) -> tuple[dict[bytes, Any], list[bytes]]:
        """Pending halves and buffered labels changed since the last call: (field -> value to
        set, fields to delete)."""
        upserts: dict[bytes, Any] = {}
        deletes: list[bytes] = []
        predictions, labels = self.predictions, self.labels
        for tag, key in self.dirty:
            field_name = pending_field(tag, key)
            current = (predictions if tag == "p" else labels).get(key)
            if current is None:
                deletes.append(field_name)
            else:
                upserts[field_name] = current  # (value, timestamp_ms): a msgpack array
        self.dirty.clear()
        self.unsaved.clear()
        for (offset, index), b in self.buffer_added.items():
            upserts[buffer_field(offset, index)] = [b.model_id, b.prediction_id, b.label,
                                                    b.timestamp_ms]  # fmt: skip
        deletes.extend(buffer_field(offset, index) for offset, index in self.buffer_released)
        self.buffer_added.clear()
        self.buffer_released.clear()
        return upserts, deletes

    def restore_pending(self, items: list[tuple[bytes, list[Any]]]) -> None:
        """Load pending halves (field, [value, ts]) in timestamp order (the expiry scan order)
        and buffered labels in label-offset order (the release order)."""
        decoded = []
        buffered = []
        for field_name, value in items:
            at = parse_buffer_field(field_name)
            if at is not None:
                offset, index = at
                model_id, prediction_id, label, ts = value
                buffered.append(BufferedLabel(model_id, prediction_id, label, int(ts), offset,
                                              index))  # fmt: skip
                continue
            tag, key = parse_pending_field(field_name)
            decoded.append((int(value[1]), tag, key, value[0]))
        decoded.sort(key=lambda item: (item[0], item[1], item[2]))
        for ts, tag, key, half in decoded:
            (self.predictions if tag == "p" else self.labels)[key] = (half, ts)
        buffered.sort(key=lambda b: (b.offset, b.index))
        self.buffer.extend(buffered)


def pending_field(tag: str, key: Key) -> bytes:
    """Redis hash field for a pending half: ``p|l`` NUL model NUL prediction_id."""
    return f"{tag}\x00{key[0]}\x00{key[1]}".encode()


def buffer_field(offset: int, index: int) -> bytes:
    """Redis hash field for a buffered label: ``b`` NUL label offset NUL index in envelope."""
    return b"b\x00%d\x00%d" % (offset, index)


def parse_buffer_field(field_name: bytes) -> tuple[int, int] | None:
    """Inverse of :func:`buffer_field`: (offset, index), or None for a pending-half field."""
    if not field_name.startswith(b"b\x00"):
        return None
    _, offset, index = field_name.split(b"\x00")
    return int(offset), int(index)


def parse_pending_field(field_name: bytes) -> tuple[str, Key]:
    """Inverse of :func:`pending_field`."""
    tag, model_id, prediction_id = field_name.decode().split("\x00", 2)
    return tag, (model_id, prediction_id)
