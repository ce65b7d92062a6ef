"""Polygon.io REST: reference tickers, aggregate bars and previous closes, paged by ``next_url``.

* **Auth**: the key goes in an ``Authorization: Bearer`` header, so it never appears in URLs or
  logs.
* **Symbols** from ``/v3/reference/tickers`` per market, paged by following ``next_url`` (a
  ``next_url`` seen before or a page without results ends the chain).
* **``next_url``** is an absolute link to Polygon's own host (``https://api.polygon.io/...``),
  whatever host was asked. When the REST base is configured to another host (a proxy, a
  gateway, a local fake), the link's path and query are followed on the configured base
  instead (its path prefix kept); the key, which travels in a header, therefore only ever goes
  to the configured host.
* **History** from ``/v2/aggs/ticker/{ticker}/range/{mult}/{timespan}/{from}/{to}`` with
  ``adjusted`` (default true), ``sort`` and ``limit=50000``, following ``next_url``. Bar times are
  put on nbfeed's grid (UTC-aligned, weeks on Monday): Polygon's stock day bars start at midnight
  New York time and its weeks on Sunday, so each bar is floored to the nbfeed bar that holds it
  (Sunday weeks move to their Monday, see :func:`bar_time`) and bars that land on the same time
  are merged. Rows keep ``vwap`` (``vw``) and ``trades`` (``n``) when Polygon sends them; a field
  Polygon does not send is missing, never made up: index aggregates carry no ``v``, so their
  ``volume`` is NaN (null on the wire), not 0.

Failure behaviour: a rejected key (401) raises :class:`PolygonAuthError`; other HTTP errors
(e.g. 403 for a market the key is not entitled to) raise
:class:`~nbfeed.providers._http.HttpError` for the caller to judge. An answer that is not a JSON
object, or whose ``results`` is not a list, raises :class:`~nbfeed.errors.UpstreamError`;
malformed aggregates are skipped. More than ``max_history_bars`` bars raises
:class:`~nbfeed.errors.LimitExceeded`. Rate limits follow :mod:`nbfeed.providers._http` (a 429
without ``Retry-After`` waits 15 s: Polygon's free tier allows 5 calls a minute).

Client library: ``httpx`` (why: see ``_http.py``). Polygon's official ``polygon-api-client`` was
not used: its REST pager has no shared rate gate.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ...errors import LimitExceeded, UpstreamError
from ...intervals import floor_bar, interval_ms
from ...timeutil import now_ms
from .._http import HttpError, RestClient

DEFAULT_REST_URL = "https://api.polygon.io"
_DAY = 86_400_000
_SPANS = {"1s": (1, "second"), "1m": (1, "minute"), "3m": (3, "minute"), "5m": (5, "minute"),
          "15m": (15, "minute"), "30m": (30, "minute"), "1h": (1, "hour"), "2h": (2, "hour"),
          "4h": (4, "hour"), "6h": (6, "hour"), "8h": (8, "hour"), "12h": (12, "hour"),
          "1d": (1, "day"), "3d": (1, "day"), "1w": (1, "week"), "1M": (1, "month")}
# 3d bars are built from daily aggregates merged onto nbfeed's 3-day grid (Polygon's own
# 3-day multiple would start wherever the request's ``from`` falls).


class PolygonAuthError(UpstreamError):
    """Polygon rejected the API key."""


def market_of(ticker: str) -> str:
    """The Polygon market of a ticker, from its prefix."""
    prefix = ticker[:2]
    return {"X:": "crypto", "C:": "fx", "I:": "indices"}.get(prefix, "stocks")


def bar_time(t: int, interval: str) -> int:
    """Polygon's bar start -> nbfeed's: Sunday-based weeks move to their Monday."""
    if interval == "1w":
        return floor_bar(t + _DAY, "1w")
    return floor_bar(t, interval)


class PolygonREST:
    """Polygon REST endpoints with ``next_url`` paging, auth and rate-limit handling."""

    def __init__(self, api_key: str, rest_url: str = DEFAULT_REST_URL, *,
                 stop: threading.Event | None = None, timeout: float = 15.0,
                 max_wait: float = 90.0, adjusted: bool = True, max_history_bars: int = 500_000,
                 log: Any = None) -> None:
        self.http = RestClient(rest_url, name="polygon", timeout=timeout, max_wait=max_wait,
                               stop=stop, log=log, default_retry_after=15.0,
                               headers={"Authorization": f"Bearer {api_key}"})
        self.adjusted = adjusted
        self.max_history_bars = max_history_bars

    def close(self) -> None:
        self.http.close()

    def _get(self, path_or_url: str, params: dict | None = None) -> dict:
        try:
            data = self.http.get(path_or_url, params).data
        except HttpError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            reason = body.get("error") or body.get("message") or str(exc.body)[:200]
            if exc.status == 401:
                raise PolygonAuthError(f"polygon rejected the API key: {reason}") from None
            raise
        if not isinstance(data, dict):
            raise UpstreamError(f"polygon: expected a JSON object, got {type(data).__name__}")
        return data

    def pages(self, path: str, params: dict, max_items: int | None = None) -> Iterable[dict]:
        """Every item of ``results`` across the ``next_url`` chain."""
        url: str | None = path
        seen = 0
        visited: set[str] = set()
        while url is not None:
            data = self._get(url, params)
            params = None  # next_url carries the query (its cursor) itself
            results = data.get("results") or []
            if not isinstance(results, list):
                raise UpstreamError(f"polygon {path}: 'results' is not a list")
            for item in results:
                if isinstance(item, dict):
                    seen += 1
                    yield item
            nxt = data.get("next_url")
            if not isinstance(nxt, str) or not nxt or not results or nxt in visited:
                return
            if max_items is not None and seen >= max_items:
                return
            visited.add(nxt)
            url = self.on_configured_host(nxt)

    def on_configured_host(self, link: str) -> str:
        """A ``next_url`` as a request to the configured REST base: a link to that base's own
        host is followed as it is; a link to any other host (Polygon's, when the base is a
        proxy) keeps only its path and query, so nothing is ever sent elsewhere."""
        parts = urlsplit(link)
        if not parts.scheme and not parts.netloc:
            return link
        base = urlsplit(self.http.base_url)
        if (parts.scheme, parts.netloc.lower()) == (base.scheme, base.netloc.lower()):
            return link
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def tickers(self, market: str) -> list[dict]:
        """Active tickers of one market; raises HttpError 403 when the key is not entitled."""
        return list(self.pages("/v3/reference/tickers",
                               {"market": market, "active": "true", "limit": 1000}))

    def ticker(self, ticker: str) -> dict | None:
        items = list(self.pages("/v3/reference/tickers",
                                {"ticker": ticker, "market": market_of(ticker), "limit": 1}, 1))
        return items[0] if items else None

    def prev_close(self, ticker: str) -> float | None:
        results = self._get(f"/v2/aggs/ticker/{ticker}/prev").get("results") or []
        if results and isinstance(results[0], dict) and isinstance(results[0].get("c"),
                                                                   (int, float)):
            return float(results[0]["c"])
        return None

    def second_aggs(self, ticker: str, start: int, end: int, span: str = "second"
                    ) -> list[dict]:
        """Raw per-second (or, with ``span="minute"``, per-minute) aggregates with ``t`` in
        ``[start, end)``, ascending: what completes a live bar that began before we
        subscribed."""
        if end <= start:
            return []
        return [a for a in self.pages(
            f"/v2/aggs/ticker/{ticker}/range/1/{span}/{start}/{end - 1}",
            {"adjusted": _flag(self.adjusted), "sort": "asc", "limit": 50000})
            if isinstance(a.get("t"), int) and start <= a["t"] < end]

    def market_status(self) -> dict:
        """``/v1/marketstatus/now``: ``{"market": "open"|"closed"|"extended-hours",
        "exchanges": {...}, "currencies": {"crypto": ..., "fx": ...}, ...}``."""
        return self._get("/v1/marketstatus/now")

    def aggs(self, ticker: str, interval: str, start: int | None, end: int | None,
             count: int | None) -> list[dict]:
        """Candle rows on nbfeed's grid in ``[start, end)``; with ``count`` the newest ones."""
        mult, span = _SPANS[interval]
        step = interval_ms(interval)
        end_ms = end if end is not None else now_ms() + step
        if count is None and start is None:
            count = 500
        if count is not None and count > self.max_history_bars:
            raise LimitExceeded(f"count {count} exceeds max_history_bars "
                                f"{self.max_history_bars} for polygon")
        # A bar of margin before start: Sunday weeks and midnight-New-York days belong to the
        # nbfeed bar after their own timestamp.
        if count is not None and start is None:
            frm = max(0, end_ms - count * step * 7)
            sort = "desc"
        else:
            frm = max(0, (start or 0) - step)
            sort = "asc"
        params = {"adjusted": _flag(self.adjusted), "sort": sort, "limit": 50000}
        merged: dict[int, dict] = {}
        path = f"/v2/aggs/ticker/{ticker}/range/{mult}/{span}/{frm}/{end_ms - 1}"
        for agg in self.pages(path, params):
            row = agg_row(ticker, agg)
            if row is None:
                continue
            t = bar_time(row["time"], interval)
            if (start is not None and t < start) or t >= end_ms:
                continue
            row["time"] = t
            old = merged.get(t)
            merged[t] = row if old is None else _merge(old, row, newer_first=sort == "desc")
            if len(merged) > self.max_history_bars:
                raise LimitExceeded(f"polygon {ticker} {interval}: the span holds more than "
                                    f"{self.max_history_bars} bars; ask for a shorter span")
            if count is not None and sort == "desc" and len(merged) > count:
                break
        rows = [merged[t] for t in sorted(merged)]
        return rows[-count:] if count is not None else rows


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _number(agg: dict, key: str) -> float:
    """A numeric field of an aggregate; NaN when Polygon did not send it (or sent null)."""
    value = agg.get(key)
    return math.nan if value is None else float(value)


