/* Links between views about runs: "Reuse settings" hands a run's config to the Train view, and a run is
   shown by its name (when it has one) everywhere it appears. */

import { api } from "./api.js";

const REUSE_EVENT = "matelix:reuse";

/** Opens the Train view filled with `config` (a run's train_config); `name` says where it came from. */
export function reuseSettings(config, name) {
  window.dispatchEvent(new CustomEvent(REUSE_EVENT, { detail: { config, name } }));
  location.hash = "#train";
}

export function onReuse(fn) {
  window.addEventListener(REUSE_EVENT, (event) => fn(event.detail.config, event.detail.name));
}

/** What a run is called: its name, else its folder name (`<model>_<time>`). */
export function runTitle(run) {
  return run?.config?.run_name || run?.run_id || "";
}

/** run id -> run name, for the runs that have one (from /trainings). */
export async function runNames() {
  const runs = await api("/trainings").catch(() => []);
  return new Map(runs.filter((r) => r.config?.run_name).map((r) => [r.run_id, r.config.run_name]));
}
