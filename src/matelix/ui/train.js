/* Train view: model and dataset pickers (with upload, validation report and rendered preview), full/LoRA
   presets, the generated TrainConfig form, Start and Stop. */

import { api, ApiError } from "./api.js";
import { bytes, escapeHtml } from "./format.js";
import { t } from "./i18n.js";
import * as monitor from "./monitor.js";
import { samplesHtml } from "./preview.js";
import { buildForm, fieldsFromOpenApi, PRESETS, revealField } from "./trainform.js";

let root, form = null;
let loaded = false;

export function mount(el) {
  root = el;
  root.innerHTML = `
    <h1 data-i18n="train.title">Train</h1>
    <div class="grid2">
      <div class="card">
        <h2 data-i18n="train.model">Model</h2>
        <div class="field" data-field="model_dir">
          <label for="train-model" data-i18n="train.model_pick">Base model</label>
          <select id="train-model" aria-describedby="cfg-model_dir-err"></select>
          <label for="train-model-hub" data-i18n="train.model_hub">…or a Hugging Face model id</label>
          <input id="train-model-hub" type="text" placeholder="org/model" autocomplete="off" spellcheck="false">
          <small id="cfg-model_dir-err" class="field-error" role="alert" hidden></small>
        </div>
        <h2 data-i18n="train.preset">Preset</h2>
        <div class="row" role="group" aria-label="Preset" data-i18n-aria="train.preset">
          <button type="button" class="preset" data-preset="full" data-i18n="train.preset_full">Full fine-tune</button>
          <button type="button" class="preset" data-preset="lora" data-i18n="train.preset_lora">LoRA</button>
        </div>
      </div>
      <div class="card">
        <h2 data-i18n="train.dataset">Dataset</h2>
        <div class="field" data-field="csv_path">
          <label for="train-dataset" data-i18n="train.dataset_pick">Dataset file</label>
          <select id="train-dataset" aria-describedby="cfg-csv_path-err"></select>
          <small id="cfg-csv_path-err" class="field-error" role="alert" hidden></small>
        </div>
        <div class="row">
          <label for="train-upload" class="sr-only" data-i18n="train.upload_file">Dataset file to upload</label>
          <input id="train-upload" type="file" accept=".csv,.jsonl,.json,.parquet">
          <button type="button" id="train-upload-btn" data-i18n="train.upload">Upload</button>
        </div>
        <div class="row">
          <button type="button" id="train-validate" data-i18n="train.validate">Validate</button>
          <button type="button" id="train-preview" data-i18n="train.preview">Preview samples</button>
        </div>
        <div id="train-dataset-out" class="dataset-out" aria-live="polite"></div>
      </div>
    </div>
    <form id="train-form" class="card" novalidate>
      <h2 data-i18n="train.settings">Training settings</h2>
      <div id="train-fields"><p class="muted" data-i18n="common.loading">Loading…</p></div>
      <div id="train-error" class="error" role="alert" hidden></div>
      <div class="row end">
        <button type="button" id="train-stop" class="danger" data-i18n="train.stop" disabled>Stop</button>
        <button type="submit" id="train-start" class="primary" data-i18n="train.start">Start training</button>
      </div>
    </form>`;
  root.querySelector("#train-form").addEventListener("submit", (e) => { e.preventDefault(); startRun(); });
  root.querySelector("#train-stop").addEventListener("click", () => monitor.stopRun());
  root.querySelector("#train-upload-btn").addEventListener("click", upload);
  root.querySelector("#train-validate").addEventListener("click", validate);
  root.querySelector("#train-preview").addEventListener("click", preview);
  root.querySelector("#train-dataset").addEventListener("change", () => { root.querySelector("#train-dataset-out").replaceChildren(); });
  for (const b of root.querySelectorAll("[data-preset]")) b.addEventListener("click", () => applyPreset(b.dataset.preset));
  monitor.onStatus((s) => {
    root.querySelector("#train-stop").disabled = !monitor.canStop(s);
    root.querySelector("#train-start").disabled = monitor.isLive(s);
  });
}

function applyPreset(name) {
  form?.apply(PRESETS[name]);
  for (const b of root.querySelectorAll("[data-preset]")) b.setAttribute("aria-pressed", String(b.dataset.preset === name));
}

