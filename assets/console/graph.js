// The time-series graph of a range query, drawn by uPlot (vendored, a global `uPlot`). Series
// are aligned on the query's step grid; gaps (no sample at a step) stay gaps.

import { seriesName } from "./api.js";

const MAX_SERIES = 200;
const LEGEND_SERIES = 12;
const HEIGHT = 340;
/** Series with fewer samples than this get a dot on each. */
const SPARSE = 30;

let plot = null;
let resizeHooked = false;

/** A distinct, readable colour for series `i`. */
function colour(i) {
  return `hsl(${(i * 137.508) % 360}, 65%, 42%)`;
}

/**
 * Draws `result` (a matrix) for `start`..`end` every `step` seconds into `target`; returns a
 * one-line description (or why nothing is drawn).
 */
export function draw(target, result, start, end, step) {
  if (plot) {
    plot.destroy();
    plot = null;
  }
  target.replaceChildren();
  if (typeof uPlot === "undefined") return "The graph library did not load.";
  if (!result.length) return "The query returned no series.";
  const series = result.slice(0, MAX_SERIES);
  const n = Math.floor((end - start) / step) + 1;
  const xs = Array.from({ length: n }, (_, i) => start + i * step);
  const data = [xs];
  const counts = [];
  for (const s of series) {
    const ys = new Array(n).fill(null);
    let count = 0;
    for (const [t, v] of s.values) {
      const i = Math.round((t - start) / step);
      const x = parseFloat(v);
      if (i >= 0 && i < n && Number.isFinite(x)) {
        ys[i] = x;
        count++;
      }
    }
    data.push(ys);
    counts.push(count);
  }
  const width = Math.max(320, target.clientWidth || target.parentElement.clientWidth || 800);
  const opts = {
    width,
    height: HEIGHT,
    legend: { show: series.length <= LEGEND_SERIES },
    scales: { x: { time: true } },
    axes: [{}, { size: 70 }],
    cursor: { points: { size: 5 } },
    series: [
      {},
      ...series.map((s, i) => ({
        label: seriesName(s.metric),
        stroke: colour(i),
        width: 1.5,
        spanGaps: false,
        // Lines alone would hide a series of a few samples (a fresh cluster): dot them.
        points: { show: counts[i] < SPARSE, size: 5 },
      })),
    ],
  };
  plot = new uPlot(opts, data, target);
  if (!resizeHooked) {
    resizeHooked = true;
    window.addEventListener("resize", () => {
      if (plot && target.clientWidth) plot.setSize({ width: target.clientWidth, height: HEIGHT });
    });
  }
  const more = result.length > MAX_SERIES ? ` (of ${result.length}; the first ${MAX_SERIES} are drawn)` : "";
  const legend = series.length > LEGEND_SERIES ? "; the legend is left out beyond 12 series" : "";
  return `${series.length} series${more}, ${n} steps of ${step}s${legend}.`;
}
