"""An nbfeed hub running inside this Python process (plain python, nbclient, CI).

The hub lives on its own asyncio loop in a daemon thread, so it works the same from a script,
from a notebook cell (whose kernel loop stays free) and from other threads. Provider processes
stop when :meth:`EmbeddedFeed.close` is called or the interpreter exits. With ``bus=URL`` the hub
runs no provider: its sources come from a shared feed server through Redis (:mod:`nbfeed.bus`).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from concurrent.futures import Future
from typing import Any

from ..columns import Columns
from ..errors import UpstreamTimeout
from ..hub import Hub, HubConfig, StreamBatch
from ..providers.registry import ProviderSpec, resolve_spec
from .feed import Feed
from .stream import Stream

DEFAULT_PROVIDERS = ("simulated", "csv")


class EmbeddedFeed(Feed):
    """A Feed backed by a Hub on a background event loop in this process."""

    mode = "embedded"

    def __init__(self, providers: list[str | ProviderSpec] | None = None,
                 home: str | None = None, timeout: float = 60.0, *, bus: str | None = None,
                 **config: Any) -> None:
        self.timeout = timeout
        if bus:
            if providers is not None:
                from ..errors import BadRequest

                raise BadRequest("a hub on the shared feed runs no provider of its own: give "
                                 "either providers or bus, not both")
            from ..bus import BusClient

            self.mode = "shared feed"
            self.hub = Hub(BusClient(bus).hub_config(home=home, **config))
        else:
            specs = []
            for p in providers if providers is not None else DEFAULT_PROVIDERS:
                specs.append(p if isinstance(p, ProviderSpec) else resolve_spec(p))
            self.hub = Hub(HubConfig(providers=specs, home=home, **config))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="nbfeed-embedded-hub")
        self._thread.start()
        self._streams: dict[Stream, Any] = {}
        self._closed = False
        self._call(self.hub.start(), timeout=120)
        atexit.register(self.close)

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("nbfeed: do not call the feed from inside a stream callback's "
                               "hub thread; use another thread")
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout or self.timeout)
        except TimeoutError:
            fut.cancel()
            raise UpstreamTimeout("the embedded nbfeed hub did not answer in time") from None

    def _search(self, query: str, source: str | None, category: str | None, type: str | None,
                limit: int) -> list[dict]:
        return self._call(self.hub.search(query, source=source, category=category, type=type,
                                          limit=limit))

    def _history(self, source: str, symbol: str, interval: str, start: Any, end: Any,
                 count: int | None) -> Columns:
        return self._call(self.hub.history_columns(source, symbol, interval, start, end, count))

    def _providers(self) -> list[dict]:
        return self.hub.providers_info(include_available=True)

    def _subscribe(self, source: str, symbols: list[str], interval: str) -> Stream:
        holder: dict[str, Stream] = {}

        async def start() -> Any:
            sub = await self.hub.subscribe(source, symbols, interval)
            # The hub's rows are shared with every subscriber: the stream copies what it delivers.
            stream = Stream(source, symbols, interval, self._release, history=self.history,
                            shared_rows=True)
            holder["s"] = stream
            snapshot = sub.snapshot()
            if snapshot:
                stream._push(snapshot)

            sub.on_batch(_deliver_to(stream))
            return sub

        sub = self._call(start())
        stream = holder["s"]
        self._streams[stream] = sub
        return stream

    def _subscribe_session(self, source: str, symbols: list[str], interval: str,
                           options: dict) -> Stream:
        from .replay import ReplayStream

        async def start() -> Any:
            sub = await self.hub.subscribe(source, symbols, interval, options=options)
            # No copy (shared_rows=False): a session's rows reach this one subscriber only and
            # the hub keeps none of them (no snapshot), so they are the stream's own already.
            stream = ReplayStream(source, symbols, interval, self._release,
                                  self._controller(sub), sub.session_state,
                                  history=self.history)
            sub.on_batch(_deliver_to(stream))
            return sub, stream

        sub, stream = self._call(start())
        self._streams[stream] = sub
        return stream

    def _controller(self, sub: Any) -> Any:
        def control(command: str, args: dict, wait: bool) -> Any:
            if not wait:  # acknowledgements: from the dispatcher thread, never block it
                if not self._closed and not sub.closed:
                    self._loop.call_soon_threadsafe(
                        self._one_way, sub, command, args)
                return None
            return self._call(self.hub.control(sub, command, args))

        return control

    def _one_way(self, sub: Any, command: str, args: dict) -> None:
        if sub.closed:
            return
        task = asyncio.ensure_future(self.hub.control(sub, command, args, wait=False))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _history_with(self, source, symbol, interval, start, end, count, options):
        return self._call(self.hub.history_columns(source, symbol, interval, start, end, count,
                                                   options=options))

    # ---- recordings -----------------------------------------------------------------------

    def _recording_start(self, name: str, streams: list[dict], limits: dict) -> dict:
        return self._call(self.hub.recordings.start(
            name, [(s["source"], s["symbols"], s["interval"]) for s in streams], **limits))

    def _recording_stop(self, name: str) -> dict:
        return self._call(self.hub.recordings.stop(name), timeout=max(self.timeout, 120))

    def _recording_wait(self, name: str, timeout: float | None) -> dict:
        fut = asyncio.run_coroutine_threadsafe(self.hub.recordings.wait(name, timeout),
                                               self._loop)
        try:
            return fut.result(None if timeout is None else timeout + 30)
        except (TimeoutError, asyncio.TimeoutError):
            fut.cancel()
            raise UpstreamTimeout(f"recording {name!r} did not end within {timeout} s"
                                  ) from None

    # describe/list read Parquet footers: in this thread, not on the hub's loop.
    def _recording_info(self, name: str) -> dict:
        return self.hub.recordings.describe(name)

    def _recording_list(self) -> list[dict]:
        return self.hub.recordings.list()

    def _recording_delete(self, name: str) -> None:
        self._call(self.hub.recordings.delete(name), timeout=max(self.timeout, 120))
        self._call(self.hub.recordings_changed())

    def _recording_export(self, name, path, format, overwrite):
        return self._call(self.hub.recordings.export(name, path, format, overwrite=overwrite),
                          timeout=max(self.timeout, 600))

    def _recording_frame(self, name: str) -> Any:
        return self.hub.recordings.store.frame(name)

    def _release(self, stream: Stream) -> None:
        sub = self._streams.pop(stream, None)
        if sub is not None and not self._closed:
            asyncio.run_coroutine_threadsafe(sub.close(), self._loop)

    def register_provider(self, name: str, provider: type | str | None = None,
                          **options: Any) -> None:
        spec = (resolve_spec(name, None, **options) if provider is None
                else ProviderSpec(name=name, factory=provider, options=options))
        self._call(self.hub.add_provider(spec, replace=name in self.hub.sources()), timeout=120)
        state = next(p for p in self.hub.providers_info() if p["name"] == name)
        if state["status"] == "failed":
            from ..errors import UpstreamError

            raise UpstreamError(f"provider {name!r} failed to start: {state['detail']}")

    def close(self) -> None:
        if self._closed:
            return
        for stream in list(self._streams):
            stream.close()
        try:
            self._call(self.hub.stop(), timeout=30)
        except Exception:
            self.hub.kill_now()
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        atexit.unregister(self.close)

    def __repr__(self) -> str:
        where = ""
        transport = self.hub.config.transport
        if transport is not None:
            where = f" on the shared feed at {getattr(transport, 'where', '?')}"
        return f"<nbfeed embedded feed{where}: {', '.join(self.hub.sources())}>"


def _deliver_to(stream: Stream) -> Any:
    """A subscription callback handing a delivery to ``stream``: all rows of one delivery in
    one push (a replay restores the recorded order across symbols within it), events apart."""

    def deliver(items: list[Any]) -> None:
        rows: list[dict] = []
        for item in items:
            if isinstance(item, StreamBatch):
                rows.extend(item.rows)
            else:
                stream._push_event(item)
        if rows:
            stream._push(rows)

    return deliver
