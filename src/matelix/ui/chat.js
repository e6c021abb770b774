/* Chat view: pick a model, load/unload it, chat with a streamed reply (/chat_stream as server-sent
   events) that Stop cancels (AbortController). Each model keeps its own conversation in this browser until
   it is cleared; every reply shows its token counts and tokens/s. A run still training is offered as its
   latest checkpoint; below, compare.js sends one conversation to several models side by side. */

import { api } from "./api.js";
import { escapeHtml, num } from "./format.js";
import { has, t } from "./i18n.js";
import { runNames } from "./reuse.js";
import { mountCompare, relabelCompare, setCompareOptions, useEventReader } from "./compare.js";

const STORE_PREFIX = "matelix.chat.";
const MODEL_KEY = "matelix.chatModel";         // the model picked last
const SETTINGS_KEY = "matelix.chatSettings";   // system prompt and sampling parameters
const PARAMS = [
  ["temperature", 0.7, 0, 2, 0.05], ["top_p", 0.95, 0, 1, 0.01], ["top_k", 50, 0, 1000, 1],
  ["max_new_tokens", 128, 1, 8192, 1], ["repetition_penalty", 1.1, 0.5, 2, 0.01],
];

let root, models = [], controller = null;

export function mount(el) {
  root = el;
  root.innerHTML = `
    <h1 data-i18n="chat.title">Chat</h1>
    <div class="chat-layout">
      <aside class="card chat-side">
        <label for="chat-model" data-i18n="chat.model">Model</label>
        <select id="chat-model"></select>
        <label for="chat-quantization" data-i18n="chat.quantization">Weights</label>
        <select id="chat-quantization">
          <option value="none" data-i18n="chat.quant_none">fp32 (exact)</option>
          <option value="int8" data-i18n="chat.quant_int8">int8 (fastest on a CPU)</option>
          <option value="fp16" data-i18n="chat.quant_fp16">fp16 (exact, fast with many chats)</option>
        </select>
        <div class="row">
          <button type="button" id="chat-load" data-i18n="chat.load">Load</button>
          <button type="button" id="chat-unload" data-i18n="chat.unload">Unload</button>
        </div>
        <p id="chat-model-state" class="muted" aria-live="polite"></p>
        <label for="chat-system" data-i18n="chat.system">System prompt</label>
        <textarea id="chat-system" rows="3"></textarea>
        <fieldset class="params"><legend data-i18n="chat.params">Parameters</legend>
          ${PARAMS.map(([name, value, min, max, step]) => `<div class="field">
            <label for="chat-${name}" data-i18n="field.${name}">${name}</label>
            <input type="number" id="chat-${name}" value="${value}" min="${min}" max="${max}" step="${step}"></div>`).join("")}
        </fieldset>
      </aside>
      <section class="card chat-main" aria-labelledby="chat-conv-title">
        <div class="row spread"><h2 id="chat-conv-title" data-i18n="chat.conversation">Conversation</h2>
          <button type="button" id="chat-clear" data-i18n="chat.clear">Clear</button></div>
        <ol id="chat-messages" class="messages" aria-live="polite"></ol>
        <div id="chat-error" class="error" role="alert" hidden></div>
        <form id="chat-form" class="chat-input">
          <label for="chat-text" class="sr-only" data-i18n="chat.message">Message</label>
          <textarea id="chat-text" rows="3" data-i18n-placeholder="chat.placeholder" placeholder="Message (Enter sends, Shift+Enter new line)"></textarea>
          <div class="col">
            <button type="submit" id="chat-send" class="primary" data-i18n="chat.send">Send</button>
            <button type="button" id="chat-stop" class="danger" data-i18n="chat.stop" disabled>Stop</button>
          </div>
        </form>
      </section>
    </div>
    <section class="card compare" id="chat-compare" aria-labelledby="compare-title"></section>`;
  mountCompare(root.querySelector("#chat-compare"));
  useEventReader(readEvents);
  root.querySelector("#chat-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  root.querySelector("#chat-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  root.querySelector("#chat-stop").addEventListener("click", () => controller?.abort());
  root.querySelector("#chat-clear").addEventListener("click", () => { save([]); render(); });
  root.querySelector("#chat-load").addEventListener("click", load);
  root.querySelector("#chat-unload").addEventListener("click", unload);
  root.querySelector("#chat-model").addEventListener("change", () => {
    localStorage.setItem(MODEL_KEY, model());
    render();
    refreshState();
  });
  restoreSettings();
  root.querySelector(".chat-side").addEventListener("input", saveSettings);
}

function saveSettings() {
  const params = Object.fromEntries(PARAMS.map(([name]) => [name, root.querySelector(`#chat-${name}`).value]));
  localStorage.setItem(SETTINGS_KEY, JSON.stringify({ system: root.querySelector("#chat-system").value, params }));
}

function restoreSettings() {
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "null"); } catch { /* broken: defaults */ }
  if (!saved) return;
  root.querySelector("#chat-system").value = saved.system || "";
  for (const [name] of PARAMS) {
    const value = saved.params?.[name];
    if (value !== undefined && value !== "") root.querySelector(`#chat-${name}`).value = value;
  }
}

