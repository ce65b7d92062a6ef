"""LiveGrid against Perspective's widget, in the same JupyterLab, headless Chromium, same stream.

One JupyterLab server (nbfeed extension, the ``simulated`` provider) and one page. For each
upstream rate (default 100, 2,000 and 20,000 row updates/s over ~50 symbols, by registering a
``simulated`` source whose per-stream ``rate`` makes that total) and each widget in turn, the
kernel subscribes to every symbol and one ``on_update`` callback stamps each row with the
kernel's wall-clock time (``sent``, epoch ms) and feeds it to the widget on screen:
``LiveGrid.update(rows)``, or ``perspective.Table.update(rows)`` behind a ``PerspectiveWidget``
(Perspective 5, an anywidget; its datagrid's "pulse" on the price columns; its table is
updated on the kernel's event loop, because updating it from the stream's thread deadlocked the
kernel). The widget shows
every symbol at once (about 50 visible rows). After a warm-up, over ``--seconds``:

- kernel CPU: ``time.process_time()`` of the kernel process (all threads), % of one core;
- kernel -> page messages/s: the widget's comm messages, counted in the kernel;
- page main thread busy: Chrome's ``TaskDuration`` metric (DevTools protocol), % of wall time,
  and in brackets its CPU time (``ThreadTime``), which other load on the machine inflates less;
- frames/s: ``requestAnimationFrame`` callbacks in the page (a frame the main thread could
  produce);
- the reference floor, once at the first rate: the same page and stream with no widget drawn
  (``none``);
- staleness: sampled every 100 ms in the page as ``Date.now()`` minus the newest ``sent`` value
  drawn in the widget's visible cells (Perspective's from its DOM, LiveGrid's from the
  texts its canvas view reports drawing), p50 and p90.

Each widget runs ``--repeats`` times per rate (alternating) and the table shows the means.

Run: ``python bench/grid_browser.py [--rates 100,2000,20000] [--seconds 15]`` (needs the
``bench`` extra for Perspective, and Chromium: ``scripts/install-chromium.sh``). Prints one
table; about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.lab_page import (  # noqa: E402
    HELPERS,
    error_outputs,
    open_notebook,
    run_all_from_menu,
    wait_all_ran,
)
from tests.browser.lab_server import CHROMIUM_ARGS, LabServer, find_chromium  # noqa: E402
from tests.browser.test_lab_grid_chart import write_notebook  # noqa: E402

COLUMNS = ["symbol", "price", "change", "bid", "ask", "volume", "sent"]

SETUP = """
import json, threading, time
import ipywidgets
import nbfeed
import perspective
from perspective.widget import PerspectiveWidget

feed = nbfeed.connect()
SYMBOLS = list(feed.symbols(source="simulated", limit=200)["name"])[:{symbols}]
box = ipywidgets.Output()
registered = set()
box
"""

PHASE = """
_rate = {rate}
_name = "bench{rate}"
if _name not in registered:  # one source per rate, shared by both widgets
    feed.register_provider(_name, "nbfeed.providers.simulated:SimulatedProvider",
                           rate=_rate / len(SYMBOLS))
    registered.add(_name)
_stream = feed.subscribe(_name, SYMBOLS)
_count = {{"msgs": 0, "rows": 0}}
if "{widget}" == "none":  # the page's own cost: the stream runs, nothing draws it
    _w = ipywidgets.Label("no grid")
    _w.add_class("nbf-none")
    def _feed_rows(rows):
        pass
elif "{widget}" == "LiveGrid":
    _w = nbfeed.LiveGrid(columns=[*{columns!r}[:-1], {{"field": "sent", "fmt": ".0f",
                                                     "flash": False}}],
                         max_height=1300, **{grid_kwargs})
    _feed_rows = _w.update
else:
    # One Perspective widget for every run: a second one in the same page fails to render
    # (its custom elements are defined again: "the name 'regular-layout' has already been
    # used"), so it is created once, shown for its runs and kept.
    if "_pw" not in globals():
        _ptable = perspective.table({{"symbol": "string", "price": "float", "change": "float",
                                     "bid": "float", "ask": "float", "volume": "float",
                                     "sent": "float"}}, index="symbol")
        _pw = PerspectiveWidget(_ptable, columns={columns!r}, settings=False,
                                columns_config={{c: {{"number_bg_mode": "pulse"}}
                                                for c in ("price", "change", "bid", "ask")}})
    _w, _table = _pw, _ptable
    _w.layout.height = "1300px"
    # Perspective's table is not safe to update from another thread while the kernel's main
    # thread serves the page's requests (it deadlocked here): hand the rows to the kernel's
    # event loop, as Perspective's own Jupyter examples do.
    import asyncio
    _loop = asyncio.get_event_loop()
    def _feed_rows(rows):
        _loop.call_soon_threadsafe(_table.update, rows)
