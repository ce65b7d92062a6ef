"""Polygon.io: stocks, crypto, forex and indices - every market the API key is entitled to.

The provider class lives here; what it drives are its siblings:

* :mod:`.rest` - reference tickers, aggregate history put on nbfeed's bar grid, previous
  closes, all paged by ``next_url`` behind one rate gate.
* :mod:`.stream` - one authenticated websocket per cluster, kept subscribed to the
  channels the provider wants.
* :mod:`.bars` - candles of every interval built from per-second aggregates.

Behaviour and options:

* **Key**: the ``api_key`` option, else ``POLYGON_API_KEY``. REST calls send it as
  ``Authorization: Bearer`` (so it never appears in URLs or logs), websockets in the ``auth``
  message.
* **Symbols**: tickers per market (``markets`` option, default stocks, crypto, fx, indices). A
  market the key is not entitled to (403) is skipped; a rejected key (401) fails loudly and shows
  as the provider's status.
* **History**: aggregates with ``adjusted`` (option, default true), on nbfeed's UTC grid.
* **Live**: candles from per-second aggregates (``A``, ``XAS``, ``CAS``), one builder per
  (ticker, interval); the first live bar is completed from REST second aggregates
  (``seed_bars`` option, default true). Plans without per-second aggregates get live candles
  from the per-minute ones (``AM``, ``XA``, ``CA``): option ``aggregates`` = ``"auto"``
  (default: per-second until the server refuses them for a cluster, then per-minute for that
  cluster), ``"second"`` or ``"minute"``. Per-minute aggregates serve every interval from
  ``1m`` up; a ``1s`` stream on such a plan is refused with ``BadInterval``. Quotes (``tick``)
  merge trades (``T``/``XT``: price), quotes (``Q``/``XQ``/``C``: bid, ask), index values
  (``V``) and the day's volume (``av``), with ``prev_close`` from
  ``/v2/aggs/ticker/{ticker}/prev``. Channels are reference-counted across streams, so
  unsubscribing ``AAPL 1m`` keeps ``A.AAPL`` while ``AAPL 5m`` or ``AAPL tick`` still need it.
* **Market hours**: ``/v1/marketstatus/now`` is polled every ``market_status_every`` seconds
  (default 60; ``market_status=False`` turns it off) while streams are subscribed, and each
  stream's market is reported open or closed (:meth:`Provider.set_market_state`), so a closed
  market shows as ``closed``, not as a dead feed.
* **Feeds**: ``feed="realtime"`` (``ws_url``, ``NBFEED_POLYGON_WS_URL``, default
  ``wss://socket.polygon.io``) or ``feed="delayed"`` (``delayed_ws_url``,
  ``NBFEED_POLYGON_DELAYED_WS_URL``, default ``wss://delayed.polygon.io``). REST base:
  ``rest_url`` / ``NBFEED_POLYGON_REST_URL`` (default ``https://api.polygon.io``).

Failure behaviour: ``auth_failed`` on a cluster stops that socket for good and sets the provider
status (``failed`` when no cluster works, else ``degraded``) with the reason; everything else
keeps running, and a new subscription gives a refused cluster one fresh try. A channel the plan
does not include (a refused ``subscribe``) is reported as ``degraded`` naming it, except refused
per-second aggregates in ``auto`` mode, which switch that cluster to per-minute ones. Drops and
server closes reconnect with backoff (at most ``max_backoff``, default 3 s, so a feed is back
within seconds of the vendor) and resubscribe. REST follows the rate-limit policy of
:mod:`nbfeed.providers._http` (a 429 without ``Retry-After`` waits 15 s, Polygon's free tier
allows 5 calls a minute). Unreadable events are logged and skipped.
"""

from __future__ import annotations

import math
import os
import re
import threading
from typing import Any

