"""The Grafana dashboard's queries, run by a real Prometheus against a real worker.

A worker processes a few models (one drifting, all labelled, with latencies); a `prometheus`
subprocess scrapes it every second with config/prometheus.yml (its DNS discovery swapped for the
worker's address). Then every PromQL expression of config/grafana/dashboards/driftline.json (every
panel target and the `model` variable) goes through Prometheus's HTTP API and must return data, and
every metric it names must be on the worker's /metrics.

Needs the `prometheus` and `promtool` binaries: `make system-deps`.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from streams.embedded import EmbeddedStack, parent_death_preexec
from streams.worker import free_port
from tests.integration.pipeline import (
    FAST_DETECTION,
    Pipeline,
    all_processed,
    prediction_events,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "driftline.json"
PROMETHEUS_CONFIG = ROOT / "config" / "prometheus.yml"

T0 = 1_700_000_000_000
N = 2000  # predictions per model, all labelled
CHANGE = 1000  # where the drifting model drifts (after the PSI reference and accuracy baseline)
DRIFTING = "fraud"
MODELS = (DRIFTING, "churn", "upsell")

# Grafana's built-in interval variables, as Grafana would expand them for a short time range
GRAFANA_VARIABLES = {"__rate_interval": "30s", "__interval": "30s", "__range": "5m"}
# PromQL words that look like metric names
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
MIN_SCRAPES = 5


# -- the dashboard's queries -------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard and where it is."""

    where: str  # "panel 'Throughput' (B)" or "variable 'model'"
    expr: str


def panel_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every target expression of every panel (rows' nested panels included)."""
    out: list[Query] = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for target in p.get("targets", []):
                where = f"panel {p['title']!r} ({target.get('refId', '?')})"
                expr = target.get("expr", "")
                assert expr.strip(), f"{where} has no PromQL expression"
                out.append(Query(where, expr))
    return out


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[Query, str]]:
    """(series selector, label) of every `label_values(selector, label)` query variable."""
    out: list[tuple[Query, str]] = []
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", text)
        assert match, f"variable {var['name']!r}: query {text!r} is not label_values(expr, label)"
        out.append((Query(f"variable {var['name']!r}", match.group(1)), match.group(2)))
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """``$name`` and ``${name}`` replaced as Grafana would; an unknown variable fails."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in variables, f"unknown dashboard variable ${name} in {expr!r}"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, keywords, labels or strings)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range selectors
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", s):
        is_function = s[match.end() :].lstrip().startswith("(")
        if not is_function and match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def exported_names(exposition: str) -> set[str]:
    """Sample names in a /metrics text exposition."""
    return {
        re.split(r"[{\s]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


def test_metric_names_are_found_in_expressions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y(z)"}[$__rate_interval]))) '
        '* 60 + count_values("health", max by (model) (b)) or on (k) c_total offset 1e3'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c_total"}


# -- Prometheus ----------------------------------------------------------------------------------


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed (the dashboard test runs the dashboard's queries through a "
            "real Prometheus); run `make system-deps` (Debian's prometheus package)",
            pytrace=False,
        )
    return path


def _get(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


class Prometheus:
    """A `prometheus` server in a subprocess, on a free port, with its data in a directory."""

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout_s: float = 60.0) -> None:
        """Start on a free port (another on a bind race) and wait until it is ready."""
        for _ in range(3):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [
                        _binary("prometheus"),
                        f"--config.file={self.config_path}",
                        f"--storage.tsdb.path={self.directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=parent_death_preexec(),
                )
            if self._wait_ready(timeout_s):
                return
            if "address already in use" not in self.log_tail():
                break
        raise AssertionError(f"prometheus did not become ready:\n{self.log_tail()}")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of Prometheus's own log."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a successful API answer (``/api/v1/<path>``)."""
        query = urllib.parse.urlencode(params)
        body = _get(f"{self.url}/api/v1/{path}?{query}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Samples of an instant query at the current time (a scalar counts as one)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 90.0) -> None:
        """Poll ``check`` until it holds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        targets = self.api("targets")["activeTargets"]
        raise AssertionError(f"timed out waiting for {what}; targets: {targets}\n{self.log_tail()}")


def scrape_config_for(target: str) -> dict[str, Any]:
    """config/prometheus.yml with the workers' DNS discovery replaced by ``target``, every 1 s."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {**config.get("global", {}), "scrape_interval": "1s",
                        "evaluation_interval": "1s"}  # fmt: skip
    workers = [job for job in config["scrape_configs"] if "dns_sd_configs" in job]
    assert len(workers) == 1, "config/prometheus.yml: expected one job discovering the workers"
    job = workers[0]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [target]}]
    job["scrape_interval"] = "1s"
    config["scrape_configs"] = [job]
    return config


# -- the worker and its events --------------------------------------------------------------------


