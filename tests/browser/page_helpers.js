// Installed in JupyterLab pages by tests/browser/lab_page.py: see its docstring.
(() => {
  if (window.nbf) return;
  const panel = () => jupyterapp.shell.currentWidget;
  const nbf = {
    cell(tag) {
      const p = panel();
      if (!p || !p.content || !p.content.widgets) return null;
      return p.content.widgets.find(
        c => c.model.type === 'code' && c.model.sharedModel.getSource().startsWith('# ' + tag + '\n'));
    },
    // The widget view (ipywidgets) rendered in a cell's output, or null before it renders.
    view(tag) {
      const cell = nbf.cell(tag);
      if (!cell) return null;
      for (const out of cell.outputArea.widgets) {
        for (const renderer of (out.widgets || [])) {
          for (const w of (renderer.widgets || [])) if (w._view) return w._view;
        }
      }
      return null;
    },
    grid(tag) {
      const v = nbf.view(tag);
      return v && v.grid && v.grid.grid && v.grid.grid.dataModel ? v.grid.grid : null;
    },
    headers(tag) {
      const g = nbf.grid(tag), m = g.dataModel, out = [];
      for (let c = 0; c < m.columnCount('body'); c++) out.push(m.data('column-header', 0, c));
      return out;
    },
    col(tag, header) { return nbf.headers(tag).indexOf(header); },
    rows(tag) {
      const g = nbf.grid(tag), m = g.dataModel, out = [];
      for (let r = 0; r < m.rowCount('body'); r++) {
        const row = [];
        for (let c = 0; c < m.columnCount('body'); c++) row.push(m.data('body', r, c));
        out.push(row);
      }
      return out;
    },
    // Body rows on screen: [first, last] (all rows have the same height in these grids).
    visibleRows(tag) {
      const g = nbf.grid(tag), h = g.defaultSizes.rowHeight;
      const first = Math.floor(g.scrollY / h);
      const shown = Math.floor((g.viewportHeight - g.headerHeight) / h);
      return [first, Math.min(g.dataModel.rowCount('body') - 1, first + shown - 1)];
    },
    // Top-left corner of a body cell in canvas (CSS) pixels, and its size.
    cellBox(tag, r, c) {
      const g = nbf.grid(tag);
      let x = g.headerWidth - g.scrollX, y = g.headerHeight - g.scrollY;
      for (let i = 0; i < c; i++) x += g.columnSize('body', i);
      for (let i = 0; i < r; i++) y += g.rowSize('body', i);
      return {x, y, w: g.columnSize('body', c), h: g.rowSize('body', r)};
    },
    canvas(tag) { return nbf.grid(tag).node.querySelector('canvas'); },
    pixel(tag, r, c) {
      const b = nbf.cellBox(tag, r, c), dpr = window.devicePixelRatio || 1;
      const ctx = nbf.canvas(tag).getContext('2d');
      const d = ctx.getImageData(Math.round((b.x + 3) * dpr), Math.round((b.y + b.h / 2) * dpr), 1, 1).data;
      return [d[0], d[1], d[2]];
    },
    // A digest of a cell's pixels (inside its borders): equal digests = the cell looks the same.
    cellDigest(tag, r, c) {
      const b = nbf.cellBox(tag, r, c), dpr = window.devicePixelRatio || 1;
      const d = nbf.canvas(tag).getContext('2d').getImageData(
        Math.round((b.x + 1) * dpr), Math.round((b.y + 1) * dpr),
        Math.round((b.w - 2) * dpr), Math.round((b.h - 2) * dpr)).data;
      let h = 2166136261;
      for (let i = 0; i < d.length; i++) { h ^= d[i]; h = Math.imul(h, 16777619) >>> 0; }
      return h;
    },
    // 'green', 'red', 'normal' (as the reference cell) or 'other'.
    classify(rgb, base) {
      const [r, g, b] = rgb;
      if (Math.abs(r - base[0]) + Math.abs(g - base[1]) + Math.abs(b - base[2]) < 12) return 'normal';
      if (g > r + 20 && g > b) return 'green';
      if (r > g + 20 && r > b + 20) return 'red';
      return 'other';
    },
    // Background state of a cell, against the same row's cell in column refCol (never flashes).
    cellState(tag, r, c, refCol) {
      return nbf.classify(nbf.pixel(tag, r, c), nbf.pixel(tag, r, refCol));
    },
    // Samples fn() every ms; keeps each change as [ms since the start, value].
    watch(name, fn, ms) {
      nbf.unwatch(name);
      const w = {changes: [], last: undefined, timer: 0, t0: performance.now()};
      const sample = () => {
        let v;
        try { v = fn(); } catch (e) { v = 'error: ' + e; }
        const key = JSON.stringify(v);
        if (key !== w.last) {
          w.changes.push([Math.round(performance.now() - w.t0), v]);
          w.last = key;
        }
      };
      sample();
      w.timer = setInterval(sample, ms);
      nbf.watches[name] = w;
    },
    watches: {},
    // The distinct values a watch has seen so far.
    seen(name) {
      const w = nbf.watches[name];
      return w ? w.changes.map(c => c[1]) : [];
    },
    latest(name) {
      const w = nbf.watches[name];
      return w && w.changes.length ? w.changes[w.changes.length - 1][1] : undefined;
    },
    // Stops a watch; returns its changes.
    unwatch(name) {
      const w = nbf.watches[name];
      if (!w) return null;
      clearInterval(w.timer);
      delete nbf.watches[name];
      return w.changes;
    },
    kernel() { return panel().sessionContext.session.kernel; },
    // Runs code in the notebook's kernel; resolves to the error text, or null on success.
    async run(code) {
      let error = null;
      const future = nbf.kernel().requestExecute({code, stop_on_error: true});
      future.onIOPub = msg => {
        if (msg.header.msg_type === 'error') error = msg.content.ename + ': ' + msg.content.evalue;
      };
      const reply = await future.done;
      return reply.content.status === 'ok' ? null : (error || reply.content.status);
    },
    outputs() {
      return panel().content.widgets.filter(c => c.model.type === 'code')
        .map(c => ({count: c.model.executionCount, outputs: c.model.outputs.toJSON()}));
    },
  };
  window.nbf = nbf;
})();