const model = () => root.querySelector("#chat-model").value;
const conversation = () => JSON.parse(localStorage.getItem(STORE_PREFIX + model()) || "[]");
const save = (messages) => localStorage.setItem(STORE_PREFIX + model(), JSON.stringify(messages));

function showError(text) {
  const box = root.querySelector("#chat-error");
  box.hidden = !text;
  box.textContent = text || "";
}

function statsText(m) {
  if (!m.usage && !m.tokensPerSecond) return m.stopped ? t("chat.stopped") : "";
  const parts = [];
  if (m.usage) parts.push(t("chat.tokens", { prompt: m.usage.prompt_tokens, completion: m.usage.completion_tokens }));
  if (m.tokensPerSecond) parts.push(`${num(m.tokensPerSecond, 1)} tok/s`);
  if (m.finish) parts.push(has(`chat.finish_${m.finish}`) ? t(`chat.finish_${m.finish}`) : m.finish);
  if (m.stopped) parts.push(t("chat.stopped"));
  return parts.join(" · ");
}

function messageHtml(m) {
  // A reply that has no text yet says what is happening (loading the model, writing) instead of standing empty.
  const waiting = m.pending && !m.content;
  return `<li class="msg ${m.role}${waiting ? " pending" : ""}"><span class="who">${escapeHtml(t(`chat.role_${m.role}`))}</span>
    <div class="text">${waiting ? `<span class="placeholder">${escapeHtml(t(m.pending))}</span>` : escapeHtml(m.content)}</div>${m.role === "assistant" ? `<small class="stats">${escapeHtml(statsText(m))}</small>` : ""}</li>`;
}

function render() {
  const list = root.querySelector("#chat-messages");
  const messages = conversation();
  list.innerHTML = messages.length ? messages.map(messageHtml).join("")
    : `<li class="muted empty">${escapeHtml(t("chat.empty"))}</li>`;
  list.scrollTop = list.scrollHeight;
}

/** How a model is named in the lists: a run by its name, a running run as its latest checkpoint. */
function modelLabel(m, names) {
  const run = names.get(m.run || m.id) || m.name;
  if (m.kind === "latest") return `${run} (${t("chat.latest_step", { step: m.step })})`;
  if (m.kind === "checkpoint") return `${run} (${t("chat.checkpoint_step", { step: m.step })})`;
  return `${names.get(m.id) || m.name}${m.kind === "run" ? ` (${t("chat.run")})` : ""}`;
}

async function loadModels() {
  let names;
  [models, names] = await Promise.all([api("/available_models"), runNames()]);
  const select = root.querySelector("#chat-model");
  const previous = select.value;
  select.innerHTML = models.map((m) => {
    const text = modelLabel(m, names);
    return `<option value="${escapeHtml(m.id)}" title="${escapeHtml(`${text} · ${m.id}`)}">${escapeHtml(text)}</option>`;
  }).join("");
  setCompareOptions({ models, label: (m) => modelLabel(m, names), params,
    system: () => root.querySelector("#chat-system").value.trim() });
  const wanted = decodeURIComponent(location.hash.split("/").slice(1).join("/"));
  const remembered = localStorage.getItem(MODEL_KEY);
  const known = (id) => id && models.some((m) => m.id === id);
  if (known(wanted)) select.value = wanted;
  else if (known(previous)) select.value = previous;
  else if (known(remembered)) select.value = remembered;
  select.title = select.selectedOptions[0]?.title || "";
  if (known(wanted)) localStorage.setItem(MODEL_KEY, wanted);
}

/** The entry of /inference_status for `id` (matched by id or path), or undefined when it is not resident. */
function residentEntry(statusAnswer, id) {
  const path = models.find((m) => m.id === id)?.path;  // run@latest is resident as the checkpoint it names
  return (statusAnswer?.loaded || []).find((m) => m.id === id || m.path === id || m.path?.endsWith(`/${id}`)
    || (path && m.path === path));
}

