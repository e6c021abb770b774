/* Display formatting shared by the views: numbers, durations, sizes, and HTML escaping. */

import { language } from "./i18n.js";

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** A number in the UI language's format; very small or large ones in scientific notation (`5,0E-5`). */
export function num(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e6)) return scientific(value);
  return value.toLocaleString(language(), { maximumFractionDigits: digits });
}

/** Scientific notation in the UI language (`3.5E-4`, German `3,5E-4`). */
export function scientific(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString(language(), { notation: "scientific", maximumFractionDigits: digits });
}

/** A learning rate: always scientific, so the same value reads the same everywhere. */
export function learningRate(value) {
  return value === 0 ? "0" : scientific(value);
}

/** A fixed number of decimals in the UI language (`4.8`, German `4,8`). */
export function fixed(value, decimals = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString(language(), { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export function percent(value, decimals = 0) {
  return `${fixed(value, decimals)} %`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

/** A duration as a person says it: `40 s`, `12 min`, `2.5 h` (German `2,5 h`). */
export function roughDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 90) return `${fixed(Math.max(1, Math.round(seconds)), 0)} s`;
  if (seconds < 90 * 60) return `${fixed(Math.round(seconds / 60), 0)} min`;
  return `${fixed(seconds / 3600, 1)} h`;
}

export function mib(value) {
  if (value === null || value === undefined) return "–";
  return value >= 1024 ? `${fixed(value / 1024, 1)} GiB` : `${fixed(value, 0)} MiB`;
}

export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = value, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${fixed(v, i ? 1 : 0)} ${units[i]}`;
}

export function dateTime(value) {
  if (!value) return "–";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString(language());
}
