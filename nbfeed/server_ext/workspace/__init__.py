"""nbfeed as an OpenBB Workspace backend, inside the Jupyter server.

Connect Workspace to ``http(s)://<host>:<port><base_url>nbfeed/workspace`` with the server token
as an ``X-API-KEY`` header (or ``Authorization: token <token>``, or a ``token`` query
parameter). When the server runs at ``/`` (or ``c.NBFeed.workspace_root = True``),
``widgets.json`` and ``apps.json`` are served at the host root too, for Workspace versions that
ignore a base URL's path; their endpoints point back under ``<base_url>nbfeed/workspace/``.

Modules: :mod:`.widgets` (widgets.json/apps.json from providers and catalog), :mod:`.quotes`
(quote rows, snapshots), :mod:`.published` (tables pushed from notebooks), :mod:`.backend`
(shared state, socket capability), :mod:`.auth` (keys, CORS), :mod:`.handlers` (HTTP endpoints)
and :mod:`.views` (what they answer), :mod:`.live` (the live grid socket). What Workspace itself
accepts, and the table shaping the notebook side shares, live in :mod:`nbfeed.openbb`.
"""

from __future__ import annotations

from .backend import WorkspaceBackend

_SOURCE = r"([a-z0-9_.\-]{1,64})"
_ID = r"([A-Za-z0-9][A-Za-z0-9_\-]{0,63})"


def workspace_handlers(backend: WorkspaceBackend) -> list[tuple]:
    """Routes under ``<base_url>nbfeed/workspace/`` (ExtensionApp prefixes the base_url)."""
    from . import handlers as h
    from .live import LiveGridSocket

    kw = {"backend": backend}
    base = "/nbfeed/workspace"
    return [
        (rf"{base}/?", h.WorkspaceLandingHandler, kw),
        (rf"{base}/widgets\.json", h.WorkspaceWidgetsHandler, kw),
        (rf"{base}/apps\.json", h.WorkspaceAppsHandler, kw),
        (rf"{base}/templates\.json", h.WorkspaceTemplatesHandler, kw),
        (rf"{base}/quotes/{_SOURCE}", h.WorkspaceQuotesHandler, kw),
        (rf"{base}/ws/([A-Za-z0-9_\-]{{1,100}})/quotes/{_SOURCE}", LiveGridSocket, kw),
        (rf"{base}/history/{_SOURCE}", h.WorkspaceHistoryHandler, kw),
        (rf"{base}/chart/{_SOURCE}", h.WorkspaceChartHandler, kw),
        (rf"{base}/symbols", h.WorkspaceSymbolsHandler, kw),
        (rf"{base}/options/{_SOURCE}/(live|bars)", h.WorkspaceOptionsHandler, kw),
        (rf"{base}/providers", h.WorkspaceProvidersHandler, kw),
        (rf"{base}/published/{_ID}", h.WorkspacePublishedHandler, kw),
        (rf"{base}/api/widgets", h.WorkspacePublishApiHandler, kw),
        (rf"{base}/api/widgets/{_ID}", h.WorkspacePublishedItemApiHandler, kw),
        (rf"{base}/api/widgets/{_ID}/rows", h.WorkspacePublishedRowsApiHandler, kw),
        (rf"{base}/api/rotate", h.WorkspaceRotateHandler, kw),
        (rf"{base}/api/info", h.WorkspaceInfoHandler, kw),
    ]


def workspace_root_handlers(backend: WorkspaceBackend) -> list[tuple]:
    """Absolute routes at the host root (add them to the web app directly, not through
    ExtensionApp, which would prefix the base_url). Empty when root serving is off."""
    from . import handlers as h

    if not backend.root_enabled:
        return []
    kw = {"backend": backend, "prefix": backend.root_prefix}
    return [
        (r"/widgets\.json", h.WorkspaceWidgetsHandler, kw),
        (r"/apps\.json", h.WorkspaceAppsHandler, kw),
        (r"/templates\.json", h.WorkspaceTemplatesHandler, kw),
    ]
