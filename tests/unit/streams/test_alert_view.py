"""format_alert: one readable line per alert, robust to missing fields."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(_ROOT))

from streams.alert_view import alert_text, format_alert, kafka_client_options  # noqa: E402

ALERT: dict[str, Any] = {
    "v": 1,
    "alert_id": "0f3c9a",
    "type": "concept_drift",
    "model_id": "churn-classifier",
    "model_version": "churn-v3",
    "signal": "error_rate",
    "detector": "adwin",
    "severity": "critical",
    "prediction_id": "churn-classifier-0009123",
    "observed_at": "2026-01-01T00:00:31.456Z",
    "emitted_at": "2026-01-01T00:00:33.001Z",
    "value": 0.3,
    "threshold": 0.002,
    "window": 800,
    "stats": {},
    "message": "churn-classifier: error rate rose from 0.08 to 0.3 (ADWIN, delta=0.002).",
}


def test_format_alert_has_every_part_on_one_line() -> None:
    line = format_alert(ALERT)
    assert "\n" not in line
    assert line.startswith("2026-01-01 00:00:31.456")
    for part in (
        "CRITICAL",
        "concept_drift",
        "churn-classifier",
        "error_rate",
        "[adwin]",
        ALERT["message"],
        "churn-classifier-0009123",
    ):
        assert part in line
    assert line.index("CRITICAL") < line.index("concept_drift") < line.index("error_rate")


def test_format_alert_tolerates_missing_and_odd_fields() -> None:
    line = format_alert({"type": "performance", "observed_at": 1767225600000})
    assert "performance" in line and "1767225600000" in line and "-" in line
    assert format_alert({}).startswith("-")


def test_alert_text_matches_plain_line_and_colours_severity() -> None:
    text = alert_text(ALERT)
    assert text.plain == format_alert(ALERT)
    styles = [str(span.style) for span in text.spans]
    assert "bold red" in styles
    assert "yellow" in [str(s.style) for s in alert_text({**ALERT, "severity": "warning"}).spans]


def test_kafka_client_options_override_bootstrap_and_keep_security() -> None:
    opts = kafka_client_options(
        " a:1, b:2 ", {"bootstrap_servers": ["x:9"], "security_protocol": "SSL"}
    )
    assert opts == {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "SSL"}
