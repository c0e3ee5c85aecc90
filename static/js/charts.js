// uPlot for live time series (the Telemetry pages, the Monitoring page). Data is uPlot's columns:
// [xs (epoch ms), then one column per series], null where a series has no value at that x. Live
// values are put in place in the columns, and the chart is given them again (setData) a few times a
// second at most: uPlot redraws, it is never rebuilt. uPlot sets sizes through the CSSOM (no style
// attribute), so it runs under the site's CSP; its stylesheet is vendor/uplot/uPlot.min.css.

import uPlot from "../vendor/uplot/uPlot.esm.js";

export { uPlot };

export const AXIS = { stroke: "#535c6e", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e5e7eb" } };

/** Put a value in column `col` at `x`, in time order: a new x gets null in every other column; the
 * same x keeps its row (the last value wins). */
export function insertValue(data, x, col, y) {
  const xs = data[0];
  const n = xs.length;
  if (!n || x > xs[n - 1]) {
    xs.push(x);
    for (let c = 1; c < data.length; c += 1) data[c].push(c === col ? y : null);
    return;
  }
  let lo = 0, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (xs[lo] !== x) {
    xs.splice(lo, 0, x);
    for (let c = 1; c < data.length; c += 1) data[c].splice(lo, 0, null);
  }
  data[col][lo] = y;
}

/** Drop the rows before `x` (a window that follows now keeps memory bounded). */
export function trimBefore(data, x) {
  const xs = data[0];
  let i = 0;
  while (i < xs.length && xs[i] < x) i += 1;
  if (i) for (const col of data) col.splice(0, i);
}

/** The last value of a column (null when it has none). */
export function lastValue(data, col) {
  const ys = data[col] || [];
  for (let i = ys.length - 1; i >= 0; i -= 1) if (ys[i] != null) return ys[i];
  return null;
}

export function elementSize(el, fallbackHeight) {
  const rect = el.getBoundingClientRect();
  return { width: Math.max(120, Math.floor(rect.width) || 480), height: Math.max(24, Math.floor(rect.height) || fallbackHeight) };
}

/** A `setSelect` hook for `cursor.drag = {x: true, y: false, setScale: false}`: a drag across the
 * chart calls `onZoom(min, max)` (the page applies it to its charts) and clears the selection. */
export function zoomOnDrag(onZoom) {
  return (u) => {
    if (u.select.width < 4) return;
    const min = u.posToVal(u.select.left, "x");
    const max = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    onZoom?.(min, max);
  };
}

/** What a chart shows, on its element, for tests (call it from a `draw` hook: after uPlot's batched
 * commit the scales and the data are the ones on screen). */
export function publishState(el, u) {
  const xs = u.data[0] || [];
  el.dataset.points = String(xs.length);
  el.dataset.lastX = xs.length ? String(xs[xs.length - 1]) : "";
  el.dataset.xMin = String(Math.round(u.scales.x.min ?? 0));
  el.dataset.xMax = String(Math.round(u.scales.x.max ?? 0));
}

/** `render` in an animation frame, at most once per `ms`, however many times this is called in
 * between: a burst of samples (a replay, many hosts) costs a few redraws, not one per sample. */
export function atMostEvery(ms, render) {
  let pending = false;
  let last = -Infinity;
  return () => {
    if (pending) return;
    pending = true;
    setTimeout(() => requestAnimationFrame(() => {
      pending = false;
      last = performance.now();
      render();
    }), Math.max(0, last + ms - performance.now()));
  };
}

/** Resize the charts to their element's width (on the window's resize). */
export function fitWidths(entries) {
  for (const { el, chart } of entries) {
    const width = Math.floor(el.getBoundingClientRect().width);
    if (width > 0 && width !== chart.width) chart.setSize({ width, height: chart.height });
  }
}
