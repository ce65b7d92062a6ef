"""LiveGrid and LiveChart seen in JupyterLab in headless Chromium, as a user would see them.

Every example notebook that shows widgets is run unchanged with Run > Run All Cells; each grid
and chart it draws is then checked as a whole (no placeholder or NaN cell, no header or value
cut short, no empty area under a short grid, charts with a fitted price axis and a title that
does not repeat itself), in the light theme and again in the dark one. A notebook written for
the test adds a hand-fed grid (a flash that appears and is gone within its fade time), a tall
streaming grid (sort by clicking a header, scroll, click a row back into Python) and a 1 s
candle chart. What the grids drew is read from their views (``root.nbfeed``: the texts painted
on the canvas) and from canvas pixels; screenshots of every state go to ``test-artifacts/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from .lab_page import error_outputs, open_notebook, run_all_from_menu, wait_all_ran
from .lab_server import REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

WAIT_MS = 60_000  # generous: the page, the kernel and the providers share 2 busy cores
QUOTE_SYMBOLS = ["AAPL", "MSFT", "EURUSD", "BTC-USD", "TSLA"]
MANY_SYMBOLS = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "BRK.B", "JPM", "V", "JNJ", "WMT",
    "PG", "MA", "UNH", "HD", "XOM", "BAC", "KO", "PEP", "COST", "DIS", "NFLX", "ADBE", "CRM",
    "INTC", "AMD", "ORCL", "CSCO", "PFE",
]
FLASH_MS = 600

# Each cell starts with "# <tag>": the page helpers find a cell's widget by it.
CELLS = {
    "setup": "import nbfeed\n\nfeed = nbfeed.connect()\nfeed",
    "quotes": (
        f"quotes = feed.subscribe('simulated', {QUOTE_SYMBOLS!r})\n"
        "grid = nbfeed.LiveGrid(quotes, columns=['symbol', 'price', 'change', 'change_percent',\n"
        "                                        'bid', 'ask', 'volume', 'time'])\n"
        "grid"
    ),
    "manual": (
        f"manual = nbfeed.LiveGrid(columns=['symbol', 'price'], flash_ms={FLASH_MS})\n"
        "manual.update([{'symbol': 'UP', 'price': 100.0}, {'symbol': 'DOWN', 'price': 100.0}])\n"
        "manual"
    ),
    "many": (
        f"many = nbfeed.LiveGrid('simulated', {MANY_SYMBOLS!r},\n"
        "                        columns=['symbol', 'price', 'change'], max_height=200)\n"
        "many"
    ),
    "candles": (
        "candles = feed.subscribe('simulated', 'MSFT', interval='1s')\n"
        "bar_grid = nbfeed.LiveGrid(candles, columns=['time', 'close', 'volume'],\n"
        "                           max_height=140)\n"
        "bar_grid"
    ),
    "chart": (
        "bars = feed.subscribe('simulated', 'AAPL', interval='1s')\n"
        "chart = nbfeed.LiveChart(bars, height=300)\n"
        "chart"
    ),
}

EXAMPLES = ["quickstart", "live_grid", "live_chart", "write_a_provider"]


def write_notebook(path: Any, cells: dict[str, str]) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(f"# {tag}\n{src}") for tag, src in cells.items()])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(path))


def stderr_outputs(cells: list[dict]) -> list[str]:
    return [out.get("text", "") for cell in cells for out in cell["outputs"]
            if out.get("output_type") == "stream" and out.get("name") == "stderr"]


def grid_shot(page: Any, tag: str, path: Any) -> None:
    """Screenshot of one grid view, quick enough to catch a flash."""
    handle = page.evaluate_handle("(tag) => nbf.grid(tag)", tag).as_element()
    handle.scroll_into_view_if_needed()
    handle.screenshot(path=str(path))


def wait_drawn(page: Any, tag: str | None = None) -> None:
    """Wait until every grid (of cell ``tag``) drew full rows and every chart has bars."""
    page.wait_for_function(
        """(tag) => { const grids = nbf.grids(tag), charts = nbf.charts(tag);
             if (!grids.length && !charts.length) return false;
             const gridsOk = grids.every(g => {
               const rows = g.nbfeed.rows();
               const age = g.nbfeed.headers().indexOf('Age');
               return +g.dataset.total > 0 && rows.length > 0
                      && rows.every(r => r.every((t, c) => t !== '' || c === age));
             });
             return gridsOk && charts.every(c => +c.dataset.bars >= 2); }""",
        arg=tag, timeout=WAIT_MS, polling=200)


def check_grids(page: Any, where: str) -> list[dict]:
    """Whole-output checks of every grid on the page; returns what was inspected."""
    found = page.evaluate("() => nbf.grids().map(g => nbf.inspect(g))")
    for g in found:
        assert g["bad"] == [], f"{where}: placeholder or NaN cells {g['bad']}"
        assert g["cut"] == [], f"{where}: values cut short {g['cut']}"
        assert g["headerCut"] == [], f"{where}: headers cut short {g['headerCut']}"
        assert g["empty"] == 0, f"{where}: empty rows drawn: {g}"
        assert g["rows"] >= min(g["total"], 5), f"{where}: rows missing: {g}"
        if g["total"] * 22 + 27 < 400:  # fits without scrolling: no empty area under it
            assert g["height"] <= 27 + 22 * g["total"] + 21 + 8, f"{where}: empty space: {g}"
        assert g["width"] <= g["columnsWidth"] + 24, f"{where}: empty strip at the right: {g}"
    return found


def check_charts(page: Any, where: str) -> list[dict]:
    charts = page.evaluate("() => nbf.charts().map(c => ({...c.dataset}))")
    for c in charts:
        assert c["kind"] in ("candle", "line"), c
        header = c.get("header", "")
        words = header.split()
        assert words and words.count(words[0]) == 1, f"{where}: title repeats itself: {header!r}"
        lo, hi, last = float(c["yLo"]), float(c["yHi"]), float(c["lastClose"])
        assert lo < last < hi, f"{where}: the last price is off the axis: {c}"
    return charts


def widget_shots(page: Any, path_prefix: Any) -> None:
    """One screenshot per grid and chart on the page (the notebook scrolls inside Lab, so a
    page screenshot would miss most of them)."""
    handles = page.evaluate_handle("() => [...nbf.grids(), ...nbf.charts()]")
    for i in range(page.evaluate("(list) => list.length", handles)):
        el = page.evaluate_handle("([list, i]) => list[i]", [handles, i]).as_element()
        el.scroll_into_view_if_needed()
        el.screenshot(path=f"{path_prefix}-{i}.png")


def background_luma(page: Any) -> dict[str, list[float]]:
    """Brightness of the first body cell of each grid and of each chart's top-left corner."""
    return page.evaluate(
        """() => ({
          grids: nbf.grids().map(g => {
            const d = g.querySelector('canvas').getContext('2d').getImageData(9, 3, 1, 1).data;
            return 0.3 * d[0] + 0.59 * d[1] + 0.11 * d[2]; }),
          charts: nbf.charts().map(c => {
            const d = c.querySelector('canvas').getContext('2d').getImageData(2, 2, 1, 1).data;
            return 0.3 * d[0] + 0.59 * d[1] + 0.11 * d[2]; }),
        })""")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_notebook_draws_clean_widgets_in_light_and_dark(lab, context, artifacts, name):
    """The notebook, unchanged, Run All: every grid and chart complete and readable, in both
    JupyterLab themes; the widgets keep updating afterwards."""
    shutil.copy(REPO / "notebooks" / f"{name}.ipynb", lab.root / f"{name}.ipynb")
    page = open_notebook(context, lab, f"{name}.ipynb", f"ex-{name}")
    try:
        run_all_from_menu(page)
        cells = wait_all_ran(page, timeout=240)
        assert not error_outputs(cells), error_outputs(cells)
        assert not stderr_outputs(cells), stderr_outputs(cells)
        wait_drawn(page)
        time.sleep(2)  # a few updates in: flashes and ages on screen
        grids = check_grids(page, name)
        charts = check_charts(page, name)
        widget_shots(page, artifacts / f"lab-{name}-light")
        if name == "live_chart":
            line = next(c for c in charts if c["kind"] == "line")
            span = (float(line["yHi"]) - float(line["yLo"])) / float(line["lastClose"])
            assert span < 0.01, f"the tick line's axis is {span:.2%} of its price: {line}"
            assert int(line["bars"]) >= 30, "the tick line starts from recent history"
        first = page.evaluate("() => nbf.grids().map(g => g.dataset.seq)")
        light = background_luma(page)
        page.evaluate("nbf.theme('JupyterLab Dark')")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                               timeout=WAIT_MS)
        page.wait_for_function(
            """() => nbf.grids().every(g => {
                 const d = g.querySelector('canvas').getContext('2d').getImageData(9, 3, 1, 1).data;
                 return d[0] + d[1] + d[2] < 300; })""", timeout=WAIT_MS, polling=200)
        time.sleep(1)
        dark = background_luma(page)
        assert all(v > 200 for v in light["grids"] + light["charts"]), light
        assert all(v < 80 for v in dark["grids"] + dark["charts"]), dark
        check_grids(page, f"{name} (dark)")
        widget_shots(page, artifacts / f"lab-{name}-dark")
        # Still live after Run All: every streaming grid drew new frames meanwhile.
        page.wait_for_function(
            "(first) => nbf.grids().every((g, i) => g.dataset.seq !== first[i] "
            "  || g.nbfeed.headers().length === 2)",  # the hand-fed grid of live_grid
            arg=first, timeout=WAIT_MS, polling=200)
        assert grids or charts
    finally:
        page.evaluate("nbf.theme('JupyterLab Light')")
        page.close()
        lab.shutdown_notebook(f"{name}.ipynb")  # its kernel and streams would load the rest


