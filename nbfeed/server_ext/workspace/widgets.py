"""widgets.json and apps.json, generated from the running providers and the symbol catalog.

Per source with live quotes (any catalog entry with ``tick`` in its intervals, or of type
``quote``): a ``live_grid`` of quotes. Per source with bars: a history table and a chart
(candlestick when the source lists candlestick entries, else a close line). Once: a symbol search
table and a provider status table. Plus the tables notebooks publish
(:mod:`.published`). apps.json lays these out as one app, a tab per source.

Symbol params list the catalog inline while it is small (``INLINE_OPTIONS_MAX``); above that they
become ``endpoint`` params whose ``optionsEndpoint`` serves the list, so widgets.json stays small.

Every endpoint is relative to the backend base; ``prefix`` is prepended for the copy served at the
server root (whose endpoints then point back under ``<base_url>nbfeed/workspace/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...intervals import BAR_INTERVALS, TICK
from ...openbb.entries import WIDGET_PREFIX
from .quotes import quote_columns

INLINE_OPTIONS_MAX = 200
SAMPLE_LIMIT = 1000  # the catalog's largest page
DEFAULT_LIVE_SYMBOLS = 5
CATEGORY = "nbfeed"
HISTORY_START = "$currentDate-3M"
HISTORY_END = "$currentDate"


@dataclass
class SourceView:
    """What widgets.json needs to know about one source (from providers_info + the catalog)."""

    name: str
    status: str = "running"
    count: int = 0
    live: list[dict] = field(default_factory=list)   # entries with live quotes (sampled)
    bars: list[dict] = field(default_factory=list)   # entries with bar intervals (sampled)
    intervals: list[str] = field(default_factory=list)
    chart: str = "candlestick"  # or "line", or "mixed" (the chart follows each entry's type)

    @property
    def large(self) -> bool:
        return self.count > INLINE_OPTIONS_MAX


def describe_sources(hub: Any) -> list[SourceView]:
    """A :class:`SourceView` per provider that has catalog entries (sampled, at most 1000)."""
    views = []
    counts = hub.catalog.sources() if hub.catalog is not None else {}
    for info in hub.providers_info():
        name = info["name"]
        count = counts.get(name, 0)
        if not count:
            continue
        entries = hub.catalog.search("", source=name, limit=SAMPLE_LIMIT)
        view = SourceView(name=name, status=info.get("status", ""), count=count)
        seen: set[str] = set()
        candles = lines = False
        for entry in entries:
            intervals = entry.get("intervals") or []
            if TICK in intervals or entry.get("type") == "quote":
                view.live.append(entry)
            bar = [i for i in intervals if i != TICK]
            if bar:
                view.bars.append(entry)
                seen.update(bar)
                candles = candles or entry.get("type") == "candlestick"
                lines = lines or entry.get("type") == "line"
        view.intervals = [i for i in BAR_INTERVALS if i in seen]
        view.chart = ("mixed" if candles and lines else "candlestick" if candles else "line")
        views.append(view)
    return views


def slug(name: str) -> str:
    """A source name as a widget-id fragment (ids stay plain identifiers)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def widget_ids(source: str) -> dict[str, str]:
    s = slug(source)
    return {"quotes": f"nbfeed_quotes_{s}", "history": f"nbfeed_history_{s}",
            "chart": f"nbfeed_chart_{s}"}


_CHART_WORDS = {"candlestick": "Candlestick", "line": "Line", "mixed": "Candlestick or line"}
SEARCH_ID = "nbfeed_symbols"
PROVIDERS_ID = "nbfeed_providers"


def _options(entries: list[dict]) -> list[dict]:
    return [{"label": f"{e['name']} - {e.get('name_label') or e['name']}", "value": e["name"]}
            for e in entries]


def _symbol_param(view: SourceView, entries: list[dict], kind: str, prefix: str, *,
                  multi: bool) -> dict:
    names = [e["name"] for e in entries]
    if multi:
        value: Any = names[:DEFAULT_LIVE_SYMBOLS]
    else:
        value = names[0] if names else ""
    param: dict[str, Any] = {
        "paramName": "symbol", "label": "Symbols" if multi else "Symbol", "value": value,
        "description": f"{'Symbols' if multi else 'Symbol'} of {view.name}",
    }
    if multi:
        param["multiSelect"] = True
    if view.large:
        param["type"] = "endpoint"
        param["optionsEndpoint"] = f"{prefix}options/{view.name}/{kind}"
    else:
        param["type"] = "text"
        param["options"] = _options(entries)
    return param


