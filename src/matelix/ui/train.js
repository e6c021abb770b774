/* Train view: model and dataset pickers (with upload, validation report beside the rendered preview),
   quick settings, saved presets, the generated TrainConfig form, Start and Stop. The form remembers the
   last settings in this browser, and "Reuse settings" of a run (Runs, Monitor) fills it. */

import { api, ApiError } from "./api.js";
import { showEstimate } from "./estimate.js";
import { bytes, escapeHtml, num } from "./format.js";
import { GGUF_HTML, initGgufImport } from "./ggufimport.js";
import { t } from "./i18n.js";
import * as monitor from "./monitor.js";
import { samplesHtml } from "./preview.js";
import { mountPresets, PANEL_HTML, refreshPresets } from "./presets.js";
import { onReuse, runNames } from "./reuse.js";
import { buildForm, fieldsFromOpenApi, optionLabel, QUICK_SETTINGS, revealField } from "./trainform.js";

const SETTINGS_KEY = "matelix.train.settings";
const FORMATS = ["column", "chat", "dialogplus", "messages", "sharegpt", "alpaca"];
/** One example per format: what a newcomer needs to see to write such a file. */
const FORMAT_EXAMPLES = {
  column: "text\n\"Erster Trainingstext.\"\n\"Zweiter Trainingstext.\"",
  chat: "id,parent_id,system,Benutzer,Kontext,Assistentin\n1,,Du bist hilfsbereit.,Hallo!,,Hallo! Wie kann ich helfen?\n2,1,,Was ist LoRA?,,Eine sparsame Art des Fine-Tunings.",
  dialogplus: "id,parent_id,system,Benutzer,Kontext,Assistentin\n1,,Du bist hilfsbereit.,Hallo!,,Hallo! Wie kann ich helfen?",
  messages: '{"messages": [{"role": "user", "content": "Hallo!"}, {"role": "assistant", "content": "Hallo! Wie kann ich helfen?"}]}',
  sharegpt: '{"conversations": [{"from": "human", "value": "Hallo!"}, {"from": "gpt", "value": "Hallo! Wie kann ich helfen?"}]}',
  alpaca: '{"instruction": "Übersetze ins Englische.", "input": "Guten Morgen", "output": "Good morning"}',
};

let root, form = null;
let loaded = false;
let ready = false;            // models, datasets and form are in: settings may be applied and remembered
let datasets = [];
let pendingSettings = null;   // settings to apply once the view is ready (a reuse before it loaded)
let shownReport = null;       // the validate() call whose report is shown: redone in a new UI language

export function mount(el) {
  root = el;
  root.innerHTML = `
    <h1 data-i18n="train.title">Train</h1>
    <p id="train-notice" class="notice" role="status" hidden></p>
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
        ${GGUF_HTML}
        <h2 data-i18n="train.preset">Quick settings</h2>
        <div class="row" role="group" aria-label="Quick settings" data-i18n-aria="train.preset">
          <button type="button" class="preset" data-preset="full" data-i18n="train.preset_full">Full fine-tune</button>
          <button type="button" class="preset" data-preset="lora" data-i18n="train.preset_lora">LoRA</button>
        </div>
        <div id="train-presets">${PANEL_HTML}</div>
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
          <input id="train-upload" type="file" accept=".csv,.jsonl,.json">
          <button type="button" id="train-upload-btn" data-i18n="train.upload">Upload</button>
        </div>
        <div class="row">
          <button type="button" id="train-validate" data-i18n="train.validate">Validate</button>
          <button type="button" id="train-preview" data-i18n="train.preview">Preview samples</button>
          <button type="button" id="train-estimate-btn" data-i18n="estimate.button">Estimate the duration</button>
        </div>
        <details id="train-formats" class="group"><summary data-i18n="train.formats">Which file formats work?</summary>
          <div id="train-formats-list"></div></details>
      </div>
    </div>
    <div id="train-dataset-out" class="grid2 dataset-results">
      <div id="train-report" class="card dataset-out" aria-live="polite" hidden></div>
      <div id="train-samples" class="card dataset-out" hidden></div>
    </div>
    <div id="train-estimate" class="card" aria-live="polite" hidden></div>
    <form id="train-form" class="card" novalidate>
      <div class="row spread"><h2 data-i18n="train.settings">Training settings</h2>
        <button type="button" id="train-reset" class="ghost" data-i18n="train.reset">Reset to defaults</button></div>
      <div id="train-fields"><p class="muted" data-i18n="common.loading">Loading…</p></div>
      <div id="train-error" class="error" role="alert" hidden></div>
      <p id="train-start-why" class="muted start-why" hidden></p>
      <div class="row end">
        <button type="button" id="train-stop" class="danger" data-i18n="train.stop" disabled>Stop</button>
        <button type="submit" id="train-start" class="primary" data-i18n="train.start" aria-describedby="train-start-why">Start training</button>
      </div>
    </form>`;
  root.querySelector("#train-form").addEventListener("submit", (e) => { e.preventDefault(); startRun(); });
  root.querySelector("#train-stop").addEventListener("click", () => monitor.stopRun());
  root.querySelector("#train-upload-btn").addEventListener("click", upload);
  root.querySelector("#train-validate").addEventListener("click", validate);
  root.querySelector("#train-preview").addEventListener("click", preview);
  root.querySelector("#train-estimate-btn").addEventListener("click", estimate);
  root.querySelector("#train-reset").addEventListener("click", () => { form?.reset(); afterChange(); });
  initGgufImport(root, async (modelDir) => {
    await loadModels();
    root.querySelector("#train-model").value = modelDir;
    afterChange();
  });
  root.querySelector("#train-dataset").addEventListener("change", () => {
    for (const id of ["#train-report", "#train-samples"]) clearOut(id);
  });
  // Every change is remembered (and may change which fields apply); preset names are not settings.
  for (const type of ["input", "change"]) {
    root.addEventListener(type, (event) => { if (!event.target.closest("#train-preset-name, #train-upload")) afterChange(); });
  }
  for (const b of root.querySelectorAll("[data-preset]")) b.addEventListener("click", () => applyPreset(b.dataset.preset));
  monitor.onStatus(showRunState);
  onReuse((config, name) => {
    pendingSettings = { config, name };
    if (ready) applyPending();
  });
  renderFormats();
  mountPresets(root.querySelector("#train-presets"), {
    settings: currentSettings,
    fill: (config) => { if (form) applySettings(config); },
  });
}

