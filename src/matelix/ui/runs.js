/* Runs view: the history table from /trainings, a run's detail (charts + config) from /trainings/{id},
   loss curves of several ticked runs overlaid, and Resume / Delete / "Chat with this model". */

import { api } from "./api.js";
import { COLORS, lineChart } from "./charts.js";
import { dateTime, duration, escapeHtml, learningRate, num } from "./format.js";
import { has, t } from "./i18n.js";
import * as exportsPanel from "./exports.js";
import * as evaluationPanel from "./evaluation.js";
import * as monitor from "./monitor.js";
import { reuseSettings, runTitle } from "./reuse.js";
import { flatConfig, optionLabel } from "./trainform.js";

let root, runs = [], selected = null, lastSeen = null;
let detailLoss = null, detailLr = null, overlay = null;
const compare = new Set();
const metricsCache = new Map();

export function mount(el) {
  root = el;
  root.innerHTML = `
    <div class="row spread"><h1 data-i18n="runs.title">Runs</h1>
      <button type="button" id="runs-refresh" data-i18n="common.refresh">Refresh</button></div>
    <div class="card table-wrap" id="runs-table-wrap">
      <p id="runs-scroll-hint" class="muted scroll-hint" data-i18n="runs.scroll_hint" hidden>More columns: scroll sideways →</p>
      <table id="runs-table">
        <caption class="sr-only" data-i18n="runs.title">Runs</caption>
        <thead><tr>
          <th scope="col"><span class="sr-only" data-i18n="runs.compare">Compare</span></th>
          <th scope="col" data-i18n="runs.run">Run</th><th scope="col" data-i18n="runs.state">State</th>
          <th scope="col" data-i18n="runs.model">Model</th><th scope="col" data-i18n="runs.dataset">Dataset</th>
          <th scope="col" data-i18n="runs.final_loss">Final loss</th><th scope="col" data-i18n="runs.duration">Duration</th>
          <th scope="col" data-i18n="runs.started">Started</th></tr></thead>
        <tbody></tbody>
      </table>
      <p id="runs-empty" class="muted" data-i18n="runs.empty" hidden>No runs yet.</p>
    </div>
    <div class="card" id="runs-compare-card" hidden>
      <h2 data-i18n="runs.overlay">Loss curves compared</h2><div id="runs-overlay" class="chart" role="img" data-i18n-aria="chart.overlay" aria-label="Loss by step of the ticked runs"></div>
      <h3 data-i18n="runs.diff">Configuration differences</h3><div id="runs-diff" class="table-wrap"></div></div>
    <div class="card" id="runs-detail" hidden>
      <div class="row spread"><h2 id="runs-detail-title"></h2>
        <div class="row">
          <button type="button" id="runs-reuse" data-i18n="runs.reuse">Reuse settings</button>
          <button type="button" id="runs-chat" data-i18n="runs.chat">Chat with this model</button>
          <button type="button" id="runs-resume" data-i18n="runs.resume">Resume</button>
          <button type="button" id="runs-delete" class="danger" data-i18n="runs.delete">Delete</button></div></div>
      <p class="run-id"><code id="runs-detail-id"></code></p>
      <div id="runs-detail-error" class="error" role="alert" hidden></div>
      <div class="labels">
        <label for="runs-name" data-i18n="runs.name">Name</label>
        <input id="runs-name" type="text" maxlength="100" autocomplete="off">
        <label for="runs-notes" data-i18n="runs.notes">Notes</label>
        <textarea id="runs-notes" rows="2" maxlength="10000"></textarea>
        <div class="row"><button type="button" id="runs-labels-save" data-i18n="runs.labels_save">Save name and notes</button>
          <span id="runs-labels-msg" class="muted" role="status"></span></div>
      </div>
      <dl class="stats" id="runs-detail-stats"></dl>
      <div class="grid2">
        <div><h3 data-i18n="monitor.loss_chart">Loss</h3><div id="runs-loss" class="chart" role="img" data-i18n-aria="chart.loss" aria-label="Loss by step"></div></div>
        <div><h3 data-i18n="monitor.lr_chart">Learning rate</h3><div id="runs-lr" class="chart" role="img" data-i18n-aria="chart.lr" aria-label="Learning rate by step"></div></div>
      </div>
      <div class="evaluation" id="runs-evaluation"></div>
      <div class="exports" id="runs-exports"></div>
      <details class="group"><summary data-i18n="runs.config">Configuration</summary>
        <dl class="config" id="runs-config"></dl></details>
    </div>`;
  root.querySelector("#runs-refresh").addEventListener("click", load);
  root.querySelector("#runs-resume").addEventListener("click", resume);
  exportsPanel.mount(root.querySelector("#runs-exports"));
  evaluationPanel.mount(root.querySelector("#runs-evaluation"));
  root.querySelector("#runs-labels-save").addEventListener("click", saveLabels);
  root.querySelector("#runs-reuse").addEventListener("click", () => {
    const run = runs.find((r) => r.run_id === selected);
    if (run?.config) reuseSettings(run.config, runTitle(run));
  });
  new ResizeObserver(scrollHint).observe(root.querySelector("#runs-table-wrap"));
  root.querySelector("#runs-delete").addEventListener("click", remove);
  root.querySelector("#runs-chat").addEventListener("click", () => {
    location.hash = `#chat/${encodeURIComponent(selected)}`;
  });
  root.querySelector("#runs-table tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-run]");
    if (!row || event.target.matches("input")) return;
    openDetail(row.dataset.run);
  });
  root.querySelector("#runs-table tbody").addEventListener("keydown", (event) => {
    const row = event.target.closest("tr[data-run]");
    if (row && event.target === row && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      openDetail(row.dataset.run);
    }
  });
  root.querySelector("#runs-table tbody").addEventListener("change", (event) => {
    if (!event.target.matches("input[data-compare]")) return;
    const id = event.target.dataset.compare;
    if (event.target.checked) compare.add(id); else compare.delete(id);
    drawOverlay();
  });
  monitor.onStatus((s) => {
    // A run that changes state (or whose worker exits) changes the table and its open detail.
    const key = s?.run_id ? `${s.run_id}:${s.state}:${Boolean(s.running)}` : null;
    if (!key || key === lastSeen) return;
    lastSeen = key;
    if (root.hidden) return;
    load();
    if (selected === s.run_id) openDetail(selected);
  });
}