def _bar_params(view: SourceView, prefix: str) -> list[dict]:
    intervals = view.intervals
    default = "1d" if "1d" in intervals else intervals[-1]
    return [
        _symbol_param(view, view.bars, "bars", prefix, multi=False),
        {"paramName": "interval", "label": "Interval", "type": "text", "value": default,
         "description": "Bar length", "options": [{"label": i, "value": i} for i in intervals]},
        {"paramName": "start", "label": "Start", "type": "date", "value": HISTORY_START,
         "description": "First bar (inclusive)"},
        {"paramName": "end", "label": "End", "type": "date", "value": HISTORY_END,
         "description": "Last day (inclusive)"},
    ]


def history_columns() -> list[dict]:
    cols: list[dict] = [{"field": "date", "headerName": "Date", "cellDataType": "date",
                         "chartDataType": "time", "pinned": "left"}]
    for name in ("open", "high", "low", "close"):
        cols.append({"field": name, "headerName": name.title(), "cellDataType": "number",
                     "chartDataType": "series"})
    cols.append({"field": "volume", "headerName": "Volume", "cellDataType": "number",
                 "chartDataType": "series", "formatterFn": "int"})
    return cols


def _source_widget(view: SourceView, title: str, description: str, wtype: str,
                   endpoint: str, size: tuple[int, int], **more: Any) -> dict:
    """The keys every widget of a source has (in the nbfeed category, under the source's
    name), then ``more``."""
    return {"name": f"{title} - {view.name}", "description": description, "type": wtype,
            "category": CATEGORY, "subCategory": view.name, "endpoint": endpoint,
            "gridData": {"w": size[0], "h": size[1]}, **more}


def source_widgets(view: SourceView, capability: str, prefix: str) -> dict[str, dict]:
    """The widgets of one source (live grid, history table, chart), keyed by id."""
    ids = widget_ids(view.name)
    out: dict[str, dict] = {}
    if view.live:
        out[ids["quotes"]] = _source_widget(
            view, "Live quotes", f"Streaming quotes from nbfeed's {view.name} provider",
            "live_grid", f"{prefix}quotes/{view.name}", (20, 12),
            wsEndpoint=f"{prefix}ws/{capability}/quotes/{view.name}",
            data={"wsRowIdColumn": "symbol",
                  "table": {"showAll": True, "columnsDefs": quote_columns()}},
            params=[_symbol_param(view, view.live, "live", prefix, multi=True)])
    if view.bars and view.intervals:
        # Line entries have their own output fields: let Workspace infer those columns.
        columns = {"columnsDefs": history_columns()} if view.chart == "candlestick" else {}
        out[ids["history"]] = _source_widget(
            view, "Price history", f"Bars from nbfeed's {view.name} provider (history cache)",
            "table", f"{prefix}history/{view.name}", (40, 10),
            data={"table": {"showAll": True, "enableCharts": True, **columns}},
            params=_bar_params(view, prefix))
        out[ids["chart"]] = _source_widget(
            view, "Chart", f"{_CHART_WORDS[view.chart]} chart of {view.name} bars", "chart",
            f"{prefix}chart/{view.name}", (20, 12), params=_bar_params(view, prefix))
    return out


