"""The shared feed seen from one hub: a user's Jupyter server, a CLI command or a kernel.

A :class:`BusClient` is the hub's transport factory in bus mode
(``HubConfig(transport=BusClient(url), providers=client.specs())``): it builds a
:class:`~nbfeed.bus.source.BusSource` per source the feed servers serve, and owns what they
share - the Redis connection pool, this server's identity, its demand, the stream reader and the
request client. The hub calls :meth:`open` when it starts and :meth:`close` when it stops.

What it keeps in Redis for this server (see :mod:`nbfeed.bus.keys`):

* a lease ``{ns}:server:{id}`` and the demand set ``{ns}:demand:{id}`` (stream tokens this
  server's subscribers want), both with a time to live of ``lease_ttl`` seconds. A heartbeat
  every ``lease_ttl / 3`` rewrites both whole (so a set deleted by anyone, or lost with a Redis
  restart, comes back within one beat); a change is written at once (coalesced per loop turn) and
  announced on ``{ns}:ch:demand``. A server that dies stops renewing: its demand expires and the
  feed server stops what only it wanted.
* nothing else: it reads streams, source records and catalogs, and pushes requests.

What it does with what it reads:

* live entries -> ``on_message(source, ("data", ...))`` of the hub, one message per source per
  read (entries of one stream read together become one batch); an error entry ends the stream;
* the events stream -> state changes (``on_state``, hence in-band ``status`` to every
  subscriber) and catalog versions; a new version is replicated into the hub's local SQLite
  catalog (``hub.populate``), so searches stay local and fast;
* each beat also reads every source record: a source nobody owns, or Redis out of reach, shows as
  ``stale`` with the reason; the record's return restores the state.

Catalog versions held locally are remembered beside the catalog file (``<catalog>.bus.json``),
so a restarted server re-indexes only sources whose catalog changed meanwhile.

Failure behaviour: every loop survives Redis going away (connection refused, killed, restarted
empty): sources go ``stale``, loops retry with backoff and jitter, and when Redis answers again
the lease and demand are re-asserted at once, the reader resumes after the last entries it saw,
and states come back from the owners' records. Nothing here ever blocks a request longer than its
timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .._version import __version__
from ..errors import BadRequest, UpstreamError
from ..intervals import TICK
from ..providers.registry import ProviderSpec
from . import codec
from .connection import connect, connect_sync, describe_error, redact
from .keys import DEFAULT_NAMESPACE, Keys, check_server_id, parse_token, safe_id
from .reader import StreamReader
from .requests import RequestClient
from .source import BusSource

if TYPE_CHECKING:
    from ..hub import Hub, HubConfig
    from ..hub.transport import OnMessage, OnState

log = logging.getLogger("nbfeed.bus")

#: The ``factory`` of a ProviderSpec that names a source of the shared feed.
BUS_FACTORY = "nbfeed.bus:shared-feed"
#: A source listed by no feed server for this long is forgotten by discovery.
SOURCE_LISTING_MS = 24 * 3600 * 1000
#: Entries read as a new subscriber's snapshot: quotes need the newest row, candles the newest
#: two bars (several entries may update the open bar).
TAIL_TICK, TAIL_BARS = 1, 16


def default_server_id() -> str:
    """``<user or host>-<pid>-<random>``: readable in ``redis-cli``, unique per process."""
    who = os.environ.get("JUPYTERHUB_USER") or socket.gethostname() or "nbfeed"
    return safe_id(f"{who}-{os.getpid()}-{os.urandom(3).hex()}")


def tail_rows(rows: list[dict], interval: str) -> list[dict]:
    """A new subscriber's snapshot from a stream's newest rows (as the hub's own snapshot)."""
    if interval == TICK:
        return rows[-1:]
    bars: dict[Any, dict] = {}
    for row in rows:
        bars[row.get("time")] = row
    ordered = sorted(bars.values(), key=lambda r: r.get("time") or 0)
    return ordered[-2:]


class BusClient:
    """Transport factory and shared state of one hub on the shared feed (module docstring)."""

    def __init__(self, url: str, *, namespace: str = DEFAULT_NAMESPACE,
                 server_id: str | None = None, lease_ttl: float = 15.0, block_ms: int = 100,
                 shard_size: int = 256) -> None:
        from .connection import check_url

        self.url = check_url(url)
        self.keys = Keys(namespace)
        self.server_id = check_server_id(server_id or default_server_id())
        if not 1.0 <= lease_ttl <= 3600:
            raise BadRequest(f"bus lease_ttl must be 1-3600 seconds, got {lease_ttl!r}")
        self.lease_ttl = lease_ttl
        self.block_ms = block_ms
        self.shard_size = shard_size
        self.hub: Hub | None = None
        self.redis: Any = None
        self.connected = False
        self.sources: dict[str, BusSource] = {}
        self._streams: dict[str, tuple[BusSource, str, str, str]] = {}  # data key -> stream
        self._reader: StreamReader | None = None
        self._requests: RequestClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._beat_now = asyncio.Event()
        self._demand_dirty = asyncio.Event()
        self._announce = True
        self._sync_lock: asyncio.Lock | None = None
        self._adding: set[str] = set()
        self._syncing: dict[str, asyncio.Task] = {}
        self._catalog_published: dict[str, asyncio.Event] = {}
        self._versions_path: Path | None = None
        self._versions: dict[str, str] = {}
        self._closed = False
        self.where = redact(self.url)

    # ---- building the hub's configuration ---------------------------------------------------

    def spec(self, name: str) -> ProviderSpec:
        return ProviderSpec(name=name, factory=BUS_FACTORY)

    def discover(self) -> list[str]:
        """Sources the feed servers list right now (a blocking read, before any loop runs).

        Lets a front end declare them in ``HubConfig.providers``, so requests that arrive
        while the hub is starting wait for them instead of answering "unknown source". Returns
        ``[]`` when Redis cannot be reached (sources are then discovered once it can).
        """
        try:
            client = connect_sync(self.url, f"nbfeed-discover-{self.server_id}")
            try:
                names = client.zrangebyscore(self.keys.sources,
                                             int(time.time() * 1000) - SOURCE_LISTING_MS, "+inf")
            finally:
                client.close()
        except RedisError as exc:
            log.warning("bus: could not list the shared feed's sources at %s (%s); they are "
                        "added once Redis answers", self.where, describe_error(exc))
            return []
        return sorted(n.decode() for n in names)

    def specs(self) -> list[ProviderSpec]:
        return [self.spec(name) for name in self.discover()]

    def hub_config(self, **config: Any) -> HubConfig:
        """A :class:`HubConfig` for a hub on this feed (``config``: other HubConfig fields)."""
        from ..hub import HubConfig

        config.setdefault("enable_hint", "ask the feed server's operator to add '{name}' to "
                                         "the feed server's providers")
        return HubConfig(providers=self.specs(), transport=self, **config)

    # ---- the transport factory --------------------------------------------------------------

    def __call__(self, spec: ProviderSpec, *, on_message: OnMessage, on_state: OnState,
                 config: HubConfig) -> Any:
        from ..hub.hub import ON_DEMAND

        if spec.factory in ON_DEMAND.values():
            # The replay of this hub's own recordings reads local files: it runs here.
            from ..hub.transport import local_process

            return local_process(spec, on_message=on_message, on_state=on_state, config=config)
        if spec.factory != BUS_FACTORY:
            raise BadRequest(f"this hub takes its sources from the shared feed at "
                             f"{self.where}; providers run on the feed server, so "
                             f"{spec.name!r} must be added to the feed server's providers")
        source = BusSource(self, spec.name, on_message, on_state)
        source.catalog_version = self._versions.get(spec.name)
        self.sources[spec.name] = source
        return source

    # ---- lifecycle --------------------------------------------------------------------------

    async def open(self, hub: Hub) -> None:
        """Connect and start the loops (called by ``hub.start()``); never fails for Redis
        being away - the sources start ``stale`` and recover when it answers."""
        self.hub = hub
        self._sync_lock = asyncio.Lock()
        self._load_versions(hub.config)
        self.redis = connect(self.url, f"nbfeed-user-{self.server_id}")
        self._reader = StreamReader(self.redis, self._on_entries, on_failure=self._lost,
                                    on_success=self._recovered, shard_size=self.shard_size,
                                    block_ms=self.block_ms)
        self._requests = RequestClient(self.redis, self.keys, self.server_id)
        self._reader.add(self.keys.events, None, tail=1)
        try:
            await asyncio.wait_for(self._beat(), 10)
            self._connected()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._lost(exc)
        self._tasks += [asyncio.ensure_future(self._heartbeat_loop()),
                        asyncio.ensure_future(self._demand_loop())]
        log.info("bus: this hub (%s) uses the shared feed at %s", self.server_id, self.where)

    async def close(self) -> None:
        """Withdraw this server (lease and demand deleted, so its demand ends at once)."""
        self._closed = True
        self._demand_dirty.set()
        self._beat_now.set()
        tasks = [*self._tasks, *self._syncing.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._reader is not None:
            await self._reader.close()
        if self._requests is not None:
            await self._requests.close()
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline(transaction=True)
                # Two DELs: the ACL recipe grants the two keys in different selectors.
                pipe.delete(self.keys.server(self.server_id))
                pipe.delete(self.keys.demand(self.server_id))
                pipe.publish(self.keys.ch_demand, self.server_id)
                await asyncio.wait_for(pipe.execute(), 3)
            except (RedisError, OSError, asyncio.TimeoutError):
                pass  # the lease expires on its own
            await self.redis.aclose()

    # ---- demand -----------------------------------------------------------------------------

    def want(self, source: BusSource, token: str, symbol: str, interval: str) -> None:
        key = self.keys.data(token)
        self._streams[key] = (source, symbol, interval, token)
        if self._reader is not None:
            self._reader.add(key, None, TAIL_TICK if interval == TICK else TAIL_BARS)
        self._demand_dirty.set()

    def unwant(self, token: str) -> None:
        key = self.keys.data(token)
        self._streams.pop(key, None)
        if self._reader is not None:
            self._reader.remove(key)
        self._demand_dirty.set()

    def wanted(self) -> set[str]:
        return {t for s in self.sources.values() for t in s.wanted}

    async def _write_demand(self) -> None:
        """Lease + the whole demand set, atomically; announced when it changed."""
        assert self._sync_lock is not None
        async with self._sync_lock:
            tokens = sorted(self.wanted())
            ttl = int(self.lease_ttl * 1000)
            demand = self.keys.demand(self.server_id)
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self.keys.server(self.server_id), codec.encode_info({
                "server": self.server_id, "pid": os.getpid(), "host": socket.gethostname(),
                "version": __version__, "streams": len(tokens)}), px=ttl)
            pipe.delete(demand)
            if tokens:
                pipe.sadd(demand, *tokens)
                pipe.pexpire(demand, ttl)
            if self._announce or self._demand_dirty.is_set():
                self._demand_dirty.clear()
                self._announce = False
                pipe.publish(self.keys.ch_demand, self.server_id)
            try:
                await pipe.execute()
            except BaseException:
                self._announce = True  # say it again once Redis takes it
                raise

    async def _demand_loop(self) -> None:
        # Loops test _closed as well as being cancelled: a cancel that lands inside a Redis
        # command may come back as a connection error.
        while not self._closed:
            await self._demand_dirty.wait()
            await asyncio.sleep(0)  # let one loop turn's sub/unsub messages collect
            if self._closed:
                return
            try:
                await self._write_demand()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._lost(exc)
                self._demand_dirty.set()
                await asyncio.sleep(min(1.0, self.lease_ttl / 10))

    # ---- heartbeat: lease, demand, source records ------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_ttl / 3
        while not self._closed:
            try:
                await asyncio.wait_for(self._beat_now.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self._beat_now.clear()
            if self._closed:
                return
            try:
                await asyncio.wait_for(self._beat(), max(interval, 5))
                self._connected()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._lost(exc)

    async def _beat(self) -> None:
        await self._write_demand()
        now = int(time.time() * 1000)
        listed = await self.redis.zrangebyscore(self.keys.sources, now - SOURCE_LISTING_MS,
                                                "+inf")
        names = sorted({n.decode() for n in listed} | set(self.sources))
        if not names:
            return
        infos = await self.redis.mget([self.keys.source(n) for n in names])
        for name, raw in zip(names, infos):
            info = codec.decode_info(raw)
            source = self.sources.get(name)
            if source is None:
                self._add_source(name)
                continue
            source.apply_info(info)
            self._maybe_sync_catalog(source)

    def _connected(self) -> None:
        if not self.connected:
            self.connected = True
            log.info("bus: connected to the shared feed at %s", self.where)

    def _lost(self, exc: BaseException) -> None:
        reason = f"lost the connection to Redis ({describe_error(exc)}); reconnecting"
        if self.connected:
            log.warning("bus: %s at %s", reason, self.where)
        self.connected = False
        self._announce = True
        for source in self.sources.values():
            source.go_stale(reason)

    def _recovered(self) -> None:
        self._beat_now.set()

    # ---- sources and catalogs ---------------------------------------------------------------

    async def source_started(self, source: BusSource) -> None:
        """A BusSource's ``start()``: show its current state, replicate a changed catalog.

        A source that is served but has no catalog yet (its feed server is still listing it)
        is waited for, at most the hub's start timeout - as a local provider's first listing is:
        requests made meanwhile wait rather than answer "no such symbol".
        """
        if self.redis is None:
            return
        published = self._catalog_published.setdefault(source.name, asyncio.Event())
        try:
            raw, has_catalog = await asyncio.wait_for(self._read_record(source.name), 10)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._lost(exc)
            return
        source.apply_info(codec.decode_info(raw))
        if not has_catalog and source.state in ("starting", "running", "restarting"):
            timeout = self.hub.config.start_timeout if self.hub is not None else 60.0
            try:
                await asyncio.wait_for(published.wait(), timeout)
                has_catalog = True
            except asyncio.TimeoutError:
                log.warning("bus: no catalog of %s after %.0f s; searching it finds nothing "
                            "until its feed server publishes one", source.name, timeout)
        if has_catalog and self._catalog_outdated(source):
            await self._sync_task(source)

    async def _read_record(self, name: str) -> tuple[bytes | None, bool]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.source(name))
        pipe.exists(self.keys.catalog(name))
        raw, exists = await pipe.execute()
        return raw, bool(exists)

    def _catalog_outdated(self, source: BusSource) -> bool:
        listed = bool(self.hub and self.hub.catalog and self.hub.catalog.sources().get(
            source.name))
        if not listed:
            return True
        remote = source.remote_catalog_version
        return remote is not None and remote != source.catalog_version

    def _maybe_sync_catalog(self, source: BusSource) -> None:
        if (source.state == "running" and source.remote_catalog_version is not None
                and source.remote_catalog_version != source.catalog_version
                and self.hub is not None and source.name in self.hub.sources()):
            self._sync_task(source)

    def _sync_task(self, source: BusSource) -> asyncio.Task:
        """The replication of ``source``'s catalog in progress, started if none is: one at a
        time per source, however many events and beats ask."""
        task = self._syncing.get(source.name)
        if task is None:
            task = self._syncing[source.name] = asyncio.ensure_future(self._sync_catalog(source))
            task.add_done_callback(lambda _t, n=source.name: self._syncing.pop(n, None))
        return task

    async def _sync_catalog(self, source: BusSource) -> None:
        assert self.hub is not None
        result = (await self.hub.populate([source.name])).get(source.name, "")
        if result.startswith("ok") and source.catalog_version:
            self._versions[source.name] = source.catalog_version
            self._save_versions()
            log.info("bus: catalog of %s replicated (%s)", source.name, result[4:])

    async def read_catalog(self, name: str) -> tuple[list[dict], str]:
        """The catalog the owner of ``name`` published, and its version."""
        try:
            blob = await self.redis.get(self.keys.catalog(name))
        except (RedisError, OSError) as exc:
            raise UpstreamError(f"could not read the catalog of {name!r} from the shared feed: "
                                f"{describe_error(exc)}") from None
        if blob is None:
            raise UpstreamError(f"no feed server has published the catalog of {name!r} yet")
        return await asyncio.to_thread(codec.decode_catalog, blob)

    def _add_source(self, name: str) -> None:
        hub = self.hub
        if hub is None or name in self._adding or name in hub.sources() or self._closed:
            return
        self._adding.add(name)

        async def add() -> None:
            try:
                await hub.add_provider(self.spec(name))
                log.info("bus: source %s of the shared feed added", name)
            except Exception as exc:
                log.warning("bus: could not add source %s: %s", name, exc)
            finally:
                self._adding.discard(name)

        self._tasks.append(asyncio.ensure_future(add()))

    def _load_versions(self, config: HubConfig) -> None:
        path = config.catalog_path
        if path is not None and str(path) == ":memory:":
            return
        catalog = Path(config.path_for(path, "catalog.sqlite"))
        self._versions_path = catalog.with_name(catalog.name + ".bus.json")
        try:
            data = json.loads(self._versions_path.read_text())
            if isinstance(data, dict):
                self._versions = {k: v for k, v in data.items() if isinstance(v, str)}
        except (OSError, ValueError):
            self._versions = {}
        for name, source in self.sources.items():
            source.catalog_version = self._versions.get(name)

    def _save_versions(self) -> None:
        if self._versions_path is None:
            return
        try:
            tmp = self._versions_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._versions))
            tmp.replace(self._versions_path)
        except OSError as exc:
            log.debug("bus: could not save catalog versions: %s", exc)

    # ---- requests ---------------------------------------------------------------------------

    async def request(self, source: str, kind: str, args: list, timeout: float) -> Any:
        if self._requests is None:
            raise UpstreamError("the shared feed is not connected yet")
        return await self._requests.request(source, kind, args, timeout)

    # ---- what the reader delivers -----------------------------------------------------------

    def _on_entries(self, got: list[tuple[str, list]], tail: bool) -> None:
        batches: dict[BusSource, list[tuple[str, str, list[dict]]]] = {}
        for key, entries in got:
            if key == self.keys.events:
                if not tail:
                    self._on_events(entries)
                continue
            meta = self._streams.get(key)
            if meta is None:
                continue
            source, symbol, interval, token = meta
            rows: list[dict] = []
            for _id, fields in entries:
                data = fields.get(b"r")
                if data is not None:
                    try:
                        decoded = codec.decode_rows(data)
                    except UpstreamError as exc:
                        log.warning("bus: skipped an entry of %s: %s", token, exc)
                        continue
                    if rows:
                        rows.extend(decoded)
                    else:
                        rows = decoded  # the common case, one entry: no copy
                    continue
                error = fields.get(b"e")
                if error is not None and not tail:  # an old error in a tail is history
                    if rows:
                        batches.setdefault(source, []).append((symbol, interval, rows))
                        rows = []
                    source.stream_failed(token, symbol, interval, codec.error_from_dict(
                        _safe_json(error)))
                    break
            if tail:
                rows = tail_rows(rows, interval)
            if rows:
                batches.setdefault(source, []).append((symbol, interval, rows))
        for source, items in batches.items():
            source.on_message(source.name, ("data", items))

    def _on_events(self, entries: list) -> None:
        for _id, fields in entries:
            event = _safe_json(fields.get(b"e", b""))
            if not isinstance(event, dict):
                continue
            name = event.get("source")
            source = self.sources.get(name) if isinstance(name, str) else None
            if source is None:
                if isinstance(name, str):
                    self._add_source(name)
                continue
            if event.get("type") == "state":
                source.apply_event(event)
            elif event.get("type") == "catalog" and isinstance(event.get("version"), str):
                source.remote_catalog_version = event["version"]
                self._catalog_published.setdefault(source.name, asyncio.Event()).set()
                self._maybe_sync_catalog(source)

    def streams(self) -> list[str]:
        """Stream tokens this hub reads (for stats and tests)."""
        return sorted(meta[3] for meta in self._streams.values())

    def __repr__(self) -> str:
        return f"<BusClient {self.server_id} on {self.where}>"


def _safe_json(data: bytes) -> Any:
    try:
        return codec.loads(data, "event")
    except UpstreamError:
        return None


__all__ = ["BUS_FACTORY", "BusClient", "default_server_id", "parse_token", "tail_rows"]
