"""The worker's status page (``/``) in headless Chromium.

One test runs a real pipeline (broker, Redis, a worker, the demo's simulated models with drifts)
and checks what the page shows after its script ran; it saves a screenshot as a build artifact
(``$DRIFTLINE_ARTIFACTS_DIR`` or ``build/artifacts``). The others serve the page and a canned
``/api/status`` from a stub server for the cases a pipeline does not produce on demand: no models,
an unreachable worker, hundreds of models, hostile text.

Chromium is a system dependency (``make system-deps``); without it these tests fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from streams.embedded import EmbeddedStack
from streams.simulator import Simulation
from streams.status_page import STATUS_PAGE_HEADERS, STATUS_PAGE_HTML
from tests.integration.pipeline import Pipeline, prediction_events, write_config

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_TIMEOUT_S = 90.0
# virtual time the page gets before the DOM is dumped: a few refreshes (every 3 s)
BUDGET_MS = 7_000
SECTIONS = ("models", "alerts")
XSS_FEATURE = "<b>x</b>"

# -- browser ------------------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium not found on PATH: run `make system-deps`", pytrace=False)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL what is left of Chromium's process group (zygote, GPU and renderer helpers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _chromium_run(url: str, tmp_path: Path, *action: str) -> str:
    """Run headless Chromium on ``url`` with ``action`` (e.g. ``--dump-dom``); its stdout."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        f"--virtual-time-budget={BUDGET_MS}",
        *action,
        url,
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so every helper can be killed
    )
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S:g} s:\n{err[-3000:]}")
    finally:
        _kill_group(proc)
    if proc.returncode != 0:
        pytest.fail(f"chromium exited with {proc.returncode}:\n{err[-3000:]}")
    return out