async function loadModels() {
  const models = await api("/available_models");
  const select = root.querySelector("#train-model");
  const group = (kind, key) => {
    const items = models.filter((m) => m.kind === kind);
    if (!items.length) return "";
    return `<optgroup label="${escapeHtml(t(key))}">${items.map((m) =>
      `<option value="${escapeHtml(m.path)}" data-id="${escapeHtml(m.id)}">${escapeHtml(m.name)}</option>`).join("")}</optgroup>`;
  };
  const previous = select.value;
  select.innerHTML = group("local", "train.models_local") + group("run", "train.models_runs");
  const demo = models.find((m) => m.name === "tiny-demo");
  if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  else if (demo) select.value = demo.path;
}

async function loadDatasets(selectName) {
  const sets = await api("/available_datasets");
  const select = root.querySelector("#train-dataset");
  const previous = selectName || select.value;
  select.innerHTML = sets.map((d) => `<option value="${escapeHtml(d.name)}">${escapeHtml(d.name)}
    (${escapeHtml(d.format || "?")}, ${bytes(d.size_bytes)})</option>`).join("");
  if (previous && sets.some((d) => d.name === previous)) select.value = previous;
}

async function loadForm() {
  const openapi = await fetch("/openapi.json").then((r) => r.json()).catch(() => null);
  const schema = fieldsFromOpenApi(openapi);
  const box = root.querySelector("#train-fields");
  if (!schema) {
    box.innerHTML = `<p class="error">${escapeHtml(t("train.no_api"))}</p>`;
    root.querySelector("#train-start").disabled = true;
    return;
  }
  form = buildForm(box, schema);
}

function modelDir() {
  const hub = root.querySelector("#train-model-hub").value.trim();
  return hub || root.querySelector("#train-model").value;
}

function showGeneralError(message) {
  const box = root.querySelector("#train-error");
  box.hidden = !message;
  box.textContent = message || "";
}

function pickerError(name, message) {
  const box = root.querySelector(`#cfg-${name}-err`);
  box.hidden = !message;
  box.textContent = message || "";
}

function clearErrors() {
  form?.clearErrors();
  pickerError("model_dir", "");
  pickerError("csv_path", "");
  showGeneralError("");
}

/** Puts a server error next to the field its `param` names (or above the buttons when it names none). */
function showServerError(err) {
  const param = (err.param || "").replace(/^body\./, "").split(".")[0];
  if (param === "model_dir" || param === "csv_path") {
    pickerError(param, err.message);
    root.querySelector(param === "model_dir" ? "#train-model" : "#train-dataset").focus();
  } else if (param && form?.has(param)) {
    form.setError(param, err.message);
    revealField(root.querySelector("#train-fields"), param);
  } else {
    showGeneralError(err.message);
  }
}

async function startRun() {
  clearErrors();
  if (!form) return;
  const invalid = form.check();
  const dataset = root.querySelector("#train-dataset").value;
  if (!modelDir()) pickerError("model_dir", t("check.required"));
  if (!dataset) pickerError("csv_path", t("check.required"));
  if (invalid) { revealField(root.querySelector("#train-fields"), invalid); return; }
  if (!modelDir() || !dataset) return;
  const body = { model_dir: modelDir(), csv_path: dataset, ...form.values() };
  const button = root.querySelector("#train-start");
  button.disabled = true;
  try {
    await api("/start", { method: "POST", body });
    await monitor.attach();
    location.hash = "#monitor";
  } catch (err) {
    if (err instanceof ApiError) showServerError(err);
    else showGeneralError(err.message);
    button.disabled = false;
  }
}

async function upload() {
  const input = root.querySelector("#train-upload");
  const out = root.querySelector("#train-dataset-out");
  if (!input.files.length) { input.click(); return; }
  const data = new FormData();
  data.append("file", input.files[0]);
  out.innerHTML = `<p class="muted">${escapeHtml(t("train.uploading"))}</p>`;
  try {
    const saved = await api("/datasets/upload", { method: "POST", form: data });
    await loadDatasets(saved.name);
    out.innerHTML = `<p class="ok">${escapeHtml(t("train.uploaded", { name: saved.name }))}</p>`;
    input.value = "";
  } catch (err) {
    out.innerHTML = `<p class="error" role="alert">${escapeHtml(err.message)}</p>`;
  }
}

