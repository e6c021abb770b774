/* Line charts on the vendored uPlot (loaded as a classic script, global `uPlot`): x is a step or a time,
   each series may have gaps (null), points are appended as they arrive and the chart follows its box.
   Tick labels use the UI language's number format; axis colours follow the colour scheme. */

import { language } from "./i18n.js";

/** Whole-number tick spacings for step axes (no "2.5" steps). */
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000, 20_000, 50_000, 100_000];

export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

/** One tick label with `p` significant digits (scientific for learning-rate-sized values, or always). */
function tick(v, p, scientific) {
  const a = Math.abs(v);
  if (a !== 0 && (scientific || a < 0.01 || a >= 1e6)) {
    return v.toLocaleString(language(), { notation: "scientific", maximumSignificantDigits: p });
  }
  return Number(v.toPrecision(p)).toLocaleString(language(), { maximumFractionDigits: 20 });
}

/** Tick labels with just enough digits that neighbours differ (a learning rate moves in the 4th digit). */
function ticks(splits, scientific = false) {
  for (let p = 2; p <= 8; p++) {
    const out = splits.map((v) => (v === null || v === undefined ? "" : tick(v, p, scientific)));
    if (new Set(out).size === out.length) return out;
  }
  return splits.map(String);
}

/** A colour of the current scheme (a CSS custom property of the page). */
function themeColor(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/**
 * A chart in `el`. `series`: [{label, color?, points?}] (y series; x is shared).
 * Returns {append(x, ys), setData(xs, ysPerSeries), setSeries(series, xs, ysPerSeries), points(), destroy()}.
 */
export function lineChart(el, { series, xLabel = "step", yLabel = "", height = 220, time = false, yRange = null,
  scientific = false }) {
  let xs = [];
  let ys = series.map(() => []);
  let plot = null;

  function options(width) {
    const ink = themeColor("--muted", "#5b6577");
    const grid = { stroke: themeColor("--line", "#d9dee7"), width: 1 };
    return {
      width, height,
      scales: { x: { time }, y: yRange ? { range: yRange } : {} },
      legend: { live: false },
      cursor: { drag: { x: true, y: false } },
      axes: [
        time ? { space: 90, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600], stroke: ink, grid, ticks: grid,
          values: (u, splits) => splits.map((v) => new Date(v * 1000).toLocaleTimeString(language())) }
          : { label: xLabel, size: 40, incrs: STEP_INCRS, stroke: ink, grid, ticks: grid,
            values: (u, splits) => splits.map((v) => v.toLocaleString(language())) },
        { label: yLabel, size: 70, stroke: ink, grid, ticks: grid, values: (u, splits) => ticks(splits, scientific) },
      ],
      series: [{ label: xLabel }, ...series.map((s, i) => ({
        label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2, spanGaps: true,
        points: { show: s.points ?? false, size: 6 },
      }))],
    };
  }

  function build() {
    el.dataset.axes = `${xLabel} / ${yLabel}`;  // the axis titles are drawn on the canvas; this names them
    plot?.destroy();
    el.replaceChildren();
    plot = new globalThis.uPlot(options(Math.max(200, el.clientWidth || 600)), [xs, ...ys], el);
  }

  const observer = new ResizeObserver(() => {
    if (plot && el.clientWidth && Math.abs(plot.width - el.clientWidth) > 2) plot.setSize({ width: el.clientWidth, height });
  });
  observer.observe(el);
  build();

  return {
    append(x, values) {
      const last = xs.length - 1;
      if (last >= 0 && xs[last] === x) {  // same step again (e.g. loss then eval_loss): merge into the point
        values.forEach((v, i) => { if (v !== null && v !== undefined) ys[i][last] = v; });
      } else {
        xs.push(x);
        values.forEach((v, i) => ys[i].push(v ?? null));
      }
      plot.setData([xs, ...ys]);
    },
    setData(newXs, newYs) {
      xs = [...newXs];
      ys = newYs.map((col) => [...col]);
      plot.setData([xs, ...ys]);
    },
    setSeries(newSeries, newXs, newYs) {
      series = newSeries;
      xs = [...newXs];
      ys = newYs.map((col) => [...col]);
      build();
    },
    points() {
      return xs.length;
    },
    destroy() {
      observer.disconnect();
      plot?.destroy();
    },
  };
}
