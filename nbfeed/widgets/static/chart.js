// nbfeed LiveChart: the browser half of nbfeed.widgets.chart.LiveChart (anywidget ESM).
//
// Plain ES module, no imports and no build step, so it works offline. The kernel sends bars as
// binary frames (see encode_frame in chart.py): the `_snapshot` trait holds all bars, custom
// `{kind: "delta", seq}` messages carry the bars changed since the previous delta. Deltas are
// applied once per animation frame; on a sequence gap the view asks the kernel for a resync and
// holds later deltas until the new snapshot arrives. Drawing is canvas 2D.
//
// The x axis is the bar index (no gaps for closed markets). The view is `span` bars wide; while
// it is pinned to the right edge it follows new bars, otherwise it is anchored to the time of a
// bar, so appends, in-place updates and trimming of old bars never move what the user looks at.

const MAGIC = [0x4e, 0x42, 0x43, 0x46]; // "NBCF"
const CANDLE = ["open", "high", "low", "close", "volume"];
const RIGHT_PAD = 1; // empty bar slots right of the newest bar when following
const MIN_SPAN = 5;
const MAX_HELD = 512; // deltas kept while waiting for a snapshot
const MAX_QUEUE = 120; // deltas queued for the next frame before applying eagerly (hidden tab)
const RESYNC_RETRY_MS = 2000;
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  ...[1, 2, 5, 10, 15, 30].map((s) => s * SEC),
  ...[1, 2, 5, 10, 15, 30].map((m) => m * MIN),
  ...[1, 2, 3, 4, 6, 12].map((h) => h * HOUR),
  ...[1, 2, 7, 14].map((d) => d * DAY),
  30 * DAY, 91 * DAY, 365 * DAY,
];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
  "Dec"];
const PALETTE = ["#2962ff", "#ff6d00", "#2e7d32", "#d500f9", "#00838f", "#c51162", "#6d4c41"];

// ---- data ---------------------------------------------------------------------------------------

/** Bytes of a DataView / ArrayBuffer / typed array (what ipywidgets hands us), or empty. */
export function toBytes(data) {
  if (!data) return new Uint8Array(0);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new Error(`expected binary data, got ${typeof data}`);
}

