"""Fixtures of the browser suite: a real JupyterLab with nbfeed, and Debian's Chromium.

One JupyterLab server (``python -m jupyterlab`` in a subprocess, on 127.0.0.1, the ``simulated``
provider, every Jupyter directory in tmp) and one headless Chromium driven by playwright's sync
API are shared by the whole package (``tests/browser/``) and stopped when its last test ends, so
the rest of the test run does not pay for them. Two small static HTTP servers stand in for
OpenBB Workspace: one whose origin the Lab server allows (``--NBFeed.workspace_origins``), one
whose origin it does not.

The suite is skipped, with the reason, only when no Chromium binary can be found
(``scripts/install-chromium.sh`` installs Debian's). Playwright's own browser download does not
work on our machines, so its ``executable_path`` points at the system binary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from .lab_server import ARTIFACTS, CHROMIUM_ARGS, LabServer, StaticSite, find_chromium


@pytest.fixture(scope="package")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("browser tests need Chromium: none at /usr/bin/chromium, $NBFEED_CHROMIUM or "
                    "on PATH (run scripts/install-chromium.sh)")
    return path


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """``test-artifacts/`` at the repository root: screenshots for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="package")
def workspace_sites() -> Iterator[dict[str, StaticSite]]:
    """Two sites serving ``/workspace.html`` (a Workspace stand-in): ``allowed`` (its origin is
    in the Lab server's workspace_origins) and ``foreign`` (it is not)."""
    pages = {"/workspace.html": (Path(__file__).parent / "workspace_page.html").read_text()}
    sites = {"allowed": StaticSite(pages), "foreign": StaticSite(pages)}
    yield sites
    for site in sites.values():
        site.close()


@pytest.fixture(scope="package")
def lab(chromium_path, tmp_path_factory, workspace_sites) -> Iterator[LabServer]:
    """The JupyterLab server (started only when the browser can run)."""
    server = LabServer(tmp_path_factory.mktemp("lab"), [workspace_sites["allowed"].origin])
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def browser(chromium_path):
    """A headless Chromium (playwright's sync API, Debian's binary)."""
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path, headless=True,
                                      args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def context(browser):
    """One browser context (cookies, storage) per test module, 1280x900 at device ratio 1."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


# pytest-jupyter (loaded for the in-process server tests) has two autouse fixtures that take the
# thread's running asyncio loop and close it afterwards. While playwright's sync API is active,
# that loop is playwright's own, so closing it would break the browser. These tests start no
# in-process server, so both are replaced here by no-ops.
@pytest.fixture
def jp_asyncio_loop() -> None:
    return None


@pytest.fixture
def jp_server_cleanup() -> None:
    return None
