"""HTTP endpoints of the Workspace backend (relative to ``<base_url>nbfeed/workspace/``).

Each handler reads its parameters and replies; what it answers is :mod:`.views`' job, and
authentication, CORS and errors are :class:`~.auth.WorkspaceHandler`'s.

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

from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated

from ...errors import BadRequest, shown
from . import views
from .auth import WorkspaceHandler
from .quotes import parse_symbols

MAX_PARAM_CHARS = 4_000
MAX_TABLE_ROWS = 5_000
DEFAULT_TABLE_ROWS = 500
MAX_SEARCH = 200
MAX_BODY = 8 * 1024 * 1024


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
            raise BadRequest(f"parameter {name!r} must be a whole number, got {shown(value, 40)}"
                             ) from None
        if not 1 <= number <= top:
            raise BadRequest(f"parameter {name!r} must be between 1 and {top}, got {number}")
        return number


class WorkspaceLandingHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.reply({"name": "nbfeed", "widgets": "widgets.json", "apps": "apps.json"})


class WorkspaceWidgetsHandler(WorkspaceHandler):
    """widgets.json: every source's widgets plus the published tables."""

    @allow_unauthenticated
    async def get(self) -> None:
        # Workspace reads widgets.json once per connection: describe every source's symbols,
        # not the empty catalog of a server that is still starting its providers.
        await self.backend.hub.wait_ready()
        self.reply(self.document())

    def document(self) -> Any:
        return self.backend.widgets(self.prefix)


class WorkspaceAppsHandler(WorkspaceWidgetsHandler):
    """apps.json: one app laying widgets.json out, a tab per source."""

    def document(self) -> Any:
        return self.backend.apps(self.prefix)


class WorkspaceTemplatesHandler(WorkspaceHandler):
    """Older Workspace clients probe templates.json; apps.json replaced it."""

    @allow_unauthenticated
    def get(self) -> None:
        self.reply([])


class WorkspaceQuotesHandler(_Endpoint):
    """Live grid snapshot: one full row per requested symbol, in the requested order."""

    @allow_unauthenticated
    async def get(self, source: str) -> None:
        symbols = parse_symbols(self.multi_param("symbol"))
        self.reply(await views.quote_table(self.backend.hub, self.backend.quotes, source,
                                           symbols))


class _BarsEndpoint(_Endpoint):
    async def bars(self, source: str) -> views.Bars:
        start = self.param("start")
        return await views.bars(
            self.backend.hub, source, self.param("symbol", required=True),
            interval=self.param("interval"), start=start, end=self.param("end"),
            count=self.int_param("limit", MAX_TABLE_ROWS if start is not None
                                 else DEFAULT_TABLE_ROWS, MAX_TABLE_ROWS))


class WorkspaceHistoryHandler(_BarsEndpoint):
    @allow_unauthenticated
    async def get(self, source: str) -> None:
        self.reply(views.table_rows((await self.bars(source)).rows))


class WorkspaceChartHandler(_BarsEndpoint):
    @allow_unauthenticated
    async def get(self, source: str) -> None:
        self.reply(views.plotly_figure(await self.bars(source), self.param("theme")))


class WorkspaceSymbolsHandler(_Endpoint):
    @allow_unauthenticated
    async def get(self) -> None:
        self.reply(await views.symbol_table(self.backend.hub, self.param("query", ""),
                                            self.param("source"),
                                            self.int_param("limit", 50, MAX_SEARCH)))


class WorkspaceOptionsHandler(_Endpoint):
    """``[{label, value}]`` of a source's symbols that stream live (``live``) or have bars."""

    @allow_unauthenticated
    async def get(self, source: str, kind: str) -> None:
        self.reply(await views.symbol_options(self.backend.hub, source, kind))


class WorkspaceProvidersHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.reply(views.provider_table(self.backend.hub))


class WorkspacePublishedHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self, wid: str) -> None:
        self.reply(self.backend.published.get(wid).rows)


# ---- for notebooks and admins ---------------------------------------------------------------


class WorkspacePublishApiHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.reply({"widgets": self.backend.published.summary()})

    @allow_unauthenticated
    def post(self) -> None:
        item = self.backend.published.put(self.json_body(MAX_BODY))
        self.reply({"id": item.id, "widget_id": item.widget_id, "endpoint": item.entry["endpoint"],
                    "rows": len(item.rows), "widget": item.entry})


class WorkspacePublishedItemApiHandler(WorkspaceHandler):
    @allow_unauthenticated
    def delete(self, wid: str) -> None:
        self.backend.published.remove(wid)
        self.set_status(204)
        self.finish()


class WorkspacePublishedRowsApiHandler(WorkspaceHandler):
    @allow_unauthenticated
    def put(self, wid: str) -> None:
        body = self.json_body(MAX_BODY)
        if not isinstance(body, dict) or "rows" not in body:
            raise BadRequest('the body must be {"rows": [...]}')
        item = self.backend.published.set_rows(wid, body["rows"])
        self.reply({"id": item.id, "rows": len(item.rows), "updated_ms": item.updated_ms})


class WorkspaceRotateHandler(WorkspaceHandler):
    @allow_unauthenticated
    def post(self) -> None:
        closed = self.backend.rotate()
        self.reply({"rotated": True, "closed_sockets": closed,
                    "hint": "reconnect the backend in Workspace (or reload) to fetch the new "
                            "widgets.json"})


class WorkspaceInfoHandler(WorkspaceHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.reply({**self.backend.urls(),
                    "origins": sorted(self.backend.origins),
                    "published": len(self.backend.published),
                    "auth": "X-API-KEY: <Jupyter token>, or Authorization: token <token>"})
