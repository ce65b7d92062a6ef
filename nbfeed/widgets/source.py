"""The one stream adapter both widgets use: what a widget needs from the stream it shows.

A *stream* is duck-typed (``nbfeed.Stream`` is one): it must have ``on_update(callback)``,
where the callback gets lists of row dicts from any thread. Optional: ``off_update(cb)`` (or
``on_update`` returning an unsubscribe callable), ``interval``, ``symbol``/``symbols``,
``source``, ``latest_rows()`` or ``latest`` (DataFrame or rows), ``history(count)``,
``on_event(cb)`` for status events, and ``close()``.

The rule for subscriptions (the same for LiveGrid and LiveChart): a widget given a stream
object never closes it; a widget given a source name subscribes through
``nbfeed.client.connect()`` and owns that subscription, closing it when the widget closes or
switches to another symbol.

Failure behaviour: the callback registered with the stream is a small listener object that
:meth:`StreamSource.detach` disarms, so a stream that keeps a callback after detaching (or
that cannot unregister it) no longer reaches the widget; errors while detaching are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..errors import BadRequest
from ..intervals import TICK

log = logging.getLogger(__name__)


def subscribe(source: str, symbols: str | Sequence[str], interval: str | None) -> Any:
    """A new subscription through ``nbfeed.client.connect()`` (the widget will own it)."""
    from ..client import connect  # the widgets -> client edge; lazily, it starts a hub

    return connect().subscribe(source, symbols, interval=interval or TICK)


class _Listener:
    """The callable handed to the stream; disarmed on detach."""

    def __init__(self, on_rows: Callable[[Any], None]) -> None:
        self.on_rows: Callable[[Any], None] | None = on_rows

    def __call__(self, rows: Any) -> None:
        target = self.on_rows
        if target is not None:
            target(rows)


class _EventListener(_Listener):
    pass


class StreamSource:
    """A widget's stream: attach/detach, interval, symbols, latest rows, history, status."""

    def __init__(self, stream: Any, *, owned: bool) -> None:
        if not callable(getattr(stream, "on_update", None)):
            raise BadRequest(f"a stream needs an on_update(callback) method, got {stream!r:.80}")
        self.stream = stream
        self.owned = owned
        self._listener: _Listener | None = None
        self._events: _EventListener | None = None
        self._unsubscribe: Callable[[], Any] | None = None

    # ---------------------------------------------------------------- what the stream is

    @property
    def interval(self) -> str | None:
        return getattr(self.stream, "interval", None)

    @property
    def source(self) -> str | None:
        value = getattr(self.stream, "source", None)
        return value if isinstance(value, str) else None

    @property
    def symbols(self) -> list[str]:
        one = getattr(self.stream, "symbol", None)
        if isinstance(one, str):
            return [one]
        many = getattr(self.stream, "symbols", None)
        if isinstance(many, (list, tuple)):
            return [s for s in many if isinstance(s, str)]
        return []

    @property
    def fields(self) -> list[str]:
        return list(getattr(self.stream, "fields", ()) or ())

    def latest_rows(self) -> list[dict[str, Any]]:
        """The stream's newest row per symbol as row dicts (times as epoch ms); [] if none."""
        fast = getattr(self.stream, "latest_rows", None)
        if callable(fast):
            return [dict(r) for r in fast()]
        latest = getattr(self.stream, "latest", None)
        if latest is None:
            return []
        if isinstance(latest, pd.DataFrame):
            return frame_rows(latest) if len(latest) else []
        return [dict(r) for r in latest]

    def history(self, count: int, interval: str | None = None) -> Any:
        """Recent bars from the stream's ``history(count[, interval])``, or None when it has
        none. Raises TypeError when ``interval`` is given and the stream's history takes none."""
        fetch = getattr(self.stream, "history", None)
        if not callable(fetch):
            return None
        return fetch(count) if interval is None else fetch(count, interval=interval)

    # ---------------------------------------------------------------- listening

    def attach(self, on_rows: Callable[[Any], None],
               on_event: Callable[[dict], None] | None = None) -> None:
        """Start calling ``on_rows(rows)`` (and ``on_event(event)`` for status events)."""
        self._listener = _Listener(on_rows)
        token = self.stream.on_update(self._listener)
        # nbfeed's Stream returns the callback itself (decorator use) and has off_update.
        self._unsubscribe = token if callable(token) and token is not self._listener else None
        hook = getattr(self.stream, "on_event", None)
        if on_event is not None and callable(hook):
            self._events = _EventListener(on_event)
            hook(self._events)

    def detach(self) -> None:
        """Stop listening; close the stream if the widget owns it. Safe to call twice."""
        listener, events, unsubscribe = self._listener, self._events, self._unsubscribe
        self._listener = self._events = self._unsubscribe = None
        off = getattr(self.stream, "off_update", None)
        for item in (listener, events):
            if item is None:
                continue
            item.on_rows = None
            try:
                if item is listener and unsubscribe is not None:
                    unsubscribe()
                elif callable(off):
                    off(item)
            except Exception:
                log.warning("could not unregister a widget from %r", self.stream, exc_info=True)
        if self.owned:
            self.owned = False
            try:
                self.stream.close()
            except Exception:
                log.exception("closing the widget's own subscription failed")


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as row dicts; a named index becomes a field, datetimes become epoch ms."""
    df = frame if isinstance(frame.index, pd.RangeIndex) else frame.reset_index()
    for name in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[name]):
            ts = df[name]
            if getattr(ts.dt, "tz", None) is None:
                ts = ts.dt.tz_localize("UTC")
            df = df.assign(**{name: (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")})
    return [{str(k): v for k, v in row.items()} for row in df.to_dict("records")]
