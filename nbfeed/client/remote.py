"""A Feed that talks to the nbfeed extension of a running Jupyter server.

REST (``nbfeed/api/...``) for providers, symbols and history, one websocket
(``nbfeed/api/stream``, wire protocol v1) for every live stream of this Feed. The websocket runs
on a background thread with its own event loop; if it drops (server restart), it reconnects
with backoff and subscribes every open stream again, so streams resume without user action.
While it is down every stream's status is ``restarting`` (``connection lost``), and ``running``
again once it is back. Candle streams heal: the bars that ended while the socket was down come
from the server's history before live bars go on (:mod:`.heal`).
Live rows arrive as binary data frames (:mod:`nbfeed.wire_binary`: arrays, not JSON text) when
the server's ``hello`` offers them, else as JSON; either way a stream's callbacks get the same
rows. A binary frame that cannot be read is logged and skipped, never fatal to the socket.
Authentication: ``Authorization: token <token>`` on every request (JupyterHub ignores
``?token=`` for API calls).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import urllib.parse
from concurrent.futures import Future
from typing import Any

from ..columns import Columns
from ..columns_io import ARROW_STREAM, read_arrow
from ..errors import BadRequest, NBFeedError, UpstreamError
from ..jsonfast import dumps, loads
from ..providers.registry import ProviderSpec
from ..wire_binary import FrameError, FrameReader
from .feed import Feed
from .heal import Heal
from .http import ServerInfo, get_bytes, request
from .remote_recordings import RemoteRecordings
from .stream import Stream

log = logging.getLogger("nbfeed.client")


class RemoteFeed(RemoteRecordings, Feed):
    """A Feed backed by a Jupyter server's nbfeed extension at ``url`` (its base URL)."""

    mode = "remote"
    #: The ``data_update`` format asked of servers that offer it ("json" to never ask).
    frame_format = "binary"

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.server = ServerInfo(url, token or "")
        self.url = self.server.url
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._streams: dict[str, Stream] = {}
        self._specs: dict[str, dict] = {}
        self._pending: dict[str, Future] = {}
        self._requests: dict[str, asyncio.Future] = {}  # socket requests (history) by id
        self._heals: dict[str, Heal] = {}  # subscription id -> its healing after a reconnect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: Any = None
        self._connected = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        #: The format the server sends data frames in on the current socket.
        self.data_format = "json"
        self._frames = FrameReader()
        self.binary_frames = 0  # binary data frames read
        self.bad_frames = 0  # binary data frames skipped as unreadable

    # ---- REST -----------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None, timeout: float | None = None
             ) -> Any:
        return self._request("GET", _with_query(path, params), None, timeout)

    def _get_columns(self, params: dict[str, Any]) -> Columns:
        """History bars as columns: an Arrow stream from ``nbfeed/api/history`` (JSON rows from
        a server that does not speak Arrow)."""
        try:
            kind, body = get_bytes(self.server, _with_query(
                "nbfeed/api/history", {**params, "format": "arrow"}), self.timeout)
        except BadRequest as exc:
            if "format" not in str(exc):
                raise
            return Columns.from_rows(self._get("nbfeed/api/history", params)["rows"],
                                     params.get("symbol"))
        if ARROW_STREAM not in kind:
            raise UpstreamError(f"nbfeed at {self.url} answered history with {kind!r}, "
                                "not an Arrow stream")
        try:
            return read_arrow(body)
        except ValueError as exc:
            raise UpstreamError(f"nbfeed at {self.url} sent unreadable history: {exc}"
                                ) from None

    def _request(self, method: str, path: str, body: Any, timeout: float | None) -> Any:
        return request(self.server, method, path, body, timeout or self.timeout)

    def ping(self, timeout: float = 3.0) -> list[dict]:
        return self._get("nbfeed/api/providers", timeout=timeout)["providers"]

    def _providers(self) -> list[dict]:
        return self._get("nbfeed/api/providers")["providers"]

    def _search(self, query: str, source: str | None, category: str | None, type: str | None,
                limit: int) -> list[dict]:
        return self._get("nbfeed/api/symbols", {"q": query, "source": source,
                                                "category": category, "type": type,
                                                "limit": limit})["results"]

    def _history(self, source: str, symbol: str, interval: str, start: Any, end: Any,
                 count: int | None) -> Columns:
        return self._get_columns({"source": source, "symbol": symbol, "interval": interval,
                                  "start": _param_time(start), "end": _param_time(end),
                                  "count": count})

    def register_provider(self, name: str, provider: type | str | None = None,
                          **options: Any) -> None:
        import base64

        if provider is None:  # the server resolves the name with its own installed providers
            kind, value = "builtin", None
        else:
            kind, value = ProviderSpec(name=name, factory=provider, options=options).payload()
        if kind == "pickled":
            value = base64.b64encode(value).decode()
        self._request("POST", "nbfeed/api/providers",
                      {"name": name, "kind": kind, "value": value, "options": options}, 120)

    # ---- websocket ------------------------------------------------------------------------

    def _ensure_socket(self) -> None:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, daemon=True,
                                 name="nbfeed-remote-ws").start()
                asyncio.run_coroutine_threadsafe(self._run_socket(), self._loop)
        if not self._connected.wait(self.timeout):
            raise UpstreamError(f"cannot open the nbfeed websocket at {self.url}")

    async def _run_socket(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws_url = "ws" + self.url[4:] + "nbfeed/api/stream"
        delay = 0.25
        lost = False  # the socket dropped: streams said "restarting" and must hear "running"
        while not self._closed:
            try:
                self._ws = await websocket_connect(
                    HTTPRequest(ws_url, headers=self.server.headers(),
                                validate_cert=not self.server.loopback_tls),
                    max_message_size=64 << 20)
            except Exception as exc:
                log.warning("nbfeed: websocket to %s failed (%s); retrying in %.1f s",
                            ws_url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.25
            if not await self._greet():
                await asyncio.sleep(delay)
                continue
            for rid, spec in list(self._specs.items()):  # after a reconnect: resubscribe
                stream = self._streams.get(rid)
                if stream is not None and stream.interval != "tick":
                    self._heal(rid, stream)
                await self._ws.write_message(dumps({"type": "subscribe", "id": rid, **spec}))
                if stream is not None and lost:
                    stream._push_event({"type": "status", "source": stream.source,
                                        "state": "running", "detail": "reconnected"})
            lost = False
            self._connected.set()
            while True:
                message = await self._ws.read_message()
                if message is None:
                    break
                if isinstance(message, bytes):
                    self._on_binary(message)
                else:
                    self._on_frame(loads(message))
            self._connected.clear()
            lost = True
            for fut in self._requests.values():
                if not fut.done():
                    fut.set_exception(UpstreamError("the nbfeed websocket closed"))
            for stream in self._streams.values():
                stream._push_event({"type": "status", "source": stream.source,
                                    "state": "restarting", "detail": "connection lost"})

    async def _greet(self) -> bool:
        """Read the server's ``hello``; ask for binary data frames when it offers them. False
        when the socket closed first."""
        message = await self._ws.read_message()
        if message is None:
            return False
        self.data_format = "json"
        self._frames = FrameReader()  # binary schemas are per connection
        try:
            frame = loads(message)
        except ValueError:
            log.warning("nbfeed: %s did not start with a hello frame", self.url)
            return True
        if not isinstance(frame, dict):
            return True
        offered = frame.get("formats") if frame.get("type") == "hello" else None
        if isinstance(offered, list) and self.frame_format in offered \
                and self.frame_format != "json":
            try:
                await self._ws.write_message(dumps({"type": "hello",
                                                    "format": self.frame_format}))
            except Exception:  # closed meanwhile: connect again
                return False
            self.data_format = self.frame_format
        if frame.get("type") != "hello":
            self._on_frame(frame)
        return True

    def _on_binary(self, message: bytes) -> None:
        """A binary data frame: its batches' rows, as a JSON ``data_update`` would carry them.
        A frame that cannot be read is logged and skipped: the socket reads on."""
        try:
            header, rows = self._frames.rows(message)
        except FrameError as exc:
            self.bad_frames += 1
            log.warning("nbfeed: skipped an unreadable data frame from %s: %s", self.url, exc)
            return
        except Exception:  # a bug must not end the socket's reading
            self.bad_frames += 1
            log.exception("nbfeed: skipped a data frame from %s", self.url)
            return
        self.binary_frames += 1
        if header.get("type") == "data_update":
            self._on_frame({"type": "data_update", "id": header.get("id"), "rows": rows})

    def _heal(self, rid: str, stream: Stream) -> None:
        """Before subscribing ``rid`` again: fill what it misses once the server answers."""
        old = self._heals.pop(rid, None)
        if old is not None:
            old.cancel()

        async def fetch(symbol: str, start: int, end: int, count: int | None) -> list[dict]:
            return await self._socket_history(stream.source, symbol, stream.interval, start,
                                              end, count)

        self._heals[rid] = Heal(stream, fetch)

    async def _socket_history(self, source: str, symbol: str, interval: str, start: int,
                              end: int, count: int | None = None) -> list[dict]:
        """Bars of ``[start, end)`` (the newest ``count``) over the websocket (socket loop)."""
        rid = f"h{next(self._ids)}"
        assert self._loop is not None
        fut = self._requests[rid] = self._loop.create_future()
        try:
            await self._ws.write_message(dumps({
                "type": "history", "id": rid, "source": source, "symbol": symbol,
                "interval": interval, "start": start, "end": end, "count": count}))
            return await asyncio.wait_for(fut, self.timeout)
        finally:
            self._requests.pop(rid, None)

    def _on_frame(self, frame: dict) -> None:
        if self._on_session_frame(frame):
            return
        kind = frame.get("type")
        rid = frame.get("id")
        if kind in ("data_init", "data_update"):
            stream = self._streams.get(rid)
            heal = self._heals.get(rid)
            if stream is not None and frame.get("rows"):
                if heal is not None:
                    heal.rows(frame["rows"])
                    if heal.done:
                        self._heals.pop(rid, None)
                else:
                    stream._push(frame["rows"])
            fut = self._pending.pop(rid, None) if kind == "data_init" else None
            if fut is not None and not fut.done():
                fut.set_result(True)
        elif kind == "history":
            request = self._requests.get(rid)
            if request is not None and not request.done():
                request.set_result(frame.get("rows") or [])
        elif kind == "error" and rid in self._requests:
            request = self._requests[rid]
            if not request.done():
                request.set_exception(NBFeedError.from_wire(frame.get("code"),
                                                            frame.get("message", "")))
        elif kind == "error":
            fut = self._pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(NBFeedError.from_wire(frame.get("code"),
                                                        frame.get("message", "")))
            elif rid in self._streams:
                self._streams[rid]._push_event(frame)
        elif kind == "status":
            symbol = frame.get("symbol")
            for stream in self._streams.values():
                if stream.source != frame.get("source"):
                    continue
                if symbol is not None and (symbol not in stream.symbols
                                           or frame.get("interval") != stream.interval):
                    continue  # one stream's health: only its subscribers
                stream._push_event(frame)

    def _subscribe(self, source: str, symbols: list[str], interval: str) -> Stream:
        self._ensure_socket()
        rid = f"s{next(self._ids)}"
        stream = Stream(source, symbols, interval, self._release, history=self.history)
        return self._open(rid, {"source": source, "symbols": symbols, "interval": interval},
                          stream)

    def _open(self, rid: str, spec: dict, stream: Stream) -> Stream:
        """Subscribe ``stream`` as ``rid`` on the socket and wait for the server's answer;
        on an error or timeout the stream is forgotten, marked closed, and the error raised.
        ``spec`` is kept to subscribe again after a reconnect."""
        fut: Future = Future()
        self._pending[rid] = fut
        self._streams[rid] = stream
        self._specs[rid] = spec
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(
            self._send_frame({"type": "subscribe", "id": rid, **spec}), self._loop)
        try:
            fut.result(self.timeout)
        except BaseException:
            self._streams.pop(rid, None)
            self._specs.pop(rid, None)
            stream.closed = True
            raise
        return stream

    async def _send_frame(self, msg: dict) -> None:
        """Runs on the socket's loop (tornado sockets are not thread-safe)."""
        try:
            await self._ws.write_message(dumps(msg))
        except Exception as exc:  # closed: the reconnect loop resubscribes from _specs
            log.debug("nbfeed: could not send %s: %s", msg.get("type"), exc)

    def _release(self, stream: Stream) -> None:
        rid = next((k for k, v in self._streams.items() if v is stream), None)
        if rid is None:
            return
        self._streams.pop(rid, None)
        self._specs.pop(rid, None)
        heal = self._heals.pop(rid, None)
        if heal is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(heal.cancel)
        if self._loop is not None and self._ws is not None and not self._closed:
            asyncio.run_coroutine_threadsafe(
                self._send_frame({"type": "unsubscribe", "id": rid}), self._loop)

    def close(self) -> None:
        if self._closed:
            return
        for stream in list(self._streams.values()):
            stream.close()
        self._closed = True
        if self._loop is not None:
            if self._ws is not None:
                self._loop.call_soon_threadsafe(self._ws.close)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def __repr__(self) -> str:
        return f"<nbfeed remote feed at {self.url}>"


def _with_query(path: str, params: dict[str, Any] | None) -> str:
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    return f"{path}?{query}" if query else path


def _param_time(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    from ..timeutil import to_ms

    return to_ms(value)
