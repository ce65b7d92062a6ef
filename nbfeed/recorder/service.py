"""The hub's recordings: start, stop, list, describe, delete and export them.

Recording happens in the hub, beside the live subscribers, so a server records with no notebook
open and every front end (notebook, websocket, REST, CLI) drives the same thing. A recording is
one or more hub subscriptions whose outbox is the recorder's
:class:`~nbfeed.recorder.box.RecorderBox` (never conflating, bounded, counting any loss) instead
of a conflating one; streams are shared with live subscribers as usual (reference-counted per
``(source, symbol, interval)``), so recording a stream someone watches costs the provider
nothing more. The writer runs on its own thread (:mod:`nbfeed.recorder.recorder`).

Ordering: every stream is validated by :meth:`Hub.subscribe` before the recording's folder
exists, so a bad symbol leaves nothing behind; the folder is created atomically, so two
recordings can never share a name. :meth:`stop` releases the subscriptions first and then lets
the writer drain, so every row the hub delivered before the stop is written. A recording that
ends by itself (duration, disk limit, a write error) releases its subscriptions when its writer
is done. When the hub stops, every live recording is stopped and written out first.

Replays are not recordable (their rows are a recording already); sources whose streams are
per-subscriber sessions are refused with a message saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BadRequest, LimitExceeded
from .layout import check_name
from .limits import make_limits
from .manifest import LIVE
from .recorder import Recorder
from .store import RecordingStore

if TYPE_CHECKING:
    from ..hub.subscription import Subscription

log = logging.getLogger("nbfeed.recorder")


class RecordingHub(Protocol):
    """What recordings need of the hub they record: subscriptions into a recorder's box, and a
    word when the list of recordings changed (the replay source refreshes its catalog)."""

    def is_session_source(self, source: Any) -> bool: ...

    async def subscribe(self, source: Any, symbols: Any, interval: Any, *,
                        box: Any = None) -> Subscription: ...

    async def recordings_changed(self) -> None: ...

#: Recordings one hub writes at the same time.
MAX_LIVE_RECORDINGS = 32


class _Live:
    __slots__ = ("recorder", "subs")

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.subs: list[Subscription] = []


class RecordingService:
    """Recordings of one hub (see module docstring). Coroutines run on the hub's loop."""

    def __init__(self, hub: RecordingHub, home: str | Path, *, flush_interval: float = 1.0) -> None:
        self.hub = hub
        self.store = RecordingStore(home)
        self.flush_interval = flush_interval
        self._live: dict[str, _Live] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, name: Any, streams: Iterable[tuple[str, Any, str]], *,
                    max_bytes: Any = None, max_age: Any = None, duration: Any = None,
                    min_free_bytes: Any = None) -> dict:
        """Start recording ``streams`` (``(source, symbols, interval)`` each) as ``name``.

        Returns the recording's info. Raises NBFeedError naming a bad name, limit, source,
        symbol or interval, or a name already taken; nothing is left on disk then.
        """
        self._loop = asyncio.get_running_loop()
        name = check_name(name)
        limits = make_limits(max_bytes, max_age, duration, min_free_bytes)
        if name in self._live or self.store.exists(name):
            raise BadRequest(f"a recording named {name!r} already exists; delete it or choose "
                             "another name")
        if len(self._live) >= MAX_LIVE_RECORDINGS:
            raise LimitExceeded(f"at most {MAX_LIVE_RECORDINGS} recordings at once; stop one "
                                "first")
        wanted = list(streams)
        if not wanted:
            raise BadRequest("a recording needs at least one stream (source, symbols, "
                             "interval)")
        recorder = Recorder(self.store.layout, name, [], limits,
                            flush_interval=self.flush_interval, on_end=self._on_writer_end)
        live = _Live(recorder)
        try:
            for source, symbols, interval in wanted:
                if self.hub.is_session_source(source):
                    raise BadRequest(f"source {source!r} replays recordings; it cannot be "
                                     "recorded again (export the recording instead)")
                sub = await self.hub.subscribe(source, symbols, interval, box=recorder.box)
                live.subs.append(sub)
                recorder.streams.append({"source": sub.source, "symbols": list(sub.symbols),
                                         "interval": sub.interval})
            if name in self._live:  # the same name started while we subscribed
                raise BadRequest(f"a recording named {name!r} already exists")
            recorder.manifest["streams"] = recorder.streams
            await asyncio.to_thread(recorder.start)
        except BaseException:
            for sub in live.subs:
                await sub.close()
            raise
        self._live[name] = live
        log.info("recording %s started: %s", name, recorder.streams)
        return recorder.info()

    async def stop(self, name: Any) -> dict:
        """Stop a live recording; returns its final description (rows written, files...)."""
        name = check_name(name)
        live = self._live.get(name)
        if live is None:
            self.store.require(name)
            # already ended: stopping again is harmless
            return await asyncio.to_thread(self.describe, name)
        await self._release(live)
        await asyncio.to_thread(live.recorder.stop)
        self._live.pop(name, None)
        return await asyncio.to_thread(self.describe, name)

    async def close(self) -> None:
        """Stop every live recording (the hub is stopping); waits until they are written."""
        for name in list(self._live):
            try:
                await self.stop(name)
            except Exception:
                log.exception("recording %s: stopping failed", name)

    # list/describe read Parquet footers: call them off the event loop (any thread is fine).
    def list(self) -> list[dict]:
        return self.store.list(self._live_info())

    def describe(self, name: Any) -> dict:
        name = check_name(name)
        return self.store.describe(name, self._live_info().get(name))

    def is_live(self, name: str) -> bool:
        return name in self._live

    async def delete(self, name: Any) -> None:
        """Delete a recording (a live one is stopped first)."""
        name = check_name(name)
        if name in self._live:
            await self.stop(name)
        self.store.require(name)
        await asyncio.to_thread(self.store.delete, name)

    async def export(self, name: Any, path: str | Path, format: str | None = None, *,
                     overwrite: bool = False) -> Path:
        """Write the recording to one Parquet/CSV file (off the event loop)."""
        name = check_name(name)
        return await asyncio.to_thread(self.store.export, name, path, format,
                                       overwrite=overwrite)

    async def wait(self, name: Any, timeout: float | None = None) -> dict:
        """Wait until a live recording ends by itself (duration, limit); its description."""
        name = check_name(name)
        live = self._live.get(name)
        if live is not None:
            await asyncio.wait_for(asyncio.to_thread(live.recorder.done.wait), timeout)
            while name in self._live:  # the end callback releases it on this loop
                await asyncio.sleep(0.01)
        return await asyncio.to_thread(self.describe, name)

    # ---- internals ------------------------------------------------------------------------

    def _live_info(self) -> dict[str, dict]:
        out = {}
        for name, live in self._live.items():
            info = live.recorder.info()
            if info.get("status") == LIVE:
                out[name] = {k: info[k] for k in ("status", "detail", "lost_rows",
                                                  "queued_rows", "heartbeat_ms")}
        return out

    async def _release(self, live: _Live) -> None:
        subs, live.subs = live.subs, []
        for sub in subs:
            await sub.close()

    def _on_writer_end(self, recorder: Recorder) -> None:
        """Writer thread: the recording ended (any reason). Release it on the hub's loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def ended() -> None:
            live = self._live.get(recorder.name)
            if live is not None and live.recorder is recorder:
                await self._release(live)
                self._live.pop(recorder.name, None)
            await self.hub.recordings_changed()

        try:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(ended()))
        except RuntimeError:  # the loop is closing
            pass


def default_name(source: str) -> str:
    """``<source>-YYYYmmdd-HHMMSS`` (UTC): the name of a recording started without one."""
    return f"{source}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
