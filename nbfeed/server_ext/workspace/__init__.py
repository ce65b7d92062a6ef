"""nbfeed as an OpenBB Workspace backend, inside the Jupyter server.

Connect Workspace to ``http(s)://<host>:<port><base_url>nbfeed/workspace`` with the server token
as an ``X-API-KEY`` header (or ``Authorization: token <token>``, or a ``token`` query
parameter). When the server runs at ``/`` (or ``c.NBFeed.workspace_root = True``),
``widgets.json`` and ``apps.json`` are served at the host root too, for Workspace versions that
ignore a base URL's path; their endpoints point back under ``<base_url>nbfeed/workspace/``.

Modules: :mod:`.widgets` (widgets.json/apps.json from providers and catalog), :mod:`.quotes`
(quote rows, snapshots), :mod:`.published` (tables pushed from notebooks), :mod:`.backend`
(shared state, socket capability), :mod:`.auth` (keys, CORS), :mod:`.handlers` (HTTP endpoints),
:mod:`.live` (the live grid socket). What Workspace itself accepts, and the table shaping the
notebook side shares, live in :mod:`nbfeed.openbb`.
"""

from __future__ import annotations

from typing import Any

_SOURCE = r"([a-z0-9_.\-]{1,64})"
_ID = r"([A-Za-z0-9][A-Za-z0-9_\-]{0,63})"


def _backend(app: Any) -> Any:
    backend = getattr(app, "workspace_backend", None)
    if backend is None:
        from .backend import WorkspaceBackend

        backend = app.workspace_backend = WorkspaceBackend(app)
    return backend


def workspace_handlers(app: Any) -> list[tuple]:
    """Routes under ``<base_url>nbfeed/workspace/`` (ExtensionApp prefixes the base_url)."""
    from . import handlers as h
    from .live import LiveGridSocket

    kw = {"backend": _backend(app)}
    base = "/nbfeed/workspace"
    return [
        (rf"{base}/?", h.LandingHandler, kw),
        (rf"{base}/widgets\.json", h.WidgetsHandler, kw),
        (rf"{base}/apps\.json", h.AppsHandler, kw),
        (rf"{base}/templates\.json", h.TemplatesHandler, kw),
        (rf"{base}/quotes/{_SOURCE}", h.QuotesHandler, kw),
        (rf"{base}/ws/([A-Za-z0-9_\-]{{1,100}})/quotes/{_SOURCE}", LiveGridSocket, kw),
        (rf"{base}/history/{_SOURCE}", h.HistoryHandler, kw),
        (rf"{base}/chart/{_SOURCE}", h.ChartHandler, kw),
        (rf"{base}/symbols", h.SymbolsHandler, kw),
        (rf"{base}/options/{_SOURCE}/(live|bars)", h.OptionsHandler, kw),
        (rf"{base}/providers", h.ProvidersHandler, kw),
        (rf"{base}/published/{_ID}", h.PublishedDataHandler, kw),
        (rf"{base}/api/widgets", h.PublishApiHandler, kw),
        (rf"{base}/api/widgets/{_ID}", h.PublishedItemApiHandler, kw),
        (rf"{base}/api/widgets/{_ID}/rows", h.PublishedRowsApiHandler, kw),
        (rf"{base}/api/rotate", h.RotateHandler, kw),
        (rf"{base}/api/info", h.InfoHandler, kw),
    ]


def workspace_root_handlers(app: Any) -> list[tuple]:
    """Absolute routes at the host root (add them to the web app directly, not through
    ExtensionApp, which would prefix the base_url). Empty when root serving is off."""
    from . import handlers as h

    backend = _backend(app)
    if not backend.root_enabled:
        return []
    kw = {"backend": backend, "prefix": backend.root_prefix}
    return [
        (r"/widgets\.json", h.WidgetsHandler, kw),
        (r"/apps\.json", h.AppsHandler, kw),
        (r"/templates\.json", h.TemplatesHandler, kw),
    ]
