"""LiveGrid and LiveChart seen in JupyterLab in headless Chromium, as a user would see them.

A notebook written for the test (the quickstart's grid, kept open, plus a hand-fed grid, a tall
grid and a 1 s candle chart) is run with Run > Run All Cells. What the page shows is then read
from the grids' canvas pixels and the data the browser holds, and from the chart's debug
attributes; screenshots go to ``test-artifacts/`` for people to look at. The quickstart notebook
itself is also run, unchanged, in the same JupyterLab.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from .lab_page import error_outputs, open_notebook, run_all_from_menu, wait_all_ran
from .lab_server import REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

WAIT_MS = 60_000  # generous: the page, the kernel and the providers share 2 busy cores
QUOTE_SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
MANY_SYMBOLS = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "BRK.B", "JPM", "V", "JNJ", "WMT",
    "PG", "MA", "UNH", "HD", "XOM", "BAC", "KO", "PEP", "COST", "DIS", "NFLX", "ADBE", "CRM",
    "INTC", "AMD", "ORCL", "CSCO", "PFE",
]
FLASH_MS = 2000
STYLE = "\u200b"  # LiveGrid's hidden style column (nbfeed.widgets.grid_style.STYLE_COLUMN)

# Each cell starts with "# <tag>": the page helpers find a cell's widget by it.
CELLS = {
    "setup": "import nbfeed\n\nfeed = nbfeed.connect()\nfeed",
    "quotes": (
        f"quotes = feed.subscribe('simulated', {QUOTE_SYMBOLS!r})\n"
        "grid = nbfeed.LiveGrid(quotes, columns=[\n"
        "    'symbol', 'price', 'change',\n"
        "    {'field': 'bid', 'label': 'Bid at open', 'live': False},\n"
        "    'ask',\n"
        "])\n"
        "grid"
    ),
    "manual": (
        f"manual = nbfeed.LiveGrid(columns=['symbol', 'price'], flash_ms={FLASH_MS})\n"
        "manual.update([{'symbol': 'UP', 'price': 100.0}, {'symbol': 'DOWN', 'price': 100.0}])\n"
        "manual"
    ),
    "many": (
        f"many = nbfeed.LiveGrid('simulated', {MANY_SYMBOLS!r},\n"
        "                        columns=['symbol', 'price', 'change'],\n"
        "                        layout={'height': '180px'})\n"
        "many"
    ),
    "chart": (
        "bars = feed.subscribe('simulated', 'AAPL', interval='1s')\n"
        "chart = nbfeed.LiveChart(bars, title='AAPL 1s (simulated)', height=300)\n"
        "chart"
    ),
}


def write_notebook(path: Any, cells: dict[str, str]) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(f"# {tag}\n{src}") for tag, src in cells.items()])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(path))


def grid_shot(page: Any, tag: str, path: Any) -> None:
    """Screenshot of a grid's drawn part (headers and rows), quick enough to catch a flash."""
    box = page.evaluate(
        """(tag) => { const g = nbf.grid(tag);
             g.node.scrollIntoView({block: 'nearest'});
             const r = g.node.getBoundingClientRect();
             return {x: r.left, y: r.top,
                     width: Math.min(r.width, g.headerWidth + g.bodyWidth + 16),
                     height: Math.min(r.height, g.headerHeight + g.bodyHeight + 16)}; }""",
        tag)
    page.screenshot(path=str(path), clip=box)


def grid_ready(page: Any, tag: str, rows: int) -> None:
    """Wait until the grid of cell ``tag`` is drawn with ``rows`` rows of data."""
    page.wait_for_function(
        """([tag, rows]) => { const g = nbf.grid(tag);
             if (!g || g.dataModel.rowCount('body') !== rows) return false;
             const m = g.dataModel;
             for (let r = 0; r < Math.min(rows, 5); r++)
               if (typeof m.data('body', r, 1) !== 'number') return false;
             return g.viewportHeight > 0; }""",
        arg=[tag, rows], timeout=WAIT_MS, polling=100)


