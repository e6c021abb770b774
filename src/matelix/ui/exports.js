/* The export panel of a run's detail (Runs view): pick a format, start the export, follow its progress,
   then see every export of the run with its parity result ("verified: 8/8 probes identical") and
   download it. Downloads go through fetch with the API key (a plain link cannot send it). */

import { api } from "./api.js";
import { bytes, escapeHtml } from "./format.js";
import { t } from "./i18n.js";

const POLL_MS = 1000;
const CHOICES = [["hf", "hf", null], ["adapter", "adapter", null], ["gguf-f16", "gguf", "f16"], ["gguf-q8_0", "gguf", "q8_0"]];
let root, runId = null, timer = null;

export function mount(el) {
  root = el;
  root.innerHTML = `
    <h3 data-i18n="export.title">Export</h3>
    <div class="row">
      <label for="export-format" data-i18n="export.format">Format</label>
      <select id="export-format">${CHOICES.map(([value]) =>
        `<option value="${value}" data-i18n="export.choice.${value}">${value}</option>`).join("")}</select>
      <button type="button" id="export-start" data-i18n="export.start">Export</button></div>
    <p class="muted" id="export-help" data-i18n="export.help">Every export is loaded back and replays a fixed probe set before it is offered.</p>
    <div class="progress-line" id="export-progress" hidden>
      <progress max="1" value="0"></progress><span id="export-stage" role="status"></span></div>
    <div id="export-error" class="error" role="alert" hidden></div>
    <ul id="export-list" class="export-list"></ul>`;
  root.querySelector("#export-start").addEventListener("click", start);
  root.querySelector("#export-list").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-download]");
    if (button) download(button.dataset.download, button.dataset.file).catch((err) => showError(err.message));
  });
}

/** Show the exports of run `id`; exporting is offered once the run has a final model and has ended. */
export function show(id, detail, live) {
  runId = id;
  clearTimeout(timer);
  const lora = detail.config?.train_mode === "lora" && !detail.config?.merge_lora_on_save;
  root.querySelector('#export-format option[value="adapter"]').disabled = !lora;
  const select = root.querySelector("#export-format");
  if (select.selectedOptions[0]?.disabled) select.value = "hf";
  root.querySelector("#export-start").disabled = live || !detail.has_model;
  showError("");
  refresh();
}

async function start() {
  const [, format, quant] = CHOICES.find(([value]) => value === root.querySelector("#export-format").value);
  showError("");
  try {
    await api(`/trainings/${encodeURIComponent(runId)}/export`, { method: "POST", body: quant ? { format, quant } : { format } });
  } catch (err) {
    showError(err.message);
    return;
  }
  refresh();
}

async function refresh() {
  const id = runId;
  let data;
  try {
    data = await api(`/trainings/${encodeURIComponent(id)}/exports`);
  } catch (err) {
    if (id === runId) showError(err.message);
    return;
  }
  if (id !== runId) return;  // another run was opened meanwhile
  const job = data.job;
  const running = job?.state === "running";
  const bar = root.querySelector("#export-progress");
  bar.hidden = !running;
  if (running) {
    bar.querySelector("progress").value = job.progress || 0;
    root.querySelector("#export-stage").textContent = `${job.name}: ${t(`export.stage.${job.stage}`)}`;
    timer = setTimeout(refresh, POLL_MS);
  } else if (job?.state === "failed") {
    showError(`${job.name}: ${job.error?.message || t("export.failed")}`);
  }
  root.querySelector("#export-start").disabled ||= running;
  root.querySelector("#export-list").innerHTML = data.exports.map(item).join("") ||
    `<li class="muted">${escapeHtml(t("export.none"))}</li>`;
}

function item(record) {
  const parity = record.parity || {};
  const cls = parity.passed === false ? "error" : parity.passed ? "ok" : "muted";
  const gguf = record.facts?.gguf_file;
  return `<li><strong>${escapeHtml(t(`export.choice.${record.name}`))}</strong>
    <span class="muted">${escapeHtml(bytes(record.size_bytes))}</span>
    <span class="${cls}" data-parity="${escapeHtml(record.name)}">${escapeHtml(parity.summary || "–")}</span>
    <button type="button" data-download="${escapeHtml(record.name)}" data-i18n="export.download">${escapeHtml(t("export.download"))}</button>
    ${gguf ? `<button type="button" data-download="${escapeHtml(record.name)}" data-file="${escapeHtml(gguf)}">${escapeHtml(t("export.download_gguf"))}</button>` : ""}</li>`;
}

async function download(name, file) {
  const base = `/trainings/${encodeURIComponent(runId)}/exports/${encodeURIComponent(name)}`;
  const res = await api(file ? `${base}/files/${encodeURIComponent(file)}` : `${base}/download`, { raw: true });
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: file || `${runId}-${name}.tar` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function showError(text) {
  const box = root.querySelector("#export-error");
  box.hidden = !text;
  box.textContent = text;
}
