"""Requests and replies over Redis: a user server asks, the feed server owning the source answers.

Asking (:class:`RequestClient`, in a user server): the request - an id, the asking server's id,
the kind, its arguments and a deadline - is ``LPUSH``-ed onto ``{ns}:req:{source}`` (the list gets
a time to live, so requests nobody serves vanish); the answer arrives on the asking server's own
list ``{ns}:reply:{server}``, read by one ``BRPOP`` loop that runs only while requests are
pending. Every request ends within its timeout: a lost or late reply is
:class:`~nbfeed.errors.UpstreamTimeout` naming the source and the wait, never a hang; a reply that
comes after that is dropped.

Answering (:class:`RequestServer`, in a feed server): one ``BRPOP`` loop over the request lists
of the sources this feed server owns. Each request is checked field by field (a malformed one is
answered with ``bad_request`` when it says where to, dropped otherwise), only ``history`` is
served (users read the catalog from its published copy; nothing else commands a provider), and
requests past their deadline are dropped unanswered. Identical requests in flight - the same
source and arguments, from any number of servers - share one call to the hub, whose history cache
in turn shares upstream fetches. At most ``max_concurrent`` requests run at once; the rest wait in
Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from ..errors import BadRequest, NBFeedError, UpstreamError, UpstreamTimeout
from ..jsonfast import dumpb
from . import codec
from .connection import Backoff, describe_error
from .keys import Keys, check_server_id

log = logging.getLogger("nbfeed.bus")

#: Kinds a user server may ask a feed server for.
SERVED_KINDS = ("history",)


def _now_ms() -> int:
    return int(time.time() * 1000)


class RequestClient:
    """Sends requests for one user server and matches the replies. See the module docstring."""

    def __init__(self, redis: Any, keys: Keys, server_id: str) -> None:
        self.redis = redis
        self.keys = keys
        self.server_id = server_id
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self._pending: dict[str, asyncio.Future] = {}
        self._loop_task: asyncio.Task | None = None
        self._closed = False

    async def request(self, source: str, kind: str, args: list, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        req_id = f"{self._prefix}-{next(self._ids)}"
        fut = loop.create_future()
        self._pending[req_id] = fut
        try:
            payload = codec.encode_request(req_id, self.server_id, kind, args,
                                           _now_ms() + int(timeout * 1000))
            key = self.keys.req(source)
            try:
                pipe = self.redis.pipeline(transaction=True)  # never a list without a TTL
                pipe.lpush(key, payload)
                pipe.pexpire(key, int(timeout * 1000) + 5_000)
                await asyncio.wait_for(pipe.execute(), timeout)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                raise UpstreamError(f"could not send the {kind} request for {source!r} to the "
                                    f"shared feed: {describe_error(exc)}") from None
            self._ensure_loop()
            left = timeout - (loop.time() - started)
            try:
                return await asyncio.wait_for(asyncio.shield(fut), max(left, 0.001))
            except asyncio.TimeoutError:
                raise UpstreamTimeout(f"the feed server did not answer the {kind} request for "
                                      f"{source!r} within {timeout:g} s") from None
        finally:
            self._pending.pop(req_id, None)
            if not fut.done():
                fut.cancel()

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.ensure_future(self._read_replies())

    async def _read_replies(self) -> None:
        backoff = Backoff()
        key = self.keys.reply(self.server_id)
        while self._pending and not self._closed:
            try:
                item = await self.redis.brpop([key], timeout=1)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                await backoff.wait()  # the requests time out on their own meanwhile
                continue
            backoff.reset()
            if item is None:
                continue
            try:
                reply = codec.decode_reply(item[1])
            except UpstreamError as exc:
                log.warning("bus: dropped a reply: %s", exc)
                continue
            fut = self._pending.get(reply["id"])
            if fut is None or fut.done():
                continue  # its requester gave up already
            if reply.get("ok"):
                fut.set_result(reply.get("value"))
            else:
                fut.set_exception(codec.error_from_dict(reply.get("error")))

    async def close(self) -> None:
        self._closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(UpstreamError("the hub is stopping"))
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.wait([self._loop_task], timeout=5)


Handler = Callable[[str, str, list], Awaitable[Any]]


class RequestServer:
    """Serves the request lists of the sources a feed server owns. See the module docstring."""

    def __init__(self, redis: Any, keys: Keys, handler: Handler, *, max_concurrent: int = 32,
                 reply_ttl_ms: int = 60_000) -> None:
        self.redis = redis
        self.keys = keys
        self.handler = handler
        self.reply_ttl_ms = reply_ttl_ms
        self._sources: set[str] = set()
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._inflight: dict[tuple, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self.served = 0
        self.shared = 0
        self._closed = False

    def set_sources(self, sources: set[str]) -> None:
        """The sources whose requests this server answers (those it owns right now)."""
        if sources != self._sources:
            self._sources = set(sources)
            self._changed.set()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closed = True
        self._changed.set()
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _run(self) -> None:
        backoff = Backoff(cap=5.0)
        while not self._closed:
            if not self._sources:
                self._changed.clear()
                await self._changed.wait()
                continue
            await self._slots.acquire()
            keys = {self.keys.req(s): s for s in sorted(self._sources)}
            try:
                item = await self.redis.brpop(list(keys), timeout=1)
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except (RedisError, OSError) as exc:
                self._slots.release()
                log.debug("bus: reading requests failed: %s", describe_error(exc))
                await backoff.wait()
                continue
            backoff.reset()
            if item is None:
                self._slots.release()
                continue
            key = item[0].decode() if isinstance(item[0], bytes) else item[0]
            task = asyncio.ensure_future(self._serve(keys.get(key), item[1]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, source: str | None, data: bytes) -> None:
        try:
            try:
                req = codec.decode_request(data)
                server = check_server_id(req["server"])
            except NBFeedError as exc:
                log.warning("bus: dropped a malformed request for %s: %s", source, exc)
                return
            if req["deadline"] < _now_ms() or source is None:
                return  # the requester has given up already
            try:
                if req["kind"] not in SERVED_KINDS:
                    raise BadRequest(f"request kind {req['kind']!r:.40} is not served over the "
                                     f"bus; served: {', '.join(SERVED_KINDS)}")
                value = await self._shared_call(source, req["kind"], req["args"])
                reply = codec.encode_reply(req["id"], value)
            except NBFeedError as exc:
                reply = codec.encode_reply(req["id"], error=exc)
            except Exception as exc:  # a bug must still answer, not leave the requester waiting
                log.exception("bus: serving a %s request failed", req["kind"])
                reply = codec.encode_reply(req["id"], error=UpstreamError(
                    f"the feed server failed: {type(exc).__name__}"))
            if req["deadline"] < _now_ms():
                return
            self.served += 1
            key = self.keys.reply(server)
            pipe = self.redis.pipeline(transaction=False)
            pipe.lpush(key, reply)
            pipe.pexpire(key, self.reply_ttl_ms)
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("bus: could not reply to %s: %s", server, describe_error(exc))
        finally:
            self._slots.release()

    async def _shared_call(self, source: str, kind: str, args: list) -> Any:
        key = (source, kind, dumpb(args))
        fut = self._inflight.get(key)
        if fut is not None:
            self.shared += 1
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            value = await self.handler(source, kind, args)
            fut.set_result(value)
            return value
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # marked retrieved: perhaps nobody else is waiting
            raise
        finally:
            del self._inflight[key]


__all__ = ["SERVED_KINDS", "RequestClient", "RequestServer", "UpstreamTimeout"]