def common_widgets(views: list[SourceView], prefix: str) -> dict[str, dict]:
    """Symbol search and provider status."""
    sources = [{"label": "All sources", "value": ""}] + [
        {"label": v.name, "value": v.name} for v in views]
    return {
        SEARCH_ID: {
            "name": "Symbol search", "description": "Search nbfeed's symbol catalog",
            "type": "table", "category": CATEGORY, "subCategory": "Catalog",
            "endpoint": f"{prefix}symbols", "gridData": {"w": 20, "h": 10},
            "data": {"table": {"showAll": True, "columnsDefs": [
                {"field": "symbol", "headerName": "Symbol", "cellDataType": "text",
                 "pinned": "left"},
                {"field": "name", "headerName": "Name", "cellDataType": "text"},
                {"field": "source", "headerName": "Source", "cellDataType": "text"},
                {"field": "type", "headerName": "Type", "cellDataType": "text"},
                {"field": "categories", "headerName": "Categories", "cellDataType": "text"},
                {"field": "intervals", "headerName": "Intervals", "cellDataType": "text"},
            ]}},
            "params": [
                {"paramName": "query", "label": "Search", "type": "text", "value": "",
                 "description": "Symbol, name or category words"},
                {"paramName": "source", "label": "Source", "type": "text", "value": "",
                 "description": "Only this source", "options": sources},
            ],
        },
        PROVIDERS_ID: {
            "name": "Providers", "description": "nbfeed's data providers and their status",
            "type": "table", "category": CATEGORY, "subCategory": "Catalog",
            "endpoint": f"{prefix}providers", "gridData": {"w": 20, "h": 6},
            "refetchInterval": 10_000, "staleTime": 5_000,
            "data": {"table": {"showAll": True, "columnsDefs": [
                {"field": "name", "headerName": "Provider", "cellDataType": "text",
                 "pinned": "left"},
                {"field": "status", "headerName": "Status", "cellDataType": "text"},
                {"field": "symbols", "headerName": "Symbols", "cellDataType": "number",
                 "formatterFn": "int"},
                {"field": "restarts", "headerName": "Restarts", "cellDataType": "number",
                 "formatterFn": "int"},
                {"field": "detail", "headerName": "Detail", "cellDataType": "text"},
            ]}},
        },
    }


def build_widgets(views: list[SourceView], capability: str, prefix: str = "",
                  published: dict[str, dict] | None = None) -> dict[str, dict]:
    """The whole widgets.json object. ``published`` entries have endpoints without prefix."""
    widgets: dict[str, dict] = {}
    for view in views:
        widgets.update(source_widgets(view, capability, prefix))
    widgets.update(common_widgets(views, prefix))
    for wid, entry in (published or {}).items():
        widgets[wid] = {**entry, "endpoint": prefix + entry["endpoint"]}
    return widgets


def _item(wid: str, x: int, y: int, w: int, h: int, groups: list[str] | None = None) -> dict:
    return {"i": wid, "x": x, "y": y, "w": w, "h": h, "groups": groups or []}


def build_apps(views: list[SourceView], widgets: dict[str, dict]) -> list[dict]:
    """One app with a tab per source (quotes, chart, history) and a catalog tab.

    Only widgets present in ``widgets`` are laid out; a source's chart and history table share
    the symbol and interval through parameter groups.
    """
    tabs: dict[str, dict] = {}
    groups: list[dict] = []
    for view in views:
        ids = widget_ids(view.name)
        layout: list[dict] = []
        has_quotes = ids["quotes"] in widgets
        has_bars = ids["chart"] in widgets
        if has_quotes:
            layout.append(_item(ids["quotes"], 0, 0, 20 if has_bars else 40, 12))
        if has_bars:
            linked = [ids["chart"], ids["history"]]
            names = []
            for param in ("symbol", "interval"):
                name = f"Group {len(groups) + 1}"
                names.append(name)
                entry = next(p for p in widgets[ids["chart"]]["params"]
                             if p["paramName"] == param)
                groups.append({"name": name,
                               "type": "endpointParam" if entry["type"] == "endpoint"
                               else "param",
                               "paramName": param, "defaultValue": entry["value"],
                               "widgetIds": linked})
            layout.append(_item(ids["chart"], 20 if has_quotes else 0, 0,
                                20 if has_quotes else 40, 12, names))
            layout.append(_item(ids["history"], 0, 12, 40, 10, names))
        if layout:
            tab_id = f"source-{slug(view.name)}"
            tabs[tab_id] = {"id": tab_id, "name": view.name, "layout": layout}
    catalog = [_item(SEARCH_ID, 0, 0, 24, 12), _item(PROVIDERS_ID, 24, 0, 16, 12)]
    tabs["catalog"] = {"id": "catalog", "name": "Catalog", "layout": catalog}
    published = [wid for wid in widgets if wid.startswith(WIDGET_PREFIX)]
    if published:
        tabs["notebook"] = {"id": "notebook", "name": "From notebooks", "layout": [
            _item(wid, 20 * (n % 2), 10 * (n // 2), 20, 10) for n, wid in enumerate(published)]}
    return [{
        "name": "nbfeed",
        "description": "Live quotes, charts and history from nbfeed's providers in Jupyter",
        "img": "", "allowCustomization": True, "tabs": tabs, "groups": groups,
    }]
