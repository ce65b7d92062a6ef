// nbfeed LiveGrid: the browser half of nbfeed.widgets.grid.LiveGrid (anywidget ESM).
//
// Plain ES module, no imports, no build step. The kernel sends *frames* (grid_viewport.py):
// the changed rows of the window around what this view shows, as binary columns, each with a
// sequence number. Frames are applied once per animation frame; after drawing, the view
// acknowledges the last frame, and the kernel sends the next only then - so the kernel never
// outruns the page, and what is on screen is at most one frame old.
//
// Drawing: the header and status line are DOM; the body is one canvas the size of the visible
// rows, sticking to the top of a scroll area as tall as all rows. Only rows whose data changed
// are repainted, and a fading pulse repaints only its own cell, FADE_STEPS times at FADE_HZ.
// (A DOM table measured ~2x the main-thread time in JupyterLab: style, layout and paint of
// hundreds of changing cells per frame.) A cell that rose pulses green, fell red, fading over
// flash_ms; it pulses at most once per PULSE_COOLDOWN, and between pulses its latest direction
// shows as a small triangle in its left padding, so a grid whose every cell changes several times a
// second never becomes a wash of colour.

const ROW_H = 22;
const HEAD_H = 27;
const CELL_PAD = 18; // horizontal padding of a cell, both sides, plus the sort mark's room
const MIN_COL = 44;
const PULSE_COOLDOWN = 2000;
const MARK_MS = 3000;
const TICK_MS = 500; // ages and stale rows
const FADE_STEPS = 6; // a pulse fades in this many steps...
const FADE_HZ = 15; // ...redrawn at most this often (only the fading cells)
const VIEW_THROTTLE_MS = 80;
const MAX_QUEUE = 60; // frames held while no animation frame runs (hidden tab)

// ---- formatting ---------------------------------------------------------------------------

const numberFormats = new Map();
function grouped(decimals, group = true) {
  const key = `${decimals}:${group}`;
  let f = numberFormats.get(key);
  if (!f) {
    f = new Intl.NumberFormat("en-US", { minimumFractionDigits: decimals,
      maximumFractionDigits: decimals, useGrouping: group });
    numberFormats.set(key, f);
  }
  return f;
}

/** Decimals a price carries (0-8), read from the number itself. */
export function carriedDecimals(v) {
  for (let d = 0; d < 8; d++) {
    const x = v * 10 ** d;
    if (Math.abs(x - Math.round(x)) < 1e-6 * Math.max(1, Math.abs(x)) * 1e-3) return d;
  }
  return 8;
}

/** Decimals to show for a price: what it carries, at most five significant digits, >= 2. */
export function tickDecimals(v) {
  if (!Number.isFinite(v) || v === 0) return 2;
  const intDigits = Math.floor(Math.log10(Math.abs(v))) + 1;
  return Math.max(2, Math.min(carriedDecimals(v), 5 - intDigits));
}

