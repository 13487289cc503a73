"""`driftline notify` without a network: messages, backoff, rate limit, parsing, config, CLI."""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(_ROOT))

from streams.cli import main  # noqa: E402
from streams.config import Config, ConfigError, parse_config  # noqa: E402
from streams.notify import InvalidAlert, parse_alert, webhook_namespace  # noqa: E402
from streams.rate_limit import ModelRateLimiter, SuppressedAlerts  # noqa: E402
from streams.slack import (  # noqa: E402
    alert_message,
    escape,
    summary_line,
    suppressed_message,
)
from streams.webhook import (  # noqa: E402
    Backoff,
    parse_retry_after,
    redact_url,
    validate_webhook_url,
    wait_or_stop,
)
from tests.unit.streams.test_alert_view import ALERT as VIEW_ALERT  # noqa: E402

ALERT: dict[str, Any] = {
    **VIEW_ALERT,
    "value": 0.30000001,
    "stats": {"mean_before": 0.08, "mean_after": 0.3},
}


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fields_of(message: dict[str, Any]) -> dict[str, str]:
    return {f["title"]: f["value"] for f in message["attachments"][0]["fields"]}


# -- message formatting -------------------------------------------------------------------------


def test_summary_line_reads_severity_type_model_signal_message() -> None:
    line = summary_line({**ALERT, "message": "two\nlines  here"})
    assert (
        line == "[CRITICAL] concept_drift on churn-classifier (error_rate, adwin): two lines here"
    )


def test_alert_message_is_slack_json_with_every_field() -> None:
    message = alert_message(ALERT)
    assert orjson.loads(orjson.dumps(message)) == message
    assert message["text"] == summary_line(ALERT)
    attachment = message["attachments"][0]
    assert attachment["color"] == "#d40e0d" and attachment["fallback"] == message["text"]
    assert attachment["text"] == ALERT["message"]
    assert attachment["ts"] == 1767225631  # observed_at
    fields = fields_of(message)
    assert fields == {
        "Severity": "critical",
        "Type": "concept_drift",
        "Model": "churn-classifier (churn-v3)",
        "Signal": "error_rate",
        "Detector": "adwin",
        "Value": "0.3",
        "Threshold": "0.002",
        "Window": "800",
        "Prediction": "churn-classifier-0009123",
        "Observed at": "2026-01-01T00:00:31.456Z",
        "Emitted at": "2026-01-01T00:00:33.001Z",
        "Alert id": "0f3c9a",
        "Stats": '{"mean_after":0.3,"mean_before":0.08}',
    }
    assert len(message["attachments"]) == 1


def test_alert_message_tolerates_missing_fields_and_escapes_markup() -> None:
    alert = {"alert_id": "x", "model_id": "m", "severity": "warning", "message": "a < b & c > d"}
    message = alert_message(alert)
    assert message["text"] == "[WARNING] - on m (-, -): a &lt; b &amp; c &gt; d"
    attachment = message["attachments"][0]
    assert attachment["color"] == "#e8a317" and "ts" not in attachment
    fields = fields_of(message)
    assert fields["Model"] == "m" and fields["Value"] == "-" and "Stats" not in fields
    assert escape("<!channel>") == "&lt;!channel&gt;"


def _tally() -> SuppressedAlerts:
    tally = SuppressedAlerts("churn-classifier", first_at=1767225600.0, last_at=1767225600.0)
    for n, severity in enumerate(["critical", "warning", "warning"]):
        tally.add({**ALERT, "alert_id": f"id{n}", "severity": severity}, 1767225600.0 + 10 * n)
    return tally


def test_alert_message_carries_the_held_back_alerts() -> None:
    message = alert_message(ALERT, _tally(), "10 per 60 s")
    assert len(message["attachments"]) == 2
    text = message["attachments"][1]["text"]
    assert text.startswith(
        "3 alerts for churn-classifier were not posted between 2026-01-01 00:00:00 UTC and "
        "2026-01-01 00:00:20 UTC (rate limit 10 per 60 s per model): severity 2 warning, "
        "1 critical; type 3 concept_drift; signal 3 error_rate; alert id first id0, last id2."
    )


def test_suppressed_message_stands_alone_for_one_alert() -> None:
    tally = SuppressedAlerts("m", first_at=0.0, last_at=0.0)
    tally.add({"alert_id": "only", "severity": "critical", "type": "performance"}, 0.0)
    message = suppressed_message(tally, "1 per 60 s")
    assert message["text"] == "[RATE LIMITED] 1 alert for m not posted"
    text = message["attachments"][0]["text"]
    assert "1 alert for m was not posted at 1970-01-01 00:00:00 UTC" in text
    assert "alert id only." in text and "signal 1 unknown" in text


# -- parsing, keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty record"),
        (b"{nope", "not JSON"),
        (b"[1]", "not a JSON object but list"),
        (b'{"model_id": "m"}', "no alert_id"),
        (b'{"alert_id": "", "model_id": "m"}', "no alert_id"),
        (b'{"alert_id": "a", "model_id": 3}', "no model_id"),
        (orjson.dumps({"alert_id": "a" * 201, "model_id": "m"}), "longer than 200"),
    ],
)
def test_parse_alert_names_what_is_wrong(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidAlert, match=reason):
        parse_alert(value)


def test_parse_alert_keeps_every_field() -> None:
    assert parse_alert(orjson.dumps(ALERT)) == ALERT


def test_webhook_namespace_is_stable_and_hides_the_url() -> None:
    url = "https://hooks.slack.com/services/T0/B0/secret"
    assert webhook_namespace(url) == webhook_namespace(url)
    assert webhook_namespace(url) != webhook_namespace(url + "x")
    assert len(webhook_namespace(url)) == 16 and "secret" not in webhook_namespace(url)


