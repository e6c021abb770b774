/* System view: live CPU/RAM/GPU usage from /sysstatus (polled while the view is open) with a short
   history chart, and the hardware facts from /hardware. */

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { escapeHtml, mib, num } from "./format.js";
import { t } from "./i18n.js";

const POLL_MS = 2000;
const HISTORY = 150;  // samples kept in the chart (5 minutes at 2 s)
let root, timer = null, chart = null;
const history = { t: [], cpu: [], ram: [], gpu: [] };

export function mount(el) {
  root = el;
  root.innerHTML = `
    <h1 data-i18n="system.title">System</h1>
    <div class="cards" id="sys-cards">
      <div class="card meter-card"><h2 data-i18n="system.cpu">CPU</h2>
        <meter id="sys-cpu-meter" min="0" max="100" low="70" high="90" optimum="0" value="0" aria-labelledby="sys-cpu"></meter>
        <p class="figure" id="sys-cpu">–</p></div>
      <div class="card meter-card"><h2 data-i18n="system.ram">RAM</h2>
        <meter id="sys-ram-meter" min="0" max="100" low="70" high="90" optimum="0" value="0" aria-labelledby="sys-ram"></meter>
        <p class="figure" id="sys-ram">–</p></div>
      <div class="card meter-card"><h2 data-i18n="system.gpu">GPU</h2>
        <div id="sys-gpus"><p class="muted" data-i18n="system.no_gpu">No GPU found</p></div></div>
    </div>
    <div class="card"><h2 data-i18n="system.history">Usage history</h2><div id="sys-chart" class="chart" role="img" data-i18n-aria="chart.system" aria-label="CPU, RAM and GPU usage over time"></div></div>
    <div class="card"><h2 data-i18n="system.hardware">Hardware</h2><dl class="facts" id="sys-hardware"></dl></div>`;
}

function renderGpus(status) {
  const box = root.querySelector("#sys-gpus");
  if (!status.gpus?.length) {
    box.innerHTML = `<p class="muted" data-i18n="system.no_gpu">${t("system.no_gpu")}</p>`;
    return;
  }
  box.innerHTML = status.gpus.map((g) => `
    <div class="gpu"><strong>${escapeHtml(g.index)}: ${escapeHtml(g.name)}</strong>
      <meter min="0" max="100" value="${g.gpu_util_percent ?? 0}" aria-label="GPU ${escapeHtml(g.index)}"></meter>
      <p class="figure">${num(g.gpu_util_percent, 0)} % · ${mib(g.gpu_mem_used)} / ${mib(g.gpu_mem_total)}
      ${g.gpu_temperature !== null ? ` · ${num(g.gpu_temperature, 0)} °C` : ""}</p></div>`).join("");
}

function record(status) {
  history.t.push(Date.now() / 1000);
  history.cpu.push(status.cpu_percent);
  history.ram.push(status.ram_percent);
  history.gpu.push(status.gpu_util_percent ?? null);
  for (const k of Object.keys(history)) if (history[k].length > HISTORY) history[k].shift();
  chart?.setData(history.t, [history.cpu, history.ram, history.gpu]);
}

async function refresh() {
  try {
    const s = await api("/sysstatus");
    root.querySelector("#sys-cpu").textContent = `${num(s.cpu_percent, 1)} %`;
    root.querySelector("#sys-cpu-meter").value = s.cpu_percent;
    root.querySelector("#sys-ram").textContent = `${mib(s.ram_used)} / ${mib(s.ram_total)} (${num(s.ram_percent, 1)} %)`;
    root.querySelector("#sys-ram-meter").value = s.ram_percent;
    renderGpus(s);
    record(s);
  } catch (err) {
    root.querySelector("#sys-cpu").textContent = err.message;
  }
}

async function loadHardware() {
  const hw = await api("/hardware");
  const rows = [
    ["system.platform", hw.platform], ["system.python", hw.python],
    ["system.cpus", `${hw.num_cpus} (${hw.num_physical_cpus ?? "?"} ${t("system.physical")})`],
    ["system.ram_total", mib(hw.ram_total)],
    ["system.cuda", hw.cuda ? `${t("common.yes")} (${hw.num_cuda})` : t("common.no")],
    ["system.mps", hw.mps ? t("common.yes") : t("common.no")],
    ["system.gpus", hw.gpus?.length ? hw.gpus.join(", ") : "–"],
  ];
  root.querySelector("#sys-hardware").innerHTML = rows.map(([k, v]) =>
    `<dt data-i18n="${k}">${t(k)}</dt><dd>${escapeHtml(v)}</dd>`).join("");
}

export function show() {
  if (!chart) {
    chart = lineChart(root.querySelector("#sys-chart"), {
      series: [{ label: "CPU %" }, { label: "RAM %" }, { label: "GPU %" }], xLabel: "", time: true, height: 180, yRange: [0, 100],
    });
  }
  loadHardware().catch((err) => { root.querySelector("#sys-hardware").textContent = err.message; });
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

export function hide() {
  clearInterval(timer);
  timer = null;
}

/** Labels in the new language: the hardware facts (the live figures follow at the next poll). */
export function relabel() {
  if (timer) loadHardware().catch(() => {});
}