async function load() {
  runs = await api("/trainings");
  const body = root.querySelector("#runs-table tbody");
  body.innerHTML = runs.map((r) => `<tr data-run="${escapeHtml(r.run_id)}" tabindex="0" class="${r.run_id === selected ? "selected" : ""}">
      <td><input type="checkbox" data-compare="${escapeHtml(r.run_id)}" ${compare.has(r.run_id) ? "checked" : ""}
        aria-label="${escapeHtml(t("runs.compare"))} ${escapeHtml(r.run_id)}"></td>
      <td class="run-cell">${r.config?.run_name ? `<strong class="run-name">${escapeHtml(r.config.run_name)}</strong>` : ""}<code>${escapeHtml(r.run_id)}</code></td>
      <td><span class="state state-${escapeHtml(r.state || "none")}">${escapeHtml(r.state ? t(`state.${r.state}`) : "–")}</span></td>
      <td>${escapeHtml(r.model ?? r.config?.model_dir ?? "–")}${r.train_mode ? ` <small>(${escapeHtml(r.train_mode === "lora" ? "LoRA" : t("train.preset_full"))})</small>` : ""}</td>
      <td>${escapeHtml(r.dataset ?? r.config?.csv_path ?? "–")}</td><td>${num(r.final_loss)}</td>
      <td>${duration(r.duration_seconds)}</td><td>${dateTime(r.created_at)}</td></tr>`).join("");
  root.querySelector("#runs-empty").hidden = runs.length > 0;
  scrollHint();
  for (const id of [...compare]) if (!runs.some((r) => r.run_id === id)) compare.delete(id);
  metricsCache.clear();  // runs may have grown since they were drawn
  drawOverlay();
}

/** A run's detail from the server; its metrics are cached for the overlay. */
async function detailOf(id) {
  const detail = await api(`/trainings/${encodeURIComponent(id)}`);
  metricsCache.set(id, detail.metrics || []);
  return detail;
}

