"""A fake Binance spot API on 127.0.0.1: REST market data and websocket market streams.

It speaks the public wire formats field by field (payload shapes from ``data/binance_*.json``):

REST (``fb.rest_url``, like ``https://api.binance.com``)
    ``GET /api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo`` (``symbol``, ``symbols``,
    ``permissions``; weight 20) and ``/api/v3/klines`` (``symbol``, ``interval``, ``startTime``,
    ``endTime``, ``limit`` default 500 max 1000; weight 2; rows are the 12-element arrays).
    Every answer carries ``X-MBX-USED-WEIGHT-<n><unit>`` for the configured weight window; going
    over ``weight_limit`` answers 429 with ``Retry-After`` until the window ends, like Binance.
    Errors use Binance's ``{"code": -1121, "msg": "Invalid symbol."}`` bodies.
Websocket (``fb.ws_url``, like ``wss://stream.binance.com:9443``)
    ``/ws/<stream>`` (raw) and ``/stream?streams=a/b`` (combined, ``{"stream", "data"}``
    wrapper); live ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` /
    ``GET_PROPERTY`` with ``{"result": ..., "id": ...}`` replies; streams ``<sym>@kline_<i>``,
    ``<sym>@ticker`` (24hrTicker) and ``<sym>@bookTicker``, pushed every ``push_interval``. More
    than ``max_messages_per_second`` client frames in a second closes the connection (1008), as
    Binance does; more than ``max_streams_per_connection`` streams is refused.

Payload shapes are Binance's documented ones, field by field (the samples in ``data/``); where
they could not be checked against a recording this says so. The symbol list includes
``这是测试币456`` (base ``这是测试币``, quote ``456``), the UTF-8 symbol Binance added to its spot
testnet on 2025-12-18 to exercise UTF-8 handling (changelog of 2025-12-15/18: "the response may
contain non-ASCII characters encoded in UTF-8"); its REST and stream payloads are the ASCII ones
with that name, which is a guess: no recording of them was found. Stream names lower-case the
symbol, so that symbol's streams are ``这是测试币456@kline_1m`` etc.; in ``/stream?streams=``
the names arrive percent-encoded and are decoded by the server. ``3d`` klines open at epoch
multiples of three days.

Prices come from a deterministic model, so the same span always returns the same klines; symbols
do not exist before their listing time. ``announce_shutdown()`` sends the ``serverShutdown``
event; the failure modes of :class:`~tests.fakes._server.FakeServer` apply.
"""

from __future__ import annotations

import calendar
import copy
import json
import time
from collections import Counter, deque
from datetime import datetime, timezone

from ._server import (
    FakeHandler,
    FakeServer,
    FakeSocketHandler,
    PriceModel,
    load_sample,
    unit,
)

_S, _M, _H, _D = 1000, 60_000, 3_600_000, 86_400_000
FIXED_MS = {"1s": _S, "1m": _M, "3m": 3 * _M, "5m": 5 * _M, "15m": 15 * _M, "30m": 30 * _M,
            "1h": _H, "2h": 2 * _H, "4h": 4 * _H, "6h": 6 * _H, "8h": 8 * _H, "12h": 12 * _H,
            "1d": _D, "3d": 3 * _D, "1w": 7 * _D}
KLINE_INTERVALS = (*FIXED_MS, "1M")
_WINDOW_UNITS = {"S": ("SECOND", 1), "M": ("MINUTE", 60), "H": ("HOUR", 3600), "D": ("DAY", 86400)}
BASE_PRICES = {"BTCUSDT": 42000.0, "ETHUSDT": 2300.0, "SOLUSDT": 100.0, "ETHBTC": 0.055,
               "BNBBTC": 0.0074, "LUNAUSDT": 0.6, "BTCUPUSDT": 12.0}
LISTED = {"BTCUSDT": 1502942400000, "ETHUSDT": 1502942400000, "SOLUSDT": 1597125600000,
          "ETHBTC": 1500004800000, "BNBBTC": 1500004800000}
WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20, "/api/v3/klines": 2}


