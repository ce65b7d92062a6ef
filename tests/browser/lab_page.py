"""Driving a notebook in JupyterLab from playwright, and reading what its widgets show.

The page is opened with ``--LabApp.expose_app_in_browser``, so ``window.jupyterapp`` leads from the
notebook to a cell's output widgets. A cell is found by its first line, a comment (``# quotes``).
:data:`HELPERS` (``page_helpers.js``) installs ``window.nbf`` in the page:

- ``nbf.grid(tag)``: the root element of a LiveGrid view; its ``nbfeed`` property reports what
  the view drew on its canvas (``headers()``, ``rows()`` as texts, ``widths()``, ``first()``);
- ``nbf.inspect(grid)``: whole-output checks (placeholder/NaN texts, values or headers cut
  short, empty rows, the grid's size against its columns);
- ``nbf.pixel(tag, row, col)``: the background colour of a visible body cell, read from the
  grid's ``<canvas>`` away from its text and direction mark;
- ``nbf.cellState(tag, row, col, refCol)``: ``green``, ``red``, ``normal`` (painted like the
  same row's ``refCol`` cell, which never flashes) or ``other``;
- ``nbf.charts(tag)``: LiveChart views (their ``data-*`` attributes describe the last draw);
- ``nbf.watch(name, fn, ms)``: samples ``fn()`` every ``ms`` in the page and records each change
  with its time, so short-lived states (a flash) are seen without a round trip per sample;
- ``nbf.run(code)``: runs code in the notebook's kernel (as a cell would, without adding one);
- ``nbf.theme(name)``: switches JupyterLab's theme ("JupyterLab Dark", "JupyterLab Light").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HELPERS = (Path(__file__).parent / "page_helpers.js").read_text()

KERNEL_IDLE = """() => {
  const p = window.jupyterapp && jupyterapp.shell.currentWidget;
  const k = p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && k.connectionStatus === 'connected';
}"""


def open_notebook(context: Any, lab: Any, path: str, workspace: str) -> Any:
    """A new page with ``path`` open in JupyterLab (own workspace), its kernel idle, helpers in."""
    page = context.new_page()
    page.goto(lab.lab_url(path, workspace))
    page.wait_for_function(KERNEL_IDLE, timeout=120_000, polling=200)
    page.evaluate(HELPERS)
    return page


def run_all_from_menu(page: Any) -> None:
    """Run > Run All Cells, as a user would."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def wait_all_ran(page: Any, timeout: float = 120) -> list[dict]:
    """Wait until every code cell has run and the kernel is idle; returns the cells' outputs."""
    page.wait_for_function(
        """() => { const p = jupyterapp.shell.currentWidget;
                   const k = p.sessionContext.session.kernel;
                   return k.status === 'idle' && p.content.widgets.every(
                     c => c.model.type !== 'code' || c.model.executionCount); }""",
        timeout=timeout * 1000, polling=200)
    return page.evaluate("nbf.outputs()")


def error_outputs(cells: list[dict]) -> list[str]:
    """The errors (``ename: evalue``) in a notebook's cell outputs."""
    found = []
    for cell in cells:
        for out in cell["outputs"]:
            if out.get("output_type") == "error":
                found.append(f"{out.get('ename')}: {out.get('evalue')}")
    return found