@pytest.fixture(scope="module")
def notebook(lab, context) -> Iterator[Any]:
    """The test notebook open in Lab, run with Run > Run All Cells, every widget drawn."""
    write_notebook(lab.root / "live_widgets.ipynb", CELLS)
    page = open_notebook(context, lab, "live_widgets.ipynb", "widgets")
    run_all_from_menu(page)
    cells = wait_all_ran(page)
    assert not error_outputs(cells), error_outputs(cells)
    grid_ready(page, "quotes", len(QUOTE_SYMBOLS))
    grid_ready(page, "manual", 2)
    grid_ready(page, "many", len(MANY_SYMBOLS))
    yield page
    page.close()


def test_quickstart_notebook_runs_in_lab(lab, context, artifacts):
    """notebooks/quickstart.ipynb, unchanged, runs top to bottom in JupyterLab without errors."""
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", lab.root / "quickstart.ipynb")
    page = open_notebook(context, lab, "quickstart.ipynb", "quickstart")
    try:
        run_all_from_menu(page)
        cells = wait_all_ran(page, timeout=180)
        assert not error_outputs(cells), error_outputs(cells)
        texts = [out.get("text", "") for cell in cells for out in cell["outputs"]]
        assert any("received" in t and "row updates" in t for t in texts), texts
        assert any("remote feed" in str(out.get("data", {}).get("text/plain", ""))
                   for cell in cells for out in cell["outputs"]), "the kernel did not find nbfeed"
        page.screenshot(path=str(artifacts / "lab-quickstart.png"), full_page=True)
    finally:
        page.close()
        lab.shutdown_notebook("quickstart.ipynb")  # its kernel and streams would load the rest


def test_grid_shows_its_rows_and_columns_and_values_change(notebook, artifacts):
    page = notebook
    assert page.evaluate("nbf.headers('quotes')") == [
        "Symbol", "Price", "Change", "Bid at open", "Ask", STYLE]
    first = page.evaluate("nbf.rows('quotes')")
    assert [row[0] for row in first] == QUOTE_SYMBOLS
    assert all(isinstance(v, float) and v > 0 for row in first for v in (row[1], row[4])), first
    # The style column is a 10 px strip at the right edge, not a readable column.
    assert page.evaluate(
        "nbf.grid('quotes').columnSize('body', nbf.headers('quotes').length - 1)") == 10
    # Every row's price changes within seconds.
    page.wait_for_function(
        """(first) => nbf.rows('quotes').every((row, i) => row[1] !== first[i][1])""",
        arg=first, timeout=WAIT_MS, polling=100)
    grid_shot(page, "quotes", artifacts / "lab-quotes-grid.png")


def test_live_prices_flash_green_and_red(notebook, artifacts):
    """On the streaming grid both colours appear on the Price column within seconds."""
    page = notebook
    page.evaluate(
        """() => { const price = nbf.col('quotes', 'Price'), sym = nbf.col('quotes', 'Symbol');
             nbf.watch('quotes', () => [0, 1, 2, 3, 4].map(r => nbf.cellState('quotes', r, price,
                                                                               sym)), 25); }""")
    try:
        page.wait_for_function(
            """() => { const s = nbf.seen('quotes').flat();
                 return s.includes('green') && s.includes('red'); }""",
            timeout=WAIT_MS, polling=100)
        grid_shot(page, "quotes", artifacts / "lab-quotes-flashing.png")
    finally:
        changes = page.evaluate("nbf.unwatch('quotes')")
    states = {s for _, sample in changes for s in sample}
    assert "other" not in states, f"a price cell was neither plain, green nor red: {changes}"


