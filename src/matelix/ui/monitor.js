/* Monitor view: the active (or latest) run, rebuilt from the server on every load — /status, the full
   metrics history from /trainings/{id}, the log from /logs — then kept live over /ws/logs?since=<last log
   id>. Log lines are keyed by id and metric points by step, so a reconnect never duplicates anything. */

import { api, wsUrl } from "./api.js";
import { lineChart } from "./charts.js";
import { duration, escapeHtml, learningRate, num } from "./format.js";
import { t } from "./i18n.js";
import { followProbes } from "./evaluation.js";
import { renderPreview } from "./preview.js";
import { reuseSettings, runTitle } from "./reuse.js";

export const ACTIVE_STATES = new Set(["queued", "starting", "running", "stopping"]);

/** A run is live while its state says so or its worker process has not exited yet (`running`). */
export function isLive(s) {
  return Boolean(s && (s.running || ACTIVE_STATES.has(s.state)));
}

/** States a run can be resumed from (its last complete checkpoint). */
export const RESUMABLE_STATES = new Set(["stopped", "failed", "interrupted", "killed"]);

/** Whether a Stop request makes sense (the worker is not already finishing). */
export function canStop(s) {
  return Boolean(s && ACTIVE_STATES.has(s.state) && s.state !== "stopping");
}

const MAX_LOG_LINES = 5000;
const POLL_MS = 4000;
const PREVIEW_MS = 5000;

let root;
let status = null;
let runId = null;
let lastLogId = 0;
let metricRecords = 0;     // metric lines received, so a reconnect asks only for newer ones
let socket = null;
let loading = null;          // the run being rebuilt from the server; no socket is opened meanwhile
let reconnectDelay = 500;
let previewTimer = null;
let lossChart = null, lrChart = null;
const metrics = new Map();   // step -> merged metric record
const statusListeners = [];

export function onStatus(fn) {
  statusListeners.push(fn);
}

export function lastStatus() {
  return status;
}

export function mount(el) {
  root = el;
  root.innerHTML = `
    <div class="row spread">
      <h1 data-i18n="monitor.title">Monitor</h1>
      <div class="row">
        <span id="mon-state" class="state"></span>
        <button type="button" id="mon-reuse" data-i18n="monitor.reuse" hidden>Reuse settings</button>
        <button type="button" id="mon-resume" class="primary" data-i18n="monitor.resume" hidden>Resume</button>
        <button type="button" id="mon-stop" class="danger" data-i18n="train.stop" disabled>Stop</button>
      </div>
    </div>
    <p id="mon-empty" class="muted" data-i18n="monitor.empty">No run yet. Start one in the Train view.</p>
    <div id="mon-body" hidden>
      <h2 id="mon-name" class="run-name" hidden></h2>
      <p class="run-id"><span data-i18n="monitor.run">Run</span>: <code id="mon-run"></code></p>
      <p id="mon-notes" class="notes" hidden></p>
      <div class="card">
        <div class="progress-line">
          <progress id="mon-progress" max="1" value="0" aria-labelledby="mon-progress-text"></progress>
          <span id="mon-progress-text"></span>
        </div>
        <dl class="stats" id="mon-stats"></dl>
        <div id="mon-error" class="error" role="alert" hidden></div>
      </div>
      <div class="grid2">
        <div class="card"><h2 data-i18n="monitor.loss_chart">Loss</h2><div id="mon-loss" class="chart" data-points="0" role="img" data-i18n-aria="chart.loss" aria-label="Loss by step"></div></div>
        <div class="card"><h2 data-i18n="monitor.lr_chart">Learning rate</h2><div id="mon-lr" class="chart" role="img" data-i18n-aria="chart.lr" aria-label="Learning rate by step"></div></div>
      </div>
      <div class="card">
        <div class="row spread"><h2 data-i18n="monitor.log">Log</h2>
          <label class="check"><input type="checkbox" id="mon-follow" checked> <span data-i18n="monitor.follow">Auto-scroll</span></label></div>
        <pre id="mon-log" class="log" tabindex="0" aria-live="off"></pre>
      </div>
      <div class="card"><h2 data-i18n="monitor.preview">Live preview</h2><div id="mon-preview" class="preview"></div></div>
      <div class="card" id="mon-probes" hidden></div>
    </div>`;
  root.querySelector("#mon-stop").addEventListener("click", stopRun);
  root.querySelector("#mon-resume").addEventListener("click", resumeRun);
  root.querySelector("#mon-reuse").addEventListener("click", () => {
    if (status?.config) reuseSettings(status.config, runTitle(status));
  });
  const log = root.querySelector("#mon-log");
  // Scrolling up pauses auto-scroll; scrolling back to the bottom resumes it.
  log.addEventListener("scroll", () => {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
    root.querySelector("#mon-follow").checked = atBottom;
  });
  start();
}