/** Decode a frame: {seq, columns, times: Float64Array, values: {name: Float64Array}}, or null. */
export function decodeFrame(data) {
  const bytes = toBytes(data);
  if (bytes.length === 0) return null;
  if (bytes.length < 8 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new Error("not a LiveChart frame (missing NBCF magic)");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = dv.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  const { seq, n, columns } = header;
  const start = 8 + hlen;
  const count = n * (columns.length + 1);
  if (bytes.length - start !== count * 8) {
    throw new Error(`frame has ${bytes.length - start} data bytes, header says ${count * 8}`);
  }
  // Float64Array needs an 8-byte aligned offset; copy when the buffer does not give us one.
  const aligned = (bytes.byteOffset + start) % 8 === 0;
  const arr = aligned
    ? new Float64Array(bytes.buffer, bytes.byteOffset + start, count)
    : new Float64Array(bytes.slice(start).buffer);
  const values = {};
  columns.forEach((c, k) => { values[c] = arr.subarray(n * (k + 1), n * (k + 2)); });
  return { seq, columns, times: arr.subarray(0, n), values };
}

/** First index i with arr[i] >= x (arr sorted ascending). */
export function lowerBound(arr, x) {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Time-sorted bars, newest `maxBars` kept; frames are upserts by time (same rule as Python). */
export class BarWindow {
  constructor(columns, maxBars) {
    this.columns = columns.slice();
    this.maxBars = Math.max(1, maxBars | 0);
    this.times = [];
    this.cols = columns.map(() => []);
  }

  static fromFrame(frame, maxBars) {
    const store = new BarWindow(frame.columns, maxBars);
    store.upsert(frame);
    return store;
  }

  get length() { return this.times.length; }

  col(name) { return this.cols[this.columns.indexOf(name)]; }

  sameColumns(columns) {
    return columns.length === this.columns.length && columns.every((c, i) => c === this.columns[i]);
  }

  upsert(frame) {
    const T = this.times;
    const src = this.columns.map((c) => frame.values[c]);
    const nc = src.length;
    for (let k = 0; k < frame.times.length; k++) {
      const t = frame.times[k];
      const last = T.length - 1;
      if (last < 0 || t > T[last]) {
        T.push(t);
        for (let c = 0; c < nc; c++) this.cols[c].push(src[c][k]);
        continue;
      }
      const i = t === T[last] ? last : lowerBound(T, t);
      if (T[i] === t) {
        for (let c = 0; c < nc; c++) this.cols[c][i] = src[c][k];
      } else {
        T.splice(i, 0, t);
        for (let c = 0; c < nc; c++) this.cols[c].splice(i, 0, src[c][k]);
      }
    }
    const extra = T.length - this.maxBars;
    if (extra > 0) {
      T.splice(0, extra);
      for (const col of this.cols) col.splice(0, extra);
    }
  }
}

/**
 * Snapshot + sequenced deltas -> a BarWindow. `delta()` says "queued" (apply at the next frame),
 * "stale" (already included), "gap" (ask the kernel for a resync) or "held" (waiting for one).
 */
export class FeedState {
  constructor(maxBars) {
    this.maxBars = maxBars;
    this.store = null;
    this.seq = -1; // last delta applied to the store
    this.expect = -1; // last delta applied or queued
    this.queue = [];
    this.held = [];
    this.awaiting = false;
  }

  /** Take a snapshot unless it is older than what we have; replays held deltas after it. */
  snapshot(frame) {
    if (!frame) return false;
    if (!this.awaiting && this.store && frame.seq < this.expect) return false;
    this.store = BarWindow.fromFrame(frame, this.maxBars);
    this.seq = this.expect = frame.seq;
    const later = this.queue.concat(this.held).filter((d) => d.seq > frame.seq);
    later.sort((a, b) => a.seq - b.seq);
    this.queue = [];
    this.held = [];
    this.awaiting = false;
    for (const d of later) this.delta(d);
    return true;
  }

  delta(frame) {
    if (this.awaiting) {
      this._hold(frame);
      return "held";
    }
    if (this.store && frame.seq <= this.expect) return "stale";
    if (!this.store || frame.seq !== this.expect + 1 || !this.store.sameColumns(frame.columns)) {
      this.awaiting = true;
      this._hold(frame);
      return "gap";
    }
    this.queue.push(frame);
    this.expect = frame.seq;
    return "queued";
  }

  _hold(frame) {
    this.held.push(frame);
    if (this.held.length > MAX_HELD) this.held.shift();
  }

  /** Apply queued deltas; true when the store changed. */
  drain() {
    if (this.queue.length === 0) return false;
    for (const f of this.queue) {
      this.store.upsert(f);
      this.seq = f.seq;
    }
    this.queue = [];
    return true;
  }
}

// ---- view window --------------------------------------------------------------------------------

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

/** Which bars are visible: `span` bars ending at `right(store)` (exclusive, in bar units). */
export class Viewport {
  constructor() { this.reset(); }

  reset() {
    this.pinned = true;
    this.span = 0; // 0: pick a default at the next draw
    this.zoomed = false; // until the user zooms, the span grows with the data
    this.anchorTime = null;
    this.anchorOffset = 0;
  }

  right(store) {
    const n = store.length;
    if (this.pinned || this.anchorTime === null || n === 0) return n + RIGHT_PAD;
    return lowerBound(store.times, this.anchorTime) + this.anchorOffset;
  }

  setRight(store, right) {
    const n = store.length;
    right = Math.max(right, Math.min(n, 2));
    if (right >= n + RIGHT_PAD - 0.5) {
      this.pinned = true;
      this.anchorTime = null;
      return;
    }
    this.pinned = false;
    const k = clamp(Math.floor(right) - 1, 0, n - 1);
    this.anchorTime = store.times[k];
    this.anchorOffset = right - k;
  }

  /** Zoom by `factor` around `frac` of the plot width (the right edge when following). */
  zoom(store, factor, frac) {
    this.zoomed = true;
    const n = store.length;
    const span = clamp(this.span * factor, MIN_SPAN, Math.max(n + RIGHT_PAD, MIN_SPAN));
    if (this.pinned) {
      this.span = span;
      return;
    }
    const right = this.right(store);
    const at = right - this.span + frac * this.span;
    this.span = span;
    this.setRight(store, at + (1 - frac) * span);
  }

  pan(store, bars) { this.setRight(store, this.right(store) - bars); }
}

// ---- axes ---------------------------------------------------------------------------------------

/** Round price ticks (1, 2, 5 x 10^k steps) covering [lo, hi], about `count` of them. */
export function niceTicks(lo, hi, count) {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return { step: 0, ticks: [] };
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const ticks = [];
  for (let k = Math.ceil(lo / step); k * step <= hi && ticks.length < 100; k++) ticks.push(k * step);
  return { step, ticks };
}

export function priceDecimals(step) {
  return step > 0 ? clamp(Math.ceil(-Math.log10(step) - 1e-9), 0, 10) : 2;
}

// The decimals the data itself carries (a stock quoted in cents: 2; EURUSD: 5), read from up to
// 200 values of the view: the values are shown as the source sent them, not finer.
export function dataDecimals(values, i0, i1) {
  let most = -1;
  const stride = Math.max(1, Math.floor((i1 - i0 + 1) / 200));
  for (let i = Math.max(0, i0); i <= i1; i += stride) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    let d = 0;
    for (let x = v; d < 8 && Math.abs(x - Math.round(x)) > 1e-6 * Math.max(1, Math.abs(x)); d++) {
      x = v * 10 ** (d + 1);
    }
    if (d > most) most = d;
  }
  return most;
}

export function formatPrice(v, decimals) {
  if (!Number.isFinite(v)) return "";
  return v.toLocaleString("en-US", { minimumFractionDigits: decimals,
    maximumFractionDigits: decimals });
}

export function formatCompact(v) {
  if (!Number.isFinite(v)) return "";
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(2)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}K`;
  return String(Math.round(v * 100) / 100);
}

/** The smallest time step in TIME_STEPS that is at least `minMs`. */
export function chooseTimeStep(minMs) {
  return TIME_STEPS.find((s) => s >= minMs) ?? TIME_STEPS[TIME_STEPS.length - 1];
}

/** Which label bucket (UTC) a time falls in; a label goes where the bucket changes. */
export function timeKey(t, step) {
  const d = new Date(t);
  if (step >= 365 * DAY) return d.getUTCFullYear();
  if (step >= 91 * DAY) return d.getUTCFullYear() * 4 + Math.floor(d.getUTCMonth() / 3);
  if (step >= 30 * DAY) return d.getUTCFullYear() * 12 + d.getUTCMonth();
  return Math.floor(t / step);
}

const pad2 = (x) => String(x).padStart(2, "0");

/** Axis label of time `t` (UTC) for labels `step` ms apart; dates where the day changes. */
export function formatTimeLabel(t, step, prevT) {
  const d = new Date(t);
  if (step >= 365 * DAY) return String(d.getUTCFullYear());
  if (step >= 30 * DAY) {
    return d.getUTCMonth() === 0 ? String(d.getUTCFullYear()) : MONTHS[d.getUTCMonth()];
  }
  const dayChanged = prevT == null || Math.floor(prevT / DAY) !== Math.floor(t / DAY);
  if (step >= DAY || (dayChanged && t % DAY === 0)) {
    return `${MONTHS[d.getUTCMonth()]} ${pad2(d.getUTCDate())}`;
  }
  const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
  return step < MIN ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
}

/** "2026-01-02 09:30Z" (seconds when `seconds` is true). */
export function formatFullTime(t, seconds) {
  const d = new Date(t);
  const s = seconds ? `:${pad2(d.getUTCSeconds())}` : "";
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} `
    + `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}${s}Z`;
}

