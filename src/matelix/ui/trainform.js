/* The training form, generated from the server's own `TrainConfig` JSON schema (in /openapi.json), so
   every field, default, choice and limit is the server's. Fields are grouped (basic shown, the rest in
   folded groups); client-side checks mirror the server's 422 messages, and a server error is shown next
   to the field its `param` names. A nested options model (`ngrams`) shows its fields as `ngrams.top_k` and
   is sent nested again. */

import { escapeHtml } from "./format.js";
import { has, language, t } from "./i18n.js";

/** Fields shown outside the folded groups, in this order (the pickers handle model_dir and csv_path). */
const BASIC = ["run_name", "train_mode", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size",
  "gradient_accumulation_steps", "chunk_size", "template_mode", "column_name", "notes"];
const GROUPS = [
  ["data", ["chat_template", "train_on_prompt", "packing", "shuffle", "sort_by_length", "eval_split", "eval_steps",
    "probe_file", "max_probes", "probe_max_new_tokens", "early_stopping_patience", "load_best_model_at_end"]],
  ["optim", ["lr_scheduler", "warmup_ratio", "weight_decay", "max_grad_norm", "seed"]],
  ["lora", ["lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_lora_on_save"]],
  ["ngrams", ["use_ngrams", "ngrams.max_len", "ngrams.top_k", "ngrams.min_count", "ngrams.min_chars", "ngrams.max_samples", "ngrams.screen_tokens"]],
  ["hardware", ["device", "precision", "nproc", "gradient_checkpointing", "distributed", "deepspeed_stage", "offload",
    "nnodes", "node_rank", "master_addr", "master_port", "node_timeout_s"]],
  ["checkpoints", ["save_steps", "save_total_limit", "logging_steps", "resume_from"]],
  ["preview", ["preview_steps", "preview_prompt", "preview_max_new_tokens"]],
];
export const PICKED = new Set(["model_dir", "csv_path"]);

/** Quick settings set a few fields; everything else keeps its value. */
export const QUICK_SETTINGS = {
  full: { train_mode: "full", learning_rate: 4e-4 },
  lora: { train_mode: "lora", learning_rate: 2e-4, lora_r: 8, lora_alpha: 16, lora_dropout: 0.05, merge_lora_on_save: true },
};

/** {type, nullable, enum, min, max, exclusiveMin, exclusiveMax, minLength, default, description, array}. */
function describeField(name, prop) {
  const variants = prop.anyOf || [prop];
  const main = variants.find((v) => v.type !== "null") || {};
  return {
    name,
    nullable: variants.some((v) => v.type === "null"),
    type: main.enum ? "enum" : main.type === "array" ? "array" : main.type || "string",
    enum: main.enum || (main.const !== undefined ? [main.const] : null),
    min: main.minimum, max: main.maximum, exclusiveMin: main.exclusiveMinimum, exclusiveMax: main.exclusiveMaximum,
    minLength: main.minLength, maxLength: main.maxLength,
    default: prop.default, description: prop.description || "", descriptionDe: prop["x-description-de"] || "",
  };
}

/** The schema a property points to (`$ref`, or pydantic's older `allOf: [{$ref}]`), when it is a nested model. */
function nestedSchema(schemas, prop) {
  const ref = prop.$ref || prop.allOf?.[0]?.$ref;
  const target = ref && schemas[ref.split("/").pop()];
  return target?.properties ? target : null;
}

export function fieldsFromOpenApi(openapi) {
  const schemas = openapi?.components?.schemas || {};
  const schema = schemas.TrainConfig;
  if (!schema) return null;
  const fields = Object.entries(schema.properties).flatMap(([name, prop]) => {
    const nested = nestedSchema(schemas, prop);
    return nested ? Object.entries(nested.properties).map(([sub, p]) => describeField(`${name}.${sub}`, p))
      : [describeField(name, prop)];
  });
  return { fields, required: new Set(schema.required || []) };
}

/** The element id of a field's input (`ngrams.top_k` -> `cfg-ngrams-top_k`: a dot would not select). */
export function fieldId(name) {
  return `cfg-${name.replace(/\./g, "-")}`;
}

function label(name) {
  return has(`field.${name}`) ? t(`field.${name}`) : name;
}

/** The field's help text from the server's schema, in the UI language where the schema has it. */
function helpText(f) {
  return language() === "de" && f.descriptionDe ? f.descriptionDe : f.description;
}

