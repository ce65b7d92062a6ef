"""What each Workspace data endpoint answers, from the hub: rows shaped the way Workspace reads
them (tables of flat rows, a Plotly figure, ``[{label, value}]`` options). No HTTP here: the
handlers (:mod:`.handlers`) read parameters and reply; this module asks the hub and shapes.

Errors are :mod:`nbfeed.errors` exceptions naming the bad value (an unknown source or symbol, a
bad interval or date), plus :class:`NoData` when a dated request finds no bars: Workspace shows
the ``detail`` of the reply in the widget, which says more than an empty grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import NBFeedError, UnknownSource
from ...hub import Hub
from ...intervals import TICK
from ...jsonfast import nan_to_none
from ...timeutil import ms_to_iso, to_ms
from .quotes import QuoteBoard, snapshot_row

DAY_MS = 86_400_000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class NoData(NBFeedError):
    """A dated request for bars found none (HTTP 404, code ``no_data``)."""

    code = "no_data"
    http_status = 404


def known_source(hub: Hub, name: str) -> str:
    """``name`` if the hub runs that source, else UnknownSource listing the ones it runs."""
    if name not in hub.sources():
        raise UnknownSource(f"unknown source {name!r}; available: "
                            f"{', '.join(hub.sources()) or '(none)'}")
    return name


def _entry(hub: Hub, source: str, symbol: str) -> dict | None:
    return hub.catalog.lookup(source, symbol) if hub.catalog is not None else None


# ---- live quotes -----------------------------------------------------------------------------


async def quote_table(hub: Hub, board: QuoteBoard, source: str,
                      symbols: list[str]) -> list[dict]:
    """The live grid's snapshot: one full row per symbol, in the order asked for."""
    known_source(hub, source)
    if not symbols:
        return []
    latest = await board.snapshot(source, symbols)
    return [snapshot_row(sym, (_entry(hub, source, sym) or {}).get("name_label") or sym,
                         latest.get(sym)) for sym in symbols]


# ---- bars ------------------------------------------------------------------------------------


@dataclass
class Bars:
    """Bars of one symbol as a history table or chart asked for them."""

    symbol: str
    interval: str
    entry: dict | None  # the catalog entry (type, outputs), when listed
    rows: list[dict]

    @property
    def title(self) -> str:
        return f"{self.symbol} {self.interval}"


def default_interval(entry: dict | None) -> str:
    """``1d`` when the entry has it (or lists nothing), else its longest bar interval."""
    intervals = [i for i in (entry or {}).get("intervals") or [] if i != TICK]
    if not intervals or "1d" in intervals:
        return "1d"
    return intervals[-1]


def end_ms(value: str | None) -> int | None:
    """``end``: a plain date means that whole day (Workspace's date pickers are inclusive)."""
    if value is None:
        return None
    if _DATE_ONLY.match(value):
        return to_ms(value, "end") + DAY_MS
    return to_ms(value, "end")


async def bars(hub: Hub, source: str, symbol: str, *, interval: str | None, start: str | None,
               end: str | None, count: int) -> Bars:
    """The newest ``count`` bars of ``symbol`` in [start, end] (Workspace's inclusive dates);
    ``interval`` defaults to :func:`default_interval`. NoData for an empty dated span."""
    source = known_source(hub, source)
    entry = _entry(hub, source, symbol)
    interval = interval or default_interval(entry)
    start_ms = to_ms(start, "start") if start is not None else None
    stop_ms = end_ms(end)
    # Handed on as ISO text: a number below 1e11 would be read as epoch seconds (1966-1973).
    rows = await hub.history(source, symbol, interval, _iso(start_ms), _iso(stop_ms), count)
    if not rows and start_ms is not None:
        until = ms_to_iso(stop_ms)[:10] if stop_ms is not None else "now"
        raise NoData(f"no {interval} bars of {source}/{symbol} from "
                     f"{ms_to_iso(start_ms)[:10]} to {until}; choose other dates")
    return Bars(symbol, interval, entry, rows)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else ms_to_iso(ms)


