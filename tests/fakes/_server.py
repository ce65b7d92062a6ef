"""The machinery every fake exchange shares: a tornado server on 127.0.0.1 in its own thread.

A fake is a context manager (``with FakeBinance() as fb: ...``) or ``start()``/``stop()``; it runs
its own asyncio loop in a daemon thread, so it works from pytest, from a plain script and from a
notebook (whose kernel already runs a loop on the main thread). Everything a test wants to check
is recorded with timestamps: ``requests`` (REST calls) and ``sockets`` (websocket connections with
the frames the client sent). ``wait_for(predicate)`` blocks until a recorded fact becomes true.

Failure modes common to all fakes:

* ``set_rate_limit(retry_after, count, status)`` - the next ``count`` REST requests get 429 (or
  418) with a ``Retry-After`` header;
* ``fail_next(kind, count)`` - ``"malformed"`` (200 with a truncated JSON body) or ``"500"``;
* ``drop_sockets(mid_frame=True)`` - cut every websocket's TCP connection, optionally halfway
  through a frame, without a close frame;
* ``close_sockets(code, reason)`` - a clean server-initiated close (a scheduled disconnect);
* ``reject_sockets(count)`` - the next ``count`` websocket handshakes are refused with 503;
* ``cut_sockets(seconds, mid_frame=True)`` - an outage of the upstream socket: every websocket is
  dropped and every handshake refused (503) for ``seconds``; returns the monotonic time it ends;
* ``send_raw(text)`` - push an arbitrary frame (malformed JSON, say) to every open websocket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

DATA_DIR = Path(__file__).parent / "data"


def load_sample(name: str) -> Any:
    """A recorded-shape payload from ``tests/fakes/data``."""
    with open(DATA_DIR / name, encoding="utf-8") as f:
        return json.load(f)


@dataclass
class RecordedRequest:
    """One REST request as the fake saw it."""

    time: float  # wall clock (time.time()), comparable across processes
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@dataclass(eq=False)  # identity semantics: used as a dict key while open
class RecordedSocket:
    """One websocket connection: where it went, what the client sent, how it ended."""

    path: str
    query: dict[str, str]
    opened: float
    received: list[str] = field(default_factory=list)
    closed: float | None = None
    close_reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # fake-specific state

    @property
    def is_open(self) -> bool:
        return self.closed is None


class FakeServer:
    """Base class: subclasses give ``routes()`` and may override ``tick()`` (called every
    ``push_interval`` seconds on the server thread to push live events)."""

    name = "fake"

    def __init__(self, *, push_interval: float = 0.1) -> None:
        self.push_interval = push_interval
        self.requests: list[RecordedRequest] = []
        self.sockets: list[RecordedSocket] = []
        self.port = 0
        self._cond = threading.Condition()
        self._faults: deque[tuple] = deque()
        self._socket_rejects = 0
        self._sockets_blocked_until = 0.0  # time.monotonic() before which handshakes fail
        self._live: dict[RecordedSocket, tornado.websocket.WebSocketHandler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def routes(self) -> list:
        raise NotImplementedError

    def tick(self) -> None:
        """Push live events (server thread)."""

    def start(self) -> FakeServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=f"{self.name}-server")
        self._thread.start()
        if not ready.wait(15) or self._error is not None:
            raise RuntimeError(f"{self.name} did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        app = tornado.web.Application(self.routes(), fake=self)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        pusher = asyncio.ensure_future(self._push_loop())
        ready.set()
        await self._stopped.wait()
        pusher.cancel()
        server.stop()
        for handler in list(self._live.values()):
            handler.close(1001, "server stopping")
        await asyncio.sleep(0.05)
        await server.close_all_connections()

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval)
            try:
                self.tick()
            except Exception as exc:  # a bug in a fake must be loud, not a silent stall
                print(f"{self.name}: tick failed: {exc!r}")
                raise

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the server thread and return its result."""
        assert self._loop is not None, "fake not started"

        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    # ---- URLs ---------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # ---- recording ----------------------------------------------------------------------------

    def record_request(self, req: RecordedRequest) -> None:
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0,
                 what: str = "condition") -> Any:
        """Block until ``predicate()`` is truthy (re-checked on every recorded event and every
        0.1 s); return its value or raise TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            # The predicate runs without the lock: it may call into the server thread.
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: timed out after {timeout} s waiting for {what}")
            with self._cond:
                self._cond.wait(min(left, 0.1))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.path == path or r.path.startswith(path)]

    def open_sockets(self) -> list[RecordedSocket]:
        with self._cond:
            return [s for s in self.sockets if s.is_open]

    # ---- failure injection --------------------------------------------------------------------

    def set_rate_limit(self, retry_after: float | None = 1.0, count: int = 1,
                       status: int = 429) -> None:
        """The next ``count`` REST requests answer ``status`` with ``Retry-After``."""
        with self._cond:
            for _ in range(count):
                self._faults.append(("rate", status, retry_after))

    def fail_next(self, kind: str = "malformed", count: int = 1) -> None:
        """The next ``count`` REST requests fail: ``"malformed"`` JSON or ``"500"``."""
        if kind not in ("malformed", "500"):
            raise ValueError(f"kind must be 'malformed' or '500', got {kind!r}")
        with self._cond:
            for _ in range(count):
                self._faults.append((kind,))

    def take_fault(self) -> tuple | None:
        with self._cond:
            return self._faults.popleft() if self._faults else None

    def rate_limit_body(self) -> dict:
        """The JSON body of a 429/418 answer (fake-specific)."""
        return {"error": "rate limited"}

    def reject_sockets(self, count: int = 1) -> None:
        with self._cond:
            self._socket_rejects += count

    def take_socket_reject(self) -> bool:
        with self._cond:
            if time.monotonic() < self._sockets_blocked_until:
                return True
            if self._socket_rejects > 0:
                self._socket_rejects -= 1
                return True
            return False

    def cut_sockets(self, seconds: float, mid_frame: bool = True) -> float:
        """An outage: drop every websocket now and refuse handshakes for ``seconds``.

        Returns the ``time.monotonic()`` at which handshakes are accepted again (the moment the
        upstream is "back")."""
        with self._cond:
            self._sockets_blocked_until = time.monotonic() + seconds
            until = self._sockets_blocked_until
        self.drop_sockets(mid_frame=mid_frame)
        return until

    def drop_sockets(self, mid_frame: bool = True) -> int:
        """Cut every open websocket's TCP connection without a close frame; returns how many.

        With ``mid_frame`` the fake first writes the start of a frame that never completes, as
        when a connection dies while a message is on the wire."""

        def drop() -> int:
            n = 0
            for rec, handler in list(self._live.items()):
                conn = handler.ws_connection
                stream = getattr(conn, "stream", None)
                if stream is None or stream.closed():
                    continue
                if mid_frame:
                    payload = b'{"stream":"cut-here'
                    # FIN + text opcode, 126 => 16-bit length that promises 200 bytes.
                    stream.write(b"\x81\x7e" + struct.pack("!H", 200) + payload)
                stream.close()
                rec.close_reason = "dropped"
                n += 1
            return n

        return self.call(drop)

    def close_sockets(self, code: int = 1001, reason: str = "scheduled disconnect") -> int:
        """Close every open websocket cleanly from the server side; returns how many."""

        def close() -> int:
            handlers = list(self._live.items())
            for rec, handler in handlers:
                rec.close_reason = f"closed {code}"
                handler.close(code, reason)
            return len(handlers)

        return self.call(close)

    def send_raw(self, text: str) -> int:
        """Send ``text`` as one frame to every open websocket; returns how many got it."""

        def send() -> int:
            for handler in list(self._live.values()):
                handler.write_message(text)
            return len(self._live)

        return self.call(send)


class FakeHandler(tornado.web.RequestHandler):
    """REST handler base: records the request and applies injected faults before ``get``."""

    @property
    def fake(self) -> FakeServer:
        return self.settings["fake"]

    def prepare(self) -> None:
        self._record = RecordedRequest(
            time=time.time(), method=self.request.method or "GET", path=self.request.path,
            query={k: self.get_query_argument(k) for k in self.request.query_arguments},
            headers=dict(self.request.headers))
        # Recorded on arrival, so a test that got the answer always finds the request.
        self.fake.record_request(self._record)
        fault = self.fake.take_fault()
        if fault is None:
            return
        if fault[0] == "rate":
            _, status, retry_after = fault
            self.set_status(status)
            if retry_after is not None:
                self.set_header("Retry-After", f"{retry_after:g}")
            self.write_json(self.fake.rate_limit_body(), status)
        elif fault[0] == "malformed":
            self.set_header("Content-Type", "application/json")
            self.finish('{"symbols": [{"symbol": "BTCUSD')
        else:
            self.set_status(500)
            self.finish("<html>Internal Server Error</html>")

    def finish(self, chunk: Any = None) -> Any:
        record = getattr(self, "_record", None)
        if record is not None:
            record.status = self.get_status()  # before the answer leaves
        return super().finish(chunk)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json;charset=UTF-8")
        self.finish(json.dumps(data, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.write_json({"error": self._reason}, status_code)


class FakeSocketHandler(tornado.websocket.WebSocketHandler):
    """Websocket handler base: records the connection and every frame the client sends."""

    record: RecordedSocket

    @property
    def fake(self) -> FakeServer:
        return self.settings["fake"]

    def check_origin(self, origin: str) -> bool:
        return True

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.fake.take_socket_reject():
            self.set_status(503)
            self.finish("service unavailable")
            return
        await super().get(*args, **kwargs)

    def open(self, *args: str) -> None:
        self.record = RecordedSocket(
            path=self.request.path,
            query={k: self.get_query_argument(k) for k in self.request.query_arguments},
            opened=time.time())
        self.fake._live[self.record] = self
        with self.fake._cond:
            self.fake.sockets.append(self.record)
            self.fake._cond.notify_all()
        self.opened(*args)

    def opened(self, *args: str) -> None:
        """Subclass hook after the connection was recorded."""

    def on_message(self, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        self.record.received.append(text)
        self.fake.notify()
        self.received(text)

    def received(self, text: str) -> None:
        """Subclass hook for a client frame."""

    def on_close(self) -> None:
        self.fake._live.pop(self.record, None)
        self.record.closed = time.time()
        if not self.record.close_reason:
            self.record.close_reason = f"client closed {self.close_code}"
        self.fake.notify()

    def send_json(self, data: Any) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        self.write_message(json.dumps(data, separators=(",", ":")))


# ---- a deterministic market ------------------------------------------------------------------


def unit(*key: Any) -> float:
    """A deterministic pseudo-random number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


