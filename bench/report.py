"""Printing and saving benchmark results: an aligned text table, JSON with machine info."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import BenchResult, Row

__all__ = ["format_table", "machine_info", "to_jsonable", "verdict_cell", "write_json"]

_COLUMNS = ("detector", "stream", "metric", "ours", "river", "target", "verdict")


def verdict_cell(row: Row) -> str:
    """``PASS <measured>`` / ``MISS <measured>``, or ``-`` for rows without a target."""
    if row.verdict == "info":
        return "-"
    return f"{row.verdict} {row.measured}".rstrip()


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.detector,
        row.stream,
        row.metric,
        row.ours,
        row.river,
        row.target or "-",
        verdict_cell(row),
    )


def format_table(title: str, rows: Sequence[Row], notes: Iterable[str] = ()) -> str:
    """Rows grouped by ``Row.group`` (in first-seen order) as plain aligned text."""
    body = [_cells(r) for r in rows]
    widths = [len(c) for c in _COLUMNS]
    for cells in body:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [title, "=" * len(title)]
    groups: list[str] = []
    for r in rows:
        if r.group not in groups:
            groups.append(r.group)
    for group in groups:
        out += ["", group, rule, line(_COLUMNS), rule]
        out += [line(c) for r, c in zip(rows, body, strict=True) if r.group == group]
    judged = [r for r in rows if r.verdict != "info"]
    met = sum(r.verdict == "PASS" for r in judged)
    out += ["", f"targets met: {met}/{len(judged)}"]
    out += [f"  {n}" if i else n for i, n in enumerate(notes)]
    return "\n".join(out)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    """Where the figures come from: interpreter, OS, CPU, library versions, commit."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "numpy": _version("numpy"),
        "river": _version("river"),
        "driftline": _version("driftline"),
        "git_commit": _git_commit(),
    }


def to_jsonable(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def write_json(result: BenchResult, directory: Path) -> Path:
    """Write ``<directory>/<name>.json``: machine info plus the result's data. Returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": result.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **result.data,
    }
    path = directory / f"{result.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