class Page(HTMLParser):
    """What a DOM dump shows: the body's state, table rows per section, every element's tag."""

    _VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.dom = dom
        self.state: str | None = None
        self.title = ""
        self.tags: dict[str, list[str]] = {s: [] for s in (*SECTIONS, "page")}
        self.rows: dict[str, list[list[str]]] = {s: [] for s in SECTIONS}
        self.text: dict[str, str] = {s: "" for s in (*SECTIONS, "conn", "banner")}
        self._open: list[tuple[str, str | None]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(dom)
        self.close()

    def _inside(self) -> list[str]:
        return [i for _, i in self._open if i is not None]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.state = a.get("data-state")
        section = next((i for i in reversed(self._inside()) if i in SECTIONS), "page")
        self.tags[section].append(tag)
        if tag in self._VOID:
            return
        self._open.append((tag, a.get("id")))
        if tag == "tr":
            self._row = []
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append(" ".join(p.strip() for p in self._cell if p.strip()))
            self._cell = None
        elif tag == "tr" and self._row:
            section = next((i for i in self._inside() if i in SECTIONS), None)
            if section is not None:
                self.rows[section].append(self._row)
            self._row = None
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._open and self._open[-1][0] == "title" and self._open[-2][0] == "head":
            self.title += data
        for i in self._inside():
            if i in self.text:
                self.text[i] += data

    def models(self) -> list[str]:
        """Model ids in display order (the first line of the second column)."""
        return [row[1].rsplit(" ", 1)[0] for row in self.rows["models"]]

    def alerts(self) -> set[tuple[str, str]]:
        """(model id, signal) of every alert row."""
        return {(row[3], row[4].rsplit(" ", 1)[0]) for row in self.rows["alerts"]}


def render(url: str, tmp_path: Path) -> Page:
    """The page's DOM after its script ran for :data:`BUDGET_MS` of virtual time."""
    return Page(_chromium_run(url, tmp_path, "--dump-dom"))


def screenshot(url: str, tmp_path: Path) -> Path:
    """A PNG of the page, saved as an artifact too; returns the copy in ``tmp_path``."""
    png = tmp_path / "status-page.png"
    _chromium_run(url, tmp_path, f"--screenshot={png}")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "no screenshot"
    artifacts = Path(os.environ.get("DRIFTLINE_ARTIFACTS_DIR") or ROOT / "build" / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, artifacts / png.name)
    return png


# -- a real pipeline ----------------------------------------------------------------------------


def _get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")


def _wait_status(
    base: str, check: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = 90.0
) -> dict[str, Any]:
    """Poll the worker's ``/api/status`` until ``check`` holds."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, status = _get_json(base + "api/status")
        if check(status):
            return status
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; /api/status: {status}")


def _publish_in_real_time(p: Pipeline, sim: Simulation) -> None:
    """Send each simulated event at its ``send_at``, so the worker samples a metric history."""
    started = time.monotonic()
    for ev in sim:
        ahead = ev.send_at - (time.monotonic() - started)
        if ahead > 0.05:
            p.producer.flush()
            time.sleep(ahead)  # pacing a live stream, not waiting for a condition
        topic = p.topics.predictions if ev.kind == "prediction" else p.topics.labels
        p.producer.send(topic, key=ev.event["model_id"].encode(), value=orjson.dumps(ev.event))
    p.producer.flush()


def _probe_events(n: int) -> list[dict[str, Any]]:
    """A label-less model whose one feature, named like markup, shifts by 3 sd half way."""
    x = np.random.default_rng(5).normal(0.0, 1.0, n) + 3.0 * (np.arange(n) >= n // 2)
    values = [{"prediction": 0, "features": {XSS_FEATURE: float(v)}} for v in x]
    return prediction_events("xss-probe", values, int(time.time() * 1000))


def test_status_page_shows_the_pipelines_models_and_alerts(
    stack: EmbeddedStack, tmp_path: Path, prefix: str, redis_client: Any
) -> None:
    p = Pipeline(stack, write_config(tmp_path, prefix), tmp_path)
    try:
        p.create_topics()
        base = p.start_worker().web_url()
        deadline = time.monotonic() + 60
        while _get_json(base + "readyz")[0] != 200:  # partitions assigned before the stream
            assert time.monotonic() < deadline, p.workers[0].tail()
            time.sleep(0.2)
        sim = Simulation(150, 16, seed=3, start_ms=int(time.time() * 1000))
        probe = _probe_events(1200)
        p.send(p.topics.predictions, probe)
        _publish_in_real_time(p, sim)
        expected = {m: (c["predictions"], c["labels"]) for m, c in sim.expected_counts().items()}
        expected["xss-probe"] = (len(probe), 0)

        def settled(status: dict[str, Any]) -> bool:
            seen = {m["model_id"]: (m["predictions"], m["labels"]) for m in status["models"]}
            alerted = {a["model_id"] for a in status["alerts"]}
            return seen == expected and alerted >= set(expected)

        status = _wait_status(base, settled, "every event processed and an alert per model")
        page = render(base, tmp_path)
        png = screenshot(base, tmp_path)
    finally:
        p.close()

    assert page.state == "ok", (page.state, page.text)
    assert sorted(page.models()) == sorted(expected), page.rows["models"]
    ranks = [("ok", "warning", "critical").index(row[0]) for row in page.rows["models"]]
    assert ranks == sorted(ranks, reverse=True), "models not sorted worst first"
    assert "polyline" in page.tags["models"], "no sparkline of the metric history"
    shown = page.alerts()
    for alert in status["alerts"]:
        assert (alert["model_id"], alert["signal"]) in shown, (alert, shown)
    # a feature named like markup is shown as text, in the PSI column and in its alert
    assert ("xss-probe", f"feature:{XSS_FEATURE}") in shown
    probe_row = next(r for r in page.rows["models"] if r[1].startswith("xss-probe"))
    assert XSS_FEATURE in probe_row[5], probe_row
    assert XSS_FEATURE not in page.dom and "b" not in page.tags["models"] + page.tags["alerts"]
    assert png.stat().st_size > 10_000


# -- a stub worker for the edge cases -----------------------------------------------------------


class StubWorker:
    """Serves the status page and queued ``/api/status`` answers (the last one repeats)."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/":
                    self._reply(200, STATUS_PAGE_HTML.encode(), "text/html", STATUS_PAGE_HEADERS)
                elif self.path == "/api/status":
                    stub.requests += 1
                    code, body = stub.answers[0] if len(stub.answers) == 1 else stub.answers.pop(0)
                    self._reply(code, orjson.dumps(body), "application/json", {})
                else:
                    self._reply(404, b"{}", "application/json", {})

            def _reply(self, code: int, body: bytes, ctype: str, headers: Any) -> None:
                self.send_response(code)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    @contextlib.contextmanager
    def running(self) -> Iterator[StubWorker]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(10)


def _model(model_id: str, health: str = "ok", **extra: Any) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "task": "classification",
        "health": health,
        "metric": "accuracy",
        "metric_value": 0.9,
        "metric_threshold": 0.8,
        "predictions": 1000,
        "labels": 900,
        "join_rate": 0.9,
        "signals": [],
        "psi": {"x": 0.01},
        "latency_ms": {"p50": 3.0, "p95": 9.0, "p99": 12.0},
        "history": [[1_700_000_000_000 + 5000 * i, 0.9 - 0.01 * i] for i in range(5)],
        **extra,
    }


