/* Rendering of rendered training text: segments whose tokens are trained (have labels) are highlighted,
   masked ones are dimmed. Used by the live preview (/livepreview) and the dataset preview. */

import { escapeHtml } from "./format.js";
import { t } from "./i18n.js";

/** One sample: a list of {text, trained} segments. */
export function segmentsHtml(segments) {
  return (segments || []).map((seg) => seg.trained
    ? `<mark class="seg trained" title="${escapeHtml(t("preview.trained"))}">${escapeHtml(seg.text)}</mark>`
    : `<span class="seg masked">${escapeHtml(seg.text)}</span>`).join("");
}

/** Samples as [{label, segments}], each in its own captioned block. */
export function samplesHtml(samples) {
  return samples.map((s) => `
    <figure class="sample"><figcaption>${escapeHtml(s.label)}</figcaption>
      <pre class="sample-text">${segmentsHtml(s.segments)}</pre></figure>`).join("");
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
  return [...groups.entries()].map(([index, segs]) => ({ label: `#${index + 1}`, segments: segs }));
}

/** The live preview: the current batch (first row) and the latest sample generated from the preview prompt. */
export function renderPreview(box, data) {
  const batch = data?.batch;
  const gen = data?.sample;
  if (!batch && !gen) {
    box.innerHTML = `<p class="muted">${escapeHtml(t("preview.none"))}</p>`;
    return;
  }
  box.innerHTML = `
    ${gen ? `<div class="generation"><h3>${escapeHtml(t("preview.generated", { step: gen.step ?? "?" }))}</h3>
      ${gen.prompt ? `<p class="prompt">${escapeHtml(gen.prompt)}</p>` : ""}
      <pre class="gen-text">${escapeHtml(gen.completion ?? "–")}</pre></div>` : ""}
    ${batch ? `<h3>${escapeHtml(t("preview.batch", { step: batch.step ?? "?" }))}</h3>${LEGEND()}
      ${samplesHtml(bySample(batch.segments))}` : ""}`;
}
