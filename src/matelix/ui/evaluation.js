/* What a fine-tune did, in the dashboard. In a run's detail (Runs view): base vs final (held-out loss,
   perplexity, probe accuracy), the eval-loss curve from the base model to the final one, the before/after
   table of every probe with its flips highlighted, each probe's answers along the checkpoints, and
   lm-evaluation-harness results of this run, its base model and every other evaluated model (with a form to
   start one). In the Monitor: the probe answers of the newest evaluation point as soon as they exist. */

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { escapeHtml, num, percent } from "./format.js";
import { t } from "./i18n.js";

const POLL_MS = 2000;
const pct = (fraction, decimals = 0) => percent(fraction * 100, decimals);
let root, runId = null, runModel = null, baseModel = null, chart = null, timer = null;

export function mount(el) {
  root = el;
  root.innerHTML = `
    <div id="eval-report" hidden>
      <h3 data-i18n="eval.title">Evaluation</h3>
      <p class="muted" id="eval-source"></p>
      <dl class="stats" id="eval-stats"></dl>
      <h4 data-i18n="eval.loss_curve">Held-out loss from base to final model</h4>
      <div id="eval-chart" class="chart" role="img" data-i18n-aria="eval.loss_curve" aria-label="Held-out loss"></div>
      <h4 data-i18n="eval.before_after">Before and after</h4>
      <div class="table-wrap"><table id="eval-table" class="eval-table"></table></div>
      <details class="group" id="eval-timeline-box"><summary data-i18n="eval.timeline">Answers at every checkpoint</summary>
        <div id="eval-timeline"></div></details>
    </div>
    <p class="muted" id="eval-none" data-i18n="eval.none" hidden>No evaluation: set eval_split or a probe file to get one.</p>
    <h3 data-i18n="bench.title">Benchmarks (lm-evaluation-harness)</h3>
    <div class="row" id="bench-form">
      <fieldset class="row" id="bench-tasks"><legend class="sr-only" data-i18n="bench.tasks">Tasks</legend></fieldset>
      <label for="bench-model" data-i18n="bench.model">Model</label><select id="bench-model"></select>
      <label for="bench-limit" data-i18n="bench.limit">Items per task</label>
      <input id="bench-limit" type="number" min="1" max="100000" placeholder="all" data-i18n-placeholder="bench.all">
      <label for="bench-backend" data-i18n="bench.backend">Backend</label>
      <select id="bench-backend"><option value="hf" data-i18n="bench.backend_hf">in-process (HF)</option>
        <option value="api" data-i18n="bench.backend_api">through the lab's API</option></select>
      <button type="button" id="bench-start" data-i18n="bench.start">Run lm-eval</button></div>
    <div class="progress-line" id="bench-progress" hidden><progress max="1" value="0"></progress><span id="bench-stage" role="status"></span></div>
    <div id="bench-error" class="error" role="alert" hidden></div>
    <div class="table-wrap"><table id="bench-table" class="eval-table"></table></div>`;
  root.querySelector("#bench-start").addEventListener("click", startBenchmark);
}

/** Show the evaluation of run `id` (its report and the benchmark results around its model). */
export async function show(id, detail) {
  runId = id;
  runModel = `training_outputs/${id}`;
  baseModel = detail?.config?.model_dir || null;
  const models = [runModel, baseModel].filter(Boolean);
  root.querySelector("#bench-model").innerHTML = models.map((m) =>
    `<option value="${escapeHtml(m)}">${escapeHtml(m === runModel ? t("bench.this_run") : m)}</option>`).join("");
  root.querySelector("#bench-start").disabled = !detail?.has_model;
  const report = evaluated(detail?.config)
    ? await api(`/trainings/${encodeURIComponent(id)}/evaluation`).catch(() => null) : null;
  if (runId !== id) return;
  renderReport(report?.points?.length ? report : null);
  await loadTasks();
  refreshBenchmarks();
}

/** Whether a run's settings make it evaluated (a held-out split or a probe file); others have no report. */
function evaluated(config) {
  return Boolean(config && (config.eval_split > 0 || config.probe_file));
}

function pointName(point) {
  if (point.label === "base") return t("eval.base");
  if (point.label === "final") return t("eval.final");
  return t("eval.checkpoint", { step: point.step });
}

function mark(answer) {
  if (answer?.correct === true) return `<span class="good" title="${escapeHtml(t("eval.right"))}">✓</span>`;
  if (answer?.correct === false) return `<span class="error" title="${escapeHtml(t("eval.wrong"))}">✗</span>`;
  return "";
}

