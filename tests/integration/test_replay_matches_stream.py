"""`driftline replay` over a file gives the streaming pipeline's alerts, ids included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streams.embedded import EmbeddedStack
from streams.replay import replay_file
from streams.send import send_file
from tests.integration.pipeline import Pipeline, all_processed, write_config
from tests.unit.streams.test_processor import records


def test_replay_yields_the_streaming_alert_ids(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> None:
    # the processor tests' three drifting models, as a JSON-lines file in topic-interleaved order
    path = tmp_path / "events.jsonl"
    with path.open("wb") as fh:
        for rec in records(seed=11):
            assert rec.value is not None
            fh.write(rec.value + b"\n")
    p = Pipeline(stack, write_config(tmp_path, prefix, partitions=2), tmp_path)
    p.create_topics()
    try:
        sent = send_file(str(path), stack.bootstrap_servers, p.topics, False, {})
        assert sent.ok and sent.predictions == 9000 and sent.labels == 6000
        p.start_worker()
        p.wait_until(
            all_processed({"concept": (3000, 3000), "data": (3000, 0), "regress": (3000, 3000)}),
            what="all events",
        )
        streamed = p.alerts(min_count=4)
    finally:
        p.close()

    replayed = replay_file(path, p.config, partitions=2)
    assert len(replayed.alerts) >= 4
    assert {a["alert_id"] for a in streamed} == {a.alert_id for a in replayed.alerts}
    by_id = {a.alert_id: a for a in replayed.alerts}
    for alert in streamed:
        mine = orjson.loads(by_id[alert["alert_id"]].to_json(0))
        for field in (
            "type",
            "model_id",
            "signal",
            "detector",
            "severity",
            "prediction_id",
            "observed_at",
            "value",
            "threshold",
            "window",
            "message",
        ):
            assert mine[field] == alert[field], field
