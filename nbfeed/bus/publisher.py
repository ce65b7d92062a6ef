"""Live rows from the feed server's hub into Redis Streams: one entry per provider batch.

The :class:`Publisher` holds one hub subscription per demanded stream (the union over all user
servers, kept by :mod:`nbfeed.bus.demand`), so the hub's reference counting makes exactly one
upstream subscription per stream however many servers and notebooks want it. Every batch the hub
delivers becomes one ``XADD {ns}:data:{token} MAXLEN ~ {stream_length} * r <json rows>``; all
batches waiting when the writer is free go out in pipelines of about a megabyte (one round trip
each), and each batch is encoded once, straight into its entry.

Bounds: each stream keeps about ``stream_length`` entries (``MAXLEN ~`` lets Redis trim whole
nodes, which is cheap); each stream key gets a time to live (``stream_ttl``) with its writes (at
most once a second) and on every renewal while demanded, so the streams of a stopped feed or of
a symbol nobody wants any more disappear on their own. Rows waiting for Redis are bounded too:
beyond ``max_pending_rows`` the hub's subscriptions are made to wait, so their outboxes conflate
(newest row per symbol) instead of memory growing - a slow or absent Redis costs freshness, not
memory.

Errors: a stream that cannot be served (unknown symbol, the provider ended it) gets one error
entry (field ``e``, ``{"code", "message"}``) so the servers reading it tell their subscribers, and
is not retried until its demand ends and comes back - by the source's owner only: a standby feed
server whose hub refuses a stream keeps quiet and tries again once it owns the source. Redis
errors while writing drop the batch in hand (it is live data; the next one supersedes it), are
reported to ``on_failure`` and retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from ..errors import NBFeedError
from ..hub import Hub, StreamBatch, Subscription
from ..jsonfast import dumpb
from . import codec
from .connection import Backoff, describe_error
from .keys import Keys, parse_token

log = logging.getLogger("nbfeed.bus")

#: Payload bytes per pipeline (one round trip to Redis).
PIPELINE_BYTES = 1 << 20


class Publisher:
    """Writes the hub's batches of every demanded stream to Redis (module docstring)."""

    def __init__(self, hub: Hub, redis: Any, keys: Keys, *, stream_length: int = 200,
                 stream_ttl: float = 300.0, max_pending_rows: int = 200_000,
                 on_failure: Callable[[BaseException], None] | None = None,
                 owns: Callable[[str], bool] | None = None) -> None:
        self.hub = hub
        self.redis = redis
        self.keys = keys
        self.stream_length = stream_length
        self.stream_ttl_ms = int(stream_ttl * 1000)
        self.max_pending_rows = max_pending_rows
        self.on_failure = on_failure
        self.subs: dict[str, Subscription] = {}
        self.failed: set[str] = set()
        #: Whether this feed server owns a source now: only an owner may end a stream.
        self.owns = owns or (lambda source: True)
        self._deferred: set[str] = set()  # refused on standby: tried again when owned
        self._pending: list[tuple[str, bytes, bytes, int]] = []  # key, field, payload, rows
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task | None = None
        self._starting: dict[str, asyncio.Task] = {}
        self._closing: set[asyncio.Task] = set()
        self._ttl_set: dict[str, float] = {}  # key -> when its TTL was last set (monotonic)
        self.entries_written = 0
        self._closed = False
        self.rows_written = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        for task in self._starting.values():
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)
        for sub in list(self.subs.values()):
            await sub.close()
        self.subs.clear()

    # ---- demand -----------------------------------------------------------------------------

    def want(self, token: str) -> None:
        """Start serving a stream (idempotent)."""
        if token in self.subs or token in self._starting or token in self.failed:
            return
        task = asyncio.ensure_future(self._subscribe(token))
        self._starting[token] = task
        task.add_done_callback(lambda _t: self._starting.pop(token, None))

    def drop(self, token: str) -> None:
        """Stop serving a stream (its last demand is gone); it may be retried later."""
        self.failed.discard(token)
        self._deferred.discard(token)
        task = self._starting.pop(token, None)
        if task is not None:
            task.cancel()
        sub = self.subs.pop(token, None)
        if sub is not None:
            self._close_later(sub)
        self._ttl_set.pop(self.keys.data(token), None)

    async def _subscribe(self, token: str) -> None:
        key = self.keys.data(token)
        try:
            source, symbol, interval = parse_token(token)
            sub = await self.hub.subscribe(source, [symbol], interval)
        except asyncio.CancelledError:
            raise
        except NBFeedError as exc:
            self._fail(token, exc)
            return
        except Exception as exc:  # a bug: report it on the stream, keep serving the others
            log.exception("bus: subscribing %s failed", token)
            self._fail(token, exc)
            return
        self.subs[token] = sub

        async def deliver(items: list[Any]) -> None:
            for item in items:
                if isinstance(item, StreamBatch):
                    # One encoding, straight to the entry (json_rows() would slice a copy:
                    # here each batch is written once anyway).
                    self._pending.append((key, b"r", dumpb(item.rows), len(item.rows)))
                    self._pending_rows += len(item.rows)
                elif isinstance(item, dict) and item.get("type") == "error":
                    self._fail(token, item)
            self._wake.set()
            if self._pending_rows > self.max_pending_rows:
                self._room.clear()
                await self._room.wait()

        sub.on_batch(deliver)

    def retry(self, source: str) -> None:
        """This server now owns ``source``: subscribe what its standby hub refused."""
        for token in [t for t in self._deferred if t.startswith(source + ":")]:
            self._deferred.discard(token)
            self.want(token)

    def _fail(self, token: str, error: Any) -> None:
        if not self.owns(token.split(":", 1)[0]):
            # A standby's hub refusing a stream (its catalog copy may be older than the
            # owner's) says nothing about the stream: only its owner may end it.
            log.debug("bus: standby refused %s for now: %s", token, error)
            self._deferred.add(token)
            return
        payload = error if isinstance(error, dict) else codec.error_to_dict(error)
        payload = {"code": payload.get("code", "upstream"), "message": payload.get("message")}
        log.warning("bus: stream %s ended: %s", token, payload["message"])
        self.failed.add(token)
        sub = self.subs.pop(token, None)
        if sub is not None:
            self._close_later(sub)
        self._pending.append((self.keys.data(token), b"e", dumpb(payload), 0))
        self._wake.set()

    def _close_later(self, sub: Subscription) -> None:
        # Not awaited here: this may run inside the subscription's own delivery callback.
        task = asyncio.ensure_future(sub.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # ---- writing ----------------------------------------------------------------------------

    def _take(self) -> tuple[list[tuple[str, bytes, bytes, int]], int]:
        """The oldest pending entries, about ``PIPELINE_BYTES`` of them (one round trip):
        bigger pipelines only pile up in socket buffers and cost copies."""
        size = taken = rows = 0
        for _key, _field, payload, count in self._pending:
            size += len(payload)
            rows += count
            taken += 1
            if size >= PIPELINE_BYTES:
                break
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._pending_rows -= rows
        return batch, rows

    async def _run(self) -> None:
        backoff = Backoff(cap=2.0)
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            batch, rows = self._take()
            if self._pending:
                self._wake.set()  # more than one pipeline's worth: go round again
            pipe = self.redis.pipeline(transaction=False)
            for key, field, payload, _ in batch:
                pipe.xadd(key, {field: payload}, maxlen=self.stream_length, approximate=True)
            # A written key gets its TTL in the same round trip unless it got it within the last
            # second: a stream created just before this feed server dies still expires, and a
            # busy stream costs one PEXPIRE a second, not one per entry.
            now = time.monotonic()
            for key in dict.fromkeys(key for key, _, _, _ in batch):
                if now - self._ttl_set.get(key, -1.0) >= 1.0:
                    pipe.pexpire(key, self.stream_ttl_ms)
                    self._ttl_set[key] = now
            try:
                await pipe.execute()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.debug("bus: writing %d entries failed: %s", len(batch), describe_error(exc))
                self._ttl_set.clear()  # Redis may come back empty: set every TTL again
                if self.on_failure is not None:
                    self.on_failure(exc)
                self._room.set()
                await backoff.wait()
                continue
            finally:
                if self._pending_rows <= self.max_pending_rows:
                    self._room.set()
            backoff.reset()
            self.entries_written += len(batch)
            self.rows_written += rows
