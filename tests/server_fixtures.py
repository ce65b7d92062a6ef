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
    return jp_serverapp.web_app.settings["nbfeed_app"]


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
