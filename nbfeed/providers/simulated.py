"""``simulated``: nbfeed's offline default source. No network, deterministic for a seed.

Every symbol has one price path, a deterministic function of ``(seed, symbol, time)``: the sum of
smoothed random "octaves" from seconds to months (value noise), so any instant can be evaluated
on its own, in any order, vectorized. That is what makes history and live agree exactly:

* a bar of interval ``I`` is sampled at 13 fixed points across ``[start, start + I]``:
  open = first, close = last, high/low = extremes; the next bar opens where this one closed;
* the live open bar uses the same points up to now, plus the straight-line value between the two
  points around now, so its high never exceeds (and low never undercuts) the final bar's; when
  the stream moves on to the next bar it first publishes the finished bar, which equals the bar
  ``get_history`` returns;
* quotes (``tick``) read the path itself: ``price``, ``prev_close`` (the price at the previous UTC
  midnight), ``change``, ``change_percent`` (in percent), ``volume`` (since midnight), ``bid``,
  ``ask``.

Each symbol draws its own price, volume and spread series at the scales of its asset class
(stocks, crypto, FX): see :mod:`.simulated_market`. Bar volume is what traded inside the bar, so
a day's 1m bars add up to its 1d bar and to the quotes' volume since midnight.

Rate: ``rate`` option or ``NBFEED_SIMULATED_RATE`` = updates per second per subscribed stream
(default 4; benchmarks use 1,000-100,000). Rows are generated in vectorized bursts of at most
every 5 ms, so high rates cost numpy time, not Python loops per row.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..errors import BadInterval, BadRequest, UnknownSymbol
from ..intervals import BAR_INTERVALS, TICK, bar_starts, floor_bar, next_bar
from ..timeutil import now_ms
from .base import Provider
from .simulated_market import DAY, MarketPath, instrument

_STOCKS = [
    ("AAPL", "Apple Inc.", 190.0), ("MSFT", "Microsoft Corporation", 410.0),
    ("GOOGL", "Alphabet Inc. Class A", 140.0), ("AMZN", "Amazon.com, Inc.", 178.0),
    ("TSLA", "Tesla, Inc.", 245.0), ("NVDA", "NVIDIA Corporation", 120.0),
    ("META", "Meta Platforms, Inc.", 480.0), ("BRK.B", "Berkshire Hathaway Inc. Class B", 410.0),
    ("JPM", "JPMorgan Chase & Co.", 195.0), ("V", "Visa Inc.", 275.0),
    ("JNJ", "Johnson & Johnson", 155.0), ("WMT", "Walmart Inc.", 65.0),
    ("PG", "Procter & Gamble Company", 165.0), ("MA", "Mastercard Incorporated", 460.0),
    ("UNH", "UnitedHealth Group Incorporated", 520.0), ("HD", "Home Depot, Inc.", 350.0),
    ("XOM", "Exxon Mobil Corporation", 115.0), ("BAC", "Bank of America Corporation", 38.0),
    ("KO", "Coca-Cola Company", 62.0), ("PEP", "PepsiCo, Inc.", 170.0),
    ("COST", "Costco Wholesale Corporation", 720.0), ("DIS", "Walt Disney Company", 110.0),
    ("NFLX", "Netflix, Inc.", 620.0), ("ADBE", "Adobe Inc.", 520.0),
    ("CRM", "Salesforce, Inc.", 290.0), ("INTC", "Intel Corporation", 31.0),
    ("AMD", "Advanced Micro Devices, Inc.", 160.0), ("ORCL", "Oracle Corporation", 125.0),
    ("CSCO", "Cisco Systems, Inc.", 48.0), ("PFE", "Pfizer Inc.", 28.0),
    ("NKE", "NIKE, Inc.", 95.0), ("MCD", "McDonald's Corporation", 280.0),
    ("IBM", "International Business Machines", 185.0), ("QCOM", "QUALCOMM Incorporated", 170.0),
    ("T", "AT&T Inc.", 17.0), ("BA", "Boeing Company", 190.0),
    ("CAT", "Caterpillar Inc.", 330.0), ("GS", "Goldman Sachs Group, Inc.", 450.0),
    ("SPY", "SPDR S&P 500 ETF Trust", 520.0), ("QQQ", "Invesco QQQ Trust", 440.0),
]
_CRYPTO = [("BTC-USD", "Bitcoin - USD", 65000.0), ("ETH-USD", "Ethereum - USD", 3200.0),
           ("SOL-USD", "Solana - USD", 150.0)]
_FX = [("EURUSD", "Euro - US Dollar", 1.08), ("GBPUSD", "British Pound - US Dollar", 1.26),
       ("USDJPY", "US Dollar - Japanese Yen", 151.0), ("EURGBP", "Euro - British Pound", 0.86)]

_SAMPLES = 12  # segments per bar
MAX_BARS = 1_000_000


class SimulatedProvider(Provider):
    """Deterministic quotes and candles for a stock/crypto/FX universe (see module docstring).

    Options: ``seed`` (int), ``rate`` (updates/s per stream), ``symbols`` (extra symbol names),
    ``universe_size`` (add ``SIM0001``... symbols, for benchmarks), ``daily_vol`` (the same
    daily volatility for every symbol instead of its asset class's).
    """

    name = "simulated"
    summary = "Simulated quotes and candles for stocks, crypto and FX (offline)"

    def init(self) -> None:
        opts = self.options
        self.seed = int(opts.get("seed", 7))
        rate = opts.get("rate", os.environ.get("NBFEED_SIMULATED_RATE", 4))
        try:
            self.rate = float(rate)
        except (TypeError, ValueError):
            raise BadRequest(f"simulated: rate must be a number, got {rate!r}") from None
        if not 0 < self.rate <= 1_000_000:
            raise BadRequest(f"simulated: rate must be in (0, 1000000], got {self.rate}")
        vol = opts.get("daily_vol")
        vol = None if vol is None else float(vol)
        self.universe: dict[str, tuple[str, str, float]] = {}
        for group, items in (("Stocks", _STOCKS), ("Crypto", _CRYPTO), ("FX", _FX)):
            for sym, label, base in items:
                self.universe[sym] = (label, group, base)
        for sym in opts.get("symbols", []) or []:
            self.universe.setdefault(str(sym), (f"Simulated {sym}", "Stocks", 100.0))
        for i in range(int(opts.get("universe_size", 0))):
            sym = f"SIM{i:05d}"
            self.universe.setdefault(sym, (f"Simulated instrument {i}", "Stocks",
                                           20.0 + (i * 37) % 500))
        self.paths = {sym: MarketPath(self.seed, instrument(sym, label, group, base, vol))
                      for sym, (label, group, base) in self.universe.items()}
        self._active: dict[tuple[str, str], bool] = {}
        self._open_starts: dict[tuple[str, str], int] = {}  # stream -> start of its open bar
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="simulated-stream", daemon=True).start()

    # ---- catalog --------------------------------------------------------------------------

    def get_dataset(self) -> list[dict]:
        return [{"source": self.name, "name": sym, "name_label": label, "type": "candlestick",
                 "categories": [group], "intervals": [*BAR_INTERVALS, TICK]}
                for sym, (label, group, _) in self.universe.items()]

    def _path(self, symbol: str) -> MarketPath:
        path = self.paths.get(symbol)
        if path is None:
            raise UnknownSymbol(f"simulated: unknown symbol {symbol!r}")
        return path

    # ---- history --------------------------------------------------------------------------

    def bars(self, symbol: str, interval: str, starts: list[int], now: int) -> list[dict]:
        """Bars starting at ``starts``; a bar still open at ``now`` is computed as of ``now``."""
        path = self._path(symbol)
        if not starts:
            return []
        t0 = np.asarray(starts, dtype=np.int64)
        t1 = np.asarray([next_bar(s, interval) for s in starts], dtype=np.int64) \
            if interval in ("1M",) else t0 + (next_bar(starts[0], interval) - starts[0])
        length = t1 - t0
        k = np.arange(_SAMPLES + 1, dtype=np.int64)
        grid = t0[:, None] + (length[:, None] * k[None, :]) // _SAMPLES
        prices = path.price(grid)
        vol = path.volume_between(t0, t1)
        opens, closes = prices[:, 0], prices[:, -1]
        highs, lows = prices.max(axis=1), prices.min(axis=1)
        out = [{"time": int(a), "symbol": symbol, "open": float(o), "high": float(h),
                "low": float(lo), "close": float(c), "volume": float(v)}
               for a, o, h, lo, c, v in zip(t0.tolist(), opens.tolist(), highs.tolist(),
                                            lows.tolist(), closes.tolist(), vol.tolist())]
        if int(t1[-1]) > now:  # the open bar: as it stands now
            out[-1] = self._open_bar(path, symbol, int(t0[-1]), int(t1[-1]), now)
        return out

    def _open_bar(self, path: MarketPath, symbol: str, t0: int, t1: int, now: int) -> dict:
        length = t1 - t0
        k = np.arange(_SAMPLES + 1, dtype=np.int64)
        grid = t0 + (length * k) // _SAMPLES
        prices = path.price(grid)
        i = int(min(_SAMPLES - 1, (now - t0) * _SAMPLES // length))
        span = int(grid[i + 1] - grid[i]) or 1
        w = (now - int(grid[i])) / span
        cur = float(path.round_price(prices[i] + (prices[i + 1] - prices[i]) * w))
        seen = prices[: i + 1]
        vol = float(path.volume_between(np.asarray([t0]), np.asarray([now]))[0])
        return {"time": t0, "symbol": symbol, "open": float(prices[0]),
                "high": max(float(seen.max()), cur), "low": min(float(seen.min()), cur),
                "close": cur, "volume": vol}

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        self._path(symbol)
        if interval == TICK or interval not in BAR_INTERVALS:
            raise BadInterval(f"simulated: history needs a bar interval, got {interval!r}")
        now = now_ms()
        end = now + 1 if end is None else min(end, now + 1)
        if start is None:
            start = floor_bar(end - 1, interval)
            for _ in range(max(0, (count or 500) - 1)):
                start = floor_bar(start - 1, interval)
        if end <= start:
            return []
        starts = bar_starts(start, end, interval)
        if count is not None:
            starts = starts[-count:]
        if len(starts) > MAX_BARS:
            raise BadRequest(f"simulated: {len(starts)} bars requested; at most {MAX_BARS} "
                             "per call")
        return self.bars(symbol, interval, starts, now)

    # ---- live -----------------------------------------------------------------------------

    def subscribe(self, symbol: str, interval: str) -> None:
        self._path(symbol)
        if interval != TICK and interval not in BAR_INTERVALS:
            raise BadInterval(f"simulated: unknown interval {interval!r}")
        with self._lock:
            self._active[(symbol, interval)] = True
            self._open_starts.pop((symbol, interval), None)
        self._wake.set()

    def unsubscribe(self, symbol: str, interval: str) -> None:
        with self._lock:
            self._active.pop((symbol, interval), None)
            self._open_starts.pop((symbol, interval), None)

    def quotes(self, symbol: str, times: np.ndarray) -> list[dict]:
        """Quote rows of ``symbol`` at epoch-ms ``times``."""
        path = self.paths[symbol]
        prices = path.price(times)
        midnight = int(times[0]) - int(times[0]) % DAY
        prev_close = path.prev_close(midnight)
        bid, ask = path.quote_sides(times, prices)
        change = path.round_price(prices - prev_close)
        # Rounded as arrays, not per row: at 100k+ rows/s the per-row Python work is the cost.
        columns = (times.tolist(), prices.tolist(), change.tolist(),
                   np.round(change / prev_close * 100.0, 4).tolist(),
                   path.volume_since_midnight(times).tolist(), bid.tolist(), ask.tolist())
        return [{"time": t, "symbol": symbol, "price": p, "prev_close": prev_close,
                 "change": ch, "change_percent": pct, "volume": v, "bid": bid, "ask": ask}
                for t, p, ch, pct, v, bid, ask in zip(*columns)]

    def _run(self) -> None:
        tick_s = max(0.005, 1.0 / self.rate)
        per_tick = max(1, int(round(self.rate * tick_s)))
        next_at = time.monotonic()
        while not self.stopping.is_set():
            with self._lock:
                active = list(self._active)
            if not active:
                self._wake.wait(0.5)
                self._wake.clear()
                next_at = time.monotonic()
                continue
            now = now_ms()
            span = int(tick_s * 1000)
            times = now - span + (np.arange(1, per_tick + 1, dtype=np.int64) * span) // per_tick
            for symbol, interval in active:
                try:
                    if interval == TICK:
                        self.publish(self.quotes(symbol, times), interval=TICK)
                    else:
                        self.publish(self._live_bars(symbol, interval, times), interval=interval)
                except Exception:
                    self.log.exception("simulated stream %s/%s failed", symbol, interval)
            next_at += tick_s
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
            else:
                next_at = time.monotonic()  # fell behind: do not try to catch up in a burst

    def _live_bars(self, symbol: str, interval: str, times: np.ndarray) -> list[dict]:
        path = self.paths[symbol]
        key = (symbol, interval)
        out = []
        for t in times.tolist():
            t0 = floor_bar(t, interval)
            previous = self._open_starts.get(key)
            if previous is not None and previous != t0:
                # The last update of a bar comes before its end; close it with the exact final
                # bar, so the last live version equals what get_history returns for it.
                out.append(self.bars(symbol, interval, [previous], t)[0])
            self._open_starts[key] = t0
            out.append(self._open_bar(path, symbol, t0, next_bar(t0, interval), t))
        return out