@pytest.fixture(scope="module")
def notebook(lab, context) -> Iterator[Any]:
    """The test notebook open in Lab, run with Run > Run All Cells, every widget drawn."""
    write_notebook(lab.root / "live_widgets.ipynb", CELLS)
    page = open_notebook(context, lab, "live_widgets.ipynb", "widgets")
    run_all_from_menu(page)
    cells = wait_all_ran(page)
    assert not error_outputs(cells), error_outputs(cells)
    wait_drawn(page)
    yield page
    page.close()
    lab.shutdown_notebook("live_widgets.ipynb")


def test_rising_cell_pulses_green_falling_red_and_both_fade_in_time(notebook, artifacts):
    """A hand-fed grid: one price up, one down; green and red show at once, and both are gone
    within the fade time."""
    page = notebook
    state = """() => ['UP', 'DOWN'].map(sym => {
                 const r = nbf.rows('manual').findIndex(row => row[0] === sym);
                 return nbf.cellState('manual', r, 1, 0); })"""
    page.wait_for_function(f"() => ({state})().every(s => s === 'normal')",
                           timeout=WAIT_MS, polling=100)
    page.evaluate(f"() => nbf.watch('manual', {state}, 15)")
    try:
        error = page.evaluate(
            "nbf.run(\"manual.update([{'symbol': 'UP', 'price': 101.0},"
            " {'symbol': 'DOWN', 'price': 99.0}])\")")
        assert error is None, error
        page.wait_for_function(
            "() => nbf.seen('manual').some(s => s[0] === 'green' && s[1] === 'red')",
            timeout=WAIT_MS, polling=15)
        grid_shot(page, "manual", artifacts / "lab-flash-up-down.png")
        page.wait_for_function(
            "() => nbf.seen('manual').length > 1 && "
            "      nbf.latest('manual').every(s => s === 'normal')", timeout=WAIT_MS, polling=50)
        grid_shot(page, "manual", artifacts / "lab-flash-faded.png")
    finally:
        changes = page.evaluate("nbf.unwatch('manual')")
    assert "other" not in str(changes), changes
    flashed = [t for t, v in changes if "green" in v or "red" in v]
    shown_ms = changes[-1][0] - flashed[0]
    print(f"\nflash shown for {shown_ms} ms (flash_ms={FLASH_MS}): {changes}")
    assert shown_ms <= FLASH_MS + 300, f"the pulse outlived its fade time: {changes}"
    assert page.evaluate("nbf.rows('manual')") == [["UP", "101.00"], ["DOWN", "99.00"]]