const NEGATIVE_ZERO = /^-0(\.0*)?$/;
const D3 = /^(?:(.)?([<>=^]))?([+\-( ])?([$#])?(0)?(\d+)?(,)?(?:\.(\d+))?(~)?([a-z%])?$/i;
const SI = ["", "k", "M", "G", "T", "P"];

/** A number formatter for a d3-format specifier (the subset grids use). */
export function d3Formatter(spec) {
  const m = D3.exec(spec || "");
  if (!m) return (v) => String(v);
  const sign = m[3] || "-";
  const currency = m[4] === "$";
  const group = !!m[7];
  const precision = m[8] === undefined ? null : +m[8];
  const trim = !!m[9];
  const type = m[10] || "";
  return (v) => {
    let body;
    const a = Math.abs(v);
    if (type === "f" || type === "") {
      const p = precision ?? (type === "" ? null : 6);
      body = p === null ? grouped(carriedDecimals(a), group).format(a) : grouped(p, group).format(a);
    } else if (type === "d") {
      body = grouped(0, group).format(Math.round(a));
    } else if (type === "%") {
      body = `${grouped(precision ?? 6, group).format(a * 100)}%`;
    } else if (type === "e") {
      body = a.toExponential(precision ?? 6);
    } else if (type === "s") {
      const k = a === 0 ? 0 : Math.min(SI.length - 1, Math.max(0, Math.floor(Math.log10(a) / 3)));
      body = (a / 1000 ** k).toPrecision(precision ?? 6).replace(/\.?0+$/, "") + SI[k];
    } else {
      body = a.toPrecision(precision ?? 6);
    }
    if (trim && body.includes(".")) body = body.replace(/\.?0+(?=%?$)/, "");
    const neg = v < 0 && Number(body.replace(/[^0-9.eE]/g, "")) !== 0;
    const pre = neg ? (sign === "(" ? "(" : "-") : sign === "+" ? "+" : sign === " " ? " " : "";
    const post = neg && sign === "(" ? ")" : "";
    return `${pre}${currency ? "$" : ""}${body}${post}`;
  };
}

const pad2 = (x) => String(x).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
  "Dec"];

/** Calendar fields of epoch ms `t` in `zone` (UTC fast path, Intl otherwise). */
function zonedParts(t, zone, cache) {
  const d = new Date(t);
  if (zone === "UTC") {
    return { Y: d.getUTCFullYear(), m: d.getUTCMonth() + 1, d: d.getUTCDate(),
      H: d.getUTCHours(), M: d.getUTCMinutes(), S: d.getUTCSeconds(), L: d.getUTCMilliseconds() };
  }
  if (!cache.fmt) {
    cache.fmt = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23",
      year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric",
      second: "numeric" });
  }
  const p = {};
  for (const part of cache.fmt.formatToParts(d)) p[part.type] = part.value;
  return { Y: +p.year, m: +p.month, d: +p.day, H: +p.hour % 24, M: +p.minute, S: +p.second,
    L: d.getUTCMilliseconds() };
}

/** A time formatter for a strftime pattern (%Y %m %d %H %M %S %L %b %y), in `zone`. */
export function timeFormatter(pattern, zone) {
  const cache = {};
  return (t) => {
    const p = zonedParts(t, zone || "UTC", cache);
    return (pattern || "%H:%M:%S").replace(/%([YymdHMSLb%])/g, (_, c) => ({
      Y: String(p.Y), y: pad2(p.Y % 100), m: pad2(p.m), d: pad2(p.d), H: pad2(p.H),
      M: pad2(p.M), S: pad2(p.S), L: String(p.L).padStart(3, "0"), b: MONTHS[p.m - 1], "%": "%",
    })[c]);
  };
}

