"""What used to grow over a long day (issue 13, fault 3) stays bounded.

Found with ``bench/soak.py`` (20k row updates/s of churn; server +17 %, providers +11 MB each
from minute 2 to 10) and tracemalloc: the simulated provider cached a day's intraday volume
profile for every day a history request touched (11.5 KB x 64 days per symbol), and the history
cache's two SQLite connections each grew a 32 MB page cache. The soak prints the RSS figures;
these tests hold the bounds.
"""

from __future__ import annotations

import numpy as np

from nbfeed.hub.bar_store import BarStore
from nbfeed.providers.simulated import SimulatedProvider
from nbfeed.timeutil import to_ms

MB = 1024 * 1024


def test_simulated_history_does_not_cache_a_profile_per_day():
    provider = SimulatedProvider()
    provider.init()
    for symbol in ("AAPL", "MSFT"):
        rows = provider.get_history(symbol, "1h", to_ms("2025-01-01"), to_ms("2025-07-01"),
                                    None)
        assert len(rows) > 4000  # 181 days of hourly bars, each day's volume profile used
    for symbol in ("AAPL", "MSFT"):
        assert len(provider._path(symbol)._intraday) <= 5
    # Live quotes still find today's profile cached (their hot path).
    provider.quotes("AAPL", np.array([to_ms("now")]))
    assert len(provider._path("AAPL")._intraday) >= 1


def test_the_history_cache_page_cache_is_a_few_megabytes(tmp_path):
    store = BarStore(tmp_path / "history.sqlite")
    try:
        for conn in {id(store._writer): store._writer, id(store._reader): store._reader}.values():
            pages = conn.execute("PRAGMA cache_size").fetchone()[0]
            size = -pages * 1024 if pages < 0 else pages * conn.execute(
                "PRAGMA page_size").fetchone()[0]
            assert 0 < size <= 8 * MB, size
    finally:
        store.close()