def test_a_busy_grid_is_no_wash_of_colour(notebook, artifacts):
    """The quote grid at the simulated feed's 4 updates/s per symbol: most of the time most
    cells are plain; a cell that keeps changing does not stay tinted."""
    page = notebook
    sample = """() => { const g = nbf.grid('quotes'), rows = g.nbfeed.rows();
        const out = [];
        for (let r = 0; r < rows.length; r++)
          for (const c of [1, 2, 4, 5]) out.push(nbf.cellState('quotes', r, c, 0));
        return out; }"""
    tinted, total = 0, 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        states = page.evaluate(sample)
        tinted += sum(s in ("green", "red") for s in states)
        total += len(states)
        page.wait_for_timeout(50)
    grid_shot(page, "quotes", artifacts / "lab-quotes-busy.png")
    share = tinted / total
    print(f"\ntinted share of price cells over 4 s: {share:.1%}")
    assert 0 < share < 0.3, f"{share:.0%} of the cells were green or red"


def test_clicking_a_header_sorts_and_the_sort_holds_while_prices_move(notebook, artifacts):
    page = notebook
    head = page.evaluate_handle(
        "() => [...nbf.grid('many').querySelectorAll('.nbf-h')][1]").as_element()
    head.scroll_into_view_if_needed()
    prices = "() => nbf.rows('many').map(r => parseFloat(r[1].replace(/,/g, '')))"
    ascending = f"() => ({prices})().every((v, i, p) => !i || p[i - 1] <= v)"
    descending = f"() => ({prices})().every((v, i, p) => !i || p[i - 1] >= v)"
    head.click()
    page.wait_for_function(ascending, timeout=WAIT_MS, polling=100)
    head.click()
    page.wait_for_function(descending, timeout=WAIT_MS, polling=100)
    page.evaluate(f"() => nbf.watch('sorted', {descending}, 25)")
    try:
        for _ in range(3):  # three rounds of new prices on screen, sorted every time we look
            before = page.evaluate("() => nbf.grid('many').dataset.seq")
            page.wait_for_function("(s) => nbf.grid('many').dataset.seq !== s", arg=before,
                                   timeout=WAIT_MS, polling=100)
        grid_shot(page, "many", artifacts / "lab-grid-sorted.png")
    finally:
        changes = page.evaluate("nbf.unwatch('sorted')")
    assert [v for _, v in changes] == [True], f"not always sorted: {changes}"
    mark = page.evaluate("() => nbf.grid('many').querySelector('.nbf-sorted').textContent")
    assert "\u25bc" in mark, mark
    head.click()  # third click: back to arrival order, no sort mark
    page.wait_for_function("() => !nbf.grid('many').querySelector('.nbf-sorted')",
                           timeout=WAIT_MS, polling=100)
    error = page.evaluate("nbf.run('assert many.transforms == [], many.transforms')")
    assert error is None, error