/** What a choice is called in the UI (dataset formats by what they are, other choices in words). */
export function optionLabel(name, value) {
  const key = name === "template_mode" ? `format.${value}` : `option.${name}.${value}`;
  return has(key) ? t(key) : String(value);
}

function optionsHtml(f) {
  return `${f.nullable ? `<option value="">–</option>` : ""}${f.enum.map((v) =>
    `<option value="${escapeHtml(v)}" ${v === f.default ? "selected" : ""}>${escapeHtml(optionLabel(f.name, v))}</option>`).join("")}`;
}

function inputHtml(f) {
  const id = fieldId(f.name);
  const common = `id="${id}" name="${f.name}" aria-describedby="${id}-help ${id}-err"`;
  if (f.type === "boolean") {
    return `<label class="check" for="${id}"><input type="checkbox" ${common} ${f.default ? "checked" : ""}>
      <span data-i18n-field="${f.name}">${escapeHtml(label(f.name))}</span></label>`;
  }
  let control;
  if (f.type === "enum") {
    control = `<select ${common}>${optionsHtml(f)}</select>`;
  } else if (f.type === "integer" || f.type === "number") {
    const attrs = [f.min !== undefined && `min="${f.min}"`, f.max !== undefined && `max="${f.max}"`,
      f.type === "integer" ? `step="1"` : `step="any"`].filter(Boolean).join(" ");
    control = `<input type="number" inputmode="decimal" ${common} ${attrs} value="${f.default ?? ""}"
      placeholder="${f.nullable && f.default === null ? "–" : ""}">`;
  } else if (f.type === "array") {
    control = `<input type="text" ${common} value="${escapeHtml((f.default || []).join(", "))}" placeholder="q_proj, v_proj">`;
  } else if (f.maxLength > 2000) {
    control = `<textarea ${common} rows="2">${escapeHtml(f.default ?? "")}</textarea>`;
  } else {
    control = `<input type="text" ${common} value="${escapeHtml(f.default ?? "")}">`;
  }
  return `<label for="${id}" data-i18n-field="${f.name}">${escapeHtml(label(f.name))}</label>${control}`;
}

function fieldHtml(f) {
  return `<div class="field" data-field="${f.name}">${inputHtml(f)}
    <small id="${fieldId(f.name)}-help" class="help">${escapeHtml(helpText(f))}</small>
    <small id="${fieldId(f.name)}-err" class="field-error" role="alert" hidden></small></div>`;
}

/** Fills `el` with the grouped form; returns an object to read, preset and annotate it. */
export function buildForm(el, { fields }) {
  const byName = new Map(fields.map((f) => [f.name, f]));
  const placed = new Set([...PICKED]);
  const take = (names) => names.filter((n) => byName.has(n) && !placed.has(n)).map((n) => { placed.add(n); return byName.get(n); });
  const basic = take(BASIC);
  const groups = GROUPS.map(([key, names]) => [key, take(names)]);
  const rest = fields.filter((f) => !placed.has(f.name));
  if (rest.length) groups.push(["other", rest]);
  el.innerHTML = `<div class="fields">${basic.map(fieldHtml).join("")}</div>
    ${groups.filter(([, fs]) => fs.length).map(([key, fs]) => `
      <details class="group" data-group="${key}"><summary data-i18n="group.${key}">${escapeHtml(t(`group.${key}`))}</summary>
        <div class="fields">${fs.map(fieldHtml).join("")}</div></details>`).join("")}`;
  el.addEventListener("input", (event) => {
    const name = event.target.name;
    if (byName.has(name)) setError(el, name, checkField(byName.get(name), el.querySelector(`#${fieldId(name)}`)));
  });
  return {
    values: () => readValues(el, fields),
    apply: (values) => applyValues(el, byName, values),
    check: () => checkAll(el, fields),
    setError: (name, message) => setError(el, name, message),
    clearErrors: () => fields.forEach((f) => setError(el, f.name, "")),
    reset: () => resetValues(el, fields),
    relabel: () => relabelForm(el, byName),
    has: (name) => byName.has(name),
    showField: (name, shown) => {
      const box = el.querySelector(`.field[data-field="${name}"]`);
      if (box) box.hidden = !shown;
    },
  };
}

function rawValue(f, input) {
  if (f.type === "boolean") return input.checked;
  const text = input.value.trim();
  if (text === "") return f.nullable ? null : undefined;
  if (f.type === "integer" || f.type === "number") return Number(text);
  // A choice keeps its type: `Literal[2, 3]` sends the number 2, not the text "2".
  if (f.type === "enum") return f.enum.find((v) => String(v) === input.value) ?? input.value;
  if (f.type === "array") return text.split(",").map((s) => s.trim()).filter(Boolean);
  return input.value;
}

