"""The ``polygon`` provider: Polygon.io stocks, crypto, forex and indices (see :mod:`.provider`).

Inside: :mod:`.provider` (the provider class: catalog, history, live bars and quotes),
:mod:`.rest` (tickers, aggregates, previous closes), :mod:`.stream` (one websocket per cluster)
and :mod:`.bars` (candles built from per-second aggregates).
"""

from .bars import BarBuilder
from .provider import CLUSTER, MARKETS, PolygonProvider
from .rest import DEFAULT_REST_URL, PolygonAuthError, PolygonREST, bar_time, market_of
from .stream import DEFAULT_DELAYED_WS_URL, DEFAULT_WS_URL, PolygonCluster, ws_name

__all__ = ["CLUSTER", "DEFAULT_DELAYED_WS_URL", "DEFAULT_REST_URL", "DEFAULT_WS_URL", "MARKETS",
           "BarBuilder", "PolygonAuthError", "PolygonCluster", "PolygonProvider", "PolygonREST",
           "bar_time", "market_of", "ws_name"]