/** Start is off while a run is active, and the page says why (and which run). */
function showRunState(s) {
  const live = monitor.isLive(s);
  root.querySelector("#train-stop").disabled = !monitor.canStop(s);
  root.querySelector("#train-start").disabled = live || !form;
  const why = root.querySelector("#train-start-why");
  why.hidden = !live;
  why.textContent = live ? t("train.busy", { name: s.config?.run_name || s.run_id }) : "";
}

function notice(text) {
  const box = root.querySelector("#train-notice");
  box.hidden = !text;
  box.textContent = text || "";
}

function clearOut(id) {
  const box = root.querySelector(id);
  box.hidden = true;
  box.replaceChildren();
}

function showOut(id, html) {
  const box = root.querySelector(id);
  box.hidden = false;
  box.innerHTML = html;
}

function applyPreset(name) {
  form?.apply(QUICK_SETTINGS[name]);
  for (const b of root.querySelectorAll("[data-preset]")) b.setAttribute("aria-pressed", String(b.dataset.preset === name));
  afterChange();
}

/** The format the file will be read as: the chosen one, or the detected one of the picked dataset. */
function effectiveFormat() {
  const chosen = root.querySelector("#cfg-template_mode")?.value || "auto";
  if (chosen !== "auto") return chosen;
  return datasets.find((d) => d.name === root.querySelector("#train-dataset").value)?.format || null;
}

function afterChange() {
  if (!form) return;
  const fmt = effectiveFormat();
  form.showField("column_name", !fmt || fmt === "column");
  if (ready) localStorage.setItem(SETTINGS_KEY, JSON.stringify(currentSettings()));
}

function currentSettings() {
  return { model_dir: modelDir(), csv_path: root.querySelector("#train-dataset").value, ...form.values() };
}

/** Fills the pickers and the form from a config (defaults for every field it leaves out). */
function applySettings(config) {
  const { model_dir: model, csv_path: dataset, ...values } = config;
  const select = root.querySelector("#train-model");
  const hub = root.querySelector("#train-model-hub");
  const option = [...select.options].find((o) => o.value === model || o.dataset.id === model);
  if (option) { select.value = option.value; hub.value = ""; } else if (model) hub.value = model;
  const sets = root.querySelector("#train-dataset");
  const name = (dataset || "").replace(/^datasets\//, "");
  if ([...sets.options].some((o) => o.value === name)) sets.value = name;
  form.reset();
  form.apply(values);
  for (const b of root.querySelectorAll("[data-preset]")) b.removeAttribute("aria-pressed");
  afterChange();
}

function applyPending() {
  const { config, name } = pendingSettings;
  pendingSettings = null;
  const { resume_from: _r, run_name: _n, notes: _notes, ...settings } = config;  // a new run, not the old one
  applySettings(settings);
  notice(t("train.reused", { name }));
  window.scrollTo(0, 0);
}

function restoreSettings() {
  if (pendingSettings) { applyPending(); return; }
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "null"); } catch { /* a broken entry: defaults */ }
  if (!saved || typeof saved !== "object") return;
  applySettings(saved);
  notice(t("train.restored"));
}

