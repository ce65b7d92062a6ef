"""The ``NBFeed`` Jupyter server extension app: configuration, hub lifecycle, routes.

Configure with traitlets, e.g. in ``jupyter_server_config.py``::

    c.NBFeed.providers = ["simulated", "csv", "mine=my_package.feeds:MyProvider"]
    c.NBFeed.provider_options = {"polygon": {"api_key": "env:POLYGON_API_KEY"}}
    c.NBFeed.csv_dir = "/data/csv"

On a JupyterHub whose users share one feed server (``nbfeed feed-server``), set
``c.NBFeed.bus = "redis://..."`` (or ``NBFEED_BUS``): the server then starts no provider
process and reaches the feed's sources through Redis (:mod:`nbfeed.bus`); everything else -
REST, websocket, Workspace, notebooks - works unchanged.

Option values written ``"env:NAME"`` are read from the environment when the server starts, so
secrets stay out of config files. The hub starts with the server (in the start hook, once the
event loop runs) and stops with it: ``stop_extension`` runs on SIGTERM, SIGINT, ``/api/shutdown``
and idle shutdown, and stops every provider process. A server killed with SIGKILL runs no hook;
its provider processes notice their parent is gone and exit on their own.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from ..errors import NBFeedError
from ..hub import Hub, HubConfig
from ..hub.wire import WireLimits
from ..providers.registry import resolve_spec
from ..runtime_file import ENV_INFO, info_path, remove_info, write_info
from .handlers import rest_handlers
from .recordings import recording_handlers
from .stream_handler import StreamHandler
from .workspace import WorkspaceBackend, workspace_handlers, workspace_root_handlers


def resolve_env(value: Any) -> Any:
    """``"env:NAME"`` values (also inside dicts) read from the environment; others unchanged."""
    if isinstance(value, str) and value.startswith("env:"):
        return os.environ.get(value[4:], "")
    if isinstance(value, dict):
        return {k: resolve_env(v) for k, v in value.items()}
    return value


class NBFeed(ExtensionApp):
    """Live market data for Jupyter: REST + websocket endpoints and an OpenBB Workspace backend."""

    name = "nbfeed"
    load_other_extensions = True

    providers = List(Unicode(), default_value=["simulated", "csv"],
                     help="Providers to run: a registered name ('simulated', 'csv', 'binance', "
                          "'polygon', or an entry point), or 'name=package.module:Class'.",
                     ).tag(config=True)
    provider_options = Dict(default_value={}, help="Options per provider name, passed to the "
                            "provider class. Values 'env:NAME' are read from the environment.",
                            ).tag(config=True)
    home = Unicode("", help="Folder for nbfeed's state (catalog, history cache). Default: "
                   "$NBFEED_HOME or <jupyter data dir>/nbfeed.").tag(config=True)
    catalog_path = Unicode("", help="Symbol catalog SQLite file (default: <home>/catalog.sqlite)"
                           ).tag(config=True)
    cache_path = Unicode("", help="History cache SQLite file (default: <home>/history.sqlite)"
                         ).tag(config=True)
    csv_dir = Unicode("", help="Folder of the csv provider (default: $NBFEED_CSV_DIR or the "
                      "bundled samples)").tag(config=True)
    flush_hz = Float(0.0, help="Most data frames per second per websocket subscription; 0 sends "
                     "as fast as each client reads (frames batch naturally).").tag(config=True)
    # Limits: the defaults are the engine's own (HubConfig, WireLimits), declared once there.
    max_subscriptions_per_client = Int(WireLimits.max_subscriptions).tag(config=True)
    max_streams_per_client = Int(WireLimits.max_streams).tag(config=True)
    max_symbols_per_subscription = Int(HubConfig.max_symbols_per_subscription).tag(config=True)
    max_message_bytes = Int(WireLimits.max_message_bytes, help="Largest client message answered "
                            "with an error frame; frames over 16 MB close the socket.",
                            ).tag(config=True)
    max_pending_rows = Int(HubConfig.max_pending_rows, help="Rows a slow client may have waiting "
                           "per subscription before its updates are conflated (newest value "
                           "wins).").tag(config=True)
    request_timeout = Float(HubConfig.request_timeout, help="Seconds a provider may take to "
                            "answer a history request.").tag(config=True)
    idle_timeout = Float(HubConfig.idle_timeout, help="Seconds without data before a provider's "
                         "no_update hook.").tag(config=True)
    heartbeat_interval = Float(HubConfig.heartbeat_interval, help="Seconds between heartbeats "
                               "to each provider process (0 disables stall detection)."
                               ).tag(config=True)
    stall_timeout = Float(HubConfig.stall_timeout, help="Seconds without a heartbeat answer "
                          "before a provider is reported 'stalled' (its requests then fail "
                          "fast).").tag(config=True)
    stall_restart_after = Float(HubConfig.stall_restart_after, help="Seconds a provider may "
                                "stay 'stalled' before it is killed and restarted (0: never)."
                                ).tag(config=True)
    bus = Unicode("", help="Redis URL of a shared feed server (redis://user:password@host:port/0"
                  " or rediss:// for TLS). When set, no provider runs in this server: every "
                  "source comes from the feed server through Redis. Default: $NBFEED_BUS. "
                  "'env:NAME' reads it from the environment.").tag(config=True)
    bus_namespace = Unicode("nbfeed", help="Prefix of the shared feed's Redis keys (as the "
                            "feed server's --namespace).").tag(config=True)
    bus_lease_ttl = Float(15.0, help="Seconds this server's demand outlives it if it dies "
                          "without saying goodbye (renewed every third of it).").tag(config=True)

    @default("bus")
    def _bus_default(self) -> str:
        return os.environ.get("NBFEED_BUS", "")

    write_runtime_file = Bool(True, help="Write nbfeed-<pid>.json in the runtime dir so kernels "
                              "find this server.").tag(config=True)

    # OpenBB Workspace backend (see nbfeed.server_ext.workspace)
    workspace_enabled = Bool(True, help="Serve the OpenBB Workspace backend under "
                             "<base_url>nbfeed/workspace/.").tag(config=True)
    workspace_root = Bool(None, allow_none=True, help="Also serve widgets.json, apps.json and "
                          "their endpoints at the server root. Default: on when base_url is '/'."
                          ).tag(config=True)
    workspace_origins = List(Unicode(), default_value=[
        "https://pro.openbb.co", "https://pro.openbb.dev", "https://excel.openbb.co",
        "http://localhost:1420"],  # [workspace] + the desktop app's origin
        help="Origins allowed to call the Workspace endpoints (CORS) and open its socket.",
    ).tag(config=True)
    workspace_api_key = Unicode("", help="An extra key Workspace may send (X-API-KEY, "
                                "Authorization or ?token=) instead of the Jupyter token. "
                                "'env:NAME' reads it from the environment.").tag(config=True)

    hub: Hub | None = None
    _info_file: Any = None
    workspace_backend: WorkspaceBackend | None = None

    # ---- configuration --------------------------------------------------------------------

    def _same_named(self, config_class: type) -> dict[str, Any]:
        """The traits named like a field of the dataclass ``config_class``, by field name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(config_class)
                if self.has_trait(f.name) and self.trait_metadata(f.name, "config")}

    def hub_config(self) -> HubConfig:
        """The hub's settings: traits named like a HubConfig field pass as they are; the
        providers, their options and the paths are resolved here."""
        if self.bus:
            return self._bus_hub_config()
        specs = []
        options = resolve_env(dict(self.provider_options))
        if self.csv_dir:
            options.setdefault("csv", {}).setdefault("folder", self.csv_dir)
        for entry in self.providers:
            name, _, path = entry.partition("=")
            name = name.strip()
            try:
                specs.append(resolve_spec(name, path.strip() or None,
                                          **(options.get(name) or {})))
            except NBFeedError as exc:
                self.log.error("nbfeed: provider %r skipped: %s", entry, exc)
        loaded = {spec.name for spec in specs}
        return HubConfig(**{
            **self._same_named(HubConfig),
            "providers": specs, "home": self.home or None,
            "catalog_path": self.catalog_path or None, "cache_path": self.cache_path or None,
            "enable_hint": "add '{name}' to c.NBFeed.providers (on the command line: one "
                           "--NBFeed.providers={name} flag per provider)",
            "known_options": {k: v for k, v in options.items()
                              if k not in loaded and isinstance(v, dict)},
        })

    def _bus_hub_config(self) -> HubConfig:
        from ..bus import BusClient

        client = BusClient(resolve_env(self.bus), namespace=self.bus_namespace,
                           lease_ttl=self.bus_lease_ttl)
        self.log.info("nbfeed: sources come from the shared feed at %s; no provider runs here",
                      client.where)
        settings = self._same_named(HubConfig)
        settings.pop("providers", None)  # the feed server's: the hub on the bus runs none
        return client.hub_config(**{
            **settings, "home": self.home or None,
            "catalog_path": self.catalog_path or None, "cache_path": self.cache_path or None})

    def wire_limits(self) -> WireLimits:
        """Per-connection limits of the websocket: traits named like a WireLimits field pass
        as they are; the ``_per_client`` ones and ``flush_hz`` are translated here."""
        return WireLimits(**{
            **self._same_named(WireLimits),
            "max_subscriptions": self.max_subscriptions_per_client,
            "max_streams": self.max_streams_per_client,
            "min_flush_interval": 1.0 / self.flush_hz if self.flush_hz > 0 else 0.0,
        })

    # ---- ExtensionApp hooks ---------------------------------------------------------------

    def initialize_settings(self) -> None:
        # No asyncio work here: the loop is not running yet. The hub starts in the start hook.
        self._route_nbfeed_logs()
        self.hub = Hub(self.hub_config())

    def _route_nbfeed_logs(self) -> None:
        """nbfeed's loggers (``nbfeed.hub``, ``nbfeed.wire``, ...) write through this server's
        log, with its format and level - as Jupyter does for tornado's - instead of only
        reaching stderr from WARNING up, unformatted. A logger configured on purpose (one with
        handlers of its own) is left alone."""
        import logging

        logger = logging.getLogger("nbfeed")
        if not logger.handlers:
            logger.parent = self.log
            logger.propagate = True

    def initialize_handlers(self) -> None:
        # Handlers get what they use (the hub, the limits, the Workspace backend), not the app.
        assert self.hub is not None
        self.handlers.extend(rest_handlers(self.hub))
        self.handlers.extend(recording_handlers(self.hub))
        self.handlers.append((r"/nbfeed/api/stream", StreamHandler,
                              {"hub": self.hub, "limits": self.wire_limits()}))
        if self.workspace_enabled:
            backend = self.workspace_backend = WorkspaceBackend(
                self.hub, self.serverapp, origins=self.workspace_origins,
                root=self.workspace_root, api_key=resolve_env(self.workspace_api_key))
            self.handlers.extend(workspace_handlers(backend))
            # widgets.json/apps.json at the host root: added to the web app directly, because
            # ExtensionApp prefixes base_url to self.handlers.
            root = workspace_root_handlers(backend)
            if root:
                self.serverapp.web_app.add_handlers(".*$", root)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        assert self.hub is not None
        # Jupyter without a terminal turns Ctrl-C into KeyboardInterrupt and exits without
        # calling stop_extension; this still removes our file and ends the providers.
        atexit.register(self._at_exit)
        await self.hub.start()
        if self.write_runtime_file:
            self._write_info(serverapp)
        url = serverapp.connection_url.rstrip("/")
        self.log.info("nbfeed: %d provider(s) running (%s); REST at %s/nbfeed/api/",
                      len(self.hub.sources()), ", ".join(self.hub.sources()), url)
        if self.workspace_enabled:
            self.log.info(
                "nbfeed: OpenBB Workspace backend URL: %s/nbfeed/workspace - in Workspace, "
                "'Connect backend', paste that URL and add the server token as an API key "
                "(header X-API-KEY, or Authorization: token <token>)", url)
            backend = self.workspace_backend
            if backend is not None and backend.root_enabled:
                self.log.info("nbfeed: Workspace backend also at the host root: %s",
                              backend.urls()["root_url"])

    def _write_info(self, serverapp: Any) -> None:
        path = info_path(serverapp.runtime_dir)
        port = serverapp.port
        scheme = "https" if serverapp.certfile else "http"
        info = {
            "pid": os.getpid(),
            "url": f"{scheme}://127.0.0.1:{port}{serverapp.base_url}",
            "public_url": serverapp.connection_url,
            "base_url": serverapp.base_url,
            "token": serverapp.identity_provider.token if hasattr(
                serverapp.identity_provider, "token") else serverapp.token,
            "auth": "Authorization: token <token> (under JupyterHub: JUPYTERHUB_API_TOKEN)",
            "version": 1,
        }
        write_info(path, info)
        self._info_file = path
        os.environ[ENV_INFO] = str(path)

    def _at_exit(self) -> None:
        if self._info_file is not None:
            remove_info(self._info_file)
            self._info_file = None
        if self.hub is not None:
            self.hub.kill_now()

    async def stop_extension(self) -> None:
        if self._info_file is not None:
            remove_info(self._info_file)
            if os.environ.get(ENV_INFO) == str(self._info_file):
                del os.environ[ENV_INFO]
            self._info_file = None
        if self.hub is not None:
            await self.hub.stop()
        atexit.unregister(self._at_exit)


main = launch_new_instance = NBFeed.launch_instance