export async function stopRun() {
  const button = root.querySelector("#mon-stop");
  button.disabled = true;
  try {
    await api("/stop", { method: "POST" });
  } catch (err) {
    showError(err.message);
  }
}

async function resumeRun() {
  const button = root.querySelector("#mon-resume");
  button.disabled = true;
  try {
    await api(`/trainings/${encodeURIComponent(runId)}/resume`, { method: "POST" });
    await attach();
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

function showError(text) {
  const box = root.querySelector("#mon-error");
  box.hidden = !text;
  box.textContent = text || "";
}

function charts() {
  if (!lossChart) {
    lossChart = lineChart(root.querySelector("#mon-loss"), {
      series: [{ label: t("metric.loss") }, { label: t("metric.eval_loss"), points: true }],
      xLabel: t("axis.step"), yLabel: t("axis.loss"),
    });
    lrChart = lineChart(root.querySelector("#mon-lr"), {
      series: [{ label: t("metric.learning_rate") }], xLabel: t("axis.step"), yLabel: t("axis.lr"), scientific: true,
    });
  }
}

function redrawCharts() {
  if (!lossChart) return;
  const steps = [...metrics.keys()].sort((a, b) => a - b);
  const rows = steps.map((s) => metrics.get(s));
  lossChart.setData(steps, [rows.map((m) => m.loss ?? null), rows.map((m) => m.eval_loss ?? null)]);
  lrChart.setData(steps, [rows.map((m) => m.learning_rate ?? null)]);
  root.querySelector("#mon-loss").dataset.points = String(rows.filter((m) => m.loss !== undefined && m.loss !== null).length);
}

function addMetric(m) {
  metricRecords += 1;
  if (m.step === undefined || m.step === null) return;
  const step = Number(m.step);
  const known = metrics.get(step);
  metrics.set(step, { ...known, ...m });
  if (!lossChart) return;
  const last = Math.max(...metrics.keys());
  if (step < last || known) { redrawCharts(); return; }
  lossChart.append(step, [m.loss ?? null, m.eval_loss ?? null]);
  lrChart.append(step, [m.learning_rate ?? null]);
  if (m.loss !== undefined && m.loss !== null) {
    const el = root.querySelector("#mon-loss");
    el.dataset.points = String(Number(el.dataset.points) + 1);
  }
}

function addLogLines(lines) {
  const fresh = lines.filter((l) => l.id > lastLogId);
  if (!fresh.length) return;
  lastLogId = fresh[fresh.length - 1].id;
  const log = root.querySelector("#mon-log");
  log.append(document.createTextNode(fresh.map((l) => l.line).join("\n") + "\n"));
  if (log.childNodes.length > 200) {  // compact text nodes, then keep the last MAX_LOG_LINES lines
    const all = log.textContent.split("\n");
    log.textContent = all.slice(-MAX_LOG_LINES - 1).join("\n");
  }
  log.dataset.lastId = String(lastLogId);
  if (root.querySelector("#mon-follow").checked) log.scrollTop = log.scrollHeight;
}

/** Training processes over all nodes: "2", or "4 (2 nodes × 2)". */
function processes(config) {
  if (!config) return "–";
  const nodes = config.nnodes || 1;
  const per = config.nproc || 1;
  return nodes > 1 ? t("monitor.processes_nodes", { total: nodes * per, nodes, per }) : String(per);
}

/** How the processes share the model: DDP, FSDP or DeepSpeed ZeRO-N, with CPU offload; "–" for one process. */
function strategy(config) {
  if (!config || ((config.nnodes || 1) * (config.nproc || 1) === 1 && (config.distributed || "ddp") === "ddp")) {
    return "–";
  }
  const name = { ddp: "DDP", fsdp: "FSDP", deepspeed: `DeepSpeed ZeRO-${config.deepspeed_stage}` }[config.distributed
    || "ddp"];
  return config.offload && config.distributed !== "ddp" ? `${name} + ${t("monitor.offload")}` : name;
}

function renderStatus() {
  const s = status;
  const active = isLive(s);
  root.querySelector("#mon-empty").hidden = Boolean(runId);
  root.querySelector("#mon-body").hidden = !runId;
  root.querySelector("#mon-stop").disabled = !canStop(s);
  root.querySelector("#mon-resume").hidden = !(s && !active && RESUMABLE_STATES.has(s.state) && runId);
  root.querySelector("#mon-reuse").hidden = !(s?.config && runId);
  const state = root.querySelector("#mon-state");
  state.textContent = s?.state ? t(`state.${s.state}`) : "";
  state.className = `state state-${s?.state || "none"}`;
  state.dataset.running = String(Boolean(s?.running));
  if (!s || !runId) return;
  root.querySelector("#mon-run").textContent = runId;
  const name = root.querySelector("#mon-name");
  name.hidden = !s.config?.run_name;
  name.textContent = s.config?.run_name || "";
  const notes = root.querySelector("#mon-notes");
  notes.hidden = !s.config?.notes;
  notes.textContent = s.config?.notes || "";
  const total = s.total_steps || 0;
  const progress = root.querySelector("#mon-progress");
  progress.max = total || 1;
  progress.value = Math.min(s.step || 0, total || 1);
  progress.dataset.step = String(s.step || 0);
  const pct = s.progress !== undefined && s.progress !== null ? s.progress : total ? (s.step || 0) / total : 0;
  const phase = active && s.phase ? ` · ${t(`phase.${s.phase}`)}` : "";
  root.querySelector("#mon-progress-text").textContent =
    t("monitor.step_of", { step: s.step ?? 0, total: total || "?", pct: Math.round(pct * 100) }) + phase;
  const stats = [
    ["monitor.epoch", num(s.epoch, 2)], ["monitor.elapsed", duration(s.elapsed_seconds)],
    ["monitor.eta", active ? duration(s.eta_seconds) : "–"], ["metric.loss", num(s.loss)],
    ["metric.eval_loss", num(s.eval_loss)], ["metric.learning_rate", learningRate(s.learning_rate)],
    ["monitor.tokens_per_second", num(s.tokens_per_second, 0)], ["monitor.tokens_seen", num(s.tokens_seen, 0)],
    ["monitor.processes", processes(s.config)], ["monitor.strategy", strategy(s.config)],
  ];
  root.querySelector("#mon-stats").innerHTML = stats.map(([k, v]) =>
    `<div><dt data-i18n="${k}">${t(k)}</dt><dd>${escapeHtml(v)}</dd></div>`).join("");
  const err = s.error;
  showError(err ? [err.message || err, ...(err.last_lines || [])].join("\n") : "");
}

function setStatus(next) {
  status = next;
  renderStatus();
  for (const fn of statusListeners) fn(status);
  followProbes(root.querySelector("#mon-probes"), status);
  const active = isLive(status);
  if (active && !socket && !loading) connect();
  if (active) schedulePreview();
  else stopPreview();
  // A finished run sends nothing new; close once its last lines have arrived (the poll takes over).
  if (!active && socket) {
    const ws = socket;
    setTimeout(() => { if (socket === ws && !isLive(status)) { socket = null; ws.close(); } }, 2000);
  }
}

async function loadRun(id) {
  loading = id;
  runId = id;
  metrics.clear();
  lastLogId = 0;
  metricRecords = 0;
  root.querySelector("#mon-log").textContent = "";
  try {
    const detail = await api(`/trainings/${encodeURIComponent(id)}`).catch(() => null);
    if (runId !== id) return;
    for (const m of detail?.metrics || []) addMetric(m);
    redrawCharts();
    await fetchLogs(id);
  } finally {
    if (loading === id) loading = null;
  }
  refreshPreview();
}

async function fetchLogs(id) {
  for (;;) {
    const answer = await api(`/logs?run_id=${encodeURIComponent(id)}&since=${lastLogId}&limit=1000`).catch(() => null);
    if (runId !== id) return;
    const lines = answer?.lines || [];
    addLogLines(lines);
    if (lines.length < 1000) return;
  }
}

async function refreshStatus({ reload = false } = {}) {
  const s = await api("/status");
  const id = s?.run_id || null;
  // A resumed run keeps its id but drops metrics after its checkpoint: rebuild it from the server.
  const resumed = id === runId && status && !isLive(status) && ACTIVE_STATES.has(s.state);
  if (id && (id !== runId || resumed || reload)) {
    const old = socket;
    socket = null;
    old?.close();
    await loadRun(id);
  }
  setStatus(s);
  return s;
}

function connect() {
  const ws = new WebSocket(wsUrl("/ws/logs", { since: lastLogId, metrics_since: metricRecords, run_id: runId }));
  socket = ws;
  // Events of a socket that was replaced (run reloaded) are dropped: its replacement starts from fresh ids.
  ws.addEventListener("open", () => { reconnectDelay = 500; });
  ws.addEventListener("message", (msg) => {
    if (socket !== ws) return;
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    if (ev.run_id && runId && ev.run_id !== runId && ev.type !== "status") return;
    if (ev.type === "log") addLogLines([ev]);
    else if (ev.type === "metric") addMetric(ev);
    else if (ev.type === "status") onStatusEvent(ev);
  });
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    socket = null;
    // Reconnect while the run is active; otherwise the poll notices the next run.
    if (isLive(status)) {
      setTimeout(() => refreshStatus().catch(() => {}).finally(() => {
        if (!socket && isLive(status)) connect();
      }), reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 8000);
    }
  });
}

