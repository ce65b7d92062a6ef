"""notebooks/shared_feed.ipynb in JupyterLab: two users' hubs on one feed, a live grid on it.

Run unchanged with Run > Run All Cells in the suite's JupyterLab (whose kernels have no
``NBFEED_BUS``, so the notebook starts its own throw-away Redis and feed server); the grid shows
the shared stream's symbols, and screenshots in the light and the dark theme go to
``test-artifacts/``.
"""

from __future__ import annotations

import shutil

import pytest

from .lab_page import error_outputs, open_notebook, run_all_from_menu, wait_all_ran
from .lab_server import REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
GRID = "Alice's stream in a live grid: cells flash as prices move"
SYMBOLS = {"AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"}


def test_shared_feed_notebook_runs_in_lab_and_its_grid_shows_the_shared_stream(
        lab, context, artifacts):
    shutil.copy(REPO / "notebooks" / "shared_feed.ipynb", lab.root / "shared_feed.ipynb")
    page = open_notebook(context, lab, "shared_feed.ipynb", "shared-feed")
    try:
        run_all_from_menu(page)
        cells = wait_all_ran(page, timeout=240)
        assert not error_outputs(cells), error_outputs(cells)
        texts = " ".join(out.get("text", "") for cell in cells for out in cell["outputs"])
        assert "2 servers want 5 streams; 5 streams in Redis" in texts, texts
        assert "Alice still receives rows" in texts, texts
        page.wait_for_function(f"() => nbf.grid({GRID!r}) && "
                               f"nbf.rows({GRID!r}).length === {len(SYMBOLS)}",
                               timeout=60_000, polling=200)
        rows = page.evaluate(f"nbf.rows({GRID!r})")
        assert {row[0] for row in rows} == SYMBOLS
        assert all(float(row[1]) > 0 for row in rows), rows  # prices, as the grid shows them
        cell = page.evaluate_handle(f"nbf.cell({GRID!r}).node")
        cell.scroll_into_view_if_needed()
        cell.screenshot(path=str(artifacts / "lab-shared-feed-grid.png"))
        page.evaluate("jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Dark'})")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false' && "
                               "!document.querySelector('#jupyterlab-splash')",
                               timeout=30_000, polling=200)
        cell.scroll_into_view_if_needed()
        cell.screenshot(path=str(artifacts / "lab-shared-feed-grid-dark.png"))
        page.evaluate("jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Light'})")
    finally:
        page.close()
        lab.shutdown_notebook("shared_feed.ipynb")