_publish = getattr(_w.comm.publish_msg, "original", _w.comm.publish_msg)
def _counted(*args, **kwargs):
    _count["msgs"] += 1
    return _publish(*args, **kwargs)
_counted.original = _publish
_w.comm.publish_msg = _counted
def _on_rows(rows):
    now = time.time() * 1000.0
    rows = [{{k: r.get(k) for k in {columns!r}[:-1]}} | {{"sent": now}} for r in rows]
    _count["rows"] += len(rows)
    _feed_rows(rows)
_stream.on_update(_on_rows)
with box:
    display(_w)
"""

MARK = """
_mark = (time.process_time(), time.monotonic(), _count["msgs"], _count["rows"])
"""

REPORT = """
_cpu, _wall, _msgs, _rows = _mark
_wall = time.monotonic() - _wall
with open({path!r}, "w") as _fh:
    json.dump({{"cpu": (time.process_time() - _cpu) / _wall,
               "msgs": (_count["msgs"] - _msgs) / _wall,
               "rows": (_count["rows"] - _rows) / _wall}}, _fh)
"""

TEARDOWN = """
_stream.off_update(_on_rows)
_stream.close()
box.clear_output()
if _w is not globals().get("_pw"):
    _w.close()
"""

PAGE_PROBE = """
() => {
  if (window.__bench) return;
  const b = window.__bench = {frames: 0, samples: [], timer: 0};
  const loop = () => { b.frames++; requestAnimationFrame(loop); };
  requestAnimationFrame(loop);
  // All elements under `node`, through open shadow roots (Perspective draws in them).
  const all = (node, sel, out = []) => {
    if (node.querySelectorAll) {
      for (const e of node.querySelectorAll(sel)) out.push(e);
      for (const e of node.querySelectorAll('*')) if (e.shadowRoot) all(e.shadowRoot, sel, out);
    }
    return out;
  };
  const num = (text) => parseFloat(String(text).replace(/,/g, ''));
  b.newestSent = () => {
    let best = NaN;
    for (const grid of document.querySelectorAll('.nbf-grid')) {
      // LiveGrid draws on a canvas; its view reports the texts it drew.
      const k = grid.nbfeed.headers().indexOf('sent');
      for (const row of grid.nbfeed.rows()) {
        const v = num(row[k]);
        if (!(v <= best)) best = v;
      }
    }
    for (const table of all(document, 'regular-table table')) {
      let k = -1;
      for (const tr of table.querySelectorAll('thead tr')) {
        const heads = [...tr.querySelectorAll('th')].map(h => h.textContent.trim());
        if (heads.includes('sent')) k = heads.indexOf('sent');
      }
      if (k < 0) continue;
      for (const tr of table.querySelectorAll('tbody tr')) {
        const cells = tr.querySelectorAll('th, td');
        const v = num(cells[k] && cells[k].textContent);
        if (!(v <= best)) best = v;
      }
    }
    return best;
  };
  b.debug = () => all(document, 'regular-table table').map(t => t.outerHTML.slice(0, 3000));
  b.start = () => {
    b.frames = 0; b.samples = []; b.t0 = performance.now();
    b.timer = setInterval(() => {
      const sent = b.newestSent();
      if (document.querySelector('.nbf-none')) { b.samples.push(NaN); return; }
      if (Number.isFinite(sent)) b.samples.push(Date.now() - sent);
    }, 100);
  };
  b.stop = () => {
    clearInterval(b.timer);
    return {frames: b.frames / ((performance.now() - b.t0) / 1000), samples: b.samples};
  };
}
"""


def main_thread(cdp) -> tuple[float, float]:
    """Seconds the page's main thread spent in tasks (wall) and on the CPU, so far."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return metrics["TaskDuration"], metrics["ThreadTime"]


def run_code(page, code: str, timeout_s: float = 120) -> None:
    error = page.evaluate(
        """([code, ms]) => Promise.race([nbf.run(code), new Promise(
             (resolve) => setTimeout(() => resolve('no answer from the kernel'), ms))])""",
        [code, timeout_s * 1000])
    if error:
        raise RuntimeError(f"kernel: {error}\n{code}")


