"""``Stream``: what ``feed.subscribe(...)`` returns in a notebook.

Rows arrive on a transport thread (the embedded hub's loop, or the websocket thread of a remote
server) and are pushed into a small conflating inbox; one dispatcher thread per stream takes
them out, keeps ``latest`` and calls the ``on_update`` callbacks, so a slow callback delays only
its own stream and never the hub. While the dispatcher is busy, rows of the same key are
conflated (newest wins), which bounds memory whatever the upstream rate.

Thread-safety: every public method may be called from any thread. Callbacks run on the
dispatcher thread; an exception in one is logged and the stream goes on.

Health: :attr:`Stream.status` says whether the data can be trusted right now (``live``,
``stale``, ``closed`` - its market is -, ``waiting`` for a first row, ``restarting`` while the
provider or the connection to the server is down, ``failed``), :attr:`Stream.statuses` the same
per symbol, and :attr:`Stream.age` / :attr:`Stream.ages` how many seconds ago the newest row
arrived. They follow the hub's per-stream ``status`` events (:mod:`nbfeed.hub.staleness`),
which :meth:`Stream.on_event` callbacks receive too - the hooks a widget uses to dim stale rows.
Bars a stream missed during an interruption arrive late but in order, marked
``backfilled: True`` (:mod:`nbfeed.hub.backfill`).

Rows belong to the stream: a callback gets the same dicts as the stream's other callbacks and
:attr:`Stream.latest`, so treat them as read-only (copy one before changing it). They are never
the hub's own: an embedded hub shares each row with every subscriber and with the snapshot new
subscribers start from, so a stream fed by it (``shared_rows=True``) copies each row it delivers
once, on its dispatcher thread, before anyone sees it.

Time: ``stream.clock`` is what the stream's rows run on - the wall clock for live sources, a
virtual clock for replays (:mod:`nbfeed.clock`); ``stream.now_ms()`` reads it. Code that ages
rows (a flash, "3 s ago", an open bar) should use it, so it works the same in a replay.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..clock import WallClock

log = logging.getLogger("nbfeed.client")

MAX_INBOX_ROWS = 50_000
#: Source states during which no row can be trusted to come (the provider or the link is down).
_DOWN = ("failed", "restarting", "starting", "stopped")


class Stream:
    """Live rows of ``symbols`` from ``source`` at ``interval`` (see module docstring).

    Use ``on_update(callback)``, ``async for rows in stream``, ``stream.latest`` (a DataFrame of
    the newest row per symbol), ``close()`` or ``with feed.subscribe(...) as stream:``.
    """

    def __init__(self, source: str, symbols: list[str], interval: str,
                 closer: Callable[[Stream], None], history: Callable[..., Any] | None = None,
                 *, shared_rows: bool = False) -> None:
        self.source = source
        self.symbols = list(symbols)
        self.interval = interval
        self._closer = closer
        self._history = history
        self._shared_rows = shared_rows
        self._lock = threading.Condition()
        self._inbox: list[dict] = []
        self._events: list[dict] = []
        self._callbacks: list[Callable[[list[dict]], Any]] = []
        self._event_callbacks: list[Callable[[dict], Any]] = []
        self._latest: dict[str, dict] = {}
        self._queues: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.closed = False
        self.rows_received = 0
        self.conflated_rows = 0
        #: The newest ``status`` event of the source (provider running, restarting, ...).
        self.source_status: dict[str, Any] = {}
        self._states: dict[str, str] = {}  # symbol -> live | stale | closed (hub's events)
        self._arrived: dict[Any, float] = {}  # symbol -> monotonic arrival of its newest row
        self._newest: dict[Any, int] = {}  # symbol -> newest bar time pushed (candles)
        self.error: dict | None = None
        #: The clock this stream's rows run on (see the module docstring).
        self.clock: Any = WallClock()
        #: Set by the Feed: starts a recording of this stream (see :meth:`record`).
        self._recorder: Callable[..., Any] | None = None
        self._thread = threading.Thread(target=self._dispatch, daemon=True,
                                        name=f"nbfeed-stream-{source}")
        self._thread.start()

    # ---- transport side -------------------------------------------------------------------

    def _push(self, rows: list[dict]) -> None:
        """Called by the transport thread with new rows; never blocks for long."""
        now = time.monotonic()
        with self._lock:
            for row in rows:
                symbol = row.get("symbol")
                self._arrived[symbol] = now
                t = row.get("time")
                if isinstance(t, int) and t > self._newest.get(symbol, t - 1):
                    self._newest[symbol] = t
            self._inbox.extend(rows)
            if len(self._inbox) > MAX_INBOX_ROWS:
                self._conflate()
            self._lock.notify()

    def _push_event(self, event: dict) -> None:
        with self._lock:
            self._events.append(event)
            del self._events[:-100]
            self._lock.notify()

    def _conflate(self) -> None:
        keep: dict[Any, dict] = {}
        tick = self.interval == "tick"
        for row in self._inbox:
            keep[row.get("symbol") if tick else (row.get("symbol"), row.get("time"))] = row
        self.conflated_rows += len(self._inbox) - len(keep)
        self._inbox = list(keep.values())

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._inbox and not self._events and not self.closed:
                    self._lock.wait()
                if self.closed and not self._inbox:
                    return
                rows, self._inbox = self._inbox, []
                events, self._events = self._events, []
            for event in events:
                self._handle_event(event)
            if rows:
                rows = self._prepare(rows)
            if not rows:
                continue
            if self._shared_rows:  # see the module docstring: after conflation, off the hub
                rows = [dict(row) for row in rows]
            latest = self._latest
            for row in rows:
                latest[row.get("symbol")] = row
            self.rows_received += len(rows)
            for cb in list(self._callbacks):
                try:
                    cb(rows)
                except Exception:
                    log.exception("an on_update callback of %r raised", self)
            for loop, queue in list(self._queues):
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, rows)
                except RuntimeError:  # that loop is closed
                    self._queues.remove((loop, queue))
            self._consumed(rows)

    def _prepare(self, rows: list[dict]) -> list[dict]:
        """Dispatcher thread, before callbacks: a subclass may order or filter rows."""
        return rows

    def _consumed(self, rows: list[dict]) -> None:
        """Dispatcher thread, after every callback has had ``rows``."""

    def newest_time(self, symbol: str) -> int | None:
        """The newest bar (candles) or row time received for ``symbol``, None before any."""
        with self._lock:
            return self._newest.get(symbol)

    def _handle_event(self, event: dict) -> None:
        if event.get("type") == "status":
            if "symbol" in event:
                self._states[event["symbol"]] = str(event.get("state"))
            else:
                self.source_status[event.get("source")] = event
        elif event.get("type") == "error":
            self.error = event
            log.warning("nbfeed stream %s: %s", self.source, event.get("message"))
        for cb in list(self._event_callbacks):
            try:
                cb(event)
            except Exception:
                log.exception("an on_event callback raised")

    # ---- user side ------------------------------------------------------------------------

    def on_update(self, callback: Callable[[list[dict]], Any]) -> Callable[[list[dict]], Any]:
        """Call ``callback(rows)`` for every batch of new rows (on the dispatcher thread).

        The rows are shared with this stream's other callbacks and :attr:`latest`: read them,
        copy one to change it. Returns the callback, so it works as a decorator.
        """
        if not callable(callback):
            raise TypeError(f"on_update needs a callable, got {type(callback).__name__}")
        with self._lock:
            self._callbacks.append(callback)
        return callback

    def on_event(self, callback: Callable[[dict], Any]) -> Callable[[dict], Any]:
        """Call ``callback(event)`` for status and error events: the provider's (``source``,
        ``state`` restarting/running/...) and each symbol's (``symbol``, ``state`` live/stale/
        closed, ``age``), on the dispatcher thread."""
        with self._lock:
            self._event_callbacks.append(callback)
        return callback

    def off_update(self, callback: Callable) -> None:
        """Stop calling ``callback`` (registered with :meth:`on_update` or :meth:`on_event`)."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
            if callback in self._event_callbacks:
                self._event_callbacks.remove(callback)

    def now_ms(self) -> int:
        """The time on this stream's clock (epoch ms UTC): wall time live, virtual in a replay."""
        return self.clock.now_ms()

    def record(self, name: str | None = None, *, duration: float | None = None,
               max_bytes: int | None = None, max_age: float | None = None) -> Any:
        """Record this stream's symbols and interval at the hub (beside this stream); returns
        a :class:`~nbfeed.client.recording.Recording`. See :meth:`Feed.record`."""
        if self._recorder is None:
            raise RuntimeError("this stream cannot be recorded (it was not made by a Feed)")
        return self._recorder(self.source, self.symbols, self.interval, name=name,
                              duration=duration, max_bytes=max_bytes, max_age=max_age)

    @property
    def latest(self) -> Any:
        """The newest row per symbol as a DataFrame indexed by symbol (empty before data)."""
        from .frames import latest_frame

        return latest_frame(self.latest_rows())

    @property
    def status(self) -> str:
        """Whether the data can be trusted now (see the module docstring): ``restarting``,
        ``failed``... while the source is down, else ``stale`` if any symbol is, ``closed`` if
        every symbol's market is, ``waiting`` before the first row, else ``live``."""
        if self.closed:
            return "unsubscribed"
        for event in self.source_status.values():
            if event.get("state") in _DOWN:
                return str(event["state"])
        states = self.statuses
        if "stale" in states.values():
            return "stale"
        if states and all(v == "closed" for v in states.values()):
            return "closed"
        if not self._arrived:
            return "waiting"
        return "live"

    @property
    def statuses(self) -> dict[str, str]:
        """Per symbol: ``live``, ``stale``, ``closed`` or ``waiting`` (no row yet)."""
        with self._lock:
            arrived = set(self._arrived)
        return {s: self._states.get(s, "live" if s in arrived else "waiting")
                for s in self.symbols}

    @property
    def age(self) -> float | None:
        """Seconds since the newest row of any symbol arrived; None before the first."""
        with self._lock:
            newest = max(self._arrived.values(), default=None)
        return None if newest is None else time.monotonic() - newest

    @property
    def ages(self) -> dict[str, float | None]:
        """Per symbol, seconds since its newest row arrived (None before its first)."""
        now = time.monotonic()
        with self._lock:
            return {s: (now - self._arrived[s]) if s in self._arrived else None
                    for s in self.symbols}

    def latest_rows(self) -> list[dict]:
        """The newest row per symbol as plain row dicts (copies; epoch-ms ``time``), in
        first-seen order: what :attr:`latest` shows, without the DataFrame round trip (what
        widgets start from)."""
        # list() of a dict's values runs without releasing the GIL: a consistent copy even
        # while the dispatcher thread inserts.
        return [dict(row) for row in list(self._latest.values())]

    def history(self, count: int = 500, interval: str | None = None) -> Any:
        """Recent bars of the first symbol (for charts that start with history).

        ``interval`` defaults to the stream's; a tick stream has no bars of its own, so it
        returns an empty DataFrame unless a bar ``interval`` (e.g. "1s") is asked for.
        """
        interval = interval or self.interval
        if self._history is None or interval == "tick":
            import pandas as pd

            return pd.DataFrame()
        return self._history(self.source, self.symbols[0], interval, count=count)

    def __aiter__(self) -> Stream:
        loop = asyncio.get_running_loop()
        self._aqueue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._queues.append((loop, self._aqueue))
        return self

    async def __anext__(self) -> list[dict]:
        if self.closed and self._aqueue.empty():
            raise StopAsyncIteration
        rows = await self._aqueue.get()
        if rows is None:
            raise StopAsyncIteration
        return rows

    def close(self) -> None:
        """Stop receiving; the last subscriber of a stream leaving stops it upstream."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._lock.notify_all()
            queues = list(self._queues)
        for loop, queue in queues:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except RuntimeError:
                pass
        self._closer(self)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.rows_received} rows"
        return (f"<nbfeed.Stream {self.source} {', '.join(self.symbols[:5])}"
                f"{'...' if len(self.symbols) > 5 else ''} {self.interval} ({state})>")
