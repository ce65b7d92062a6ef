"""A client that behaves like OpenBB Workspace, against a real Jupyter server running nbfeed.

:class:`WorkspaceClient` does what the browser app does (docs/WORKSPACE.md): preflight, then
widgets.json and apps.json with the connection's auth header; endpoint URLs are
``base + "/" + endpoint`` with duplicate slashes collapsed; GET params drop empty values and send
multiSelect values comma-joined, plus ``theme``/``raw`` it adds on its own; the live grid socket is
opened with only an ``Origin`` (no credentials), receives the params on open and on every change,
and patches the snapshot table by ``wsRowIdColumn``, writing only declared, live fields that the
snapshot row had. It asserts the server's side of that contract as it goes.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from nbfeed.openbb.schema import apps_problems, render_fns, widgets_problems
from tests.server_fixtures import *  # noqa: F403

ORIGIN = "https://pro.openbb.co"


def join(base: str, endpoint: str) -> str:
    """Workspace's URL rule: base + "/" + endpoint, duplicate slashes collapsed."""
    if endpoint.startswith("http"):
        return endpoint
    scheme, rest = (base + "/" + endpoint).split("://", 1)
    return f"{scheme}://{re.sub('/{2,}', '/', rest)}"


class WorkspaceClient:
    """One Workspace connection: a backend base URL plus auth headers, from one origin."""

    def __init__(self, base: str, auth: dict[str, str], origin: str = ORIGIN) -> None:
        self.base = base.rstrip("/")
        self.auth = auth
        self.origin = origin
        self.http = AsyncHTTPClient()
        self.widgets: dict = {}
        self.apps: list = []
        self._preflighted: set[str] = set()

    async def preflight(self, url: str, method: str = "GET", private_network: bool = True):
        headers = {"Origin": self.origin, "Access-Control-Request-Method": method,
                   "Access-Control-Request-Headers": ", ".join(h.lower() for h in self.auth)}
        if private_network:
            headers["Access-Control-Request-Private-Network"] = "true"
        return await self.http.fetch(HTTPRequest(url, method="OPTIONS", headers=headers),
                                     raise_error=False)

    async def get(self, endpoint: str, params: dict | None = None, *, auth: bool = True):
        """GET like Workspace: returns (status, parsed JSON); checks the CORS answer."""
        query = {}
        for key, value in (params or {}).items():
            if isinstance(value, list):
                value = ",".join(value)
            if value not in (None, ""):
                query[key] = value
        url = join(self.base, endpoint)
        path = url.split("?")[0]
        if auth and self.auth and path not in self._preflighted:
            pre = await self.preflight(path)
            assert pre.code == 204, pre.code
            assert pre.headers["Access-Control-Allow-Origin"] == self.origin
            allowed = {h.strip().lower() for h in
                       pre.headers["Access-Control-Allow-Headers"].split(",")}
            assert {h.lower() for h in self.auth} <= allowed
            assert pre.headers["Access-Control-Allow-Private-Network"] == "true"
            self._preflighted.add(path)
        headers = {"Origin": self.origin, **(self.auth if auth else {})}
        resp = await self.http.fetch(HTTPRequest(url + ("?" + urlencode(query) if query else ""),
                                                 headers=headers, request_timeout=30),
                                     raise_error=False)
        is_json = "json" in resp.headers.get("Content-Type", "")
        body = json.loads(resp.body) if resp.body and is_json else resp.body
        if resp.code < 500 and is_json:
            # The browser can only read the answer (also an error's detail) with this header.
            assert resp.headers.get("Access-Control-Allow-Origin") == self.origin, resp.headers
        return resp.code, body

    async def connect(self) -> None:
        """What 'Connect backend' does: widgets.json (required) and apps.json."""
        status, self.widgets = await self.get("widgets.json")
        assert status == 200, self.widgets
        assert widgets_problems(self.widgets) == []
        status, self.apps = await self.get("apps.json")
        assert status == 200, self.apps
        assert apps_problems(self.apps, self.widgets) == []

    def live_grid(self, widget_id: str) -> LiveGrid:
        return LiveGrid(self, widget_id, self.widgets[widget_id])