def test_scrolling_shows_filled_rows_and_stays_put_while_updating(notebook, artifacts):
    page = notebook
    box = page.evaluate(
        """() => { const g = nbf.grid('many'); g.scrollIntoView({block: 'center'});
             const r = g.querySelector('canvas').getBoundingClientRect();
             return {x: r.left + 40, y: r.top + 40}; }""")
    page.mouse.move(box["x"], box["y"])
    page.mouse.wheel(0, 300)
    page.wait_for_function("() => nbf.grid('many').nbfeed.first() >= 5", timeout=WAIT_MS)
    page.wait_for_function("() => nbf.rows('many').every(r => r.every(t => t !== ''))",
                           timeout=WAIT_MS, polling=50)
    first = page.evaluate("() => nbf.grid('many').nbfeed.first()")
    shown = page.evaluate("() => nbf.rows('many').map(r => r[0])")
    assert shown[0] != MANY_SYMBOLS[0]
    for _ in range(2):
        seq = page.evaluate("() => nbf.grid('many').dataset.seq")
        page.wait_for_function("(s) => nbf.grid('many').dataset.seq !== s", arg=seq,
                               timeout=WAIT_MS, polling=100)
        assert page.evaluate("() => nbf.grid('many').nbfeed.first()") == first
        assert page.evaluate("() => nbf.rows('many').map(r => r[0])") == shown
    grid_shot(page, "many", artifacts / "lab-grid-scrolled.png")


def test_clicking_a_row_hands_its_symbol_to_python(notebook):
    page = notebook
    target = page.evaluate(
        """() => { const g = nbf.grid('many'); g.scrollIntoView({block: 'center'});
             const r = g.querySelector('canvas').getBoundingClientRect();
             const top = g.querySelector('.nbf-scroll').scrollTop, first = g.nbfeed.first();
             return {x: r.left + 20, y: r.top + (first + 2) * 22 - top + 11,
                     symbol: nbf.rows('many')[2][0]}; }""")
    page.mouse.click(target["x"], target["y"])
    error = page.evaluate(
        "(sym) => nbf.run(`import time\\n"
        "deadline = time.time() + 30\\n"
        "while (many.selected or {}).get('symbol') != ${JSON.stringify(sym)} "
        "and time.time() < deadline:\\n    time.sleep(0.05)\\n"
        "assert many.selected['symbol'] == ${JSON.stringify(sym)}, many.selected`)",
        target["symbol"])
    # The click is handled between cells: the loop above may run before it. Re-check once idle.
    if error:
        error = page.evaluate(
            "(sym) => nbf.run(`assert many.selected['symbol'] == ${JSON.stringify(sym)}, "
            "many.selected`)", target["symbol"])
    assert error is None, error


