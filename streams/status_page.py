"""The worker's status page, served at ``/``: one self-contained HTML document.

No CDN, web fonts or external scripts: inline CSS and vanilla JavaScript, so it works offline and
behind strict proxies. The script polls ``api/status`` (relative, so the page also works behind a
path prefix) every few seconds and shows the models worst first (health, windowed metric against
its threshold, a sparkline of its history, active drift signals, the worst features by PSI) and
the latest alerts. When the worker does not answer it says so and keeps retrying.

Model ids, feature names and alert messages come from producers: the script inserts every value
from the JSON as a text node or an attribute, never as markup. The Content-Security-Policy header
in :data:`STATUS_PAGE_HEADERS` allows only this page's own script and style (by hash) and
connections to the worker itself, so injected markup could not run a script either.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Final

__all__ = ["STATUS_PAGE_HEADERS", "STATUS_PAGE_HTML"]

_STYLE: Final = """
:root { --bg: #f6f7f9; --fg: #1d2330; --muted: #667085; --card: #fff; --line: #e4e7ec;
  --ok: #1a7f37; --ok-bg: #dcfce7; --warn: #8a5a00; --warn-bg: #fff1c2;
  --crit: #b42318; --crit-bg: #fee4e2; --accent: #2563eb; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0f1117; --fg: #e6e8ee; --muted: #98a2b3; --card: #171a22; --line: #2a2f3a;
    --ok: #4ade80; --ok-bg: #14301f; --warn: #facc15; --warn-bg: #3a2f0b;
    --crit: #f87171; --crit-bg: #3b1414; --accent: #60a5fa; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui,
  -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .3rem 1.2rem;
  padding: .8rem 1.2rem; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 1.15rem; margin: 0; }
h2 { font-size: 1rem; margin: 1.2rem 0 .5rem; }
main { padding: 0 1.2rem 1.5rem; }
.muted { color: var(--muted); }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  overflow-wrap: anywhere; }
td.key { min-width: 10rem; max-width: 24rem; }
#conn.down { color: var(--crit); font-weight: 600; }
#banner { display: none; margin-top: .8rem; padding: .6rem .8rem; border-radius: 6px;
  background: var(--crit-bg); color: var(--crit); }
body[data-state="error"] #banner { display: block; }
body[data-state="error"] section { opacity: .55; }
table { width: 100%; border-collapse: collapse; background: var(--card);
  border: 1px solid var(--line); }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: .72rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge, .chip { display: inline-block; border-radius: 4px; font-size: .78rem; font-weight: 600; }
.badge { padding: .05rem .5rem; text-transform: uppercase; }
.chip { margin: 0 .25rem .2rem 0; padding: 0 .4rem; }
.ok { color: var(--ok); background: var(--ok-bg); }
.warning { color: var(--warn); background: var(--warn-bg); }
.critical { color: var(--crit); background: var(--crit-bg); }
.unknown { color: var(--muted); background: var(--line); }
.bad { color: var(--crit); font-weight: 600; }
svg.spark { display: block; }
svg.spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; }
svg.spark line { stroke: var(--crit); stroke-width: 1; stroke-dasharray: 3 2; }
.empty { padding: 1.5rem; text-align: center; background: var(--card);
  border: 1px dashed var(--line); border-radius: 6px; }
