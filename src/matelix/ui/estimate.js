/* The time estimate before Start: the server measures a few real optimizer steps of the chosen model and
   settings on this machine (POST /estimate) and counts the run's steps from the dataset; a long run comes
   with cheaper settings, each a button that applies it to the form. */

import { api } from "./api.js";
import { escapeHtml, fixed, num, roughDuration } from "./format.js";
import { t } from "./i18n.js";

let latest = 0;  // only the answer to the newest request is shown

function suggestionText(s) {
  if (s.code === "shorter_sequences") return t("estimate.shorter_sequences", { n: num(s.chunk_size, 0) });
  if (s.code === "fewer_epochs") return t("estimate.fewer_epochs", { n: num(s.num_train_epochs, 0) });
  return t(`estimate.${s.code}`);
}

function suggestionValues(s) {
  if (s.code === "shorter_sequences") return { chunk_size: s.chunk_size };
  if (s.code === "fewer_epochs") return { num_train_epochs: s.num_train_epochs };
  return { train_mode: "lora" };
}

/** Measures the run described by `config` and shows the expected duration in `box`; `apply(values)` puts a
    suggested setting into the form. */
export async function showEstimate(box, config, apply) {
  const ticket = ++latest;
  box.hidden = false;
  box.innerHTML = `<p class="muted">${escapeHtml(t("estimate.running"))}</p>`;
  let answer;
  try {
    answer = await api("/estimate", { method: "POST", body: config });
  } catch (err) {
    if (ticket === latest) box.innerHTML = `<p class="error" role="alert">${escapeHtml(err.message)}</p>`;
    return;
  }
  if (ticket !== latest) return;
  const text = t("estimate.result", { time: roughDuration(answer.seconds), steps: num(answer.steps, 0),
    per_step: fixed(answer.seconds_per_step, 2), device: answer.device.toUpperCase() });
  box.innerHTML = `<p id="train-estimate-text" class="${answer.long ? "warn" : ""}" data-seconds="${answer.seconds}">${escapeHtml(text)}</p>
    ${answer.long && answer.suggestions.length ? `<p>${escapeHtml(t("estimate.long"))}</p><div class="row">
      ${answer.suggestions.map((s, i) => `<button type="button" data-suggestion="${i}">${escapeHtml(suggestionText(s))}</button>`).join("")}</div>` : ""}`;
  for (const button of box.querySelectorAll("[data-suggestion]")) {
    button.addEventListener("click", () => {
      apply(suggestionValues(answer.suggestions[Number(button.dataset.suggestion)]));
      button.disabled = true;
      button.insertAdjacentHTML("afterend", `<small class="muted">${escapeHtml(t("estimate.applied"))}</small>`);
    });
  }
}
