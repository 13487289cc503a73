"""The transport-free processor core: a batch of records + partition state → new state + alerts.

The same code runs under faust (``driftline worker``), in unit tests and in ``driftline replay``.
Nothing here reads the wall clock or does I/O: given the same records in the same per-topic order
it produces the same state and the same alerts (ids included), and the same retrain and review
requests when those are enabled (:mod:`streams.retrain`, :mod:`streams.review`).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import numpy as np

from detectors import (
    ADWIN,
    KSWIN,
    BaselineDrop,
    CategoricalPSI,
    DataQualityRates,
    ExpectedAccuracy,
    LatencyQuantile,
    NumericPSI,
    StandardizedPageHinkley,
    WindowedAccuracy,
)
from detectors.page_hinkley import update_columns
from detectors.quality import Row as QualityRow
from streams.alerts import Alert, AlertType, Severity, SourcePosition, alert_id
from streams.config import (
    Config,
    Detection,
    NumericDriftSettings,
    PageHinkleySettings,
    PSISettings,
)
from streams.deadletter import dead_letter_record, reason_category
from streams.events import Label, Prediction, decode_labels, decode_predictions
from streams.join import Expired, LabelJoin, Outcome
from streams.model_state import ModelState, Task
from streams.retrain import RetrainDecision, RetrainPolicy, RetrainRequest
from streams.review import ReviewDecision, ReviewRequest, ReviewSampler

Kind = Literal["predictions", "labels"]
_D = TypeVar("_D", bound="StandardizedPageHinkley | KSWIN")

# base64 grows by 4/3: keep dead letters under Kafka's default 1 MB message size.
DEAD_LETTER_MAX_VALUE_BYTES = 700_000


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka record as the processor needs it (no client objects)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(slots=True)
class PartitionState:
    """All state for one source partition: models, the join, applied offsets, the epoch."""

    partition: int
    join: LabelJoin
    epoch: int = 0
    offsets: dict[str, int] = field(default_factory=lambda: {"predictions": -1, "labels": -1})
    models: dict[str, ModelState] = field(default_factory=dict)
    dirty_models: set[str] = field(default_factory=set)
    # models whose encoded detectors are kept between checkpoints (ModelState.encoded), least
    # recently encoded first; take_checkpoint keeps at most ENCODED_MODELS of them
    encoded_models: OrderedDict[str, None] = field(default_factory=OrderedDict)


@dataclass(slots=True)
class BatchResult:
    """What one call to :meth:`Processor.apply` produced."""

    alerts: list[Alert] = field(default_factory=list)
    retrain_requests: list[RetrainRequest] = field(default_factory=list)
    review_requests: list[ReviewRequest] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


_RECORDS: dict[str, str] = {"predictions": "records:predictions", "labels": "records:labels"}
_EVENTS: dict[str, str] = {"predictions": "events:predictions", "labels": "events:labels"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Processor:
    """Applies decoded events to partition state and decides alerts."""

    def __init__(
        self, config: Config, bulk_min_values: int = 16, numpy_min_values: int = 64
    ) -> None:
        self.config = config
        # Runs shorter than bulk_min_values go event by event; in longer ones, a column fed
        # to one detector alone (Page-Hinkley, PSI) still goes value by value under
        # numpy_min_values, as a numpy call on it costs more than the loop.
        self.bulk_min_values = bulk_min_values
        self.numpy_min_values = numpy_min_values
        self.topics = config.kafka.topics
        self._settings: dict[str, Detection] = {}
        self._retrain = RetrainPolicy()
        self._review = ReviewSampler(self.topics.labels, config.join.ttl_ms)

    def new_partition(self, partition: int) -> PartitionState:
        """Empty state for a partition seen for the first time."""
        return PartitionState(
            partition=partition,
            join=LabelJoin(self.config.join.ttl_ms, self.config.join.max_pending_per_partition),
        )

    def settings_for(self, model_id: str) -> Detection:
        """Detection settings for a model (defaults + matching overrides), resolved once."""
        settings = self._settings.get(model_id)
        if settings is None:
            settings = self._settings[model_id] = self.config.detection_for(model_id)
        return settings

    # -- batch ------------------------------------------------------------------------------
    def apply(
        self,
        part: PartitionState,
        records: Iterable[SourceRecord],
        *,
        predictions_caught_up: bool = False,
        labels_caught_up: bool = False,
    ) -> BatchResult:
        """Apply records of one partition (both topics, each in offset order).

        ``*_caught_up`` say that the topic's partition has nothing more to read right now: then
        buffered labels are released without waiting for prediction stream time to pass them.
        """
        out = BatchResult()
        for record in records:
            kind: Kind = "predictions" if record.topic == self.topics.predictions else "labels"
            if record.offset <= part.offsets[kind]:
                out.counts["skipped"] += 1
                continue
            self._apply_record(part, kind, record, out)
            part.offsets[kind] = record.offset
        self._release(part, predictions_caught_up, out)
        for expired in part.join.expire(labels_caught_up):
            self._on_expired(part, expired)
        return out

    def _apply_record(
        self, part: PartitionState, kind: Kind, rec: SourceRecord, out: BatchResult
    ) -> None:
        counts = out.counts
        counts[_RECORDS[kind]] += 1
        if kind == "predictions":
            decoded = decode_predictions(rec.key, rec.value, rec.timestamp_ms)
        else:
            decoded = decode_labels(rec.key, rec.value, rec.timestamp_ms)
        if decoded.errors:
            out.counts["dead_letters"] += 1
            out.counts["dead_letter:" + reason_category(decoded.errors[0])] += 1
            out.dead_letters.append(
                dead_letter_record(
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    key=rec.key,
                    value=rec.value,
                    reasons=decoded.errors,
                    timestamp_ms=rec.timestamp_ms,
                    max_value_bytes=DEAD_LETTER_MAX_VALUE_BYTES,
                )
            )
        events = decoded.events
        n = len(events)
        counts[_EVENTS[kind]] += n
        partition, offset = rec.partition, rec.offset
        if kind == "labels":
            self._on_labels(part, cast("list[Label]", events), offset, out)
            return
        predictions = cast("list[Prediction]", events)
        start = 0
        while start < n:  # runs of one model and version (an SDK envelope is one run)
            head = predictions[start]
            end = start + 1
            while (
                end < n
                and predictions[end].model_id == head.model_id
                and predictions[end].model_version == head.model_version
            ):
                end += 1
            run = predictions if start == 0 and end == n else predictions[start:end]
            self._on_predictions(part, run, partition, offset, start, out)
            start = end

    # -- predictions ------------------------------------------------------------------------
    def _model(self, part: PartitionState, model_id: str) -> ModelState:
        model = part.models.get(model_id)
        if model is None:
            model = part.models[model_id] = ModelState(model_id)
        part.dirty_models.add(model_id)
        return model

    @staticmethod
    def _task_of(event: Prediction, settings: Detection) -> Task:
        if settings.task != "auto":
            return settings.task
        if _is_number(event.prediction) and event.score is None:
            return "regression"
        return "classification"

    def _on_predictions(
        self,
        part: PartitionState,
        evs: Sequence[Prediction],
        partition: int,
        offset: int,
        first_index: int,
        out: BatchResult,
    ) -> None:
        """A run of predictions of one model and version: each signal as a column, then joins.

        Every signal's detectors see the run's values in event order, so detector states and
        alerts (ids included) are those of one event at a time; a run's alerts are grouped by
        signal, and its joins are made after its prediction-side signals.
        """
        head = evs[0]
        settings = self.settings_for(head.model_id)
        model = self._model(part, head.model_id)
        model.touched("predictions")
        model.ensure_task(self._task_of(head, settings), settings)
        if head.model_version is not None:
            model.model_version = head.model_version
        base = model.counters["predictions"]
        model.counters["predictions"] = base + len(evs)
        run = _Run(part, model, settings, out, partition, offset, first_index, base, evs)
        self._watch_output(run)
        if settings.data_drift.enabled or settings.data_quality.enabled:
            self._watch_features(run)
        if settings.latency.enabled:
            self._watch_latency(run)
        self._flush_drift(run)

        review = settings.review_requests
        review_on = review.enabled and model.task == "classification"
        join = part.join
        if not review_on and join.nothing_to_join():
            join.add_unjoined(head.model_id, evs)
            return
        for j, ev in enumerate(evs):
            index = first_index + j
            if review_on and ev.score is not None:
                # low-confidence predictions, rate-limited, to review-requests
                pos = SourcePosition("predictions", partition, offset, index)
                taken = self._review.consider(model, review, ev, pos, out.review_requests)
                if taken is not ReviewDecision.NOT_A_CANDIDATE:
                    out.counts[taken.value] += 1
            joined = join.add_prediction(
                ev.model_id, ev.prediction_id, ev.prediction, ev.timestamp_ms, offset, index
            )
            if joined is not None:
                self._on_join(part, joined, out)
            if join.releasable():
                self._release(part, False, out)

    # -- prediction-side signals, one column per signal -------------------------------------
    def _watch_drift(
        self,
        run: _Run,
        det: StandardizedPageHinkley | KSWIN,
        rows: Sequence[int],
        values: list[float],
        column: np.ndarray | None,
        alert: tuple[AlertType, str],
        renew: tuple[Callable[..., StandardizedPageHinkley | KSWIN], tuple[Any, ...]],
        keep: Callable[[StandardizedPageHinkley | KSWIN], None],
    ) -> None:
        """Feed a column to its drift detector now (see :meth:`_feed_drift`), or queue it for
        :meth:`_flush_drift`: a Page-Hinkley detector with its reference, over every event of
        a long run. ``alert`` is (type, signal), ``renew`` (factory, its arguments) and
        ``keep`` stores the detector to keep."""
        n = len(values)
        if (
            isinstance(det, StandardizedPageHinkley)
            and det.columns_ready
            and n == len(run.events)
            and n >= self.bulk_min_values
        ):
            run.drift_queue.append(_DriftFeed(det, rows, values, column, *alert, *renew, keep))
            return
        keep(self._feed_drift(run, det, rows, values, *alert, renew[0], *renew[1], column=column))

    def _flush_drift(self, run: _Run) -> None:
        """The queued columns through their detectors at once (update_columns); a detector that
        fires alerts, is renewed, and takes the rest of its column on its own."""
        queue, run.drift_queue = run.drift_queue, []
        if not queue:
            return
        if len(queue) == 1:  # one column: its own path (value by value under numpy_min_values)
            feed = queue[0]
            feed.keep(self._feed(run, feed, feed.detector, 0))
            return
        detectors = cast("list[StandardizedPageHinkley]", [feed.detector for feed in queue])
        columns = np.array([feed.values if feed.column is None else feed.column for feed in queue])
        for feed, first in zip(queue, update_columns(detectors, columns), strict=True):
            det = feed.detector
            if first is not None:
                self._drift(
                    run.ctx(feed.rows[first]),
                    feed.alert_type,
                    feed.signal,
                    det,
                    feed.values[first],
                )
                det = self._feed(run, feed, feed.renew(*feed.renew_args), first + 1)
            feed.keep(det)

    def _feed(
        self, run: _Run, feed: _DriftFeed, det: StandardizedPageHinkley | KSWIN, start: int
    ) -> StandardizedPageHinkley | KSWIN:
        """:meth:`_feed_drift` over ``feed``'s column from ``start``."""
        whole = start == 0
        return self._feed_drift(
            run,
            det,
            feed.rows if whole else feed.rows[start:],
            feed.values if whole else feed.values[start:],
            feed.alert_type,
            feed.signal,
            feed.renew,
            *feed.renew_args,
            column=feed.column if whole else None,
        )

    def _feed_drift(
        self,
        run: _Run,
        det: _D,
        rows: Sequence[int],
        values: list[float],
        alert_type: AlertType,
        signal: str,
        renew: Callable[..., _D],
        *renew_args: Any,
        column: np.ndarray | None = None,
    ) -> _D:
        """Feed a column to a drift detector; on each detection alert and go on with a new one.

        Returns the detector to keep. A detector that fired is replaced by
        ``renew(*renew_args)`` (a new normal is learned) before the values after the detection
        reach it. ``column``: ``values`` as an array, when the caller has made one.
        """
        start, n = 0, len(values)
        while start < n:
            if n - start >= self.numpy_min_values and isinstance(det, StandardizedPageHinkley):
                if column is None:
                    column = np.array(values)
                hits = det.update_many(column[start:], stop_at_drift=True)
                if not hits:
                    break
                j = start + hits[0]
            else:
                j = n
                for k in range(start, n):
                    det.update(values[k])
                    if det.drift_detected:
                        j = k
                        break
                if j == n:
                    break
            self._drift(run.ctx(rows[j]), alert_type, signal, det, values[j])
            det = renew(*renew_args)
            start = j + 1
        return det

    def _feed_psi(
        self,
        run: _Run,
        psi: NumericPSI | CategoricalPSI,
        rows: Sequence[int],
        values: Sequence[Any],
        name: str,
        column: np.ndarray | Sequence[Any] | None,
    ) -> None:
        """Feed a column to a PSI detector, stopping at each of its checks to decide the level.

        ``column``: what ``update_many`` takes, when the caller has it (an array of numbers,
        or categories as they are); otherwise numbers are made an array here.
        """
        n = len(values)
        if n < self.numpy_min_values:
            for k in range(n):
                psi.update(values[k])
                if psi.just_checked:
                    self._psi_alert(run.ctx(rows[k]), name, psi)
            return
        if column is None:
            column = np.array(values)
        start = 0
        while start < n:
            stop = start + psi.values_to_check()
            psi.update_many(column[start:stop])
            if stop > n:
                break
            self._psi_alert(run.ctx(rows[stop - 1]), name, psi)
            start = stop

    def _watch_output(self, run: _Run) -> None:
        """Page-Hinkley on the score (or a regressor's prediction); label-free accuracy."""
        evs = run.events
        scores = [ev.score for ev in evs]
        if None not in scores:
            self._output_column(run, "score", range(len(evs)), scores)  # type: ignore[arg-type]
            return
        regression = run.model.task == "regression"
        signal: str | None = None
        rows: list[int] = []
        values: list[float] = []
        for j, ev in enumerate(evs):
            if ev.score is not None:
                this, value = "score", ev.score
            elif regression and _is_number(ev.prediction):
                this, value = "prediction", float(ev.prediction)
            else:
                continue
            if this != signal:
                if signal is not None:
                    self._output_column(run, signal, rows, values)
                signal, rows, values = this, [], []
            rows.append(j)
            values.append(value)
        if signal is not None:
            self._output_column(run, signal, rows, values)

    def _output_column(
        self, run: _Run, signal: str, rows: Sequence[int], values: list[float]
    ) -> None:
        model, settings = run.model, run.settings
        ph = settings.prediction_drift
        if ph.enabled:
            if model.output is None or model.output_signal != signal:
                model.output, model.output_signal = _numeric(ph, model.model_id, signal), signal
            self._watch_drift(
                run,
                model.output,
                rows,
                values,
                None,
                ("prediction_drift", signal),
                (_numeric, (ph, model.model_id, signal)),
                lambda det: setattr(model, "output", det),
            )
        ea = settings.performance.expected_accuracy
        if signal != "score" or not ea.enabled or model.task != "classification":
            return
        if model.expected is None:
            model.expected = ExpectedAccuracy(window=ea.window)
        expected = model.expected
        threshold = ea.min_accuracy
        # tracked for status and metrics either way; evaluated only when it can page
        if threshold is None:
            for score in values:
                expected.update(score)
            return
        recovery = threshold + settings.performance.recovery_margin
        for j, score in zip(rows, values, strict=True):
            expected.update(score)
            estimate = expected.value
            if estimate is None or expected.window_n < ea.min_samples:
                continue
            level = 1 if estimate < threshold else 0 if estimate >= recovery else None
            if not self._level_due(model, "expected_accuracy", "threshold", level):
                continue
            self._level_alert(
                run.ctx(j),
                "performance",
                "expected_accuracy",
                "threshold",
                level=level,
                value=estimate,
                threshold=threshold,
                window=expected.window_n,
                stats=expected.stats(),
                message=(
                    f"{model.model_id}: estimated accuracy from scores {estimate:.3g} is "
                    f"below {threshold:g} over the last {expected.window_n} predictions "
                    "(label-free; assumes calibrated scores)."
                ),
            )

    def _watch_features(self, run: _Run) -> None:
        """Page-Hinkley and PSI per feature; missing, type-change and unseen-category rates.

        A long run whose events all carry exactly the model's known features, each of its
        kind (the steady state), goes feature by feature; any other run event by event.
        """
        columns = self._clean_columns(run)
        if columns is None:
            self._features_by_event(run)
        else:
            self._feature_columns(run, columns)

    def _clean_columns(self, run: _Run) -> dict[str, _Column] | None:
        """Each known feature's values over the run, or None unless every event has exactly
        the known features, each of its kind and numbers finite: nothing is missing, of the
        wrong type or new."""
        model = run.model
        kinds = model.feature_kinds
        events = run.events
        if len(events) < self.bulk_min_values or not kinds:
            return None
        keys = kinds.keys()
        features = [ev.features for ev in events]
        for f in features:
            if f is None or f.keys() != keys:
                return None
        columns: dict[str, _Column] = {}
        for name, kind in kinds.items():
            values: list[Any] = [f[name] for f in features]  # type: ignore[index]
            types = set(map(type, values))
            if kind == "n":
                if not types <= _NUMBERS:
                    return None
                if int in types:
                    values = [float(v) for v in values]
                array = np.array(values)
                if not np.isfinite(array).all():
                    return None
                columns[name] = (values, array)
            else:
                if not types <= _CATEGORIES:
                    return None
                columns[name] = (values, None)
        return columns

    def _feature_columns(self, run: _Run, columns: dict[str, _Column]) -> None:
        """Features of a clean run (see _clean_columns), one column per feature."""
        settings = run.settings
        dd, dq = settings.data_drift, settings.data_quality
        rows = range(len(run.events))
        unseen = [0] * len(rows)
        if dd.enabled:
            for name, (values, array) in columns.items():
                if array is not None:
                    self._numeric_feature(run, name, rows, values, array)
                elif dd.psi.enabled:
                    unseen = self._categorical_feature(run, name, values, unseen)
        if dq.enabled:
            total = len(columns)
            self._quality_column(run, [(total, 0, 0, 0, u) for u in unseen])

    def _categorical_feature(
        self, run: _Run, name: str, values: list[Any], unseen: list[int]
    ) -> list[int]:
        """A categorical feature's column to its PSI; returns ``unseen`` plus, per event,
        whether its category is new to the reference."""
        psi = run.model.psi.get(name)
        if psi is None:
            psi = run.model.psi[name] = _psi(run.settings.data_drift.psi, "c")
        # the feature is categorical, so its detector is a CategoricalPSI
        is_unseen: Callable[[Any], bool] = psi.is_unseen  # type: ignore[union-attr]
        if psi.ready:  # then a category is new or not whatever comes after it
            if run.settings.data_quality.enabled:
                unseen = [u + is_unseen(v) for u, v in zip(unseen, values, strict=True)]
            self._feed_psi(run, psi, range(len(values)), values, name, values)
            return unseen
        unseen = list(unseen)
        for j, category in enumerate(values):  # the reference is completed on the way
            unseen[j] += is_unseen(category)
            psi.update(category)
            if psi.just_checked:
                self._psi_alert(run.ctx(j), name, psi)
        return unseen

    def _features_by_event(self, run: _Run) -> None:
        """Each event's features sorted out in turn (kinds, missing values, type changes,
        categories); numeric values are collected per feature and fed as columns afterwards."""
        model, settings = run.model, run.settings
        dd, dq = settings.data_drift, settings.data_quality
        kinds = model.feature_kinds
        psis = model.psi
        drift_on, psi_on, quality_on = dd.enabled, dd.psi.enabled, dq.enabled
        columns: dict[str, tuple[list[int], list[float]]] = {}
        for j, ev in enumerate(run.events):
            features = ev.features
            if not features:
                continue
            missing = wrong_type = unseen = 0
            present = 0  # features of this event that are among the model's known features
            for name, raw in features.items():
                if raw is None:
                    missing += 1
                    present += name in kinds
                    continue
                cls = raw.__class__
                if cls is float or cls is int:
                    kind = "n"
                elif cls is str:
                    kind = "c"
                else:
                    kind = "n" if _is_number(raw) else "c"
                known = kinds.get(name)
                if known is None:
                    if len(kinds) >= dd.max_features:
                        continue
                    kinds[name] = known = kind
                present += 1
                if kind != known:
                    wrong_type += 1
                    continue
                if not drift_on:
                    continue
                if kind == "n":
                    value = float(raw)
                    if not math.isfinite(value):
                        continue
                    column = columns.get(name)
                    if column is None:
                        column = columns[name] = ([], [])
                    column[0].append(j)
                    column[1].append(value)
                elif psi_on:
                    cpsi = psis.get(name)
                    if cpsi is None:
                        cpsi = psis[name] = _psi(dd.psi, kind)
                    # kind "c": the detector is a CategoricalPSI (created for the feature's kind)
                    category: str | bool = raw if cls is str or cls is bool else str(raw)  # type: ignore[assignment]
                    unseen += cpsi.is_unseen(category)  # type: ignore[union-attr]
                    cpsi.update(category)  # type: ignore[arg-type]
                    if cpsi.just_checked:
                        self._psi_alert(run.ctx(j), name, cpsi)
            if quality_on:
                missing += len(kinds) - present  # known features absent from this event
                self._watch_quality(
                    run, j, max(len(kinds), len(features)), missing, wrong_type, unseen
                )
        for name, (rows, values) in columns.items():
            array = np.array(values) if len(values) >= self.numpy_min_values else None
            self._numeric_feature(run, name, rows, values, array)

    def _numeric_feature(
        self,
        run: _Run,
        name: str,
        rows: Sequence[int],
        values: list[float],
        array: np.ndarray | None,
    ) -> None:
        """A numeric feature's column to its drift detector and its PSI."""
        model, dd = run.model, run.settings.data_drift
        det = model.features.get(name)
        if det is None:
            det = _numeric(dd, model.model_id, name)
        self._watch_drift(
            run,
            det,
            rows,
            values,
            array,
            ("data_drift", f"feature:{name}"),
            (_numeric, (dd, model.model_id, name)),
            lambda det: model.features.__setitem__(name, det),
        )
        if dd.psi.enabled:
            psi = model.psi.get(name)
            if psi is None:
                psi = model.psi[name] = _psi(dd.psi, "n")
            self._feed_psi(run, psi, rows, values, name, array)

    def _watch_quality(
        self, run: _Run, j: int, total: int, missing: int, wrong_type: int, unseen: int
    ) -> None:
        """Data-quality rates after event ``j`` of the run."""
        self._quality(run).update(
            total_fields=total, missing=missing, wrong_type=wrong_type, unseen_category=unseen
        )
        self._quality_levels(run, j)

    def _quality_column(self, run: _Run, rows: list[QualityRow]) -> None:
        """Data-quality rates over a run, one row per event, stopping where a level could
        change: on a breach, and at every event while a quality level is paged."""
        quality = self._quality(run)
        levels = run.model.levels
        start, n = 0, len(rows)
        while start < n:
            if not levels.keys().isdisjoint(_QUALITY_LEVELS):
                for j in range(start, n):
                    total, missing, _, wrong_type, unseen = rows[j]
                    self._watch_quality(run, j, total, missing, wrong_type, unseen)
                return
            j = quality.update_until_breached(rows, start)
            if j == n:
                return
            self._quality_levels(run, j)
            start = j + 1

    @staticmethod
    def _quality(run: _Run) -> DataQualityRates:
        model, dq = run.model, run.settings.data_quality
        if model.quality is None:
            model.quality = DataQualityRates(
                window=dq.window,
                min_samples=dq.min_samples,
                threshold={
                    "missing": dq.max_missing_rate,
                    "non_finite": 1.0,
                    "wrong_type": dq.max_wrong_type_rate,
                    "unseen_category": dq.max_unseen_category_rate,
                },
            )
        return model.quality

    def _quality_levels(self, run: _Run, j: int) -> None:
        """Page or re-arm data-quality levels after event ``j`` was counted."""
        model, dq = run.model, run.settings.data_quality
        quality = model.quality
        assert quality is not None
        breached = quality.breached
        # a level changes only on a breach, or on recovery from one already paged
        if not breached and model.levels.keys().isdisjoint(_QUALITY_LEVELS):
            return
        rates = quality.rates()
        for rate, limit in (
            ("missing", dq.max_missing_rate),
            ("wrong_type", dq.max_wrong_type_rate),
            ("unseen_category", dq.max_unseen_category_rate),
        ):
            signal = f"{rate}_rate"
            current = rates[rate]
            level = 1 if rate in breached else 0 if current <= limit / 2 else None
            if not self._level_due(model, signal, "threshold", level):
                continue
            qstats = quality.stats()
            window_n = int(qstats["window_n"])
            self._level_alert(
                run.ctx(j),
                "data_quality",
                signal,
                "threshold",
                level=level,
                value=current,
                threshold=limit,
                window=window_n,
                stats=qstats,
                message=(
                    f"{model.model_id}: {rate.replace('_', ' ')} rate {current:.3g} is above "
                    f"{limit:g} over the last {window_n} predictions."
                ),
            )

    def _psi_alert(self, ctx: _Ctx, name: str, psi: NumericPSI | CategoricalPSI) -> None:
        stats = psi.stats()
        level = 2 if psi.drift_detected else 1 if psi.warning_detected else 0
        self._level_alert(
            ctx,
            "data_drift",
            f"feature:{name}",
            "psi",
            level=level,
            value=stats["psi"],
            threshold=stats["drift_level"] if level == 2 else stats["warning_level"],
            window=int(stats["window_n"]),
            stats=stats,
            message=(
                f"{ctx.model.model_id}: the distribution of feature {name!r} moved away from its "
                f"reference: PSI {stats['psi']:.3g}, Jensen-Shannon distance {stats['js']:.3g} "
                f"over the last {int(stats['window_n'])} values."
            ),
        )

    def _watch_latency(self, run: _Run) -> None:
        """A latency quantile against its threshold; Page-Hinkley for creeping latency."""
        model, lat = run.model, run.settings.latency
        rows: list[int] = []
        values: list[float] = []
        for j, ev in enumerate(run.events):
            if ev.latency_ms is not None:
                rows.append(j)
                values.append(ev.latency_ms)
        if not values:
            return
        if model.latency is None:
            model.latency = LatencyQuantile(
                q=lat.quantile,
                threshold_ms=lat.threshold_ms,
                min_samples=lat.min_samples,
                window=lat.window,
            )
        quantile = model.latency
        paging = lat.threshold_ms is not None  # without a threshold the flag is never set
        levels = model.levels
        for k in _flag_changes(
            quantile, values, lambda: paging and "latency_ms|threshold" in levels
        ):
            level = 1 if quantile.drift_detected else 0
            if not self._level_due(model, "latency_ms", "threshold", level):
                continue
            stats = quantile.stats()
            q = stats["quantile"]
            self._level_alert(
                run.ctx(rows[k]),
                "performance",
                "latency_ms",
                "threshold",
                level=level,
                value=q,
                threshold=lat.threshold_ms,
                window=int(stats["count"]),
                stats=stats,
                message=(
                    f"{model.model_id}: p{lat.quantile * 100:g} latency {q:.4g} ms is above "
                    f"{lat.threshold_ms:g} ms over recent predictions."
                ),
            )
        if lat.page_hinkley.enabled:
            if model.latency_ph is None:
                model.latency_ph = _page_hinkley(lat.page_hinkley, mode="up")
            self._watch_drift(
                run,
                model.latency_ph,
                rows,
                values,
                None,
                ("performance", "latency_ms"),
                (_page_hinkley, (lat.page_hinkley, "up")),
                lambda det: setattr(model, "latency_ph", det),
            )

    def _drift(
        self,
        ctx: _Ctx,
        alert_type: AlertType,
        signal: str,
        det: StandardizedPageHinkley | KSWIN,
        value: float,
    ) -> None:
        stats = det.stats()
        if isinstance(det, KSWIN):
            detector, threshold = "kswin", det.alpha
            message = (
                f"{ctx.model.model_id}: the distribution of {signal} changed (KSWIN: "
                f"Kolmogorov-Smirnov p-value {stats['p_value']:.3g} < {det.alpha:g})."
            )
        else:
            detector, threshold = "page_hinkley", det.threshold
            direction = "rose above" if stats["up"] >= stats["down"] else "fell below"
            message = (
                f"{ctx.model.model_id}: {signal} {direction} its baseline "
                f"(mean {stats['mean']:.4g}, sd {stats['std']:.4g}); the Page-Hinkley statistic "
                f"reached {stats['statistic']:.3g} > {det.threshold:g} standard deviations."
            )
        self._raise(
            ctx,
            alert_type=alert_type,
            signal=signal,
            detector=detector,
            severity="warning",
            value=value,
            threshold=threshold,
            window=int(det.n),
            stats=stats,
            message=message,
        )

    # -- labels and outcomes ----------------------------------------------------------------
    def _on_labels(
        self, part: PartitionState, labels: list[Label], offset: int, out: BatchResult
    ) -> None:
        """Join or buffer a record's labels (all of one model: decoding sees to that) and
        release what is due."""
        if not labels:
            return
        self._model(part, labels[0].model_id).counters["labels"] += len(labels)
        self._on_joins(part, part.join.take_labels(labels, offset), out)
        # prediction stream time stands still over a record's labels: releasing those buffered
        # once at its end releases the same outcomes in the same order as after each label
        if part.join.releasable():
            self._release(part, False, out)

    def _release(self, part: PartitionState, caught_up: bool, out: BatchResult) -> None:
        self._on_joins(part, part.join.release(caught_up), out)

    def _on_joins(
        self, part: PartitionState, items: Iterable[Outcome | Expired | None], out: BatchResult
    ) -> None:
        """Labels joined in label order: outcomes go on in runs of one model; expiries and
        parked labels (None) only count or wait."""
        run: list[Outcome] = []
        for item in items:
            if item is None:
                continue
            if isinstance(item, Expired):
                self._on_expired(part, item)
                continue
            if run and run[0].model_id != item.model_id:
                self._on_outcomes(part, run, out)
                run = []
            run.append(item)
        if run:
            self._on_outcomes(part, run, out)

    def _on_join(self, part: PartitionState, item: Outcome | Expired, out: BatchResult) -> None:
        if isinstance(item, Expired):
            self._on_expired(part, item)
        else:
            self._on_outcome(part, item, out)

    def _on_expired(self, part: PartitionState, item: Expired) -> None:
        model = self._model(part, item.model_id)
        model.counters[
            "expired_predictions" if item.kind == "prediction" else "expired_labels"
        ] += 1

    def _on_outcomes(self, part: PartitionState, outs: list[Outcome], out: BatchResult) -> None:
        """Outcomes of one model: each outcome-side signal as a column where that is exact.

        Long runs of a classifier whose error detector is ADWIN go column by column (its
        concept-drift alerts read ADWIN alone); everything else goes outcome by outcome. As for
        predictions, detector states and alerts are those of one outcome at a time, and a
        run's alerts are grouped by signal.
        """
        head = outs[0]
        model = self._model(part, head.model_id)
        model.touched("outcomes")
        error = model.error
        if (
            len(outs) < self.bulk_min_values
            or model.task != "classification"
            or not (error is None or isinstance(error, ADWIN))
        ):
            for o in outs:
                self._on_outcome(part, o, out)
            return
        settings = self.settings_for(head.model_id)
        counters = model.counters
        run = _Outcomes(part, model, settings, out, counters["joined"], outs)
        counters["joined"] += len(outs)
        counters["late_joins"] += sum(o.via == "prediction" for o in outs)
        labels = [o.label for o in outs]
        predictions = [o.prediction for o in outs]
        correct = [int(p == y) for p, y in zip(predictions, labels, strict=True)]
        if error is not None:
            errors = [1.0 - c for c in correct]
            start = 0
            while start < len(errors):
                hits = error.update_many(errors[start:], stop_at_drift=True)
                if not hits:
                    break
                self._concept_drift(run.ctx(start + hits[0]))
                start += hits[0] + 1
        if model.classification is not None:
            model.classification.update_many(labels, predictions)
        if isinstance(model.performance, WindowedAccuracy):
            self._accuracy_column(run, model.performance, correct)
        if model.baseline is not None:
            values = [float(c) for c in correct]
            levels = model.levels
            for j in _flag_changes(model.baseline, values, lambda: "accuracy|baseline" in levels):
                self._baseline_level(run.ctx(j))

    def _accuracy_column(self, run: _Outcomes, perf: WindowedAccuracy, correct: list[int]) -> None:
        """Windowed accuracy over a run, stopping where its threshold level could change."""
        cfg = run.settings.performance
        threshold = cfg.min_accuracy
        if threshold is None:
            perf.update_many(correct)
            return
        values, sizes = perf.values_after(np.array(correct))
        # the level _check_performance decides, or -1 for none (it keeps the current one)
        levels = np.where(
            values < threshold - cfg.critical_margin,
            2,
            np.where(
                values < threshold, 1, np.where(values >= threshold + cfg.recovery_margin, 0, -1)
            ),
        )
        levels[sizes < cfg.min_samples] = -1
        levels_now = run.model.levels
        start = 0
        while True:
            current = levels_now.get("accuracy|threshold", 0)
            rest = levels[start:]
            due = np.flatnonzero((rest > current) | ((rest == 0) & (current > 0)))
            if not due.size:
                break
            j = start + int(due[0])
            perf.update_many(correct[start : j + 1])
            self._check_performance(run.ctx(j))
            start = j + 1
        perf.update_many(correct[start:])

    def _on_outcome(self, part: PartitionState, o: Outcome, out: BatchResult) -> None:
        settings = self.settings_for(o.model_id)
        model = self._model(part, o.model_id)
        model.touched("outcomes")
        if model.task is None:  # cannot happen: the prediction created the task
            return
        if model.task == "regression":
            if not (_is_number(o.label) and _is_number(o.prediction)):
                out.counts["label_type_errors"] += 1
                return
            error = abs(float(o.prediction) - float(o.label))
        else:
            error = 0.0 if o.prediction == o.label else 1.0
        model.counters["joined"] += 1
        if o.via == "prediction":
            model.counters["late_joins"] += 1
        count = model.counters["joined"]
        source = "labels" if o.via == "label" else "predictions"
        pos = SourcePosition(source, part.partition, o.offset, o.index)
        ctx = _Ctx(part, model, settings, out, pos, count, o.prediction_id, o.timestamp_ms)

        if isinstance(model.error, StandardizedPageHinkley):
            model.error.update(error)
            if model.error.drift_detected:
                self._drift(ctx, "concept_drift", "abs_error", model.error, error)
                model.error = _page_hinkley(settings.concept_drift.abs_error, mode="up")
        elif model.error is not None:
            model.error.update(error)
            if model.error.drift_detected:
                self._concept_drift(ctx)
        if model.classification is not None:
            model.classification.update(o.label, o.prediction)
        if model.rmse is not None:
            model.rmse.update(error)
        if model.performance is not None:
            if isinstance(model.performance, WindowedAccuracy):
                model.performance.update(error == 0.0)
            else:
                model.performance.update(error)
            self._check_performance(ctx)
        if model.baseline is not None:
            model.baseline.update(1.0 - error if model.task == "classification" else error)
            self._baseline_level(ctx)

    def _concept_drift(self, ctx: _Ctx) -> None:
        model = ctx.model
        assert model.error is not None and not isinstance(model.error, StandardizedPageHinkley)
        stats = model.error.stats()
        name = ctx.settings.concept_drift.detector
        value: float | None
        threshold: float | None
        window: int | None
        if isinstance(model.error, ADWIN):
            before, after = stats["mean_before"], stats["mean_after"]
            if not after > before:
                ctx.out.counts["improvements"] += 1  # error fell: a change, nothing to page about
                return
            critical = after >= 2 * before or after - before >= 0.1
            message = (
                f"{model.model_id}: the error rate changed (ADWIN, delta={model.error.delta:g}): "
                f"{before:.3g} over the older {int(stats['n_before'])} labelled predictions, "
                f"{after:.3g} over the {int(stats['n_after'])} since."
            )
            value, threshold, window = after, model.error.delta, int(stats.get("width", 0))
        else:
            # DDM & co. test for a rising error rate only (one-sided, as river's defaults)
            perf = model.performance
            value = None if perf is None or perf.value is None else 1.0 - float(perf.value)
            critical, threshold, window = False, None, None
            message = f"{model.model_id}: {name.upper()} detected a rise in the error rate" + (
                f" (windowed error rate {value:.3g})." if value is not None else "."
            )
        self._raise(
            ctx,
            alert_type="concept_drift",
            signal="error_rate",
            detector=name,
            severity="critical" if critical else "warning",
            value=value,
            threshold=threshold,
            window=window,
            stats=stats,
            message=message,
        )

    def _check_performance(self, ctx: _Ctx) -> None:
        """Windowed accuracy (or MAE) against its absolute threshold, warning then critical.

        The level re-arms only once the metric is back beyond the threshold by
        ``recovery_margin`` (hysteresis), so a model hovering at the threshold, or staying bad,
        raises one warning and at most one critical rather than one alert per cooldown.
        """
        model, cfg = ctx.model, ctx.settings.performance
        perf = model.performance
        if perf is None or perf.window_n < cfg.min_samples or perf.value is None:
            return
        value = float(perf.value)
        if model.task == "classification":
            if cfg.min_accuracy is None:
                return
            signal, threshold, worse = "accuracy", cfg.min_accuracy, "below"
            bad = value < threshold
            critical = value < threshold - cfg.critical_margin
            recovered = value >= threshold + cfg.recovery_margin
        else:
            if cfg.max_mae is None:
                return
            signal, threshold, worse = "mae", cfg.max_mae, "above"
            bad = value > threshold
            critical = value > threshold * (1 + cfg.critical_margin)
            recovered = value <= threshold * (1 - cfg.recovery_margin)
        level = 2 if critical else 1 if bad else 0 if recovered else None
        if not self._level_due(ctx.model, signal, "threshold", level):
            return
        self._level_alert(
            ctx,
            "performance",
            signal,
            "threshold",
            level=level,
            value=value,
            threshold=threshold,
            window=int(perf.window_n),
            stats={"windowed": value, "cumulative": perf.cumulative, "n": perf.n},
            message=(
                f"{model.model_id}: windowed {signal} {value:.3g} is {worse} the threshold "
                f"{threshold:g} over the last {perf.window_n} labelled predictions."
            ),
        )

    def _baseline_level(self, ctx: _Ctx) -> None:
        """A drop from the model's own baseline window (accuracy down, or |error| up), after
        the baseline detector has seen the outcome."""
        base = ctx.model.baseline
        assert base is not None
        if not base.ready:
            return
        signal = "accuracy" if ctx.model.task == "classification" else "mae"
        level = 1 if base.drift_detected else 0
        if not self._level_due(ctx.model, signal, "baseline", level):
            return
        stats = base.stats()
        self._level_alert(
            ctx,
            "performance",
            signal,
            "baseline",
            level=level,
            value=stats["current"],
            threshold=stats["baseline"],
            window=int(stats["window_n"]),
            stats=stats,
            message=(
                f"{ctx.model.model_id}: windowed {signal} {stats['current']:.3g} is "
                f"{abs(stats['drop']):.3g} worse than the model's own baseline "
                f"{stats['baseline']:.3g}."
            ),
        )

    # -- alert policy -----------------------------------------------------------------------
    @staticmethod
    def _level_due(model: ModelState, signal: str, detector: str, level: int | None) -> bool:
        """Whether ``level`` would page: callers build the evidence only then (it is costly to
        build for every event, and nearly every event changes nothing). Re-arms on level 0."""
        if level is None:
            return False
        key = f"{signal}|{detector}"
        if level == 0:
            model.levels.pop(key, None)
            return False
        return level > model.levels.get(key, 0)

    def _level_alert(
        self,
        ctx: _Ctx,
        alert_type: AlertType,
        signal: str,
        detector: str,
        *,
        level: int | None,
        value: float | None,
        threshold: float | None,
        window: int | None,
        stats: dict[str, Any],
        message: str,
    ) -> None:
        """For conditions that hold over time: page on entering a level, again on escalation.

        ``level`` 0 re-arms, ``None`` keeps the current level (between re-arm and alarm).
        """
        if level is None or not self._level_due(ctx.model, signal, detector, level):
            return
        if self._raise(
            ctx,
            alert_type=alert_type,
            signal=signal,
            detector=detector,
            severity="critical" if level >= 2 else "warning",
            value=value,
            threshold=threshold,
            window=window,
            stats=stats,
            message=message,
        ):
            ctx.model.levels[f"{signal}|{detector}"] = level

    def _raise(
        self,
        ctx: _Ctx,
        *,
        alert_type: AlertType,
        signal: str,
        detector: str,
        severity: Severity,
        value: float | None,
        threshold: float | None,
        window: int | None,
        stats: dict[str, Any],
        message: str,
    ) -> bool:
        """Emit unless inside the (model, signal, detector) cooldown, counted in events."""
        model = ctx.model
        key = f"{signal}|{detector}"
        last = model.last_alert.get(key)
        if last is not None and ctx.count - last < ctx.settings.cooldown_events:
            ctx.out.counts["suppressed_by_cooldown"] += 1
            return False
        model.last_alert[key] = ctx.count
        model.counters["alerts"] += 1
        alert = Alert(
            alert_id=alert_id(model.model_id, signal, detector, ctx.pos),
            type=alert_type,
            model_id=model.model_id,
            model_version=model.model_version,
            signal=signal,
            detector=detector,
            severity=severity,
            prediction_id=ctx.prediction_id,
            observed_at_ms=ctx.observed_ms,
            value=value,
            threshold=threshold,
            window=window,
            stats=stats,
            message=message,
        )
        ctx.out.alerts.append(alert)
        if ctx.settings.retrain_requests.enabled:
            # concept drift or critical performance: one retrain request per cooldown
            decision = self._retrain.consider(
                model, ctx.settings.retrain_requests, alert, ctx.pos, ctx.out.retrain_requests
            )
            if decision is not RetrainDecision.NOT_A_TRIGGER:
                ctx.out.counts[decision.value] += 1
        return True


