"""HTTP endpoints of the Workspace backend (relative to ``<base_url>nbfeed/workspace/``).

For Workspace (GET, authenticated as in :mod:`.auth`; parameters they don't know are ignored;
errors are 4xx with ``{"detail"}`` naming the bad value):

- ``widgets.json``, ``apps.json``, ``templates.json`` (also at the server root, see
  :func:`~nbfeed.server_ext.workspace.workspace_root_handlers`)
- ``quotes/<source>?symbol=A,B`` - live grid snapshot: a top-level array of rows
- ``history/<source>?symbol&interval&start&end`` - bars as table rows
- ``chart/<source>?symbol&interval&start&end&theme`` - the same bars as a Plotly figure
- ``symbols?query&source`` - catalog search; ``providers`` - provider status
- ``options/<source>/<live|bars>`` - ``[{label, value}]`` for symbol dropdowns
- ``published/<id>`` - rows of a table published from a notebook

For notebooks and admins (authenticated; not listed in widgets.json):

- ``api/widgets`` GET list, POST create/replace ``{id, name, columns, rows, ...}``
- ``api/widgets/<id>`` DELETE; ``api/widgets/<id>/rows`` PUT ``{"rows": [...]}``
- ``api/rotate`` POST - new socket capability; ``api/info`` GET - the URLs to paste
"""

from __future__ import annotations

import math
import re
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated

from ...errors import BadRequest, NBFeedError, UnknownSource
from ...intervals import TICK
from ...timeutil import ms_to_iso, to_ms
from .auth import WorkspaceHandler
from .quotes import parse_symbols, snapshot_row

