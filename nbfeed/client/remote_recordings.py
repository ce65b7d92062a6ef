"""Recordings and replay sessions of a :class:`~nbfeed.client.remote.RemoteFeed`.

Recordings are managed over REST (``nbfeed/api/recordings``, see
:mod:`nbfeed.server_ext.recordings`): they live at the server and go on when the notebook
closes. Replay sessions travel on the Feed's websocket: ``subscribe`` with ``options``, then
``control`` frames (with an ``id`` when the caller waits for the new state, without one for
acknowledgements). After a reconnect the socket subscribes again, which opens a fresh session:
a replay that was cut by a server restart starts over.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
import urllib.parse
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .. import errors
from .stream import Stream

_POLL_S = 0.25


class RemoteRecordings:
    """Mixed into RemoteFeed; uses its REST helpers and its websocket."""

    url: str
    server: Any  # nbfeed.client.http.ServerInfo
    timeout: float
    _ids: itertools.count
    _streams: dict[str, Stream]
    _specs: dict[str, dict]
    _pending: dict[str, Future]
    _loop: asyncio.AbstractEventLoop | None

    # ---- replay sessions ------------------------------------------------------------------

    def _subscribe_session(self, source: str, symbols: list[str], interval: str,
                           options: dict) -> Stream:
        from .replay import ReplayStream

        self._ensure_socket()  # type: ignore[attr-defined]
        rid = f"s{next(self._ids)}"
        spec = {"source": source, "symbols": symbols, "interval": interval, "options": options}
        stream = ReplayStream(source, symbols, interval, self._release,  # type: ignore
                              self._controller(rid), {},
                              history=self.history)  # type: ignore[attr-defined]
        return self._open(rid, spec, stream)  # type: ignore[attr-defined]

    def _controller(self, rid: str) -> Any:
        def control(command: str, args: dict, wait: bool) -> Any:
            frame = {"type": "control", "subscription": rid, "command": command, "args": args}
            assert self._loop is not None
            if not wait:
                asyncio.run_coroutine_threadsafe(self._send_frame(frame), self._loop)
                return None
            cid = f"c{next(self._ids)}"
            fut: Future = Future()
            self._pending[cid] = fut
            asyncio.run_coroutine_threadsafe(self._send_frame({**frame, "id": cid}),
                                             self._loop)
            try:
                return fut.result(self.timeout)
            except TimeoutError:
                raise errors.UpstreamTimeout(f"the server did not answer {command!r} in "
                                             f"{self.timeout:g} s") from None
            finally:
                self._pending.pop(cid, None)

        return control

    def _on_session_frame(self, frame: dict) -> bool:
        """Frames of sessions and recordings; True if this one was handled here."""
        kind = frame.get("type")
        if kind == "control":
            fut = self._pending.pop(frame.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(frame.get("state") or {})
            return True
        if kind == "data_init" and "session" in frame:
            stream = self._streams.get(frame.get("id"))
            if stream is not None and hasattr(stream, "_open_session"):
                stream._open_session(frame["session"])
        return False

    async def _send_frame(self, msg: dict) -> None:  # provided by RemoteFeed
        raise NotImplementedError

    def _history_with(self, source, symbol, interval, start, end, count, options):
        params = {"source": source, "symbol": symbol, "interval": interval, "start": start,
                  "end": end, "count": count, **options}
        return self._get_columns(params)  # type: ignore[attr-defined]

    # ---- recordings (REST) ----------------------------------------------------------------

    def _recording_path(self, name: str, tail: str = "") -> str:
        return f"nbfeed/api/recordings/{urllib.parse.quote(str(name), safe='')}{tail}"

    def _recording_start(self, name: str, streams: list[dict], limits: dict) -> dict:
        first = streams[0]
        body = {"name": name, "source": first["source"], "symbols": first["symbols"],
                "interval": [s["interval"] for s in streams], **limits}
        return self._request("POST", "nbfeed/api/recordings", body,  # type: ignore
                             None)["recording"]

    def _recording_stop(self, name: str) -> dict:
        return self._request("POST", self._recording_path(name, "/stop"), {},  # type: ignore
                             max(self.timeout, 120))["recording"]

    def _recording_info(self, name: str) -> dict:
        return self._get(self._recording_path(name))["recording"]  # type: ignore

    def _recording_list(self) -> list[dict]:
        return self._get("nbfeed/api/recordings")["recordings"]  # type: ignore

    def _recording_wait(self, name: str, timeout: float | None) -> dict:
        # Another process's state: no event reaches this client, so it asks every 250 ms.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self._recording_info(name)
            if info["status"] != "recording":
                return info
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.UpstreamTimeout(f"recording {name!r} did not end within "
                                             f"{timeout} s")
            time.sleep(_POLL_S)

    def _recording_delete(self, name: str) -> None:
        self._request("DELETE", self._recording_path(name), None, None)  # type: ignore

    def _recording_export(self, name: str, path: Path, format: str | None,
                          overwrite: bool) -> Path:
        from .http import download

        fmt = format or (path.suffix.lstrip(".").lower() or "parquet")
        if path.exists() and not overwrite:
            raise errors.BadRequest(f"{str(path)!r} exists; pass overwrite=True to replace it")
        query = urllib.parse.urlencode({"format": fmt})
        return download(self.server, f"{self._recording_path(name, '/export')}?{query}",
                        path, max(self.timeout, 600))

    def _recording_frame(self, name: str) -> Any:
        import pandas as pd

        with tempfile.TemporaryDirectory() as folder:
            path = self._recording_export(name, Path(folder) / "rows.parquet", "parquet", True)
            return pd.read_parquet(path)

