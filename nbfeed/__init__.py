"""nbfeed: live market data in Jupyter.

The public API, kept small on purpose::

    import nbfeed
    feed = nbfeed.connect()                  # this server's nbfeed, else an embedded hub
    feed.symbols("apple")                    # DataFrame
    feed.history("simulated", "AAPL", "1m", count=500)   # DataFrame, UTC DatetimeIndex
    stream = feed.subscribe("simulated", ["AAPL", "MSFT"])   # live rows
    nbfeed.LiveGrid(stream)                  # a grid whose cells flash as they change
    nbfeed.LiveChart(stream)                 # a live candlestick/line chart
    rec = feed.record("simulated", ["AAPL"], duration=60)     # Parquet, at the hub
    feed.subscribe("replay", ["AAPL"], recording=rec.name, speed=10)   # played back
    class MyFeed(nbfeed.Provider): ...       # a data source of your own
    nbfeed.register_provider("mine", MyFeed)

Heavy modules (pandas, widgets, the hub) load on first use, so ``import nbfeed`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BadInterval,
    BadRequest,
    LimitExceeded,
    NBFeedError,
    UnknownSource,
    UnknownSymbol,
    UpstreamError,
)
from .providers.base import Provider

if TYPE_CHECKING:
    from .client import Feed, Stream
    from .client.recording import Recording
    from .client.replay import ReplayStream
    from .widgets.chart import LiveChart
    from .widgets.grid import LiveGrid

__all__ = [
    "BadInterval",
    "BadRequest",
    "Feed",
    "LimitExceeded",
    "LiveChart",
    "LiveGrid",
    "NBFeedError",
    "Provider",
    "Recording",
    "ReplayStream",
    "Stream",
    "UnknownSource",
    "UnknownSymbol",
    "UpstreamError",
    "__version__",
    "connect",
    "register_provider",
]

_LAZY = {
    "LiveGrid": ("nbfeed.widgets.grid", "LiveGrid"),
    "LiveChart": ("nbfeed.widgets.chart", "LiveChart"),
    "Feed": ("nbfeed.client", "Feed"),
    "Stream": ("nbfeed.client", "Stream"),
    "Recording": ("nbfeed.client.recording", "Recording"),
    "ReplayStream": ("nbfeed.client.replay", "ReplayStream"),
}


def connect(url: str | None = None, token: str | None = None, **kwargs: Any) -> Feed:
    """The nbfeed of this kernel's Jupyter server, an explicit server, or an embedded hub.

    See :func:`nbfeed.client.connect`.
    """
    from .client import connect as _connect

    return _connect(url, token=token, **kwargs)


def register_provider(name: str, provider: type | str | None = None, **options: Any) -> None:
    """Run a provider class (e.g. defined in this notebook) in its own process, under ``name``.

    See :meth:`nbfeed.client.Feed.register_provider`.
    """
    connect().register_provider(name, provider, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'nbfeed' has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict]:
    # Imported here so that `import nbfeed` in a kernel does not pull in jupyter_server.
    from .server_ext.app import NBFeed

    return [{"module": "nbfeed.server_ext.app", "app": NBFeed}]
