"""REST endpoints for recordings under ``<base_url>nbfeed/api/recordings``.

So a server records with no notebook open (a cron job, ``curl``, another service):

* ``GET    recordings``                 -> ``{"recordings": [...]}`` (name, status, span, rows...)
* ``POST   recordings``                 body ``{"source", "symbols", "interval" (one or a list),
  "name", "duration", "max_bytes", "max_age"}`` -> 201 ``{"recording": {...}}``
* ``GET    recordings/<name>``          -> ``{"recording": {...}}`` (status, gaps, events...)
* ``POST   recordings/<name>/stop``     -> ``{"recording": {...final...}}``
* ``DELETE recordings/<name>``          -> 204 (a live recording is stopped first)
* ``GET    recordings/<name>/export?format=parquet|csv`` -> the whole recording as one file

Thin handlers: Jupyter's authentication and authorization (resource ``nbfeed``; reads need
``read``, changes ``write``), then the hub's :class:`~nbfeed.recorder.service.RecordingService`.
Errors are raised and answered as 4xx/5xx ``{"detail", "code"}`` naming the bad value
(:mod:`.base`); a name that is not a valid recording name never reaches the file system.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import BadRequest
from ..hub import Hub
from ..hub.wire_recordings import record_streams
from ..jsonfast import loads
from ..recorder.service import default_name
from .handlers import NBFeedAPIHandler

MAX_BODY = 100_000
_CHUNK = 1 << 20


class RecordingsHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply({"recordings": await asyncio.to_thread(self.hub.recordings.list)})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = _json_body(self.request.body)
        streams = record_streams(body)
        info = await self.hub.recordings.start(
            body.get("name") or default_name(streams[0][0]), streams,
            duration=body.get("duration"), max_bytes=body.get("max_bytes"),
            max_age=body.get("max_age"))
        self.set_status(201)
        self.reply({"recording": info})


class RecordingHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply({"recording": await asyncio.to_thread(self.hub.recordings.describe, name)})

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.hub.recordings.delete(name)
        await self.hub.recordings_changed()
        self.set_status(204)
        self.finish()


class RecordingStopHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.reply({"recording": await self.hub.recordings.stop(name)})


class RecordingExportHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        fmt = self.param("format", "parquet")
        if fmt not in ("parquet", "csv"):
            raise BadRequest(f"format must be 'parquet' or 'csv', got {fmt!r:.40}")
        await asyncio.to_thread(self.hub.recordings.describe, name)  # bad/unknown names fail
        # Written to a temporary file off the loop, then streamed in chunks: an export may be
        # larger than memory and the loop keeps serving meanwhile.
        fd, tmp = tempfile.mkstemp(suffix=f".{fmt}", prefix="nbfeed-export-")
        os.close(fd)
        path = Path(tmp)
        try:
            await self.hub.recordings.export(name, path, fmt, overwrite=True)
            self.answer_type("application/vnd.apache.parquet" if fmt == "parquet"
                             else "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{name}.{fmt}"')
            self.set_header("Content-Length", str(path.stat().st_size))
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    self.write(chunk)
                    await self.flush()
            self.finish()
        finally:
            path.unlink(missing_ok=True)


def _json_body(body: bytes) -> dict:
    if len(body) > MAX_BODY:
        raise BadRequest(f"body of {len(body)} bytes is over {MAX_BODY}")
    try:
        data = loads(body or b"null")
    except ValueError:
        raise BadRequest("body must be JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object with source, symbols, interval, name...")
    return data


def recording_handlers(hub: Hub) -> list[tuple[str, type, dict]]:
    """Routes under ``<base_url>nbfeed/api/recordings`` (the base_url is prefixed for us)."""
    kw = {"hub": hub}
    name = r"(?P<name>[^/]+)"
    return [
        (r"/nbfeed/api/recordings", RecordingsHandler, kw),
        (rf"/nbfeed/api/recordings/{name}", RecordingHandler, kw),
        (rf"/nbfeed/api/recordings/{name}/stop", RecordingStopHandler, kw),
        (rf"/nbfeed/api/recordings/{name}/export", RecordingExportHandler, kw),
    ]
