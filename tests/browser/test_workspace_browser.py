"""nbfeed's OpenBB Workspace backend as a real browser sees it: CORS, the API key, the socket.

A small page (``workspace_page.html``) does what Workspace's live grid does - fetch
widgets.json with the Jupyter token as ``X-API-KEY``, fetch the live grid's snapshot, open the
``wsEndpoint`` socket and send its params - from a page on another origin than Jupyter's. Served
from an origin in ``c.NBFeed.workspace_origins`` it gets rows; served from a foreign origin the
browser itself refuses what the server does not allow (CORS on fetch, the Origin check on the
socket). Everything runs in Chromium, so preflights and Origin headers are the browser's own.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SYMBOLS = ["AAPL", "MSFT", "BTC-USD"]
MOUNT = "nbfeed/workspace/"


@pytest.fixture(scope="module")
def ws_info(lab) -> dict:
    """The live grid entry of widgets.json, as fetched with the token (no Origin header)."""
    status, body = lab.get(MOUNT + "widgets.json", headers={"X-API-KEY": lab.token})
    assert status == 200, body[:300]
    widgets = json.loads(body)
    grids = [w for w in widgets.values() if w.get("type") == "live_grid"]
    assert grids, f"no live_grid in widgets.json: {sorted(widgets)}"
    return grids[0]


def open_site(context, site):
    page = context.new_page()
    page.goto(site.origin + "/workspace.html")
    page.wait_for_function("typeof window.liveGrid === 'function'")
    return page


def test_allowed_origin_gets_widgets_snapshot_and_live_rows(lab, context, workspace_sites,
                                                           artifacts):
    page = open_site(context, workspace_sites["allowed"])
    try:
        result = page.evaluate("([base, key, symbols]) => liveGrid(base, key, symbols, 3)",
                               [lab.url + MOUNT, lab.token, SYMBOLS])
        page.screenshot(path=str(artifacts / "workspace-allowed-origin.png"), full_page=True)
    finally:
        page.close()
    # The fetch succeeding is the proof that CORS allowed it: the browser hides the response
    # of a cross-origin request (and the Access-Control-* headers themselves) otherwise.
    assert result["widgets"]["status"] == 200 and not result["widgets"]["error"], result
    assert result["snapshot"]["status"] == 200, result["snapshot"]
    assert [r["symbol"] for r in result["snapshot"]["rows"]] == SYMBOLS
    sock = result["socket"]
    assert sock["opened"] and sock["closeCode"] is None, sock  # the server never closes it
    # Every symbol got at least three live updates, patched into the snapshot rows.
    assert all(sock["updates"].get(s, 0) >= 3 for s in SYMBOLS), sock
    assert all(isinstance(r["price"], float) and r["price"] > 0 for r in result["rows"])
    frame = sock["lastFrame"]
    frame_rows = frame if isinstance(frame, list) else [frame]
    assert all(r["symbol"] in SYMBOLS and isinstance(r["price"], float) for r in frame_rows), frame


def test_allowed_origin_without_the_key_reads_the_401_detail(lab, context, workspace_sites):
    """Errors carry CORS headers too, so Workspace can show why it was refused."""
    page = open_site(context, workspace_sites["allowed"])
    try:
        reply = page.evaluate("(url) => getJSON(url, null)", lab.url + MOUNT + "widgets.json")
        wrong = page.evaluate("(url) => getJSON(url, 'not-the-token')",
                              lab.url + MOUNT + "widgets.json")
    finally:
        page.close()
    assert reply["status"] == 401 and "token" in reply["body"]["detail"], reply
    assert wrong["status"] == 403 and wrong["body"]["detail"], wrong


def test_allowed_origin_with_a_wrong_capability_gets_no_socket(lab, context, workspace_sites,
                                                              ws_info):
    parts = ws_info["wsEndpoint"].split("/")  # ws/<capability>/quotes/<source>
    assert parts[0] == "ws" and len(parts[1]) >= 16, ws_info["wsEndpoint"]
    guessed = "/".join([parts[0], parts[1][::-1], *parts[2:]])
    page = open_site(context, workspace_sites["allowed"])
    try:
        sock = page.evaluate("([url, symbols]) => openSocket(url, {symbol: symbols}, 15000)",
                             [(lab.url + MOUNT + guessed).replace("http", "ws", 1), SYMBOLS])
    finally:
        page.close()
    assert not sock["opened"] and not sock["frames"], sock


def test_foreign_origin_is_refused_by_the_browser_and_the_server(lab, context, workspace_sites,
                                                                ws_info, artifacts):
    """Even with the right key and capability, a page from a foreign origin reads nothing."""
    page = open_site(context, workspace_sites["foreign"])
    try:
        widgets = page.evaluate("([url, key]) => getJSON(url, key)",
                                [lab.url + MOUNT + "widgets.json", lab.token])
        snapshot = page.evaluate("([url, key]) => getJSON(url, key)",
                                 [f"{lab.url}{MOUNT}{ws_info['endpoint']}?symbol=AAPL", lab.token])
        sock = page.evaluate("([url, symbols]) => openSocket(url, {symbol: symbols}, 15000)",
                             [(lab.url + MOUNT + ws_info["wsEndpoint"]).replace("http", "ws", 1),
                              SYMBOLS])
        page.screenshot(path=str(artifacts / "workspace-foreign-origin.png"), full_page=True)
    finally:
        page.close()
    # CORS: the browser blocks the response (no Access-Control-Allow-Origin for this origin).
    assert "error" in widgets and "status" not in widgets, widgets
    assert "error" in snapshot and "status" not in snapshot, snapshot
    # The socket's Origin check refuses the upgrade: never opened, no rows.
    assert not sock["opened"] and not sock["frames"], sock
    # And the server itself refuses that origin (not only the browser's CORS policy).
    origin = workspace_sites["foreign"].origin
    status, body = lab.get(MOUNT + "widgets.json",
                           headers={"X-API-KEY": lab.token, "Origin": origin})
    assert status == 403 and b"not allowed" in body, (status, body[:200])
