"""No secret in the log of a real server: not the Jupyter token, not the Workspace API key, not
the live grid's socket capability, whatever requests fail on nbfeed's routes.

The server runs as its own process at DEBUG level (the most it can say), every kind of request
that used to leak one is made, and the whole output is searched. Jupyter's own startup banner,
which prints the server's URL with its token by design, is the one place a token may appear.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.test_server_lifecycle import TOKEN, Server

API_KEY = "workspace-key-6d1f0b9e"
# The banner: "http://127.0.0.1:8888/tree?token=..." or ".../?token=..." (Jupyter's own URLs).
_BANNER_URL = re.compile(r"https?://\S+?/(?:lab|tree)?\?token=\S+")


def _call(url: str, method: str = "GET", body: bytes | None = None,
          headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_failed_requests_log_no_token_key_or_capability(tmp_path):
    server = Server(tmp_path, args=("--log-level=DEBUG",
                                    f"--NBFeed.workspace_api_key={API_KEY}"))
    try:
        base = server.start()["url"]
        ws_base = base.replace("http://", "ws://")
        status, body = _call(f"{base}nbfeed/workspace/widgets.json?token={API_KEY}")
        assert status == 200
        endpoint = json.loads(body)["nbfeed_quotes_simulated"]["wsEndpoint"]
        capability = endpoint.split("/")[1]
        assert len(capability) >= 30

        # The requests that leaked: a failing one with the token in its URL...
        assert _call(f"{base}nbfeed/api/stream?token={TOKEN}")[0] == 400  # not an upgrade
        assert _call(f"{base}nbfeed/api/history?token={TOKEN}&source=nope&symbol=A"
                     "&interval=1d")[0] == 404
        # ...a Workspace call with the API key in its URL, failing...
        assert _call(f"{base}nbfeed/workspace/api/widgets?token={API_KEY}", "POST",
                     b"{not json")[0] == 400
        assert _call(f"{base}nbfeed/workspace/history/nope?api_key={API_KEY}&symbol=A")[0] \
            == 404
        # ...and refused live grid sockets (the capability is in the path).
        assert _call(f"{base}nbfeed/workspace/{endpoint}")[0] == 400  # not an upgrade
        try:
            await websocket_connect(HTTPRequest(f"{ws_base}nbfeed/workspace/{endpoint}",
                                                headers={"Origin": "https://evil.example"}))
            raise AssertionError("a foreign origin was let in")
        except Exception as exc:
            assert getattr(exc, "code", None) == 403, exc
        # A socket that opens (Jupyter logs "Opening websocket <path>" at DEBUG).
        ws = await websocket_connect(HTTPRequest(f"{ws_base}nbfeed/workspace/{endpoint}",
                                                 headers={"Origin": "https://pro.openbb.co"}))
        await ws.write_message('{"params": {"symbol": "AAPL"}}')
        assert await ws.read_message() is not None
        ws.close()
        ws = await websocket_connect(f"{ws_base}nbfeed/api/stream?token={TOKEN}")
        await ws.write_message(json.dumps({"type": "subscribe", "id": "x", "source": "nope",
                                           "symbols": ["A"]}))
        assert "unknown source" in await ws.read_message() + await ws.read_message()
        ws.close()
        server.wait_output("/nbfeed/workspace/ws/")
    finally:
        server.kill()
    lines = [_BANNER_URL.sub("<jupyter url>", line) for line in server.output]
    for name, secret in (("token", TOKEN), ("API key", API_KEY), ("capability", capability)):
        leaks = [line.strip() for line in lines if secret in line]
        assert not leaks, f"the {name} is in the log:\n" + "\n".join(leaks[:5])
    # The requests were logged, redacted.
    assert any("/nbfeed/api/stream?token=[secret]" in line for line in lines)
    assert any("/nbfeed/workspace/ws/[secret]/quotes/simulated" in line for line in lines)