.note { margin: .4rem 0; font-size: .85rem; }
.psi { display: inline-block; margin-right: .8rem; }
"""

_SCRIPT: Final = """
"use strict";
(() => {
  const REFRESH_MS = 3000, TIMEOUT_MS = 5000, MAX_MODELS = 200, TOP_PSI = 3;
  const RANK = { ok: 0, warning: 1, critical: 2 };
  const SVG = "http://www.w3.org/2000/svg";
  let lastOk = null;

  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const level = (name) => (Object.hasOwn(RANK, name) ? name : "unknown");
  const str = (v) => (v === null || v === undefined ? "" : String(v));

  // Every value from the JSON becomes a text node (or an attribute): never markup.
  function add(node, children) {
    for (const c of [].concat(children ?? [])) {
      if (c === null || c === undefined) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function el(tag, cls, children) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    return add(node, children);
  }
  function fill(id, children) {
    const node = $(id);
    while (node.firstChild) node.removeChild(node.firstChild);
    add(node, children);
  }
  function table(headers, rows) {
    const head = el("tr", null, headers.map((h) => el("th", null, h)));
    return el("table", null, [el("thead", null, head), el("tbody", null, rows)]);
  }

  const fixed = (v, digits) => (isNum(v) ? v.toFixed(digits) : "\\u2013");
  const pct = (v) => (isNum(v) ? (100 * v).toFixed(1) + "%" : "\\u2013");
  const count = (v) => (isNum(v) ? v.toLocaleString("en-US") : "\\u2013");
  const metricText = (name, v) =>
    name === "accuracy" ? fixed(v, 3) : isNum(v) ? String(Number(v.toPrecision(3))) : "\\u2013";

  function clock(text) {
    const d = new Date(text);
    if (!text || isNaN(d)) return str(text) || "\\u2013";
    const same = d.toDateString() === new Date().toDateString();
    return same ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function metricCell(m) {
    if (!m.metric || !(isNum(m.metric_value) || m.labels > 0)) {
      return el("span", "muted", "no labels yet");
    }
    const v = m.metric_value, t = m.metric_threshold, acc = m.metric === "accuracy";
    const worse = isNum(v) && isNum(t) && (acc ? v < t : v > t);
    const notes = [];
    if (isNum(t)) notes.push((acc ? "min " : "max ") + metricText(m.metric, t));
    if (isNum(m.expected_accuracy)) notes.push("expected " + fixed(m.expected_accuracy, 3));
    return [el("span", worse ? "bad" : null, m.metric + " " + metricText(m.metric, v)),
      el("div", "muted", notes.join(" \\u00b7 "))];
  }

  function sparkline(history, threshold) {
    const pts = (Array.isArray(history) ? history : []).filter(
      (p) => Array.isArray(p) && isNum(p[0]) && isNum(p[1]));
    if (pts.length < 2) return el("span", "muted", pts.length ? "1 sample" : "\\u2013");
    const W = 140, H = 30, P = 3;
    const values = pts.map((p) => p[1]).concat(isNum(threshold) ? [threshold] : []);
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const t0 = pts[0][0], span = Math.max(pts[pts.length - 1][0] - t0, 1);
    const x = (t) => (P + ((W - 2 * P) * (t - t0)) / span).toFixed(1);
    const y = (v) => (H - P - ((H - 2 * P) * (v - lo)) / (hi - lo)).toFixed(1);
    const svg = document.createElementNS(SVG, "svg");
    const attrs = (node, a) => { for (const k in a) node.setAttribute(k, a[k]); return node; };
    attrs(svg, { class: "spark", width: W, height: H, viewBox: "0 0 " + W + " " + H });
    if (isNum(threshold)) {
      const ty = y(threshold);
      svg.appendChild(attrs(document.createElementNS(SVG, "line"),
        { x1: P, x2: W - P, y1: ty, y2: ty }));
    }
    svg.appendChild(attrs(document.createElementNS(SVG, "polyline"),
      { points: pts.map((p) => x(p[0]) + "," + y(p[1])).join(" ") }));
    const title = document.createElementNS(SVG, "title");
    title.textContent = pts.length + " samples since " + new Date(t0).toLocaleTimeString();
    svg.appendChild(title);
    return svg;
  }

  function signalChips(signals) {
    const active = (Array.isArray(signals) ? signals : []).filter((s) => s && s.level > 0);
    if (!active.length) return el("span", "muted", "none");
    active.sort((a, b) => b.level - a.level);
    return active.map((s) =>
      el("span", "chip " + (s.level >= 2 ? "critical" : "warning"),
        str(s.signal) + " \\u00b7 " + str(s.detector)));
  }

  function worstPsi(psi, signals) {
    const levels = {};
    for (const s of Array.isArray(signals) ? signals : []) {
      if (s && s.detector === "psi") levels[str(s.signal)] = s.level;
    }
    const rows = Object.entries(psi && typeof psi === "object" ? psi : {})
      .filter((e) => isNum(e[1])).sort((a, b) => b[1] - a[1]);
    if (!rows.length) return el("span", "muted", "\\u2013");
    const out = rows.slice(0, TOP_PSI).map(([name, value]) => {
      const lvl = levels["feature:" + name] || 0;
      return el("span", "psi" + (lvl >= 2 ? " bad" : ""),
        [el("span", "id", name), " " + value.toFixed(3) + (lvl === 1 ? " \\u26a0" : "")]);
    });
    const more = rows.length - TOP_PSI;
    if (more > 0) out.push(el("span", "muted", "+" + more + " more"));
    return out;
  }

  function modelRow(m) {
    const health = level(m.health);
    const lat = m.latency_ms && isNum(m.latency_ms.p95) ? fixed(m.latency_ms.p95, 1) + " ms" : null;
    return el("tr", null, [
      el("td", null, el("span", "badge " + health, health)),
      el("td", "key", [el("div", "id", str(m.model_id)), el("div", "muted", str(m.task))]),
      el("td", "num", metricCell(m)),
      el("td", null, sparkline(m.history, m.metric_threshold)),
      el("td", null, signalChips(m.signals)),
      el("td", "key", worstPsi(m.psi, m.signals)),
      el("td", "num", [
        count(m.predictions) + " pred \\u00b7 " + count(m.labels) + " labels",
        el("div", "muted", "joined " + pct(m.join_rate) + (lat ? " \\u00b7 p95 " + lat : "")),
      ]),
    ]);
  }

  function renderModels(models) {
    const rank = (m) => RANK[level(m.health)] ?? -1;
    const sorted = models.slice().sort(
      (a, b) => rank(b) - rank(a) || str(a.model_id).localeCompare(str(b.model_id)));
    if (!sorted.length) {
      return el("div", "empty", [el("strong", null, "No models yet. "),
        "This worker has not processed a prediction of the partitions it owns. Models show up "
        + "here after their first events; with several workers, each one shows its own models."]);
    }
    const shown = sorted.slice(0, MAX_MODELS);
    const rows = table(["Health", "Model", "Metric", "Trend", "Drift signals", "Worst PSI",
      "Events"], shown.map(modelRow));
    if (sorted.length === shown.length) return rows;
    return [el("p", "note muted", "Showing the " + shown.length + " worst of "
      + sorted.length + " models."), rows];
  }

  function renderAlerts(alerts) {
    if (!alerts.length) return el("div", "empty muted", "No alerts since this worker started.");
    return table(["Time", "Severity", "Type", "Model", "Signal", "Message"], alerts.map((a) => {
      const time = el("td", "num", clock(a.emitted_at || a.observed_at));
      time.title = "observed " + str(a.observed_at) + ", emitted " + str(a.emitted_at);
      return el("tr", null, [
        time,
        el("td", null, el("span", "badge " + level(a.severity), str(a.severity))),
        el("td", null, str(a.type)),
        el("td", "id key", str(a.model_id)),
        el("td", "key", [el("div", "id", str(a.signal)), el("div", "muted", str(a.detector))]),
        el("td", null, str(a.message)),
      ]);
    }));
  }

  function render(data) {
    const models = Array.isArray(data.models) ? data.models : [];
    const alerts = Array.isArray(data.alerts) ? data.alerts : [];
    const worker = str(data.worker_id);
    $("worker").textContent = worker || "?";
    document.title = "driftline \\u00b7 " + worker;
    const chip = (h) => {
      const n = models.filter((m) => level(m.health) === h).length;
      return el("span", "chip " + (n ? h : "unknown"), n + " " + h);
    };
    fill("summary", [models.length + " models ", chip("critical"), chip("warning"), chip("ok")]);
    fill("models", renderModels(models));
    fill("alerts", renderAlerts(alerts));
  }

  function setState(state, text) {
    document.body.dataset.state = state;
    $("conn").textContent = text;
    $("conn").className = state === "error" ? "down" : "muted";
  }

  async function poll() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      let data;
      try {
        const resp = await fetch("api/status", { cache: "no-store", signal: abort.signal });
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        data = await resp.json();
      } catch (err) {
        throw new Error("worker unreachable (" + (err && err.message ? err.message : err) + ")");
      }
      const doc = data && typeof data === "object" ? data : {};
      render(doc);
      lastOk = new Date();
      const empty = !(Array.isArray(doc.models) && doc.models.length);
      setState(empty ? "empty" : "ok", "updated " + lastOk.toLocaleTimeString());
    } catch (err) {
      const msg = err && err.message ? err.message : String(err);
      setState("error", msg.startsWith("worker unreachable") ? "worker unreachable" : "error");
      $("banner").textContent = msg + "; retrying every " + REFRESH_MS / 1000 + " s. "
        + (lastOk ? "Showing data from " + lastOk.toLocaleTimeString() + "." : "");
    } finally {
      clearTimeout(timer);
      setTimeout(poll, REFRESH_MS);
    }
  }
  poll();
})();
"""

STATUS_PAGE_HTML: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>driftline status</title>
<style>{_STYLE}</style>
</head>
<body data-state="loading">
<header>
  <h1>driftline</h1>
  <span class="muted">worker <span id="worker" class="id">&hellip;</span></span>
  <span id="summary"></span>
  <span id="conn" class="muted">loading&hellip;</span>
</header>
<main>
  <div id="banner" role="alert"></div>
  <section><h2>Models</h2><div id="models"></div></section>
  <section><h2>Latest alerts</h2><div id="alerts"></div></section>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""
"""The page; it needs :data:`STATUS_PAGE_HEADERS` for its Content-Security-Policy."""


def _sha256(source: str) -> str:
    """A CSP source expression allowing exactly the inline block ``source``."""
    digest = base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


STATUS_PAGE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
"""Response headers of the page: only its own script and style run, it talks only to the worker."""
