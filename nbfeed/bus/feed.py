"""The feed server: providers run once for a whole deployment and are served through Redis.

A :class:`FeedServer` is a normal :class:`~nbfeed.hub.Hub` - real provider processes with their
supervision, the symbol catalog, the history cache - whose sources are
:class:`~nbfeed.bus.ownership.LeasedSource` transports, plus the pieces that serve it on Redis:

* ownership (:mod:`nbfeed.bus.ownership`): each source runs on exactly one feed server at a time;
  every ``lease_ttl / 3`` this server renews the leases it holds and tries to take the free ones;
* demand (:mod:`nbfeed.bus.demand`): the union of every user server's wanted streams, kept from
  their notices on ``{ns}:ch:demand`` and a full resync on every beat;
* live data (:mod:`nbfeed.bus.publisher`): one hub subscription per demanded stream, each batch
  one ``XADD`` to the stream's bounded Redis Stream. Standby servers hold the same subscriptions,
  so a takeover re-subscribes upstream at once (the hub does it when the provider is running);
* requests (:mod:`nbfeed.bus.requests`): history for the sources owned here, from the shared
  history cache;
* records and events: for each owned source, ``{ns}:source:{source}`` (state, intervals, catalog
  version; expires with the lease, so a dead owner shows as ``stale``) and an entry on
  ``{ns}:events`` for every state change, so every subscriber hears of it in-band;
* catalogs: when a source starts running here (and on :meth:`refresh_catalogs`: SIGHUP, an
  operator's ``{"op": "populate"}`` on ``{ns}:ch:control``, or every ``catalog_refresh`` seconds)
  the provider's listing goes into the local catalog and, compressed, to ``{ns}:catalog:{source}``
  with a content version; user servers replicate it when the version changes.

Failure behaviour: a Redis outage does not stop the providers at once - beats retry with backoff;
if it lasts longer than a lease, the owned sources are released (their providers stop), since
another feed server may have taken them over. When Redis answers again (perhaps restarted
empty) leases, records, catalogs and TTLs are written again, and demand is held for a lease
while the user servers re-assert theirs. A graceful :meth:`stop` hands the sources over: leases
are deleted and the records say ``restarting`` until another feed server owns them (or they
expire and show ``stale``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    RedisError,
    ResponseError,
)

from ..errors import BadRequest, UpstreamError
from ..hub import Hub, HubConfig
from ..providers.registry import ProviderSpec
from . import codec
from .connection import Backoff, check_url, connect, describe_error, redact
from .demand import DemandTracker
from .keys import DEFAULT_NAMESPACE, Keys, check_server_id, parse_token, safe_id
from .ownership import RELEASE_SCRIPT, RENEW_SCRIPT, LeasedSource
from .publisher import Publisher
from .requests import RequestServer

log = logging.getLogger("nbfeed.bus")

DAY_MS = 24 * 3600 * 1000
EVENTS_LENGTH = 1000


class FeedServer:
    """Runs providers once and serves them through Redis; see the module docstring."""

    def __init__(self, url: str, config: HubConfig, *, namespace: str = DEFAULT_NAMESPACE,
                 feed_id: str | None = None, lease_ttl: float = 10.0, stream_length: int = 200,
                 stream_ttl: float = 300.0, catalog_refresh: float = 0.0,
                 max_streams_per_server: int = 10_000) -> None:
        self.url = check_url(url)
        self.where = redact(self.url)
        self.keys = Keys(namespace)
        self.feed_id = check_server_id(feed_id or safe_id(
            f"feed-{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"))
        if not 1.0 <= lease_ttl <= 3600:
            raise BadRequest(f"lease_ttl must be 1-3600 seconds, got {lease_ttl!r}")
        if not 10 <= stream_length <= 1_000_000:
            raise BadRequest(f"stream_length must be 10-1000000 entries, got {stream_length!r}")
        self.lease_ttl = lease_ttl
        self.stream_length = stream_length
        self.stream_ttl = max(stream_ttl, 3 * lease_ttl)
        self.catalog_refresh = catalog_refresh
        self.max_streams_per_server = max_streams_per_server
        config.transport = self._make_source
        config.populate_on_start = False  # catalogs are taken when a source is owned
        self.config = config
        self.hub = Hub(config)
        self.leased: dict[str, LeasedSource] = {}
        self.redis: Any = None
        self.publisher: Publisher | None = None
        self.demand: DemandTracker | None = None
        self.requests: RequestServer | None = None
        self._tasks: list[asyncio.Task] = []
        self._acquiring: dict[str, asyncio.Task] = {}
        self._seq: dict[str, int] = {}
        self._versions: dict[str, str] = {}
        self._catalog_done: set[str] = set()
        self._populate_errors: dict[str, str] = {}
        self._announce: asyncio.Queue | None = None
        self._last_ok = 0.0
        self._redis_ok = True
        self._beat_now = asyncio.Event()
        self.started = False

    # ---- the hub's transport factory ------------------------------------------------------

    def _make_source(self, spec: ProviderSpec, *, on_message: Any, on_state: Any,
                     config: HubConfig) -> LeasedSource:
        source = LeasedSource(spec, on_message=on_message, on_state=on_state, config=config,
                              on_owned_state=self._on_owned_state)
        self.leased[spec.name] = source
        return source

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, start the hub (every provider on standby) and the serving loops."""
        self.redis = connect(self.url, f"nbfeed-{self.feed_id}")
        await self._check_login()
        self._announce = asyncio.Queue()
        await self.hub.start()
        self.publisher = Publisher(self.hub, self.redis, self.keys,
                                   stream_length=self.stream_length, stream_ttl=self.stream_ttl,
                                   on_failure=self._failed,
                                   owns=lambda name: name in self.leased
                                   and self.leased[name].owned)
        self.demand = DemandTracker(self.redis, self.keys, sources=self.leased,
                                    on_add=self.publisher.want, on_remove=self.publisher.drop,
                                    max_streams_per_server=self.max_streams_per_server)
        self.requests = RequestServer(self.redis, self.keys, self._serve_request,
                                      reply_ttl_ms=int(self.config.request_timeout * 2000))
        self.publisher.start()
        self.requests.start()
        self._last_ok = time.monotonic()
        self.started = True
        self._tasks = [asyncio.ensure_future(self._beat_loop()),
                       asyncio.ensure_future(self._listen_loop()),
                       asyncio.ensure_future(self._announce_loop())]
        if self.catalog_refresh > 0:
            self._tasks.append(asyncio.ensure_future(self._refresh_loop()))
        log.info("feed server %s on %s: providers %s", self.feed_id, self.where,
                 ", ".join(self.leased) or "(none)")

    async def _check_login(self) -> None:
        """Fail at once on refused credentials; a Redis that is merely down is waited for."""
        try:
            await self.redis.ping()
        except (AuthenticationError, AuthorizationError, ResponseError) as exc:
            await self.redis.aclose()
            raise UpstreamError(f"Redis at {self.where} refused the feed server's login: "
                                f"{describe_error(exc)}") from None
        except (RedisError, OSError) as exc:
            log.warning("feed server: Redis at %s does not answer yet (%s); waiting for it",
                        self.where, describe_error(exc))

    async def stop(self) -> None:
        """Hand the sources over (leases deleted, records say so), stop everything."""
        if not self.started:
            return
        self.started = False
        self._beat_now.set()
        tasks = [*self._tasks, *self._acquiring.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        owned = [name for name, src in self.leased.items() if src.owned]
        if owned:
            try:
                pipe = self.redis.pipeline(transaction=False)
                for name in owned:
                    pipe.eval(RELEASE_SCRIPT, 1, self.keys.owner(name), self.feed_id)
                    self._seq[name] = self._seq.get(name, 0) + 1
                    record = self._record(name, state="restarting",
                                          detail="its feed server stopped; waiting for another")
                    pipe.set(self.keys.source(name), codec.encode_info(record),
                             px=int(self.lease_ttl * 1000))
                    pipe.xadd(self.keys.events, {"e": codec.encode_info(
                        {"type": "state", **record})}, maxlen=EVENTS_LENGTH, approximate=True)
                await asyncio.wait_for(pipe.execute(), 5)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                log.warning("feed server: could not hand over %s: %s", ", ".join(owned),
                            describe_error(exc))
        if self.requests is not None:
            await self.requests.close()
        if self.publisher is not None:
            await self.publisher.close()
        await self.hub.stop()
        await self.redis.aclose()
        log.info("feed server %s stopped", self.feed_id)

    def kill_now(self) -> None:
        self.hub.kill_now()

    def owned(self) -> list[str]:
        return sorted(name for name, src in self.leased.items() if src.owned)

    def stats(self) -> dict:
        publisher, requests = self.publisher, self.requests
        return {"feed_id": self.feed_id, "owned": self.owned(),
                "streams": self.demand.streams() if self.demand else [],
                "entries_written": publisher.entries_written if publisher else 0,
                "rows_written": publisher.rows_written if publisher else 0,
                "requests_served": requests.served if requests else 0,
                "requests_shared": requests.shared if requests else 0}

    # ---- the beat: leases, records, TTLs, demand --------------------------------------------

    async def _beat_loop(self) -> None:
        backoff = Backoff(cap=self.lease_ttl / 3)
        # Loops test `started` as well as being cancelled: a cancel that lands inside a Redis
        # command may come back as a connection error.
        while self.started:
            try:
                await asyncio.wait_for(self._beat(), max(self.lease_ttl / 2, 2))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                await self._beat_failed(exc)
                await backoff.wait()
                continue
            backoff.reset()
            try:
                await asyncio.wait_for(self._beat_now.wait(), self.lease_ttl / 3)
            except asyncio.TimeoutError:
                pass
            self._beat_now.clear()

    async def _beat(self) -> None:
        ttl = int(self.lease_ttl * 1000)
        names = list(self.leased)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            # EVAL, not EVALSHA: a Redis restarted empty has no script cache to miss.
            pipe.eval(RENEW_SCRIPT, 1, self.keys.owner(name), self.feed_id, ttl)
        results = await pipe.execute()
        for name, result in zip(names, results):
            source = self.leased[name]
            if result in (1, 2):
                if not source.owned and name not in self._acquiring:
                    self._acquire(name)
            elif source.owned:
                holder = await self.redis.get(self.keys.owner(name))
                holder = holder.decode(errors="replace") if holder else None
                await self._lose(name, f"taken over by feed server {holder}", holder)
        now = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        if names:
            pipe.zadd(self.keys.sources, dict.fromkeys(names, now))
        pipe.zremrangebyscore(self.keys.sources, "-inf", now - DAY_MS)
        pipe.pexpire(self.keys.sources, DAY_MS)
        pipe.pexpire(self.keys.events, DAY_MS)
        for name in self.owned():
            pipe.set(self.keys.source(name), codec.encode_info(self._record(name)), px=ttl)
            pipe.pexpire(self.keys.catalog(name), DAY_MS)
        assert self.publisher is not None and self.demand is not None
        owned = set(self.owned())
        for token in self.publisher.subs:
            if parse_token(token)[0] in owned:
                pipe.pexpire(self.keys.data(token), self.publisher.stream_ttl_ms)
        await pipe.execute()
        await self.demand.resync()
        self._last_ok = time.monotonic()
        if not self._redis_ok:
            self._redis_ok = True
            log.info("feed server: Redis at %s answers again", self.where)
            for name in owned - self._catalog_done:
                self._publish_catalog_soon(name)
            for name in owned & self._catalog_done:  # Redis may have restarted empty
                self._publish_catalog_soon(name)

    async def _beat_failed(self, exc: BaseException) -> None:
        if self._redis_ok:
            log.warning("feed server: lost Redis at %s (%s); retrying", self.where,
                        describe_error(exc))
        self._failed(exc)
        if time.monotonic() - self._last_ok > self.lease_ttl:
            for name in self.owned():
                await self._lose(name, "lost Redis for longer than its lease; another feed "
                                 "server may own it now", None)

    def _failed(self, exc: BaseException) -> None:
        """Any Redis failure: user servers will re-assert demand once it is back."""
        self._redis_ok = False
        if self.demand is not None:
            self.demand.hold(self.lease_ttl * 1.5)

    def _acquire(self, name: str) -> None:
        async def acquire() -> None:
            log.info("feed server %s: now serving %s", self.feed_id, name)
            self._seq.setdefault(name, 0)
            try:
                await self.leased[name].acquire()
            finally:
                self._acquiring.pop(name, None)
                self._owned_changed()
            self._beat_now.set()  # write the record now rather than at the next beat

        self._acquiring[name] = asyncio.ensure_future(acquire())

    async def _lose(self, name: str, detail: str, holder: str | None) -> None:
        log.warning("feed server %s: no longer serving %s: %s", self.feed_id, name, detail)
        task = self._acquiring.pop(name, None)
        if task is not None:
            task.cancel()
        self._catalog_done.discard(name)
        await self.leased[name].release(detail, holder)
        self._owned_changed()

    # ---- records and events -----------------------------------------------------------------

    def _record(self, name: str, **override: Any) -> dict:
        source = self.leased[name]
        inner = source.inner
        status, status_detail = inner.status
        record = {"source": name, "owner": self.feed_id, "seq": self._seq.get(name, 0),
                  "state": inner.state, "detail": inner.detail, "status": status,
                  "status_detail": status_detail if status != inner.state else "",
                  "intervals": list(source.intervals), "description": source.description,
                  "restarts": source.restarts, "catalog_version": self._versions.get(name),
                  "populate_error": self._populate_errors.get(name)}
        record.update(override)
        return record

    def _on_owned_state(self, name: str, state: str, detail: str, origin: str) -> None:
        self._seq[name] = self._seq.get(name, 0) + 1
        assert self._announce is not None
        self._announce.put_nowait(("state", name, self._record(name)))
        if state == "running" and origin == "process" and name not in self._catalog_done:
            self._publish_catalog_soon(name)

    async def _announce_loop(self) -> None:
        assert self._announce is not None
        while self.started:
            kind, name, record = await self._announce.get()
            pipe = self.redis.pipeline(transaction=False)
            if kind == "state":
                if not self.leased[name].owned:
                    continue
                pipe.set(self.keys.source(name), codec.encode_info(record),
                         px=int(self.lease_ttl * 1000))
                event = {"type": "state", **record}
            else:
                event = {"type": "catalog", "source": name, "version": record["version"]}
            pipe.xadd(self.keys.events, {"e": codec.encode_info(event)}, maxlen=EVENTS_LENGTH,
                      approximate=True)
            try:
                await pipe.execute()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                # The record is rewritten at the next good beat; users poll it.
                log.debug("feed server: could not announce %s of %s: %s", kind, name,
                          describe_error(exc))

    # ---- catalogs ---------------------------------------------------------------------------

    def _publish_catalog_soon(self, name: str) -> None:
        self._catalog_done.add(name)
        task = asyncio.ensure_future(self._publish_catalog(name))
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))

    async def refresh_catalogs(self, sources: list[str] | None = None) -> dict[str, str]:
        """Ask the owned providers (all, or ``sources``) for their listing and publish it."""
        names = [n for n in (sources or self.owned()) if n in self.owned()]
        results = await asyncio.gather(*(self._publish_catalog(n) for n in names))
        return dict(zip(names, results))

    async def _publish_catalog(self, name: str) -> str:
        try:
            return await self._list_and_publish(name)
        finally:
            # Streams this server's hub refused on standby are checked again now, against the
            # listing it just took as owner.
            if self.leased[name].owned and self.publisher is not None:
                self.publisher.retry(name)

    async def _list_and_publish(self, name: str) -> str:
        source = self.leased[name]
        try:
            entries = await source.request("dataset", (), self.config.request_timeout)
            stored = await asyncio.to_thread(self.hub.catalog.replace_source, name, entries)
            blob, version = await asyncio.to_thread(codec.encode_catalog, entries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the provider failed: keep the previous catalog
            self._populate_errors[name] = str(exc)[:500]
            log.warning("feed server: listing %s failed, keeping its previous catalog: %s",
                        name, exc)
            return f"error: {exc}"
        self._populate_errors.pop(name, None)
        self.hub.populate_errors.pop(name, None)
        changed = self._versions.get(name) != version
        self._versions[name] = version
        try:
            await self.redis.set(self.keys.catalog(name), blob, px=DAY_MS)
        except (RedisError, OSError) as exc:
            self._catalog_done.discard(name)  # again at the next good beat
            log.warning("feed server: could not publish the catalog of %s: %s", name,
                        describe_error(exc))
            return f"error: {describe_error(exc)}"
        assert self._announce is not None
        self._announce.put_nowait(("catalog", name, {"version": version}))
        if source.owned:
            self._seq[name] = self._seq.get(name, 0) + 1
            self._announce.put_nowait(("state", name, self._record(name)))
        if changed:
            log.info("feed server: published the catalog of %s (%d symbols, %d KB)", name,
                     stored, len(blob) // 1024)
        return f"ok: {stored} symbols"

    async def _refresh_loop(self) -> None:
        while self.started:
            await asyncio.sleep(self.catalog_refresh)
            await self.refresh_catalogs()

    # ---- notices: demand changes and operators' commands ------------------------------------

    async def _listen_loop(self) -> None:
        backoff = Backoff(cap=self.lease_ttl / 3)
        while self.started:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.ch_demand, self.keys.ch_control)
                assert self.demand is not None
                await self.demand.resync()  # whatever changed while not listening
                backoff.reset()
                while self.started:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._on_notice(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._failed(exc)
                await backoff.wait()
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def _on_notice(self, message: dict) -> None:
        channel = message.get("channel")
        channel = channel.decode() if isinstance(channel, bytes) else channel
        data = message.get("data")
        data = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        assert self.demand is not None
        if channel == self.keys.ch_demand:
            try:
                server = check_server_id(data)
            except BadRequest:
                return  # not a server id: nothing to read
            await self.demand.refresh_server(server)
        elif channel == self.keys.ch_control:
            command = codec.decode_info(data.encode())
            if isinstance(command, dict) and command.get("op") == "populate":
                sources = command.get("sources")
                names = ([s for s in sources if isinstance(s, str)]
                         if isinstance(sources, list) else None)
                self._tasks.append(asyncio.ensure_future(self.refresh_catalogs(names)))

    # ---- requests ---------------------------------------------------------------------------

    def _owned_changed(self) -> None:
        if self.requests is not None:
            self.requests.set_sources(set(self.owned()))

    async def _serve_request(self, source: str, kind: str, args: list) -> Any:
        if len(args) != 5:
            raise BadRequest("history arguments must be [symbol, interval, start, end, count]")
        symbol, interval, start, end, count = args
        return await self.hub.history(source, symbol, interval, start, end, count)


__all__ = ["FeedServer"]