def measure(page, cdp, lab_root: Path, rate: int, widget: str, seconds: float,
            grid_kwargs: dict) -> dict:
    run_code(page, PHASE.format(rate=rate, widget=widget, columns=COLUMNS,
                                grid_kwargs=grid_kwargs))
    try:
        page.wait_for_function("() => Number.isFinite(window.__bench.newestSent()) || "
                           "!!document.querySelector('.nbf-none')",
                               timeout=60_000, polling=200)
    except Exception:
        page.screenshot(path=str(ROOT / "test-artifacts" / "bench-failed.png"))
        print(page.evaluate("() => window.__bench.debug()"))
        raise
    time.sleep(4)  # warm-up: the stream reaches its rate, the page settles
    report = lab_root / f"kernel-{rate}-{widget}.json"
    run_code(page, MARK)
    page.evaluate("() => window.__bench.start()")
    (busy0, cpu0), wall0 = main_thread(cdp), time.monotonic()
    time.sleep(seconds)
    (busy1, cpu1), wall = main_thread(cdp), time.monotonic() - wall0
    busy, page_cpu = (busy1 - busy0) / wall, (cpu1 - cpu0) / wall
    probe = page.evaluate("() => window.__bench.stop()")
    run_code(page, REPORT.format(path=str(report)))
    kernel = json.loads(report.read_text())
    screenshot = ROOT / "test-artifacts" / f"bench-{widget.lower()}-{rate}.png"
    screenshot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(screenshot))
    run_code(page, TEARDOWN)
    samples = sorted(s for s in probe["samples"] if s == s) or [float("nan")]
    return {"rate": rate, "widget": widget, "kernel_cpu": kernel["cpu"] * 100,
            "msgs": kernel["msgs"], "rows": kernel["rows"], "busy": busy * 100,
            "page_cpu": page_cpu * 100,
            "fps": probe["frames"], "stale_p50": statistics.median(samples) / 1000,
            "stale_p90": samples[int(0.9 * (len(samples) - 1))] / 1000}


def mean_run(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            out[key] = statistics.fmean(r[key] for r in runs)
    out["n"] = len(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,2000,20000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per widget and rate, alternating widgets; the table shows "
                             "their mean (the machine is shared: single runs are noisy)")
    parser.add_argument("--widgets", default="LiveGrid,Perspective",
                        help="'none' measures the page with the stream running and no widget")
    parser.add_argument("--grid-kwargs", default="{}",
                        help='JSON of LiveGrid options to try, e.g. {"flash_ms": 0}')
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("needs Chromium: run scripts/install-chromium.sh")
    rates = [int(r) for r in args.rates.split(",")]
    widgets = args.widgets.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="nbfeed-bench-"))
    lab = LabServer(tmp, [])
    lab.start()
    results = []
    try:
        write_notebook(lab.root / "bench.ipynb", {"setup": SETUP.format(symbols=args.symbols)})
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 1600},
                                          device_scale_factor=1)
            context.set_default_timeout(120_000)
            page = open_notebook(context, lab, "bench.ipynb", "bench")
            page.on("pageerror", lambda err: print(f"  page error: {err}", flush=True))
            page.on("console", lambda m: m.type == "error"
                    and print(f"  console error: {m.text[:300]}", flush=True))
            run_all_from_menu(page)
            cells = wait_all_ran(page)
            if error_outputs(cells):
                raise SystemExit(f"setup failed: {error_outputs(cells)}")
            page.evaluate(HELPERS)
            page.evaluate(PAGE_PROBE)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            for i, rate in enumerate(rates):
                runs: dict[str, list[dict]] = {}
                order = (["none"] if i == 0 else []) + widgets * args.repeats
                for widget in order:
                    r = measure(page, cdp, lab.root, rate, widget, args.seconds,
                                json.loads(args.grid_kwargs))
                    runs.setdefault(widget, []).append(r)
                    print(f"  measured {widget} at {rate}/s: {r}", flush=True)
                results += [mean_run(rs) for rs in runs.values()]
            browser.close()
    finally:
        lab.stop()
    print(f"\n{args.symbols} symbols, all visible; {args.seconds:g} s per run; 2-core machine, "
          "headless Chromium without GPU\n")
    print("| upstream rate | widget | rows/s fed | kernel CPU | kernel msgs/s | "
          "page main thread busy (CPU) | frames/s | staleness p50 / p90 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        stale = ("-" if r["stale_p50"] != r["stale_p50"]
                 else f"{r['stale_p50']:.2f} s / {r['stale_p90']:.2f} s")
        print(f"| {r['rate']:,}/s | {r['widget']} | {r['rows']:,.0f} | {r['kernel_cpu']:.0f}% | "
              f"{r['msgs']:.1f} | {r['busy']:.0f}% ({r['page_cpu']:.0f}%) | {r['fps']:.0f} | "
              f"{stale} |")


if __name__ == "__main__":
    main()
