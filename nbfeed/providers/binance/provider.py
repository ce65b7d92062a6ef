"""Binance spot market data: symbols, klines history and live streams. No API key needed.

The provider class lives here; the two wire clients it drives are its siblings:

* :mod:`.rest` - ``exchangeInfo`` symbols and ``klines`` history, paged and stitched by
  open time, kept under the ``X-MBX-USED-WEIGHT`` request-weight limits.
* :mod:`.stream` - klines, 24hr tickers and book tickers multiplexed over combined-stream
  connections with paced ``SUBSCRIBE``/``UNSUBSCRIBE``, reconnecting and resubscribing on drops.

Quote rows (``tick``) merge the ``@ticker`` (price, change, volume) and ``@bookTicker`` (bid,
ask) streams per symbol; ``prev_close`` is the 24 h window's open, so ``change`` and
``change_percent`` match Binance's own. A stream silent for ``idle_timeout`` has its connection
renewed (Binance pushes every stream at least every 2 s).

Symbols: every symbol the exchange lists is accepted, UTF-8 ones included (Binance lists such
symbols since 2025-12, e.g. ``这是测试币456`` on the spot testnet): letters and digits of any
script and ``-``, ``_``, ``.``, at most 50 characters. Anything else (``/``, ``@``, ``?``, ``%``,
spaces, control characters, lone surrogates) could break a URL or a stream name and is refused
before it reaches Binance.

Rows keep the fields users of Binance rely on beyond OHLCV: candles carry ``closed`` (the
kline's ``x``), ``quote_volume`` (``q``) and ``trades`` (``n``); quotes carry ``vwap`` (the 24 h
ticker's ``w``).

Failure behaviour: a malformed symbol or one not trading on spot raises
:class:`~nbfeed.errors.UnknownSymbol`; when the symbol list cannot be loaded (rate limited or
upstream down) the name is let through and an unknown stream simply stays silent. Stream trouble
shows as the provider's status (``degraded`` while a connection reconnects or has failed,
``running`` once every connection is back). Unreadable stream events are logged and skipped.

Configuration (provider options, else environment, else Binance's public endpoints):
``rest_url`` / ``NBFEED_BINANCE_REST_URL`` (default ``https://api.binance.com``), ``ws_url`` /
``NBFEED_BINANCE_WS_URL`` (default ``wss://stream.binance.com:9443``). Other options:
``quote_assets`` (list: only list symbols quoted in these), ``max_history_bars`` (default
200,000), ``max_wait`` (longest rate-limit wait a request sits through, default 90 s),
``max_streams_per_connection`` (default 1024), ``request_timeout`` (default 15 s),
``max_backoff`` (longest wait between reconnect attempts, default 3 s).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ...errors import UnknownSymbol, UpstreamError
from ...intervals import BAR_INTERVALS, INTERVALS, TICK, check_interval
from ...timeutil import now_ms
from .._config import positive_int, positive_number, resolve_url
from ..base import Provider
from ..dataset import CANDLE_OUTPUTS
from .rest import DEFAULT_REST_URL, BinanceREST
from .stream import DEFAULT_WS_URL, CombinedStreams, kline_row, stream_names

MAX_SYMBOL_CHARS = 50
_SYMBOL_PUNCTUATION = frozenset("-_.")


def symbol_problem(symbol: object) -> str | None:
    """Why ``symbol`` cannot be a Binance symbol (it could break a URL or a stream name), or
    None. Letters and digits of any script are fine: Binance symbols may be UTF-8."""
    if not isinstance(symbol, str) or not symbol:
        return "a symbol is a non-empty string"
    if len(symbol) > MAX_SYMBOL_CHARS:
        return f"a symbol has at most {MAX_SYMBOL_CHARS} characters"
    for ch in symbol:
        if not (ch.isalnum() or ch in _SYMBOL_PUNCTUATION):
            return f"{ch!r} is not a letter, a digit, '-', '_' or '.'"
    return None


class BinanceProvider(Provider):
    """nbfeed's Binance source (spot, public market data). See the module docstring."""

    name = "binance"
    summary = "Binance spot market data (public, no key; needs the internet)"
    intervals = INTERVALS

    def init(self) -> None:
        opts = self.options
        self.rest_url = resolve_url(opts, "rest_url", "NBFEED_BINANCE_REST_URL", DEFAULT_REST_URL)
        self.ws_url = resolve_url(opts, "ws_url", "NBFEED_BINANCE_WS_URL", DEFAULT_WS_URL)
        self.rest = BinanceREST(
            self.rest_url, stop=self.stopping, log=self.log,
            timeout=positive_number(opts, "binance", "request_timeout", 15.0),
            max_wait=positive_number(opts, "binance", "max_wait", 90.0),
            max_history_bars=positive_int(opts, "binance", "max_history_bars", 200_000))
        #: The combined-stream sockets that carry every subscribed stream.
        self.sockets = CombinedStreams(
            self.ws_url, self._on_event, stop=self.stopping, log=self.log,
            max_streams_per_connection=positive_int(opts, "binance",
                                                    "max_streams_per_connection", 1024),
            # A feed should be back within seconds of the exchange: reconnect attempts at most
            # 3 s apart stay far below Binance's 300 connection attempts per 5 minutes per IP.
            max_backoff=positive_number(opts, "binance", "max_backoff", 3.0),
            on_state=self._on_stream_state)
        self._symbols: set[str] | None = None
        self._symbols_at = 0.0
        self._symbols_lock = threading.Lock()
        self._quotes: dict[str, dict] = {}
        self._quotes_lock = threading.Lock()  # ticker and book streams may be on two sockets
        self._status = "running"

    # ---- catalog ------------------------------------------------------------------------------

    def get_dataset(self) -> list[dict]:
        items = self.rest.spot_symbols(self.options.get("quote_assets"))
        with self._symbols_lock:
            self._symbols = {s["symbol"] for s in items}
            self._symbols_at = time.monotonic()
        return [{
            "source": self.name, "name": s["symbol"],
            "name_label": f"{s.get('baseAsset', '?')} / {s.get('quoteAsset', '?')}",
            "type": "candlestick", "categories": ["Crypto", str(s.get("quoteAsset", ""))],
            "intervals": [*BAR_INTERVALS, TICK], "outputs": CANDLE_OUTPUTS,
        } for s in items]

    def _check_symbol(self, symbol: Any) -> str:
        problem = symbol_problem(symbol)
        if problem is not None:
            raise UnknownSymbol(f"binance symbols are letters and digits (any script) and "
                                f"'-', '_', '.', like 'BTCUSDT' or '这是测试币456': {problem}; "
                                f"got {symbol!r:.60}")
        with self._symbols_lock:
            known, age = self._symbols, time.monotonic() - self._symbols_at
        stale = known is None or (symbol not in known and age > 600)
        if stale and self.rest.http.gate.remaining() > 0:
            return symbol  # rate limited: do not park the caller just to check a name
        if stale:
            try:
                known = {s["symbol"] for s in self.rest.spot_symbols()}
            except UpstreamError as exc:
                # Cannot check now: let it through; an unknown stream simply stays silent.
                self.log.warning("binance: cannot load symbols to check %s: %s", symbol, exc)
                return symbol
            with self._symbols_lock:
                self._symbols, self._symbols_at = known, time.monotonic()
        if symbol not in known:
            hint = f"; did you mean {symbol.upper()!r}?" if symbol.upper() in known else ""
            raise UnknownSymbol(f"binance has no spot symbol {symbol!r} trading now{hint}")
        return symbol

    # ---- history ------------------------------------------------------------------------------

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        check_interval(interval, BAR_INTERVALS)
        self._check_symbol(symbol)
        return self.rest.klines(symbol, interval, start, end, count)

    # ---- live ---------------------------------------------------------------------------------

    def subscribe(self, symbol: str, interval: str) -> None:
        check_interval(interval, INTERVALS)
        self._check_symbol(symbol)
        self.sockets.add(stream_names(symbol, interval))

    def unsubscribe(self, symbol: str, interval: str) -> None:
        self.sockets.remove(stream_names(symbol, interval))
        if interval == TICK:
            with self._quotes_lock:
                self._quotes.pop(symbol, None)

    def no_update(self, symbol: str, interval: str) -> None:
        # Binance pushes every stream at least every 2 s, so silence means a stale connection
        # (a half-open TCP connection can look alive for minutes): renew it.
        self.log.warning("binance %s %s: no data for a while; renewing its connection",
                         symbol, interval)
        self.sockets.reconnect(stream_names(symbol, interval))

    def _on_event(self, stream: str, data: dict) -> None:
        try:
            kind = data.get("e")
            if kind == "kline":
                _, interval, row = kline_row(data)
                self.publish([row], interval=interval)
            elif kind == "24hrTicker":
                # prev_close is the rolling window's open, so change == price - prev_close
                # and change_percent match Binance's own p and P.
                fields = dict(price=float(data["c"]), prev_close=float(data["o"]),
                              change=float(data["p"]), change_percent=float(data["P"]),
                              volume=float(data["v"]), bid=float(data["b"]),
                              ask=float(data["a"]))
                if "w" in data:  # the 24 h volume-weighted average price
                    fields["vwap"] = float(data["w"])
                self._quote(data["s"], int(data["E"]), **fields)
            elif stream.endswith("@bookTicker"):
                self._quote(data["s"], now_ms(), bid=float(data["b"]), ask=float(data["a"]))
        except (KeyError, TypeError, ValueError) as exc:
            self.log.warning("binance: unreadable %s event (%s): %.200r", stream, exc, data)

    def _quote(self, symbol: str, time_ms: int, **fields: float) -> None:
        with self._quotes_lock:
            row = self._quotes.get(symbol)
            if row is None:
                row = self._quotes[symbol] = {"time": time_ms, "symbol": symbol}
            row.update(fields)
            row["time"] = time_ms
            snapshot = dict(row)
        self.publish([snapshot], interval=TICK)

    def _on_stream_state(self, state: str, detail: str) -> None:
        if state != self._status:
            self._status = state
            self.set_status(state, detail)
