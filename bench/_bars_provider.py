"""Bench helper: a provider of deterministic 1m bars for any span (importable by a server)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbfeed import Provider

MIN = 60_000


class BarsProvider(Provider):
    """``BENCH`` 1m bars for any span or count, computed with numpy: the provider's own cost is
    small next to what nbfeed does with the answer."""

    name = "bars"

    def get_dataset(self):
        return [{"name": "BENCH", "name_label": "Bench bars", "type": "candlestick",
                 "intervals": ["1m"]}]

    def get_history(self, symbol, interval, start, end, count):
        stop = end - end % MIN
        first = stop - count * MIN if start is None else start - start % MIN
        return bars_frame(first, stop)


def bars_frame(start: int, end: int) -> pd.DataFrame:
    t = np.arange(start, end, MIN, dtype=np.int64)
    base = 100.0 + (t // MIN) % 97
    return pd.DataFrame({"open": base, "high": base + 1.5, "low": base - 1.25,
                         "close": base + 0.5, "volume": (t % 1000).astype(np.float64)},
                        index=pd.DatetimeIndex(pd.to_datetime(t, unit="ms", utc=True)))