def _flag_changes(
    det: BaselineDrop | LatencyQuantile, values: Sequence[float], paged: Callable[[], bool]
) -> Iterator[int]:
    """Feed ``values`` to a level-style detector, yielding each position where its flag
    differs from ``paged()`` (whether its level is paged now); the caller decides the level
    there before the detector takes the next value."""
    start, n = 0, len(values)
    while start < n:
        k = det.update_until(values, paged(), start)
        if k == n:
            return
        yield k
        start = k + 1


_NUMBERS = frozenset({int, float})
_CATEGORIES = frozenset({str, bool})
_QUALITY_LEVELS = frozenset(
    f"{rate}_rate|threshold" for rate in ("missing", "wrong_type", "unseen_category")
)
_Column = tuple[list[Any], "np.ndarray | None"]  # values, and numbers as an array (else None)


@dataclass(slots=True)
class _DriftFeed:
    """A column for a drift detector, with what its alerts and its renewal need."""

    detector: StandardizedPageHinkley | KSWIN
    rows: Sequence[int]  # the column's events, as positions in the run
    values: list[float]
    column: np.ndarray | None  # ``values`` as an array, when made already
    alert_type: AlertType
    signal: str
    renew: Callable[..., StandardizedPageHinkley | KSWIN]
    renew_args: tuple[Any, ...]
    keep: Callable[[StandardizedPageHinkley | KSWIN], None]  # stores the detector to keep


