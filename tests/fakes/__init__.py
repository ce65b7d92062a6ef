"""Local fake exchanges that speak the real wire formats, for tests and notebook demos.

Each fake is a tornado HTTP + websocket server on ``127.0.0.1`` (a free port) running in its own
thread, with deterministic market data and switchable failure modes::

    from tests.fakes import FakeBinance, FakePolygon

    with FakeBinance() as fb:            # fb.rest_url, fb.ws_url
        fb.set_rate_limit(retry_after=2)  # next REST request: 429 + Retry-After: 2
        fb.drop_sockets()                 # cut every websocket mid-frame
        fb.requests                       # what the client asked, with timestamps

    with FakePolygon(api_keys={"good": {"stocks", "crypto"}}) as fp:
        ...                               # fp.rest_url, fp.ws_url, fp.delayed_ws_url

Point a provider at a fake with its options (``rest_url=``, ``ws_url=``) or the environment
(``NBFEED_BINANCE_REST_URL`` / ``NBFEED_BINANCE_WS_URL``, ``NBFEED_POLYGON_REST_URL`` /
``NBFEED_POLYGON_WS_URL``). See ``_server.py`` for the shared failure modes and each module for
what it serves.
"""

from .binance import FakeBinance
from .polygon import FakePolygon

__all__ = ["FakeBinance", "FakePolygon"]