def _status(models: list[dict[str, Any]], alerts: list[dict[str, Any]] | None = None) -> Any:
    return {"worker_id": "stub:1", "generated_at_ms": 0, "models": models, "alerts": alerts or []}


def test_status_page_without_models_shows_an_empty_state(tmp_path: Path) -> None:
    with StubWorker((200, _status([]))).running() as stub:
        page = render(stub.url, tmp_path)
    assert page.state == "empty"
    assert "No models yet" in page.text["models"]
    assert "No alerts" in page.text["alerts"]


def test_status_page_reports_an_unreachable_worker_and_keeps_retrying(tmp_path: Path) -> None:
    shown = (200, _status([_model("kept-model")]))
    with StubWorker(shown, (503, {"error": "down"})).running() as stub:
        page = render(stub.url, tmp_path)
        requests = stub.requests
    assert page.state == "error"
    assert "worker unreachable" in page.text["conn"]
    assert "HTTP 503" in page.text["banner"] and "retrying" in page.text["banner"]
    assert page.models() == ["kept-model"], "the last data should stay on the page"
    assert requests >= 3, f"only {requests} requests: not retrying"

    with StubWorker((503, None), shown).running() as stub:
        page = render(stub.url, tmp_path)
    assert page.state == "ok", "did not recover once the worker answered again"
    assert page.models() == ["kept-model"]


def test_status_page_sorts_caps_and_escapes(tmp_path: Path) -> None:
    hostile = "<img src=x onerror=\"document.title='pwned'\">"
    healths = ["ok", "warning", "critical"]
    models = [_model(f"m-{i:03d}", healths[i % 3]) for i in range(250)]
    models.append(_model(hostile, "critical", signals=[{"signal": "<b>s</b>", "detector": "x"}]))
    alert = {
        "type": "data_drift",
        "model_id": hostile,
        "signal": "<b>s</b>",
        "detector": "psi",
        "severity": "critical",
        "message": "<script>document.title='pwned'</script>",
        "emitted_at": "2026-01-01T00:00:00.000Z",
    }
    with StubWorker((200, _status(models, [alert]))).running() as stub:
        page = render(stub.url, tmp_path)
    assert page.state == "ok"
    assert len(page.rows["models"]) == 200
    assert "Showing the 200 worst of 251 models" in page.text["models"]
    health = [row[0] for row in page.rows["models"]]
    assert health == ["critical"] * 84 + ["warning"] * 83 + ["ok"] * 33
    assert hostile in page.models(), "text with markup should be shown as text"
    assert page.rows["alerts"][0][5] == alert["message"]
    assert (hostile, "<b>s</b>") in page.alerts()
    inserted = page.tags["models"] + page.tags["alerts"]
    assert not {"img", "b", "script"} & set(inserted), inserted
    assert "pwned" not in page.title