def test_rising_cell_turns_green_falling_red_and_both_fade(notebook, artifacts):
    """A hand-fed grid: one price up, one down; green and red show, then both fade to plain."""
    page = notebook
    state = """() => ['UP', 'DOWN'].map(sym => {
                 const r = nbf.rows('manual').findIndex(row => row[0] === sym);
                 return nbf.cellState('manual', r, nbf.col('manual', 'Price'),
                                      nbf.col('manual', 'Symbol')); })"""
    plain, flashed = ["normal", "normal"], ["green", "red"]
    page.wait_for_function(f"() => ({state})().every(s => s === 'normal')",
                           timeout=WAIT_MS, polling=100)
    page.evaluate(f"() => nbf.watch('manual', {state}, 20)")
    try:
        error = page.evaluate(
            "nbf.run(\"manual.update([{'symbol': 'UP', 'price': 101.0},"
            " {'symbol': 'DOWN', 'price': 99.0}])\")")
        assert error is None, error
        page.wait_for_function(
            "(want) => nbf.seen('manual').some(s => JSON.stringify(s) === JSON.stringify(want))",
            arg=flashed, timeout=WAIT_MS, polling=20)
        grid_shot(page, "manual", artifacts / "lab-flash-up-down.png")
        # The fade: back to plain after flash_ms, with no further update.
        page.wait_for_function(
            "(plain) => nbf.seen('manual').length > 1 && "
            "           JSON.stringify(nbf.latest('manual')) === JSON.stringify(plain)",
            arg=plain, timeout=WAIT_MS, polling=50)
        grid_shot(page, "manual", artifacts / "lab-flash-faded.png")
    finally:
        changes = page.evaluate("nbf.unwatch('manual')")
    states = [value for _, value in changes]
    assert states[0] == plain and states[-1] == plain, changes
    assert states[1:-1] and all(s == flashed for s in states[1:-1]), (
        f"expected plain -> UP green and DOWN red -> plain, saw {changes}")
    rows = {row[0]: row[1] for row in page.evaluate("nbf.rows('manual')")}
    assert rows == {"UP": 101.0, "DOWN": 99.0}
    shown_ms = changes[-1][0] - changes[1][0]
    print(f"\nflash shown for {shown_ms} ms (flash_ms={FLASH_MS}); changes: {changes}")


QUOTE_CELLS = """(c) => nbf.rows('quotes').map((row, r) => [
    row[c.price], row[c.bid],
    nbf.cellDigest('quotes', r, c.price), nbf.cellDigest('quotes', r, c.bid)])"""


def test_frozen_column_keeps_its_first_value(notebook):
    page = notebook
    cols = page.evaluate(
        "({price: nbf.col('quotes', 'Price'), bid: nbf.col('quotes', 'Bid at open')})")
    before = page.evaluate(QUOTE_CELLS, cols)
    # Wait until every live price has changed, in the data and on screen...
    page.wait_for_function(
        f"""([c, before]) => ({QUOTE_CELLS})(c).every(
              (now, r) => now[0] !== before[r][0] && now[2] !== before[r][2])""",
        arg=[cols, before], timeout=WAIT_MS, polling=100)
    after = page.evaluate(QUOTE_CELLS, cols)
    # ...while the frozen column kept its value and looks exactly the same.
    assert [a[1] for a in after] == [b[1] for b in before]
    assert [a[3] for a in after] == [b[3] for b in before], "a frozen cell was repainted"


VISIBLE = """(tag) => { const [r0, r1] = nbf.visibleRows(tag), rows = nbf.rows(tag);
                        return rows.slice(r0, r1 + 1); }"""


def test_updates_leave_the_scroll_position_alone(notebook, artifacts):
    """Scrolled down with the mouse wheel, the grid stays there while prices stream in."""
    page = notebook
    box = page.evaluate(
        """() => { const g = nbf.grid('many');
             g.node.scrollIntoView({block: 'center'});
             const r = g.node.getBoundingClientRect();
             return {x: r.left + 60, y: r.top + g.headerHeight + 40}; }""")
    assert page.evaluate("nbf.grid('many').maxScrollY") > 200, "the grid is not tall enough"
    page.mouse.move(box["x"], box["y"])
    page.mouse.wheel(0, 200)
    page.wait_for_function("() => nbf.grid('many').scrollY >= 100", timeout=WAIT_MS, polling=50)
    # Rows scrolled into view show '...' until the kernel answers the grid's data request.
    page.wait_for_function(f"() => ({VISIBLE})('many').every(row => typeof row[1] === 'number')",
                           timeout=WAIT_MS, polling=50)
    scroll = page.evaluate("nbf.grid('many').scrollY")
    shown = page.evaluate(VISIBLE, "many")
    assert shown[0][0] != MANY_SYMBOLS[0]
    # Two rounds of changes to the rows on screen (the viewport's rows are pushed on each flush).
    for _ in range(2):
        page.wait_for_function(
            f"""(shown) => ({VISIBLE})('many').some((row, i) => row[1] !== shown[i][1])""",
            arg=shown, timeout=WAIT_MS, polling=100)
        now = page.evaluate(VISIBLE, "many")
        assert [r[0] for r in now] == [r[0] for r in shown], "the rows on screen moved"
        assert page.evaluate("nbf.grid('many').scrollY") == scroll
        shown = now
    grid_shot(page, "many", artifacts / "lab-grid-scrolled.png")