def test_candle_rows_are_followed_until_the_user_scrolls_away(notebook, artifacts):
    """New 1 s bars append at the bottom and stay in view; scrolling up locks the view (the
    status line says so) and a click on it follows again."""
    page = notebook
    scroller = "nbf.grid('candles').querySelector('.nbf-scroll')"
    at_end = f"() => {{ const s = {scroller}; return s.scrollHeight - s.clientHeight > 44 " \
             "&& s.scrollTop + s.clientHeight >= s.scrollHeight - 2; }"
    page.wait_for_function(at_end, timeout=WAIT_MS, polling=100)
    seq = page.evaluate("() => nbf.grid('candles').dataset.total")
    page.wait_for_function("(n) => nbf.grid('candles').dataset.total !== n", arg=seq,
                           timeout=WAIT_MS, polling=100)
    page.wait_for_function(at_end, timeout=WAIT_MS, polling=100)  # followed the new bar
    box = page.evaluate(
        f"""() => {{ const s = {scroller}; s.scrollIntoView({{block: 'center'}});
              const r = s.getBoundingClientRect(); return {{x: r.left + 30, y: r.top + 60}}; }}""")
    page.mouse.move(box["x"], box["y"])
    page.mouse.wheel(0, -300)
    page.wait_for_function(
        "() => nbf.grid('candles').querySelector('.nbf-status').textContent"
        ".includes('following paused')", timeout=WAIT_MS, polling=100)
    top = page.evaluate(f"() => {scroller}.scrollTop")
    total = page.evaluate("() => nbf.grid('candles').dataset.total")
    page.wait_for_function("(n) => nbf.grid('candles').dataset.total !== n", arg=total,
                           timeout=WAIT_MS, polling=100)
    assert page.evaluate(f"() => {scroller}.scrollTop") == top, "a locked view moved"
    grid_shot(page, "candles", artifacts / "lab-candles-paused.png")
    page.evaluate("() => nbf.grid('candles').querySelector('.nbf-status').click()")
    page.wait_for_function(at_end, timeout=WAIT_MS, polling=100)


CHART = "nbf.charts('chart')[0]"


def test_chart_draws_candles_and_its_last_bar_moves(notebook, artifacts):
    """The 1 s candle chart is drawn (history, then live) and follows the newest bar."""
    page = notebook
    dataset = f"() => ({{...{CHART}.dataset}})"
    first = page.evaluate(dataset)
    assert first["kind"] == "candle", first
    page.wait_for_function(
        f"""(first) => {{ const d = {CHART}.dataset;
              return d.lastTime === first.lastTime && d.lastClose !== first.lastClose
                     || +d.lastTime > +first.lastTime; }}""",
        arg=first, timeout=WAIT_MS, polling=50)
    page.wait_for_function(f"(first) => +{CHART}.dataset.lastTime >= +first.lastTime + 2000",
                           arg=first, timeout=WAIT_MS, polling=100)
    later = page.evaluate(dataset)
    assert later["pinned"] == "true" and later["viewEnd"] == later["lastTime"], later
    assert int(later["draws"]) > int(first["draws"])
    assert later["header"].startswith("AAPL \u00b7 1s"), later["header"]
    colours = page.evaluate(
        f"""() => {{ const c = {CHART}.querySelector('canvas');
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              const near = (i, rgb) => Math.abs(d[i] - rgb[0]) + Math.abs(d[i + 1] - rgb[1])
                                       + Math.abs(d[i + 2] - rgb[2]) < 30;
              let up = 0, down = 0;
              for (let i = 0; i < d.length; i += 4) {{
                if (near(i, [0x26, 0xa6, 0x9a])) up++; else if (near(i, [0xef, 0x53, 0x50])) down++;
              }}
              return {{up, down}}; }}""")
    assert colours["up"] > 50 and colours["down"] > 50, colours
    handle = page.evaluate_handle(CHART).as_element()
    handle.scroll_into_view_if_needed()
    handle.screenshot(path=str(artifacts / "lab-chart.png"))