def model_events(
    model_id: str, rng: np.random.Generator, drift: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A scored classifier with two features and latencies, every prediction labelled.

    With ``drift``, from index CHANGE on feature ``x`` shifts by 2 standard deviations and
    accuracy falls from 95 % to 55 % (data drift, concept drift, accuracy below its threshold).
    """
    after = np.arange(N) >= CHANGE
    score = rng.beta(2, 5, N)
    x = rng.normal(0, 1, N) + (2.0 * after if drift else 0.0)
    plan = rng.choice(["basic", "pro", "team"], N)
    latency = rng.lognormal(1.0, 0.3, N)
    correct = rng.random(N) < (np.where(after, 0.55, 0.95) if drift else 0.95)
    preds = prediction_events(
        model_id,
        [
            {
                "prediction": int(s > 0.5),
                "score": float(s),
                "features": {"x": float(v), "plan": str(p)},
                "latency_ms": float(ms),
            }
            for s, v, p, ms in zip(score, x, plan, latency, strict=True)
        ],
        T0,
    )
    labels = [
        {
            "model_id": model_id,
            "prediction_id": e["prediction_id"],
            "label": e["prediction"] if ok else 1 - e["prediction"],
            "timestamp": e["timestamp"] + 50,
        }
        for e, ok in zip(preds, correct, strict=True)
    ]
    return preds, labels


@dataclass
class Scraped:
    """A worker that processed every event, and a Prometheus that scraped the result."""

    prometheus: Prometheus
    exposition: str  # the worker's /metrics once everything was processed


@pytest.fixture
def scraped(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> Iterator[Scraped]:
    worker_settings = {"checkpoint_every_records": 500, "checkpoint_every_ms": 200,
                       "web_host": "127.0.0.1"}  # fmt: skip
    config = write_config(tmp_path, prefix, detection=FAST_DETECTION, worker=worker_settings)
    pipeline = Pipeline(stack, config, tmp_path)
    prometheus: Prometheus | None = None
    try:
        pipeline.create_topics()
        web_url = pipeline.start_worker().web_url()
        prometheus = Prometheus(scrape_config_for(urllib.parse.urlsplit(web_url).netloc),
                                tmp_path / "prometheus")  # fmt: skip
        prometheus.start()

        rng = np.random.default_rng(7)
        events = [model_events(m, rng, drift=m == DRIFTING) for m in MODELS]
        pipeline.send(pipeline.topics.predictions, [e for preds, _ in events for e in preds])
        pipeline.send(pipeline.topics.labels, [e for _, labels in events for e in labels])
        pipeline.wait_until(all_processed({m: (N, N) for m in MODELS}), what="all events")
        with urllib.request.urlopen(web_url.rstrip("/") + "/metrics", timeout=10) as response:
            exposition = response.read().decode()

        p = prometheus
        labelled = f'driftline_model_events_total{{model="{DRIFTING}", kind="joined"}} >= {N}'
        p.wait_for("a scrape of the processed events", lambda: bool(p.query(labelled)))
        p.wait_for(
            f"{MIN_SCRAPES} scrapes",
            lambda: bool(
                p.query(f"count_over_time(driftline_models_tracked[5m]) >= {MIN_SCRAPES}")
            ),
        )
        yield Scraped(prometheus, exposition)
    finally:
        if prometheus is not None:
            prometheus.stop()
        pipeline.close()


# -- tests ---------------------------------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(
        [_binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_returns_data(scraped: Scraped) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {**GRAFANA_VARIABLES, "model": DRIFTING}
    panels = panel_queries(dashboard)
    var_queries = variable_queries(dashboard)
    assert panels and var_queries

    # Every metric a query names is exported by the worker (a typo fails here, by panel).
    exported = exported_names(scraped.exposition)
    unknown: dict[str, list[str]] = {}
    for q in [*panels, *(q for q, _ in var_queries)]:
        names = metric_names(q.expr)
        assert names, f"{q.where}: no metric name found in {q.expr!r}"
        if names - exported:
            unknown[q.where] = sorted(names - exported)
    assert not unknown, (
        f"metrics the worker does not export: {unknown}\n"
        f"exported: {sorted(n for n in exported if n.startswith('driftline_'))}"
    )

    # The model variable lists every model, the drifting one included.
    p = scraped.prometheus
    for q, label in var_queries:
        values = p.api(f"label/{label}/values", **{"match[]": substitute(q.expr, variables)})
        assert set(MODELS) <= set(values), f"{q.where}: {label} values {values}"

    # Every panel query returns data (polled: a rate needs two samples in its window).
    def empty() -> list[Query]:
        return [q for q in panels if not p.query(substitute(q.expr, variables))]

    missing: list[Query] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        missing = empty()
        if not missing:
            break
        time.sleep(1)
    assert not missing, "queries without data:\n" + "\n".join(
        f"  {q.where}: {substitute(q.expr, variables)}" for q in missing
    )