from ...errors import BadInterval, BadRequest, UnknownSymbol, UpstreamError
from ...intervals import BAR_INTERVALS, INTERVALS, TICK, check_interval
from ...timeutil import now_ms
from .._config import positive_number, resolve_url, switch
from .._http import HttpError
from ..base import Provider
from ..dataset import CANDLE_OUTPUTS
from .bars import BarBuilder
from .rest import (
    DEFAULT_REST_URL,
    PolygonAuthError,
    PolygonREST,
    agg_row,
    market_of,
)
from .stream import (
    AGGREGATE_EVENTS,
    DEFAULT_DELAYED_WS_URL,
    DEFAULT_WS_URL,
    MINUTE_AGGREGATES,
    MINUTE_OF,
    SECOND_AGGREGATES,
    PolygonCluster,
    aggregate,
    event_symbol,
    quote_update,
    ws_name,
)

MARKETS = ("stocks", "crypto", "fx", "indices")
CLUSTER = {"stocks": "stocks", "otc": "stocks", "crypto": "crypto", "fx": "forex",
           "indices": "indices"}
_TICKER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:.\-]{0,39}$")
# channel prefixes per cluster: (per-second aggregate, trades, quotes)
_CHANNELS = {"stocks": ("A", "T", "Q"), "crypto": ("XAS", "XT", "XQ"), "forex": ("CAS", None, "C"),
             "indices": ("A", None, "V")}
AGGREGATE_MODES = ("auto", "second", "minute")


