"""Every example notebook runs top to bottom under nbclient (an embedded hub, no server)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NBFEED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NBFEED_SERVER_INFO", raising=False)
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={
        "metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.monotonic() - started
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
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
