"""Wire protocol v1: one client session over any message transport (tornado, a test, ...).

The protocol belongs here, not in a web handler: a transport gives the session the client's
frames (:meth:`WireSession.receive`) and a ``send(frame: bytes, binary: bool = False)``
function, nothing more (``binary`` is only ever true for a client that asked for binary frames;
every other frame is UTF-8 JSON for a text message). ``send`` returns an awaitable that
completes when the frame is written (flow control), or None when the transport is closed (the
frame is dropped; the transport then calls :meth:`close`).

Failure behaviour:

* every malformed, unknown, oversized or refused message is answered with an ``error`` frame
  naming the problem (at most ``MAX_ERROR_CHARS`` characters: bad input is never echoed in
  full); the session keeps going (errors never close the socket);
* each subscription's rows wait in a bounded, conflating outbox; one pump task writes at most one
  ``data_update`` frame per subscription per flush and awaits the transport's write before the
  next, so a client that does not read never grows the server's memory and never delays others;
* each batch is serialized once for every socket (:mod:`.wire_frames`); a client that sent
  ``{"type": "hello", "format": "binary"}`` gets its ``data_update`` frames in the binary layout
  of :mod:`nbfeed.wire_binary` (a batch whose rows cannot be encoded so goes out as JSON); every
  other client gets JSON text frames only. A client's binary websocket frame is refused with an
  ``error`` frame (:meth:`WireSession.refuse_binary`);
* the pump lives as long as the session: anything but a closed transport going wrong in a
  flush is logged at ERROR and the next flush goes on, so no subscription ever stops receiving
  while its stream produces rows (an unsubscribe while a flush waits on a slow client only
  drops that subscription's rows);
* history requests run concurrently (at most ``max_concurrent_requests`` per session) and always
  end in a reply or an error frame, thanks to the hub's request timeout.

Recordings and replay sessions (``record``, ``stop_recording``, ``recordings``, ``control``,
``subscribe`` with ``options``) are in :mod:`.wire_recordings`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._version import __version__
from ..errors import BadRequest, LimitExceeded, NBFeedError, shown
from ..jsonfast import dumpb, loads
from ..wire_binary import Block, encode_frame
from .config import HubConfig
from .hub import Hub
from .memory import BIG_ANSWER_BARS, release_freed_memory
from .outbox import StreamBatch
from .subscription import Subscription
from .tasks import background
from .wire_frames import json_data_frame, shared_blocks
from .wire_recordings import RecordingMessages

log = logging.getLogger("nbfeed.wire")

VERSION = 1
MESSAGE_TYPES = ("hello", "subscribe", "unsubscribe", "history", "search", "ping", "record",
                 "stop_recording", "recordings", "control")
#: Encodings of ``data_update`` frames a client may choose in its ``hello`` (JSON by default).
FORMATS = ("json", "binary")
#: Batches of at most this many rows that no socket encoded yet are encoded together.
SMALL_BATCH_ROWS = 4
#: Longest ``message`` of an error frame; longer ones are cut (they may quote client input).
MAX_ERROR_CHARS = 1_000


class _TransportClosed(Exception):
    """The transport failed a write: the connection is gone and the session stops writing."""


def error_frame(code: str, message: str, request_id: str | None = None) -> bytes:
    """An ``error`` frame, its message cut to ``MAX_ERROR_CHARS``."""
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return dumpb({"type": "error", "id": request_id, "code": code, "message": message})


@dataclass
class WireLimits:
    """Per-session limits; each one, when hit, is reported as an ``error`` frame (code limit)."""

    max_message_bytes: int = 1_000_000
    max_subscriptions: int = 1_000
    max_streams: int = 10_000
    max_concurrent_requests: int = 8
    #: Rows a subscription may have waiting before it conflates (the hub's own default).
    max_pending_rows: int = HubConfig.max_pending_rows
    #: Seconds between flushes at most this often (0 = as fast as the client reads).
    min_flush_interval: float = 0.0


class WireSession(RecordingMessages):
    """One connected client: parses its messages, runs them against the hub, pumps its data."""

    def __init__(self, hub: Hub, send: Callable[..., Awaitable[Any] | None],
                 limits: WireLimits | None = None) -> None:
        self.hub = hub
        self._send = send
        #: How this client's ``data_update`` frames are encoded (its ``hello`` may change it).
        self.format = "json"
        self._blocks = shared_blocks(hub)
        self._schemas_sent: set[str] = set()  # binary schemas this client's reader has
        self._conflated: dict[str, int] = {}  # subscription id -> conflated rows seen
        self.limits = limits or WireLimits()
        self.subscriptions: dict[str, Subscription] = {}
        self._ids_json: dict[str, bytes] = {}
        self._ready = asyncio.Event()
        self._requests: set[asyncio.Task] = set()
        self._closed = False
        self._pump_task = background(self._pump(), "wire session pump")

    def hello(self) -> bytes:
        """The first frame a transport sends: protocol version, server version and the
        ``data_update`` formats a client may ask for."""
        return dumpb({"type": "hello", "version": VERSION, "server": f"nbfeed {__version__}",
                      "formats": list(FORMATS)})

    async def refuse_binary(self, message: bytes) -> None:
        """Answer a binary websocket frame from the client: the protocol's messages are JSON
        text frames. Never raises; the session goes on."""
        if not self._closed:
            await self._write_quietly(error_frame(
                "bad_request", f"binary frames from clients are not accepted (got one of "
                f"{len(message)} bytes); send each message as a JSON text frame"))

    # ---- incoming -------------------------------------------------------------------------

    async def receive(self, message: str | bytes) -> None:
        """Handle one frame from the client. Never raises: problems become error frames."""
        if self._closed:
            return
        req_id = None
        try:
            if len(message) > self.limits.max_message_bytes:
                raise LimitExceeded(f"message of {len(message)} bytes is over the limit of "
                                    f"{self.limits.max_message_bytes}")
            try:
                msg = loads(message)
            except ValueError as exc:
                raise BadRequest(f"message is not valid JSON: {exc}") from None
            if not isinstance(msg, dict):
                raise BadRequest(f"message must be a JSON object, got {type(msg).__name__}")
            req_id = self._id_of(msg)
            kind = msg.get("type")
            if kind not in MESSAGE_TYPES:
                raise BadRequest(f"unknown message type {shown(kind, 60)}; expected one of "
                                 f"{', '.join(MESSAGE_TYPES)}")
            await getattr(self, f"_on_{kind}")(msg, req_id)
        except _TransportClosed:
            return
        except NBFeedError as exc:
            await self._write_quietly(error_frame(exc.code, exc.message, req_id))
        except Exception as exc:  # a bug must not take the socket down
            log.exception("wire session error")
            await self._write_quietly(error_frame(
                "bad_request", f"internal error: {type(exc).__name__}", req_id))

    @staticmethod
    def _id_of(msg: dict) -> str | None:
        rid = msg.get("id")
        if rid is None:
            return None
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise BadRequest(f"id must be a string, got {type(rid).__name__}")
        rid = str(rid)
        if not 0 < len(rid) <= 128:
            raise BadRequest("id must be 1-128 characters")
        return rid

    @staticmethod
    def _need_id(req_id: str | None, kind: str) -> str:
        if req_id is None:
            raise BadRequest(f"{kind} needs an 'id' chosen by the client")
        return req_id

    async def _on_hello(self, msg: dict, req_id: str | None) -> None:
        """``{"type": "hello", "format": "binary"|"json"}``: how ``data_update`` frames of this
        socket are encoded from now on; answered with a ``hello`` naming the format."""
        fmt = msg.get("format", "json")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}; got "
                             f"{shown(fmt, 60)}")
        self.format = fmt
        await self._write(dumpb({"type": "hello", "id": req_id, "version": VERSION,
                                 "format": fmt}))

    async def _on_ping(self, msg: dict, req_id: str | None) -> None:
        await self._write(dumpb({"type": "pong", "id": req_id}))

    async def _on_subscribe(self, msg: dict, req_id: str | None) -> None:
        rid = self._need_id(req_id, "subscribe")
        if rid in self.subscriptions:
            raise BadRequest(f"id {rid!r} is already subscribed; unsubscribe it first or use "
                             "another id")
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            raise LimitExceeded(f"at most {self.limits.max_subscriptions} subscriptions per "
                                "connection")
        symbols = msg.get("symbols", msg.get("symbol"))
        if isinstance(symbols, str):
            symbols = [symbols]
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise BadRequest("symbols must be a list of strings")
        streams = sum(len(s.symbols) for s in self.subscriptions.values())
        if streams + len(symbols) > self.limits.max_streams:
            raise LimitExceeded(f"at most {self.limits.max_streams} streams per connection")
        source = msg.get("source")
        interval = msg.get("interval", "tick")
        sub = await self.hub.subscribe(source, symbols, interval,
                                       max_pending_rows=self.limits.max_pending_rows,
                                       options=msg.get("options") or None)
        if self._closed:
            await sub.close()
            return
        self.subscriptions[rid] = sub
        self._ids_json[rid] = dumpb(rid)
        sub.on_ready = self._ready.set
        init = {"type": "data_init", "id": rid, "source": sub.source,
                "interval": sub.interval, "rows": sub.snapshot()}
        if sub.session is not None:
            init["session"] = sub.session_state
        await self._write(dumpb(init))
        if sub.pending:
            self._ready.set()

    async def _on_unsubscribe(self, msg: dict, req_id: str | None) -> None:
        rid = self._need_id(req_id, "unsubscribe")
        sub = self.subscriptions.pop(rid, None)
        if sub is None:
            raise BadRequest(f"no subscription with id {rid!r}")
        self._ids_json.pop(rid, None)
        self._conflated.pop(rid, None)
        await sub.close()
        await self._write(dumpb({"type": "unsubscribed", "id": rid}))

    async def _on_history(self, msg: dict, req_id: str | None) -> None:
        rid = self._need_id(req_id, "history")
        if len(self._requests) >= self.limits.max_concurrent_requests:
            raise LimitExceeded(f"at most {self.limits.max_concurrent_requests} requests at "
                                "once per connection")
        task = background(self._history(msg, rid), "wire history request")
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _history(self, msg: dict, rid: str) -> None:
        try:
            bars = await self.hub.history_columns(
                msg.get("source"), msg.get("symbol"), msg.get("interval"), msg.get("start"),
                msg.get("end"), msg.get("count"), options=msg.get("options") or None)
            # One frame; rows encoded from the columns off the loop when there are many.
            body = (await asyncio.to_thread(bars.json_rows) if len(bars) > 2_000
                    else bars.json_rows())
            await self._write(b'{"type":"history","id":' + dumpb(rid) + b',"rows":[' + body
                              + b"]}")
            if len(bars) >= BIG_ANSWER_BARS:
                del bars, body
                await asyncio.to_thread(release_freed_memory)
        except _TransportClosed:
            return
        except NBFeedError as exc:
            await self._write_quietly(error_frame(exc.code, exc.message, rid))
        except Exception as exc:
            log.exception("history request failed")
            await self._write_quietly(error_frame("upstream", f"{type(exc).__name__}: {exc}",
                                                  rid))

    async def _on_search(self, msg: dict, req_id: str | None) -> None:
        query = msg.get("query", "")
        if query is None:
            query = ""
        if not isinstance(query, str):
            raise BadRequest("query must be a string")
        limit = msg.get("limit", 20)
        results = await self.hub.search(query, source=msg.get("source"),
                                        category=msg.get("category"), type=msg.get("kind"),
                                        limit=limit)
        await self._write(dumpb({"type": "search", "id": req_id, "results": results}))

    # ---- outgoing -------------------------------------------------------------------------

    async def _write(self, frame: bytes, binary: bool = False) -> None:
        """Write one frame and wait until the transport took it; raises _TransportClosed when
        the transport failed the write (a closed transport's ``None`` just drops the frame)."""
        if self._closed:
            return
        result = self._send(frame, binary=True) if binary else self._send(frame)
        if result is not None:
            try:
                await result
            except Exception as exc:
                raise _TransportClosed() from exc

    async def _write_quietly(self, frame: bytes) -> None:
        """:meth:`_write` for a reply on its way out anyway: a closed transport is no error."""
        try:
            await self._write(frame)
        except _TransportClosed:
            pass

    async def _pump(self) -> None:
        try:
            while not self._closed:
                await self._ready.wait()
                self._ready.clear()
                try:
                    await self.flush()
                except _TransportClosed:
                    log.debug("wire pump stopped: the transport closed")
                    return
                except Exception:
                    # A bug in one flush must not silence the socket: report it, go on.
                    log.exception("wire session: a flush failed; delivery goes on")
                    self._ready.set()
                    await asyncio.sleep(0.1)  # not a hot loop if it fails again
                if self.limits.min_flush_interval > 0:
                    await asyncio.sleep(self.limits.min_flush_interval)
        except asyncio.CancelledError:
            pass

    async def flush(self) -> None:
        """Write one frame per subscription with everything waiting, plus status/error events.

        Each write waits for the transport, so the client may unsubscribe meanwhile: what a
        subscription needs (its id's JSON) is taken before the first await, and a subscription
        no longer held is skipped."""
        events_seen: set[bytes] = set()
        for rid, sub in list(self.subscriptions.items()):
            if self.subscriptions.get(rid) is not sub or not sub.pending:
                continue  # unsubscribed during an earlier write of this flush, or idle
            id_json = self._ids_json[rid]
            batches: list[StreamBatch] = []
            for item in sub.take():
                if isinstance(item, StreamBatch):
                    if len(item):
                        batches.append(item)
                    continue
                event = dict(item)
                if event.get("type") == "status":
                    key = dumpb(event)
                    if key in events_seen:
                        continue  # one status per source per flush, not one per subscription
                    events_seen.add(key)
                    await self._write(key)
                else:
                    event["id"] = rid
                    await self._write(dumpb(event))
            if not batches or self.subscriptions.get(rid) is not sub:
                continue
            if self.format == "binary":
                # Behind (its outbox conflated since the last flush): its batches are mostly
                # its own, and it needs the server's time most - encode them together.
                behind = sub.conflated_rows != self._conflated.get(rid, 0)
                self._conflated[rid] = sub.conflated_rows
                await self._write_binary(rid, id_json, batches, merge=behind)
            else:
                frame = json_data_frame(id_json, batches)
                if frame is not None:
                    await self._write(frame)

    async def _write_binary(self, rid: str, id_json: bytes, batches: list[StreamBatch],
                            merge: bool = False) -> None:
        """``batches`` as binary data frames: one for the lot, or - around a batch that cannot
        be encoded so - runs of binary frames and JSON frames, in the batches' order.

        A batch another socket already encoded is reused as it is. With ``merge`` (a socket
        whose outbox conflated), small batches nobody encoded yet - mostly the ones its
        conflation made, which no other socket has - are encoded together, one block for
        each run of them, instead of one block apiece (and not shared)."""
        pieces: list[Block | StreamBatch] = []  # a block, or a batch to send as JSON
        small: list[StreamBatch] = []

        def encode(batch: StreamBatch) -> None:
            block = self._blocks.block(batch)
            pieces.append(batch if block is None else block)

        def merge_small() -> None:
            if len(small) > 1:
                block = self._blocks.merged(small)
                if block is not None:
                    pieces.append(block)
                    small.clear()
            for batch in small:
                encode(batch)
            small.clear()

        for batch in batches:
            if merge and len(batch) <= SMALL_BATCH_ROWS \
                    and not self._blocks.cached(batch):
                small.append(batch)
                continue
            merge_small()
            encode(batch)
        merge_small()
        run: list[Block] = []
        fallback: list[StreamBatch] = []
        for piece in pieces:
            if isinstance(piece, StreamBatch):
                if run:
                    await self._write(encode_frame(rid, run, self._schemas_sent), binary=True)
                    run = []
                fallback.append(piece)
                continue
            if fallback:
                frame = json_data_frame(id_json, fallback)
                fallback = []
                if frame is not None:
                    await self._write(frame)
            run.append(piece)
        if run:
            await self._write(encode_frame(rid, run, self._schemas_sent), binary=True)
        if fallback:
            frame = json_data_frame(id_json, fallback)
            if frame is not None:
                await self._write(frame)

    async def close(self) -> None:
        """Release every subscription and stop; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._pump_task.cancel()
        for task in list(self._requests):
            task.cancel()
        for sub in list(self.subscriptions.values()):
            await sub.close()
        self.subscriptions.clear()

