"""Binary and JSON data frames on a real server's ``nbfeed/api/stream``, with real clients.

A client that asks for binary frames gets exactly the rows a JSON client gets; a client that
never asks gets the JSON frames it always got; the notebook client asks, and its streams give
the same callbacks and DataFrames either way; bad requests get named errors, and the socket
goes on serving.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pandas as pd
import pytest

import nbfeed
from nbfeed.client.frames import latest_frame
from nbfeed.hub.wire_frames import shared_blocks
from nbfeed.jsonfast import dumpb
from nbfeed.wire_binary import FrameReader, json_rows_of
from tests.server_fixtures import *  # noqa: F403
from tests.server_fixtures import WireClient

SYMBOLS = ["AAPL", "MSFT", "GOOGL"]


@pytest.fixture
def nbfeed_config(tmp_path):
    return {"home": str(tmp_path / "nbfeed-home"), "providers": ["simulated"],
            "provider_options": {"simulated": {"rate": 100}}}


class Client(WireClient):
    """A WireClient that also reads binary data frames and keeps every message as received."""

    def __init__(self, conn) -> None:
        super().__init__(conn)
        self.raw: list[str | bytes] = []
        self.reader = FrameReader()

    async def recv(self, timeout: float = 20.0) -> dict:
        msg = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert msg is not None, "socket closed by the server"
        self.raw.append(msg)
        if isinstance(msg, bytes):
            header, batches = self.reader.read(msg)
            frame = {**header, "rows": [r for c in batches for r in json_rows_of(c)],
                     "binary": True}
        else:
            frame = json.loads(msg)
        self.frames.append(frame)
        return frame

    def rows(self, rid: str) -> list[dict]:
        return [r for f in self.frames if f["type"] == "data_update" and f["id"] == rid
                for r in f["rows"]]

    async def read_rows(self, rid: str, count: int, timeout: float = 60.0) -> list[dict]:
        await self.until(lambda f: len(self.rows(rid)) >= count, timeout)
        return self.rows(rid)


def common_run(earlier: list[dict], later: list[dict], size: int) -> tuple[list, list]:
    """The first ``size`` rows of ``later`` and the same stretch of ``earlier`` (which
    subscribed first, so it holds them somewhere)."""
    start = earlier.index(later[0])
    assert len(earlier) - start >= size and len(later) >= size
    return earlier[start:start + size], later[:size]


async def test_binary_and_json_clients_get_the_same_rows_and_json_frames_are_unchanged(
        nbfeed_server, jp_ws_fetch):
    plain = await Client.open(jp_ws_fetch)
    binary = await Client.open(jp_ws_fetch)
    hello = binary.frames[0]
    assert hello["formats"] == ["json", "binary"]
    reply = await binary.request({"type": "hello", "id": "h", "format": "binary"})
    assert reply == {"type": "hello", "id": "h", "version": 1, "format": "binary"}
    sub = {"type": "subscribe", "source": "simulated", "symbols": SYMBOLS, "interval": "tick"}
    assert (await plain.request({**sub, "id": "q"}))["type"] == "data_init"
    init = await binary.request({**sub, "id": "q"})
    assert init["type"] == "data_init" and "binary" not in init  # only data frames change

    json_rows, binary_rows = await asyncio.gather(plain.read_rows("q", 900),
                                                  binary.read_rows("q", 600))
    same_json, same_binary = common_run(json_rows, binary_rows, 500)
    assert same_binary == same_json  # values and order
    assert {r["symbol"] for r in same_binary} == set(SYMBOLS)

    # The JSON client: text frames only, each data frame exactly today's compact JSON.
    assert all(isinstance(m, str) for m in plain.raw)
    updates = [m for m in plain.raw if m.startswith('{"type":"data_update"')]
    assert len(updates) > 5
    for text in updates:
        frame = json.loads(text)
        assert list(frame) == ["type", "id", "rows"] and frame["id"] == "q"
        assert dumpb(frame).decode() == text
    # The binary client: every data frame binary, everything else JSON text.
    kinds = {(f["type"], isinstance(m, bytes)) for f, m in zip(binary.frames, binary.raw)}
    assert ("data_update", True) in kinds and ("data_update", False) not in kinds
    assert all(not isinstance(m, bytes) for f, m in zip(binary.frames, binary.raw)
               if f["type"] != "data_update")
    # Fewer bytes for the same rows, even at this low rate (a row or two per frame).
    binary_bytes = sum(len(m) for m in binary.raw if isinstance(m, bytes))
    json_bytes = sum(len(m) for m in updates)
    assert binary_bytes / len(binary_rows) < 0.95 * json_bytes / len(json_rows)
    plain.close()
    binary.close()


async def test_each_batch_is_encoded_once_for_every_binary_socket(nbfeed_server, jp_ws_fetch):
    shared = shared_blocks(nbfeed_server.hub)
    clients = [await Client.open(jp_ws_fetch) for _ in range(3)]
    for ws in clients:
        await ws.request({"type": "hello", "id": "h", "format": "binary"})
    encoded_before = shared.encoded
    for ws in clients:
        await ws.request({"type": "subscribe", "id": "q", "source": "simulated",
                          "symbols": SYMBOLS})
    await asyncio.gather(*(ws.read_rows("q", 300) for ws in clients))
    encoded = shared.encoded - encoded_before
    blocks = [sum(f["blocks"] for f in ws.frames if f.get("binary")) for ws in clients]
    # Three sockets, each sent every batch: encoded about once each, not three times.
    assert encoded <= 1.2 * max(blocks) + 10, (encoded, blocks)
    for ws in clients:
        ws.close()


async def test_a_client_can_go_back_to_json(nbfeed_server, jp_ws_fetch):
    ws = await Client.open(jp_ws_fetch)
    await ws.request({"type": "hello", "id": "h1", "format": "binary"})
    await ws.request({"type": "subscribe", "id": "q", "source": "simulated",
                      "symbols": ["AAPL"]})
    await ws.until(lambda f: f.get("binary") is True)
    reply = await ws.request({"type": "hello", "id": "h2", "format": "json"})
    assert reply["format"] == "json"
    seen = len(ws.raw)
    await ws.until(lambda f: f["type"] == "data_update" and len(ws.raw) > seen + 1
                   and isinstance(ws.raw[-1], str))
    assert all(isinstance(m, str) for m in ws.raw[seen + 2:])
    ws.close()


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ({"type": "hello", "id": "h", "format": "xml"}, "format must be one of json, binary"),
        ({"type": "hello", "id": "h", "format": 5}, "format"),
        ({"type": "hello", "id": "h", "format": ["binary"]}, "format"),
        ({"type": "hello", "id": "h", "format": "x" * 5000}, "format"),
    ],
)
async def test_an_unknown_format_is_refused_and_frames_stay_json(nbfeed_server, jp_ws_fetch,
                                                                 message, named):
    ws = await Client.open(jp_ws_fetch)
    err = await ws.request(message)
    assert err["type"] == "error" and err["code"] == "bad_request"
    assert named in err["message"] and len(err["message"]) < 200
    await ws.request({"type": "subscribe", "id": "q", "source": "simulated",
                      "symbols": ["AAPL"]})
    await ws.until(lambda f: f["type"] == "data_update")
    assert all(isinstance(m, str) for m in ws.raw)
    ws.close()


@pytest.mark.parametrize("payload", [
    json.dumps({"type": "ping", "id": "p"}).encode(),  # valid JSON, but in a binary frame
    b"NBF1\x08\x00\x00\x00{}      ",  # a server's own binary frame sent back
    b"\xff" * 2_000_000,  # big and meaningless
], ids=["json-in-binary", "data-frame", "2MB-junk"])
async def test_a_binary_frame_from_a_client_gets_an_error_and_the_socket_serves_on(
        nbfeed_server, jp_ws_fetch, payload):
    ws = await Client.open(jp_ws_fetch)
    await ws.request({"type": "hello", "id": "h", "format": "binary"})
    await ws.conn.write_message(payload, binary=True)
    err = await ws.until(lambda f: f["type"] == "error")
    assert err["code"] == "bad_request"
    assert "binary frames from clients are not accepted" in err["message"]
    assert str(len(payload)) in err["message"] and len(err["message"]) < 200
    assert not any(f["type"] == "pong" for f in ws.frames)  # not run as a message
    assert (await ws.request({"type": "ping", "id": "p2"}))["type"] == "pong"
    await ws.request({"type": "subscribe", "id": "q", "source": "simulated",
                      "symbols": ["AAPL"]})
    await ws.until(lambda f: f.get("binary") is True)
    ws.close()


async def test_the_notebook_client_reads_binary_frames_with_the_same_result(
        nbfeed_server, jp_serverapp, jp_base_url):
    url = f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token

    def collect() -> tuple:
        plain = nbfeed.connect(url, token=token)
        plain.frame_format = "json"  # a client that never asks
        binary = nbfeed.connect(url, token=token)
        got: dict[str, list[dict]] = {"plain": [], "binary": []}
        enough = threading.Event()

        def keep(name: str):
            def on_rows(rows: list[dict]) -> None:
                got[name].extend(rows)
                if len(got["plain"]) >= 900 and len(got["binary"]) >= 600:
                    enough.set()
            return on_rows

        try:
            with plain.subscribe("simulated", SYMBOLS) as s1, \
                    binary.subscribe("simulated", SYMBOLS) as s2:
                s1.on_update(keep("plain"))
                s2.on_update(keep("binary"))
                assert enough.wait(90), {k: len(v) for k, v in got.items()}
            return (got["plain"][:], got["binary"][:], plain.data_format, binary.data_format,
                    plain.binary_frames, binary.binary_frames, binary.bad_frames)
        finally:
            plain.close()
            binary.close()

    plain_rows, binary_rows, plain_fmt, binary_fmt, plain_n, binary_n, bad = \
        await asyncio.to_thread(collect)
    assert (plain_fmt, binary_fmt) == ("json", "binary")
    assert plain_n == 0 and binary_n > 5 and bad == 0
    same_plain, same_binary = common_run(plain_rows, binary_rows, 500)
    assert same_binary == same_plain
    assert [list(r) for r in same_binary] == [list(r) for r in same_plain]  # key order too
    pd.testing.assert_frame_equal(latest_frame(same_binary), latest_frame(same_plain))
    pd.testing.assert_frame_equal(pd.DataFrame.from_records(same_binary),
                                  pd.DataFrame.from_records(same_plain))


async def test_the_notebook_client_skips_an_unreadable_binary_frame_and_reads_on():
    """A peer that sends a corrupt binary frame (a real server never does: this is a local
    stand-in speaking the wire protocol) costs the client that frame, not its socket."""
    from tornado.web import Application
    from tornado.websocket import WebSocketHandler

    from nbfeed.client.remote import RemoteFeed
    from nbfeed.columns import Columns
    from nbfeed.wire_binary import encode_block, encode_frame

    good = [{"time": 1_700_000_000_000 + i, "symbol": "AAPL", "price": 1.0 + i}
            for i in range(3)]

    class Peer(WebSocketHandler):
        def open(self):
            self.write_message(json.dumps({"type": "hello", "version": 1,
                                           "formats": ["json", "binary"]}))

        async def on_message(self, message):
            msg = json.loads(message)
            if msg["type"] == "hello":
                assert msg["format"] == "binary"
            if msg["type"] == "subscribe":
                rid = msg["id"]
                await self.write_message(json.dumps({"type": "data_init", "id": rid,
                                                     "rows": []}))
                frame = encode_frame(rid, [encode_block(Columns.from_rows(good, "AAPL"))])
                await self.write_message(frame[:-7], binary=True)  # truncated
                await self.write_message(b"NBF1" + b"\xff" * 40, binary=True)  # junk
                await self.write_message(frame, binary=True)

    server = Application([(r"/nbfeed/api/stream", Peer)]).listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]

    def use() -> tuple:
        feed = RemoteFeed(f"http://127.0.0.1:{port}/", token="t")
        got: list[dict] = []
        arrived = threading.Event()
        try:
            stream = feed.subscribe("simulated", "AAPL")
            stream.on_update(lambda rows: (got.extend(rows), arrived.set()))
            assert arrived.wait(30)
            return got, feed.bad_frames, feed.binary_frames
        finally:
            feed.close()

    try:
        rows, bad, read = await asyncio.to_thread(use)
    finally:
        server.stop()
    assert rows == good and (bad, read) == (2, 1)