/** "0.4s", "12s", "3m05s", "2h10m", "3d". */
export function formatAge(ms) {
  if (!Number.isFinite(ms)) return "";
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad2(Math.floor(s % 60))}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad2(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d`;
}

/** (value, row) -> cell text, for one column spec (see grid_columns.browser_spec). */
export function cellFormatter(col, options) {
  const wrap = (s) => (s === "" ? "" : `${col.prefix || ""}${s}${col.suffix || ""}`);
  if (col.kind === "text") return (v) => (v === null || v === undefined ? "" : wrap(String(v)));
  if (col.kind === "time") {
    const f = timeFormatter(col.fmt, options.timezone);
    return (v) => (Number.isFinite(v) ? wrap(f(v)) : "");
  }
  if (col.kind === "age") return () => "";
  const scale = col.scale || 1;
  if (col.fmt === "auto") {
    return (v, row) => {
      if (!Number.isFinite(v)) return "";
      // A change that rounds to zero reads "0.00", not "-0.00".
      const text = grouped(row.decimals(col.ref || col.field, v)).format(v * scale);
      return wrap(NEGATIVE_ZERO.test(text) ? text.slice(1) : text);
    };
  }
  const f = col.fmt ? d3Formatter(col.fmt) : (x) => grouped(carriedDecimals(x), false).format(x);
  return (v) => (Number.isFinite(v) ? wrap(f(v * scale)) : "");
}

// ---- frames -------------------------------------------------------------------------------

function f64(buffer) {
  if (!buffer) return new Float64Array(0);
  if (buffer instanceof ArrayBuffer) return new Float64Array(buffer);
  const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  return new Float64Array(bytes.slice().buffer); // aligned copy
}

function i8(buffer) {
  if (!buffer) return new Int8Array(0);
  if (buffer instanceof ArrayBuffer) return new Int8Array(buffer);
  return new Int8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** One row the page holds: values by field, plus the decimals its prices carry. */
class Row {
  constructor(uid) {
    this.uid = uid;
    this.ver = 0; // grows with every frame that carries this row
    this.v = Object.create(null);
    this.dec = Object.create(null);
  }

  decimals(ref, own) {
    const p = this.v[ref];
    const v = Number.isFinite(p) ? p : own;
    const d = tickDecimals(v);
    const was = this.dec[ref] ?? 0;
    if (d > was) this.dec[ref] = d; // grow only: the number never jumps narrower
    return Math.max(d, was);
  }
}

/**
 * The rows this view holds, by display position, fed by frames. `apply()` returns the flashes
 * the frame asks for: [position, field, direction].
 */
export class GridState {
  constructor() {
    this.rows = new Map();
    this.byUid = new Map();
    this.total = 0;
    this.seq = 0;
    this.sentMs = 0;
    this.sort = null;
    this.ups = 0;
    this.filtered = false;
    this.receivedAt = 0;
  }

  /** Upstream updates per second as of the last frame; 0 once frames stopped coming. */
  upsNow(now) {
    return now - this.receivedAt < 3000 ? this.ups : 0;
  }

  apply(msg, buffers) {
    const flashes = [];
    const nums = (msg.num || []).map((_, k) => f64(buffers[k]));
    const dirs = (msg.flash || []).map((_, k) => i8(buffers[(msg.num || []).length + k]));
    for (let i = 0; i < msg.pos.length; i++) {
      const p = msg.pos[i];
      const uid = msg.uid[i];
      let row = this.byUid.get(uid);
      if (!row) {
        row = new Row(uid);
        this.byUid.set(uid, row);
      }
      row.ver++;
      for (const [field, values] of Object.entries(msg.text || {})) row.v[field] = values[i];
      msg.num.forEach((field, k) => { row.v[field] = nums[k][i]; });
      msg.flash.forEach((field, k) => { if (dirs[k][i]) flashes.push([p, field, dirs[k][i]]); });
      this.rows.set(p, row);
    }
    this.total = msg.total;
    for (const p of this.rows.keys()) if (p >= this.total) this.rows.delete(p);
    if (this.byUid.size > 4 * Math.max(this.rows.size, 256)) {
      const live = new Set([...this.rows.values()]);
      for (const [uid, row] of this.byUid) if (!live.has(row)) this.byUid.delete(uid);
    }
    this.seq = msg.seq;
    this.sentMs = msg.sent_ms;
    this.receivedAt = Date.now();
    this.sort = msg.sort || null;
    this.ups = msg.ups || 0;
    this.filtered = !!msg.filtered;
    return flashes;
  }
}

// ---- the view -----------------------------------------------------------------------------

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function render({ model, el: host }) {
  const cols = model.get("_columns");
  const opts = model.get("_options");
  const formatters = cols.map((c) => cellFormatter(c, opts));
  const flashMs = opts.flash_ms || 0;
  const state = new GridState();

  const root = el("div", "nbf-grid", host);
  const scroller = el("div", "nbf-scroll", root);
  scroller.style.maxHeight = `${opts.max_height}px`;
  const table = el("div", "nbf-table", scroller);
  const head = el("div", "nbf-head", table);
  const body = el("div", "nbf-body", table);
  const canvas = el("canvas", "nbf-canvas", body);
  const ctx = canvas.getContext("2d", { alpha: false });
  const empty = el("div", "nbf-empty", body);
  empty.textContent = "Waiting for data\u2026";
  const status = el("div", "nbf-status", root);

  // ---- theme and font, read from CSS (JupyterLab's variables) ----
  let theme = null;
  function readTheme() {
    const cs = getComputedStyle(root);
    const oldFont = theme ? theme.font : "";
    const v = (name) => cs.getPropertyValue(name).trim();
    theme = {
      bg: v("--nbf-bg") || "#fff", fg: v("--nbf-fg") || "#000", muted: v("--nbf-muted"),
      line: v("--nbf-line"), sel: v("--nbf-sel"), up: v("--nbf-up"), down: v("--nbf-down"),
      upBg: v("--nbf-up-bg"), downBg: v("--nbf-down-bg"),
      font: `${cs.fontSize} ${cs.fontFamily}`, bold: `600 ${cs.fontSize} ${cs.fontFamily}`,
      connected: root.isConnected,
    };
    refillAll = true;
    if (theme.font !== oldFont && theme.connected) {
      // Widths measured with another font (or none, before the view was on the page) are
      // wrong: measure every header and drawn text again.
      headersFitted = false;
      for (const slot of slots) slot.cells.forEach((c, k) => fit(k, c.text, false));
    }
  }

  // Column widths: measured from the header and every text drawn, grow-only.
  const widths = cols.map((c) => c.width || MIN_COL);
  const fixed = cols.map((c) => !!c.width);
  let widthsDirty = true;
  const measure = document.createElement("canvas").getContext("2d");
  let measureFont = "";
  function fit(k, text, bold) {
    if (fixed[k] || !text) return;
    const font = bold ? theme.bold : theme.font;
    if (font !== measureFont) {
      measure.font = font;
      measureFont = font;
    }
    const w = Math.ceil(measure.measureText(text).width + CELL_PAD);
    if (w > widths[k]) {
      widths[k] = w;
      widthsDirty = true;
    }
  }

  const headCells = cols.map((c, k) => {
    const h = el("div", `nbf-h nbf-${c.align}`, head);
    h.title = c.kind === "time" ? `${c.header} (${opts.timezone})` : c.header;
    // The sort mark goes on the inner side of the label: before it in a right-aligned column.
    const mark = c.align === "right" ? el("span", "nbf-sort", h) : null;
    const label = el("span", "nbf-label", h);
    label.textContent = c.kind === "time" && opts.timezone
      ? `${c.header} ${shortZone(opts.timezone)}` : c.header;
    const after = mark || el("span", "nbf-sort", h);
    h.addEventListener("click", () => onHeaderClick(k));
    return { h, label, mark: after };
  });

  // What each on-screen slot shows: slot i is display row first + i.
  let slots = [];
  let first = 0;
  let viewW = 0;
  let viewH = 0;
  let dpr = 1;
  let following = true;
  let selectedUid = model.get("_selected_uid") || 0;
  let sortView;
  let streamStatus = model.get("_status") || {};
  let lastAcked = 0;
  let draws = 0;
  let raf = 0;
  let refillAll = true;
  const queue = [];
  const pendingFlashes = [];
  const fading = new Set(); // cells with a pulse or a direction bar still to expire

  function newSlot() {
    return { uid: -1, ver: -1, row: null, cells: cols.map(() => ({
      text: "", pulse: 0, dir: 0, step: -1, markUntil: 0 })) };
  }

  function layout() {
    const total = state.total;
    const contentW = widths.reduce((a, b) => a + b, 0);
    table.style.width = `${contentW}px`;
    headCells.forEach((hc, k) => { hc.h.style.width = `${widths[k]}px`; });
    body.style.height = `${Math.max(1, total) * ROW_H}px`;
    empty.style.display = total ? "none" : "";
    const room = Math.max(ROW_H, scroller.clientHeight - HEAD_H);
    const h = total ? Math.min(total * ROW_H, room) : 0;
    const ratio = globalThis.devicePixelRatio || 1;
    if (h !== viewH || contentW !== viewW || ratio !== dpr) {
      viewW = contentW;
      viewH = h;
      dpr = ratio;
      canvas.width = Math.max(1, Math.round(viewW * dpr));
      canvas.height = Math.max(1, Math.round(viewH * dpr));
      canvas.style.width = `${viewW}px`;
      canvas.style.height = `${viewH}px`;
      canvas.style.display = h ? "" : "none";
      refillAll = true;
    }
    widthsDirty = false;
  }

  function isStale(row, now) {
    const st = streamStatus.state;
    if (st && st !== "live") {
      const syms = streamStatus.symbols;
      if (!syms || !opts.symbol_field) return true;
      return syms.includes(row.v[opts.symbol_field]);
    }
    if (opts.stale_after && opts.time_field) {
      const t = row.v[opts.time_field];
      return Number.isFinite(t) && now - t > opts.stale_after * 1000;
    }
    return false;
  }

  function cellText(k, row, now) {
    const c = cols[k];
    if (c.kind === "age") {
      const t = opts.time_field ? row.v[opts.time_field] : NaN;
      return formatAge(now - t);
    }
    return formatters[k](row.v[c.field], row);
  }

  function textColor(k, row, stale) {
    const c = cols[k];
    if (stale) return theme.muted;
    if (!c.greenRed) return theme.fg;
    const v = row.v[c.signField || c.field];
    return v > 0 ? theme.up : v < 0 ? theme.down : theme.fg;
  }

  function pulseStep(cell, now) {
    if (!cell.pulse) return -1;
    const age = now - cell.pulse;
    if (age >= flashMs) return -1;
    return Math.floor((age / flashMs) * FADE_STEPS);
  }

  /** Paint one cell of slot i (background, pulse, direction bar, text). */
  function paintCell(i, k, now) {
    const slot = slots[i];
    const cell = slot.cells[k];
    const row = slot.row;
    let x = 0;
    for (let j = 0; j < k; j++) x += widths[j];
    const y = (first + i) * ROW_H - scroller.scrollTop;
    const w = widths[k];
    ctx.fillStyle = theme.bg;
    ctx.fillRect(x, y, w, ROW_H - 1);
    if (row && row.uid === selectedUid) {
      ctx.fillStyle = theme.sel;
      ctx.fillRect(x, y, w, ROW_H - 1);
    }
    const step = pulseStep(cell, now);
    cell.step = step;
    if (step >= 0) {
      ctx.globalAlpha = 1 - step / FADE_STEPS;
      ctx.fillStyle = cell.dir > 0 ? theme.upBg : theme.downBg;
      ctx.fillRect(x, y, w, ROW_H - 1);
      ctx.globalAlpha = 1;
    }
    if (cell.markUntil > now) {
      // The latest direction: a small triangle in the cell's left padding.
      const cy = y + ROW_H / 2;
      ctx.fillStyle = cell.dir > 0 ? theme.up : theme.down;
      ctx.beginPath();
      if (cell.dir > 0) {
        ctx.moveTo(x + 2, cy + 2); ctx.lineTo(x + 7, cy + 2); ctx.lineTo(x + 4.5, cy - 2.5);
      } else {
        ctx.moveTo(x + 2, cy - 2); ctx.lineTo(x + 7, cy - 2); ctx.lineTo(x + 4.5, cy + 2.5);
      }
      ctx.fill();
    }
    if (!row || !cell.text) return;
    const stale = isStale(row, now);
    ctx.fillStyle = textColor(k, row, stale);
    const align = cols[k].align;
    if (ctx.textAlign !== align) ctx.textAlign = align;
    const tx = align === "right" ? x + w - 8 : align === "center" ? x + w / 2 : x + 8;
    ctx.fillText(cell.text, tx, y + ROW_H / 2, w - 12);
  }

  function paintRow(i, now) {
    const y = (first + i) * ROW_H - scroller.scrollTop;
    ctx.fillStyle = theme.line;
    ctx.fillRect(0, y + ROW_H - 1, viewW, 1);
    for (let k = 0; k < cols.length; k++) paintCell(i, k, now);
  }

  /** Bring slot i up to date with display row p; returns whether it shows the same row. */
  function fill(i, p, now) {
    const slot = slots[i];
    const row = state.rows.get(p) || null;
    const same = slot.row !== null && row !== null && slot.row.uid === row.uid;
    slot.row = row;
    slot.uid = row ? row.uid : -1;
    slot.ver = row ? row.ver : -1;
    for (let k = 0; k < cols.length; k++) {
      const cell = slot.cells[k];
      const text = row ? cellText(k, row, now) : "";
      cell.changed = same && text !== cell.text;
      if (text !== cell.text) {
        cell.text = text;
        fit(k, text, false);
      }
      if (!same) {
        cell.pulse = 0;
        cell.markUntil = 0;
      }
    }
    return same;
  }

  function flash(cell, dir, now) {
    cell.dir = dir;
    cell.markUntil = now + MARK_MS;
    if (flashMs > 0 && now - cell.pulse >= PULSE_COOLDOWN) cell.pulse = now;
    fading.add(cell);
  }

  function draw() {
    raf = 0;
    const now = Date.now();
    if (!theme || !theme.connected) readTheme();
    let applied = false;
    for (const { msg, buffers } of queue.splice(0)) {
      for (const f of state.apply(msg, buffers)) pendingFlashes.push(f);
      applied = true;
    }
    if (applied || widthsDirty) layout();
    if (applied && opts.follow && following && state.total) {
      scroller.scrollTop = opts.newest_first ? 0 : scroller.scrollHeight;
    }
    const top = scroller.scrollTop;
    const newFirst = Math.floor(top / ROW_H);
    const count = Math.max(0, Math.min(Math.ceil(viewH / ROW_H) + 1, state.total - newFirst));
    if (newFirst !== first || slots.length !== count || top % ROW_H !== 0) refillAll = true;
    first = newFirst;
    while (slots.length < count) slots.push(newSlot());
    slots.length = count;
    // Which slots changed; their texts may widen columns before anything is painted.
    const dirty = [];
    for (let i = 0; i < count; i++) {
      const p = first + i;
      const row = state.rows.get(p) || null;
      const slot = slots[i];
      if (refillAll || slot.uid !== (row ? row.uid : -1) || (row && slot.ver !== row.ver)) {
        fill(i, p, now);
        dirty.push(i);
      } else {
        for (const cell of slot.cells) cell.changed = false;
      }
    }
    for (const [p, field, dir] of pendingFlashes.splice(0)) {
      const i = p - first;
      if (i < 0 || i >= count) continue;
      const k = cols.findIndex((c) => c.field === field && c.flash);
      if (k >= 0 && slots[i].cells[k].changed) flash(slots[i].cells[k], dir, now);
    }
    drawHeader();
    if (widthsDirty) {
      layout();
      refillAll = true;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.textBaseline = "middle";
    ctx.font = theme.font; // (setting a font parses it: once per draw, not per cell)
    if (refillAll) {
      ctx.fillStyle = theme.bg;
      ctx.fillRect(0, 0, viewW, viewH);
      for (let i = 0; i < count; i++) paintRow(i, now);
    } else {
      for (const i of dirty) paintRow(i, now);
      // Pulses step through their fade; direction bars expire.
      for (let i = 0; i < count; i++) {
        if (dirty.includes(i)) continue;
        const slot = slots[i];
        for (let k = 0; k < cols.length; k++) {
          const cell = slot.cells[k];
          if (!fading.has(cell)) continue;
          const expired = cell.markUntil && cell.markUntil <= now;
          if (pulseStep(cell, now) !== cell.step || expired) paintCell(i, k, now);
        }
      }
    }
    for (const cell of fading) {
      if (cell.markUntil <= now && pulseStep(cell, now) < 0) {
        if (cell.markUntil) {
          cell.markUntil = 0;
          cell.pulse = 0;
        }
        fading.delete(cell);
      }
    }
    refillAll = false;
    drawStatus();
    draws++;
    const d = root.dataset;
    d.seq = String(state.seq);
    d.total = String(state.total);
    d.draws = String(draws);
    if (state.seq !== lastAcked) {
      const seq = state.seq;
      lastAcked = seq;
      // After the paint this frame triggers: the kernel's next frame waits for it.
      setTimeout(() => model.send({ type: "ack", seq }), 0);
    }
    // Keep stepping the fades at FADE_HZ while any is running, not at the display's rate.
    if (fading.size && !fadeTimer) {
      fadeTimer = setTimeout(() => { fadeTimer = 0; schedule(); }, 1000 / FADE_HZ);
    }
  }
  let fadeTimer = 0;

  let headersFitted = false;
  function drawHeader() {
    if (!headersFitted && theme.connected) {
      // Room for the sort mark too: sorting never cuts a header.
      headCells.forEach((hc, k) => fit(k, `${hc.label.textContent} \u25bc`, true));
      headersFitted = true;
    }
    const sort = state.sort;
    if (JSON.stringify(sort) === JSON.stringify(sortView)) return;
    sortView = sort;
    headCells.forEach((hc, k) => {
      const on = sort && sort[0] === cols[k].field;
      hc.mark.textContent = on ? (sort[1] ? "\u25bc" : "\u25b2") : "";
      hc.h.classList.toggle("nbf-sorted", !!on);
    });
  }

  let statusText = "";
  let statusAt = 0;
  let statusTimer = 0;
  function drawStatus() {
    const now = Date.now();
    if (now - statusAt < 500 && statusText) {
      // Rate-limited, but never left stale: draw it once the half second is over.
      if (!statusTimer) {
        statusTimer = setTimeout(() => { statusTimer = 0; drawStatus(); }, 500 - (now - statusAt));
      }
      return;
    }
    statusAt = now;
    const parts = [`${state.total.toLocaleString("en-US")} row${state.total === 1 ? "" : "s"}`];
    const ups = state.upsNow(now);
    if (ups > 0) {
      parts.push(`${ups >= 100 ? Math.round(ups).toLocaleString("en-US") : ups.toFixed(1)} upd/s`);
    }
    if (state.filtered) parts.push("filtered");
    const st = streamStatus.state || "live";
    if (st !== "live" || ups > 0) {
      parts.push(streamStatus.symbols && st !== "live"
        ? `${st}: ${streamStatus.symbols.join(", ")}` : st);
    }
    if (opts.follow && !following) parts.push("following paused \u2013 click to resume");
    const text = parts.join(" \u00b7 ");
    if (text !== statusText) {
      status.textContent = text;
      status.title = text;
      status.className = `nbf-status${st === "live" ? "" : " nbf-warn"}`;
      statusText = text;
    }
  }

  function schedule() {
    if (!raf) raf = requestAnimationFrame(draw);
  }

  // ---- talking to the kernel ----
  let viewSent = "";
  let viewTimer = 0;
  function visibleRange() {
    const f = Math.floor(scroller.scrollTop / ROW_H);
    const n = Math.ceil(Math.max(ROW_H, scroller.clientHeight - HEAD_H) / ROW_H);
    return [f, f + n];
  }

  function sendView(kind) {
    const [f, l] = visibleRange();
    const key = `${f}:${l}`;
    if (kind === "view" && key === viewSent) return;
    viewSent = key;
    model.send({ type: kind, first: f, last: l });
  }

  function onMessage(msg, buffers) {
    if (!msg || msg.type !== "frame") return;
    queue.push({ msg, buffers: buffers || [] });
    if (queue.length > MAX_QUEUE) {
      // No animation frames (hidden tab): keep the state current without drawing.
      for (const q of queue.splice(0, queue.length - 1)) state.apply(q.msg, q.buffers);
    }
    schedule();
  }

  function onScroll() {
    if (opts.follow) {
      following = opts.newest_first ? scroller.scrollTop <= ROW_H / 2
        : scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - ROW_H / 2;
    }
    refillAll = true;
    schedule();
    if (!viewTimer) {
      viewTimer = setTimeout(() => {
        viewTimer = 0;
        sendView("view");
      }, VIEW_THROTTLE_MS);
    }
  }

  function onHeaderClick(k) {
    const field = cols[k].field;
    const sort = state.sort;
    let next;
    if (!sort || sort[0] !== field) next = { field, desc: false };
    else if (!sort[1]) next = { field, desc: true };
    else next = { field: null, desc: null };
    state.sort = next.field ? [next.field, next.desc] : null; // at once; the kernel confirms
    model.send({ type: "sort", ...next });
    schedule();
  }

  function onCanvasClick(e) {
    const r = canvas.getBoundingClientRect();
    const p = Math.floor((e.clientY - r.top + scroller.scrollTop) / ROW_H);
    const row = state.rows.get(p);
    if (!row) return;
    selectedUid = row.uid;
    model.send({ type: "click", uid: selectedUid });
    refillAll = true;
    schedule();
  }

  function onStatusClick() {
    if (opts.follow && !following) {
      following = true;
      scroller.scrollTop = opts.newest_first ? 0 : scroller.scrollHeight;
      schedule();
    }
  }

  const onStatusChange = () => {
    streamStatus = model.get("_status") || {};
    refillAll = true;
    schedule();
  };
  const onSelected = () => {
    selectedUid = model.get("_selected_uid") || 0;
    refillAll = true;
    schedule();
  };

  scroller.addEventListener("scroll", onScroll, { passive: true });
  canvas.addEventListener("click", onCanvasClick);
  status.addEventListener("click", onStatusClick);
  model.on("msg:custom", onMessage);
  model.on("change:_status", onStatusChange);
  model.on("change:_selected_uid", onSelected);
  // Ages tick and rows go stale without any new frame.
  const ticker = setInterval(() => {
    drawStatus();
    if (cols.some((c) => c.kind === "age") || opts.stale_after) {
      refillAll = true;
      schedule();
    }
  }, TICK_MS);
  const resize = new ResizeObserver(() => { widthsDirty = true; schedule(); sendView("view"); });
  resize.observe(scroller);
  // JupyterLab switches themes by changing attributes on <body>: repaint with the new colours.
  const themeObserver = new MutationObserver(() => { theme = null; schedule(); });
  themeObserver.observe(document.body, { attributes: true });

  // For tests and tools: what this view shows, as text.
  root.nbfeed = {
    headers: () => headCells.map((hc) => hc.label.textContent),
    widths: () => widths.slice(),
    rows: () => slots.map((s) => s.cells.map((c) => c.text)),
    first: () => first,
    state,
  };

  readTheme();
  drawHeader();
  layout();
  drawStatus();
  sendView("hello");
  schedule();

  return () => {
    if (raf) cancelAnimationFrame(raf);
    clearInterval(ticker);
    clearTimeout(viewTimer);
    clearTimeout(fadeTimer);
    clearTimeout(statusTimer);
    resize.disconnect();
    themeObserver.disconnect();
    model.off("msg:custom", onMessage);
    model.off("change:_status", onStatusChange);
    model.off("change:_selected_uid", onSelected);
    root.remove();
  };
}

function shortZone(zone) {
  if (zone === "UTC") return "(UTC)";
  try {
    const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "short" })
      .formatToParts(new Date());
    const name = parts.find((p) => p.type === "timeZoneName");
    return `(${name ? name.value : zone})`;
  } catch {
    return `(${zone})`;
  }
}

export default { render };
