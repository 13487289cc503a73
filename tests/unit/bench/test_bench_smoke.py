"""The detection benchmark runs end to end in quick mode and writes a complete, sane JSON."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import BENCHMARKS, RunOptions
from bench import detection as det
from bench.__main__ import main
from detectors import ADWIN, StandardizedPageHinkley
from streams.config import Detection

SECTIONS = (
    "benchmark",
    "created",
    "machine",
    "quick",
    "parameters",
    "detectors",
    "false_alarms",
    "change_detection",
    "cost",
    "targets",
    "summary",
)


def _strict_json(text: str) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            ["detection", "--quick", "--workers", "1", "--quiet", "--results-dir", str(out)]
        )
    assert code == 0
    doc = _strict_json((out / "detection.json").read_text())
    return doc, buf.getvalue()


def test_json_has_every_section(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    assert set(SECTIONS) <= set(doc)
    assert doc["benchmark"] == "detection"
    assert doc["quick"] is True
    machine = doc["machine"]
    assert machine["python"] and machine["platform"] and machine["cpu_count"] >= 1
    sizes = doc["parameters"]["sizes"]
    assert sizes["values_per_stream"] == sizes["values_per_seed"] * sizes["seeds"]
    assert sizes["trials"] == det.QUICK.trials
    assert {c["name"] for c in doc["parameters"]["changes"]} == {c.name for c in det.CHANGES}


def test_every_detector_appears_in_every_section(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    names = {s.name for s in det.DETECTORS}
    streamed = {s.name for s in det.DETECTORS if not s.cost_only}
    assert {d["name"] for d in doc["detectors"]} == names
    assert {r["detector"] for r in doc["cost"]} == names
    for section in ("false_alarms", "change_detection"):
        assert {r["detector"] for r in doc[section]} == streamed, section
    for spec in det.DETECTORS:
        if spec.cost_only:
            continue
        impls = {"ours"} | ({"river"} if spec.river is not None else set())
        streams = {s.name for s in det.STATIONARY if s.kind == spec.kind}
        changes = {c.name for c in det.CHANGES if c.kind == spec.kind}
        fa = {(r["stream"], r["impl"]) for r in doc["false_alarms"] if r["detector"] == spec.name}
        ch = {
            (r["change"], r["impl"]) for r in doc["change_detection"] if r["detector"] == spec.name
        }
        assert fa == {(s, i) for s in streams for i in impls}
        assert ch == {(c, i) for c in changes for i in impls}


def test_numbers_are_sane(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    for r in doc["false_alarms"]:
        assert 0 < r["monitored_values"] <= r["values"]
        assert r["alarms"] >= 0
        assert r["per_million"] == pytest.approx(r["alarms"] / r["monitored_values"] * 1e6)
        assert r["upper95_per_million"] >= r["per_million"]
    specs = {s.name: s for s in det.DETECTORS}
    for r in doc["change_detection"]:
        assert r["trials"] == det.sizes(specs[r["detector"]], det.QUICK).trials == len(r["delays"])
        assert 0.0 <= r["detection_rate"] <= 1.0
        assert r["detected"] == sum(d is not None for d in r["delays"])
        assert all(1 <= d <= r["cap"] for d in r["delays"] if d is not None)
        assert 0 <= r["prefix_false_alarm_trials"] <= r["trials"]
        med, p90 = r["median_delay"], r["p90_delay"]
        if med is not None:
            assert med >= 1
            assert p90 is None or p90 >= med
    for r in doc["cost"]:
        assert r["update_ns"] > 0
        assert r["state_bytes"] is None or r["state_bytes"] > 0
        if r["impl"] == "ours":
            assert r["state_bytes"] > 0
            assert (r["update_many_ns"] is not None) == r["own_update_many"]
            assert r["update_many_ns"] is None or r["update_many_ns"] > 0
    for t in doc["targets"]:
        assert t["op"] in ("<=", ">=")
        assert isinstance(t["met"], bool)
    summary = doc["summary"]
    assert summary["targets"] == len(doc["targets"])
    assert summary["met"] == sum(t["met"] for t in doc["targets"])


def test_targets_cover_the_issue(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    judged = {(t["detector"], t["section"], t["stream"], t["metric"]) for t in doc["targets"]}
    for stream in ("N(0,1)", "Student-t(3)", "lognormal(0,1)"):
        assert ("page_hinkley", "false_alarms", stream, "per_million") in judged
    assert ("adwin", "false_alarms", "errors Bernoulli(0.1)", "per_million") in judged
    assert ("page_hinkley", "change_detection", "mean +1sd", "median_delay") in judged
    assert ("adwin", "change_detection", "error rate 0.10->0.20", "detection_rate") in judged
    defaults = {s.name for s in det.DETECTORS if s.production}
    assert {t["detector"] for t in doc["targets"]} == defaults
    assert {t["detector"] for t in doc["targets"] if t["section"] == "cost"} == defaults


def test_table_shows_targets_and_verdicts(quick_run: tuple[dict[str, Any], str]) -> None:
    _, printed = quick_run
    assert "False alarms per million" in printed
    assert "Detection after an abrupt change" in printed
    assert "Cost per value" in printed
    assert "<= 1 /M" in printed and ">= 99%" in printed and "<= 2000 ns" in printed
    assert "PASS" in printed or "MISS" in printed
    assert "targets met:" in printed


def test_benchmarked_defaults_are_the_pipelines_defaults() -> None:
    """The benchmark builds detectors with their class defaults; the pipeline uses its config."""
    settings = Detection()
    ph = StandardizedPageHinkley()
    for signal in (settings.prediction_drift, settings.data_drift):
        assert (signal.warmup, signal.delta, signal.threshold) == (
            ph.warmup,
            ph.delta,
            ph.threshold,
        )
    cd = settings.concept_drift
    adwin = ADWIN()
    assert (cd.delta, cd.clock, cd.min_window_length, cd.grace_period) == (
        adwin.delta,
        adwin.clock,
        adwin.min_window_length,
        adwin.grace_period,
    )
    spec = {s.name: s for s in det.DETECTORS}
    assert spec["page_hinkley"].ours.warmup == ph.warmup


def test_detection_is_registered() -> None:
    assert "detection" in BENCHMARKS


def test_unknown_benchmark_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["no-such-benchmark", "--quick"])
    assert "unknown benchmark" in capsys.readouterr().err


def test_worker_processes_give_the_same_figures() -> None:
    """Seeds depend only on the stream and trial, not on scheduling."""
    tasks: list[det.Task] = [
        (1.0, det._stationary_task, ("page_hinkley", "N(0,1)", 0, 5000, 5000)),
        (1.0, det._change_task, ("adwin", "error rate 0.10->0.20", 0, 2)),
    ]
    serial = det._run_tasks(tasks, RunOptions(workers=1), "t")
    pooled = det._run_tasks(tasks, RunOptions(workers=2), "t")

    def key(r: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(r.get(k)) for k in ("detector", "impl", "stream", "change", "trial"))

    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in sorted(serial, key=key)]
    assert strip == [
        {k: v for k, v in r.items() if k != "seconds"} for r in sorted(pooled, key=key)
    ]


def test_page_hinkley_is_restarted_and_warmup_is_not_monitored() -> None:
    """After an alarm the pipeline starts a fresh Page-Hinkley, which re-learns its warm-up."""
    impl = det.Impl(StandardizedPageHinkley, restart_on_alarm=True, warmup=1000)
    mon = det.Monitor(impl, "numeric")
    values = np.concatenate([np.zeros(1000) + np.arange(1000) % 2, np.full(100, 50.0)])
    hits = mon.feed(values)
    assert hits and hits[0] >= 1000
    assert mon.restarts == len(hits)
    # The first 1000 values and each restarted detector's warm-up are excluded.
    assert mon.monitored == len(values) - 1000 - sum(min(1000, len(values) - h - 1) for h in hits)


def test_delay_quantiles_count_misses_as_late() -> None:
    assert det.nearest_rank([3, 1, 2], 0.5) == 2
    assert det.nearest_rank([1, None, None], 0.5) is None
    assert det.nearest_rank([5] * 9 + [None], 0.9) == 5
    assert det.poisson_upper(0) == pytest.approx(2.9957, abs=1e-3)


def test_results_path_is_git_ignored() -> None:
    root = Path(__file__).resolve().parents[3]
    assert "bench/results/" in (root / ".gitignore").read_text().splitlines()
