"""The live grid socket: ``<base_url>nbfeed/workspace/ws/<capability>/quotes/<source>``.

Workspace opens it right after fetching the snapshot, with no credentials, and speaks:

- client -> server: ``{"type": "params", "params": {"symbol": ...}}`` (``type`` may be missing) on
  open and on every param change; the value is a string, a comma list or a list. Each message
  *replaces* the subscription; no symbols at all means no subscription (the socket stays open).
  Anything else (not JSON, not an object, wrong types, unknown symbols) is ignored - never a
  close: Workspace has no reconnect logic. Unknown symbols are dropped, the rest subscribed.
- server -> client: text frames, each a JSON array of rows ``{"symbol", price, change,
  change_percent, bid, ask}`` - the latest row per symbol since the previous frame, at most
  ``1 / min_interval`` frames per second (default 10).

Access: the path's capability (see :mod:`.backend`) and an ``Origin`` allowlist; a wrong
capability or a foreign ``Origin`` is refused with 403 before the upgrade.

Backpressure: rows come from a hub :class:`~nbfeed.hub.Subscription`, whose outbox conflates
while this socket is slow; a frame is written only after the previous one reached the OS, so a
slow browser costs one pending frame and one row per symbol, never a growing buffer. The
subscription lives as long as the params do: when a provider restarts, the hub re-subscribes it
and rows simply resume (status events are logged, not sent). The server never closes a healthy
socket (see :mod:`nbfeed.server_ext.sockets`, the tornado shell it shares with wire protocol v1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

from ...errors import NBFeedError, shown
from ...hub import Hub, StreamBatch, Subscription
from ...hub.tasks import background
from ...intervals import TICK
from ...jsonfast import dumpb, loads
from ..sockets import SessionSocket
from .backend import MAX_SOCKETS, WorkspaceBackend
from .quotes import MAX_SYMBOLS, live_row, parse_symbols

log = logging.getLogger("nbfeed.workspace")

MAX_MESSAGE = 1024 * 1024   # tornado closes above this (1009); Workspace sends ~100 bytes
MAX_IGNORED = 64 * 1024     # bigger messages are ignored unparsed
SYMBOL_KEYS = ("symbol", "symbols", "ticker")


def params_of(message: str | bytes) -> dict | None:
    """The params object of a client message, or None when the message is to be ignored."""
    if isinstance(message, bytes) or len(message) > MAX_IGNORED:
        return None
    try:
        data = loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("type", "params") != "params":
        return None
    params = data.get("params")
    if params is None and "type" not in data and any(k in data for k in SYMBOL_KEYS):
        params = data  # a bare params object
    return params if isinstance(params, dict) else None


class LiveGridSession:
    """One socket's subscription: params messages in, throttled row frames out.

    ``send(frame)`` writes a frame of UTF-8 JSON bytes and returns an awaitable that completes
    when it is flushed (and may raise when the socket closes meanwhile), or None when the socket
    is gone; either way the session stops writing. No tornado imports: testable with any
    transport.
    """

    def __init__(self, hub: Hub, source: str, send: Callable[[bytes], Awaitable[Any] | None], *,
                 min_interval: float = 0.1, max_symbols: int = MAX_SYMBOLS) -> None:
        self.hub = hub
        self.source = source
        self.send = send
        self.min_interval = min_interval
        self.max_symbols = max_symbols
        self.symbols: list[str] = []
        self.sub: Subscription | None = None
        self._pump: asyncio.Task | None = None
        self.frames = 0
        self.ignored = 0

    async def receive(self, message: str | bytes) -> None:
        params = params_of(message)
        if params is None:
            self.ignored += 1
            log.debug("nbfeed: Workspace socket ignored a message: %.80r", message)
            return
        value = next((params[k] for k in SYMBOL_KEYS if k in params), None)
        try:
            symbols = parse_symbols(value, limit=self.max_symbols)
        except NBFeedError as exc:
            self.ignored += 1
            log.debug("nbfeed: Workspace socket ignored params: %s", exc)
            return
        await self.set_symbols(symbols)

    async def set_symbols(self, symbols: list[str]) -> None:
        """Replace the subscription (an empty list: none). Symbols the catalog does not list
        with live quotes are dropped; a refused subscription keeps the previous one."""
        await self.hub.wait_ready([self.source])
        try:
            wanted = self.hub.check_symbols(self.source, symbols, TICK, drop_unknown=True)
            if wanted == self.symbols and (self.sub is not None or not wanted):
                return
            new = await self.hub.subscribe(self.source, wanted, TICK) if wanted else None
        except NBFeedError as exc:
            log.info("nbfeed: Workspace live grid %s: %s", self.source, exc)
            return
        await self._stop()
        self.symbols, self.sub = wanted, new
        if new is not None:
            self._pump = background(self._run(new), f"Workspace live grid {self.source}")

    async def _stop(self) -> None:
        pump, sub = self._pump, self.sub
        self._pump = self.sub = None
        if pump is not None:
            pump.cancel()
        if sub is not None:
            await sub.close()

    async def _run(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        latest = {row["symbol"]: row for row in sub.snapshot()}
        last_flush = loop.time() - self.min_interval
        while True:
            if latest:
                wait = last_flush + self.min_interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # throttle; rows keep conflating meanwhile
                    self._merge(sub.take(), latest)
                if not await self._write(latest):
                    return
                latest = {}
                last_flush = loop.time()
            try:
                self._merge(await sub.get(), latest)
            except EOFError:
                return

    def _merge(self, items: list[Any], latest: dict[str, dict]) -> None:
        for item in items:
            if isinstance(item, StreamBatch):
                if item.rows:
                    latest[item.symbol] = item.rows[-1]
            elif isinstance(item, dict):
                log.info("nbfeed: Workspace live grid %s: %s %s", self.source,
                         item.get("type"), item.get("state") or item.get("message", ""))

    async def _write(self, latest: dict[str, dict]) -> bool:
        """Send one frame; False once the socket is gone (the pump then ends). Rows JSON
        cannot hold are dropped (logged), not the socket's pump."""
        try:
            frame = dumpb([live_row(r) for r in latest.values()])
        except (ValueError, TypeError) as exc:
            log.warning("nbfeed: Workspace live grid %s: rows dropped: %s", self.source, exc)
            return True
        done = self.send(frame)
        if done is None:
            return False
        try:
            await done
        except Exception as exc:  # the transport closed mid-write
            log.debug("nbfeed: Workspace live grid %s: write failed: %s", self.source, exc)
            return False
        self.frames += 1
        return True

    async def close(self) -> None:
        """Release the subscription; safe to call twice."""
        await self._stop()


