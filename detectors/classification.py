"""Accuracy, precision, recall and F1, windowed and cumulative, from exact confusion counts."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

from detectors._ring import pushed_out
from detectors._values import Category, raw_field
from detectors._values import check_category as _check_label
from detectors.codec import register
from detectors.state import State, StateDecodeError, StateReader

__all__ = ["MAX_CLASSES", "ClassificationMetrics", "Label"]

Label = Category
"""A class label. Labels compare with Python equality: ``True``, ``1`` and ``1.0`` are one class."""

MAX_CLASSES = 100
"""Default cap on distinct classes in multiclass mode."""

_KEYS = ("accuracy", "precision", "recall", "f1")


class _Counts:
    """Confusion counts: per class true, predicted and true-positive totals, plus n."""

    __slots__ = ("correct", "n", "pred", "tp", "true")

    def __init__(self, size: int) -> None:
        self.n = 0
        self.correct = 0
        self.true = [0] * size
        self.pred = [0] * size
        self.tp = [0] * size

    def add(self, t: int, p: int, exact: int, sign: int) -> None:
        self.n += sign
        self.true[t] += sign
        self.pred[p] += sign
        if t == p:
            self.tp[t] += sign
        if exact:
            self.correct += sign

    def binary(self, pos: int) -> dict[str, float | None]:
        tp = self.tp[pos]
        fp = self.pred[pos] - tp
        fn = self.true[pos] - tp
        return {
            "accuracy": self.correct / self.n if self.n else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        }

    def macro(self) -> dict[str, float | None]:
        if not self.n:
            return dict.fromkeys(_KEYS)
        precision: list[float] = []
        recall: list[float] = []
        f1: list[float] = []
        for tp, t, p in zip(self.tp, self.true, self.pred, strict=True):
            if t or p:  # the class is present in the labels or the predictions
                precision.append(tp / p if p else 0.0)
                recall.append(tp / t if t else 0.0)
                f1.append(2 * tp / (t + p))
        k = len(f1)
        return {
            "accuracy": self.correct / self.n,
            "precision": math.fsum(precision) / k,
            "recall": math.fsum(recall) / k,
            "f1": math.fsum(f1) / k,
        }


@register("classification_metrics")
class ClassificationMetrics:
    """Accuracy, precision, recall and F1, over the last `window` outcomes and since the start.

    Binary mode (a `positive` label is given): precision, recall and F1 of the positive class;
    every other label is negative. In both modes accuracy is the share of predictions equal to
    the label. Multiclass mode (``positive=None``): their macro averages over
    the classes present (in the labels or the predictions) in the window, or since the start,
    as ``sklearn.metrics`` computes them with ``average="macro", zero_division=0``.

    Both keep confusion counts in integers and the window's outcomes in a ring buffer, so the
    windowed values are exact, whatever the stream length.

    Parameters
    ----------
    window
        Outcomes in the sliding window.
    positive
        The positive label (binary mode), or None for multiclass mode.
    max_classes
        Multiclass mode keeps at most this many distinct classes (in order of appearance; at
        most 10000); later new labels all count as one extra class for precision, recall and F1,
        so the counts stay bounded (accuracy still compares the labels themselves).

    Examples
    --------
    >>> from detectors import ClassificationMetrics
    >>> m = ClassificationMetrics(window=4)
    >>> for y_true, y_pred in [(1, 1), (0, 1), (1, 0), (1, 1), (0, 0), (0, 0)]:
    ...     m.update(y_true, y_pred)
    >>> {k: round(v, 3) for k, v in m.window.items()}
    {'accuracy': 0.75, 'precision': 1.0, 'recall': 0.5, 'f1': 0.667}
    >>> {k: round(v, 3) for k, v in m.cumulative.items()}
    {'accuracy': 0.667, 'precision': 0.667, 'recall': 0.667, 'f1': 0.667}

    Multiclass, macro-averaged:

    >>> m = ClassificationMetrics(positive=None)
    >>> for y_true, y_pred in [("cat", "cat"), ("dog", "cat"), ("bird", "bird"), ("dog", "dog")]:
    ...     m.update(y_true, y_pred)
    >>> {k: round(v, 3) for k, v in m.window.items()}
    {'accuracy': 0.75, 'precision': 0.833, 'recall': 0.833, 'f1': 0.778}

    Notes
    -----
    A value is None when it is undefined: no outcome yet; in binary mode precision with no
    positive prediction, recall with no positive label, F1 with neither (then every outcome was a
    true negative). In multiclass mode a present class that was never predicted counts as
    precision 0 (and recall 0 if it never occurred), as in scikit-learn.

    ``stats()`` keys (defined values only): ``accuracy``, ``precision``, ``recall``, ``f1``
    (window), the same prefixed with ``cumulative_``, ``window_n``, ``n``.

    """

    __slots__ = (
        "_buffer",
        "_classes",
        "_cumulative",
        "_index",
        "_window",
        "max_classes",
        "positive",
        "window_size",
    )

    def __init__(
        self, window: int = 500, positive: Label | None = 1, max_classes: int = MAX_CLASSES
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 1 <= max_classes <= 10_000:
            raise ValueError(f"max_classes must be in [1, 10000], got {max_classes}")
        self.window_size = int(window)
        """Outcomes the window holds when full."""
        self.positive = None if positive is None else _check_label(positive)
        self.max_classes = int(max_classes)
        self._classes: list[Label] = []
        self._index: dict[Label, int] = {}
        size = 2 if self.positive is not None else self.max_classes + 1
        self._cumulative = _Counts(size)
        self._window = _Counts(size)
        # Each outcome as (true_index * size + predicted_index) * 2 + (labels equal).
        self._buffer: deque[int] = deque(maxlen=self.window_size)

    @property
    def n(self) -> int:
        """Outcomes seen since creation."""
        return self._cumulative.n

    @property
    def window_n(self) -> int:
        """Outcomes currently in the window."""
        return len(self._buffer)

    @property
    def classes(self) -> list[Label]:
        """Multiclass mode: the classes seen, in order of appearance (empty in binary mode)."""
        return list(self._classes)

    def _class(self, y: Label) -> int:
        i = self._index.get(y)
        if i is None:
            if len(self._classes) == self.max_classes:
                return self.max_classes  # the overflow class
            i = len(self._classes)
            self._classes.append(y)
            self._index[y] = i
        return i

    def update(self, y_true: Label, y_pred: Label) -> None:
        """Add one outcome: the true label and the predicted one."""
        y_true = _check_label(y_true)
        y_pred = _check_label(y_pred)
        exact = int(y_true == y_pred)
        if self.positive is not None:
            t = int(y_true == self.positive)
            p = int(y_pred == self.positive)
            size = 2
        else:
            t = self._class(y_true)
            p = self._class(y_pred)
            size = self.max_classes + 1
        buf = self._buffer
        if len(buf) == self.window_size:
            old, old_exact = divmod(buf[0], 2)
            old_t, old_p = divmod(old, size)
            self._window.add(old_t, old_p, old_exact, -1)
        buf.append((t * size + p) * 2 + exact)
        self._window.add(t, p, exact, 1)
        self._cumulative.add(t, p, exact, 1)

    def update_many(self, y_true: Sequence[Label], y_pred: Sequence[Label]) -> None:
        """Add several outcomes; the same state as calling `update` on each pair in turn. A bad
        label raises before any outcome is added.

        Examples
        --------
        >>> m = ClassificationMetrics(window=4)
        >>> m.update_many([1, 0, 1, 1, 0, 0], [1, 1, 0, 1, 0, 0])
        >>> {k: round(v, 3) for k, v in m.window.items()}
        {'accuracy': 0.75, 'precision': 1.0, 'recall': 0.5, 'f1': 0.667}

        """
        if len(y_true) != len(y_pred):
            raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
        positive = self.positive
        size = 2 if positive is not None else self.max_classes + 1
        pairs = [
            (_check_label(yt), _check_label(yp)) for yt, yp in zip(y_true, y_pred, strict=True)
        ]
        codes: list[int] = []
        for yt, yp in pairs:
            if positive is not None:
                t, p = int(yt == positive), int(yp == positive)
            else:
                t, p = self._class(yt), self._class(yp)
            codes.append((t * size + p) * 2 + int(yt == yp))
        buf = self._buffer
        for code, k in Counter(pushed_out(buf, codes, self.window_size)).items():
            old, exact = divmod(code, 2)
            self._window.add(*divmod(old, size), exact, -k)
        buf.extend(codes)
        for code, k in Counter(codes).items():
            outcome, exact = divmod(code, 2)
            t, p = divmod(outcome, size)
            self._window.add(t, p, exact, k)
            self._cumulative.add(t, p, exact, k)

    def _metrics(self, counts: _Counts) -> dict[str, float | None]:
        return counts.binary(1) if self.positive is not None else counts.macro()

    @property
    def window(self) -> dict[str, float | None]:
        """Accuracy, precision, recall and F1 over the window (None where undefined)."""
        return self._metrics(self._window)

    @property
    def cumulative(self) -> dict[str, float | None]:
        """Accuracy, precision, recall and F1 since creation (None where undefined)."""
        return self._metrics(self._cumulative)

    def stats(self) -> dict[str, float]:
        """Defined windowed and cumulative values and the sizes; see the class notes."""
        out = {k: v for k, v in self.window.items() if v is not None}
        out.update((f"cumulative_{k}", v) for k, v in self.cumulative.items() if v is not None)
        out["window_n"] = float(len(self._buffer))
        out["n"] = float(self.n)
        return out

    def to_state(self) -> State:
        """Parameters, classes, cumulative counts and the window's outcomes, oldest first."""
        c = self._cumulative
        return {
            "window": self.window_size,
            "positive": self.positive,
            "max_classes": self.max_classes,
            "classes": list(self._classes),
            "correct": c.correct,
            "true": list(c.true),
            "pred": list(c.pred),
            "tp": list(c.tp),
            "buffer": list(self._buffer),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ClassificationMetrics:
        """Rebuild from `to_state` output."""
        r = StateReader(state, "classification_metrics")
        positive = raw_field(state, "positive", "classification_metrics")
        try:
            m = cls(
                window=r.get_int("window"),
                positive=None if positive is None else _check_label(positive),
                max_classes=r.get_int("max_classes"),
            )
        except StateDecodeError:
            raise
        except ValueError as exc:
            raise StateDecodeError(f"classification_metrics: {exc}") from None
        classes = r.get_list("classes")
        try:
            for y in classes:
                m._class(_check_label(y))
        except ValueError as exc:
            raise StateDecodeError(f"classification_metrics: {exc}") from None
        if len(m._classes) != len(classes) or (m.positive is not None and classes):
            raise StateDecodeError("classification_metrics: classes must be distinct")
        size = len(m._cumulative.true)
        c = m._cumulative
        c.true, c.pred, c.tp = (_counts(r, key, size) for key in ("true", "pred", "tp"))
        c.n = sum(c.true)
        c.correct = r.get_int("correct", minimum=0)
        if (
            c.correct > sum(c.tp)
            or sum(c.pred) != c.n
            or any(tp > min(t, p) for tp, t, p in zip(c.tp, c.true, c.pred, strict=True))
        ):
            raise StateDecodeError("classification_metrics: confusion counts do not fit")
        used = len(m._classes) if m.positive is None else 2
        for i in range(used, size - (m.positive is None)):
            if c.true[i] or c.pred[i]:
                raise StateDecodeError("classification_metrics: counts for an unknown class")
        overflow = m.positive is None and (c.true[-1] or c.pred[-1])
        if overflow and len(m._classes) < m.max_classes:
            raise StateDecodeError("classification_metrics: overflow counts before the cap")
        buffer = r.get_list("buffer")
        if len(buffer) > m.window_size or len(buffer) > c.n:
            raise StateDecodeError("classification_metrics: buffer larger than window or count")
        w = m._window
        for code in buffer:
            if code.__class__ is not int or not 0 <= code < size * size * 2:
                raise StateDecodeError("classification_metrics: bad outcome in the buffer")
            pair, exact = divmod(code, 2)
            t, p = divmod(pair, size)
            if exact and t != p:
                raise StateDecodeError("classification_metrics: equal labels in unequal classes")
            w.add(t, p, exact, 1)
            if w.true[t] > c.true[t] or w.pred[p] > c.pred[p] or w.correct > c.correct:
                raise StateDecodeError("classification_metrics: window exceeds cumulative counts")
        m._buffer.extend(buffer)
        return m


def _counts(r: StateReader, key: str, size: int) -> list[int]:
    items = r.get_list(key)
    if len(items) != size or not all(v.__class__ is int and v >= 0 for v in items):
        raise StateDecodeError(f"classification_metrics: {key!r} must hold {size} counts >= 0")
    return items
