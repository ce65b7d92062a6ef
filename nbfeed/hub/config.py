"""Settings of a hub and where nbfeed keeps its state on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..providers.registry import ProviderSpec
from .backfill import BackfillRules
from .staleness import StalenessRules


def default_home() -> Path:
    """``$NBFEED_HOME``, else ``<jupyter data dir>/nbfeed``: the folder for all nbfeed state."""
    env = os.environ.get("NBFEED_HOME")
    if env:
        return Path(env).expanduser()
    try:
        from jupyter_core.paths import jupyter_data_dir

        return Path(jupyter_data_dir()) / "nbfeed"
    except Exception:
        return Path.home() / ".local" / "share" / "jupyter" / "nbfeed"


@dataclass
class HubConfig:
    """Everything a :class:`~nbfeed.hub.Hub` needs; defaults suit a laptop.

    ``catalog_path``/``cache_path`` default to files in ``home``; pass ``":memory:"`` for a
    throw-away hub.
    """

    providers: list[ProviderSpec] = field(default_factory=list)
    home: Path | None = None
    catalog_path: str | Path | None = None
    cache_path: str | Path | None = None
    #: Seconds a history or dataset request may take before the caller gets an error.
    request_timeout: float = 30.0
    #: Seconds without rows before a stream's ``no_update`` hook fires (0 disables).
    idle_timeout: float = 30.0
    #: Most bars the hub asks a provider for in one history request: bigger requests go in
    #: pieces of this size, one at a time, so no answer ever fills either process's memory.
    history_fetch_bars: int = 50_000
    #: Rows a subscriber may have waiting before its outbox conflates.
    max_pending_rows: int = 10_000
    #: Symbols in one subscribe call.
    max_symbols_per_subscription: int = 1_000
    max_restarts: int = 5
    backoff_base: float = 0.25
    backoff_max: float = 30.0
    stable_after: float = 10.0
    start_timeout: float = 60.0
    #: Seconds between heartbeats to each provider process (0 disables stall detection).
    heartbeat_interval: float = 1.0
    #: Seconds without a heartbeat answer before a provider is reported ``stalled``.
    stall_timeout: float = 5.0
    #: Seconds a provider may stay ``stalled`` before it is killed and restarted (0: never).
    stall_restart_after: float = 15.0
    #: Populate the catalog for sources that have no entries yet, when the hub starts.
    populate_on_start: bool = True
    provider_log_level: str = "WARNING"
    #: How a user turns on a provider that is not loaded, in this front end's words
    #: (``{name}`` is replaced): shown by :meth:`Hub.providers_info` for the others.
    enable_hint: str = ("nbfeed.connect(embedded=True, providers=[..., '{name}']) or "
                        "feed.register_provider('{name}')")
    #: Options configured for providers that are not loaded, used only to tell whether they
    #: could run (e.g. an API key given in configuration).
    known_options: dict[str, dict] = field(default_factory=dict)
    #: When a silent stream is reported stale (see :mod:`nbfeed.hub.staleness`).
    staleness: StalenessRules = field(default_factory=StalenessRules)
    #: How candle streams' holes are filled from history (see :mod:`nbfeed.hub.backfill`).
    backfill: BackfillRules = field(default_factory=BackfillRules)
    #: How the hub reaches its sources (:class:`nbfeed.hub.transport.TransportFactory`):
    #: ``None`` runs each provider in a local child process; ``nbfeed.bus.BusClient`` reaches
    #: the providers of a shared feed server through Redis.
    transport: Any = None

    def resolved_home(self) -> Path:
        return Path(self.home) if self.home is not None else default_home()

    def path_for(self, value: str | Path | None, filename: str) -> str:
        if value is not None:
            return str(value)
        home = self.resolved_home()
        home.mkdir(parents=True, exist_ok=True)
        return str(home / filename)
