"""notebooks/recorder.ipynb in JupyterLab: recorded by the server's hub, replayed into a grid
and a chart that a user sees drawn, in the light and the dark theme.

The notebook is run as shipped (Run All leaves its grid and chart replaying): tags are put in
front of the grid and chart cells (``# grid``, ``# chart``) so the page helpers find their
outputs. Through the server, ``nbfeed.connect()`` is the server's feed: recording happens in the
server's hub and the replay travels on the notebook's websocket.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from .lab_page import error_outputs, open_notebook, run_all_from_menu, wait_all_ran
from .lab_server import REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

WAIT_MS = 60_000
CHART = "nbf.cell('chart').outputArea.node.querySelector('[data-bars]')"


def notebook_for_the_page(path) -> None:
    nb = nbformat.read(REPO / "notebooks" / "recorder.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "nbfeed.LiveGrid(" in cell.source:
            cell.source = "# grid\n" + cell.source
        elif cell.source.strip() == "chart":
            cell.source = "# chart\n" + cell.source
    nbformat.write(nb, str(path))


def test_recorder_notebook_records_on_the_server_and_replays_into_grid_and_chart(
        lab, context, artifacts):
    notebook_for_the_page(lab.root / "recorder.ipynb")
    page = open_notebook(context, lab, "recorder.ipynb", "recorder")
    try:
        run_all_from_menu(page)
        cells = wait_all_ran(page, timeout=300)
        assert not error_outputs(cells), error_outputs(cells)
        streams = [o for c in cells for o in c["outputs"] if o.get("output_type") == "stream"]
        assert not [o for o in streams if o.get("name") == "stderr"], streams

        status, body = lab.get("nbfeed/api/recordings")
        assert status == 200
        (recording,) = json.loads(body)["recordings"]  # made by the server's hub
        assert recording["status"] == "finished" and recording["rows"] > 10_000
        assert recording["lost_rows"] == 0

        # The grid shows the five replayed symbols with prices, and nothing a user would
        # call broken (placeholder or NaN cells, cut headers or values, empty rows).
        page.wait_for_function(
            """() => { const g = nbf.grid('grid');
                 return g && g.nbfeed && g.nbfeed.rows().length === 5; }""",
            timeout=WAIT_MS, polling=100)
        headers = page.evaluate("nbf.headers('grid')")
        assert {"Symbol", "Price", "Bid", "Ask"} <= set(headers), headers
        rows = page.evaluate("nbf.rows('grid')")
        prices = [float(row[headers.index("Price")].replace(",", "")) for row in rows]
        assert all(p > 0 for p in prices), rows
        symbols = sorted(row[headers.index("Symbol")] for row in rows)
        assert symbols == ["AAPL", "BTC-USD", "EURUSD", "MSFT", "NVDA"]
        seen = page.evaluate("() => nbf.inspect(nbf.grid('grid'))")
        assert not seen["bad"] and not seen["cut"] and not seen["headerCut"], seen
        assert seen["empty"] == 0, seen

        # The chart drew the replayed 1 s candles of the 30 s recording.
        page.wait_for_function(f"() => {{ const el = {CHART}; "
                               f"return el && +el.dataset.bars >= 20; }}",
                               timeout=WAIT_MS, polling=100)
        chart = page.evaluate(f"() => ({{...{CHART}.dataset}})")
        assert chart["kind"] == "candle", chart
        assert int(chart["lastTime"]) <= recording["end_ms"]

        shoot(page, artifacts, "light")
        page.evaluate("jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Dark'})")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                               timeout=WAIT_MS)
        page.wait_for_timeout(500)  # let the grid and chart repaint in the new theme's colours
        shoot(page, artifacts, "dark")
        error = page.evaluate("nbf.run('grid.close(); chart.close(); quotes.close(); "
                              "bars.close()')")
        assert error is None, error
    finally:
        page.evaluate("jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Light'})")
        lab.shutdown_notebook("recorder.ipynb")
        page.close()



def shoot(page, artifacts, theme: str) -> None:
    """Screenshots of the grid's and the chart's cells (code and output) for people to see."""
    for tag in ("grid", "chart"):
        handle = page.evaluate_handle(f"nbf.cell('{tag}').node").as_element()
        handle.scroll_into_view_if_needed()
        handle.screenshot(path=str(artifacts / f"lab-recorder-{tag}-{theme}.png"))