class PriceModel:
    """Deterministic prices: any span of any symbol can be served, again and again, identically.

    ``price(symbol, t_ms)`` is a sum of slow waves around the symbol's base price; ``bar()`` turns
    a span into OHLCV so that each bar opens where the previous one closed.
    """

    def __init__(self, base_prices: dict[str, float], base_volume: float = 50.0) -> None:
        self.base_prices = base_prices
        self.base_volume = base_volume

    def base(self, symbol: str) -> float:
        if symbol not in self.base_prices:
            self.base_prices[symbol] = 10 + 990 * unit("base", symbol)
        return self.base_prices[symbol]

    def price(self, symbol: str, t_ms: int) -> float:
        phase = 2 * math.pi * unit("phase", symbol)
        t = t_ms / 1000.0
        wave = (0.08 * math.sin(2 * math.pi * t / (7 * 86400) + phase)
                + 0.02 * math.sin(2 * math.pi * t / (5 * 3600) + 2 * phase)
                + 0.004 * math.sin(2 * math.pi * t / 780 + 3 * phase))
        return self.base(symbol) * (1 + wave)

    def bar(self, symbol: str, start: int, end: int, upto: int | None = None
            ) -> tuple[float, float, float, float, float]:
        """OHLCV of ``[start, end)``; with ``upto`` the bar is still open at that moment."""
        last = end if upto is None else min(max(upto, start), end)
        o = self.price(symbol, start)
        c = self.price(symbol, last)
        span = max(1.0, (last - start) / 60000.0)
        wiggle = 0.0006 * math.sqrt(span)
        h = max(o, c) * (1 + wiggle * unit("h", symbol, start))
        low = min(o, c) * (1 - wiggle * unit("l", symbol, start))
        full = (end - start) / 60000.0
        v = self.base_volume * full * (0.5 + unit("v", symbol, start))
        if upto is not None:
            v *= (last - start) / max(1, end - start)
        return o, h, low, c, v