def table_rows(rows: list[dict]) -> list[dict]:
    """Bars as table rows: ``date`` (ISO UTC) first, then every field but time and symbol."""
    out = []
    for row in rows:
        item: dict[str, Any] = {"date": ms_to_iso(row["time"])}
        for key, value in row.items():
            if key not in ("time", "symbol"):
                item[key] = nan_to_none(value)
        out.append(item)
    return out


def series_fields(rows: list[dict], entry: dict | None) -> list[str]:
    """The fields to draw as lines: the entry's outputs, else every numeric field but volume."""
    names = [o["name"] for o in (entry or {}).get("outputs") or [] if isinstance(o, dict)
             and o.get("name") not in (None, "volume")]
    if names:
        return names
    sample = rows[-1] if rows else {}
    return [k for k, v in sample.items() if k not in ("time", "symbol", "volume")
            and isinstance(v, (int, float)) and not isinstance(v, bool)] or ["close"]


def plotly_figure(bars: Bars, theme: str | None) -> dict:
    """A Plotly figure (as JSON) of bars: candlesticks, or one line per output of line sources."""
    rows = bars.rows
    x = [ms_to_iso(r["time"]) for r in rows]
    kind = (bars.entry or {}).get("type", "candlestick")
    has_ohlc = all(all(k in r for k in ("open", "high", "low", "close")) for r in rows)
    if kind != "line" and has_ohlc:
        trace: dict[str, Any] = {"type": "candlestick", "x": x, "name": bars.title}
        for k in ("open", "high", "low", "close"):
            trace[k] = [nan_to_none(r[k]) for r in rows]
        traces = [trace]
    else:
        traces = [{"type": "scatter", "mode": "lines", "x": x, "name": name,
                   "y": [nan_to_none(r.get(name)) for r in rows]}
                  for name in series_fields(rows, bars.entry)]
    dark = theme != "light"
    grid = "#3a3a3a" if dark else "#e5e5e5"
    return {"data": traces, "layout": {
        "title": {"text": bars.title},
        "showlegend": len(traces) > 1,
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": "#e6e6e6" if dark else "#1f1f1f"},
        "xaxis": {"type": "date", "rangeslider": {"visible": False}, "gridcolor": grid},
        "yaxis": {"side": "right", "gridcolor": grid},
        "margin": {"l": 10, "r": 60, "t": 40, "b": 30},
    }}


# ---- catalog and providers -------------------------------------------------------------------


async def symbol_table(hub: Hub, query: str, source: str | None, limit: int) -> list[dict]:
    """Catalog search results as table rows (lists joined for the grid)."""
    if source is not None:
        known_source(hub, source)
    results = await hub.search(query, source=source, limit=limit)
    return [{"symbol": e["name"], "name": e.get("name_label") or e["name"],
             "source": e.get("source"), "type": e.get("type"),
             "categories": ", ".join(e.get("categories") or []),
             "intervals": ", ".join(e.get("intervals") or [])} for e in results]


async def symbol_options(hub: Hub, source: str, kind: str) -> list[dict]:
    """``[{label, value}]`` of a source's symbols that stream live (``kind`` ``live``) or have
    bars (``bars``): the options of a symbol parameter too long to list in widgets.json."""
    entries = await hub.search("", source=known_source(hub, source), limit=1000)
    out = []
    for e in entries:
        intervals = e.get("intervals") or []
        live = TICK in intervals or e.get("type") == "quote"
        if (kind == "live" and live) or (kind == "bars" and any(i != TICK for i in intervals)):
            out.append({"label": f"{e['name']} - {e.get('name_label') or e['name']}",
                        "value": e["name"]})
    return out


def provider_table(hub: Hub) -> list[dict]:
    """The providers and their status, as table rows."""
    return [{"name": p["name"], "status": p["status"], "symbols": p["datasets"],
             "restarts": p["restarts"],
             "detail": p.get("detail") or p.get("populate_error") or ""}
            for p in hub.providers_info()]
