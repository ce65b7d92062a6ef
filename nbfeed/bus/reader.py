"""Reading many Redis Streams at once, resuming after the last entry seen.

A :class:`StreamReader` holds, per stream key, the id of the last entry it delivered and reads
with ``XREAD BLOCK``: one blocking call returns as soon as any of its streams has something new,
so an idle reader costs Redis nothing but a parked connection. Keys are spread over *shards* of
at most ``shard_size`` keys, each its own task and connection, so a busy stream re-sends only
its shard's key list with every read, not a thousand keys.

Resuming: the last id survives a lost connection, so after a reconnect (or a Redis restart,
whose fresh streams get ids from the current time) reading goes on after the last entry seen -
no gap within what the stream still retains (``MAXLEN ~``). A consumer that fell further behind
than that gets what is retained, oldest first: bounded memory wins over completeness.

A key added without an id first gets the stream's *tail* (``XREVRANGE``, the newest few
entries: the snapshot a new subscriber is shown), then reads on from the newest id; an empty
stream reads from ``0-0`` so its very first entry is not missed. A key added while its shard is
blocked joins at the next read (at most ``block_ms`` later; its tail is delivered then too).

Failure behaviour: Redis errors call ``on_failure(exc)``, then the shard waits (backoff with
jitter) and tries again; the first read that works calls ``on_success()``. Callbacks run on the
event loop and must not block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from .connection import Backoff

log = logging.getLogger("nbfeed.bus")

Entries = list[tuple[bytes, dict]]
OnReply = Callable[[list[tuple[str, Entries]], bool], None]


class _Shard:
    __slots__ = ("last", "tails", "task", "wake")

    def __init__(self) -> None:
        self.last: dict[str, bytes | None] = {}
        self.tails: dict[str, int] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None


class StreamReader:
    """Reads stream keys with XREAD BLOCK; see the module docstring.

    ``on_reply(items, tail)`` gets ``[(key, [(entry_id, fields), ...]), ...]`` in stream order;
    ``tail`` is True for the snapshot of newly added keys.
    """

    def __init__(self, redis: Any, on_reply: OnReply, *, on_failure: Callable[[BaseException],
                 None], on_success: Callable[[], None], shard_size: int = 256,
                 block_ms: int = 100, count: int = 1000) -> None:
        self.redis = redis
        self.on_reply = on_reply
        self.on_failure = on_failure
        self.on_success = on_success
        self.shard_size = shard_size
        self.block_ms = block_ms
        self.count = count
        self._shards: list[_Shard] = []
        self._where: dict[str, _Shard] = {}
        self._closed = False

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def last_id(self, key: str) -> bytes | None:
        shard = self._where.get(key)
        return shard.last.get(key) if shard is not None else None

    def add(self, key: str, last_id: bytes | None = None, tail: int = 1) -> None:
        """Start reading ``key`` after ``last_id`` (None: deliver its ``tail`` newest first)."""
        if key in self._where or self._closed:
            return
        shard = next((s for s in self._shards if len(s.last) < self.shard_size), None)
        if shard is None:
            shard = _Shard()
            self._shards.append(shard)
            shard.task = asyncio.ensure_future(self._run(shard))
        shard.last[key] = last_id
        if last_id is None:
            shard.tails[key] = tail
        self._where[key] = shard
        shard.wake.set()

    def remove(self, key: str) -> None:
        shard = self._where.pop(key, None)
        if shard is not None:
            shard.last.pop(key, None)
            shard.tails.pop(key, None)

    async def close(self) -> None:
        self._closed = True
        tasks = [s.task for s in self._shards if s.task is not None]
        for shard in self._shards:
            shard.wake.set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._shards.clear()
        self._where.clear()

    async def _run(self, shard: _Shard) -> None:
        backoff = Backoff()
        failing = False
        while not self._closed:
            if not shard.last:
                shard.wake.clear()
                await shard.wake.wait()
                continue
            try:
                if shard.tails:
                    await self._read_tails(shard)
                streams = {k: v for k, v in shard.last.items() if v is not None}
                reply = await self.redis.xread(streams, count=self.count, block=self.block_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                failing = True
                self.on_failure(exc)
                await backoff.wait()
                continue
            if failing:
                failing = False
                backoff.reset()
                self.on_success()
            if not reply:
                continue
            got = []
            for key, entries in (reply.items() if isinstance(reply, dict) else reply):
                name = key.decode() if isinstance(key, bytes) else key
                if name not in shard.last or not entries:
                    continue  # removed while the read was in flight
                shard.last[name] = entries[-1][0]
                got.append((name, entries))
            if got:
                self._deliver(got, False)

    async def _read_tails(self, shard: _Shard) -> None:
        keys = list(shard.tails.items())
        pipe = self.redis.pipeline(transaction=False)
        for key, count in keys:
            pipe.xrevrange(key, "+", "-", count=count)
        results = await pipe.execute()
        got = []
        for (key, _), entries in zip(keys, results):
            if key not in shard.tails:
                continue  # removed meanwhile
            del shard.tails[key]
            entries = list(reversed(entries or []))
            shard.last[key] = entries[-1][0] if entries else b"0-0"
            if entries:
                got.append((key, entries))
        if got:
            self._deliver(got, True)

    def _deliver(self, got: list[tuple[str, Entries]], tail: bool) -> None:
        try:
            self.on_reply(got, tail)
        except Exception:  # a bug in a consumer must not stop reading
            log.exception("bus: delivering stream entries failed")