class PolygonProvider(Provider):
    """nbfeed's Polygon.io source. See the module docstring for options and behaviour."""

    name = "polygon"
    summary = "Polygon.io stocks, indices, forex and crypto (needs an API key)"
    intervals = INTERVALS

    @classmethod
    def setup_problem(cls, options: dict[str, Any]) -> str | None:
        if options.get("api_key") or os.environ.get("POLYGON_API_KEY", "").strip():
            return None
        return "needs an API key: set POLYGON_API_KEY (or the provider's api_key option)"

    def init(self) -> None:
        opts = self.options
        key = opts.get("api_key") or os.environ.get("POLYGON_API_KEY")
        if not isinstance(key, str) or not key.strip():
            raise PolygonAuthError("polygon needs an API key: set POLYGON_API_KEY or the "
                                   "provider's api_key option")
        self.api_key = key.strip()
        feed = opts.get("feed", "realtime")
        if feed not in ("realtime", "delayed"):
            raise BadRequest(f"polygon option feed must be 'realtime' or 'delayed', got {feed!r}")
        self.feed = feed
        self.rest_url = resolve_url(opts, "rest_url", "NBFEED_POLYGON_REST_URL", DEFAULT_REST_URL)
        if feed == "delayed":
            self.ws_url = resolve_url(opts, "delayed_ws_url", "NBFEED_POLYGON_DELAYED_WS_URL",
                                      DEFAULT_DELAYED_WS_URL)
        else:
            self.ws_url = resolve_url(opts, "ws_url", "NBFEED_POLYGON_WS_URL", DEFAULT_WS_URL)
        markets = opts.get("markets", MARKETS)
        if isinstance(markets, str):
            markets = [markets]
        bad = [m for m in markets if m not in CLUSTER]
        if bad:
            raise BadRequest(f"polygon option markets has unknown {bad}; valid: "
                             f"{', '.join(CLUSTER)}")
        self.markets = list(markets)
        self.rest = PolygonREST(self.api_key, self.rest_url, stop=self.stopping, log=self.log,
                                timeout=positive_number(opts, "polygon", "request_timeout", 15.0),
                                max_wait=positive_number(opts, "polygon", "max_wait", 90.0),
                                adjusted=switch(opts, "polygon", "adjusted", True))
        self.seed_bars = switch(opts, "polygon", "seed_bars", True)
        # A market-data feed should be back within seconds of the vendor: reconnect attempts
        # are at most 3 s apart (Polygon does not limit reconnects; one socket per cluster).
        self.max_backoff = positive_number(opts, "polygon", "max_backoff", 3.0)
        self.aggregates = opts.get("aggregates", "auto")
        if self.aggregates not in AGGREGATE_MODES:
            raise BadRequest(f"polygon option aggregates must be one of "
                             f"{', '.join(AGGREGATE_MODES)}, got {self.aggregates!r:.40}")
        #: Clusters whose live bars come from per-minute aggregates.
        self.minute_clusters: set[str] = (set(_CHANNELS) if self.aggregates == "minute"
                                          else set())
        self.market_status = switch(opts, "polygon", "market_status", True)
        self.market_status_every = positive_number(opts, "polygon", "market_status_every", 60.0)
        self._market_thread: threading.Thread | None = None
        self._market_said: dict[str, tuple[str, str]] = {}  # symbol -> (state, detail) sent
        self._lock = threading.RLock()
        self._meta: dict[str, dict] = {}
        self._known: set[str] | None = None
        self._clusters: dict[str, PolygonCluster] = {}
        self._channels: dict[str, set[tuple[str, str]]] = {}  # channel -> streams using it
        self._builders: dict[str, dict[str, BarBuilder]] = {}  # symbol -> interval -> builder
        self._tick_symbols: set[str] = set()
        self._quotes: dict[str, dict] = {}
        self._names: dict[tuple[str, str], str] = {}  # (cluster, ws name) -> ticker
        self._status = ("running", "")

    # ---- catalog ------------------------------------------------------------------------------

    def get_dataset(self) -> list[dict]:
        entries = []
        known: set[str] = set()
        skipped = []
        for market in self.markets:
            try:
                items = self.rest.tickers(market)
            except PolygonAuthError as exc:
                self._set_status("failed", str(exc))
                raise
            except HttpError as exc:
                if exc.status == 403:
                    skipped.append(market)
                    self.log.info("polygon: key not entitled to market %s; skipped", market)
                    continue
                raise
            for item in items:
                ticker = item.get("ticker")
                if not isinstance(ticker, str) or not _TICKER_RE.match(ticker) or ticker in known:
                    continue
                known.add(ticker)
                with self._lock:
                    self._meta[ticker] = item
                entries.append({
                    "source": self.name, "name": ticker,
                    "name_label": str(item.get("name") or ticker)[:200],
                    "type": "candlestick",
                    "categories": [c for c in (market, item.get("type"),
                                               item.get("primary_exchange"))
                                   if isinstance(c, str) and c],
                    "intervals": [*BAR_INTERVALS, TICK], "outputs": CANDLE_OUTPUTS})
        if skipped and not entries:
            raise UpstreamError(f"polygon: the API key is not entitled to any of the markets "
                                f"{', '.join(self.markets)}")
        with self._lock:
            self._known = known
        return entries

    def _check_symbol(self, symbol: Any) -> str:
        if not isinstance(symbol, str) or not _TICKER_RE.match(symbol):
            raise UnknownSymbol(f"polygon tickers look like 'AAPL', 'X:BTCUSD', 'C:EURUSD' or "
                                f"'I:SPX'; got {symbol!r:.60}")
        if market_of(symbol) not in self.markets and not (
                market_of(symbol) == "stocks" and "otc" in self.markets):
            raise UnknownSymbol(f"polygon ticker {symbol!r} is in market "
                                f"{market_of(symbol)!r}, which is not enabled "
                                f"(markets: {', '.join(self.markets)})")
        with self._lock:
            known = self._known
            if symbol in self._meta:
                return symbol
        if known is not None:
            raise UnknownSymbol(f"polygon has no active ticker {symbol!r}")
        if self.rest.http.gate.remaining() > 0:
            return symbol  # rate limited: do not park the caller just to check a name
        try:
            meta = self.rest.ticker(symbol)
        except PolygonAuthError:
            raise
        except UpstreamError as exc:
            self.log.warning("polygon: cannot check ticker %s: %s", symbol, exc)
            return symbol
        if meta is None:
            raise UnknownSymbol(f"polygon has no active ticker {symbol!r}")
        with self._lock:
            self._meta[symbol] = meta
        return symbol

    # ---- history ------------------------------------------------------------------------------

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        check_interval(interval, BAR_INTERVALS)
        self._check_symbol(symbol)
        try:
            return self.rest.aggs(symbol, interval, start, end, count)
        except PolygonAuthError as exc:
            self._set_status("failed", str(exc))
            raise

    # ---- live ---------------------------------------------------------------------------------

    def _stream_channels(self, symbol: str, interval: str) -> tuple[str, list[str]]:
        cluster = CLUSTER[market_of(symbol)]
        agg, trade, quote = _CHANNELS[cluster]
        if cluster in self.minute_clusters:
            agg = MINUTE_OF[agg]
        with self._lock:
            name = ws_name(symbol, self._meta.get(symbol))
            self._names[(cluster, name)] = symbol
        if interval != TICK:
            return cluster, [f"{agg}.{name}"]
        wanted = [quote]
        if trade is not None:
            wanted.append(trade)
        if cluster == "stocks":
            wanted.append(agg)  # the day's accumulated volume rides on A
        return cluster, [f"{ev}.{name}" for ev in wanted if ev]

    def subscribe(self, symbol: str, interval: str) -> None:
        check_interval(interval, INTERVALS)
        self._check_symbol(symbol)
        cluster, channels = self._stream_channels(symbol, interval)
        if interval == "1s" and cluster in self.minute_clusters:
            raise BadInterval(f"polygon: 1s bars need per-second aggregates, and the {cluster} "
                              "feed of this plan has per-minute ones only; use 1m or longer")
        start = None
        with self._lock:
            for ch in channels:
                self._channels.setdefault(ch, set()).add((symbol, interval))
            if interval == TICK:
                self._tick_symbols.add(symbol)
            else:
                self._builders.setdefault(symbol, {})[interval] = BarBuilder(symbol, interval)
            conn = self._clusters.get(cluster)
            if conn is not None and conn.state == "failed":
                # A new subscription is a user action: give a refused feed one fresh try
                # (with the channels it already had); it never retries on its own.
                conn.close()
                conn = self._clusters[cluster] = start = conn.renewed()
            if conn is None:
                conn = self._clusters[cluster] = start = PolygonCluster(
                    f"{self.ws_url}/{cluster}", cluster, api_key=self.api_key,
                    on_events=self._on_events, on_state=self._cluster_state,
                    stop=self.stopping, log=self.log, max_backoff=self.max_backoff,
                    on_refused=self._refused)
            conn.add(channels)
        if start is not None:
            start.start()
        self._watch_market()
        if interval == TICK:
            threading.Thread(target=self._load_prev_close, args=(symbol,), daemon=True,
                             name=f"polygon-prev-{symbol}").start()

    def unsubscribe(self, symbol: str, interval: str) -> None:
        cluster, channels = self._stream_channels(symbol, interval)
        with self._lock:
            if interval == TICK:
                self._tick_symbols.discard(symbol)
                self._quotes.pop(symbol, None)
            else:
                by_interval = self._builders.get(symbol, {})
                by_interval.pop(interval, None)
                if not by_interval:
                    self._builders.pop(symbol, None)
            unused = []
            for ch in channels:
                users = self._channels.get(ch)
                if users is None:
                    continue
                users.discard((symbol, interval))
                if not users:
                    del self._channels[ch]
                    unused.append(ch)
            if symbol not in self._builders and symbol not in self._tick_symbols:
                self._market_said.pop(symbol, None)  # told again if subscribed again
            conn = self._clusters.get(cluster)
            if conn is not None and conn.remove(unused):
                del self._clusters[cluster]
                conn.close()

    def _load_prev_close(self, symbol: str) -> None:
        try:
            prev = self.rest.prev_close(symbol)
        except UpstreamError as exc:
            self.log.warning("polygon: no previous close for %s: %s", symbol, exc)
            return
        if prev is not None:
            self._quote(symbol, None, prev_close=prev)

    def _on_events(self, cluster: str, events: list[dict]) -> None:
        """One frame of events from a cluster socket: update bars and quotes, publish once."""
        bars: dict[tuple[str, str], dict] = {}
        quotes: dict[str, dict | None] = {}
        seeds: list[tuple[BarBuilder, int, int]] = []
        with self._lock:
            for ev in events:
                name = event_symbol(ev)
                symbol = self._names.get((cluster, name)) if isinstance(name, str) else None
                if symbol is None:
                    continue
                try:
                    if ev.get("ev") in AGGREGATE_EVENTS:
                        self._add_aggregate(symbol, aggregate(ev), ev["ev"] in MINUTE_AGGREGATES,
                                            bars, seeds)
                        if "av" in ev:  # the day's volume so far
                            quotes[symbol] = self._merge_quote(symbol, ev.get("e"),
                                                               volume=float(ev["av"]))
                        continue
                    update = quote_update(ev)
                    if update is not None:
                        quotes[symbol] = self._merge_quote(symbol, update[0], **update[1])
                except (KeyError, TypeError, ValueError) as exc:
                    self.log.warning("polygon: unreadable %s event (%s): %.200r", ev.get("ev"),
                                     exc, ev)
        for (_, interval), row in bars.items():
            self.publish([row], interval=interval)
        if quotes:
            self.publish([q for q in quotes.values() if q is not None], interval=TICK)
        for builder, start, first in seeds:
            threading.Thread(target=self._seed, args=(builder, start, first), daemon=True,
                             name=f"polygon-seed-{builder.symbol}").start()

    def _add_aggregate(self, symbol: str, agg: tuple[int, float, float, float, float, float,
                                                     float],
                       per_minute: bool, bars: dict[tuple[str, str], dict],
                       seeds: list[tuple[BarBuilder, int, int]]) -> None:
        """Fold one per-second (or per-minute) aggregate into every bar stream of ``symbol``
        (lock held); a stream's first live bar that began before it is queued for seeding
        from REST. A per-minute aggregate never feeds a 1s bar."""
        for interval, builder in self._builders.get(symbol, {}).items():
            if per_minute and interval == "1s":
                continue
            fresh = builder.start is None
            row = builder.add(*agg)
            if row is not None:
                bars[(symbol, interval)] = row
                if fresh and self.seed_bars and row["time"] < agg[0]:
                    seeds.append((builder, row["time"], agg[0]))

    def _merge_quote(self, symbol: str, t: Any, **fields: float) -> dict | None:
        """Update the quote row of a ``tick`` stream (lock held); None if nobody wants it."""
        if symbol not in self._tick_symbols:
            return None
        row = self._quotes.get(symbol)
        if row is None:
            row = self._quotes[symbol] = {"time": now_ms(), "symbol": symbol}
        row.update(fields)
        if isinstance(t, int):
            row["time"] = t
        price, prev = row.get("price"), row.get("prev_close")
        if price is not None and prev:
            row["change"] = price - prev
            row["change_percent"] = (price - prev) / prev * 100.0
        return dict(row)

    def _quote(self, symbol: str, t: Any, **fields: float) -> None:
        with self._lock:
            row = self._merge_quote(symbol, t, **fields)
        if row is not None:
            self.publish([row], interval=TICK)

    def _seed(self, builder: BarBuilder, start: int, first: int) -> None:
        """Complete a stream's first live bar with the seconds before we subscribed."""
        cluster = CLUSTER[market_of(builder.symbol)]
        span = "minute" if cluster in self.minute_clusters else "second"
        try:
            aggs = self.rest.second_aggs(builder.symbol, start, first, span)
        except UpstreamError as exc:
            self.log.warning("polygon: cannot complete the first %s %s bar: %s",
                             builder.symbol, builder.interval, exc)
            return
        with self._lock:
            if self._builders.get(builder.symbol, {}).get(builder.interval) is not builder:
                return
            row = None
            for a in aggs:
                r = agg_row(builder.symbol, a)
                if r is not None:
                    row = builder.add(r["time"], r["open"], r["high"], r["low"], r["close"],
                                      r["volume"], r.get("vwap", math.nan)) or row
            row = builder.row() if row is not None else None
        if row is not None:
            self.publish([row], interval=builder.interval)

    # ---- refusals and market hours --------------------------------------------------------------

    def _refused(self, cluster: str, channel: str, message: str) -> None:
        """The server refused ``channel`` (socket thread): per-second aggregates switch the
        cluster to per-minute ones in ``auto`` mode; anything else is the status's business."""
        prefix = channel.partition(".")[0]
        if prefix in SECOND_AGGREGATES and self.aggregates == "auto":
            self._use_minute_aggregates(cluster, message)
            return
        self._set_status("degraded", f"polygon refused {channel} on the {cluster} feed: "
                                     f"{message}; the plan may not include it")

    def _use_minute_aggregates(self, cluster: str, why: str) -> None:
        with self._lock:
            if cluster in self.minute_clusters:
                return
            self.minute_clusters.add(cluster)
            conn = self._clusters.get(cluster)
            old, new = [], []
            for channel, users in list(self._channels.items()):
                prefix, _, name = channel.partition(".")
                if prefix not in SECOND_AGGREGATES or not users or CLUSTER[
                        market_of(next(iter(users))[0])] != cluster:
                    continue
                minute = f"{MINUTE_OF[prefix]}.{name}"
                self._channels.setdefault(minute, set()).update(users)
                del self._channels[channel]
                old.append(channel)
                new.append(minute)
            if conn is not None:
                conn.remove(old)
                conn.add(new)
            one_second = sorted(s for s, by in self._builders.items() if "1s" in by
                                and CLUSTER[market_of(s)] == cluster)
        self.log.warning("polygon %s: per-second aggregates refused (%s); live bars now come "
                         "from per-minute aggregates (%s)", cluster, why, ", ".join(new))
        if one_second:
            self._set_status("degraded", f"polygon {cluster}: 1s bars of {', '.join(one_second)} "
                                         "need per-second aggregates, which this plan lacks")

    def _watch_market(self) -> None:
        """Start the market-hours thread once (see the module docstring)."""
        if not self.market_status or self._market_thread is not None:
            return
        self._market_thread = threading.Thread(target=self._market_loop, daemon=True,
                                               name="polygon-market-status")
        self._market_thread.start()

    def _market_loop(self) -> None:
        while not self.stopping.is_set():
            with self._lock:
                symbols = {s for s in self._builders} | set(self._tick_symbols)
            if symbols:
                try:
                    self._report_markets(self.rest.market_status(), symbols)
                except HttpError as exc:
                    if exc.status in (403, 404):  # not in this plan: asking again will not help
                        self.log.warning("polygon: no market status (%s); closed markets will "
                                         "show as stale streams", exc)
                        return
                    self.log.warning("polygon: cannot read the market status: %s", exc)
                except UpstreamError as exc:
                    self.log.warning("polygon: cannot read the market status: %s", exc)
            self.stopping.wait(self.market_status_every)

    def _report_markets(self, status: dict, symbols: set[str]) -> None:
        by_state: dict[tuple[str, str], list[str]] = {}
        for symbol in sorted(symbols):
            market = market_of(symbol)
            if market in ("crypto", "fx"):
                value = (status.get("currencies") or {}).get(market)
                label = "crypto" if market == "crypto" else "forex"
            else:
                value = status.get("market")
                label = "US market"
            if not isinstance(value, str):
                continue
            state = "closed" if value == "closed" else "open"
            detail = f"{label} {value} (polygon market status)"
            with self._lock:
                if self._market_said.get(symbol) == (state, detail):
                    continue
                self._market_said[symbol] = (state, detail)
            by_state.setdefault((state, detail), []).append(symbol)
        for (state, detail), names in by_state.items():
            self.set_market_state(state, names, detail)

    # ---- status -------------------------------------------------------------------------------

    def _cluster_state(self, cluster: PolygonCluster, state: str, detail: str) -> None:
        with self._lock:
            clusters = list(self._clusters.values())
        failed = [c for c in clusters if c.failed]
        if state == "failed" or failed:
            reason = "; ".join(c.problem for c in failed) or detail
            healthy = [c for c in clusters if c not in failed]
            self._set_status("degraded" if healthy else "failed", reason)
        elif state == "reconnecting":
            self._set_status("degraded", f"polygon {cluster.cluster} feed: {detail}")
        elif all(c.state == "connected" for c in clusters):
            self._set_status("running", "")

    def _set_status(self, state: str, detail: str) -> None:
        if (state, detail) != self._status:
            self._status = (state, detail)
            self.set_status(state, detail)
