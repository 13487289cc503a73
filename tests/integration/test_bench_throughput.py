"""The throughput benchmark runs end to end in quick mode on its own embedded stack."""

from __future__ import annotations

import json
from pathlib import Path

from bench import RunOptions
from bench import throughput as tp
from bench.report import format_table, write_json


def test_quick_run_measures_every_part(tmp_path: Path) -> None:
    result = tp.run(RunOptions(quick=True))
    data = result.data
    assert data["records"]["single"] == tp.QUICK.events
    # envelopes of up to 100 events: far fewer records than events
    assert 0 < data["records"]["envelopes"] < tp.QUICK.events // 10
    for key in (
        "ceiling_events_per_s",
        "ceiling_envelopes_events_per_s",
        "bare_faust_events_per_s",
        "worker_single_events_per_s",
        "worker_envelopes_events_per_s",
    ):
        assert data[key] > 0, key
    latency = data["alert_latency"]
    assert latency["alerts"] > 0, latency
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    memory = data["memory"]
    assert memory["worker_rss_bytes"] > 10 * 2**20
    # every seeded steady-state model is in Redis: at least its encoded bytes per model
    assert memory["encoded_model_bytes"] > 1000
    assert memory["redis_bytes"] >= memory["models"] * memory["encoded_model_bytes"]
    assert set(data["targets"].values()) <= {"PASS", "MISS"} and len(data["targets"]) == 5

    table = format_table("throughput", result.rows, result.notes)
    assert "3. driftline worker" in table and "p99 ms" in table
    path = write_json(result, tmp_path)
    assert json.loads(path.read_text())["benchmark"] == "throughput"
