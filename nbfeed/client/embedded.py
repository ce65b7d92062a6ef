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
                 count: int | None) -> list[dict]:
        return self._call(self.hub.history(source, symbol, interval, start, end, count))

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

            def deliver(items: list[Any]) -> None:
                for item in items:
                    if isinstance(item, StreamBatch):
                        stream._push(item.rows)
                    else:
                        stream._push_event(item)

            sub.on_batch(deliver)
            return sub

        sub = self._call(start())
        stream = holder["s"]
        self._streams[stream] = sub
        return stream

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
