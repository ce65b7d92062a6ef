"""Binance's public market-data REST API: spot symbols and klines, inside the request-weight budget.

* **Symbols** from ``GET /api/v3/exchangeInfo?permissions=SPOT``: spot symbols whose status is
  ``TRADING``. A symbol that is halted or not tradable on spot is not listed.
* **History** from ``GET /api/v3/klines``: 1,000 bars per call, paged forwards (``startTime``) or
  backwards (``endTime``) and stitched by open time, so pages never overlap (no duplicates) and
  each page starts right after the previous one (no gaps we introduce). Rows keep the quote
  volume (``quote_volume``), the trade count (``trades``) and whether the bar has closed
  (``closed``), besides OHLCV.
* **Rate limits**: every answer's ``X-MBX-USED-WEIGHT-<n><unit>`` header is compared with the
  ``REQUEST_WEIGHT`` limits ``exchangeInfo`` announces; before a request that would cross the
  limit the client waits for the window to roll over. A 429/418 answer holds *all* requests for
  its ``Retry-After`` (see :mod:`nbfeed.providers._http`).

Failure behaviour: Binance's "unknown symbol" (-1121) and "bad interval" (-1120) answers become
:class:`~nbfeed.errors.UnknownSymbol` and :class:`~nbfeed.errors.BadRequest`; an answer of the
wrong shape raises :class:`~nbfeed.errors.UpstreamError` naming what was expected; a span or
``count`` above ``max_history_bars`` raises :class:`~nbfeed.errors.LimitExceeded` instead of
paging without end. A rate-limit wait longer than ``max_wait`` raises instead of sleeping, and
waits end when ``stop`` is set (see :class:`~nbfeed.providers._http.RestClient`).

Client library: ``httpx`` (why: see ``_http.py``). ``python-binance``/``binance-connector`` were
not used: we need our own weight budget shared by every call, which they do not offer.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpx

from ...errors import BadRequest, LimitExceeded, UnknownSymbol, UpstreamError
from ...timeutil import now_ms
from .._http import HttpError, RateGate, RestClient

DEFAULT_REST_URL = "https://api.binance.com"
KLINES_PER_CALL = 1000
WEIGHT_EXCHANGE_INFO = 20
WEIGHT_KLINES = 2
_WEIGHT_HEADER = re.compile(r"^x-mbx-used-weight-(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL_UNIT = {"SECOND": "s", "MINUTE": "m", "HOUR": "h", "DAY": "d"}


class WeightBudget:
    """Keeps request weight under Binance's per-window limits, using the used-weight headers.

    ``limits`` maps a window key such as ``"1m"`` to its limit (from ``exchangeInfo``). After each
    answer we remember the used weight per window; before a request of weight ``w`` that would
    take a window past ``safety`` of its limit, the gate is held until that window rolls over.
    Windows are aligned to the clock, as Binance counts them.
    """

    def __init__(self, gate: RateGate, limits: dict[str, int] | None = None,
                 safety: float = 0.9) -> None:
        self.gate = gate
        self.limits = dict(limits or {"1m": 6000})
        self.safety = safety
        self.used: dict[str, tuple[int, int]] = {}  # window key -> (window number, used)
        self._lock = threading.Lock()

    def configure(self, rate_limits: Iterable[dict]) -> None:
        limits = {}
        for item in rate_limits:
            if not isinstance(item, dict) or item.get("rateLimitType") != "REQUEST_WEIGHT":
                continue
            unit = _INTERVAL_UNIT.get(item.get("interval"))
            num, limit = item.get("intervalNum"), item.get("limit")
            if unit and isinstance(num, int) and isinstance(limit, int) and num > 0 and limit > 0:
                limits[f"{num}{unit}"] = limit
        if limits:
            with self._lock:
                self.limits = limits

    @staticmethod
    def _window(key: str, now: float) -> tuple[int, float]:
        length = int(key[:-1]) * _UNIT_SECONDS[key[-1]]
        number = int(now // length)
        return number, (number + 1) * length - now

    def observe(self, headers: httpx.Headers) -> None:
        now = time.time()
        with self._lock:
            for name, value in headers.items():
                m = _WEIGHT_HEADER.match(name.lower())
                if m and value.strip().isdigit():
                    key = m.group(1) + m.group(2)
                    self.used[key] = (self._window(key, now)[0], int(value))

    def before(self, weight: int) -> None:
        now = time.time()
        with self._lock:
            for key, limit in self.limits.items():
                number, left = self._window(key, now)
                seen_number, used = self.used.get(key, (number, 0))
                if seen_number != number:
                    continue
                if used + weight > limit * self.safety:
                    self.gate.hold(left + 0.05, f"used weight {used}/{limit} per {key}")


class BinanceREST:
    """Binance's public market-data REST endpoints with paging, stitching and rate limits."""

    def __init__(self, rest_url: str = DEFAULT_REST_URL, *, stop: threading.Event | None = None,
                 timeout: float = 15.0, max_wait: float = 90.0,
                 max_history_bars: int = 200_000, log: Any = None) -> None:
        self.http = RestClient(rest_url, name="binance", timeout=timeout, max_wait=max_wait,
                               stop=stop, log=log, before_request=self._before,
                               after_response=self._after)
        self.budget = WeightBudget(self.http.gate)
        self.max_history_bars = max_history_bars

    def _before(self, weight: int) -> None:
        self.budget.before(weight)

    def _after(self, headers: httpx.Headers) -> None:
        self.budget.observe(headers)

    def close(self) -> None:
        self.http.close()

    def exchange_info(self) -> dict:
        data = self.http.get("/api/v3/exchangeInfo", {"permissions": "SPOT"},
                             weight=WEIGHT_EXCHANGE_INFO).data
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise UpstreamError("binance exchangeInfo: expected an object with a 'symbols' list")
        self.budget.configure(data.get("rateLimits") or [])
        return data

    def spot_symbols(self, quote_assets: Iterable[str] | None = None) -> list[dict]:
        """The symbol objects of exchangeInfo that trade on spot now, sorted by name."""
        if isinstance(quote_assets, str):
            quote_assets = [quote_assets]
        quotes = {str(q).upper() for q in quote_assets} if quote_assets else None
        out = []
        for item in self.exchange_info()["symbols"]:
            if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
                continue
            if item.get("status") != "TRADING" or not _is_spot(item):
                continue
            if quotes is not None and item.get("quoteAsset") not in quotes:
                continue
            out.append(item)
        out.sort(key=lambda s: s["symbol"])
        return out

    def _page(self, symbol: str, interval: str, **params: Any) -> list[list]:
        try:
            data = self.http.get("/api/v3/klines", {"symbol": symbol, "interval": interval,
                                                    **params}, weight=WEIGHT_KLINES).data
        except HttpError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            if body.get("code") == -1121:
                raise UnknownSymbol(f"binance has no symbol {symbol!r}") from None
            if body.get("code") == -1120:
                raise BadRequest(f"binance does not serve interval {interval!r}") from None
            raise
        if not isinstance(data, list):
            raise UpstreamError(f"binance klines for {symbol}: expected a list, got "
                                f"{type(data).__name__}")
        return data

    def klines(self, symbol: str, interval: str, start: int | None = None,
               end: int | None = None, count: int | None = None) -> list[dict]:
        """Candle rows with open times in ``[start, end)``; with ``count``, the newest ``count``.

        Pages are stitched by open time: a bar is kept once, pages continue right after the
        last bar seen, and a page that does not move forward ends the loop instead of spinning.
        """
        if count is None and start is None:
            count = 500
        if count is not None and count > self.max_history_bars:
            raise LimitExceeded(f"count {count} exceeds max_history_bars "
                                f"{self.max_history_bars} for binance")
        end_incl = end - 1 if end is not None else None
        bars: dict[int, list] = {}
        if count is not None:
            cursor = end_incl
            while len(bars) < count:
                want = min(KLINES_PER_CALL, count - len(bars))
                page = self._page(symbol, interval, endTime=cursor, limit=want)
                rows = _check_rows(page, symbol)
                fresh = [r for r in rows if r[0] not in bars]
                for r in fresh:
                    bars[r[0]] = r
                if len(rows) < want or not fresh:
                    break
                first = rows[0][0]
                if start is not None and first <= start:
                    break
                cursor = first - 1
        else:
            cursor = start
            while True:
                page = self._page(symbol, interval, startTime=cursor, endTime=end_incl,
                                  limit=KLINES_PER_CALL)
                rows = _check_rows(page, symbol)
                fresh = [r for r in rows if r[0] not in bars and r[0] >= cursor]
                for r in fresh:
                    bars[r[0]] = r
                if len(bars) > self.max_history_bars:
                    raise LimitExceeded(
                        f"binance {symbol} {interval}: the span holds more than "
                        f"{self.max_history_bars} bars (max_history_bars); ask for a shorter "
                        "span or a count")
                if len(rows) < KLINES_PER_CALL or not fresh:
                    break
                cursor = rows[-1][0] + 1
        times = sorted(t for t in bars if (start is None or t >= start)
                       and (end is None or t < end))
        if count is not None:
            times = times[-count:]
        now = now_ms()
        return [_candle(symbol, bars[t], now) for t in times]


