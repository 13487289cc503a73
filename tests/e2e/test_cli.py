"""The driftline command line as a user runs it (subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            "PATH": "/usr/bin:/bin",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
    )


def test_worker_refuses_unknown_key_naming_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("worker:\n  checkpoint_every_recs: 10\n")
    result = run_cli("worker", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode != 0
    assert f"{cfg}: worker.checkpoint_every_recs: unknown key" in result.stderr


def test_worker_refuses_wrong_type(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("join:\n  ttl_ms: soon\n")
    result = run_cli("worker", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode != 0
    assert "join.ttl_ms" in result.stderr and str(cfg) in result.stderr


def test_worker_refuses_bad_glob(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("overrides:\n  - match: 'fraud-[x'\n")
    result = run_cli("worker", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode != 0
    assert "overrides[0].match" in result.stderr


def test_default_config_is_picked_from_working_directory(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "driftline.yaml").write_text("kafka: {group_id: [1]}\n")
    result = run_cli("worker", cwd=tmp_path)
    assert result.returncode != 0
    assert "config/driftline.yaml: kafka.group_id" in result.stderr


def test_worker_without_broker_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli("worker", cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "cannot reach Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS)" in result.stderr
    assert "Traceback" not in result.stderr