function renderReport(report) {
  root.querySelector("#eval-report").hidden = !report;
  root.querySelector("#eval-none").hidden = Boolean(report);
  if (!report) return;
  const points = report.points || [];
  const base = points.find((p) => p.label === "base");
  const final = points.find((p) => p.label === "final");
  const flips = report.summary?.flips || { wrong_to_right: [], right_to_wrong: [] };
  let source = t(report.source === "probe_file" ? "eval.source_file" : "eval.source_heldout", { n: report.probes.length });
  if (report.best_checkpoint) source += " " + t("eval.best", { step: report.final_from_step, name: report.best_checkpoint });
  root.querySelector("#eval-source").textContent = source;
  const acc = (p) => (p?.summary?.accuracy ?? null);
  const stats = [
    ["eval.loss_base_final", `${num(base?.eval_loss)} → ${num(final?.eval_loss)}`],
    ["eval.ppl_base_final", `${num(base?.perplexity, 3)} → ${num(final?.perplexity, 3)}`],
    ["eval.acc_base_final", `${acc(base) === null ? "–" : pct(acc(base))} → ${acc(final) === null ? "–" : pct(acc(final))}`],
    ["eval.flips", t("eval.flips_value", { good: flips.wrong_to_right.length, bad: flips.right_to_wrong.length })],
    ["eval.probe_time", report.timing?.probe_share == null ? "–"
      : t("eval.probe_time_value", { s: num(report.timing.probe_seconds, 3), share: pct(report.timing.probe_share, 1) })],
  ];
  root.querySelector("#eval-stats").innerHTML = stats.map(([k, v]) =>
    `<div><dt>${escapeHtml(t(k))}</dt><dd>${escapeHtml(v)}</dd></div>`).join("");

  const curve = new Map((report.loss_curve || []).map((r) => [r.step, r.eval_loss]));
  for (const p of points) if (p.eval_loss != null && p.label !== "final") curve.set(p.step, p.eval_loss);
  const steps = [...curve.keys()].sort((a, b) => a - b);
  if (!chart) chart = lineChart(root.querySelector("#eval-chart"), { series: [{ label: t("metric.eval_loss"), points: true }],
    xLabel: t("axis.step"), yLabel: t("axis.loss") });
  chart.setData(steps, [steps.map((s) => curve.get(s))]);

  const good = new Set(flips.wrong_to_right), bad = new Set(flips.right_to_wrong);
  const answerOf = (point, id) => point?.answers?.find((a) => a.probe === id);
  const head = `<thead><tr><th scope="col">#</th><th scope="col">${escapeHtml(t("eval.prompt"))}</th>
    <th scope="col">${escapeHtml(t("eval.expected"))}</th><th scope="col">${escapeHtml(t("eval.base"))}</th>
    <th scope="col">${escapeHtml(final ? t("eval.final") : t("eval.latest"))}</th><th scope="col">ROUGE-L</th></tr></thead>`;
  const last = final || points[points.length - 1];
  const rows = report.probes.map((probe) => {
    const before = answerOf(base, probe.id), after = answerOf(last, probe.id);
    const cls = good.has(probe.id) ? "flip-good" : bad.has(probe.id) ? "flip-bad" : "";
    const flip = good.has(probe.id) ? t("eval.flip_good") : bad.has(probe.id) ? t("eval.flip_bad") : "";
    return `<tr class="${cls}" data-probe="${probe.id}"><td>${probe.id + 1}</td><td>${escapeHtml(probe.prompt)}</td>
      <td>${escapeHtml(probe.expected || probe.reference || "–")}</td>
      <td class="answer">${mark(before)} ${escapeHtml(before?.text ?? "–")}</td>
      <td class="answer">${mark(after)} ${escapeHtml(after?.text ?? "–")}${flip ? ` <strong class="flip">${escapeHtml(flip)}</strong>` : ""}</td>
      <td>${after?.rouge_l == null ? "–" : num(after.rouge_l, 2)}</td></tr>`;
  }).join("");
  root.querySelector("#eval-table").innerHTML = head + `<tbody>${rows}</tbody>`;

  root.querySelector("#eval-timeline").innerHTML = report.probes.map((probe) => `
    <div class="probe-timeline" data-probe="${probe.id}"><h5>${probe.id + 1}. ${escapeHtml(probe.prompt)}</h5>
      <ol>${points.map((p) => { const a = answerOf(p, probe.id);
        return `<li><span class="muted">${escapeHtml(pointName(p))}</span> ${mark(a)} ${escapeHtml(a?.text ?? "–")}</li>`; }).join("")}</ol></div>`).join("");
}

let tasksLoaded = false;