/** Only values that differ from the server default are sent: the server stays the authority on defaults. */
function readValues(el, fields) {
  const out = {};
  for (const f of fields) {
    const input = el.querySelector(`#${fieldId(f.name)}`);
    if (!input) continue;
    const value = rawValue(f, input);
    if (value === undefined) continue;
    if (JSON.stringify(value) === JSON.stringify(f.default ?? null)) continue;
    const [head, sub] = f.name.split(".");
    if (sub === undefined) out[head] = value;
    else out[head] = { ...out[head], [sub]: value };
  }
  return out;
}

/** A config as the form names its fields: `{ngrams: {top_k: 5}}` -> `{"ngrams.top_k": 5}` (lists stay). */
export function flatConfig(values) {
  const out = {};
  for (const [name, value] of Object.entries(values || {})) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [sub, v] of Object.entries(value)) out[`${name}.${sub}`] = v;
    } else {
      out[name] = value;
    }
  }
  return out;
}

/** Labels, help texts and choice names in the current language (values and errors stay). */
function relabelForm(el, byName) {
  el.querySelectorAll("[data-i18n-field]").forEach((n) => { n.textContent = label(n.dataset.i18nField); });
  for (const f of byName.values()) {
    const help = el.querySelector(`#${fieldId(f.name)}-help`);
    if (help) help.textContent = helpText(f);
    if (f.type !== "enum") continue;
    for (const option of el.querySelectorAll(`#${fieldId(f.name)} option[value]`)) {
      if (option.value) option.textContent = optionLabel(f.name, option.value);
    }
  }
}

function resetValues(el, fields) {
  for (const f of fields) {
    const input = el.querySelector(`#${fieldId(f.name)}`);
    if (!input) continue;
    if (f.type === "boolean") input.checked = Boolean(f.default);
    else if (f.type === "array") input.value = (f.default || []).join(", ");
    else input.value = f.default ?? "";
    setError(el, f.name, "");
  }
}

function applyValues(el, byName, values) {
  for (const [name, value] of Object.entries(flatConfig(values))) {
    const input = el.querySelector(`#${fieldId(name)}`);
    const f = byName.get(name);
    if (!input || !f) continue;
    if (f.type === "boolean") input.checked = Boolean(value);
    else if (f.type === "array") input.value = (value || []).join(", ");
    else input.value = value ?? "";
    setError(el, name, "");
  }
}

/** The server's wording (pydantic), so a client-side check reads like the 422 it prevents. */
export function checkField(f, input) {
  if (!input || f.type === "boolean") return "";
  const value = rawValue(f, input);
  if (value === undefined) return t("check.required");
  if (value === null) return "";
  if (f.type === "integer" || f.type === "number") {
    if (!Number.isFinite(value)) return t("check.number");
    if (f.type === "integer" && !Number.isInteger(value)) return t("check.integer");
    if (f.exclusiveMin !== undefined && !(value > f.exclusiveMin)) return t("check.gt", { n: f.exclusiveMin });
    if (f.min !== undefined && value < f.min) return t("check.ge", { n: f.min });
    if (f.exclusiveMax !== undefined && !(value < f.exclusiveMax)) return t("check.lt", { n: f.exclusiveMax });
    if (f.max !== undefined && value > f.max) return t("check.le", { n: f.max });
  }
  if (f.type === "string" && f.minLength && value.length < f.minLength) return t("check.min_length", { n: f.minLength });
  return "";
}

function checkAll(el, fields) {
  let first = null;
  for (const f of fields) {
    const message = checkField(f, el.querySelector(`#${fieldId(f.name)}`));
    setError(el, f.name, message);
    if (message && !first) first = f.name;
  }
  return first;
}

/** Shows `message` under the field (opening its group and focusing it); an empty message clears it. */
function setError(el, name, message) {
  const box = el.querySelector(`#${fieldId(name)}-err`);
  const input = el.querySelector(`#${fieldId(name)}`);
  if (!box || !input) return false;
  box.hidden = !message;
  box.textContent = message || "";
  input.setAttribute("aria-invalid", message ? "true" : "false");
  return true;
}

/** Opens the group holding `name` and moves the focus there. */
export function revealField(el, name) {
  const input = el.querySelector(`#${fieldId(name)}`);
  if (!input) return;
  const group = input.closest("details");
  if (group) group.open = true;
  input.focus();
}