async function loadModels() {
  const [models, names] = await Promise.all([api("/available_models"), runNames()]);
  const select = root.querySelector("#train-model");
  const group = (kind, key) => {
    const items = models.filter((m) => m.kind === kind);
    if (!items.length) return "";
    return `<optgroup label="${escapeHtml(t(key))}">${items.map((m) =>
      `<option value="${escapeHtml(m.path)}" data-id="${escapeHtml(m.id)}">${escapeHtml(names.has(m.id) ? `${names.get(m.id)} (${m.name})` : m.name)}</option>`).join("")}</optgroup>`;
  };
  const previous = select.value;
  select.innerHTML = group("local", "train.models_local") + group("run", "train.models_runs");
  // The real pretrained model is the default; the tiny random one is for trying the machinery.
  const demo = models.find((m) => m.name === "smollm2-135m-instruct") || models.find((m) => m.name === "tiny-demo");
  if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  else if (demo) select.value = demo.path;
}

async function loadDatasets(selectName) {
  datasets = await api("/available_datasets");
  const select = root.querySelector("#train-dataset");
  const previous = selectName || select.value;
  select.innerHTML = datasets.map((d) => `<option value="${escapeHtml(d.name)}">${escapeHtml(d.name)}
    (${escapeHtml(d.format ? optionLabel("template_mode", d.format) : t("train.format_unknown"))}, ${bytes(d.size_bytes)})</option>`).join("");
  if (previous && datasets.some((d) => d.name === previous)) select.value = previous;
  else if (datasets.some((d) => d.name === "demo_persona.jsonl")) select.value = "demo_persona.jsonl";
  afterChange();
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

/** Each format by what it is, with an example file. */
function renderFormats() {
  root.querySelector("#train-formats-list").innerHTML = FORMATS.map((f) => `
    <div class="format" data-format="${f}"><h3>${escapeHtml(optionLabel("template_mode", f))}</h3>
      <p class="muted">${escapeHtml(t(`format.help.${f}`))}</p>
      <pre class="example" aria-label="${escapeHtml(t("train.example"))}">${escapeHtml(FORMAT_EXAMPLES[f])}</pre></div>`).join("");
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
  const path = (err.param || "").replace(/^body\./, "");
  const param = form?.has(path) ? path : path.split(".")[0];  // a nested option is a field (`ngrams.top_k`)
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
    form.apply({ run_name: null, notes: null });  // the settings stay for the next run, its name does not
    afterChange();
    await monitor.attach();
    location.hash = "#monitor";
  } catch (err) {
    if (err instanceof ApiError) showServerError(err);
    else showGeneralError(err.message);
    button.disabled = false;
  }
}

/** Uploads the file, then checks it at once and says what was found (or why it cannot be trained on). */
async function upload() {
  const input = root.querySelector("#train-upload");
  if (!input.files.length) { input.click(); return; }
  const data = new FormData();
  data.append("file", input.files[0]);
  clearOut("#train-samples");
  shownReport = null;
  showOut("#train-report", `<p class="muted">${escapeHtml(t("train.uploading"))}</p>`);
  try {
    const saved = await api("/datasets/upload", { method: "POST", form: data });
    await loadDatasets(saved.name);
    input.value = "";
    await validate({ uploaded: saved.name });
  } catch (err) {
    showOut("#train-report", `<p class="error" role="alert">${escapeHtml(err.message)}</p>`);
  }
}

function problemHtml(p) {
  const where = p.row !== undefined && p.row !== null ? `${t("train.row")} ${p.row}`
    : p.line !== undefined && p.line !== null ? `${t("train.line")} ${p.line}` : "";
  return `<li class="${escapeHtml(p.severity)}">${where ? `<strong>${escapeHtml(where)}</strong>: ` : ""}${escapeHtml(p.message)}</li>`;
}