async function loadTasks() {
  if (tasksLoaded) return;
  const tasks = await api("/evaluations/tasks").catch(() => []);
  root.querySelector("#bench-tasks").innerHTML = tasks.map((task, i) =>
    `<label class="check" title="${escapeHtml(task.description)}"><input type="checkbox" value="${escapeHtml(task.name)}" ${i < 2 ? "checked" : ""}>
      ${escapeHtml(task.name)}</label>`).join("");
  tasksLoaded = tasks.length > 0;
}

async function startBenchmark() {
  const tasks = [...root.querySelectorAll("#bench-tasks input:checked")].map((i) => i.value);
  const limit = Number(root.querySelector("#bench-limit").value) || null;
  const body = { model: root.querySelector("#bench-model").value, tasks, backend: root.querySelector("#bench-backend").value };
  if (limit) body.limit = limit;
  showError("");
  try {
    await api("/evaluations", { method: "POST", body });
  } catch (err) {
    showError(err.message);
    return;
  }
  refreshBenchmarks();
}

function showError(text) {
  const box = root.querySelector("#bench-error");
  box.textContent = text;
  box.hidden = !text;
}

async function refreshBenchmarks() {
  clearTimeout(timer);
  const id = runId;
  const data = await api("/evaluations").catch(() => null);
  if (!data || id !== runId) return;
  const job = data.job;
  const running = job?.state === "running";
  root.querySelector("#bench-progress").hidden = !running;
  root.querySelector("#bench-start").disabled = running;
  if (running) {
    root.querySelector("#bench-progress progress").value = job.progress || 0;
    root.querySelector("#bench-stage").textContent = `${job.model}: ${t(`bench.stage.${job.stage}`)} ${pct(job.progress || 0)}`;
    timer = setTimeout(refreshBenchmarks, POLL_MS);
  } else if (job?.state === "failed") {
    showError(job.error?.message || "failed");
  }
  renderBenchmarks(data.table || {});
}

function renderBenchmarks(table) {
  const models = Object.keys(table).sort((a, b) => (rank(a) - rank(b)) || a.localeCompare(b));
  const tasks = [...new Set(models.flatMap((m) => Object.keys(table[m])))].sort();
  const el = root.querySelector("#bench-table");
  if (!models.length) {
    el.innerHTML = `<caption class="muted">${escapeHtml(t("bench.empty"))}</caption>`;
    return;
  }
  const score = (cell) => cell?.acc ?? cell?.contains ?? cell?.exact_match ?? null;
  el.innerHTML = `<thead><tr><th scope="col">${escapeHtml(t("bench.model"))}</th>${tasks.map((task) =>
    `<th scope="col">${escapeHtml(task)}</th>`).join("")}</tr></thead><tbody>${models.map((m) =>
    `<tr class="${m === runModel || m === baseModel ? "selected" : ""}"><th scope="row">${escapeHtml(m === runModel ? `${m} (${t("bench.this_run")})` : m === baseModel ? `${m} (${t("bench.base_model")})` : m)}</th>${tasks.map((task) => {
      const cell = table[m][task];
      return `<td title="${escapeHtml(cell ? `${cell.backend}` : "")}">${score(cell) == null ? "–" : pct(score(cell), 1)}</td>`;
    }).join("")}</tr>`).join("")}</tbody>`;
}

function rank(model) {
  return model === baseModel ? 0 : model === runModel ? 1 : 2;
}

/* ---- Monitor: the newest probe answers of the run being watched ---- */

let followed = "";

/** Fetch the run's report when its step or state changed and show the newest point's answers in `el`. */
export async function followProbes(el, status) {
  const key = status?.run_id ? `${status.run_id}:${status.step}:${status.state}` : "";
  if (!key || key === followed) return;
  if (!evaluated(status.config)) {
    el.hidden = true;
    return;
  }
  followed = key;
  const report = await api(`/trainings/${encodeURIComponent(status.run_id)}/evaluation`).catch(() => null);
  if (followed !== key) return;
  const point = report?.points?.[report.points.length - 1];
  el.hidden = !point;
  if (!point) return;
  const answers = report.probes.map((probe) => {
    const a = point.answers.find((x) => x.probe === probe.id);
    return `<li data-probe="${probe.id}"><strong>${escapeHtml(probe.prompt)}</strong> ${mark(a)}<br>${escapeHtml(a?.text ?? "–")}</li>`;
  }).join("");
  el.innerHTML = `<h2>${escapeHtml(t("eval.monitor_title", { point: pointName(point) }))}</h2>
    <p class="muted">${escapeHtml(t("eval.monitor_stats", { loss: num(point.eval_loss), s: num(point.probe_seconds, 3) }))}</p>
    <ul class="probe-answers">${answers}</ul>`;
}