@dataclass(slots=True)
class _Run:
    """Consecutive predictions of one model and version from one record."""

    part: PartitionState
    model: ModelState
    settings: Detection
    out: BatchResult
    partition: int
    offset: int
    first_index: int  # of the run's first event in its record
    base_count: int  # the model's prediction count before the run
    events: Sequence[Prediction]
    drift_queue: list[_DriftFeed] = field(default_factory=list)  # see Processor._flush_drift

    def ctx(self, j: int) -> _Ctx:
        """The alert context of the run's ``j``-th event."""
        ev = self.events[j]
        return _Ctx(
            self.part,
            self.model,
            self.settings,
            self.out,
            SourcePosition("predictions", self.partition, self.offset, self.first_index + j),
            self.base_count + j + 1,
            ev.prediction_id,
            ev.timestamp_ms,
        )


@dataclass(slots=True)
class _Outcomes:
    """Consecutive released outcomes of one model."""

    part: PartitionState
    model: ModelState
    settings: Detection
    out: BatchResult
    base_count: int  # the model's joined count before the run
    outcomes: Sequence[Outcome]

    def ctx(self, j: int) -> _Ctx:
        """The alert context of the run's ``j``-th outcome."""
        o = self.outcomes[j]
        source: Kind = "labels" if o.via == "label" else "predictions"
        return _Ctx(
            self.part,
            self.model,
            self.settings,
            self.out,
            SourcePosition(source, self.part.partition, o.offset, o.index),
            self.base_count + j + 1,
            o.prediction_id,
            o.timestamp_ms,
        )


