"""The Workspace backend's state: socket capability, origins, keys, published tables, snapshots.

One :class:`WorkspaceBackend` per server, handed to every Workspace handler. It is given the hub,
the Jupyter server (base URL, token, public URL) and its settings as plain values, never the
extension app. It owns no event-loop work of its own until a request arrives, so it can be built
while the extension loads.

The socket capability: Workspace sends no credentials on its websocket, so the live grid's
``wsEndpoint`` carries an unguessable token (:func:`secrets.token_urlsafe`, 192 bits) in its
path. Only an authenticated widgets.json fetch reveals it; it is new at every server start and
:meth:`WorkspaceBackend.rotate` replaces it (closing the sockets opened with the old one). It is
not the Jupyter token and grants nothing but reading quotes.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

from ...hub import Hub
from ...jsonfast import lone_surrogate_at
from ...openbb.schema import widget_problems
from .published import PublishedStore
from .quotes import QuoteBoard
from .widgets import SourceView, build_apps, build_widgets, describe_sources

log = logging.getLogger("nbfeed.workspace")

MOUNT = "nbfeed/workspace/"
MAX_SOCKETS = 256


def new_capability() -> str:
    """A fresh socket capability (192 random bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class WorkspaceBackend:
    """Shared state of the Workspace handlers of one server (see module docstring).

    ``serverapp`` is Jupyter's ServerApp (its ``base_url``, ``connection_url`` and identity
    provider's token are read when needed); ``origins`` are ``c.NBFeed.workspace_origins``,
    ``root`` is ``c.NBFeed.workspace_root`` (None: serve at the host root when the base URL is
    ``/``) and ``api_key`` the resolved ``c.NBFeed.workspace_api_key`` ("" for none).
    """

    def __init__(self, hub: Hub, serverapp: Any, *, origins: Iterable[str] = (),
                 root: bool | None = None, api_key: str = "") -> None:
        self.hub = hub
        self.serverapp = serverapp
        self.capability = new_capability()
        self.published = PublishedStore()
        self.quotes = QuoteBoard(hub)
        self.sockets: set[Any] = set()
        self.origins = {normalize_origin(o) for o in origins if o.strip()}
        self.root = root
        self.api_key = api_key

    # ---- configuration --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.serverapp.base_url

    @property
    def root_enabled(self) -> bool:
        """Serve widgets.json/apps.json at the host root too (default: when base_url is '/')."""
        return self.base_url == "/" if self.root is None else bool(self.root)

    @property
    def root_prefix(self) -> str:
        """What root-served endpoints start with: the path back to the mounted backend."""
        return self.base_url.lstrip("/") + MOUNT

    def api_keys(self) -> list[str]:
        """Keys accepted besides Jupyter's own authentication (never empty strings)."""
        keys = []
        provider = getattr(self.serverapp, "identity_provider", None)
        token = getattr(provider, "token", "") or ""
        if token:
            keys.append(token)
        if self.api_key:
            keys.append(self.api_key)
        return keys

    def key_matches(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        given = candidate.encode()
        # compare_digest against every key, so timing says nothing about which one is close
        return any([hmac.compare_digest(given, key.encode()) for key in self.api_keys()])

    def origin_allowed(self, origin: str | None, host: str | None,
                       settings: dict | None = None) -> bool:
        """Same origin as the server, in ``workspace_origins``, or Jupyter's own allow_origin."""
        if origin is None:
            return True  # not a browser: the capability or key decides
        norm = normalize_origin(origin)
        if "*" in self.origins or norm in self.origins:
            return True
        if host and urlparse(norm).netloc == host.lower():
            return True
        settings = settings or {}
        if settings.get("allow_origin") in ("*", norm):
            return True
        pat = settings.get("allow_origin_pat")
        if pat:
            from jupyter_server.utils import origin_matches_pat

            return bool(origin_matches_pat(pat, norm))
        return False

    def capability_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.capability.encode())

    def rotate(self) -> int:
        """A new socket capability; closes sockets opened with the old one. Returns how many."""
        self.capability = new_capability()
        closed = 0
        for sock in list(self.sockets):
            if not self.capability_matches(sock.capability):
                sock.close(1008, "capability rotated; refetch widgets.json")
                closed += 1
        log.info("nbfeed: Workspace socket capability rotated (%d socket(s) closed)", closed)
        return closed

    # ---- widgets.json / apps.json ---------------------------------------------------------

    def sources(self) -> list[SourceView]:
        if self.hub is None or self.hub.catalog is None:
            return []
        return describe_sources(self.hub)

    def widgets(self, prefix: str = "", views: list[SourceView] | None = None) -> dict:
        """widgets.json; an entry that fails validation is left out (and logged), because one
        invalid entry makes Workspace reject the whole backend. So is one holding text that is
        not valid Unicode (a lone surrogate), however it got in."""
        views = self.sources() if views is None else views
        widgets = build_widgets(views, self.capability, prefix, self.published.entries())
        for wid in list(widgets):
            bad_text = lone_surrogate_at(widgets[wid])
            problems = ([f"{bad_text}: text with a lone surrogate"] if bad_text is not None
                        else widget_problems(wid, widgets[wid]))
            if problems:
                log.error("nbfeed: Workspace widget %s left out: %s", wid, "; ".join(problems))
                del widgets[wid]
        return widgets

    def apps(self, prefix: str = "") -> list[dict]:
        views = self.sources()
        return build_apps(views, self.widgets(prefix, views))

    def urls(self) -> dict[str, str | None]:
        """The backend URLs to paste into Workspace (from the server's public URL)."""
        base = self.serverapp.connection_url.rstrip("/")
        host = base[: len(base) - len(self.base_url.rstrip("/"))] if self.base_url != "/" \
            else base
        return {"backend_url": f"{base}/{MOUNT.rstrip('/')}",
                "root_url": host if self.root_enabled else None}
