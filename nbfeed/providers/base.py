"""The ``Provider`` base class: what a data-source author subclasses.

nbfeed runs every provider in its own process (see :mod:`nbfeed.providers.runtime`). Inside that
process the author's code is plain synchronous Python; the base class does the plumbing: client
bookkeeping, thread-safe publishing in batches, idle detection and status reports.

Two levels, pick one:

* **simple** - implement ``subscribe(symbol, interval)`` and ``unsubscribe(symbol, interval)``.
  nbfeed calls ``subscribe`` when a stream gets its first subscriber and ``unsubscribe`` after the
  last one leaves. Publish rows with ``self.publish(...)`` from any thread.
* **reference** - override ``start_streaming(client, symbol, interval)`` and
  ``on_close(client, symbol, interval)`` exactly as in the charting app nbfeed's contract comes
  from; ``send_from({...'write_message'...})`` is accepted too, so a ported provider runs after
  renames only.

Threads: ``init`` runs first, on the process's main thread. ``start_streaming``, ``on_close``,
``subscribe``, ``unsubscribe`` and ``no_update`` run on one *control* thread, one call at a time,
in the order subscribers came and went; they must return promptly (start your own thread for a
long-running upstream loop). ``get_history`` and ``get_dataset`` run on a small worker pool,
possibly at the same time as each other and as the control thread. ``publish`` may be called
from any thread.

Failures: an exception from ``start_streaming``/``subscribe`` is sent to that stream's
subscribers as an ``upstream`` error and the stream is released; one from ``get_history`` becomes
an error for that request only. The process keeps serving everyone else. If the process dies,
the hub restarts it and subscribes it again to every stream it was serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from ..columns import BadRows, Columns
from ..errors import BadRequest
from ..intervals import INTERVALS
from .rows import normalize_rows, reference_message_rows

STATUS_STATES = ("running", "degraded", "failed")
MARKET_STATES = ("open", "closed")


class Provider:
    """Base class for a data source. Subclass it; see the module docstring for the contract.

    ``options`` are the keyword arguments from configuration (``c.NBFeed.provider_options``, the
    CLI or ``register_provider(..., **options)``), kept in ``self.options``.
    """

    #: Source name used in subscriptions; registration may override it.
    name: ClassVar[str] = ""
    #: Intervals this provider can stream/serve at all (entries narrow it per symbol).
    intervals: ClassVar[tuple[str, ...]] = INTERVALS
    #: Names of the subscription options this source takes (``feed.subscribe(source, ...,
    #: **options)``, ``feed.history(..., **options)``). Empty (the default): none, and
    #: subscribers share streams. Non-empty: every subscription is a *session* of its own
    #: (see :meth:`open_session`); ``get_history`` then receives the options as keywords.
    session_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)
        self.stopping = threading.Event()
        self.log = logging.getLogger(f"nbfeed.provider.{self.name or type(self).__name__}")
        self._clients: dict[tuple[str, str], set[Any]] = {}
        self._sink: Any = None  # set by the runtime; None means "not in a provider process"
        #: Rows published while not attached to a runtime (unit tests of a provider class).
        self.published: list[dict] = []

    #: One line saying what the source is, shown where nbfeed lists the providers a user can
    #: turn on (``nbfeed providers``, ``feed.providers()``). Default: the docstring's first line.
    summary: ClassVar[str] = ""

    @classmethod
    def describe(cls) -> str:
        """The :attr:`summary`, else the first line of the class docstring."""
        if cls.summary:
            return cls.summary
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @classmethod
    def setup_problem(cls, options: dict[str, Any]) -> str | None:
        """Why this provider could not run with ``options`` here, or ``None`` if it could.

        Called in the hub's process, never in a provider process, to tell users which sources
        they can turn on (e.g. ``"set POLYGON_API_KEY or the api_key option"``). Look at options
        and environment variables only: no network, no files that take long to read. The
        answer should say what to do. Raising is reported as the problem.
        """
        return None

    # ---- hooks an author implements -------------------------------------------------------

    def init(self) -> None:
        """Called once in the provider's process before any other hook. Open connections here.

        Raising here marks the provider ``failed`` with the exception as the reason.
        """

    def get_dataset(self) -> list[dict]:
        """Return the symbols this provider offers (dataset entries, see docs/internals.md).

        Called on a worker thread when the catalog is populated. Raising keeps the catalog's
        previous entries for this source and reports the error.
        """
        return []

    def subscribe(self, symbol: str, interval: str) -> None:
        """Start the upstream stream of ``symbol`` at ``interval`` (first subscriber arrived).

        Control thread; return promptly. Raise ``UnknownSymbol``/``BadInterval`` for what you
        cannot serve.
        """
        raise NotImplementedError  # abstract

    def unsubscribe(self, symbol: str, interval: str) -> None:
        """Stop the upstream stream of ``symbol`` at ``interval`` (last subscriber left)."""

    def start_streaming(self, client: Any, symbol: str, interval: str) -> None:
        """A client subscribed to ``(symbol, interval)`` (reference-level hook).

        The default records the client and calls :meth:`subscribe` for the first one. ``client``
        is an opaque id; in nbfeed the hub reference-counts its own subscribers, so a provider
        usually sees one client per stream per server.
        """
        key = (symbol, interval)
        clients = self._clients.get(key)
        if clients is None:
            clients = self._clients[key] = set()
        first = not clients
        clients.add(client)
        if first:
            try:
                self.subscribe(symbol, interval)
            except BaseException:
                clients.discard(client)
                if not clients:
                    del self._clients[key]
                raise

    def on_close(self, client: Any, symbol: str, interval: str) -> None:
        """A client left ``(symbol, interval)``; the default calls :meth:`unsubscribe` after the
        last one."""
        key = (symbol, interval)
        clients = self._clients.get(key)
        if not clients or client not in clients:
            return
        clients.discard(client)
        if not clients:
            del self._clients[key]
            self.unsubscribe(symbol, interval)

    def no_update(self, symbol: str, interval: str) -> None:
        """The stream published nothing for ``options["idle_timeout"]`` seconds (control thread).

        A good place to reconnect a silent upstream. Called again after each further idle period.
        """

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> Any:
        """Return bars of ``symbol`` at ``interval`` in ``[start, end)`` (epoch ms, UTC).

        ``count`` asks for at most that many bars, the newest ones before ``end``. Return a list of
        row dicts or a DataFrame (any time form, see docs/internals.md). Worker thread; may block
        on network I/O. The hub caches results, so it only asks for spans it does not hold.
        """
        raise NotImplementedError  # abstract

    # ---- sessions (sources with subscription options) ------------------------------------

    def open_session(self, session: str, symbols: list[str], interval: str,
                     options: dict[str, Any]) -> dict[str, Any]:
        """A subscriber asked for ``symbols`` at ``interval`` with ``options`` (worker thread).

        Validate (raise BadRequest/UnknownSymbol naming the problem) and return a small dict
        of JSON values describing the session; the subscriber receives it. The session's
        streams then arrive through :meth:`start_streaming` with the interval
        ``"<interval>@<session>"``; publish their rows with that interval. Only called for
        classes that list :attr:`session_options`.
        """
        raise NotImplementedError  # abstract for session sources

    def close_session(self, session: str) -> None:
        """The session's subscriber left (called after its streams' ``on_close``). Quick."""

    def control(self, session: str, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """A command for a running session (e.g. ``pause``); return its state (JSON values).

        Runs on the process's command-reader thread, so it must return at once: change state
        and wake your own thread, never do I/O here.
        """
        from ..errors import BadRequest

        raise BadRequest(f"source {self.name!r} takes no control commands")

    # ---- helpers for authors --------------------------------------------------------------

    def publish(self, rows: Any, *, symbol: str | None = None, interval: str | None = None) -> None:
        """Send one row (dict), a list of rows or a DataFrame to everyone subscribed.

        Thread-safe and cheap while the hub keeps up: rows are queued and sent to the hub in
        batches. Rows carry ``symbol`` or get it from the argument; ``interval`` defaults to the
        row's ``interval``, else ``"tick"`` when subscribed to ticks, else the one interval
        subscribed for that symbol. Raises BadRequest naming the first row it cannot read (no
        time, a time beyond int64 epoch ms, a field name or symbol that is not text).

        The rows reach the hub as columns (:class:`nbfeed.columns.Columns`: one array per
        field), built here once; subscribers get back rows equal to the ones published, except
        that a field mixing ints and floats arrives as floats.

        Under back-pressure it **blocks the calling thread**: while more than 200,000 rows wait
        to reach the hub (a hub that cannot keep up, or a flood from the provider), ``publish``
        waits until the queue drains below that or the process is stopping. Publish from your
        own thread, not from a callback that must return at once (e.g. a websocket library's
        receive loop whose pings would then time out); rows are never dropped here.
        """
        if type(rows) is list and symbol is None and rows and _plain_rows(rows):
            batch = rows  # fast path: already nbfeed rows (simulated provider, ported feeds)
        else:
            batch = normalize_rows(rows, source=self.name, symbol=symbol, interval=interval)
        if not batch:
            return
        try:
            # Once, here, on the publishing thread: the rows travel to the hub as columns,
            # and a row that cannot be one (a time beyond int64 ms, a field name that is not
            # text, a symbol that is not text) is refused now, naming it, not in the hub.
            columns = Columns.from_rows(batch)
        except BadRows as exc:
            raise BadRequest(f"publish: {exc}") from None
        sink = self._sink
        if sink is None:
            self.published.extend(batch)
            return
        sink.queue(batch, interval, columns)

    def send_from(self, message: Mapping[str, Any]) -> None:
        """Accept the reference app's ``write_message`` message and publish its rows."""
        symbol, interval, rows = reference_message_rows(message, self.name)
        if rows:
            self.publish(rows, symbol=symbol, interval=interval)

    def set_status(self, state: str, detail: str = "") -> None:
        """Report this provider's health (``running``, ``degraded`` or ``failed`` + a reason).

        Subscribers see it as a ``status`` event; ``GET providers`` shows it. Use it for what a
        user should know, e.g. ``set_status("failed", "polygon: auth failed: bad API key")``.
        """
        if state not in STATUS_STATES:
            raise ValueError(f"state must be one of {STATUS_STATES}, got {state!r}")
        if self._sink is not None:
            self._sink.status(state, str(detail))
        else:
            self.log.info("status %s: %s", state, detail)

    def set_market_state(self, state: str, symbols: Iterable[str] | None = None,
                         detail: str = "") -> None:
        """Say whether the market of ``symbols`` (default: every symbol of this source) is
        ``"open"`` or ``"closed"``, from any thread.

        While a stream's market is closed, its silence is reported to subscribers as
        ``closed`` (with ``detail``, e.g. ``"NYSE closed until 09:30 ET"``), never as
        ``stale``: a closed market is not a dead feed. ``"open"`` ends that; a stream silent
        for too long after it is stale again. Say it when it changes (and for a symbol whose
        first subscriber arrives while its market is closed); the hub remembers the last word
        per symbol until the provider process restarts.
        """
        if state not in MARKET_STATES:
            raise ValueError(f"state must be one of {MARKET_STATES}, got {state!r}")
        names = None if symbols is None else [str(s) for s in (
            [symbols] if isinstance(symbols, str) else symbols)]
        if self._sink is not None:
            self._sink.send(("market", state, names, str(detail)))
        else:
            self.log.info("market %s for %s: %s", state, names or "every symbol", detail)

    def clients(self, symbol: str, interval: str) -> frozenset:
        """The clients currently subscribed to ``(symbol, interval)`` (reference level)."""
        return frozenset(self._clients.get((symbol, interval), ()))

    def streams(self) -> list[tuple[str, str]]:
        """The ``(symbol, interval)`` streams that currently have subscribers."""
        return list(self._clients)

    @classmethod
    def implements_subscribe(cls) -> bool:
        """Whether the class provides the simple-level ``subscribe`` hook."""
        return cls.subscribe is not Provider.subscribe


def _plain_rows(rows: list) -> bool:
    """Whether every row already is an nbfeed row (a dict with an int ``time`` and a
    ``symbol``): then ``publish`` sends the list as it is, without copying."""
    for row in rows:
        if type(row) is not dict or type(row.get("time")) is not int or "symbol" not in row:
            return False
    return True
