"""The hub: nbfeed's engine. Plain asyncio, no Jupyter imports.

It supervises one process per provider (or, on a shared feed, reaches each source through the
transport of :mod:`nbfeed.hub.transport`), routes live subscriptions reference-counted per
``(source, symbol, interval)`` (first subscriber -> the provider's ``start_streaming``, last one
gone -> ``on_close``), fans every batch out to each subscriber's bounded outbox, keeps the symbol
catalog and the history cache, and re-subscribes every stream a restarted provider was serving,
so subscribers only see ``status`` events, never silence. Two helpers keep the data trustworthy:
:mod:`.staleness` reports each stream that goes silent for too long as ``stale`` (or ``closed``
when its provider says the market is), and :mod:`.backfill` fills the bars a candle stream missed
during an interruption from history, in order, before live bars continue.

All public coroutines must be awaited on the hub's event loop. Errors are
:mod:`nbfeed.errors` exceptions naming the bad value.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..columns import BadRows, Columns
from ..errors import (
    BadInterval,
    BadRequest,
    LimitExceeded,
    UnknownSource,
    UnknownSymbol,
    UpstreamError,
    shown,
)
from ..intervals import TICK, check_interval
from ..providers.registry import (
    ProviderSpec,
    available_providers,
    check_source_name,
    describe_unloaded,
)
from .backfill import Backfill, Span, gap_event
from .config import HubConfig
from .memory import BIG_ANSWER_BARS, release_freed_memory
from .outbox import StreamBatch
from .requests import check_name, history_request
from .sessions import (
    SESSION_PENDING_ROWS,
    check_args,
    check_command,
    check_options,
    split_interval,
)
from .staleness import StreamHealth
from .subscription import Subscription
from .transport import ProviderTransport, local_process

if TYPE_CHECKING:  # for types only: start() imports and opens them
    from .catalog import Catalog
    from .history import HistoryCache

log = logging.getLogger("nbfeed.hub")
#: Built-in sources the hub starts on first use when they are not configured: ``replay``
#: costs a process only once someone replays (or lists recordings through it).
ON_DEMAND = {"replay": "nbfeed.providers.replay:ReplayProvider"}


class _Stream:
    """Hub-side state of one live stream: its subscribers and the newest rows seen."""

    __slots__ = ("bars", "last", "subs")

    def __init__(self) -> None:
        self.subs: set[Subscription] = set()
        self.last: dict | Columns | None = None  # quotes: the newest row (one-row Columns)
        self.bars: list[dict] = []  # candles: the last two bars (previous, open)


class Hub:
    """Owns providers, subscriptions, the catalog and the history cache. See module docstring."""

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig()
        self.client_id = f"nbfeed-hub-{os.getpid()}-{id(self):x}"
        self._processes: dict[str, ProviderTransport] = {}
        self._streams: dict[tuple[str, str, str], _Stream] = {}
        self._subs: set[Subscription] = set()
        self.catalog: Catalog | None = None
        self.cache: HistoryCache | None = None
        self.started = False
        #: Recordings of this hub (:class:`nbfeed.recorder.service.RecordingService`).
        self.recordings: Any = None
        self._session_ids = itertools.count(1)
        self._sessions: dict[str, Subscription] = {}
        self._tasks: set[asyncio.Task] = set()
        self._populating: dict[str, asyncio.Task] = {}
        self.populate_errors: dict[str, str] = {}
        # Set once a provider has started and its first catalog listing is in (or failed):
        # requests that depend on the catalog wait for it instead of answering "no data".
        # Created here, not in start(), so that requests arriving before the hub has even
        # started (a server answers HTTP before its extensions' start hooks run) wait too.
        self._ready: dict[str, asyncio.Event] = {
            spec.name: asyncio.Event() for spec in self.config.providers}
        #: Each live stream's health (live, stale, closed) and its expected cadence.
        self.health = StreamHealth(self.config.staleness, emit=self._stream_status)
        #: Fills the holes of candle streams after interruptions.
        self.backfill = Backfill(self.config.backfill, fetch=self._backfill_fetch,
                                 filled=self._backfilled)
        self._health_task: asyncio.Task | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the catalog and cache, start every configured provider, populate what's empty.

        A provider that fails to start does not fail the hub: its status says why.
        """
        if self.started:
            return
        self.started = True
        cfg = self.config
        from ..recorder.service import RecordingService
        from .catalog import Catalog
        from .history import HistoryCache

        self.recordings = RecordingService(self, cfg.resolved_home())
        self.catalog = Catalog(cfg.path_for(cfg.catalog_path, "catalog.sqlite"))
        self.cache = HistoryCache(cfg.path_for(cfg.cache_path, "history.sqlite"),
                                  fetch_bars=cfg.history_fetch_bars)
        opener = getattr(cfg.transport, "open", None)
        if opener is not None:  # e.g. the shared feed's Redis connection
            await opener(self)
        self._health_task = asyncio.ensure_future(self._watch_health())
        await asyncio.gather(*(self.add_provider(spec) for spec in cfg.providers))

    async def stop(self) -> None:
        """Stop every provider process and close subscriptions, the catalog and the cache.

        Live recordings are stopped first and written out completely.
        """
        if self.recordings is not None:
            await self.recordings.close()
        for sub in list(self._subs):
            await sub.close()
        await asyncio.gather(*(p.stop() for p in self._processes.values()),
                             return_exceptions=True)
        for task in self._populating.values():
            task.cancel()
        closer = getattr(self.config.transport, "close", None)
        if closer is not None and self.started:
            await closer()
        if self._health_task is not None:
            self._health_task.cancel()
        if self.catalog is not None:
            self.catalog.close()
        if self.cache is not None:
            self.cache.close()
        self.started = False

    def kill_now(self) -> None:
        """Synchronously end every provider process (for ``atexit``, when no loop runs)."""
        for proc in self._processes.values():
            proc.kill_now()

    async def add_provider(self, spec: ProviderSpec, *, replace: bool = False) -> None:
        """Start a provider (also while running, e.g. one defined in a notebook cell).

        With ``replace=True`` an existing provider of that name is stopped first and its
        subscribers are carried over to the new process.
        """
        check_source_name(spec.name)
        if spec.factory in ON_DEMAND.values() and "home" not in spec.options:
            # The replay provider reads this hub's recordings, wherever its home is.
            spec = ProviderSpec(spec.name, spec.factory,
                                {**spec.options, "home": str(self.config.resolved_home())})
        old = self._processes.get(spec.name)
        if old is not None and not replace:
            raise BadRequest(f"a provider named {spec.name!r} is already running")
        # Built first: a transport may refuse the spec (a hub on a shared feed runs none).
        proc = (self.config.transport or local_process)(
            spec, on_message=self._on_message, on_state=self._on_state, config=self.config)
        if old is not None:
            await old.stop()
        ready = self._ready.get(spec.name)
        if ready is None or ready.is_set():
            ready = self._ready[spec.name] = asyncio.Event()
        try:
            await self._start_process(spec, proc, replace)
        finally:
            ready.set()  # failed or not: nobody may wait beyond this

    async def _start_process(self, spec: ProviderSpec, proc: ProviderTransport,
                             replace: bool) -> None:
        self._processes[spec.name] = proc
        await proc.start()
        if (proc.state == "running" and self.config.populate_on_start
                and self.catalog is not None
                and (replace or not self.catalog.sources().get(spec.name))):
            await self.populate([spec.name])

    async def restart_provider(self, source: str) -> None:
        """Restart a provider now (also one marked failed); subscriptions carry over."""
        await self._process(source).restart()

    # ---- queries --------------------------------------------------------------------------

    def sources(self) -> list[str]:
        """Every source this hub runs or is starting."""
        return list(dict.fromkeys([*self._ready, *self._processes]))

    async def wait_ready(self, sources: Iterable[str] | None = None,
                         timeout: float | None = None) -> list[str]:
        """Wait until ``sources`` (default: all) have started and listed their symbols once.

        Bounded by ``timeout`` (default: the provider start timeout); returns the sources that
        are still starting when it gives up, so a caller can say so instead of answering as if
        there were no data. A provider that fails to start counts as ready (its status says why).
        """
        names = list(self._ready) if sources is None else [s for s in sources if s in self._ready]
        pending = [self._ready[n] for n in names if not self._ready[n].is_set()]
        if pending:
            limit = self.config.start_timeout if timeout is None else timeout
            waits = [asyncio.ensure_future(e.wait()) for e in pending]
            _, still = await asyncio.wait(waits, timeout=limit)
            for w in still:
                w.cancel()
        return [n for n in names if not self._ready[n].is_set()]

    async def _ready_process(self, source: Any) -> ProviderTransport:
        """The process of ``source`` once it is ready (see :meth:`wait_ready`).

        An on-demand built-in (``replay``) that is not loaded yet is started here.
        """
        if isinstance(source, str) and source in ON_DEMAND and source not in self._ready \
                and self.started:
            await self._start_on_demand(source)
        if (isinstance(source, str) and source in self._ready
                and await self.wait_ready([source]) and source not in self._processes):
            raise UpstreamError(f"source {shown(source)} is still starting; try again shortly")
        return self._process(source)

    async def _start_on_demand(self, source: str) -> None:
        options = dict(self.config.known_options.get(source, {}))
        await self.add_provider(ProviderSpec(source, ON_DEMAND[source], options))

    def is_session_source(self, source: Any) -> bool:
        """Whether ``source`` serves per-subscriber sessions (takes subscription options)."""
        if source in ON_DEMAND:
            return True
        proc = self._processes.get(source) if isinstance(source, str) else None
        return bool(proc is not None and proc.session_options)

    async def recordings_changed(self) -> None:
        """A recording ended or was deleted: refresh the replay source's catalog if loaded."""
        if "replay" in self._processes and self._processes["replay"].state == "running":
            await self.populate(["replay"])

    def providers_info(self, include_available: bool = False) -> list[dict]:
        """Name, status (running|starting|stalled|restarting|degraded|failed|stopped), reason,
        datasets.

        With ``include_available``, also every provider nbfeed could run but this hub does not
        (built-ins and the ``nbfeed.providers`` entry points), after the loaded ones: status
        ``not loaded`` (``enable`` says how to turn it on) or ``not usable`` (``detail`` says
        why, e.g. a missing API key).
        """
        # A stopped hub has closed its catalog; it still reports its providers as stopped.
        counts = self.catalog.sources() if self.catalog is not None and self.started else {}
        out = self._loaded_info(counts)
        if include_available:
            loaded = set(self.sources())
            for name, path in sorted(available_providers().items()):
                if name in loaded:
                    continue
                about = describe_unloaded(path, self.config.known_options.get(name))
                out.append({"name": name, "status": about["status"], "loaded": False,
                            "detail": about["detail"], "description": about["description"],
                            "enable": self.config.enable_hint.replace("{name}", name),
                            "datasets": 0, "pid": None, "restarts": 0,
                            "populate_error": None})
        return out

    def _loaded_info(self, counts: dict[str, int]) -> list[dict]:
        out = []
        for name in self.sources():
            proc = self._processes.get(name)
            state, detail = proc.status if proc is not None else ("starting", "")
            if state == "running" and not self._ready[name].is_set():
                state, detail = "starting", "listing its symbols"
            out.append({"name": name, "status": state, "loaded": True, "detail": detail,
                        "description": proc.description if proc is not None else "",
                        "enable": "",
                        "datasets": counts.get(name, 0), "pid": proc and proc.pid,
                        "restarts": proc.restarts if proc is not None else 0,
                        "populate_error": self.populate_errors.get(name)})
        return out

    def _process(self, source: Any) -> ProviderTransport:
        if not isinstance(source, str) or source not in self._processes:
            raise UnknownSource(f"unknown source {shown(source)}; available: "
                                f"{', '.join(self._processes) or '(none)'}")
        return self._processes[source]

    def _listed(self, source: str) -> bool:
        """Whether the catalog holds entries for ``source`` (one query; ask once per call)."""
        return self.catalog is not None and bool(self.catalog.sources().get(source))

    def check_symbols(self, source: str, symbols: Iterable[Any], interval: str, *,
                      drop_unknown: bool = False) -> list[str]:
        """The ``symbols`` of ``source`` that stream or have bars at ``interval``.

        Raises UnknownSource, and BadRequest for a symbol that is not a non-empty string of at
        most ``requests.MAX_NAME_CHARS`` characters. A symbol the catalog does not list, or
        lists without ``interval``, raises UnknownSymbol (with close matches) or BadInterval -
        or, with ``drop_unknown``, is left out. While the catalog lists nothing for ``source``
        (yet), the provider decides on symbols and its class on intervals (BadInterval either
        way).
        """
        proc = self._process(source)
        symbols = list(symbols)
        for symbol in symbols:
            check_name(symbol, "symbol")
        # Asked once, not once per symbol: a subscribe may name 1,000.
        if not self._listed(source):
            supported = proc.intervals
            if interval not in supported:
                raise BadInterval(f"interval {shown(interval)} is not supported by {source!r}; "
                                  f"supported: {', '.join(supported)}")
            return symbols
        known = []
        for symbol in symbols:
            entry = self.catalog.lookup(source, symbol)
            intervals = (entry or {}).get("intervals") or []
            if entry is not None and interval in intervals:
                known.append(symbol)
            elif drop_unknown:
                continue
            elif entry is None:
                near = [e["name"] for e in self.catalog.search(symbol, source=source, limit=5)]
                hint = f"; did you mean {', '.join(near)}?" if near else ""
                raise UnknownSymbol(f"unknown symbol {symbol!r} for source {source!r}{hint}")
            else:
                raise BadInterval(f"interval {shown(interval)} is not available for "
                                  f"{source}/{symbol}; available: {', '.join(intervals)}")
        return known

    async def search(self, query: str = "", source: str | None = None,
                     category: str | None = None, type: str | None = None,
                     limit: int = 20) -> list[dict]:
        """Symbols ranked by relevance (exact, prefix, then full text).

        Waits (bounded) for sources that are still listing their symbols, so a server that
        has just started never answers as if it had none.
        """
        if source is not None:
            await self._ready_process(source)
        else:
            await self.wait_ready()
        return self.catalog.search(query, source=source, category=category, type=type,
                                   limit=limit)

    async def populate(self, sources: Iterable[str] | None = None) -> dict[str, str]:
        """Ask providers for their symbols and replace their catalog entries.

        A provider that fails keeps its previous entries; the result says why per source.
        """
        names = list(sources) if sources is not None else list(self._processes)
        for name in names:
            self._process(name)
        results: dict[str, str] = {}
        for name in names:
            try:
                entries = await self._processes[name].request(
                    "dataset", (), self.config.request_timeout)
                # Re-indexing 100k+ entries takes seconds: off the loop; searches go on meanwhile.
                stored = await asyncio.to_thread(self.catalog.replace_source, name, entries)
                self.populate_errors.pop(name, None)
                results[name] = f"ok: {stored} symbols"
            except Exception as exc:  # NBFeedError from the provider, or the catalog failing
                self.populate_errors[name] = str(exc)
                results[name] = f"error: {exc}"
                log.warning("populating %s failed, keeping previous entries: %s", name, exc)
        return results

    async def history(self, source: str, symbol: str, interval: str, start: Any = None,
                      end: Any = None, count: Any = None, *,
                      options: dict | None = None) -> list[dict]:
        """Bars in time order (UTC) as row dicts: :meth:`history_columns`, as rows."""
        return (await self.history_columns(source, symbol, interval, start, end, count,
                                           options=options)).rows()

    async def history_columns(self, source: str, symbol: str, interval: str, start: Any = None,
                              end: Any = None, count: Any = None, *,
                              options: dict | None = None) -> Columns:
        """Bars in time order (UTC) as :class:`~nbfeed.columns.Columns`, served from the
        cache, fetching only missing spans (in pieces of ``history_fetch_bars``).

        The request is checked once (:func:`~nbfeed.hub.requests.history_request`), and every
        provider answer goes through the cache: checked, stored and marked complete. A source
        that takes options (``replay``: ``recording=...``) answers directly, never through the
        cache: its bars depend on the options, not only on the symbol. Cancelling the call
        cancels the provider's work for it (unless another request shares that fetch).
        """
        proc = await self._ready_process(source)
        request = history_request(source, symbol, interval, start, end, count)
        if proc.session_options or options:
            options = check_options(source, options or {}, proc.session_options)
            answer = await proc.request(
                "history", (request.symbol, request.interval, request.start, request.end,
                            request.count, options), self.config.request_timeout)
            if isinstance(answer, Columns):
                return answer
            try:
                return Columns.from_rows(answer or [], request.symbol)
            except (BadRows, TypeError) as exc:
                raise UpstreamError(f"history of {source}/{request.symbol}: malformed answer "
                                    f"from the provider: {exc}") from None
        self.check_symbols(source, [request.symbol], request.interval)
        if self.cache is None:
            raise UpstreamError("the hub is not running")
        timeout = self.config.request_timeout

        async def fetch(span_start: int | None, span_end: int, bars: int | None) -> Any:
            return await proc.request(
                "history", (symbol, request.interval, span_start, span_end, bars), timeout)

        bars = await self.cache.get(request, fetch)
        if len(bars) >= BIG_ANSWER_BARS:  # what fetching and reading it left behind
            await asyncio.to_thread(release_freed_memory)
        return bars

    # ---- live -----------------------------------------------------------------------------

    async def subscribe(self, source: str, symbols: str | Iterable[str], interval: str = TICK, *,
                        max_pending_rows: int | None = None, box: Any = None,
                        options: dict | None = None) -> Subscription:
        """Subscribe to live rows; validated before anything starts (errors name the value).

        ``box`` replaces the subscriber's conflating outbox (a recorder's never conflates).
        ``options`` go to a source that takes subscription options, which then serves this
        subscriber its own session (see :mod:`nbfeed.hub.sessions`); a source that takes none
        refuses them.
        """
        proc = await self._ready_process(source)
        interval = check_interval(interval)
        if isinstance(symbols, str):
            symbols = [symbols]
        try:
            symbols = list(dict.fromkeys(symbols))
        except TypeError:
            raise BadRequest(f"symbols must be a list of strings, got {shown(symbols)}") from None
        if not symbols:
            raise BadRequest("symbols must name at least one symbol")
        limit = self.config.max_symbols_per_subscription
        if len(symbols) > limit:
            raise LimitExceeded(f"{len(symbols)} symbols in one subscription; the limit is {limit}")
        if proc.session_options or options:
            return await self._subscribe_session(proc, source, symbols, interval,
                                                 options or {}, max_pending_rows)
        self.check_symbols(source, symbols, interval)
        sub = Subscription(source, symbols, interval,
                           max_pending_rows or self.config.max_pending_rows,
                           release=self._release, snapshot=self.snapshot, box=box)
        return self._attach(sub, proc)

    async def _subscribe_session(self, proc: ProviderTransport, source: str, symbols: list[str],
                                 interval: str, options: dict,
                                 max_pending_rows: int | None) -> Subscription:
        options = check_options(source, options, proc.session_options)
        for sym in symbols:
            check_name(sym, "symbol")  # which symbols a session has is the provider's answer
        session = f"s{next(self._session_ids)}"
        state = await proc.request("open_session", (session, symbols, interval, options),
                                   self.config.request_timeout)
        pending = max(max_pending_rows or self.config.max_pending_rows, SESSION_PENDING_ROWS)
        sub = Subscription(source, symbols, interval, pending, release=self._release,
                           snapshot=self.snapshot, session=session, options=options,
                           session_state=state)
        self._sessions[session] = sub
        return self._attach(sub, proc)

    async def control(self, sub: Subscription, command: str, args: dict | None = None, *,
                      wait: bool = True) -> dict | None:
        """Send ``command`` (pause, resume, seek, speed, ack...) to ``sub``'s session.

        Returns the provider's answer (the session's state); ``wait=False`` sends it one-way
        and returns None at once (for frequent acknowledgements).
        """
        if sub.session is None or sub.closed:
            raise BadRequest(f"{sub!r} is not a live session: only subscriptions with options "
                             "(e.g. a replay) take control commands")
        command = check_command(command)
        args = check_args(args)
        proc = self._process(sub.source)
        message = (sub.session, command, args)
        if not wait:
            proc.send(("req", 0, "control", message))
            return None
        state = await proc.request("control", message, self.config.request_timeout)
        if isinstance(state, dict):
            sub.session_state.update(state)
        return state

    def _attach(self, sub: Subscription, proc: ProviderTransport) -> Subscription:
        source = sub.source
        self._subs.add(sub)
        for key in sub.keys:
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream()
                self.health.track(key)
            stream.subs.add(sub)
            if len(stream.subs) == 1:
                proc.send(("sub", self.client_id, key[1], key[2]))
            health = self.health.status(key)
            if health is not None and health["state"] != "live":
                sub.put_event(health)  # a new subscriber learns at once that it is stale/closed
        if proc.status[0] not in ("running", "starting"):
            state, detail = proc.status
            sub.put_event({"type": "status", "source": source, "state": state,
                           "detail": detail})
        return sub

    def snapshot(self, keys: Iterable[tuple[str, str, str]]) -> list[dict]:
        """The newest rows of the streams ``keys`` (quotes: the last row; candles: the last
        bars seen live); nothing for a stream nobody subscribes to. The dicts are the hub's
        own, shared with every subscriber: read-only."""
        rows: list[dict] = []
        for key in keys:
            stream = self._streams.get(key)
            if stream is None:
                continue
            if key[2] == TICK:
                last = stream.last
                if last is not None:
                    rows.append(last.rows()[0] if isinstance(last, Columns) else last)
            else:
                rows.extend(stream.bars)
        return rows

    def _release(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        proc = self._processes.get(sub.source)
        for key in sub.keys:
            stream = self._streams.get(key)
            if stream is None:
                continue
            stream.subs.discard(sub)
            if not stream.subs:
                del self._streams[key]
                self.health.forget(key)
                self.backfill.forget(key)
                if proc is not None:
                    proc.send(("unsub", self.client_id, key[1], key[2]))
        if sub.session is not None:
            self._sessions.pop(sub.session, None)
            if proc is not None:
                proc.send(("req", 0, "close_session", (sub.session,)))

    def stats(self) -> dict:
        """Counts for monitoring: streams, subscriptions, rows waiting, rows conflated."""
        return {"streams": len(self._streams), "subscriptions": len(self._subs),
                "pending_rows": sum(s.pending_rows for s in self._subs),
                "conflated_rows": sum(s.conflated_rows for s in self._subs)}

    # ---- from provider processes ----------------------------------------------------------

    def _on_message(self, source: str, msg: tuple) -> None:
        op = msg[0]
        if op == "data":
            for symbol, interval, payload in msg[1]:
                key = (source, symbol, interval)
                stream = self._streams.get(key)
                if stream is None or not len(payload):
                    continue  # late rows of a stream nobody wants any more
                self.health.saw_rows(key)
                self._deliver(key, stream, payload)
        elif op == "market":
            _, state, symbols, detail = msg
            self.health.market(source, symbols, state, detail)
        elif op == "stream_error":
            _, symbol, interval, error = msg
            key = (source, symbol, interval)
            stream = self._streams.pop(key, None)
            if stream is None:
                return
            interval = split_interval(interval)[0]
            event = {"type": "error", "code": getattr(error, "code", "upstream"),
                     "message": f"{source}/{symbol}/{interval}: {error}", "source": source,
                     "symbol": symbol, "interval": interval}
            for sub in stream.subs:
                sub.put_event(event)

    def _deliver(self, key: tuple[str, str, str], stream: _Stream,
                 rows: Columns | list[dict]) -> None:
        """Hand live rows (as columns from a provider process, or dicts) to every subscriber -
        unless they reveal a hole in a candle stream: then they wait until the hole is filled
        (:mod:`.backfill`). Quote rows stay columns all the way to the subscribers; candle
        rows are read as dicts here (built once, shared with the batch)."""
        plain, session = split_interval(key[2])
        batch = (StreamBatch.from_columns(key[0], key[1], plain, rows)
                 if isinstance(rows, Columns) else StreamBatch(key[0], key[1], plain, rows))
        if session is None:
            if key[2] != TICK:
                last = stream.bars[-1].get("time") if stream.bars else None
                if self.backfill.holds(key, last, batch.rows):
                    return
            # (A session's rows - a replay - are its subscriber's own: no snapshot, no cache,
            # no holes to fill; the batch carries the plain interval the subscriber asked for.)
            self._remember(key, stream, batch)
        for sub in stream.subs:
            sub.put_batch(batch)

    def _remember(self, key: tuple[str, str, str], stream: _Stream, batch: StreamBatch) -> None:
        """Keep what a new subscriber starts from, and hand final candles to the cache.

        The one place that decides when a live bar is final: once a later bar of the same
        stream arrived (the newest bar is open; its updates cost one list assignment). Only
        final bars reach ``HistoryCache.add_live_bars``; a failure to store them is logged and
        the stream goes on. A quote stream keeps its newest row, as one-row columns when it
        came as columns (the dict is built only when a snapshot asks for it).
        """
        if key[2] == TICK:
            if batch.columnar:
                # The newest row copied out (a view would keep the whole batch alive, with the
                # dicts and JSON its subscribers had built, for as long as the stream lives).
                n = len(batch)
                stream.last = batch.columns.take(np.arange(n - 1, n))
            else:
                stream.last = batch.rows[-1]
            return
        rows = batch.rows
        last = rows[-1]
        t = last.get("time")
        bars = stream.bars
        if bars and bars[-1].get("time") == t and rows[0].get("time") == t:
            bars[-1] = last  # the hot path: the open bar moved
            return
        # A bar boundary lies in this batch: earlier bars are final and belong in the cache.
        finals: dict[Any, dict] = {}
        if bars:
            finals[bars[-1].get("time")] = bars[-1]
        for row in rows:
            finals[row.get("time")] = row
        finals.pop(t, None)
        final_rows = sorted(finals.values(), key=lambda r: r.get("time") or 0)
        if final_rows and self.cache is not None:
            try:
                self.cache.add_live_bars(key[0], key[1], key[2], final_rows)
            except Exception:
                log.exception("could not store live bars of %s", key)
        stream.bars = [*final_rows[-1:], last]

    def _on_state(self, source: str, state: str, detail: str, origin: str) -> None:
        event = {"type": "status", "source": source, "state": state, "detail": detail}
        for sub in self._subs:
            if sub.source == source:
                sub.put_event(event)
        if state != "running":
            # The process restarts or the provider reports trouble upstream: its candle streams
            # may lose bars; their next later bar opens a fill from the last one delivered.
            self.backfill.interrupt(k for k in self._streams if k[0] == source and k[2] != TICK)
        proc = self._processes.get(source)
        if origin == "process" and state == "running" and proc is not None:
            # A (re)started process knows nothing: subscribe it to every stream of its source,
            # including those requested while it was still starting. Sessions are opened
            # again first (their streams are sent once the provider has them). (One back from
            # a stall, origin "heartbeat", kept its streams and gets the queued commands in
            # order.)
            for (src, symbol, interval) in list(self._streams):
                if src == source and split_interval(interval)[1] is None:
                    proc.send(("sub", self.client_id, symbol, interval))
            sessions = [s for s in self._sessions.values() if s.source == source]
            if sessions:
                task = asyncio.ensure_future(self._reopen_sessions(proc, sessions))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _reopen_sessions(self, proc: ProviderTransport, subs: list[Subscription]) -> None:
        for sub in subs:
            if sub.closed:
                continue
            try:
                state = await proc.request("open_session", (sub.session, sub.symbols,
                                                            sub.interval, sub.options),
                                           self.config.request_timeout)
            except Exception as exc:
                sub.put_event({"type": "error", "code": getattr(exc, "code", "upstream"),
                               "message": f"{sub.source}: session could not be reopened after "
                                          f"a restart: {exc}",
                               "source": sub.source})
                continue
            if isinstance(state, dict):
                sub.session_state.update(state)
            for key in sub.keys:
                if key in self._streams:
                    proc.send(("sub", self.client_id, key[1], key[2]))

    # ---- stream health and holes (see .staleness and .backfill) ----------------------------

    async def _watch_health(self) -> None:
        every = self.config.staleness.check_every
        while True:
            await asyncio.sleep(every)
            try:
                self.health.check()
            except Exception:  # a bug here must not stop the watch
                log.exception("checking stream health failed")

    def _stream_status(self, key: tuple[str, str, str], event: dict) -> None:
        stream = self._streams.get(key)
        if stream is None:
            return
        if event["state"] == "stale" and key[2] != TICK:
            self.backfill.interrupt([key])
        for sub in stream.subs:
            sub.put_event(event)

    async def _backfill_fetch(self, source: str, symbol: str, interval: str, start: int,
                              end: int, count: int | None) -> list[dict]:
        return await self.history(source, symbol, interval, start=start, end=end, count=count)

    def _backfilled(self, key: tuple[str, str, str], bars: list[dict], held: list[dict],
                    error: Exception | None, span: Span) -> None:
        """A fill ended: its bars go out first (marked ``backfilled``), then the held rows."""
        stream = self._streams.get(key)
        if stream is None:
            return
        if bars:
            # The bars are final (history) and already in the cache; the stream starts over
            # from them, so the hub never takes the bar open before the hole for final.
            stream.bars = [dict(b) for b in bars[-2:]]
            batch = StreamBatch(key[0], key[1], key[2],
                                [{**b, "backfilled": True} for b in bars])
            for sub in stream.subs:
                sub.put_batch(batch)
        elif error is not None:
            stream.bars = []  # the bar open before the hole is not known final: not cached
        if error is not None:
            event = gap_event(key, span, error)
            for sub in stream.subs:
                sub.put_event(event)
        if held:
            self._deliver(key, stream, held)


__all__ = ["Hub"]
