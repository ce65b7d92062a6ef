"""Fixtures for tests against a real Jupyter server running the nbfeed extension."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError


@pytest.fixture
def nbfeed_config(tmp_path):
    """NBFeed traits for the test server; tests may update it before the server starts."""
    return {"home": str(tmp_path / "nbfeed-home"), "providers": ["simulated"],
            "provider_options": {"simulated": {"rate": 50}}}


@pytest.fixture
def jp_server_config(nbfeed_config):
    return {"ServerApp": {"jpserver_extensions": {"nbfeed": True}},
            "NBFeed": nbfeed_config}


@pytest.fixture
def nbfeed_server(jp_serverapp, http_server_client, jp_asyncio_loop):
    """The running server, with nbfeed's start hook run (pytest-jupyter does not run it).

    pytest-jupyter's own cleanup calls ``stop_extension`` afterwards, which stops the hub.
    """
    jp_asyncio_loop.run_until_complete(jp_serverapp._post_start())
    (app,) = jp_serverapp.extension_manager.extension_apps["nbfeed"]
    return app


async def fetch_json(jp_fetch, *parts, params=None, expect=200, **kw):
    """GET an nbfeed endpoint; returns (status, body) without raising on HTTP errors."""
    try:
        resp = await jp_fetch(*parts, params=params or {}, **kw)
    except HTTPClientError as err:
        resp = err.response
    body = resp.body.decode() if resp is not None else ""
    ctype = resp.headers.get("Content-Type", "") if resp is not None else ""
    data = json.loads(body) if "json" in ctype and body else body
    assert resp.code == expect, (resp.code, body[:300])
    return resp.code, data


class WireClient:
    """A real websocket client of ``nbfeed/api/stream`` that reads frames as JSON."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.frames: list[dict] = []

    @classmethod
    async def open(cls, jp_ws_fetch, **kw) -> WireClient:
        conn = await jp_ws_fetch("nbfeed", "api", "stream", **kw)
        client = cls(conn)
        hello = await client.recv()
        assert hello["type"] == "hello" and hello["version"] == 1
        return client

    async def send(self, msg) -> None:
        await self.conn.write_message(msg if isinstance(msg, (str, bytes)) else json.dumps(msg))

    async def recv(self, timeout: float = 20.0) -> dict:
        import asyncio

        text = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert text is not None, "socket closed by the server"
        frame = json.loads(text)
        self.frames.append(frame)
        return frame

    async def until(self, pred, timeout: float = 20.0) -> dict:
        """Read frames until one satisfies ``pred``; fail after ``timeout`` seconds."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            assert left > 0, f"no matching frame within {timeout} s; last: {self.frames[-3:]}"
            frame = await self.recv(left)
            if pred(frame):
                return frame

    async def request(self, msg: dict, timeout: float = 20.0) -> dict:
        """Send a message with an id and return the first reply/error frame with that id."""
        await self.send(msg)
        return await self.until(lambda f: f.get("id") == msg.get("id")
                                and f.get("type") != "data_update", timeout)

    def close(self) -> None:
        self.conn.close()