def agg_row(ticker: str, agg: dict) -> dict | None:
    """An aggregate (``t, o, h, l, c`` and, when sent, ``v``, ``vw``, ``n``) as a candle row;
    None if a price or the time is missing or bad. A missing ``v`` (index aggregates carry
    none) is a NaN volume, never 0; ``vwap`` and ``trades`` are present only when sent."""
    try:
        row = {"time": int(agg["t"]), "symbol": ticker, "open": float(agg["o"]),
               "high": float(agg["h"]), "low": float(agg["l"]), "close": float(agg["c"]),
               "volume": _number(agg, "v")}
        if agg.get("vw") is not None:
            row["vwap"] = float(agg["vw"])
        n = agg.get("n")
        if isinstance(n, (int, float)) and not isinstance(n, bool):
            row["trades"] = int(n)
        return row
    except (KeyError, TypeError, ValueError):
        return None


def _merge(a: dict, b: dict, newer_first: bool) -> dict:
    """Two aggregates that land on one nbfeed bar, as one bar. ``vwap`` is volume-weighted and
    ``trades`` summed when both have them; otherwise the merged bar has none (a missing part
    would make it wrong)."""
    first, last = (b, a) if newer_first else (a, b)
    out = {**a, "open": first["open"], "close": last["close"],
           "high": max(a["high"], b["high"]), "low": min(a["low"], b["low"]),
           "volume": a["volume"] + b["volume"]}
    out.pop("vwap", None)
    out.pop("trades", None)
    if "vwap" in a and "vwap" in b and out["volume"] > 0:
        out["vwap"] = (a["vwap"] * a["volume"] + b["vwap"] * b["volume"]) / out["volume"]
    if "trades" in a and "trades" in b:
        out["trades"] = a["trades"] + b["trades"]
    return out
