"""The ``binance`` provider: Binance spot market data, no API key (see :mod:`.provider`).

Inside: :mod:`.provider` (the provider class: catalog, history, quotes), :mod:`.rest` (symbols
and klines inside the request-weight budget) and :mod:`.stream` (combined-stream sockets).
"""

from .provider import BinanceProvider
from .rest import DEFAULT_REST_URL, BinanceREST, WeightBudget
from .stream import DEFAULT_WS_URL, CombinedStreams, kline_row, stream_names

__all__ = ["DEFAULT_REST_URL", "DEFAULT_WS_URL", "BinanceProvider", "BinanceREST",
           "CombinedStreams", "WeightBudget", "kline_row", "stream_names"]