# -- webhook helpers ----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.5, max_s=60.0)
    assert [backoff.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.delay(10_000) == 60.0
    with pytest.raises(ValueError):
        backoff.delay(0)


def test_retry_after_seconds_or_http_date() -> None:
    now = 1_767_225_600.0
    later = format_datetime(datetime.fromtimestamp(now + 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after(later, now) == pytest.approx(30.0)
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com"),
        ("http://user:pw@10.0.0.1:8080/hook?token=secret", "http://10.0.0.1:8080"),
        ("http://[::1]:9000/secret", "http://[::1]:9000"),
    ],
)
def test_redact_url_keeps_scheme_and_host_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert validate_webhook_url(url) == url


@pytest.mark.parametrize(
    "url", ["ftp://host/secret", "hooks.slack.com/secret", "https:///secret", "http://h:0/secret"]
)
def test_validate_webhook_url_refuses_without_quoting_the_secret(url: str) -> None:
    with pytest.raises(ValueError, match="expected http") as err:
        validate_webhook_url(url)
    assert "secret" not in str(err.value)


def test_wait_or_stop_waits_in_ticks_of_at_most_a_second() -> None:
    clock = FakeClock()
    slices: list[float] = []

    def tick(seconds: float) -> None:
        slices.append(seconds)
        clock.advance(seconds)

    assert wait_or_stop(threading.Event(), 2.5, tick, clock) is True
    assert slices == [1.0, 1.0, 0.5]
    stop = threading.Event()

    def stop_on_second(seconds: float) -> None:
        slices.append(seconds)
        if len(slices) == 5:
            stop.set()

    slices.clear()
    assert wait_or_stop(stop, 60.0, stop_on_second, FakeClock()) is False
    assert len(slices) == 5


# -- rate limiter -------------------------------------------------------------------------------


def test_rate_limiter_sliding_window_per_model() -> None:
    clock = FakeClock()
    limiter = ModelRateLimiter(3, 60.0, clock=clock, wall_clock=clock)
    assert [limiter.try_acquire("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.try_acquire("b"), "another model has its own window"
    clock.advance(30)
    assert limiter.try_acquire("a") is False
    clock.advance(29.9)
    assert limiter.has_room("a") is False
    clock.advance(0.1)  # the first three are 60 s old: out of the window
    assert limiter.has_room("a")
    assert [limiter.try_acquire("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.describe() == "3 per 60 s"


def test_rate_limiter_tallies_held_back_alerts_until_taken() -> None:
    clock = FakeClock()
    limiter = ModelRateLimiter(1, 10.0, clock=clock, wall_clock=clock)
    assert limiter.try_acquire("m")
    for n, severity in enumerate(["critical", "warning", "critical"]):
        clock.advance(1)
        tally = limiter.suppress("m", {"alert_id": f"id{n}", "severity": severity, "type": "t"})
    assert (tally.count, tally.first_at, tally.last_at) == (3, 1001.0, 1003.0)
    assert tally.by_severity == {"critical": 2, "warning": 1}
    assert (tally.first_alert_id, tally.last_alert_id) == ("id0", "id2")
    assert limiter.summaries_due() == [] and limiter.pending() == [tally]
    clock.advance(7)  # the one message is 10 s old
    assert limiter.summaries_due() == ["m"]
    assert limiter.take_suppressed("m") is tally
    assert limiter.take_suppressed("m") is None and limiter.summaries_due() == []


def test_rate_limiter_forgets_idle_models() -> None:
    clock = FakeClock()
    limiter = ModelRateLimiter(1, 5.0, clock=clock)
    limiter.try_acquire("gone")
    limiter.try_acquire("held")
    limiter.suppress("held", {"alert_id": "x"})
    clock.advance(5)
    limiter.forget_idle()
    assert list(limiter._sent) == ["held"]


def test_rate_limiter_without_limit_allows_everything() -> None:
    limiter = ModelRateLimiter(None, 60.0, clock=FakeClock())
    assert all(limiter.try_acquire("m") for _ in range(1000))
    assert limiter.describe() == "none"
    with pytest.raises(ValueError):
        ModelRateLimiter(0, 60.0)


# -- config and CLI -----------------------------------------------------------------------------


def test_notify_config_defaults_and_derived_group() -> None:
    notify = Config().notify
    assert notify.consumer_group("driftline") == "driftline-notify"
    assert (notify.rate_limit.max_per_model, notify.rate_limit.window_s) == (10, 60.0)
    assert (notify.dedup_ttl_s, notify.retry.give_up_after_s) == (604_800, None)
    custom = parse_config({"notify": {"group_id": "pager"}}).notify
    assert custom.consumer_group("driftline") == "pager"


def test_notify_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"notify\.retry: .*first_delay_s must not exceed"):
        parse_config({"notify": {"retry": {"first_delay_s": 10, "max_delay_s": 1}}}, "f.yaml")
    with pytest.raises(ConfigError, match=r"notify\.rate_limit\.max_per_model"):
        parse_config({"notify": {"rate_limit": {"max_per_model": 0}}}, "f.yaml")
    with pytest.raises(ConfigError, match=r"notify\.start_from"):
        parse_config({"notify": {"start_from": "middle"}}, "f.yaml")


def test_cli_notify_refuses_a_bad_url_without_printing_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["notify", "--webhook", "ftp://hooks.example/services/secret"]
    )
    assert result.exit_code != 0
    assert "expected http:// or https://" in result.output and "secret" not in result.output


def test_cli_notify_requires_a_webhook() -> None:
    result = CliRunner().invoke(main, ["notify"], env={"DRIFTLINE_WEBHOOK_URL": None})
    assert result.exit_code == 2 and "DRIFTLINE_WEBHOOK_URL" in result.output
