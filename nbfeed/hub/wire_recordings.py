"""Wire protocol v1 messages for recordings and replay sessions (mixed into ``WireSession``).

Client -> server (each answered by one frame with the same ``id``, or an ``error`` frame)::

    {"type": "record", "id": "r1", "source": "simulated", "symbols": ["AAPL"],
     "interval": "tick" | ["tick", "1s"], "name": "demo", "duration": 60,
     "max_bytes": 100000000, "max_age": null}
        <- {"type": "recording", "id": "r1", "recording": {...info...}}
    {"type": "stop_recording", "id": "r2", "name": "demo"}
        <- {"type": "recording", "id": "r2", "recording": {...final info...}}
    {"type": "recordings", "id": "r3"}
        <- {"type": "recordings", "id": "r3", "recordings": [{...}, ...]}
    {"type": "control", "id": "c1", "subscription": "q1", "command": "pause" | "resume" |
     "seek" | "speed" | "state" | "ack", "args": {"to": ..., "speed": ..., ...}}
        <- {"type": "control", "id": "c1", "subscription": "q1", "state": {...}}

A ``control`` without ``id`` is one-way (no reply): nbfeed's client acknowledges replayed rows
that way. Subscribing with options (``{"type": "subscribe", ..., "options": {"recording":
"demo", "speed": 10}}``) opens a replay session; its ``data_init`` frame carries ``"session":
{...state...}``.

A recording belongs to the hub, not to the socket that started it: it goes on after the socket
closes (a server records with no notebook open) until its duration, a limit, ``stop_recording``,
the REST API or the server stopping ends it.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..jsonfast import dumpb


class RecordingMessages:
    """The ``record``/``stop_recording``/``recordings``/``control`` handlers of a session."""

    hub: Any
    subscriptions: dict[str, Any]

    async def _write(self, text: bytes) -> None:  # provided by WireSession
        raise NotImplementedError

    async def _on_record(self, msg: dict, req_id: str | None) -> None:
        from ..recorder.service import default_name

        streams = record_streams(msg)
        name = msg.get("name") or default_name(streams[0][0])
        info = await self.hub.recordings.start(
            name, streams, duration=msg.get("duration"), max_bytes=msg.get("max_bytes"),
            max_age=msg.get("max_age"))
        await self._write(dumpb({"type": "recording", "id": req_id, "recording": info}))

    async def _on_stop_recording(self, msg: dict, req_id: str | None) -> None:
        info = await self.hub.recordings.stop(msg.get("name"))
        await self._write(dumpb({"type": "recording", "id": req_id, "recording": info}))

    async def _on_recordings(self, msg: dict, req_id: str | None) -> None:
        import asyncio

        listed = await asyncio.to_thread(self.hub.recordings.list)
        await self._write(dumpb({"type": "recordings", "id": req_id, "recordings": listed}))

    async def _on_control(self, msg: dict, req_id: str | None) -> None:
        target = msg.get("subscription")
        sub = self.subscriptions.get(target) if isinstance(target, str) else None
        if sub is None:
            raise BadRequest(f"control: no subscription with id {target!r:.60} on this "
                             "connection")
        args = msg.get("args")
        if req_id is None:
            await self.hub.control(sub, msg.get("command"), args, wait=False)
            return
        state = await self.hub.control(sub, msg.get("command"), args)
        await self._write(dumpb({"type": "control", "id": req_id, "subscription": target,
                                 "state": state}))


def record_streams(msg: dict) -> list[tuple[str, Any, str]]:
    """``(source, symbols, interval)`` per stream of a ``record`` message or REST body.

    ``interval`` may be one interval or a list (one stream each); symbols a string or a list.
    """
    source, symbols = msg.get("source"), msg.get("symbols", msg.get("symbol"))
    if not isinstance(source, str) or not source:
        raise BadRequest("record needs 'source': the provider to record, e.g. 'simulated'")
    if isinstance(symbols, str):
        symbols = [symbols]
    if not isinstance(symbols, list) or not symbols or \
            not all(isinstance(s, str) for s in symbols):
        raise BadRequest("record needs 'symbols': a list of symbol names")
    interval = msg.get("interval", "tick")
    intervals = [interval] if isinstance(interval, str) else interval
    if not isinstance(intervals, list) or not intervals or len(intervals) > 16 or \
            not all(isinstance(i, str) for i in intervals):
        raise BadRequest("record: 'interval' must be an interval or a list of up to 16")
    return [(source, symbols, iv) for iv in intervals]