MAX_PARAM_CHARS = 4_000
MAX_TABLE_ROWS = 5_000
DEFAULT_TABLE_ROWS = 500
MAX_SEARCH = 200
MAX_BODY = 8 * 1024 * 1024
DAY_MS = 86_400_000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Endpoint(WorkspaceHandler):
    """Query parameter helpers shared by the data endpoints."""

    def param(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        value = self.get_query_argument(name, None)
        if value is None or value.strip() == "":
            if required:
                raise BadRequest(f"missing required parameter {name!r}")
            return default
        if len(value) > MAX_PARAM_CHARS:
            raise BadRequest(f"parameter {name!r} is too long ({len(value)} characters)")
        return value.strip()

    def multi_param(self, name: str) -> Any:
        """A multiSelect value: repeated parameters as a list, a single one as its string."""
        values = self.get_query_arguments(name)
        if sum(len(v) for v in values) > MAX_PARAM_CHARS:
            raise BadRequest(f"parameter {name!r} is too long")
        return values if len(values) > 1 else (values[0] if values else None)

    def int_param(self, name: str, default: int, top: int) -> int:
        value = self.param(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise BadRequest(f"parameter {name!r} must be a whole number, got {value!r:.40}"
                             ) from None
        if not 1 <= number <= top:
            raise BadRequest(f"parameter {name!r} must be between 1 and {top}, got {number}")
        return number

    def source(self, name: str) -> str:
        hub = self.backend.hub
        if name not in hub.sources():
            raise UnknownSource(f"unknown source {name!r}; available: "
                                f"{', '.join(hub.sources()) or '(none)'}")
        return name


class LandingHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.require_auth()
        self.reply({"name": "nbfeed", "widgets": "widgets.json", "apps": "apps.json"})


class WidgetsHandler(WorkspaceHandler):
    @allow_unauthenticated
    async def get(self) -> None:
        self.require_auth()
        # Workspace reads widgets.json once per connection: describe every source's symbols,
        # not the empty catalog of a server that is still starting its providers.
        await self.backend.hub.wait_ready()
        self.reply(self.backend.widgets(self.prefix))


class AppsHandler(WorkspaceHandler):
    @allow_unauthenticated
    async def get(self) -> None:
        self.require_auth()
        await self.backend.hub.wait_ready()
        self.reply(self.backend.apps(self.prefix))


class TemplatesHandler(WorkspaceHandler):
    """Older Workspace clients probe templates.json; apps.json replaced it."""

    @allow_unauthenticated
    def get(self) -> None:
        self.require_auth()
        self.reply([])


class QuotesHandler(_Endpoint):
    """Live grid snapshot: one full row per requested symbol, in the requested order."""

    @allow_unauthenticated
    async def get(self, source: str) -> None:
        self.require_auth()
        try:
            source = self.source(source)
            symbols = parse_symbols(self.multi_param("symbol"))
            if not symbols:
                return self.reply([])
            latest = await self.backend.quotes.snapshot(source, symbols)
        except NBFeedError as exc:
            return self.fail(exc)
        catalog = self.backend.hub.catalog
        rows = []
        for sym in symbols:
            entry = catalog.lookup(source, sym) if catalog is not None else None
            rows.append(snapshot_row(sym, (entry or {}).get("name_label") or sym,
                                     latest.get(sym)))
        self.reply(rows)


def default_interval(entry: dict | None) -> str:
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


class NoData(NBFeedError):
    code = "no_data"
    http_status = 404


class _BarsEndpoint(_Endpoint):
    async def bars(self, source: str) -> tuple[str, str, dict | None, list[dict]]:
        source = self.source(source)
        symbol = self.param("symbol", required=True)
        catalog = self.backend.hub.catalog
        entry = catalog.lookup(source, symbol) if catalog is not None else None
        interval = self.param("interval") or default_interval(entry)
        start = self.param("start")
        start_ms = to_ms(start, "start") if start is not None else None
        count = self.int_param("limit", MAX_TABLE_ROWS if start_ms is not None
                               else DEFAULT_TABLE_ROWS, MAX_TABLE_ROWS)
        stop_ms = end_ms(self.param("end"))
        rows = await self.backend.hub.history(source, symbol, interval, start_ms, stop_ms,
                                              count)
        if not rows and start_ms is not None:
            # An empty grid says nothing; Workspace shows this detail in the widget instead.
            until = ms_to_iso(stop_ms)[:10] if stop_ms is not None else "now"
            raise NoData(f"no {interval} bars of {source}/{symbol} from "
                         f"{ms_to_iso(start_ms)[:10]} to {until}; choose other dates")
        return symbol, interval, entry, rows


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_rows(rows: list[dict]) -> list[dict]:
    """Bars as table rows: ``date`` (ISO UTC) first, then every field but time and symbol."""
    out = []
    for row in rows:
        item: dict[str, Any] = {"date": ms_to_iso(row["time"])}
        for key, value in row.items():
            if key not in ("time", "symbol"):
                item[key] = _clean(value)
        out.append(item)
    return out


class HistoryHandler(_BarsEndpoint):
    @allow_unauthenticated
    async def get(self, source: str) -> None:
        self.require_auth()
        try:
            _, _, _, rows = await self.bars(source)
        except NBFeedError as exc:
            return self.fail(exc)
        self.reply(table_rows(rows))


def series_fields(rows: list[dict], entry: dict | None) -> list[str]:
    """The fields to draw as lines: the entry's outputs, else every numeric field but volume."""
    names = [o["name"] for o in (entry or {}).get("outputs") or [] if isinstance(o, dict)
             and o.get("name") not in (None, "volume")]
    if names:
        return names
    sample = rows[-1] if rows else {}
    return [k for k, v in sample.items() if k not in ("time", "symbol", "volume")
            and isinstance(v, (int, float)) and not isinstance(v, bool)] or ["close"]


def plotly_figure(rows: list[dict], title: str, entry: dict | None,
                  theme: str | None) -> dict:
    """A Plotly figure (as JSON) of bars: candlesticks, or one line per output of line sources."""
    x = [ms_to_iso(r["time"]) for r in rows]
    kind = (entry or {}).get("type", "candlestick")
    has_ohlc = all(all(k in r for k in ("open", "high", "low", "close")) for r in rows)
    if kind != "line" and has_ohlc:
        trace: dict[str, Any] = {"type": "candlestick", "x": x, "name": title}
        for k in ("open", "high", "low", "close"):
            trace[k] = [_clean(r[k]) for r in rows]
        traces = [trace]
    else:
        traces = [{"type": "scatter", "mode": "lines", "x": x, "name": name,
                   "y": [_clean(r.get(name)) for r in rows]}
                  for name in series_fields(rows, entry)]
    dark = theme != "light"
    grid = "#3a3a3a" if dark else "#e5e5e5"
    return {"data": traces, "layout": {
        "title": {"text": title},
        "showlegend": len(traces) > 1,
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": "#e6e6e6" if dark else "#1f1f1f"},
        "xaxis": {"type": "date", "rangeslider": {"visible": False}, "gridcolor": grid},
        "yaxis": {"side": "right", "gridcolor": grid},
        "margin": {"l": 10, "r": 60, "t": 40, "b": 30},
    }}


class ChartHandler(_BarsEndpoint):
    @allow_unauthenticated
    async def get(self, source: str) -> None:
        self.require_auth()
        try:
            symbol, interval, entry, rows = await self.bars(source)
        except NBFeedError as exc:
            return self.fail(exc)
        self.reply(plotly_figure(rows, f"{symbol} {interval}", entry, self.param("theme")))


class SymbolsHandler(_Endpoint):
    @allow_unauthenticated
    async def get(self) -> None:
        self.require_auth()
        try:
            source = self.param("source")
            if source is not None:
                source = self.source(source)
            results = await self.backend.hub.search(
                self.param("query", ""), source=source,
                limit=self.int_param("limit", 50, MAX_SEARCH))
        except NBFeedError as exc:
            return self.fail(exc)
        self.reply([{"symbol": e["name"], "name": e.get("name_label") or e["name"],
                     "source": e.get("source"), "type": e.get("type"),
                     "categories": ", ".join(e.get("categories") or []),
                     "intervals": ", ".join(e.get("intervals") or [])} for e in results])


class OptionsHandler(_Endpoint):
    """``[{label, value}]`` of a source's symbols that stream live (``live``) or have bars."""

    @allow_unauthenticated
    async def get(self, source: str, kind: str) -> None:
        self.require_auth()
        try:
            source = self.source(source)
            entries = await self.backend.hub.search("", source=source, limit=1000)
        except NBFeedError as exc:
            return self.fail(exc)
        out = []
        for e in entries:
            intervals = e.get("intervals") or []
            live = TICK in intervals or e.get("type") == "quote"
            if (kind == "live" and live) or (kind == "bars" and any(i != TICK
                                                                    for i in intervals)):
                out.append({"label": f"{e['name']} - {e.get('name_label') or e['name']}",
                            "value": e["name"]})
        self.reply(out)


class ProvidersHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.require_auth()
        self.reply([{"name": p["name"], "status": p["status"], "symbols": p["datasets"],
                     "restarts": p["restarts"],
                     "detail": p.get("detail") or p.get("populate_error") or ""}
                    for p in self.backend.hub.providers_info()])


class PublishedDataHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self, wid: str) -> None:
        self.require_auth()
        try:
            item = self.backend.published.get(wid)
        except NBFeedError as exc:
            return self.fail(exc)
        self.reply(item.rows)


# ---- for notebooks and admins ---------------------------------------------------------------


class PublishApiHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.require_auth()
        self.reply({"widgets": self.backend.published.summary()})

    @allow_unauthenticated
    def post(self) -> None:
        self.require_auth()
        try:
            item = self.backend.published.put(self.json_body(MAX_BODY))
        except NBFeedError as exc:
            return self.fail(exc)
        self.reply({"id": item.id, "widget_id": item.widget_id, "endpoint": item.entry["endpoint"],
                    "rows": len(item.rows), "widget": item.entry})


class PublishedItemApiHandler(WorkspaceHandler):
    @allow_unauthenticated
    def delete(self, wid: str) -> None:
        self.require_auth()
        try:
            self.backend.published.remove(wid)
        except NBFeedError as exc:
            return self.fail(exc)
        self.set_status(204)
        self.finish()


class PublishedRowsApiHandler(WorkspaceHandler):
    @allow_unauthenticated
    def put(self, wid: str) -> None:
        self.require_auth()
        body = self.json_body(MAX_BODY)
        try:
            if not isinstance(body, dict) or "rows" not in body:
                raise BadRequest('the body must be {"rows": [...]}')
            item = self.backend.published.set_rows(wid, body["rows"])
        except NBFeedError as exc:
            return self.fail(exc)
        self.reply({"id": item.id, "rows": len(item.rows), "updated_ms": item.updated_ms})


class RotateHandler(WorkspaceHandler):
    @allow_unauthenticated
    def post(self) -> None:
        self.require_auth()
        closed = self.backend.rotate()
        self.reply({"rotated": True, "closed_sockets": closed,
                    "hint": "reconnect the backend in Workspace (or reload) to fetch the new "
                            "widgets.json"})


class InfoHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.require_auth()
        serverapp = self.backend.app.serverapp
        self.reply({**self.backend.urls(serverapp.connection_url),
                    "origins": sorted(self.backend.origins),
                    "published": len(self.backend.published),
                    "auth": "X-API-KEY: <Jupyter token>, or Authorization: token <token>"})