def _is_spot(item: dict) -> bool:
    if item.get("isSpotTradingAllowed") is True:
        return True
    perms = set(item.get("permissions") or ())
    for group in item.get("permissionSets") or ():
        perms.update(group)
    return "SPOT" in perms


def _check_rows(page: list, symbol: str) -> list[list]:
    """Validate kline rows: ``[openTime, open, high, low, close, volume, ...]``."""
    out = []
    for i, row in enumerate(page):
        if not isinstance(row, list) or len(row) < 6 or not isinstance(row[0], int) \
                or isinstance(row[0], bool):
            raise UpstreamError(f"binance klines for {symbol}: row {i} is not a kline array: "
                                f"{row!r:.120}")
        out.append(row)
    out.sort(key=lambda r: r[0])
    return out


def _candle(symbol: str, k: list, now: int) -> dict:
    """One kline array as a candle row, keeping what users of Binance rely on beyond OHLCV:
    ``quote_volume`` (index 7), ``trades`` (index 8) and ``closed`` (its close time, index 6,
    is behind ``now``: the same flag as a stream kline's ``x``). A field Binance did not send
    (a short array) is left out, never made up."""
    try:
        row = {"time": k[0], "symbol": symbol, "open": float(k[1]), "high": float(k[2]),
               "low": float(k[3]), "close": float(k[4]), "volume": float(k[5])}
        if len(k) > 7:
            row["quote_volume"] = float(k[7])
        if len(k) > 8 and isinstance(k[8], int) and not isinstance(k[8], bool):
            row["trades"] = k[8]
        if len(k) > 6 and isinstance(k[6], int) and not isinstance(k[6], bool):
            row["closed"] = k[6] < now
        return row
    except (TypeError, ValueError):
        raise UpstreamError(f"binance klines for {symbol}: non-numeric price in {k!r:.120}"
                            ) from None