// ---- drawing ------------------------------------------------------------------------------------

function themeOf(el) {
  const cs = getComputedStyle(el);
  const v = (name, fallback) => cs.getPropertyValue(name).trim() || fallback;
  const inJupyter = cs.getPropertyValue("--jp-layout-color0").trim() !== "";
  const dark = !inJupyter && globalThis.matchMedia?.("(prefers-color-scheme: dark)").matches;
  const fg = v("--jp-ui-font-color1", v("--vscode-editor-foreground", dark ? "#d1d4dc" : "#1f2328"));
  return {
    bg: v("--jp-layout-color0", v("--vscode-editor-background", dark ? "#131722" : "#ffffff")),
    fg,
    muted: v("--jp-ui-font-color2", dark ? "#8a8f98" : "#6a737d"),
    grid: v("--jp-border-color2", dark ? "#2a2e39" : "#eceff2"),
    axis: v("--jp-border-color1", dark ? "#434651" : "#c9ced4"),
    up: v("--nbfeed-up-color", "#26a69a"),
    down: v("--nbfeed-down-color", "#ef5350"),
    font: v("--jp-ui-font-family", "system-ui, -apple-system, 'Segoe UI', sans-serif"),
  };
}

/** Price range of bars i0..i1 (candles: low..high, lines: every series), padded. */
function priceRange(store, kind, i0, i1) {
  let lo = Infinity;
  let hi = -Infinity;
  const cols = kind === "candle" ? [store.col("low"), store.col("high")]
    : store.cols;
  for (const col of cols) {
    for (let i = i0; i <= i1; i++) {
      const v = col[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  // At least 4 basis points of the price high: a flat or single-point line sits mid-chart in
  // a range of its own scale, not in a band 100x wider than its moves.
  const minRange = Math.max(Math.abs(hi) * 4e-4, 1e-9);
  if (hi - lo < minRange) {
    const mid = (hi + lo) / 2;
    return [mid - minRange * 0.54, mid + minRange * 0.54];
  }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

function paint(ctx, W, H, s) {
  const { store, view, theme: th, kind, hover, showVolume } = s;
  ctx.fillStyle = th.bg;
  ctx.fillRect(0, 0, W, H);
  ctx.font = `11px ${th.font}`;
  ctx.textBaseline = "middle";
  const axisW = 70;
  const timeH = 22;
  const headH = 22;
  const plotW = Math.max(10, W - axisW);
  const top = headH;
  const bottom = H - timeH;
  const n = store ? store.length : 0;
  const out = { i0: 0, i1: -1 };
  if (!n) {
    ctx.fillStyle = th.muted;
    ctx.textAlign = "center";
    ctx.fillText("Waiting for data\u2026", plotW / 2, (top + bottom) / 2);
    drawHeader(ctx, s, null, 8, headH / 2);
    return out;
  }
  if (!view.span || !view.zoomed) {
    // Until the user zooms, the view is as wide as the data up to a comfortable bar width:
    // a chart that starts with little history widens as bars arrive.
    view.span = clamp(Math.round(plotW / (kind === "candle" ? 8 : 3)), MIN_SPAN,
      Math.max(n + RIGHT_PAD, MIN_SPAN));
  }
  const right = view.right(store);
  const from = right - view.span;
  const barPx = plotW / view.span;
  const i0 = clamp(Math.floor(from), 0, n - 1);
  const i1 = clamp(Math.ceil(right) - 1, 0, n - 1);
  out.i0 = i0;
  out.i1 = i1;
  const xOf = (i) => (i + 0.5 - from) * barPx;
  const vol = kind === "candle" && showVolume ? store.col("volume") : null;
  let volMax = 0;
  if (vol) for (let i = i0; i <= i1; i++) if (vol[i] > volMax) volMax = vol[i];
  const volH = volMax > 0 ? Math.round((bottom - top) * 0.2) : 0;
  const priceBottom = bottom - volH - (volH ? 6 : 0);
  const [lo, hi] = priceRange(store, kind, i0, i1);
  out.lo = lo;
  out.hi = hi;
  out.span = view.span;
  const yOf = (p) => priceBottom - ((p - lo) / (hi - lo)) * (priceBottom - top - 4);

  // grid and price axis
  const { step, ticks } = niceTicks(lo, hi, Math.max(2, Math.floor((priceBottom - top) / 40)));
  const tickDec = priceDecimals(step);
  // Values as precise as the data (else a little finer than the grid), never fewer than 2.
  const carried = dataDecimals(kind === "candle" ? store.col("close") : store.cols[0], i0, i1);
  const dec = Math.min(10, Math.max(2, carried >= 0 ? carried : tickDec + 1));
  ctx.strokeStyle = th.grid;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (const p of ticks) {
    const y = Math.round(yOf(p)) + 0.5;
    ctx.moveTo(0, y);
    ctx.lineTo(plotW, y);
  }
  ctx.stroke();
  ctx.fillStyle = th.fg;
  ctx.textAlign = "left";
  for (const p of ticks) ctx.fillText(formatPrice(p, tickDec), plotW + 6, yOf(p));

  // time axis
  const T = store.times;
  const msPerBar = i1 > i0 ? (T[i1] - T[i0]) / (i1 - i0) : (s.intervalMs || MIN);
  const tStep = chooseTimeStep(msPerBar * (90 / barPx));
  ctx.textAlign = "center";
  ctx.strokeStyle = th.grid;
  let lastX = -Infinity;
  let prevLabelT = null;
  for (let i = Math.max(i0, 1); i <= i1; i++) {
    if (timeKey(T[i], tStep) === timeKey(T[i - 1], tStep)) continue;
    const x = xOf(i);
    const label = formatTimeLabel(T[i], tStep, prevLabelT);
    const w = ctx.measureText(label).width;
    if (x - w / 2 < Math.max(0, lastX + 8) || x + w / 2 > plotW) continue;
    ctx.beginPath();
    ctx.moveTo(Math.round(x) + 0.5, top);
    ctx.lineTo(Math.round(x) + 0.5, bottom);
    ctx.stroke();
    ctx.fillStyle = th.fg;
    ctx.fillText(label, x, bottom + timeH / 2);
    lastX = x + w / 2;
    prevLabelT = T[i];
  }
  ctx.strokeStyle = th.axis;
  ctx.beginPath();
  ctx.moveTo(0, bottom + 0.5);
  ctx.lineTo(plotW, bottom + 0.5);
  ctx.moveTo(plotW + 0.5, top);
  ctx.lineTo(plotW + 0.5, bottom);
  ctx.stroke();

  ctx.save();
  ctx.beginPath();
  ctx.rect(0, top, plotW, bottom - top);
  ctx.clip();
  if (kind === "candle") drawCandles(ctx, store, i0, i1, xOf, yOf, barPx, th);
  else drawLines(ctx, store, i0, i1, xOf, yOf);
  if (volH) {
    ctx.globalAlpha = 0.45;
    const open = store.col("open");
    const close = store.col("close");
    const w = Math.max(1, Math.floor(barPx * 0.7));
    for (const up of [true, false]) {
      ctx.fillStyle = up ? th.up : th.down;
      ctx.beginPath();
      for (let i = i0; i <= i1; i++) {
        if (!(vol[i] > 0) || (close[i] >= open[i]) !== up) continue;
        const h = Math.max(1, (vol[i] / volMax) * volH);
        ctx.rect(Math.round(xOf(i) - w / 2), bottom - h, w, h);
      }
      ctx.fill();
    }
    ctx.globalAlpha = 1;
  }
  ctx.restore();

  // last value marker
  const lastCol = kind === "candle" ? store.col("close") : store.cols[0];
  const last = lastCol[n - 1];
  if (Number.isFinite(last)) {
    const up = kind === "candle" ? last >= store.col("open")[n - 1] : true;
    // A stale stream's last value is drawn muted: it is where the data stopped, not a price.
    const color = s.stale ? th.muted : kind === "candle" ? (up ? th.up : th.down) : PALETTE[0];
    const y = Math.round(yOf(last)) + 0.5;
    if (y >= top && y <= priceBottom) {
      ctx.strokeStyle = color;
      ctx.setLineDash([2, 3]);
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(plotW, y);
      ctx.stroke();
      ctx.setLineDash([]);
      axisTag(ctx, formatPrice(last, dec), plotW, y, axisW, color, "#ffffff");
    }
  }

  // crosshair
  let focus = n - 1; // the bar the header describes: hovered, else the newest
  if (hover && hover.x >= 0 && hover.x < plotW && hover.y >= top && hover.y < bottom) {
    focus = clamp(Math.floor(from + hover.x / barPx), 0, n - 1);
    const x = Math.round(xOf(focus)) + 0.5;
    ctx.strokeStyle = th.muted;
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, bottom);
    if (hover.y <= priceBottom) {
      ctx.moveTo(0, Math.round(hover.y) + 0.5);
      ctx.lineTo(plotW, Math.round(hover.y) + 0.5);
    }
    ctx.stroke();
    ctx.setLineDash([]);
    if (hover.y <= priceBottom) {
      const p = lo + ((priceBottom - hover.y) / (priceBottom - top - 4)) * (hi - lo);
      axisTag(ctx, formatPrice(p, dec), plotW, hover.y, axisW, th.muted, th.bg);
    }
    const label = formatFullTime(T[focus], msPerBar < MIN);
    const w = ctx.measureText(label).width + 10;
    const lx = clamp(x - w / 2, 0, plotW - w);
    ctx.fillStyle = th.muted;
    ctx.fillRect(lx, bottom + 1, w, timeH - 2);
    ctx.fillStyle = th.bg;
    ctx.textAlign = "center";
    ctx.fillText(label, lx + w / 2, bottom + timeH / 2);
  }
  out.header = drawHeader(ctx, s, focus, 8, headH / 2, dec);
  return out;
}

function axisTag(ctx, text, x, y, w, bg, fg) {
  ctx.fillStyle = bg;
  ctx.fillRect(x + 1, Math.round(y) - 9, w - 2, 18);
  ctx.fillStyle = fg;
  ctx.textAlign = "left";
  ctx.fillText(text, x + 6, y);
}

function drawCandles(ctx, store, i0, i1, xOf, yOf, barPx, th) {
  const [O, H, L, C] = ["open", "high", "low", "close"].map((c) => store.col(c));
  const bodyW = Math.max(1, Math.floor(barPx * 0.7));
  for (const up of [true, false]) {
    ctx.strokeStyle = up ? th.up : th.down;
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let i = i0; i <= i1; i++) {
      if ((C[i] >= O[i]) !== up) continue;
      const x = Math.round(xOf(i)) + 0.5;
      ctx.moveTo(x, yOf(H[i]));
      ctx.lineTo(x, yOf(L[i]));
    }
    ctx.stroke();
    if (barPx < 3) continue; // too narrow for bodies: the high-low line is the candle
    ctx.beginPath();
    for (let i = i0; i <= i1; i++) {
      if ((C[i] >= O[i]) !== up) continue;
      const yTop = yOf(Math.max(O[i], C[i]));
      const h = Math.max(1, yOf(Math.min(O[i], C[i])) - yTop);
      ctx.rect(Math.round(xOf(i) - bodyW / 2), Math.round(yTop), bodyW, Math.round(h) || 1);
    }
    ctx.fill();
  }
}

function drawLines(ctx, store, i0, i1, xOf, yOf) {
  ctx.lineWidth = 1.5;
  ctx.lineJoin = "round";
  store.cols.forEach((col, k) => {
    ctx.strokeStyle = PALETTE[k % PALETTE.length];
    ctx.fillStyle = ctx.strokeStyle;
    ctx.beginPath();
    let pen = false;
    let points = 0;
    for (let i = Math.max(0, i0 - 1); i <= Math.min(store.length - 1, i1 + 1); i++) {
      const v = col[i];
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      if (pen) ctx.lineTo(xOf(i), yOf(v));
      else ctx.moveTo(xOf(i), yOf(v));
      pen = true;
      points++;
    }
    ctx.stroke();
    if (points === 1) {
      const i = col.findIndex(Number.isFinite);
      ctx.beginPath();
      ctx.arc(xOf(i), yOf(col[i]), 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  });
}

function drawHeader(ctx, s, i, x, y, dec = 2) {
  const { store, theme: th, kind } = s;
  ctx.textAlign = "left";
  const parts = [];
  // The title when given (with the symbol in front unless the title names it), else the symbol
  // and the interval.
  let name;
  if (s.title) name = s.symbol && !s.title.includes(s.symbol) ? `${s.symbol}  ${s.title}` : s.title;
  else name = [s.symbol, s.interval].filter(Boolean).join(" \u00b7 ");
  if (name) parts.push([name, th.fg, true]);
  if (s.stale) parts.push([`\u25cf ${s.stale}`, th.down, true]);
  if (store && i != null && i >= 0 && i < store.length) {
    parts.push([formatFullTime(store.times[i], (s.intervalMs || MIN) < MIN), th.muted]);
    if (kind === "candle") {
      const up = store.col("close")[i] >= store.col("open")[i];
      const color = up ? th.up : th.down;
      for (const [label, c] of [["O", "open"], ["H", "high"], ["L", "low"], ["C", "close"]]) {
        parts.push([label, th.muted], [formatPrice(store.col(c)[i], dec), color]);
      }
      const v = store.col("volume")[i];
      if (Number.isFinite(v)) parts.push(["V", th.muted], [formatCompact(v), color]);
    } else {
      store.columns.forEach((c, k) => {
        parts.push([c, PALETTE[k % PALETTE.length]], [formatPrice(store.cols[k][i], dec), th.fg]);
      });
    }
  }
  const shown = parts.map((p) => p[0]).join(" ");
  for (const [text, color, bold] of parts) {
    ctx.font = `${bold ? "600 " : ""}11px ${th.font}`;
    ctx.fillStyle = color;
    ctx.fillText(text, x, y);
    x += ctx.measureText(text).width + (bold ? 10 : 5);
  }
  ctx.font = `11px ${th.font}`;
  return shown;
}

// ---- the view -----------------------------------------------------------------------------------

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbfeed-chart";
  root.style.cssText = "position:relative;width:100%;user-select:none;";
  const canvas = document.createElement("canvas");
  canvas.style.cssText = "display:block;width:100%;cursor:crosshair;touch-action:pan-y;";
  root.appendChild(canvas);
  el.appendChild(root);
  const ctx = canvas.getContext("2d");
  const feed = new FeedState(model.get("_max_bars"));
  const view = new Viewport();
  let hover = null;
  let drag = null;
  let raf = 0;
  let draws = 0;
  let resyncs = 0;
  let lastResync = -Infinity;
  let retry = 0;
  let layout = { i0: 0, i1: -1 };

  const kindOf = () => (feed.store && feed.store.sameColumns(CANDLE) ? "candle" : "line");

  function requestResync(force) {
    const now = Date.now();
    if (!force && now - lastResync < RESYNC_RETRY_MS) {
      // Asked recently: if that answer does not end the wait, ask again once the window passes.
      if (!retry) {
        retry = setTimeout(() => {
          retry = 0;
          if (feed.awaiting) requestResync(false);
        }, RESYNC_RETRY_MS - (now - lastResync));
      }
      return;
    }
    lastResync = now;
    resyncs++;
    model.send({ kind: "resync" });
  }

  function schedule() {
    if (!raf) raf = requestAnimationFrame(frame);
  }

  function loadSnapshot() {
    try {
      feed.snapshot(decodeFrame(model.get("_snapshot")));
    } catch (err) {
      console.warn("nbfeed LiveChart: bad snapshot", err);
    }
    if (feed.awaiting) requestResync(false);
    schedule();
  }

  function onMessage(msg, buffers) {
    if (!msg || msg.kind !== "delta") return;
    let frame = null;
    try {
      frame = decodeFrame(buffers && buffers[0]);
    } catch (err) {
      console.warn("nbfeed LiveChart: bad delta", err);
    }
    const result = frame ? feed.delta(frame) : "gap";
    if (result === "gap" || result === "held") requestResync(false);
    if (feed.queue.length > MAX_QUEUE) feed.drain(); // no frames while the tab is hidden
    schedule();
  }

  function frame() {
    raf = 0;
    feed.drain();
    const W = Math.max(200, Math.floor(root.clientWidth || 600));
    const H = model.get("height") || 400;
    const dpr = globalThis.devicePixelRatio || 1;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
      canvas.style.height = `${H}px`;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const store = feed.store;
    const kind = kindOf();
    layout = paint(ctx, W, H, {
      store, view, kind, hover, theme: themeOf(el), showVolume: model.get("volume"),
      symbol: model.get("symbol"), title: model.get("title"), intervalMs: model.get("_interval_ms"),
      interval: model.get("_interval"), stale: model.get("_stale"),
    });
    draws++;
    // Debug hook for browser tests: what the last draw showed.
    const d = el.dataset;
    const n = store ? store.length : 0;
    d.bars = String(n);
    d.seq = String(feed.seq);
    d.kind = kind;
    d.draws = String(draws);
    d.resyncs = String(resyncs);
    d.pinned = String(view.pinned);
    d.stale = model.get("_stale") || "";
    if (n) {
      const lastCol = kind === "candle" ? store.col("close") : store.cols[0];
      d.lastTime = String(store.times[n - 1]);
      d.lastClose = String(lastCol[n - 1]);
      d.viewStart = String(store.times[layout.i0]);
      d.viewEnd = String(store.times[layout.i1]);
      d.yLo = String(layout.lo);
      d.yHi = String(layout.hi);
      d.span = String(layout.span);
      d.header = layout.header || "";
    }
  }

  const pos = (e) => {
    const r = canvas.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  };
  const plotWidth = () => Math.max(10, canvas.getBoundingClientRect().width - 70);

  function onWheel(e) {
    if (!feed.store || !feed.store.length) return;
    e.preventDefault();
    const scale = e.deltaMode === 1 ? 0.05 : e.deltaMode === 2 ? 1 : 0.0015;
    if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      view.pan(feed.store, (e.deltaX * scale * view.span) / 2);
    } else {
      const frac = clamp(pos(e).x / plotWidth(), 0, 1);
      view.zoom(feed.store, Math.exp(e.deltaY * scale), frac);
    }
    schedule();
  }

  function onPointerDown(e) {
    if (e.button !== 0 || !feed.store) return;
    drag = { x: e.clientX, right: view.right(feed.store), id: e.pointerId };
    canvas.setPointerCapture?.(e.pointerId);
    canvas.style.cursor = "grabbing";
  }

  function onPointerMove(e) {
    hover = pos(e);
    if (drag && feed.store) {
      const barPx = plotWidth() / (view.span || 1);
      view.setRight(feed.store, drag.right - (e.clientX - drag.x) / barPx);
    }
    schedule();
  }

  function onPointerUp(e) {
    if (drag) canvas.releasePointerCapture?.(drag.id);
    drag = null;
    canvas.style.cursor = "crosshair";
    if (e.type === "pointercancel") hover = null;
    schedule();
  }

  function onLeave() {
    hover = null;
    schedule();
  }

  function onDoubleClick() {
    view.reset();
    schedule();
  }

  canvas.addEventListener("wheel", onWheel, { passive: false });
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("pointerleave", onLeave);
  canvas.addEventListener("dblclick", onDoubleClick);
  const onConfig = () => schedule();
  // show() replaced the data (another symbol or interval): start over, following the newest.
  const onGeneration = () => {
    feed.store = null;
    feed.seq = feed.expect = -1;
    feed.queue = [];
    feed.held = [];
    feed.awaiting = true;
    view.reset();
    schedule();
  };
  model.on("change:_snapshot", loadSnapshot);
  model.on("msg:custom", onMessage);
  model.on("change:height change:title change:symbol change:volume change:_interval change:_stale",
    onConfig);
  model.on("change:_generation", onGeneration);
  const resizeObserver = new ResizeObserver(() => schedule());
  resizeObserver.observe(root);
  // JupyterLab switches themes by changing attributes on <body>: repaint with the new colours.
  const themeObserver = new MutationObserver(() => schedule());
  themeObserver.observe(document.body, { attributes: true });

  loadSnapshot();
  // The model's snapshot may predate deltas sent to earlier views: ask for a current one.
  requestResync(true);

  return () => {
    if (raf) cancelAnimationFrame(raf);
    if (retry) clearTimeout(retry);
    resizeObserver.disconnect();
    themeObserver.disconnect();
    model.off("change:_snapshot", loadSnapshot);
    model.off("msg:custom", onMessage);
    model.off("change:height change:title change:symbol change:volume change:_interval change:_stale",
      onConfig);
    model.off("change:_generation", onGeneration);
    root.remove();
  };
}

export default { render };
