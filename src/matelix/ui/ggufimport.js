/* The Train view's "Import a GGUF file" box: lists .gguf files under models/ and converts one into an HF
   model folder (POST /models/import-gguf), then refreshes the model picker. */
import { api } from "./api.js";
import { bytes, escapeHtml } from "./format.js";
import { t } from "./i18n.js";

export const GGUF_HTML = `
  <details id="train-gguf">
    <summary data-i18n="gguf.title">Import a GGUF file</summary>
    <p class="muted" data-i18n="gguf.hint">Put a .gguf file into models/ under the lab's home; it is converted once into a model folder.</p>
    <label for="gguf-file" data-i18n="gguf.file">GGUF file</label>
    <select id="gguf-file"></select>
    <label for="gguf-name" data-i18n="gguf.name">New model name</label>
    <div class="row">
      <input id="gguf-name" type="text" maxlength="96" autocomplete="off" spellcheck="false" class="grow">
      <button type="button" id="gguf-import" data-i18n="gguf.import">Import</button>
    </div>
    <p id="gguf-msg" class="muted" role="status"></p>
  </details>`;

/** Wire the box inside `root`; `onImported(modelDir)` runs after a successful import. */
export function initGgufImport(root, onImported) {
  const box = root.querySelector("#train-gguf");
  const select = box.querySelector("#gguf-file");
  const name = box.querySelector("#gguf-name");
  const msg = box.querySelector("#gguf-msg");
  const button = box.querySelector("#gguf-import");
  const refresh = async () => {
    const files = await api("/models/gguf");
    select.innerHTML = files.length
      ? files.map((f) => `<option value="${escapeHtml(f.file)}">${escapeHtml(f.file)} (${bytes(f.size_bytes)})</option>`).join("")
      : `<option value="">${escapeHtml(t("gguf.none"))}</option>`;
    button.disabled = !files.length;
    if (files.length && !name.value) name.value = files[0].file.split("/").pop().replace(/\.gguf$/i, "").toLowerCase();
  };
  select.addEventListener("change", () => { name.value = select.value.split("/").pop().replace(/\.gguf$/i, "").toLowerCase(); });
  box.addEventListener("toggle", () => { if (box.open) refresh().catch((e) => { msg.textContent = e.message; }); });
  button.addEventListener("click", async () => {
    button.disabled = true;
    msg.className = "muted";
    msg.textContent = t("gguf.working");
    try {
      const out = await api("/models/import-gguf", { method: "POST", body: { file: select.value, name: name.value.trim() } });
      msg.className = "ok";
      msg.textContent = t("gguf.done").replace("{model}", out.model_dir);
      await onImported(out.model_dir);
    } catch (e) {
      msg.className = "error";
      msg.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
}