function problemHtml(p) {
  const where = p.row !== undefined && p.row !== null ? `${t("train.row")} ${p.row}`
    : p.line !== undefined && p.line !== null ? `${t("train.line")} ${p.line}` : "";
  return `<li class="${escapeHtml(p.severity)}">${where ? `<strong>${escapeHtml(where)}</strong>: ` : ""}${escapeHtml(p.message)}</li>`;
}

/** The /datasets/validate report: counts, token statistics, and every problem with its row. */
function reportHtml(r) {
  const rows = [["train.format", r.format], ["train.rows", r.rows], ["train.samples", r.samples],
    ["train.errors", r.error_count], ["train.warnings", r.warning_count]];
  const tok = r.tokens;
  if (tok) {
    rows.push(["train.tokens", `p50 ${tok.p50} · p95 ${tok.p95} · max ${tok.max}`]);
    rows.push(["train.over_chunk", t("train.over_chunk_value", { n: tok.over_chunk_size, chunk: tok.chunk_size })]);
  }
  const problems = [...(r.errors || []), ...(r.warnings || [])];
  return `<h3>${escapeHtml(t("train.report"))} <span id="train-report-verdict" class="${r.ok ? "good" : "bad"}">${escapeHtml(r.ok ? t("train.valid") : t("train.has_errors"))}</span></h3>
    <dl class="facts">${rows.map(([k, v]) => `<dt>${escapeHtml(t(k))}</dt><dd>${escapeHtml(v ?? "–")}</dd>`).join("")}</dl>
    ${problems.length ? `<ul class="problems">${problems.map(problemHtml).join("")}</ul>` : ""}`;
}

/** The id /datasets/* accept for the picked model (local folder or run id); none for a hub id. */
function modelForData() {
  if (root.querySelector("#train-model-hub").value.trim()) return null;
  return root.querySelector("#train-model").selectedOptions[0]?.dataset.id || null;
}

async function validate() {
  const out = root.querySelector("#train-dataset-out");
  const name = root.querySelector("#train-dataset").value;
  if (!name) return;
  const body = { dataset: name };
  for (const field of ["template_mode", "chunk_size", "column_name"]) {
    const value = root.querySelector(`#cfg-${field}`)?.value;
    if (value) body[field] = field === "chunk_size" ? Number(value) : value;
  }
  const model = modelForData();
  if (model) body.model = model;
  out.innerHTML = `<p class="muted">${escapeHtml(t("train.validating"))}</p>`;
  try {
    out.innerHTML = reportHtml(await api("/datasets/validate", { method: "POST", body }));
  } catch (err) {
    out.innerHTML = `<p class="error" role="alert">${escapeHtml(err.message)}</p>`;
  }
}

async function preview() {
  const out = root.querySelector("#train-dataset-out");
  const name = root.querySelector("#train-dataset").value;
  if (!name) return;
  const params = new URLSearchParams({ n: "5" });
  for (const field of ["template_mode", "column_name"]) {
    const value = root.querySelector(`#cfg-${field}`)?.value;
    if (value) params.set(field, value);
  }
  if (root.querySelector("#cfg-train_on_prompt")?.checked) params.set("train_on_prompt", "true");
  const model = modelForData();
  if (model) params.set("model", model);
  try {
    const answer = await api(`/datasets/${encodeURIComponent(name)}/preview?${params}`);
    out.innerHTML = `<h3>${escapeHtml(t("train.preview"))} <small>(${escapeHtml(answer.format)})</small></h3>
      ${samplesHtml(answer.samples.map((x) => ({ label: `${t("train.row")} ${x.row}`, segments: x.parts })))}`;
  } catch (err) {
    out.innerHTML = `<p class="error" role="alert">${escapeHtml(err.message)}</p>`;
  }
}

/** Labels in the new language: the generated form and the model groups. */
export function relabel() {
  form?.relabel();
  if (loaded) loadModels().catch(() => {});
}

export function show() {
  if (loaded) { loadModels().catch(() => {}); loadDatasets().catch(() => {}); return; }
  loaded = true;
  Promise.all([loadModels(), loadDatasets(), loadForm()]).catch((err) => showGeneralError(err.message));
}
