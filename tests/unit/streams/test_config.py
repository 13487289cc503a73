"""Config loading: defaults, key-naming errors, overrides by glob."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streams.config import Config, ConfigError, Connections, load_config, packaged_default_text

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "driftline.yaml"
    path.write_text(text)
    return path


def test_shipped_file_equals_model_defaults() -> None:
    shipped = load_config(REPO / "config" / "driftline.yaml")
    assert shipped == Config()
    assert yaml.safe_load(packaged_default_text()) == yaml.safe_load(
        (REPO / "config" / "driftline.yaml").read_text()
    )


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "detection:\n  concept_drift:\n    deltaa: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "detection.concept_drift.deltaa: unknown key" in str(err.value)


def test_wrong_type_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  checkpoint_every_records: lots\n")
    with pytest.raises(ConfigError, match=r"worker\.checkpoint_every_records"):
        load_config(path)


def test_bad_glob_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "overrides:\n  - match: 'fraud-[ab'\n    detection: {}\n")
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.match: .*unclosed"):
        load_config(path)


def test_bad_override_value_names_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "overrides:\n  - match: 'fraud-*'\n    detection:\n      performance: {window: -3}\n",
    )
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.detection\.performance\.window"):
        load_config(path)


def test_unknown_key_inside_override(tmp_path: Path) -> None:
    path = write(tmp_path, "overrides:\n  - match: 'a*'\n    detection: {cooldown: 3}\n")
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.detection\.cooldown: unknown key"):
        load_config(path)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "kafka: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_merge_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
overrides:
  - match: "fraud-*"
    detection:
      performance: {min_accuracy: 0.95}
  - match: "fraud-eu"
    detection:
      cooldown_events: 5
      performance: {window: 100}
""",
    )
    config = load_config(path)
    eu = config.detection_for("fraud-eu")
    assert eu.performance.min_accuracy == 0.95
    assert eu.performance.window == 100
    assert eu.cooldown_events == 5
    assert config.detection_for("fraud-us").performance.window == 500
    assert config.detection_for("churn").performance.min_accuracy == 0.8


def test_default_path_falls_back_to_packaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config() == Config()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "driftline.yaml").write_text("kafka: {group_id: other}\n")
    assert load_config().kafka.group_id == "other"


def test_connections_redact_secrets() -> None:
    conn = Connections.from_env(
        {
            "REDIS_URL": "redis://user:s3cret@host:6379/0",
            "KAFKA_SASL_PASSWORD": "hunter2",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        }
    )
    assert "s3cret" not in conn.redacted_redis_url()
    assert "hunter2" not in repr(conn)
    opts = conn.kafka_python_options()
    assert opts["sasl_plain_password"] == "hunter2"
    assert opts["security_protocol"] == "SASL_SSL"
