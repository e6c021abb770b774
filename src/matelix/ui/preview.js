/* Rendering of rendered training text: segments whose tokens are trained (have labels) are highlighted,
   masked ones are dimmed. Used by the live preview (/livepreview) and the dataset preview. */

import { escapeHtml } from "./format.js";
import { t } from "./i18n.js";

function isTrained(segment) {
  return Boolean(segment.trained ?? segment.train ?? segment.label ?? segment.loss);
}

/** One sample: a list of {text, trained} segments, or a plain string. */
export function segmentsHtml(segments) {
  if (typeof segments === "string") return `<span class="seg">${escapeHtml(segments)}</span>`;
  return (segments || []).map((seg) => isTrained(seg)
    ? `<mark class="seg trained" title="${escapeHtml(t("preview.trained"))}">${escapeHtml(seg.text)}</mark>`
    : `<span class="seg masked">${escapeHtml(seg.text)}</span>`).join("");
}

export function samplesHtml(samples) {
  return (samples || []).map((s, i) => `
    <figure class="sample"><figcaption>${escapeHtml(typeof s.index === "string" ? s.index : `#${s.index ?? i + 1}`)}${s.tokens ? ` · ${escapeHtml(s.tokens)} tokens` : ""}</figcaption>
      <pre class="sample-text">${segmentsHtml(s.segments ?? s.text ?? s)}</pre></figure>`).join("");
}

const LEGEND = () => `<p class="legend"><mark class="seg trained">${escapeHtml(t("preview.trained"))}</mark>
  <span class="seg masked">${escapeHtml(t("preview.masked"))}</span></p>`;

/** Splits a packed row's segments ({text, trained, sample}) into one list per sample. */
function bySample(segments) {
  const groups = new Map();
  for (const seg of segments || []) {
    const key = seg.sample ?? 0;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(seg);
  }
  return [...groups.entries()].map(([index, segs]) => ({ index: index + 1, segments: segs }));
}

/** The live preview: the current batch (first row) and the latest sample generated from the preview prompt. */
export function renderPreview(box, data) {
  const batch = data?.batch;
  const gen = data?.sample;
  if (!batch && !gen) {
    box.innerHTML = `<p class="muted">${escapeHtml(t("preview.none"))}</p>`;
    return;
  }
  const completion = gen?.completion ?? gen?.text;
  box.innerHTML = `
    ${gen ? `<div class="generation"><h3>${escapeHtml(t("preview.generated", { step: gen.step ?? "?" }))}</h3>
      ${gen.prompt ? `<p class="prompt">${escapeHtml(gen.prompt)}</p>` : ""}
      <pre class="gen-text">${escapeHtml(completion ?? "–")}</pre></div>` : ""}
    ${batch ? `<h3>${escapeHtml(t("preview.batch", { step: batch.step ?? "?" }))}</h3>${LEGEND()}
      ${samplesHtml(batch.samples ?? bySample(batch.segments))}` : ""}`;
}
