"""docker-compose.yml is valid and deploys a scalable worker wired to Kafka and a persistent Redis.

Needs the `docker-compose` binary (not a Docker daemon): run scripts/ensure-system-deps.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def _docker_compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "docker-compose is not installed (needed to validate docker-compose.yml); "
            "run scripts/ensure-system-deps.sh (as root on Debian/Ubuntu it installs it)",
            pytrace=False,
        )
    # Only the defaults in the file count: drop overrides that might be set in the environment.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DRIFTLINE_", "COMPOSE_", "KAFKA_HOST_PORT", "REDIS_HOST_PORT"))
    }
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The resolved compose configuration, as `docker-compose config` prints it."""
    result = _docker_compose("config")
    assert result.returncode == 0, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(str(c) for c in command)


def test_compose_file_is_valid() -> None:
    result = _docker_compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"


def test_services_are_kafka_redis_and_worker(config: dict[str, Any]) -> None:
    assert {"kafka", "redis", "worker"} <= set(config["services"])


def test_worker_can_be_scaled(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker
    for port in worker.get("ports") or []:
        published = port.get("published") if isinstance(port, dict) else str(port).split(":")[:-1]
        assert not published, f"worker publishes a fixed host port: {port}"
    assert "6066" in [str(p) for p in worker.get("expose") or []]


def test_worker_is_wired_to_kafka_and_redis(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    env = _environment(worker)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    depends = worker["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert "driftline worker" in _command(worker)
    assert "build" in worker


def test_redis_persists_with_appendonly(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    command = _command(redis)
    assert "--appendonly yes" in command
    assert any(str(v).endswith(":/data") or ":/data:" in str(v) for v in redis["volumes"])
    assert "healthcheck" in redis


def test_topics_are_created_before_workers_start(config: dict[str, Any]) -> None:
    services = config["services"]
    init = next(name for name, svc in services.items() if "kafka-topics.sh" in _command(svc))
    script = _command(services[init])
    for topic in (
        "predictions",
        "labels",
        "drift-alerts",
        "performance-alerts",
        "driftline-dead-letter",
    ):
        assert f"create {topic} " in script or f"--topic {topic} " in script, topic
    assert services["worker"]["depends_on"][init]["condition"] == ("service_completed_successfully")
    assert _environment(services[init])["PARTITIONS"] == "12"  # DRIFTLINE_PARTITIONS default