class LiveGridSocket(SessionSocket):
    """The socket of one Workspace live grid: capability, origin and socket-count checks around
    a :class:`LiveGridSession`."""

    max_message_bytes = MAX_MESSAGE
    backend: WorkspaceBackend
    capability = ""

    def initialize(self, backend: WorkspaceBackend, min_interval: float = 0.1) -> None:
        self.backend = backend
        self.min_interval = min_interval

    def check_origin(self, origin: str | None = None) -> bool:
        return self.backend.origin_allowed(origin if origin is not None else self.get_origin(),
                                           self.request.headers.get("Host"), self.settings)

    @allow_unauthenticated
    async def get(self, capability: str, source: str) -> None:
        if not self.backend.capability_matches(capability):
            log.warning("nbfeed: Workspace socket refused: wrong capability (from %s)",
                        self.request.remote_ip)
            raise web.HTTPError(403, "wrong capability; fetch widgets.json again")
        if not self.check_origin():
            log.warning("nbfeed: Workspace socket refused: origin %r is not in "
                        "c.NBFeed.workspace_origins", self.get_origin())
            raise web.HTTPError(403, "origin not allowed")
        if source not in self.backend.hub.sources():
            raise web.HTTPError(404, f"unknown source {shown(source)}")
        if len(self.backend.sockets) >= MAX_SOCKETS:
            raise web.HTTPError(503, "too many Workspace sockets")
        self.capability = capability
        await super().get(capability, source)

    def make_session(self, capability: str, source: str) -> LiveGridSession:
        self.backend.sockets.add(self)
        return LiveGridSession(self.backend.hub, source, self.send,
                               min_interval=self.min_interval)

    def on_close(self) -> None:
        self.backend.sockets.discard(self)
        super().on_close()
