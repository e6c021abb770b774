/* German/English labels. The default follows the browser (German when it prefers German), a choice made
   with the switch is remembered. Static markup carries data-i18n* attributes; code calls t(). */

import { STRINGS } from "./strings.js";

const LANG_STORAGE = "matelix.lang";
let lang = "en";
const listeners = [];

export function language() {
  return lang;
}

export function initLanguage() {
  const saved = localStorage.getItem(LANG_STORAGE);
  const browser = (navigator.languages?.[0] || navigator.language || "en").toLowerCase();
  lang = saved in STRINGS ? saved : browser.startsWith("de") ? "de" : "en";
}

export function setLanguage(next) {
  if (!(next in STRINGS) || next === lang) return;
  lang = next;
  localStorage.setItem(LANG_STORAGE, next);
  for (const fn of listeners) fn(next);
}

export function onLanguageChange(fn) {
  listeners.push(fn);
}

/** The label for `key` in the current language ({name} placeholders filled from `vars`). */
export function t(key, vars = {}) {
  const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Whether a label exists (form fields without one fall back to their config name). */
export function has(key) {
  return key in STRINGS.en;
}

export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
}