async function refreshState() {
  const box = root.querySelector("#chat-model-state");
  try {
    const s = await api("/inference_status");
    const entry = residentEntry(s, model());
    const loading = (s.loading || []).includes(model());
    const served = entry?.served_as === "adapter" ? t("chat.served_adapter", { base: entry.base_model })
      : entry?.served_as === "merged" ? t("chat.served_merged") : null;
    box.textContent = entry ? [t("chat.loaded"), served, entry.device, entry.quantization && entry.quantization !== "none" ? entry.quantization : entry.dtype,
      entry.parameters ? `${num(entry.parameters / 1e6, 1)} M ${t("chat.params_short")}` : null].filter(Boolean).join(" · ")
      : loading ? t("chat.loading") : t("chat.not_loaded");
    box.dataset.loaded = String(Boolean(entry));
  } catch (err) {
    box.textContent = err.message;
  }
}

async function load() {
  const box = root.querySelector("#chat-model-state");
  box.textContent = t("chat.loading");
  showError("");
  try {
    const quantization = root.querySelector("#chat-quantization").value;
    await api("/load_inference", { method: "POST", body: { model_dir: model(), quantization } });
  } catch (err) {
    showError(err.message);
  }
  await refreshState();
}

async function unload() {
  showError("");
  try {
    await api("/unload_inference", { method: "POST", body: { model_dir: model() } });
  } catch (err) {
    showError(err.message);
  }
  await refreshState();
}

function params() {
  const out = {};
  for (const [name] of PARAMS) {
    const v = root.querySelector(`#chat-${name}`).value;
    if (v !== "") out[name] = Number(v);
  }
  return out;
}

/** Reads the server-sent events of /chat_stream: `{"delta"}` pieces, a final `{"finish_reason", "usage"}`,
    `{"error"}` when generation fails, then `[DONE]`. */
async function readEvents(res, onEvent) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(0, cut).split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim()).join("\n");
      buffer = buffer.slice(cut + 2);
      if (data && data !== "[DONE]") onEvent(JSON.parse(data));
    }
  }
}

async function send() {
  const input = root.querySelector("#chat-text");
  const text = input.value.trim();
  if (!text || controller) return;
  showError("");
  const messages = conversation();
  messages.push({ role: "user", content: text });
  const stateBox = root.querySelector("#chat-model-state");
  const resident = stateBox.dataset.loaded === "true";
  const reply = { role: "assistant", content: "", pending: resident ? "chat.writing" : "chat.loading_model" };
  if (!resident) stateBox.textContent = t("chat.loading");
  messages.push(reply);
  save(messages);
  input.value = "";
  render();
  const body = { messages: messages.slice(0, -1).map(({ role, content }) => ({ role, content })), model_dir: model(), ...params() };
  const system = root.querySelector("#chat-system").value.trim();
  if (system) body.system = system;
  controller = new AbortController();
  root.querySelector("#chat-send").disabled = true;
  root.querySelector("#chat-stop").disabled = false;
  const started = performance.now();
  const textBox = () => root.querySelector("#chat-messages li.msg:last-child .text");
  try {
    const res = await api("/chat_stream", { method: "POST", body, signal: controller.signal, raw: true,
      headers: { Accept: "text/event-stream" } });
    await readEvents(res, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      if (ev.delta) {
        reply.content += ev.delta;
        textBox().textContent = reply.content;
        if (reply.pending) {  // the first piece: the model is loaded now
          delete reply.pending;
          textBox().parentElement.classList.remove("pending");
          if (!resident) refreshState();
        }
        root.querySelector("#chat-messages").scrollTop = 1e9;
      }
      if (ev.usage) reply.usage = ev.usage;
      if (ev.finish_reason) reply.finish = ev.finish_reason;
    });
  } catch (err) {
    if (err.name === "AbortError") reply.stopped = true;
    else {
      showError(err.message);
      if (!reply.content) messages.pop();
    }
  } finally {
    const seconds = (performance.now() - started) / 1000;  // whole request: prefill + decode
    const generated = reply.usage?.completion_tokens;
    if (generated && seconds > 0) reply.tokensPerSecond = generated / seconds;
    controller = null;
    delete reply.pending;
    save(messages);
    render();
    refreshState();
    root.querySelector("#chat-send").disabled = false;
    root.querySelector("#chat-stop").disabled = true;
    input.focus();
  }
}

export function show() {
  loadModels().then(() => { render(); refreshState(); }).catch((err) => showError(err.message));
}

/** Labels in the new language: the conversation and the model state. */
export function relabel() {
  relabelCompare();
  if (!model()) return;
  render();
  refreshState();
}