def test_sort_from_the_header_menu_stays_applied(notebook, artifacts):
    """Sort Descending on Price (the header's menu) holds while prices keep changing."""
    page = notebook
    # The menu opens from the small filter icon at the right end of the header cell.
    icon = page.evaluate(
        """() => { const g = nbf.grid('many'), b = nbf.cellBox('many', 0, nbf.col('many', 'Price'));
             g.node.scrollIntoView({block: 'center'});
             const r = g.node.getBoundingClientRect();
             return {x: r.left + b.x + b.w - 8, y: r.top + g.headerHeight / 2}; }""")
    page.mouse.click(icon["x"], icon["y"])
    page.get_by_text("Sort Descending", exact=True).click()
    sorted_js = f"""() => {{ const p = nbf.col('many', 'Price'), rows = ({VISIBLE})('many');
        return rows.length > 3 && rows.every((row, i) => i === 0 || rows[i - 1][p] >= row[p]); }}"""
    page.wait_for_function(sorted_js, timeout=WAIT_MS, polling=100)
    page.evaluate(f"() => nbf.watch('sorted', {sorted_js}, 25)")
    try:
        shown = page.evaluate(VISIBLE, "many")
        for _ in range(3):  # three rounds of new prices on screen, sorted every time we look
            page.wait_for_function(
                f"""(shown) => ({VISIBLE})('many').some((row, i) => row[1] !== shown[i][1])""",
                arg=shown, timeout=WAIT_MS, polling=100)
            shown = page.evaluate(VISIBLE, "many")
        grid_shot(page, "many", artifacts / "lab-grid-sorted.png")
    finally:
        changes = page.evaluate("nbf.unwatch('sorted')")
    assert [value for _, value in changes] == [True], (
        f"the visible rows were not always sorted by price: {changes}")


CHART = "nbf.cell('chart').outputArea.node.querySelector('[data-bars]')"


def test_chart_draws_candles_and_its_last_bar_moves(notebook, artifacts):
    """The 1 s candle chart is drawn (history, then live) and follows the newest bar."""
    page = notebook
    dataset = f"() => ({{...{CHART}.dataset}})"
    page.wait_for_function(f"() => {{ const el = {CHART}; return el && +el.dataset.bars >= 2; }}",
                           timeout=WAIT_MS, polling=100)
    first = page.evaluate(dataset)
    assert first["kind"] == "candle", first
    # The open bar's close moves within its second...
    page.wait_for_function(
        f"""(first) => {{ const d = {CHART}.dataset;
              return d.lastTime === first.lastTime && d.lastClose !== first.lastClose
                     || +d.lastTime > +first.lastTime; }}""",
        arg=first, timeout=WAIT_MS, polling=50)
    # ...and then new bars start, each drawn at the right edge (the view follows the newest).
    page.wait_for_function(f"(first) => +{CHART}.dataset.lastTime >= +first.lastTime + 2000",
                           arg=first, timeout=WAIT_MS, polling=100)
    later = page.evaluate(dataset)
    assert later["pinned"] == "true" and later["viewEnd"] == later["lastTime"], later
    assert int(later["draws"]) > int(first["draws"])
    # Candles are painted: pixels of the up and down candle colours on the chart's canvas.
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