@dataclass(slots=True)
class _Ctx:
    """What an alert decision needs to know about the event being applied."""

    part: PartitionState
    model: ModelState
    settings: Detection
    out: BatchResult
    pos: SourcePosition
    count: int  # the model's event counter for cooldowns (predictions or joined outcomes)
    prediction_id: str
    observed_ms: int


def _numeric(
    settings: NumericDriftSettings, model_id: str, signal: str
) -> StandardizedPageHinkley | KSWIN:
    """The configured drift detector for a numeric signal.

    KSWIN samples at random: its seed comes from the model and signal, so a replay draws the
    same samples and raises the same alerts.
    """
    if settings.detector == "kswin":
        seed = zlib.crc32(f"{model_id}\x1f{signal}".encode())
        return KSWIN(
            alpha=settings.kswin_alpha,
            window_size=settings.kswin_window_size,
            stat_size=settings.kswin_stat_size,
            seed=seed,
        )
    return _page_hinkley(settings)


def _page_hinkley(settings: PageHinkleySettings, mode: str = "both") -> StandardizedPageHinkley:
    return StandardizedPageHinkley(
        warmup=settings.warmup, delta=settings.delta, threshold=settings.threshold, mode=mode
    )


def _psi(settings: PSISettings, kind: str) -> NumericPSI | CategoricalPSI:
    if kind == "n":
        return NumericPSI(
            reference_size=settings.reference_size,
            window=settings.window,
            bins=settings.bins,
            warning=settings.warning,
            critical=settings.critical,
        )
    return CategoricalPSI(
        reference_size=settings.reference_size,
        window=settings.window,
        max_categories=settings.max_categories,
        warning=settings.warning,
        critical=settings.critical,
    )