class LiveGrid:
    """A live_grid widget on a dashboard: snapshot table + socket patches."""

    def __init__(self, client: WorkspaceClient, widget_id: str, widget: dict) -> None:
        assert widget["type"] == "live_grid"
        self.client = client
        self.widget_id = widget_id
        self.widget = widget
        self.row_id = widget["data"]["wsRowIdColumn"]
        cols = widget["data"]["table"]["columnsDefs"]
        self.declared = {c["field"] for c in cols}
        self.live_fields = {c["field"] for c in cols if c.get("enableCellChangeWs", True)}
        for col in cols:  # the colour key field must itself be a live column
            key = col.get("renderFnParams", {}).get("colorValueKey")
            if key:
                assert "showCellChange" in render_fns(col["renderFn"])
                assert key in self.live_fields
        self.params = {p["paramName"]: p.get("value") for p in widget.get("params", [])}
        self.table: dict[str, dict] = {}
        self.ws = None
        self.frames: list = []
        self.updates = 0
        self.dropped = 0
        self._current: set[str] = set()
        self._previous: set[str] = set()
        self._switched = False

    def ws_url(self) -> str:
        return join(self.client.base, self.widget["wsEndpoint"]).replace("http", "ws", 1)

    async def snapshot(self) -> list[dict]:
        status, rows = await self.client.get(self.widget["endpoint"],
                                             {**self.params, "theme": "dark", "raw": "false"})
        assert status == 200, rows
        assert isinstance(rows, list)  # a plain top-level array, no dataKey
        self.table = {}
        for row in rows:
            assert self.declared <= set(row), f"snapshot row lacks columns: {row}"
            self.table[row[self.row_id]] = dict(row)
        return rows

    async def open(self) -> None:
        await self.snapshot()
        # No credentials on the socket: only the Origin a browser adds.
        self.ws = await websocket_connect(HTTPRequest(self.ws_url(),
                                                      headers={"Origin": self.client.origin}))
        self._current = set(self.table)
        await self.send_params()

    async def send_params(self, message: dict | None = None) -> None:
        await self.ws.write_message(json.dumps(message or {"type": "params",
                                                           "params": self.params}))

    async def set_params(self, **params) -> None:
        """A param change: refetch the snapshot, then tell the socket (as Workspace does)."""
        self.params.update(params)
        if all(v in (None, "", []) for v in self.params.values()):
            self.ws.close()  # Workspace closes the socket when every param is empty
            return
        self._previous, self._switched = set(self.table), True
        await self.snapshot()
        self._current = set(self.table)
        await self.send_params()

    async def receive(self, timeout: float = 20.0) -> list[dict]:
        text = await asyncio.wait_for(self.ws.read_message(), timeout)
        assert text is not None, "the server closed the live grid socket"
        data = json.loads(text)
        rows = data if isinstance(data, list) else [data]
        self.frames.append(rows)
        ids = {r[self.row_id] for r in rows}
        if self._switched:
            # Until the server has the new params, frames are of the old set; after the first
            # frame of the new set, never again an old-only symbol.
            if ids <= self._current:
                if ids - self._previous:
                    self._switched = False
            else:
                assert ids <= self._previous, f"rows for symbols never asked for: {ids}"
        else:
            assert ids <= self._current, f"rows outside the current params: {ids}"
        for row in rows:
            assert set(row) <= self.live_fields | {self.row_id}, f"undeclared fields: {row}"
            target = self.table.get(row[self.row_id])
            if target is None:
                self.dropped += 1  # Workspace drops unknown ids (no inserts)
                continue
            for field, value in row.items():
                if field != self.row_id and field in target:
                    target[field] = value
            self.updates += 1
        return rows

    async def until_updated(self, symbols: set[str], timeout: float = 20.0) -> None:
        seen: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not symbols <= seen:
            rows = await self.receive(deadline - loop.time())
            seen |= {r[self.row_id] for r in rows if r[self.row_id] in self.table}


def auth_header(serverapp) -> dict[str, str]:
    return {"X-API-KEY": serverapp.identity_provider.token}


def base_of(jp_http_port, path: str) -> str:
    return f"http://127.0.0.1:{jp_http_port}{path}"


async def workspace_session(client: WorkspaceClient) -> None:
    """The whole user journey against one backend URL."""
    await client.connect()
    grid = client.live_grid("nbfeed_quotes_simulated")
    assert grid.widget["wsEndpoint"].count("/") >= 3
    first = set(grid.params["symbol"])
    await grid.open()
    assert set(grid.table) == first
    await grid.until_updated(first)
    assert all(row["price"] is not None for row in grid.table.values())

    # Malformed messages are ignored; the socket stays open and keeps streaming.
    for junk in ("not json", "[1, 2]", '{"type": "params", "params": {"symbol": 42}}',
                 '{"type": "subscribe"}', '{"params": "AAPL"}', "{" * 10_000):
        await grid.ws.write_message(junk)
    await grid.until_updated(first)

    # Switch params (a list value; then a message without "type", with an unknown symbol that
    # the server drops while subscribing the others).
    await grid.set_params(symbol=["BTC-USD", "MSFT"])
    await grid.send_params({"params": {"symbol": ["BTC-USD", "MSFT", "NOPE-1"]}})
    await grid.until_updated({"BTC-USD", "MSFT"})
    for _ in range(5):
        await grid.receive()
    assert grid.updates > 0 and not grid._switched
    # Throttled: each frame has at most one row per symbol.
    assert all(len(rows) == len({r["symbol"] for r in rows}) for rows in grid.frames)

    # All params empty: Workspace closes the socket itself.
    await grid.set_params(symbol=[])

    # Tables and chart endpoints named by widgets.json, with Workspace's extra params.
    hist = client.widgets["nbfeed_history_simulated"]
    params = {p["paramName"]: p["value"] for p in hist["params"]}
    status, rows = await client.get(hist["endpoint"], {**params, "theme": "dark",
                                                      "raw": "true"})
    assert status == 200 and len(rows) > 30
    assert rows[0]["date"].endswith("Z") and {"open", "close", "volume"} <= set(rows[0])
    chart = client.widgets["nbfeed_chart_simulated"]
    status, fig = await client.get(chart["endpoint"], {**params, "theme": "light"})
    assert status == 200 and fig["data"][0]["type"] == "candlestick"
    assert len(fig["data"][0]["x"]) == len(rows)
    search = client.widgets["nbfeed_symbols"]
    status, found = await client.get(search["endpoint"], {"query": "apple", "source": ""})
    assert status == 200 and found[0]["symbol"] == "AAPL"