def kline_open(t: int, interval: str) -> int:
    """Start of the kline of ``interval`` containing ``t`` (weeks start Monday, months the 1st)."""
    if interval == "1M":
        d = datetime.fromtimestamp(t / 1000, tz=timezone.utc)
        return calendar.timegm((d.year, d.month, 1, 0, 0, 0)) * 1000
    step = FIXED_MS[interval]
    if interval == "1w":
        return t - ((t - 4 * _D) % step)  # 1970-01-01 was a Thursday; Mondays are 4 days later
    return t - (t % step)


def kline_next(t: int, interval: str) -> int:
    start = kline_open(t, interval)
    if interval == "1M":
        d = datetime.fromtimestamp(start / 1000, tz=timezone.utc)
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return calendar.timegm((y, m, 1, 0, 0, 0)) * 1000
    return start + FIXED_MS[interval]


def kline_prev(t: int, interval: str) -> int:
    return kline_open(kline_open(t, interval) - 1, interval)


def _fmt(x: float) -> str:
    return f"{x:.8f}"


class FakeBinance(FakeServer):
    """The fake; see the module docstring. ``weight_window`` is ``(intervalNum, unit letter)``."""

    name = "fake-binance"

    def __init__(self, *, push_interval: float = 0.1, weight_limit: int = 6000,
                 weight_window: tuple[int, str] = (1, "M"),
                 max_streams_per_connection: int = 1024,
                 max_messages_per_second: int = 5) -> None:
        super().__init__(push_interval=push_interval)
        if weight_window[1] not in _WINDOW_UNITS:
            raise ValueError(f"weight window unit must be one of {list(_WINDOW_UNITS)}")
        self.weight_limit = weight_limit
        self.weight_window = weight_window
        self.max_streams_per_connection = max_streams_per_connection
        self.max_messages_per_second = max_messages_per_second
        self.exchange_info = load_sample("binance_exchange_info.json")
        self.errors = load_sample("binance_errors.json")
        self.samples = load_sample("binance_ws_events.json")
        self.symbols = {s["symbol"]: s for s in self.exchange_info["symbols"]}
        self.model = PriceModel(dict(BASE_PRICES))
        self.weight_used: dict[int, int] = {}
        self.weight_rejections = 0
        self.events_sent: Counter[str] = Counter()
        self.last_event: dict[str, dict] = {}
        self._book_seq = 41734511942

    # ---- URLs ---------------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        return self.http_url

    @property
    def ws_url(self) -> str:
        return self.ws_base

    def routes(self) -> list:
        return [
            (r"/api/v3/ping", _Ping),
            (r"/api/v3/time", _Time),
            (r"/api/v3/exchangeInfo", _ExchangeInfo),
            (r"/api/v3/klines", _Klines),
            (r"/stream/?", _StreamSocket),
            (r"/ws/?(.*)", _StreamSocket),
        ]

    # ---- weights ------------------------------------------------------------------------------

    @property
    def weight_header(self) -> str:
        n, letter = self.weight_window
        return f"X-MBX-USED-WEIGHT-{n}{letter}"

    def _window(self, now: float) -> tuple[int, float]:
        n, letter = self.weight_window
        length = n * _WINDOW_UNITS[letter][1]
        window = int(now // length)
        return window, (window + 1) * length - now

    def charge(self, weight: int) -> tuple[int, float | None]:
        """Add ``weight`` to the current window; returns (used, retry_after or None if allowed)."""
        with self._cond:
            window, left = self._window(time.time())
            used = self.weight_used.get(window, 0)
            if used + weight > self.weight_limit:
                self.weight_rejections += 1
                return used, left
            self.weight_used[window] = used + weight
            return used + weight, None

    def rate_limit_body(self) -> dict:
        n, letter = self.weight_window
        return {"code": -1003, "msg": f"Too much request weight used; current limit is "
                f"{self.weight_limit} request weight per {n} {_WINDOW_UNITS[letter][0]}. Please "
                "use WebSocket Streams for live updates to avoid polling the API."}

    def rate_limits(self) -> list[dict]:
        n, letter = self.weight_window
        out = copy.deepcopy(self.exchange_info["rateLimits"])
        for item in out:
            if item["rateLimitType"] == "REQUEST_WEIGHT":
                item.update(interval=_WINDOW_UNITS[letter][0], intervalNum=n,
                            limit=self.weight_limit)
        return out

    # ---- market data --------------------------------------------------------------------------

    def klines(self, symbol: str, interval: str, start: int | None, end: int | None,
               limit: int, now: int | None = None) -> list[list]:
        """The rows ``/api/v3/klines`` returns (open times in ``[start, end]``, at most now)."""
        now = int(time.time() * 1000) if now is None else now
        first_ok = kline_open(LISTED.get(symbol, 1500000000000), interval)
        last_ok = kline_open(min(now, end) if end is not None else now, interval)
        opens: list[int] = []
        if start is not None:
            t = max(kline_open(start, interval), first_ok)
            if t < start:
                t = kline_next(t, interval)
            while t <= last_ok and len(opens) < limit:
                opens.append(t)
                t = kline_next(t, interval)
        else:
            t = last_ok
            while t >= first_ok and len(opens) < limit:
                opens.append(t)
                t = kline_prev(t, interval)
            opens.reverse()
        return [self.kline_row(symbol, interval, t, now) for t in opens]

    def kline_row(self, symbol: str, interval: str, t: int, now: int) -> list:
        end = kline_next(t, interval)
        o, h, low, c, v = self.model.bar(symbol, t, end, upto=now if now < end else None)
        trades = int(v * 37) + 1
        return [t, _fmt(o), _fmt(h), _fmt(low), _fmt(c), _fmt(v), end - 1, _fmt(v * (o + c) / 2),
                trades, _fmt(v * 0.55), _fmt(v * 0.55 * (o + c) / 2), "0"]

    def kline_event(self, symbol: str, interval: str, t: int, now: int) -> dict:
        row = self.kline_row(symbol, interval, t, now)
        event = copy.deepcopy(self.samples["kline"])
        k = event["k"]
        event.update(E=now, s=symbol)
        k.update(t=row[0], T=row[6], s=symbol, i=interval, o=row[1], h=row[2], l=row[3],
                 c=row[4], v=row[5], n=row[8], x=now > row[6], q=row[7], V=row[9], Q=row[10])
        k["f"] = int(unit("f", symbol, t) * 1e9)
        k["L"] = k["f"] + row[8] - 1
        return event

    def ticker_event(self, symbol: str, now: int) -> dict:
        event = copy.deepcopy(self.samples["24hrTicker"])
        price = self.model.price(symbol, now)
        open_ = self.model.price(symbol, now - _D)
        volume = self.model.base_volume * 1440 * (0.9 + 0.2 * unit("d", symbol, now // _M))
        spread = price * 0.00001
        event.update(
            E=now, s=symbol, p=_fmt(price - open_), P=f"{(price - open_) / open_ * 100:.3f}",
            w=_fmt((price + open_) / 2), x=_fmt(open_), c=_fmt(price), Q="0.01000000",
            b=_fmt(price - spread), B="1.50000000", a=_fmt(price + spread), A="2.00000000",
            o=_fmt(open_), h=_fmt(max(price, open_) * 1.01), l=_fmt(min(price, open_) * 0.99),
            v=_fmt(volume), q=_fmt(volume * (price + open_) / 2), O=now - _D, C=now)
        event["n"] = int(volume * 37)
        event["L"] = event["F"] + event["n"] - 1
        return event

    def book_event(self, symbol: str, now: int) -> dict:
        self._book_seq += 1
        price = self.model.price(symbol, now)
        spread = price * (0.00001 + 0.00001 * unit("spread", symbol, self._book_seq))
        event = copy.deepcopy(self.samples["bookTicker"])
        event.update(u=self._book_seq, s=symbol, b=_fmt(price - spread), a=_fmt(price + spread),
                     B=_fmt(0.1 + 3 * unit("B", self._book_seq)),
                     A=_fmt(0.1 + 3 * unit("A", self._book_seq)))
        return event

    # ---- live ---------------------------------------------------------------------------------

    def tick(self) -> None:
        now = int(time.time() * 1000)
        for handler in list(self._live.values()):
            if isinstance(handler, _StreamSocket):
                handler.push(now)

    def announce_shutdown(self) -> int:
        """Send the ``serverShutdown`` event to every open stream connection."""
        event = copy.deepcopy(self.samples["serverShutdown"])
        event["event"]["E"] = int(time.time() * 1000)
        return self.send_raw(json.dumps(event))

    def subscriptions(self) -> list[set[str]]:
        """The stream set of every open connection."""
        return self.call(lambda: [set(h.streams) for h in self._live.values()
                                  if isinstance(h, _StreamSocket)])


# ---- REST handlers -----------------------------------------------------------------------------


class _BinanceHandler(FakeHandler):
    @property
    def fake(self) -> FakeBinance:
        return self.settings["fake"]

    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        used, retry_after = self.fake.charge(WEIGHTS.get(self.request.path, 1))
        self.set_header(self.fake.weight_header, str(used))
        if retry_after is not None:
            self.set_header("Retry-After", str(max(1, int(retry_after + 0.999))))
            self.write_json(self.fake.rate_limit_body(), 429)

    def bad(self, key: str) -> None:
        self.write_json(self.fake.errors[key], 400)

    def int_arg(self, name: str) -> int | bool | None:
        """The integer argument, None if absent, False if malformed (answer already sent)."""
        value = self.get_query_argument(name, None)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            self.write_json({"code": -1100, "msg": f"Illegal characters found in parameter "
                                                   f"'{name}'; legal range is '^[0-9]{{1,20}}$'."},
                            400)
            return False


class _Ping(_BinanceHandler):
    def get(self) -> None:
        self.write_json({})


class _Time(_BinanceHandler):
    def get(self) -> None:
        self.write_json({"serverTime": int(time.time() * 1000)})


class _ExchangeInfo(_BinanceHandler):
    def get(self) -> None:
        fake = self.fake
        info = copy.deepcopy(fake.exchange_info)
        info["serverTime"] = int(time.time() * 1000)
        info["rateLimits"] = fake.rate_limits()
        wanted = self.get_query_argument("symbol", None)
        wanted_many = self.get_query_argument("symbols", None)
        names = None
        if wanted is not None:
            names = [wanted]
        elif wanted_many is not None:
            try:
                names = json.loads(wanted_many)
            except ValueError:
                self.bad("missing_param")
                return
        if names is not None:
            if any(n not in fake.symbols for n in names):
                self.bad("invalid_symbol")
                return
            info["symbols"] = [s for s in info["symbols"] if s["symbol"] in names]
        perms = self.get_query_argument("permissions", None)
        if perms is not None:
            wanted_perms = set(json.loads(perms)) if perms.startswith("[") else {perms}
            info["symbols"] = [s for s in info["symbols"]
                               if any(wanted_perms & set(ps) for ps in s["permissionSets"])]
        self.write_json(info)


class _Klines(_BinanceHandler):
    def get(self) -> None:
        fake = self.fake
        symbol = self.get_query_argument("symbol", None)
        if not symbol:
            self.bad("missing_param")
            return
        if symbol not in fake.symbols:
            self.bad("invalid_symbol")
            return
        interval = self.get_query_argument("interval", None)
        if interval not in KLINE_INTERVALS:
            self.bad("invalid_interval")
            return
        start, end = self.int_arg("startTime"), self.int_arg("endTime")
        limit = self.int_arg("limit")
        if start is False or end is False or limit is False:
            return
        if limit is None:
            limit = 500
        if not 1 <= limit <= 1000:
            self.bad("bad_limit")
            return
        if start is not None and end is not None and start > end:
            self.write_json({"code": -1023, "msg": "Start time is greater than end time."}, 400)
            return
        self.write_json(fake.klines(symbol, interval, start, end, limit))


# ---- websocket ---------------------------------------------------------------------------------


class _StreamSocket(FakeSocketHandler):
    streams: list[str]

    @property
    def fake(self) -> FakeBinance:
        return self.settings["fake"]

    def opened(self, *args: str) -> None:
        if self.request.path.startswith("/stream"):
            self.combined = True
            names = self.get_query_argument("streams", "")
        else:
            self.combined = False
            names = args[0] if args else ""
        self.streams = [n for n in names.split("/") if n]
        self.record.data["streams"] = self.streams
        self.record.data["combined"] = self.combined
        self._frames: deque[float] = deque()
        self._bars: dict[str, int] = {}
        if len(self.streams) > self.fake.max_streams_per_connection:
            self.close(1008, "too many streams")

    def received(self, text: str) -> None:
        now = time.monotonic()
        self._frames.append(now)
        while self._frames and now - self._frames[0] > 1.0:
            self._frames.popleft()
        if len(self._frames) > self.fake.max_messages_per_second:
            self.record.close_reason = "too many messages"
            self.close(1008, "Too many requests")
            return
        try:
            msg = json.loads(text)
        except ValueError:
            self.send_json({"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 "
                                                        "column 1"}, "id": None})
            return
        if not isinstance(msg, dict):
            self.send_json({"error": {"code": 2, "msg": "Invalid request: expected an object"},
                            "id": None})
            return
        req_id = msg.get("id")
        if not (req_id is None or (isinstance(req_id, int) and not isinstance(req_id, bool))
                or (isinstance(req_id, str) and len(req_id) <= 36)):
            self.send_json({"error": {"code": 2, "msg": "Invalid request: request ID must be an "
                                                        "unsigned integer"}, "id": None})
            return
        method = msg.get("method")
        params = msg.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self.send_json({"error": {"code": 2, "msg": "Invalid request: params must be a "
                                                            "list of stream names"}, "id": req_id})
                return
            if method == "SUBSCRIBE":
                new = [p for p in params if p not in self.streams]
                if len(self.streams) + len(new) > self.fake.max_streams_per_connection:
                    self.send_json({"error": {"code": 2, "msg": "Invalid request: too many "
                                                                "streams"}, "id": req_id})
                    return
                self.streams.extend(new)
            else:
                self.streams[:] = [s for s in self.streams if s not in params]
            self.send_json({"result": None, "id": req_id})
        elif method == "LIST_SUBSCRIPTIONS":
            self.send_json({"result": list(self.streams), "id": req_id})
        elif method == "SET_PROPERTY" and isinstance(params, list) and len(params) == 2 \
                and params[0] == "combined":
            self.combined = bool(params[1])
            self.send_json({"result": None, "id": req_id})
        elif method == "GET_PROPERTY" and params == ["combined"]:
            self.send_json({"result": self.combined, "id": req_id})
        else:
            self.send_json({"error": {"code": 2, "msg": f"Invalid request: unknown variant "
                                                        f"{method}, expected one of `SUBSCRIBE`, "
                                                        "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, "
                                                        "`SET_PROPERTY`, `GET_PROPERTY`"},
                            "id": req_id})

    def push(self, now: int) -> None:
        fake = self.fake
        for stream in list(self.streams):
            sym, _, kind = stream.partition("@")
            symbol = sym.upper()
            if sym != sym.lower() or symbol not in fake.symbols:
                continue  # Binance streams are lower-case; others simply carry nothing
            events = []
            if kind.startswith("kline_") and kind[6:] in KLINE_INTERVALS:
                interval = kind[6:]
                start = kline_open(now, interval)
                previous = self._bars.get(stream)
                if previous is not None and previous < start:
                    # the bar that just ended, once more as final (x = true)
                    events.append(fake.kline_event(symbol, interval, previous,
                                                   kline_next(previous, interval)))
                self._bars[stream] = start
                events.append(fake.kline_event(symbol, interval, start, now))
            elif kind == "ticker":
                events.append(fake.ticker_event(symbol, now))
            elif kind == "bookTicker":
                events.append(fake.book_event(symbol, now))
            for event in events:
                fake.events_sent[stream] += 1
                fake.last_event[stream] = event
                self.send_json({"stream": stream, "data": event} if self.combined else event)
