/* Saved presets in the Train view: named settings kept on the server (/presets, the same files
   `matelix train --preset NAME` reads) — list, load into the form, save the current settings, delete. */

import { api } from "./api.js";
import { escapeHtml } from "./format.js";
import { t } from "./i18n.js";

let box, presets = [];
let current = () => ({});    // the form's settings now
let apply = () => {};        // puts settings into the form

export const PANEL_HTML = `
  <h2 data-i18n="train.presets">Saved presets</h2>
  <div class="row">
    <label for="train-preset-pick" class="sr-only" data-i18n="train.preset_pick">Preset</label>
    <select id="train-preset-pick" class="grow"></select>
    <button type="button" id="train-preset-load" data-i18n="train.preset_load">Load</button>
    <button type="button" id="train-preset-delete" class="danger" data-i18n="train.preset_delete">Delete</button>
  </div>
  <label for="train-preset-name" data-i18n="train.preset_name">Save the current settings as</label>
  <div class="row">
    <input id="train-preset-name" type="text" maxlength="64" autocomplete="off" class="grow">
    <button type="button" id="train-preset-save" data-i18n="train.preset_save">Save</button>
  </div>
  <p id="train-preset-msg" class="muted" role="status"></p>`;

/** Wires the panel (PANEL_HTML, already in `el`); `settings()` reads the form, `fill(config)` fills it. */
export function mountPresets(el, { settings, fill }) {
  box = el;
  current = settings;
  apply = fill;
  box.querySelector("#train-preset-load").addEventListener("click", load);
  box.querySelector("#train-preset-save").addEventListener("click", save);
  box.querySelector("#train-preset-delete").addEventListener("click", remove);
}

function message(text, isError = false) {
  const out = box.querySelector("#train-preset-msg");
  out.textContent = text;
  out.className = isError ? "error" : "muted";
}

/** Reads the list from the server (keeping the picked one, or picking `select`). */
export async function refreshPresets(select) {
  const pick = box.querySelector("#train-preset-pick");
  const keep = select || pick.value;
  presets = await api("/presets");
  pick.innerHTML = presets.length ? presets.map((p) => `<option value="${escapeHtml(p.name)}">${escapeHtml(p.name)}</option>`).join("")
    : `<option value="">${escapeHtml(t("train.preset_none"))}</option>`;
  if (keep && presets.some((p) => p.name === keep)) pick.value = keep;
  box.querySelector("#train-preset-load").disabled = !presets.length;
  box.querySelector("#train-preset-delete").disabled = !presets.length;
}

function load() {
  const preset = presets.find((p) => p.name === box.querySelector("#train-preset-pick").value);
  if (!preset) return;
  apply(preset.config);
  message(t("train.preset_loaded", { name: preset.name }));
}

async function save() {
  const input = box.querySelector("#train-preset-name");
  const name = input.value.trim();
  if (!name) { input.focus(); return; }
  const { run_name: _n, notes: _notes, ...config } = current();  // a preset names no run
  try {
    const saved = await api("/presets", { method: "POST", body: { name, config } });
    await refreshPresets(saved.name);
    input.value = "";
    message(t("train.preset_saved", { name: saved.name }));
  } catch (err) {
    message(err.message, true);
  }
}

async function remove() {
  const name = box.querySelector("#train-preset-pick").value;
  if (!name || !confirm(t("train.preset_confirm_delete", { name }))) return;
  try {
    await api(`/presets/${encodeURIComponent(name)}`, { method: "DELETE" });
    await refreshPresets();
    message(t("train.preset_deleted", { name }));
  } catch (err) {
    message(err.message, true);
  }
}
