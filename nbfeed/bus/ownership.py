"""Which feed server runs which provider: one owner per source at a time, by a lease in Redis.

Each feed server is configured with the same providers; for each source they compete for the key
``{ns}:owner:{source}`` (``SET NX PX``). The holder runs the provider and renews the lease every
``lease_ttl / 3``; the others keep the source on standby and try again at the same pace, so when
the owner dies (its renewals stop) another takes the source over within about one lease.

:class:`LeasedSource` is the feed server's hub transport for one source: a
:class:`~nbfeed.hub.process.ProviderProcess` that runs only while this feed server holds the
lease. On standby it reports ``standby`` to its own hub and refuses sends and requests; when it
gains the lease it starts the process (the hub then re-subscribes every demanded stream, as after
any restart); when it loses it - another server took over, or Redis was out of reach for longer
than a lease, so someone else may have - it stops the process at once. Two owners can therefore
overlap by at most one renew interval, and only across a network partition.

The lease scripts compare before they act (Lua, atomic in Redis): a renewal extends the key only
while it still holds this server's id (re-taking it if it expired, e.g. after Redis restarted
empty), a release deletes it only if it is ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import UpstreamError
from ..hub.transport import local_process

if TYPE_CHECKING:
    from ..hub.config import HubConfig
    from ..hub.transport import OnMessage, OnState
    from ..providers.registry import ProviderSpec

log = logging.getLogger("nbfeed.bus")

#: KEYS[1] owner key; ARGV[1] our id, ARGV[2] ttl ms -> 1 renewed, 2 (re)taken, 0 someone else's.
RENEW_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
#: KEYS[1] owner key; ARGV[1] our id -> 1 released, 0 not ours.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

StateListener = Callable[[str, str, str, str], None]


class LeasedSource:
    """A provider process that runs only while this feed server owns the source."""

    def __init__(self, spec: ProviderSpec, *, on_message: OnMessage, on_state: OnState,
                 config: HubConfig, on_owned_state: StateListener) -> None:
        self.name = spec.name
        self._hub_on_state = on_state
        self._on_owned_state = on_owned_state
        self.inner: Any = local_process(spec, on_message=on_message, on_state=self._inner_state,
                                        config=config)
        self.owned = False
        self.state = "standby"
        self.detail = "waiting for its lease"
        self.holder: str | None = None

    # ---- the transport interface ----------------------------------------------------------

    @property
    def intervals(self) -> tuple[str, ...]:
        return self.inner.intervals

    @property
    def description(self) -> str:
        return self.inner.description

    @property
    def session_options(self) -> tuple[str, ...]:
        return self.inner.session_options

    @property
    def restarts(self) -> int:
        return self.inner.restarts

    @property
    def pid(self) -> int | None:
        return self.inner.pid if self.owned else None

    @property
    def status(self) -> tuple[str, str]:
        return self.inner.status if self.owned else (self.state, self.detail)

    async def start(self) -> None:
        """Nothing runs until the lease is won (:meth:`acquire`)."""
        self._hub_on_state(self.name, self.state, self.detail, "process")

    async def stop(self) -> None:
        await self.release("stopped")

    async def restart(self) -> None:
        if self.owned:
            await self.inner.restart()

    def kill_now(self) -> None:
        self.inner.kill_now()

    def send(self, msg: tuple) -> bool:
        return self.owned and self.inner.send(msg)

    async def request(self, kind: str, args: tuple, timeout: float) -> Any:
        if not self.owned:
            raise UpstreamError(f"provider {self.name!r} runs on another feed server "
                                f"({self.holder or 'none yet'})")
        return await self.inner.request(kind, args, timeout)

    # ---- ownership --------------------------------------------------------------------------

    async def acquire(self) -> None:
        """The lease is ours: start the provider (returns once it runs or failed)."""
        if self.owned:
            return
        self.owned = True
        self.holder = None
        await self.inner.start()

    async def release(self, detail: str, holder: str | None = None) -> None:
        """The lease is gone (or we give it up): stop the provider at once."""
        self.holder = holder
        if self.owned:
            self.owned = False
            await self.inner.stop()
        state = "stopped" if detail == "stopped" else "standby"
        self.state, self.detail = state, detail
        self._hub_on_state(self.name, state, detail, "process")

    def _inner_state(self, name: str, state: str, detail: str, origin: str) -> None:
        if not self.owned:
            return  # the process stopping because we lost the lease is not the source's state
        self.state, self.detail = self.inner.state, self.inner.detail
        self._hub_on_state(name, state, detail, origin)
        self._on_owned_state(name, state, detail, origin)

    def __repr__(self) -> str:
        return f"<LeasedSource {self.name} {'owned' if self.owned else self.state}>"