async function drawOverlay() {
  const card = root.querySelector("#runs-compare-card");
  card.hidden = compare.size === 0;
  if (!compare.size) return;
  const ids = [...compare];
  const all = await Promise.all(ids.map(async (id) => {
    if (!metricsCache.has(id)) await detailOf(id);
    return metricsCache.get(id).filter((m) => m.loss !== undefined && m.loss !== null);
  }));
  const steps = [...new Set(all.flatMap((ms) => ms.map((m) => Number(m.step))))].sort((a, b) => a - b);
  const ys = all.map((ms) => {
    const byStep = new Map(ms.map((m) => [Number(m.step), m.loss]));
    return steps.map((s) => byStep.get(s) ?? null);
  });
  const series = ids.map((id, i) => ({ label: runTitle(runs.find((r) => r.run_id === id)) || id, color: COLORS[i % COLORS.length] }));
  if (!overlay) overlay = lineChart(root.querySelector("#runs-overlay"), { series, xLabel: t("axis.step"), yLabel: t("axis.loss") });
  overlay.setSeries(series, steps, ys);
  renderDiff(ids);
}

async function openDetail(id) {
  selected = id;
  for (const tr of root.querySelectorAll("tr[data-run]")) tr.classList.toggle("selected", tr.dataset.run === id);
  const box = root.querySelector("#runs-detail");
  box.hidden = false;
  const run = runs.find((r) => r.run_id === id);
  root.querySelector("#runs-detail-title").textContent = runTitle(run) || id;
  root.querySelector("#runs-detail-id").textContent = id;
  root.querySelector("#runs-name").value = run?.config?.run_name || "";
  root.querySelector("#runs-notes").value = run?.config?.notes || "";
  root.querySelector("#runs-labels-msg").textContent = "";
  showDetailError("");
  const detail = await detailOf(id).catch((err) => { showDetailError(err.message); return null; });
  if (!detail) return;
  const metrics = detail.metrics || [];
  const active = monitor.isLive(detail);
  root.querySelector("#runs-resume").disabled = active || detail.state === "completed";
  root.querySelector("#runs-delete").disabled = active;
  root.querySelector("#runs-chat").disabled = active || !detail.has_model;
  exportsPanel.show(id, detail, active);
  evaluationPanel.show(id, detail);
  root.querySelector("#runs-reuse").disabled = !detail.config;
  if (!detailLoss) {
    detailLoss = lineChart(root.querySelector("#runs-loss"), {
      series: [{ label: t("metric.loss") }, { label: t("metric.eval_loss"), points: true }],
      xLabel: t("axis.step"), yLabel: t("axis.loss") });
    detailLr = lineChart(root.querySelector("#runs-lr"), { series: [{ label: t("metric.learning_rate") }],
      xLabel: t("axis.step"), yLabel: t("axis.lr"), scientific: true });
  }
  const byStep = new Map();
  for (const m of metrics) byStep.set(Number(m.step), { ...byStep.get(Number(m.step)), ...m });
  const steps = [...byStep.keys()].sort((a, b) => a - b);
  const rows = steps.map((x) => byStep.get(x));
  detailLoss.setData(steps, [rows.map((m) => m.loss ?? null), rows.map((m) => m.eval_loss ?? null)]);
  detailLr.setData(steps, [rows.map((m) => m.learning_rate ?? null)]);
  const stats = [
    ["runs.state", detail.state ? t(`state.${detail.state}`) : "–"],
    ["runs.steps", `${detail.step ?? "–"} / ${detail.total_steps ?? "–"}`], ["runs.final_loss", num(detail.final_loss)],
    ["metric.eval_loss", num(detail.eval_loss)], ["runs.duration", duration(detail.duration_seconds)],
    ["runs.checkpoints", String(detail.checkpoints?.length ?? 0)],
  ];
  root.querySelector("#runs-detail-stats").innerHTML = stats.map(([k, v]) =>
    `<div><dt>${escapeHtml(t(k))}</dt><dd>${escapeHtml(v)}</dd></div>`).join("");
  const error = detail.status?.error;
  if (error) showDetailError([error.message || error, ...(error.last_lines || [])].join("\n"));
  const cfg = flatConfig(detail.config);
  root.querySelector("#runs-config").innerHTML = Object.entries(cfg).map(([k, v]) =>
    `<div><dt title="${escapeHtml(k)}">${escapeHtml(settingLabel(k))}</dt><dd>${escapeHtml(settingValue(k, v))}</dd></div>`).join("");
}

