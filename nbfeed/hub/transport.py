"""How the hub reaches a source: the provider transport, a small interface with two kinds.

The hub never talks to a provider directly. Per source it holds one :class:`ProviderTransport`
and calls it; the transport calls the hub back. Two transports exist:

* :class:`~nbfeed.hub.process.ProviderProcess` (the default, :func:`local_process`): the
  provider runs in a child process of this hub, supervised here;
* :class:`nbfeed.bus.source.BusSource`: the provider runs once for a whole deployment in a feed
  server, and this hub reaches it through Redis (see :mod:`nbfeed.bus`).

A :class:`TransportFactory` builds one transport per source. A factory may also own resources
shared by all its transports (a Redis connection): if it has ``async open(hub)`` and
``async close()`` the hub calls them around its own ``start()``/``stop()``, and it may refuse a
spec (``BadRequest``) - e.g. a hub on the shared feed does not run providers of its own.

The contract, in the hub's words:

* ``send(("sub"|"unsub", client, symbol, interval))`` asks for / gives up a live stream. The
  hub sends ``sub`` once per stream when its first subscriber arrives, ``unsub`` when the last one
  leaves, and ``sub`` again for every stream when the transport reports ``running`` with origin
  ``"process"`` (a restarted source knows nothing). ``send`` returns False when the message could
  not be delivered now; the hub relies on that re-send rather than on retries.
* ``request(kind, args, timeout)`` asks something (``"history"``: ``(symbol, interval, start_ms,
  end_ms, count)`` -> rows; ``"dataset"``: ``()`` -> the catalog entries as a
  ``providers.listing.Listing``; ``"open_session"`` and
  ``"control"`` for sources with ``session_options``) and always ends within ``timeout``: a
  lost reply is :class:`~nbfeed.errors.UpstreamTimeout`, never a hang.
* ``on_message(source, ("data", [(symbol, interval, rows), ...]))`` delivers rows in batches
  (``rows``: a list of dicts or a :class:`~nbfeed.columns.Columns`);
  ``on_message(source, ("stream_error", symbol, interval, error))`` ends one stream;
  ``on_state(source, state, detail, origin)`` reports every state change (origin ``"process"``
  for the transport's own lifecycle, ``"provider"`` for what the provider says about itself).
* ``state``/``detail`` are the lifecycle (``starting``, ``running``, ``restarting``, ``failed``,
  ``stopped``; a bus source also ``stale``: nobody serves it right now); ``status`` is what users
  see (the lifecycle, or the provider's own report while running).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..providers.registry import ProviderSpec
    from .config import HubConfig

OnMessage = Callable[[str, tuple], None]
OnState = Callable[[str, str, str, str], None]


@runtime_checkable
class ProviderTransport(Protocol):
    """One source as the hub sees it. All methods run on the hub's event loop."""

    name: str
    state: str
    detail: str
    #: How often the source was restarted (for display).
    restarts: int
    #: Intervals the source can serve at all (used while its catalog is empty).
    intervals: tuple[str, ...]
    #: One line about the source, for listings.
    description: str
    #: Subscription options the source takes (``Provider.session_options``); non-empty means
    #: per-subscriber sessions (``request("open_session")``, ``request("control")``).
    session_options: tuple[str, ...]

    @property
    def pid(self) -> int | None: ...

    @property
    def status(self) -> tuple[str, str]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def restart(self) -> None: ...

    def kill_now(self) -> None: ...

    def send(self, msg: tuple) -> bool: ...

    async def request(self, kind: str, args: tuple, timeout: float) -> Any: ...


class TransportFactory(Protocol):
    """Builds the transport of one source (may raise BadRequest to refuse the spec)."""

    def __call__(self, spec: ProviderSpec, *, on_message: OnMessage, on_state: OnState,
                 config: HubConfig) -> ProviderTransport: ...


def local_process(spec: ProviderSpec, *, on_message: OnMessage, on_state: OnState,
                  config: HubConfig) -> ProviderTransport:
    """The default transport: the provider in a supervised child process of this hub."""
    from .process import ProviderProcess

    return ProviderProcess(
        spec, on_message=on_message, on_state=on_state,
        settings={"idle_timeout": spec.options.get("idle_timeout", config.idle_timeout),
                  "log_level": config.provider_log_level},
        max_restarts=config.max_restarts, backoff_base=config.backoff_base,
        backoff_max=config.backoff_max, stable_after=config.stable_after,
        start_timeout=config.start_timeout, heartbeat_interval=config.heartbeat_interval,
        stall_timeout=config.stall_timeout, stall_restart_after=config.stall_restart_after)