async def test_workspace_session_under_base_url(nbfeed_server, jp_serverapp, jp_http_port,
                                                jp_base_url):
    assert jp_base_url == "/a%40b/"
    client = WorkspaceClient(base_of(jp_http_port, f"{jp_base_url}nbfeed/workspace"),
                             auth_header(jp_serverapp))
    await workspace_session(client)
    # Not served at the root when the server has a base_url (unless configured).
    status, _ = await WorkspaceClient(base_of(jp_http_port, "/"),
                                      auth_header(jp_serverapp)).get("widgets.json", auth=False)
    assert status == 404


class TestAtServerRoot:
    @pytest.fixture
    def jp_base_url(self):
        return "/"

    async def test_workspace_session_at_root(self, nbfeed_server, jp_serverapp, jp_http_port):
        # The base is the bare host: widgets.json is served there, its endpoints lead back
        # under /nbfeed/workspace/. Auth as "Authorization: token" this time.
        token = jp_serverapp.identity_provider.token
        client = WorkspaceClient(base_of(jp_http_port, "/"), {"Authorization": f"token {token}"})
        await workspace_session(client)
        assert client.widgets["nbfeed_quotes_simulated"]["endpoint"].startswith(
            "nbfeed/workspace/")


async def test_refusals(nbfeed_server, jp_serverapp, jp_http_port, jp_base_url):
    base = base_of(jp_http_port, f"{jp_base_url}nbfeed/workspace")
    client = WorkspaceClient(base, auth_header(jp_serverapp))
    await client.connect()
    grid = client.live_grid("nbfeed_quotes_simulated")
    ws_url = grid.ws_url()
    token = jp_serverapp.identity_provider.token
    assert token not in json.dumps(client.widgets) and token not in json.dumps(client.apps)

    # Missing HTTP auth: 401; wrong: 403; both readable by the allowed origin.
    status, body = await client.get("widgets.json", auth=False)
    assert status == 401 and "X-API-KEY" in body["detail"]
    wrong = WorkspaceClient(base, {"X-API-KEY": "not-the-token"})
    wrong._preflighted.add(join(base, "widgets.json"))
    status, body = await wrong.get("widgets.json")
    assert status == 403 and "invalid credentials" in body["detail"]
    # ?token= works too (Workspace's query-parameter auth entry).
    status, _ = await client.get("widgets.json", {"token": token}, auth=False)
    assert status == 200

    # A foreign origin gets no CORS grant on preflight and a 403 even with the token.
    foreign = WorkspaceClient(base, auth_header(jp_serverapp), origin="https://evil.example")
    pre = await foreign.preflight(join(base, "widgets.json"))
    assert pre.code == 204 and "Access-Control-Allow-Origin" not in pre.headers
    resp = await foreign.http.fetch(HTTPRequest(join(base, "widgets.json"), headers={
        "Origin": "https://evil.example", **auth_header(jp_serverapp)}), raise_error=False)
    assert resp.code == 403 and "workspace_origins" in json.loads(resp.body)["detail"]

    # The socket: a wrong capability or a foreign Origin is refused before the upgrade.
    bad_cap = re.sub(r"/ws/[^/]+/", "/ws/" + "x" * 32 + "/", ws_url)
    for url, origin in ((bad_cap, ORIGIN), (ws_url, "https://evil.example")):
        with pytest.raises(Exception) as err:
            await websocket_connect(HTTPRequest(url, headers={"Origin": origin}))
        assert getattr(err.value, "code", None) == 403, err.value
    # The real capability from an allowed origin is accepted.
    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Origin": ORIGIN}))
    ws.close()


async def test_stream_survives_provider_restart(nbfeed_server, jp_serverapp, jp_http_port,
                                                jp_base_url):
    client = WorkspaceClient(base_of(jp_http_port, f"{jp_base_url}nbfeed/workspace"),
                             auth_header(jp_serverapp))
    await client.connect()
    grid = client.live_grid("nbfeed_quotes_simulated")
    grid.params["symbol"] = ["AAPL"]
    await grid.open()
    await grid.until_updated({"AAPL"})
    hub = nbfeed_server.hub
    old_pid = next(p["pid"] for p in hub.providers_info() if p["name"] == "simulated")
    await hub.restart_provider("simulated")
    new_pid = next(p["pid"] for p in hub.providers_info() if p["name"] == "simulated")
    assert new_pid != old_pid
    mark = grid.updates
    await grid.until_updated({"AAPL"}, timeout=30)  # same socket, same subscription
    assert grid.updates > mark
    grid.ws.close()
