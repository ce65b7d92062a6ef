"""``Feed``: the notebook's handle on nbfeed, the same API whether embedded or remote."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..columns import Columns
from ..errors import BadRequest
from ..hub.requests import bar_count, bar_interval
from ..intervals import check_interval, interval_ms
from ..timeutil import ms_to_iso, now_ms, to_ms
from .frames import history_frame, table_frame
from .recording import Recording
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
                 count: int | None) -> Columns:
        raise NotImplementedError  # abstract

    def _subscribe(self, source: str, symbols: list[str], interval: str) -> Stream:
        raise NotImplementedError  # abstract

    def _providers(self) -> list[dict]:
        raise NotImplementedError  # abstract

    # Sessions (sources that take subscription options, e.g. replay) and recordings.

    def _subscribe_session(self, source: str, symbols: list[str], interval: str,
                           options: dict) -> Stream:
        raise NotImplementedError  # abstract

    def _history_with(self, source: str, symbol: str, interval: str, start: Any, end: Any,
                      count: int | None, options: dict) -> Columns:
        raise NotImplementedError  # abstract

    def _recording_start(self, name: str, streams: list[dict], limits: dict) -> dict:
        raise NotImplementedError  # abstract

    def _recording_stop(self, name: str) -> dict:
        raise NotImplementedError  # abstract

    def _recording_wait(self, name: str, timeout: float | None) -> dict:
        raise NotImplementedError  # abstract

    def _recording_info(self, name: str) -> dict:
        raise NotImplementedError  # abstract

    def _recording_list(self) -> list[dict]:
        raise NotImplementedError  # abstract

    def _recording_delete(self, name: str) -> None:
        raise NotImplementedError  # abstract

    def _recording_export(self, name: str, path: Any, format: str | None,
                          overwrite: bool) -> Any:
        raise NotImplementedError  # abstract

    def _recording_frame(self, name: str) -> pd.DataFrame:
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
                end: Any = None, count: int | None = None, *, progress: bool | None = None,
                **options: Any) -> pd.DataFrame:
        """Bars as a DataFrame with a tz-aware UTC DatetimeIndex and float columns.

        ``start``/``end`` accept ISO strings, datetimes, epoch seconds/ms or ``"now-7d"``;
        ``count`` caps the number of bars (the newest ones). Long backfills are fetched in
        chunks with a progress bar (``progress=False`` hides it). ``options`` go to sources
        that take them: ``feed.history("replay", "AAPL", "1m", recording="demo", end=t)`` is
        the bars of a recording as they stood at ``t``.
        """
        # Early, with the hub's own rules: a bad interval or count fails before any request.
        bar_interval(interval)
        bar_count(count)
        if options:
            return history_frame(self._history_with(
                source, symbol, interval, _wire_time(start, "start"), _wire_time(end, "end"),
                count, _wire_options(options)))
        chunks = self._chunks(interval, start, end, count)
        if len(chunks) <= 1:
            return history_frame(self._history(source, symbol, interval, start, end, count))
        bar = _progress(len(chunks), f"{source} {symbol} {interval}", progress)
        parts: list[Columns] = []
        try:
            for i, (a, b) in enumerate(chunks):
                parts.append(self._history(source, symbol, interval, a, b, None))
                bar(i + 1)
        finally:
            bar(None)
        return history_frame(Columns.concat(parts, symbol))

    def _chunks(self, interval: str, start: Any, end: Any, count: int | None
                ) -> list[tuple[str, str]]:
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
        # As ISO text, not ms numbers: a number is read as epoch *seconds* below 1e11 (the
        # rule for what people type), which ms times of 1966-1973 are.
        return [(ms_to_iso(a + i * step), ms_to_iso(min(b, a + (i + 1) * step)))
                for i in range(n)]

    def subscribe(self, source: str, symbols: str | list[str], interval: str = "tick",
                  **options: Any) -> Stream:
        """Live rows; returns a :class:`Stream` (callbacks, ``async for``, ``latest``).

        ``options`` go to sources that take them, which then serve this subscription a session
        of its own: ``feed.subscribe("replay", ["AAPL"], recording="demo", speed=10)`` returns
        a :class:`~nbfeed.client.replay.ReplayStream` (pause, resume, seek, speed, a virtual
        clock). Sources without options refuse them with an error naming the option.
        """
        if isinstance(symbols, str):
            symbols = [symbols]
        if not isinstance(symbols, (list, tuple)) or not all(isinstance(s, str) for s in symbols):
            raise BadRequest(f"symbols must be a string or a list of strings, got {symbols!r:.80}")
        check_interval(interval)
        if options:
            options = _wire_options(options)
            options.setdefault("ack", True)  # this client acknowledges rows (see replay.py)
            stream = self._subscribe_session(source, list(symbols), interval, options)
        else:
            stream = self._subscribe(source, list(symbols), interval)
        stream._recorder = self.record
        return stream

    # ---- recordings -----------------------------------------------------------------------

    def record(self, source: str, symbols: str | list[str], interval: str | list[str] = "tick",
               *, name: str | None = None, duration: float | None = None,
               max_bytes: int | None = None, max_age: float | None = None) -> Recording:
        """Record live rows of ``symbols`` at the hub, in Parquet, beside live subscribers.

        ``interval``: one, or a list (one stream per interval: quotes and 1s bars, say);
        ``name``: 1-64 letters, digits, ``._-`` (default ``<source>-<UTC time>``);
        ``duration``: seconds, then it stops by itself (default: until ``stop()``);
        ``max_bytes``: disk limit (default 1 GiB; reaching it stops the recording with a
        message); ``max_age``: keep only the last that many seconds. Returns a
        :class:`~nbfeed.client.recording.Recording`; replay it with
        ``feed.subscribe("replay", symbols, recording=name)``.
        """
        from ..recorder.service import default_name

        if isinstance(symbols, str):
            symbols = [symbols]
        if not isinstance(symbols, (list, tuple)) or not all(isinstance(s, str) for s in symbols):
            raise BadRequest(f"symbols must be a string or a list of strings, got {symbols!r:.80}")
        intervals = [interval] if isinstance(interval, str) else list(interval)
        if not intervals:
            raise BadRequest("interval must name at least one interval")
        for iv in intervals:
            check_interval(iv)
        name = name or default_name(source)
        limits = {"duration": duration, "max_bytes": max_bytes, "max_age": max_age}
        info = self._recording_start(name, [{"source": source, "symbols": list(symbols),
                                             "interval": iv} for iv in intervals], limits)
        return Recording(self, info.get("name", name))

    def recordings(self) -> pd.DataFrame:
        """Every recording: name, status, sources, symbols, intervals, span (``start``,
        ``end``), rows, bytes, lost rows, detail."""
        rows = self._recording_list()
        cols = ["name", "status", "sources", "symbols", "intervals", "start", "end", "rows",
                "bytes", "lost_rows", "detail"]
        if not rows:
            return pd.DataFrame(columns=cols).set_index("name")
        df = table_frame(rows)
        return df[[c for c in cols if c in df.columns]].set_index("name")

    def recording(self, name: str) -> Recording:
        """The recording called ``name`` (UnknownRecording if there is none)."""
        self._recording_info(name)
        return Recording(self, name)

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def type_name(value: Any) -> str:
    return type(value).__name__


def _wire_time(value: Any, field: str) -> Any:
    """A time as it travels to the hub: strings and numbers as given, datetimes as epoch ms."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    return to_ms(value, field)


def _wire_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as plain JSON values (datetimes become epoch ms)."""
    return {k: v if v is None or isinstance(v, (str, int, float, bool)) else to_ms(v, k)
            for k, v in options.items()}


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