/** A config key by its label in the UI (the key itself where there is none). */
function settingLabel(key) {
  return has(`field.${key}`) ? t(`field.${key}`) : key;
}

/** A config value as the form shows it: choices in words, learning rates and numbers in the UI's format. */
function settingValue(key, value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "boolean") return t(value ? "common.yes" : "common.no");
  if (key === "learning_rate") return learningRate(value);
  if (typeof value === "number") return num(value);
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return optionLabel(key, value);
}

/** The settings in which the compared runs differ, one column per run. */
function renderDiff(ids) {
  const box = root.querySelector("#runs-diff");
  const configs = ids.map((id) => flatConfig(runs.find((r) => r.run_id === id)?.config));
  const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))]
    .filter((k) => !["notes", "run_name"].includes(k))
    .filter((k) => new Set(configs.map((c) => JSON.stringify(c[k] ?? null))).size > 1);
  if (ids.length < 2) { box.replaceChildren(); return; }
  if (!keys.length) { box.innerHTML = `<p class="muted">${escapeHtml(t("runs.diff_none"))}</p>`; return; }
  box.innerHTML = `<table class="diff"><thead><tr><th scope="col">${escapeHtml(t("runs.setting"))}</th>
    ${ids.map((id) => `<th scope="col">${escapeHtml(runTitle(runs.find((r) => r.run_id === id)) || id)}</th>`).join("")}</tr></thead>
    <tbody>${keys.map((k) => `<tr data-key="${escapeHtml(k)}"><th scope="row">${escapeHtml(settingLabel(k))}</th>
      ${configs.map((c) => `<td>${escapeHtml(settingValue(k, c[k]))}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

/** On a narrow screen the table scrolls sideways; say so while columns are out of view. */
function scrollHint() {
  const wrap = root.querySelector("#runs-table-wrap");
  root.querySelector("#runs-scroll-hint").hidden = wrap.scrollWidth <= wrap.clientWidth + 1;
}

async function saveLabels() {
  const message = root.querySelector("#runs-labels-msg");
  const id = selected;
  try {
    await api(`/trainings/${encodeURIComponent(id)}`, { method: "PATCH", body: {
      run_name: root.querySelector("#runs-name").value, notes: root.querySelector("#runs-notes").value } });
    message.textContent = t("runs.labels_saved");
    await load();
    if (selected === id) root.querySelector("#runs-detail-title").textContent = runTitle(runs.find((r) => r.run_id === id)) || id;
  } catch (err) {
    message.textContent = err.message;
  }
}

function showDetailError(text) {
  const box = root.querySelector("#runs-detail-error");
  box.hidden = !text;
  box.textContent = text;
}

async function resume() {
  try {
    await api(`/trainings/${encodeURIComponent(selected)}/resume`, { method: "POST" });
    await monitor.attach();
    location.hash = "#monitor";
  } catch (err) {
    showDetailError(err.message);
  }
}

async function remove() {
  if (!confirm(t("runs.confirm_delete", { id: selected }))) return;
  try {
    await api(`/trainings/${encodeURIComponent(selected)}`, { method: "DELETE" });
    compare.delete(selected);
    metricsCache.delete(selected);
    selected = null;
    root.querySelector("#runs-detail").hidden = true;
    await load();
  } catch (err) {
    showDetailError(err.message);
  }
}

export function show() {
  load().then(() => { if (selected) openDetail(selected); }).catch((err) => {
    root.querySelector("#runs-empty").hidden = false;
    root.querySelector("#runs-empty").textContent = err.message;
  });
}

/** Labels in the new language: charts are rebuilt on the next draw, the table and detail re-rendered. */
export function relabel() {
  for (const chart of [detailLoss, detailLr, overlay]) chart?.destroy();
  detailLoss = detailLr = overlay = null;
  root.querySelector("#runs-overlay").replaceChildren();
  if (!root.hidden) show();
}
