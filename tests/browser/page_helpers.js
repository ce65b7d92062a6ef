// Installed in JupyterLab pages by tests/browser/lab_page.py: see its docstring.
(() => {
  if (window.nbf) return;
  const ROW_H = 22; // nbfeed/widgets/static/grid.js
  const panel = () => jupyterapp.shell.currentWidget;
  const nbf = {
    cell(tag) {
      const p = panel();
      if (!p || !p.content || !p.content.widgets) return null;
      return p.content.widgets.find(
        c => c.model.type === 'code' && c.model.sharedModel.getSource().startsWith('# ' + tag + '\n'));
    },
    // Every LiveGrid view on the page, or those in the output of cell `tag`.
    grids(tag) {
      const scope = tag ? nbf.cell(tag) && nbf.cell(tag).outputArea.node : document;
      return scope ? [...scope.querySelectorAll('.nbf-grid')].filter(g => g.nbfeed) : [];
    },
    grid(tag) { return nbf.grids(tag)[0] || null; },
    charts(tag) {
      const scope = tag ? nbf.cell(tag) && nbf.cell(tag).outputArea.node : document;
      return scope ? [...scope.querySelectorAll('[data-bars]')] : [];
    },
    headers(tag) { return nbf.grid(tag).nbfeed.headers(); },
    col(tag, header) { return nbf.headers(tag).indexOf(header); },
    // The texts a grid drew in its visible rows.
    rows(tag) { return nbf.grid(tag).nbfeed.rows(); },
    // Whole-output checks of one grid view: what a user would call broken.
    inspect(g) {
      const api = g.nbfeed, widths = api.widths();
      const ctx = document.createElement('canvas').getContext('2d');
      const cs = getComputedStyle(g);
      ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
      const bad = [], cut = [];
      api.rows().forEach((row, r) => row.forEach((text, c) => {
        if (/NaN|undefined|null|\.\.\.|Infinity/.test(text)) bad.push([r, c, text]);
        if (text && ctx.measureText(text).width > widths[c] - 10) cut.push([r, c, text]);
      }));
      const headerCut = [...g.querySelectorAll('.nbf-h')].filter(h => {
        const label = h.querySelector('.nbf-label');
        return label.getBoundingClientRect().right > h.getBoundingClientRect().right - 7;
      }).map(h => h.textContent);
      const rect = g.getBoundingClientRect();
      const total = +g.dataset.total || 0;
      return {
        headers: api.headers(), rows: api.rows().length, total, bad, cut, headerCut,
        empty: api.rows().filter(row => row.every(t => t === '')).length,
        height: rect.height, width: rect.width,
        columnsWidth: widths.reduce((a, b) => a + b, 0),
      };
    },
    // Top-left corner of body cell (r = visible slot, c = column) in canvas pixels, and size.
    cellBox(tag, r, c) {
      const widths = nbf.grid(tag).nbfeed.widths();
      let x = 0;
      for (let i = 0; i < c; i++) x += widths[i];
      return {x, y: r * ROW_H, w: widths[c], h: ROW_H};
    },
    canvas(tag) { return nbf.grid(tag).querySelector('canvas'); },
    // The background colour of a body cell, away from its text and direction mark.
    pixel(tag, r, c) {
      const b = nbf.cellBox(tag, r, c), dpr = window.devicePixelRatio || 1;
      const ctx = nbf.canvas(tag).getContext('2d');
      const d = ctx.getImageData(Math.round((b.x + 9) * dpr), Math.round((b.y + 3) * dpr), 1, 1).data;
      return [d[0], d[1], d[2]];
    },
    // 'green', 'red', 'normal' (as the reference cell) or 'other'.
    classify(rgb, base) {
      const [r, g, b] = rgb;
      if (Math.abs(r - base[0]) + Math.abs(g - base[1]) + Math.abs(b - base[2]) < 12) return 'normal';
      // Tints fade in steps: the last steps are faint, so compare the channels, not levels.
      if (g > r + 3 && g > b + 3) return 'green';
      if (r > g + 3 && r > b + 3) return 'red';
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
    seen(name) {
      const w = nbf.watches[name];
      return w ? w.changes.map(c => c[1]) : [];
    },
    latest(name) {
      const w = nbf.watches[name];
      return w && w.changes.length ? w.changes[w.changes.length - 1][1] : undefined;
    },
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
    async theme(name) {
      await jupyterapp.commands.execute('apputils:change-theme', {theme: name});
    },
  };
  window.nbf = nbf;
})();
