/* Colour scheme: light or dark, following the system (`prefers-color-scheme`) unless the switch in the top
   bar picks one; the choice is remembered. The page's colours are CSS variables keyed on <html data-theme>. */

const THEME_STORAGE = "matelix.theme";
const CHOICES = ["auto", "light", "dark"];
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");
let choice = "auto";
const listeners = [];

function effective() {
  return choice === "auto" ? (systemDark.matches ? "dark" : "light") : choice;
}

function apply() {
  const next = effective();
  if (document.documentElement.dataset.theme === next) return;
  document.documentElement.dataset.theme = next;
  for (const fn of listeners) fn(next);
}

export function themeChoice() {
  return choice;
}

export function setTheme(next) {
  choice = CHOICES.includes(next) ? next : "auto";
  localStorage.setItem(THEME_STORAGE, choice);
  apply();
}

/** Reads the remembered choice and follows the system's scheme while the choice is `auto`. */
export function initTheme() {
  const saved = localStorage.getItem(THEME_STORAGE);
  choice = CHOICES.includes(saved) ? saved : "auto";
  systemDark.addEventListener("change", apply);
  apply();
}

/** `fn(theme)` runs whenever the scheme in use changes (charts redraw in its colours). */
export function onThemeChange(fn) {
  listeners.push(fn);
}
