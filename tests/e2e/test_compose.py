"""docker-compose.yml is valid and deploys a scalable worker wired to Kafka and a persistent Redis,
with Prometheus and Grafana provisioned from the files in config/.

Needs the `docker-compose` binary (not a Docker daemon): run scripts/ensure-system-deps.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
MONITORING = ("prometheus", "grafana")


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
        if not k.startswith(
            (
                "DRIFTLINE_",
                "COMPOSE_",
                "KAFKA_HOST_PORT",
                "REDIS_HOST_PORT",
                "PROMETHEUS_",
                "GRAFANA_",
            )
        )
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


# -- monitoring: prometheus, grafana, the dashboard ---------------------------------------------


def _binds(service: dict[str, Any]) -> dict[str, Path]:
    """Bind mounts of a service: container path -> host path (short or long volume syntax)."""
    out: dict[str, Path] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out[volume["target"]] = Path(volume["source"])
            continue
        source, target = str(volume).split(":")[:2]
        if source.startswith(("/", ".")):
            out[target] = Path(source)
    return out


def _repo_file(service: str, bind: Path) -> Path:
    """A bind mount's source, which must be a path inside this repository that exists."""
    path = (ROOT / bind).resolve()
    assert path.is_relative_to(ROOT) and path.exists(), f"{service} mounts {bind}: not in the repo"
    return path


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _option(service: dict[str, Any], flag: str) -> str:
    """The value of ``--flag=value`` in a service's command."""
    for arg in _command(service).split():
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in command {_command(service)!r}")


def _provisioning(config: dict[str, Any]) -> Path:
    binds = _binds(config["services"]["grafana"])
    assert "/etc/grafana/provisioning" in binds, binds
    return _repo_file("grafana", binds["/etc/grafana/provisioning"])


def _datasource(config: dict[str, Any]) -> dict[str, Any]:
    """The provisioned Prometheus datasource."""
    files = sorted((_provisioning(config) / "datasources").glob("*.y*ml"))
    sources = [ds for f in files for ds in _load_yaml(f).get("datasources", [])]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus", sources
    source: dict[str, Any] = sources[0]
    return source


def _dashboards(config: dict[str, Any]) -> list[Path]:
    """Dashboard JSON files the provisioned file providers load, as files in the repo."""
    binds = _binds(config["services"]["grafana"])
    files = sorted((_provisioning(config) / "dashboards").glob("*.y*ml"))
    providers = [p for f in files for p in _load_yaml(f).get("providers", [])]
    assert providers, "no dashboard provider under config/grafana/provisioning/dashboards"
    dashboards: list[Path] = []
    for provider in providers:
        path = provider["options"]["path"]
        assert path in binds, f"dashboard provider path {path} is not mounted into grafana"
        dashboards += sorted(_repo_file("grafana", binds[path]).glob("*.json"))
    assert dashboards
    return dashboards


def test_monitoring_images_are_pinned_and_published_on_localhost(config: dict[str, Any]) -> None:
    for name in MONITORING:
        service = config["services"][name]
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"
        assert service.get("ports"), f"{name} publishes no port"
        for port in service["ports"]:
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond localhost"


def test_prometheus_mounts_its_config_and_discovers_every_worker(config: dict[str, Any]) -> None:
    prometheus = config["services"]["prometheus"]
    binds = _binds(prometheus)
    target = _option(prometheus, "--config.file")
    assert target in binds, f"--config.file {target} is not mounted"
    path = _repo_file("prometheus", binds[target])
    assert path == ROOT / "config" / "prometheus.yml"
    discovery = [
        sd for job in _load_yaml(path)["scrape_configs"] for sd in job.get("dns_sd_configs", [])
    ]
    worker_port = int(config["services"]["worker"]["expose"][0])
    assert any(
        "worker" in sd["names"] and sd.get("type") == "A" and sd["port"] == worker_port
        for sd in discovery
    ), f"no DNS discovery of worker:{worker_port} in {path}: {discovery}"


def test_grafana_datasource_is_the_compose_prometheus(config: dict[str, Any]) -> None:
    source = _datasource(config)
    port = config["services"]["prometheus"]["ports"][0]
    # "127.0.0.1:9090:9090/tcp" or {"host_ip": ..., "published": ..., "target": 9090}
    container_port = port["target"] if isinstance(port, dict) else port.split(":")[-1].split("/")[0]
    assert source["url"] == f"http://prometheus:{container_port}"
    # $__rate_interval is derived from timeInterval: it must be Prometheus' scrape interval
    scrape = _load_yaml(ROOT / "config" / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


def test_grafana_admin_password_comes_from_the_environment(config: dict[str, Any]) -> None:
    env = _environment(config["services"]["grafana"])
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "admin"  # GRAFANA_ADMIN_PASSWORD's default
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "${GRAFANA_ADMIN_PASSWORD:-admin}" in COMPOSE_FILE.read_text()


def test_dashboards_parse_and_every_panel_has_a_query(config: dict[str, Any]) -> None:
    uid = _datasource(config)["uid"]
    for path in _dashboards(config):
        dashboard = json.loads(path.read_text())
        panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
        shown = [p for p in panels if p["type"] != "row"]
        assert shown, f"{path.name}: no panels"
        for panel in shown:
            where = f"{path.name}: panel {panel.get('title')!r}"
            targets = panel.get("targets") or []
            assert targets, f"{where} has no target"
            for target in targets:
                assert str(target.get("expr", "")).strip(), f"{where}: target without expr"
                datasource = target.get("datasource") or panel.get("datasource")
                assert datasource["uid"] == uid, f"{where}: datasource {datasource}"
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert "model" in variables, f"{path.name}: no `model` variable"


def test_notify_starts_only_with_its_profile(config: dict[str, Any]) -> None:
    notify = config["services"]["notify"]
    assert notify["profiles"] == ["notify"]
    assert "driftline notify" in _command(notify)
    env = _environment(notify)
    assert env["DRIFTLINE_WEBHOOK_URL"] == ""  # only ever from the environment
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