function onStatusEvent(s) {
  if (s.run_id && s.run_id !== runId) {
    // Another run became current: reload it, then follow it on a fresh socket.
    refreshStatus({ reload: true }).catch(() => {});
    return;
  }
  setStatus({ ...status, ...s });
}

function schedulePreview() {
  if (previewTimer) return;
  previewTimer = setInterval(() => { if (!root.hidden) refreshPreview(); }, PREVIEW_MS);
}

/** The run ended: fetch its last preview now, while it surely exists (it may be deleted moments later). */
function stopPreview() {
  if (!previewTimer) return;
  clearInterval(previewTimer);
  previewTimer = null;
  refreshPreview();
}

let previewData = null;

async function refreshPreview() {
  // The run on screen, not whichever run the server would pick (another may have started meanwhile).
  const query = runId ? `?run_id=${encodeURIComponent(runId)}` : "";
  previewData = await api(`/livepreview${query}`).catch(() => null);
  renderPreview(root.querySelector("#mon-preview"), previewData);
}

/** Called after a successful start or resume: show that run at once, rebuilt from the server. */
export async function attach() {
  await refreshStatus({ reload: true });
}

async function start() {
  try {
    await refreshStatus();
  } catch {
    /* the training API may be missing or the key not yet given; the poll retries */
  }
  setInterval(() => {
    if (!socket && !loading) refreshStatus().catch(() => {});
  }, POLL_MS);
}

export function show() {
  charts();
  redrawCharts();
  renderStatus();
  const log = root.querySelector("#mon-log");
  if (root.querySelector("#mon-follow").checked) log.scrollTop = log.scrollHeight;
}

/** Labels in the new language: chart legends are rebuilt, figures and preview re-rendered. */
export function relabel() {
  if (lossChart) {
    lossChart.destroy();
    lrChart.destroy();
    lossChart = lrChart = null;
    charts();
    redrawCharts();
  }
  renderStatus();
  renderPreview(root.querySelector("#mon-preview"), previewData);
}
