"""Global reference counts: which streams any user server wants, seen from a feed server.

Every user server keeps its wanted streams in ``{ns}:demand:{server}`` (a set of stream tokens
with the server's lease as time to live) and announces changes on ``{ns}:ch:demand``.
:class:`DemandTracker` keeps, per server, the set it last read and, per stream, how many servers
want it; the first server wanting a stream calls ``on_add(token)`` (the feed server subscribes
upstream), the last one leaving calls ``on_remove(token)`` (it unsubscribes). So 100 subscriptions
from 5 servers to the same 50 symbols are 50 streams here, and one server unsubscribing never cuts
another.

Two ways in: :meth:`refresh_server` reads one server's set after its notice (fast path), and
:meth:`resync` reads every set (``SCAN`` + ``SMEMBERS``) every few seconds, which catches missed
notices and, above all, servers that died: their set expired, so their demand is gone.

Demand is input from user servers and is checked before it acts: tokens that do not parse, or
name a source this feed server does not run, are ignored; a server asking for more than
``max_streams_per_server`` streams gets the first that many (sorted) and a warning.

After a Redis outage (``hold(seconds)``), a resync does not take demand away for that long:
Redis may have restarted empty, and the user servers re-assert their sets within one heartbeat -
without the hold, every upstream stream would be stopped and restarted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import ResponseError

from ..errors import BadRequest
from .keys import Keys, parse_token

log = logging.getLogger("nbfeed.bus")


class DemandTracker:
    """The union of all servers' demand; see the module docstring."""

    def __init__(self, redis: Any, keys: Keys, *, sources: Iterable[str],
                 on_add: Callable[[str], None], on_remove: Callable[[str], None],
                 max_streams_per_server: int = 10_000) -> None:
        self.redis = redis
        self.keys = keys
        self.sources = set(sources)
        self.on_add = on_add
        self.on_remove = on_remove
        self.max_streams_per_server = max_streams_per_server
        self.per_server: dict[str, frozenset[str]] = {}
        self.counts: dict[str, int] = {}
        self._hold_until = 0.0
        self._warned: set[str] = set()

    def hold(self, seconds: float) -> None:
        """Do not remove demand in resyncs for ``seconds`` (see the module docstring)."""
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    @property
    def holding(self) -> bool:
        return time.monotonic() < self._hold_until

    def streams(self) -> list[str]:
        return sorted(self.counts)

    async def refresh_server(self, server_id: str) -> None:
        try:
            members = await self.redis.smembers(self.keys.demand(server_id))
        except ResponseError:
            return  # not a set (someone wrote junk there): the next resync skips it too
        self._set(server_id, self._checked(server_id, members))

    async def resync(self) -> None:
        seen: dict[str, frozenset[str]] = {}
        keys: list[str] = []
        async for key in self.redis.scan_iter(match=self.keys.demand_prefix + "*", count=1000,
                                              _type="set"):
            keys.append(key.decode() if isinstance(key, bytes) else key)
        if keys:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.smembers(key)
            for key, members in zip(keys, await pipe.execute(raise_on_error=False)):
                if isinstance(members, Exception):
                    continue  # changed type since the scan: junk, not demand
                server = key[len(self.keys.demand_prefix):]
                seen[server] = self._checked(server, members)
        for server, tokens in seen.items():
            self._set(server, tokens)
        if not self.holding:
            for server in [s for s in self.per_server if s not in seen]:
                self._set(server, frozenset())

    def _checked(self, server: str, members: Iterable[bytes | str]) -> frozenset[str]:
        good = []
        for member in members:
            token = member.decode(errors="replace") if isinstance(member, bytes) else member
            try:
                source, _symbol, _interval = parse_token(token)
            except BadRequest:
                continue
            if source in self.sources:
                good.append(token)
        if len(good) > self.max_streams_per_server:
            if server not in self._warned:
                self._warned.add(server)
                log.warning("bus: server %s wants %d streams; serving the first %d",
                            server, len(good), self.max_streams_per_server)
            good = sorted(good)[:self.max_streams_per_server]
        return frozenset(good)

    def _set(self, server: str, tokens: frozenset[str]) -> None:
        old = self.per_server.get(server, frozenset())
        if tokens == old:
            return
        if tokens:
            self.per_server[server] = tokens
        else:
            self.per_server.pop(server, None)
            self._warned.discard(server)
        for token in tokens - old:
            count = self.counts.get(token, 0) + 1
            self.counts[token] = count
            if count == 1:
                self.on_add(token)
        for token in old - tokens:
            count = self.counts.get(token, 0) - 1
            if count <= 0:
                self.counts.pop(token, None)
                self.on_remove(token)
            else:
                self.counts[token] = count
