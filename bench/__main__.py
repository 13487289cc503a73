"""``python -m bench [name ...] [--quick] [--workers N] [--results-dir DIR]``.

Runs the named benchmarks (default: every one in ``bench.BENCHMARKS``), prints each table and
writes ``<results-dir>/<name>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import BENCHMARKS, RESULTS_DIR, RunOptions, load
from bench.report import format_table, write_json


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="name",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fast smoke mode: small sizes, figures not meaningful"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes for the parallel parts (default: min(2, CPUs))",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"JSON output (default: {RESULTS_DIR})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    unknown = [n for n in args.benchmarks if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when done (missed targets are reported, not an error)."""
    args = parse_args(argv)
    options = RunOptions(
        quick=args.quick, workers=args.workers, progress=None if args.quiet else _progress
    )
    for name in args.benchmarks or list(BENCHMARKS):
        result = load(name)(options)
        title = f"driftline benchmark: {name}" + (" (quick)" if args.quick else "")
        print(format_table(title, result.rows, result.notes), flush=True)
        path = write_json(result, args.results_dir)
        print(f"JSON: {path}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
