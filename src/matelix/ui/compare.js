/* Side-by-side chat (part of the Chat view): one conversation sent to two or more models at once, every answer
   streamed into its own column with its token counts and tokens/s. All columns get the same sampling settings
   (the Chat view's) and the same seed, so base vs run, run vs run and checkpoint vs checkpoint differ only in
   the model. Adapters of one base answer in one batch on the server. Keyboard: Tab through the model boxes
   (Space ticks), Enter sends, Shift+Enter is a new line, Escape stops every stream. */

import { api } from "./api.js";
import { escapeHtml, num } from "./format.js";
import { t } from "./i18n.js";

const STORE = "matelix.compare";  // {models: [ids], turns: [{user, seed, answers: {id: reply}}]}
const SEED_LIMIT = 2 ** 31;

let root, options = { models: [], label: (m) => m.id, params: () => ({}), system: () => "" };
let controller = null;

function state() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) || "null");
    if (saved && Array.isArray(saved.models) && Array.isArray(saved.turns)) return saved;
  } catch { /* broken: start again */ }
  return { models: [], turns: [] };
}

const save = (s) => localStorage.setItem(STORE, JSON.stringify(s));

export function mountCompare(el) {
  root = el;
  root.innerHTML = `
    <div class="row spread"><h2 id="compare-title" data-i18n="compare.title">Compare side by side</h2>
      <button type="button" id="compare-clear" data-i18n="compare.clear">Clear</button></div>
    <p class="muted" data-i18n="compare.help">Tick two or more models: each message goes to all of them with the same settings and seed.</p>
    <fieldset id="compare-models" class="compare-models"><legend data-i18n="compare.models">Models</legend></fieldset>
    <div id="compare-columns" class="compare-columns" aria-live="polite"></div>
    <div id="compare-error" class="error" role="alert" hidden></div>
    <form id="compare-form" class="chat-input">
      <label for="compare-text" class="sr-only" data-i18n="compare.message">Message to every model</label>
      <textarea id="compare-text" rows="2" data-i18n-placeholder="compare.placeholder" placeholder="Message to every ticked model (Enter sends, Esc stops)"></textarea>
      <div class="col">
        <button type="submit" id="compare-send" class="primary" data-i18n="compare.send">Send to all</button>
        <button type="button" id="compare-stop" class="danger" data-i18n="chat.stop" disabled>Stop</button>
      </div>
    </form>`;
  root.querySelector("#compare-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  root.querySelector("#compare-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  root.addEventListener("keydown", (e) => { if (e.key === "Escape") controller?.abort(); });
  root.querySelector("#compare-stop").addEventListener("click", () => controller?.abort());
  root.querySelector("#compare-clear").addEventListener("click", () => { save({ ...state(), turns: [] }); render(); });
  root.querySelector("#compare-models").addEventListener("change", () => {
    const ticked = [...root.querySelectorAll("#compare-models input:checked")].map((b) => b.value);
    save({ ...state(), models: ticked });
    renderColumns();
  });
}

/** The models on offer and how to label them; the Chat view's sampling settings and system prompt. */
export function setCompareOptions(next) {
  options = next;
  render();
}

function render() {
  const s = state();
  const known = new Set(options.models.map((m) => m.id));
  root.querySelector("#compare-models").innerHTML = `<legend>${escapeHtml(t("compare.models"))}</legend>` +
    options.models.map((m, i) => `<label class="check"><input type="checkbox" id="compare-model-${i}" value="${escapeHtml(m.id)}"${s.models.includes(m.id) ? " checked" : ""}> ${escapeHtml(options.label(m))}</label>`).join("");
  if (s.models.some((id) => !known.has(id))) save({ ...s, models: s.models.filter((id) => known.has(id)) });
  renderColumns();
}

function statsText(reply) {
  if (!reply) return "";
  const parts = [];
  if (reply.usage) parts.push(t("chat.tokens", { prompt: reply.usage.prompt_tokens, completion: reply.usage.completion_tokens }));
  if (reply.tokensPerSecond) parts.push(`${num(reply.tokensPerSecond, 1)} tok/s`);
  if (reply.stopped) parts.push(t("chat.stopped"));
  if (reply.error) parts.push(reply.error);
  return parts.join(" · ");
}

function columnHtml(id, turns) {
  const model = options.models.find((m) => m.id === id);
  const items = turns.map((turn) => {
    const reply = turn.answers[id];
    return `<li class="msg user"><span class="who">${escapeHtml(t("chat.role_user"))}</span><div class="text">${escapeHtml(turn.user)}</div></li>
      <li class="msg assistant${reply?.pending ? " pending" : ""}"><span class="who">${escapeHtml(t("chat.role_assistant"))}</span>
      <div class="text">${escapeHtml(reply?.content || (reply?.pending ? t("chat.writing") : ""))}</div>
      <small class="stats">${escapeHtml(statsText(reply))}</small></li>`;
  }).join("");
  return `<section class="compare-col" data-model="${escapeHtml(id)}" aria-label="${escapeHtml(model ? options.label(model) : id)}">
    <h3>${escapeHtml(model ? options.label(model) : id)}</h3><ol class="messages">${items}</ol></section>`;
}

function renderColumns() {
  const s = state();
  const box = root.querySelector("#compare-columns");
  box.innerHTML = s.models.length < 2 ? `<p class="muted empty">${escapeHtml(t("compare.pick_two"))}</p>`
    : s.models.map((id) => columnHtml(id, s.turns)).join("");
  const last = s.turns.at(-1);
  if (last?.seed !== undefined && s.models.length >= 2) {
    box.insertAdjacentHTML("afterbegin", `<p class="muted compare-seed">${escapeHtml(t("compare.seed", { seed: last.seed }))}</p>`);
  }
  root.querySelector("#compare-send").disabled = Boolean(controller) || s.models.length < 2;
}

/** Sends the conversation of column `id` (its own earlier answers) to /chat_stream; fills `reply` as it streams. */
async function stream(id, turns, reply, seed, signal, readEvents, onChange) {
  const messages = [];
  for (const turn of turns) {
    messages.push({ role: "user", content: turn.user });
    const answer = turn.answers[id];
    if (answer !== reply && answer?.content) messages.push({ role: "assistant", content: answer.content });
  }
  const body = { messages, model_dir: id, ...options.params(), seed };
  const system = options.system();
  if (system) body.system = system;
  const started = performance.now();
  try {
    const res = await api("/chat_stream", { method: "POST", body, signal, raw: true, headers: { Accept: "text/event-stream" } });
    await readEvents(res, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      if (ev.delta) { reply.content += ev.delta; delete reply.pending; onChange(); }
      if (ev.usage) reply.usage = ev.usage;
      if (ev.finish_reason) reply.finish = ev.finish_reason;
    });
  } catch (err) {
    if (err.name === "AbortError") reply.stopped = true;
    else reply.error = err.message;
  } finally {
    const seconds = (performance.now() - started) / 1000;
    if (reply.usage?.completion_tokens && seconds > 0) reply.tokensPerSecond = reply.usage.completion_tokens / seconds;
    delete reply.pending;
    onChange();
  }
}

let readEventsFn = null;
/** The Chat view's server-sent-event reader (one implementation for both). */
export function useEventReader(fn) {
  readEventsFn = fn;
}

async function send() {
  const input = root.querySelector("#compare-text");
  const text = input.value.trim();
  const s = state();
  if (!text || controller || s.models.length < 2) return;
  const fixed = Number(options.params().seed);
  const seed = Number.isInteger(fixed) && fixed >= 0 ? fixed : Math.floor(Math.random() * SEED_LIMIT);
  const turn = { user: text, seed, answers: Object.fromEntries(s.models.map((id) => [id, { content: "", pending: true }])) };
  s.turns.push(turn);
  save(s);
  input.value = "";
  controller = new AbortController();
  root.querySelector("#compare-stop").disabled = false;
  renderColumns();
  let queued = false;
  const redraw = () => {  // one redraw per frame, however many columns stream at once
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; save(s); renderColumns(); });
  };
  await Promise.all(s.models.map((id) => stream(id, s.turns, turn.answers[id], seed, controller.signal, readEventsFn, redraw)));
  controller = null;
  save(s);
  renderColumns();
  root.querySelector("#compare-stop").disabled = true;
  input.focus();
}

export function relabelCompare() {
  if (root) render();
}
