"""A fake Polygon.io on 127.0.0.1: reference tickers, aggregates and the websocket clusters.

Wire formats follow Polygon's public docs field by field (samples in ``data/polygon_*.json``):

REST (``fp.rest_url``, like ``https://api.polygon.io``; with ``path_prefix`` the routes sit under
that path, as behind a gateway); the key goes in ``apiKey=`` or ``Authorization: Bearer``. An
unknown key answers 401 ``{"status": "ERROR", "error": ...}``; a market the key is not entitled
to answers 403 ``NOT_AUTHORIZED``.
    ``/v3/reference/tickers`` (``market``, ``active``, ``ticker``, ``limit`` <= 1000) paged with
    ``next_url`` + ``cursor``; ``/v2/aggs/ticker/{t}/range/{mult}/{timespan}/{from}/{to}``
    (``adjusted``, ``sort``, ``limit`` <= 50000; ``from``/``to`` as dates or epoch ms, ``to``
    inclusive) paged with ``next_url``; ``/v2/aggs/ticker/{t}/prev``; ``/v1/marketstatus/now``
    (shape from Polygon's docs: ``market``, ``exchanges``, ``currencies``, ``serverTime``...;
    set ``fp.markets_open``). ``next_url`` is an absolute link to Polygon's own host
    (``https://api.polygon.io/...``, as in recorded answers - see ``data/polygon_rest_responses``)
    whatever host was asked; ``next_url_base`` changes it. Index aggregates (``I:``) carry no
    ``v``, ``vw`` or ``n`` (REST and websocket alike), as Polygon's index aggregates do: they
    are built from index values, not trades. Stocks and indices use
    US Eastern (standard time, UTC-5) session days, so daily bars start at 05:00 UTC and weekly
    bars on Sunday, as Polygon's do; crypto and forex days are UTC. ``page_cap`` makes pages
    shorter than ``limit`` to exercise paging. AAPL split 4:1 on 2020-08-31: ``adjusted=false``
    shows the old prices before it.
Websocket (``fp.ws_url`` + ``/stocks``, ``/crypto``, ``/forex``, ``/indices``; the delayed feed at
``fp.delayed_ws_url``)
    ``connected`` status on open, ``{"action": "auth", "params": KEY}`` -> ``auth_success`` or
    ``auth_failed`` (then the server closes), ``subscribe`` / ``unsubscribe`` with comma-separated
    ``EV.SYMBOL`` params, events in JSON arrays: ``A``/``AM``/``T``/``Q`` (stocks), ``XAS``/``XA``/
    ``XT``/``XQ`` (crypto, pairs like ``BTC-USD``), ``CAS``/``CA``/``C`` (forex, ``EUR/USD``),
    ``V``/``A`` (indices). Per-second aggregates are sent once per elapsed second (twice with
    ``repeat_aggregates``); a second authenticated connection to the same cluster with the same
    key gets ``max_connections``. ``revoke_key(key)`` makes a key invalid from then on.
    Each channel of a ``subscribe`` is answered by one status, in order: ``success``
    ("subscribed to: A.AAPL"), or, for a per-second aggregate channel (``A``, ``XAS``, ``CAS``)
    on a key missing from ``second_aggregates`` (a plan with per-minute aggregates only), an
    ``error`` whose message is ``refusal_message`` (``{channel}`` is replaced). The wording of
    Polygon's refusal was not found in a recording: the default, a bare ``"not authorized"``,
    is a guess, and clients should not depend on it.

Trading hours are only modelled through ``markets_open``: while a market is closed its clusters
send no events (per market: ``"stocks"`` also covers indices, ``"crypto"``, ``"fx"``); otherwise
every market trades around the clock here.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ._server import FakeHandler, FakeServer, FakeSocketHandler, PriceModel, load_sample, unit

_S, _M, _H, _D = 1000, 60_000, 3_600_000, 86_400_000
ET_OFFSET = -5 * _H  # US Eastern standard time; DST is not modelled
SPLIT_AAPL = (1598846400000, 4.0)  # 2020-08-31, 4-for-1
CLUSTER_OF_MARKET = {"stocks": "stocks", "otc": "stocks", "crypto": "crypto", "fx": "forex",
                     "indices": "indices"}
ALL_MARKETS = frozenset({"stocks", "crypto", "fx", "indices"})
BASE_PRICES = {"AAPL": 185.0, "AMZN": 150.0, "JPM": 170.0, "MSFT": 375.0, "NVDA": 490.0,
               "SPY": 475.0, "TSLA": 245.0, "X:BTCUSD": 42000.0, "X:ETHUSD": 2300.0,
               "C:EURUSD": 1.10, "C:USDJPY": 142.0, "I:SPX": 4740.0, "I:NDX": 16800.0}
_FIXED_SPANS = {"second": _S, "minute": _M, "hour": _H}


def _request_id() -> str:
    return uuid.uuid4().hex


def ws_symbol(ticker: str) -> str:
    """How a ticker is named on the websocket: X:BTCUSD -> BTC-USD, C:EURUSD -> EUR/USD."""
    if ticker.startswith("X:"):
        return f"{ticker[2:-3]}-{ticker[-3:]}"
    if ticker.startswith("C:"):
        return f"{ticker[2:5]}/{ticker[5:]}"
    return ticker


def ticker_of(market: str, name: str) -> str:
    if market == "crypto":
        return "X:" + name.replace("-", "")
    if market == "forex":
        return "C:" + name.replace("/", "")
    return name


class FakePolygon(FakeServer):
    """The fake; see the module docstring. ``api_keys`` maps each valid key to its markets."""

    name = "fake-polygon"

    def __init__(self, *, api_keys: dict[str, set[str]] | None = None, push_interval: float = 0.1,
                 page_cap: int = 50000, max_connections_per_cluster: int = 1,
                 path_prefix: str = "", next_url_base: str = "https://api.polygon.io",
                 second_aggregates: set[str] | None = None,
                 refusal_message: str = "not authorized") -> None:
        super().__init__(push_interval=push_interval)
        self.path_prefix = path_prefix.rstrip("/")
        self.next_url_base = next_url_base.rstrip("/")
        #: Keys whose plan has per-second aggregates (None: every key).
        self.second_aggregates = second_aggregates
        self.refusal_message = refusal_message
        #: Which markets trade now: "stocks" (stocks and indices), "crypto", "fx".
        self.markets_open = {"stocks": True, "crypto": True, "fx": True}
        self.api_keys = {k: set(v) for k, v in (api_keys or {"test-key": set(ALL_MARKETS)}).items()}
        self.page_cap = page_cap
        self.max_connections_per_cluster = max_connections_per_cluster
        self.tickers = load_sample("polygon_tickers.json")
        self.responses = load_sample("polygon_rest_responses.json")
        self.messages = load_sample("polygon_ws_messages.json")
        self.model = PriceModel(dict(BASE_PRICES), base_volume=600.0)
        self.by_ticker = {t["ticker"]: (market, t) for market, items in self.tickers.items()
                          for t in items}
        self.events_sent: list[dict] = []
        #: Send every per-second aggregate twice (again in the next frame).
        self.repeat_aggregates = False

    def revoke_key(self, key: str) -> None:
        """From now on ``key`` is unknown to REST and refused by websocket auth."""
        self.call(lambda: self.api_keys.pop(key, None))

    @property
    def rest_url(self) -> str:
        return self.http_url + self.path_prefix

    @property
    def ws_url(self) -> str:
        return self.ws_base

    @property
    def delayed_ws_url(self) -> str:
        return self.ws_base + "/delayed"

    def routes(self) -> list:
        at = self.path_prefix
        return [
            (at + r"/v3/reference/tickers", _Tickers),
            (at + r"/v1/marketstatus/now", _MarketStatus),
            (at + r"/v2/aggs/ticker/([^/]+)/prev", _Prev),
            (at + r"/v2/aggs/ticker/([^/]+)/range/([^/]+)/([^/]+)/([^/]+)/([^/]+)", _Aggs),
            (r"/(delayed/)?(stocks|crypto|forex|indices|options)", _Cluster),
        ]

    def market_open(self, ticker: str) -> bool:
        market = self.market_of(ticker)
        key = {"crypto": "crypto", "fx": "fx"}.get(market or "", "stocks")
        return self.markets_open.get(key, True)

    def market_status(self) -> dict:
        """The ``/v1/marketstatus/now`` body for the current ``markets_open``."""
        stocks = "open" if self.markets_open.get("stocks", True) else "closed"
        return {"afterHours": False, "earlyHours": False, "market": stocks,
                "serverTime": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "exchanges": {"nasdaq": stocks, "nyse": stocks, "otc": stocks},
                "currencies": {"crypto": "open" if self.markets_open.get("crypto", True)
                               else "closed",
                               "fx": "open" if self.markets_open.get("fx", True) else "closed"},
                "indicesGroups": {"s_and_p": stocks, "nasdaq": stocks, "dow_jones": stocks}}

    def rate_limit_body(self) -> dict:
        return self.responses["rate_limited"]

    def market_of(self, ticker: str) -> str | None:
        entry = self.by_ticker.get(ticker)
        return entry[0] if entry else None

    # ---- bars ---------------------------------------------------------------------------------

    def session_offset(self, ticker: str) -> int:
        return ET_OFFSET if self.market_of(ticker) in ("stocks", "indices", None) else 0

    def bar_start(self, ticker: str, t: int, timespan: str, mult: int) -> int:
        if timespan in _FIXED_SPANS:
            step = _FIXED_SPANS[timespan] * mult
            return t - t % step
        off = self.session_offset(ticker)
        local = datetime.fromtimestamp((t + off) / 1000, tz=timezone.utc)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if timespan == "week":  # Polygon weeks start on Sunday
            day -= timedelta(days=(day.weekday() + 1) % 7)
        elif timespan == "month":
            day = day.replace(day=1)
        elif timespan == "quarter":
            day = day.replace(day=1, month=(day.month - 1) // 3 * 3 + 1)
        elif timespan == "year":
            day = day.replace(day=1, month=1)
        return int(day.timestamp() * 1000) - off

    def bar_next(self, ticker: str, start: int, timespan: str, mult: int) -> int:
        if timespan in _FIXED_SPANS:
            return start + _FIXED_SPANS[timespan] * mult
        if timespan in ("day", "week"):  # fixed-offset session days: no DST
            return start + (_D if timespan == "day" else 7 * _D)
        probe = {"month": 32 * _D, "quarter": 93 * _D, "year": 367 * _D}[timespan]
        return self.bar_start(ticker, start + probe, timespan, 1)

    def agg(self, ticker: str, start: int, end: int, adjusted: bool, now: int) -> dict:
        o, h, low, c, v = self.model.bar(ticker, start, end, upto=now if now < end else None)
        factor = 1.0
        if not adjusted and ticker == "AAPL" and start < SPLIT_AAPL[0]:
            factor = SPLIT_AAPL[1]
        v = v / factor
        if ticker.startswith("I:"):  # index aggregates: values, no trades, so no v/vw/n
            return {"o": round(o, 4), "c": round(c, 4), "h": round(h, 4), "l": round(low, 4),
                    "t": start}
        return {"v": round(v, 4) if ticker.startswith(("X:", "C:")) else float(int(v)),
                "vw": round((o + c) / 2 * factor, 4), "o": round(o * factor, 4),
                "c": round(c * factor, 4), "h": round(h * factor, 4),
                "l": round(low * factor, 4), "t": start, "n": int(v / 7) + 1}

    def aggs(self, ticker: str, mult: int, timespan: str, start: int, end: int,
             adjusted: bool, now: int | None = None) -> list[dict]:
        """Every bar whose start is in ``[start, end]`` and not in the future, ascending."""
        now = int(time.time() * 1000) if now is None else now
        out = []
        t = self.bar_start(ticker, start, timespan, mult)
        if t < start:
            t = self.bar_next(ticker, t, timespan, mult)
        while t <= min(end, now):
            out.append(self.agg(ticker, t, self.bar_next(ticker, t, timespan, mult), adjusted,
                                now))
            t = self.bar_next(ticker, t, timespan, mult)
        return out

    # ---- live ---------------------------------------------------------------------------------

    def tick(self) -> None:
        now = int(time.time() * 1000)
        for handler in list(self._live.values()):
            if isinstance(handler, _Cluster):
                handler.push(now)

    def connections(self, cluster: str | None = None) -> list:
        """Recorded connections (optionally of one cluster), newest last."""
        with self._cond:
            return [s for s in self.sockets
                    if cluster is None or s.data.get("cluster") == cluster]

    def subscriptions(self) -> list[set[str]]:
        return self.call(lambda: [set(h.subs) for h in self._live.values()
                                  if isinstance(h, _Cluster)])


# ---- REST --------------------------------------------------------------------------------------


class _PolygonHandler(FakeHandler):
    market_needed: str | None = None

    @property
    def fake(self) -> FakePolygon:
        return self.settings["fake"]

    def key(self) -> str | None:
        auth = self.request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        return self.get_query_argument("apiKey", None)

    def check_key(self, market: str | None) -> bool:
        """Answer 401/403 and return False when the key cannot have ``market``."""
        key = self.key()
        if not key:
            self.write_json(dict(self.fake.responses["no_key"], request_id=_request_id()), 401)
            return False
        if key not in self.fake.api_keys:
            self.write_json(dict(self.fake.responses["unknown_key"], request_id=_request_id()),
                            401)
            return False
        if market is not None and market not in self.fake.api_keys[key]:
            self.write_json(dict(self.fake.responses["not_authorized"],
                                 request_id=_request_id()), 403)
            return False
        return True

    def bad_request(self, message: str) -> None:
        self.write_json({"status": "ERROR", "request_id": _request_id(), "error": message}, 400)


class _Tickers(_PolygonHandler):
    def get(self) -> None:
        fake = self.fake
        cursor = self.get_query_argument("cursor", None)
        args = {k: self.get_query_argument(k) for k in self.request.query_arguments
                if k not in ("apiKey", "cursor")}
        if cursor is not None:
            try:
                args = dict(parse_qsl(base64.urlsafe_b64decode(cursor.encode()).decode()))
            except ValueError:
                self.bad_request("invalid cursor")
                return
        market = args.get("market")
        if market is not None and market not in (*CLUSTER_OF_MARKET, "otc"):
            self.bad_request(f"invalid market {market!r}")
            return
        if not self.check_key(market):
            return
        try:
            limit = int(args.get("limit", 100))
            offset = int(args.get("offset", 0))
        except ValueError:
            self.bad_request("limit must be an integer")
            return
        if not 1 <= limit <= 1000:
            self.bad_request("limit must be between 1 and 1000")
            return
        active = args.get("active", "true") == "true"
        items = [t for m, ts in fake.tickers.items() if market in (None, m) for t in ts
                 if t["active"] == active and args.get("ticker") in (None, t["ticker"])]
        items.sort(key=lambda t: t["ticker"])
        size = min(limit, fake.page_cap)
        page = items[offset:offset + size]
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": _request_id(),
                                "count": len(page)}
        if offset + size < len(items):
            nxt = dict(args, offset=str(offset + size))
            token = base64.urlsafe_b64encode(urlencode(nxt).encode()).decode()
            body["next_url"] = f"{fake.next_url_base}/v3/reference/tickers?cursor={token}"
        self.write_json(body)


def _parse_time(value: str, offset: int, end: bool) -> int | None:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        ms = int(day.timestamp() * 1000) - offset
        return ms + _D - 1 if end else ms
    if value.isdigit():
        return int(value)
    return None


class _Aggs(_PolygonHandler):
    def get(self, ticker: str, mult_s: str, timespan: str, from_s: str, to_s: str) -> None:
        fake = self.fake
        market = fake.market_of(ticker)
        if not self.check_key(market):
            return
        if timespan not in ("second", "minute", "hour", "day", "week", "month", "quarter",
                            "year"):
            self.bad_request(f"invalid timespan {timespan!r}")
            return
        if not mult_s.isdigit() or int(mult_s) < 1 or (timespan not in _FIXED_SPANS and
                                                       mult_s != "1"):
            self.bad_request(f"invalid multiplier {mult_s!r}")
            return
        mult = int(mult_s)
        offset = fake.session_offset(ticker)
        start, end = _parse_time(from_s, offset, False), _parse_time(to_s, offset, True)
        if start is None or end is None:
            self.bad_request("from and to must be YYYY-MM-DD dates or millisecond timestamps")
            return
        cursor = self.get_query_argument("cursor", None)
        args = {k: self.get_query_argument(k) for k in ("adjusted", "sort", "limit")
                if self.get_query_argument(k, None) is not None}
        if cursor is not None:
            args = dict(parse_qsl(base64.urlsafe_b64decode(cursor.encode()).decode()))
        adjusted = args.get("adjusted", "true") != "false"
        sort = args.get("sort", "asc")
        try:
            limit = int(args.get("limit", 5000))
        except ValueError:
            self.bad_request("limit must be an integer")
            return
        if not 1 <= limit <= 50000 or sort not in ("asc", "desc"):
            self.bad_request("limit must be 1..50000 and sort asc or desc")
            return
        bars = fake.aggs(ticker, mult, timespan, start, end, adjusted) if market else []
        if sort == "desc":
            bars.reverse()
        size = min(limit, fake.page_cap)
        page = bars[:size]
        body: dict[str, Any] = {"ticker": ticker, "queryCount": len(page),
                                "resultsCount": len(page), "adjusted": adjusted}
        if page:
            body["results"] = page
        body.update(status="OK", request_id=_request_id(), count=len(page))
        if len(bars) > size:
            token = base64.urlsafe_b64encode(urlencode(
                {"adjusted": str(adjusted).lower(), "limit": limit, "sort": sort}).encode()
            ).decode()
            if sort == "asc":
                nfrom, nto = bars[size]["t"], end
            else:
                nfrom, nto = start, bars[size]["t"]
            body["next_url"] = (f"{fake.next_url_base}/v2/aggs/ticker/{ticker}/range/{mult}/"
                                f"{timespan}/{nfrom}/{nto}?cursor={token}")
        self.write_json(body)


class _MarketStatus(_PolygonHandler):
    def get(self) -> None:
        if self.check_key(None):
            self.write_json(self.fake.market_status())


class _Prev(_PolygonHandler):
    def get(self, ticker: str) -> None:
        fake = self.fake
        market = fake.market_of(ticker)
        if not self.check_key(market):
            return
        body = copy.deepcopy(fake.responses["prev"])
        body["request_id"] = _request_id()
        body["ticker"] = ticker
        if market is None:
            body.update(queryCount=0, resultsCount=0, count=0)
            body.pop("results")
        else:
            now = int(time.time() * 1000)
            today = fake.bar_start(ticker, now, "day", 1)
            bar = fake.agg(ticker, today - _D, today, True, now)
            body["results"] = [dict(bar, T=ticker)]
        self.write_json(body)


# ---- websocket ---------------------------------------------------------------------------------


class _Cluster(FakeSocketHandler):
    @property
    def fake(self) -> FakePolygon:
        return self.settings["fake"]

    def opened(self, delayed: str | None = None, cluster: str = "stocks") -> None:
        self.cluster = cluster
        self.delayed = bool(delayed)
        self.key: str | None = None
        self.subs: set[str] = set()
        self._cursor: dict[str, int] = {}
        self._volume: dict[str, float] = {}
        self._previous_aggs: list[dict] = []
        self.record.data.update(cluster=cluster, feed="delayed" if delayed else "realtime",
                                authenticated=False)
        self.send_json(self.fake.messages["connected"])

    def status(self, status: str, message: str) -> None:
        self.send_json([{"ev": "status", "status": status, "message": message}])

    def received(self, text: str) -> None:
        try:
            msg = json.loads(text)
            action, params = msg["action"], msg.get("params", "")
        except (ValueError, KeyError, TypeError):
            self.status("error", "invalid message")
            return
        if action == "auth":
            self.authenticate(params)
            return
        if self.key is None:
            self.status("error", "not authenticated")
            return
        if action not in ("subscribe", "unsubscribe") or not isinstance(params, str):
            self.status("error", f"unknown action {action!r}")
            return
        replies = []
        for channel in (p.strip() for p in params.split(",")):
            if not channel:
                continue
            if action == "subscribe" and not self.plan_allows(channel):
                replies.append({"ev": "status", "status": "error",
                                "message": self.fake.refusal_message.replace("{channel}",
                                                                             channel)})
                continue
            if action == "subscribe":
                self.subs.add(channel)
                self._cursor[channel] = int(time.time()) * 1000
                replies.append({"ev": "status", "status": "success",
                                "message": f"subscribed to: {channel}"})
            else:
                self.subs.discard(channel)
                replies.append({"ev": "status", "status": "success",
                                "message": f"unsubscribed to: {channel}"})
        self.record.data["subs"] = sorted(self.subs)
        if replies:
            self.send_json(replies)

    def plan_allows(self, channel: str) -> bool:
        """Per-second aggregates only for keys in ``second_aggregates`` (None: all keys)."""
        allowed = self.fake.second_aggregates
        return (allowed is None or self.key in allowed
                or channel.partition(".")[0] not in ("A", "XAS", "CAS"))

    def authenticate(self, key: Any) -> None:
        fake = self.fake
        markets = fake.api_keys.get(key) if isinstance(key, str) else None
        allowed = markets is not None and any(CLUSTER_OF_MARKET.get(m) == self.cluster
                                              for m in markets)
        if not allowed:
            self.send_json(fake.messages["auth_failed"])
            self.record.close_reason = "auth failed"
            self.close(1008, "authentication failed")
            return
        same = [h for h in fake._live.values() if isinstance(h, _Cluster) and h is not self
                and h.key == key and h.cluster == self.cluster and h.delayed == self.delayed]
        if len(same) >= fake.max_connections_per_cluster:
            self.send_json(fake.messages["max_connections"])
            self.record.close_reason = "max connections"
            self.close(1008, "max connections")
            return
        self.key = key
        self.record.data["authenticated"] = True
        self.send_json(fake.messages["auth_success"])

    def push(self, now: int) -> None:
        if self.key is None or not self.subs:
            return
        events: list[dict] = []
        if self.fake.repeat_aggregates:
            events.extend(copy.deepcopy(self._previous_aggs))  # a replay, as after a hiccup
        for channel in sorted(self.subs):
            ev, _, name = channel.partition(".")
            ticker = ticker_of(self.cluster, name)
            if self.fake.market_of(ticker) is None or not self.fake.market_open(ticker):
                continue
            events.extend(self.events_for(ev, name, ticker, channel, now))
        self._previous_aggs = [e for e in events if "s" in e and "e" in e]
        if events:
            self.fake.events_sent.extend(events)
            self.send_json(events)

    def events_for(self, ev: str, name: str, ticker: str, channel: str, now: int) -> list[dict]:
        fake = self.fake
        sample = fake.messages["events"]
        price = fake.model.price(ticker, now)
        out: list[dict] = []
        if ev in ("A", "XAS", "CAS", "AM", "XA", "CA"):
            step = _M if ev in ("AM", "XA", "CA") else _S
            cursor = self._cursor.get(channel, now - now % step)
            cursor -= cursor % step
            cursor = max(cursor, now - now % step - 5 * step)  # no flood after a stall
            while cursor + step <= now:
                out.append(self.aggregate(ev, name, ticker, cursor, cursor + step))
                cursor += step
            self._cursor[channel] = cursor
        elif ev in ("T", "XT"):
            event = copy.deepcopy(sample[ev])
            size = int(1 + 300 * unit("ts", ticker, now)) if ev == "T" else round(
                0.001 + unit("ts", ticker, now), 4)
            event.update(p=round(price, 4), s=size, t=now)
            event["sym" if ev == "T" else "pair"] = name
            out.append(event)
        elif ev in ("Q", "XQ"):
            event = copy.deepcopy(sample[ev])
            spread = max(0.01, price * 0.0001)
            event.update(bp=round(price - spread / 2, 4), ap=round(price + spread / 2, 4), t=now)
            event["sym" if ev == "Q" else "pair"] = name
            out.append(event)
        elif ev == "C":
            spread = price * 0.00003
            out.append(dict(sample["C"], p=name, a=round(price + spread, 5),
                            b=round(price - spread, 5), t=now))
        elif ev == "V":
            out.append(dict(sample["V"], T=name, val=round(price, 2), t=now))
        return out

    def aggregate(self, ev: str, name: str, ticker: str, start: int, end: int) -> dict:
        fake = self.fake
        bar = fake.agg(ticker, start, end, True, end)  # the same numbers REST serves
        day = start - start % _D
        if self._volume.get(f"{ticker}:day") != day:
            self._volume[f"{ticker}:day"] = day
            self._volume[ticker] = float(int(5_000_000 * unit("av", ticker, day)))
        self._volume[ticker] += bar.get("v", 0.0)
        base = "A" if ev == "AM" else ("XAS" if ev == "XA" else ("CAS" if ev == "CA" else ev))
        event = copy.deepcopy(fake.messages["events"][base])
        event.update(ev=ev, o=bar["o"], h=bar["h"], l=bar["l"], c=bar["c"], s=start, e=end)
        if ticker.startswith("I:"):
            # Index aggregates: ev, sym, op, o, c, h, l, s, e - values, not trades.
            for key in ("v", "av", "vw", "a", "z"):
                event.pop(key, None)
            event["op"] = round(fake.model.price(ticker, day), 4)
            event["sym"] = name
            return event
        if "v" in event:
            event["v"] = bar["v"]
        if "vw" in event:
            event["vw"] = bar["vw"]
        if "av" in event:
            event["av"] = self._volume[ticker]
            event["op"] = round(fake.model.price(ticker, day), 4)
        if "sym" in event:
            event["sym"] = name
        else:
            event["pair"] = name
        return event