/** The /datasets/validate report: what was found, counts, token statistics, every problem with its row. */
function reportHtml(r, { uploaded = null, hubModel = false } = {}) {
  // The format in words; its config value (template_mode) only in the table, where a config file needs it.
  const named = r.format ? optionLabel("template_mode", r.format) : t("train.format_unknown");
  const format = r.format ? `${named} · ${r.format}` : named;
  const rows = [["train.format", format], ["train.rows", num(r.rows, 0)], ["train.samples", num(r.samples, 0)],
    ["train.errors", num(r.error_count, 0)], ["train.warnings", num(r.warning_count, 0)]];
  const tok = r.tokens;
  if (tok) {
    rows.push(["train.tokens", `p50 ${num(tok.p50, 0)} · p95 ${num(tok.p95, 0)} · max ${num(tok.max, 0)}`]);
    rows.push(["train.over_chunk", t("train.over_chunk_value", { n: num(tok.over_chunk_size, 0), chunk: num(tok.chunk_size, 0) })]);
  }
  const problems = [...(r.errors || []), ...(r.warnings || [])];
  const found = uploaded && !r.ok ? `<p class="error">${escapeHtml(t("train.upload_bad", { name: uploaded }))}</p>`
    : uploaded ? `<p class="ok">${escapeHtml(t("train.uploaded", { name: uploaded }))}</p>` : "";
  return `${found}<h3>${escapeHtml(t("train.report"))} <span id="train-report-verdict" class="${r.ok ? "good" : "bad"}">${escapeHtml(r.ok ? t("train.valid") : t("train.has_errors"))}</span></h3>
    <p id="train-found">${escapeHtml(t("train.found", { format: named, rows: num(r.rows, 0), samples: num(r.samples, 0) }))}</p>
    <dl class="facts">${rows.map(([k, v]) => `<dt>${escapeHtml(t(k))}</dt><dd>${escapeHtml(v ?? "–")}</dd>`).join("")}</dl>
    ${hubModel ? `<p class="muted" id="train-tokens-note">${escapeHtml(t("train.tokens_local_only"))}</p>` : ""}
    ${problems.length ? `<ul class="problems">${problems.map(problemHtml).join("")}</ul>` : ""}`;
}

/** The id /datasets/* accept for the picked model (local folder or run id); none for a hub id. */
function modelForData() {
  if (root.querySelector("#train-model-hub").value.trim()) return null;
  return root.querySelector("#train-model").selectedOptions[0]?.dataset.id || null;
}

async function validate({ uploaded = null, measure = true } = {}) {
  const name = root.querySelector("#train-dataset").value;
  if (!name) return;
  shownReport = { uploaded };
  const body = { dataset: name };
  for (const field of ["template_mode", "chunk_size", "column_name"]) {
    const value = root.querySelector(`#cfg-${field}`)?.value;
    if (value) body[field] = field === "chunk_size" ? Number(value) : value;
  }
  const model = modelForData();
  if (model) body.model = model;
  showOut("#train-report", `<p class="muted">${escapeHtml(t("train.validating"))}</p>`);
  try {
    const report = await api("/datasets/validate", { method: "POST", body });
    showOut("#train-report", reportHtml(report, { uploaded, hubModel: !model }));
    // Asked to validate a file that can be trained on: measure how long the run would take (not after an
    // upload, which only checks the file, and not while a run trains: the figure would be wrong).
    if (measure && !uploaded && report.ok && !monitor.isLive(monitor.lastStatus())) estimate();
  } catch (err) {
    // A file that cannot be read at all: the same report heading, with the reason (it names what was found).
    const lead = uploaded ? `<p class="error">${escapeHtml(t("train.upload_bad", { name: uploaded }))}</p>` : "";
    showOut("#train-report", `${lead}<h3>${escapeHtml(t("train.report"))} <span id="train-report-verdict" class="bad">${escapeHtml(t("train.has_errors"))}</span></h3>
      <p class="error" role="alert">${escapeHtml(err.message)}</p>`);
  }
}

/** The expected duration of a run with the current settings (a few real steps, measured by the server). */
function estimate() {
  if (!form || !modelDir() || !root.querySelector("#train-dataset").value) return;
  showEstimate(root.querySelector("#train-estimate"), { model_dir: modelDir(),
    csv_path: root.querySelector("#train-dataset").value, ...form.values() }, (values) => {
    form.apply(values);
    afterChange();
  });
}

async function preview() {
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
    showOut("#train-samples", `<h3>${escapeHtml(t("train.samples_title"))} <small>(${escapeHtml(optionLabel("template_mode", answer.format))})</small></h3>
      ${samplesHtml(answer.samples.map((x) => ({ label: `${t("train.row")} ${x.row}`, segments: x.parts })))}`);
  } catch (err) {
    showOut("#train-samples", `<p class="error" role="alert">${escapeHtml(err.message)}</p>`);
  }
}

/** Labels in the new language: the generated form, the model groups, formats and dataset names. */
export function relabel() {
  form?.relabel();
  renderFormats();
  // The report's findings are the server's words: ask again in the new language (without re-measuring).
  if (shownReport && !root.querySelector("#train-report").hidden) validate({ ...shownReport, measure: false });
  if (loaded) {
    loadModels().catch(() => {});
    loadDatasets().catch(() => {});
    refreshPresets().catch(() => {});
  }
  showRunState(monitor.lastStatus());
}

export function show() {
  if (loaded) {
    loadModels().catch(() => {});
    loadDatasets().catch(() => {});
    refreshPresets().catch(() => {});
    return;
  }
  loaded = true;
  Promise.all([loadModels(), loadDatasets(), loadForm(), refreshPresets()])
    .then(() => {
      ready = true;
      restoreSettings();
      afterChange();
      showRunState(monitor.lastStatus());
    })
    .catch((err) => showGeneralError(err.message));
}
