"""driftline benchmarks: ``python -m bench [name ...] [--quick]`` (``make bench`` runs them all).

Each benchmark is a module with a ``run(options: RunOptions) -> BenchResult`` function, listed in
`BENCHMARKS`. ``python -m bench`` runs every registered benchmark in order, prints its table and
writes its JSON to ``bench/results/<name>.json`` (git-ignored).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BENCHMARKS",
    "RESULTS_DIR",
    "BenchResult",
    "Row",
    "RunOptions",
    "Verdict",
    "load",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Default output directory (git-ignored)."""

# ---------------------------------------------------------------------------------------------
# REGISTRATION POINT for benchmarks: name -> module exposing ``run(options) -> BenchResult``.
# Order is the order ``python -m bench`` runs them in.
BENCHMARKS: dict[str, str] = {
    "detection": "bench.detection",
    "throughput": "bench.throughput",
}
# ---------------------------------------------------------------------------------------------

Verdict = Literal["PASS", "MISS", "info"]


@dataclass(frozen=True)
class RunOptions:
    """How to run a benchmark."""

    quick: bool = False
    """Fast smoke mode: far fewer values and trials; figures are not meaningful for targets."""
    workers: int = 2
    """Worker processes for the parallel parts (1 = everything in this process)."""
    progress: Callable[[str], None] | None = None
    """Where progress lines go (None = silent)."""

    def say(self, message: str) -> None:
        """Report progress, if anyone listens."""
        if self.progress is not None:
            self.progress(message)


@dataclass(frozen=True)
class Row:
    """One line of a result table."""

    group: str
    detector: str
    stream: str
    metric: str
    ours: str
    river: str
    target: str = ""
    verdict: Verdict = "info"
    measured: str = ""
    """The measured value the verdict refers to (shown beside PASS/MISS)."""


@dataclass
class BenchResult:
    """What a benchmark hands back: table rows, notes under the table and the JSON document."""

    name: str
    rows: list[Row]
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def load(name: str) -> Callable[[RunOptions], BenchResult]:
    """The ``run`` function of the registered benchmark `name`."""
    try:
        module_name = BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})") from None
    module = importlib.import_module(module_name)
    run: Callable[[RunOptions], BenchResult] = module.run
    return run
