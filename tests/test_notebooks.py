"""Every example notebook runs top to bottom under nbclient (an embedded hub, no server), with
no error, no warning and nothing on stderr, and leaves its widgets live (Run All is the first
thing people do: a notebook that closes its own grids at the end shows them empty)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

# Appended to a copy of each notebook: which widgets exist after Run All, are they open, and do
# the ones that follow a stream still receive rows two seconds later?
LIVE_CHECK = """
import json as _json, time as _time
from nbfeed.widgets.chart import LiveChart as _Chart
from nbfeed.widgets.grid import LiveGrid as _Grid
_widgets = {_k: _v for _k, _v in list(globals().items())
            if not _k.startswith("_") and isinstance(_v, (_Grid, _Chart))}
_fed = {_k: _v for _k, _v in _widgets.items()
        if (_v.stream is not None if isinstance(_v, _Grid) else _v._source is not None)}
_before = {_k: _v.stats["rows_received"] for _k, _v in _fed.items()}
_deadline = _time.monotonic() + 30
while _time.monotonic() < _deadline and any(
        _v.stats["rows_received"] <= _before[_k] for _k, _v in _fed.items()):
    _time.sleep(0.1)
print("LIVE-CHECK", _json.dumps({
    "widgets": sorted(_widgets), "closed": sorted(_k for _k, _v in _widgets.items()
                                                  if _v.comm is None),
    "stalled": sorted(_k for _k, _v in _fed.items() if _v.stats["rows_received"] <= _before[_k]),
}))
"""

# Notebooks that show live widgets, and the widgets each must leave running.
LIVE_WIDGETS = {
    "quickstart": ["grid"],
    "live_grid": ["bar_grid", "grid", "manual", "watch"],
    "live_chart": ["chart", "line"],
    "write_a_provider": ["grid"],
    "recorder": ["chart", "grid"],
    "shared_feed": ["grid"],
}


def noise(nb: nbformat.NotebookNode) -> list[str]:
    """Errors, warnings and anything written to stderr, as text, with the cell it came from."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                found.append(f"error in {cell.source[:60]!r}: {out.get('ename')}: "
                             f"{out.get('evalue')}")
            elif kind == "stream" and out.get("name") == "stderr":
                found.append(f"stderr in {cell.source[:60]!r}: {out.get('text', '')[:300]}")
            elif "Warning" in str(out.get("text", "")):
                found.append(f"warning in {cell.source[:60]!r}: {out.get('text', '')[:300]}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean_and_leaves_live_widgets(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NBFEED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NBFEED_SERVER_INFO", raising=False)
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(LIVE_CHECK))
    started = time.monotonic()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={
        "metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.monotonic() - started
    assert not noise(nb), noise(nb)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    live = json.loads(printed.split("LIVE-CHECK", 1)[1])
    assert live["widgets"] == LIVE_WIDGETS.get(path.stem, []), live
    assert live["closed"] == [], f"Run All closed these widgets: {live['closed']}"
    assert live["stalled"] == [], f"these widgets stopped updating: {live['stalled']}"
    assert elapsed < 180, f"{path.name} took {elapsed:.0f} s"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_are_stripped_in_git(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"


def test_there_are_example_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {"quickstart", "live_grid", "live_chart", "write_a_provider", "csv_provider"} <= names
    assert os.path.exists(NOTEBOOKS[0])
