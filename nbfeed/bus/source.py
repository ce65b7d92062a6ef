"""One source of the shared feed, as a user server's hub sees it: a provider transport on Redis.

:class:`BusSource` has the interface of :class:`nbfeed.hub.transport.ProviderTransport`, so the
hub (catalog, subscriptions, fan-out, history cache, wire protocol) works unchanged; it starts no
process. What the hub asks of it becomes Redis traffic through its :class:`~nbfeed.bus.client.
BusClient`:

* ``send(("sub", ...))`` / ``("unsub", ...)`` adds / removes the stream in this server's demand
  set (idempotent: the hub re-sends every ``sub`` when the source comes back) and starts / stops
  reading the stream's Redis Stream;
* ``request("history", ...)`` goes to the feed server that owns the source and waits at most the
  timeout; ``request("dataset")`` reads the catalog the owner published (no round trip to it);
* state: what the owner publishes (``running``, ``restarting``, ``failed``, and the provider's own
  ``degraded``/``failed`` reports), or ``stale`` when nobody serves the source right now (no feed
  server holds its lease, or Redis cannot be reached). Every change reaches the hub through
  ``on_state`` and so every subscriber in-band.

Restarting a provider, or running one here, is the feed server's business: :meth:`restart`
refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, UpstreamError
from ..intervals import INTERVALS
from .keys import stream_token

if TYPE_CHECKING:
    from ..hub.transport import OnMessage, OnState
    from .client import BusClient

STALE_NO_OWNER = "no feed server is serving this source right now; waiting for one"


class BusSource:
    """A source served by a feed server, reached through Redis. See the module docstring."""

    def __init__(self, client: BusClient, name: str, on_message: OnMessage,
                 on_state: OnState) -> None:
        self.client = client
        self.name = name
        self.on_message = on_message
        self.on_state = on_state
        self.state = "starting"
        self.detail = ""
        self.reported = "running"
        self.reported_detail = ""
        self.restarts = 0
        self.intervals: tuple[str, ...] = INTERVALS
        self.description = ""
        #: Per-subscriber sessions (replays) are not served over the bus.
        self.session_options: tuple[str, ...] = ()
        #: The catalog version this hub holds (see :meth:`request` "dataset").
        self.catalog_version: str | None = None
        #: The newest catalog version the owner announced.
        self.remote_catalog_version: str | None = None
        self.wanted: set[str] = set()
        self._applied: tuple[Any, int] = (None, -1)  # (owner, seq) of the state shown
        self._stopped = False

    # ---- the transport interface ----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None  # the provider's process runs on the feed server

    @property
    def status(self) -> tuple[str, str]:
        if self.state == "running" and self.reported != "running":
            return self.reported, self.reported_detail
        return self.state, self.detail

    async def start(self) -> None:
        self._stopped = False
        await self.client.source_started(self)

    async def stop(self) -> None:
        self._stopped = True
        for token in list(self.wanted):
            self._drop(token)
        self._set("stopped", "", "process")

    async def restart(self) -> None:
        raise BadRequest(f"{self.name!r} runs on the shared feed server; restart it there "
                         "(nbfeed feed-server restarts failed providers itself)")

    def kill_now(self) -> None:
        """Nothing to kill: no process runs here."""

    def send(self, msg: tuple) -> bool:
        if msg[0] not in ("sub", "unsub"):
            return False  # session commands: no sessions over the bus
        op, _client, symbol, interval = msg
        token = stream_token(self.name, symbol, interval)
        if op == "sub":
            if token not in self.wanted and not self._stopped:
                self.wanted.add(token)
                self.client.want(self, token, symbol, interval)
        else:
            self._drop(token)
        return True  # demand is recorded even while stale: it applies once a feed is back

    def _drop(self, token: str) -> None:
        if token in self.wanted:
            self.wanted.discard(token)
            self.client.unwant(token)

    async def request(self, kind: str, args: tuple, timeout: float) -> Any:
        if kind == "dataset":
            entries, version = await self.client.read_catalog(self.name)
            self.catalog_version = version
            return entries
        if kind != "history":
            raise BadRequest(f"unknown request kind {kind!r}")
        if self.state == "stale":
            raise UpstreamError(f"source {self.name!r}: {self.detail}")
        return await self.client.request(self.name, kind, list(args), timeout)

    # ---- from the bus ---------------------------------------------------------------------

    def stream_failed(self, token: str, symbol: str, interval: str, error: Exception) -> None:
        """The owner ended a stream with an error: forget it here, tell the hub."""
        self._drop(token)
        self.on_message(self.name, ("stream_error", symbol, interval, error))

    def apply_info(self, info: dict | None) -> None:
        """The owner's record of the source (``None``: no owner) - from a poll."""
        if self._stopped:
            return
        if info is None:
            self.go_stale(STALE_NO_OWNER)
            return
        self._remember(info)
        self._apply_state(info)

    def apply_event(self, event: dict) -> None:
        """A state change the owner announced on the events stream."""
        if self._stopped:
            return
        self._remember(event)
        self._apply_state(event)

    def go_stale(self, detail: str) -> None:
        if self._stopped:
            return
        self._applied = (None, -1)
        if self.state != "stale" or self.detail != detail:
            self._set("stale", detail, "process")

    def _remember(self, info: dict) -> None:
        intervals = info.get("intervals")
        if isinstance(intervals, list) and all(i in INTERVALS for i in intervals) and intervals:
            self.intervals = tuple(intervals)
        self.description = str(info.get("description") or "")[:200]
        restarts = info.get("restarts")
        if isinstance(restarts, int):
            self.restarts = restarts
        version = info.get("catalog_version")
        if isinstance(version, str):
            self.remote_catalog_version = version

    def _apply_state(self, info: dict) -> None:
        owner, seq = info.get("owner"), info.get("seq")
        if not isinstance(seq, int):
            return
        last_owner, last_seq = self._applied
        if owner == last_owner and seq <= last_seq:
            return  # older than what is shown (a poll racing an event)
        self._applied = (owner, seq)
        state = str(info.get("state") or "")
        detail = str(info.get("detail") or "")[:500]
        reported = str(info.get("status") or "running")
        reported_detail = str(info.get("status_detail") or "")[:500]
        if state and (state, detail) != (self.state, self.detail):
            self._set(state, detail, "process")
        if state == "running" and (reported, reported_detail) != (self.reported,
                                                                   self.reported_detail):
            self.reported, self.reported_detail = reported, reported_detail
            self.on_state(self.name, reported, reported_detail, "provider")

    def _set(self, state: str, detail: str, origin: str) -> None:
        self.state, self.detail = state, detail
        if state != "running":
            self.reported, self.reported_detail = "running", ""
        self.on_state(self.name, state, detail, origin)

    def __repr__(self) -> str:
        return f"<BusSource {self.name} {self.state}>"
