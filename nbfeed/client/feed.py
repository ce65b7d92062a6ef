"""``Feed``: the notebook's handle on nbfeed, the same API whether embedded or remote."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..errors import BadRequest
from ..hub.requests import bar_count, bar_interval
from ..intervals import check_interval, interval_ms
from ..timeutil import now_ms, to_ms
from .frames import history_frame, table_frame
from .stream import Stream

#: Above this many bars, history() fetches in chunks and shows a progress bar.
CHUNK_BARS = 50_000


class Feed:
    """Symbols, history and live streams from one nbfeed (see :func:`nbfeed.connect`)."""

    mode = "abstract"

    # ---- transport primitives (subclasses) ------------------------------------------------

    def _search(self, query: str, source: str | None, category: str | None, type: str | None,
                limit: int) -> list[dict]:
        raise NotImplementedError  # abstract

    def _history(self, source: str, symbol: str, interval: str, start: Any, end: Any,
                 count: int | None) -> list[dict]:
        raise NotImplementedError  # abstract

    def _subscribe(self, source: str, symbols: list[str], interval: str) -> Stream:
        raise NotImplementedError  # abstract

    def _providers(self) -> list[dict]:
        raise NotImplementedError  # abstract

    def register_provider(self, name: str, provider: type | str | None = None,
                          **options: Any) -> None:
        """Run ``provider`` (a Provider subclass, e.g. defined in this notebook, or a dotted
        path) in its own process as source ``name``; replaces a provider of that name.

        Without ``provider``, ``name`` is one nbfeed knows (``"binance"``, an entry point):
        ``feed.register_provider("binance")`` turns on a source ``providers()`` lists as not
        loaded."""
        raise NotImplementedError  # abstract

    def close(self) -> None:
        """Release streams and connections (an embedded hub stops its provider processes)."""

    # ---- public API -----------------------------------------------------------------------

    def providers(self) -> pd.DataFrame:
        """Every provider: the loaded ones with their status (running, restarting, failed +
        reason), then those that could be turned on (``not loaded``, with ``enable`` saying
        how) or that need setup first (``not usable``, with ``detail`` saying why)."""
        return table_frame(self._providers(), index="name")

    def symbols(self, query: str = "", source: str | None = None, *, category: str | None = None,
                type: str | None = None, limit: int = 20) -> pd.DataFrame:
        """Search the symbol catalog (exact symbol first, then prefix, then full text)."""
        if not isinstance(query, str):
            raise BadRequest(f"query must be a string, got {type_name(query)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise BadRequest(f"limit must be a positive whole number, got {limit!r}")
        rows = self._search(query, source, category, type, limit)
        cols = ["source", "name", "name_label", "type", "categories", "intervals"]
        if not rows:
            return pd.DataFrame(columns=cols)
        df = table_frame(rows)
        return df[[c for c in cols if c in df.columns]]

    def history(self, source: str, symbol: str, interval: str = "1d", start: Any = None,
                end: Any = None, count: int | None = None, *, progress: bool | None = None
                ) -> pd.DataFrame:
        """Bars as a DataFrame with a tz-aware UTC DatetimeIndex and float columns.

        ``start``/``end`` accept ISO strings, datetimes, epoch seconds/ms or ``"now-7d"``;
        ``count`` caps the number of bars (the newest ones). Long backfills are fetched in
        chunks with a progress bar (``progress=False`` hides it).
        """
        # Early, with the hub's own rules: a bad interval or count fails before any request.
        bar_interval(interval)
        bar_count(count)
        chunks = self._chunks(interval, start, end, count)
        if len(chunks) <= 1:
            return history_frame(self._history(source, symbol, interval, start, end, count))
        bar = _progress(len(chunks), f"{source} {symbol} {interval}", progress)
        rows: list[dict] = []
        try:
            for i, (a, b) in enumerate(chunks):
                rows.extend(self._history(source, symbol, interval, a, b, None))
                bar(i + 1)
        finally:
            bar(None)
        if count is not None:
            rows = rows[-count:]
        return history_frame(rows)

    def _chunks(self, interval: str, start: Any, end: Any, count: int | None
                ) -> list[tuple[int, int]]:
        if start is None:
            return []
        a = to_ms(start, "start")
        b = now_ms() if end is None else to_ms(end, "end")
        if a >= b:
            return []  # the server names the error
        step = interval_ms(interval) * CHUNK_BARS
        n = math.ceil((b - a) / step)
        if n <= 1 or count is not None:
            return []
        return [(a + i * step, min(b, a + (i + 1) * step)) for i in range(n)]

    def subscribe(self, source: str, symbols: str | list[str], interval: str = "tick") -> Stream:
        """Live rows; returns a :class:`Stream` (callbacks, ``async for``, ``latest``)."""
        if isinstance(symbols, str):
            symbols = [symbols]
        if not isinstance(symbols, (list, tuple)) or not all(isinstance(s, str) for s in symbols):
            raise BadRequest(f"symbols must be a string or a list of strings, got {symbols!r:.80}")
        check_interval(interval)
        return self._subscribe(source, list(symbols), interval)

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def type_name(value: Any) -> str:
    return type(value).__name__


def _progress(total: int, label: str, show: bool | None):
    """A progress callback: an ipywidgets bar in a kernel, nothing elsewhere."""
    if show is False:
        return lambda i: None
    try:
        from IPython import get_ipython

        if get_ipython() is None:
            raise ImportError
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return lambda i: None
    bar = widgets.IntProgress(value=0, min=0, max=total, description="history",
                              tooltip=label)
    display(bar)

    def update(i: int | None) -> None:
        if i is None:
            bar.close()
        else:
            bar.value = i

    return update
