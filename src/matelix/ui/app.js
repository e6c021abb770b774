/* Dashboard entry point: tabs (hash routing, so a reload keeps the view), language and colour-scheme
   switches, API key dialog, and the five views, each a module with mount(root) and optional show()/hide(). */

import { apiKey, onKeyRequired, setApiKey } from "./api.js";
import { applyI18n, initLanguage, language, onLanguageChange, setLanguage, t } from "./i18n.js";
import * as chat from "./chat.js";
import * as monitor from "./monitor.js";
import * as runs from "./runs.js";
import * as system from "./system.js";
import { initTheme, onThemeChange, setTheme, themeChoice } from "./theme.js";
import * as train from "./train.js";

const VIEWS = { train, monitor, runs, chat, system };
const DEFAULT_VIEW = "train";
let current = null;

function viewFromHash() {
  const name = location.hash.replace(/^#/, "").split("/")[0];
  return name in VIEWS ? name : DEFAULT_VIEW;
}

function showView(name) {
  if (current === name) return;
  if (current) VIEWS[current].hide?.();
  current = name;
  for (const key of Object.keys(VIEWS)) {
    const active = key === name;
    document.getElementById(`view-${key}`).hidden = !active;
    const tab = document.getElementById(`tab-${key}`);
    tab.setAttribute("aria-selected", String(active));
    tab.tabIndex = active ? 0 : -1;
  }
  window.scrollTo(0, 0);  // a view opens at its top, not at the scroll position of the one before
  VIEWS[name].show?.();
}

/** Arrow keys move between tabs (WAI-ARIA tabs pattern); Enter/Space follow the link as usual. */
function tabKeyboard(event) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
  if (!step) return;
  event.preventDefault();
  const next = tabs[(i + step + tabs.length) % tabs.length];
  next.focus();
  location.hash = next.getAttribute("href");
}

/** Asks for the key. Asked by a 401 it cannot be dismissed (nothing works without it); opened from the
    top bar it can be cancelled, which rejects the promise. */
function keyDialog(rejected, cancellable = false) {
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const cancel = document.getElementById("key-cancel");
  document.getElementById("key-error").hidden = !rejected;
  cancel.hidden = !cancellable;
  input.value = "";
  return new Promise((resolve, reject) => {
    const finish = () => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("cancel", onCancel);
      cancel.removeEventListener("click", onCancel);
      dialog.close();
    };
    const submit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      finish();
      resolve(key);
    };
    const onCancel = (event) => {
      event.preventDefault();
      if (!cancellable) return;
      finish();
      reject(new Error("cancelled"));
    };
    form.addEventListener("submit", submit);
    dialog.addEventListener("cancel", onCancel);
    cancel.addEventListener("click", onCancel);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

/** The top bar shows the active run's state and step from any view. */
function runBadge(status) {
  const badge = document.getElementById("run-badge");
  const active = monitor.isLive(status);
  badge.hidden = !active;
  if (active) badge.textContent = `${t(`state.${status.state}`)} · ${status.step ?? 0}/${status.total_steps ?? "?"}`;
}

/** The key button is there only where a key is in use (one is stored, or the server asked for one). */
function showKeyButton() {
  document.getElementById("key-button").hidden = !apiKey();
}

function main() {
  initLanguage();
  initTheme();
  const theme = document.getElementById("theme-select");
  theme.value = themeChoice();
  theme.addEventListener("change", () => setTheme(theme.value));
  onThemeChange(() => { for (const view of Object.values(VIEWS)) view.relabel?.(); });
  const select = document.getElementById("lang-select");
  select.value = language();
  select.addEventListener("change", () => setLanguage(select.value));
  onLanguageChange(() => {
    document.documentElement.lang = language();
    applyI18n(document);
    for (const view of Object.values(VIEWS)) view.relabel?.();
    runBadge(monitor.lastStatus());
  });
  onKeyRequired((rejected) => keyDialog(rejected).then((key) => {
    document.getElementById("key-button").hidden = false;
    return key;
  }));
  showKeyButton();
  monitor.onStatus(runBadge);
  document.getElementById("key-button").addEventListener("click", () => keyDialog(false, true)
    .then((key) => { setApiKey(key); location.reload(); }, () => {}));
  for (const [name, view] of Object.entries(VIEWS)) view.mount(document.getElementById(`view-${name}`));
  document.querySelector(".tabs").addEventListener("keydown", tabKeyboard);
  applyI18n(document);
  document.documentElement.lang = language();
  window.addEventListener("hashchange", () => showView(viewFromHash()));
  showView(viewFromHash());
  document.body.dataset.ready = "true";
}

main();
