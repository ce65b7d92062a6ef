"""Publish a table from a notebook to OpenBB Workspace, live, without restarting Jupyter.

::

    import nbfeed.workspace as ws

    @ws.widget(name="Top movers", every=30)      # re-run and push every 30 s
    def movers():
        return feed.history("simulated", "AAPL", "1d", count=20)   # any DataFrame

    movers.status        # 'published as nbfeed_nb_movers (20 rows), refreshed every 30 s'
    movers.refresh()     # push fresh rows now
    movers.unpublish()

How it works, and the trade-off: the function runs **in the kernel**, and the kernel pushes the
resulting rows to its Jupyter server (``POST <base_url>nbfeed/workspace/api/widgets``, then
``PUT .../rows``), authenticated with the server token found in nbfeed's runtime file. Workspace
reads the table from the server like any other widget and, with ``every``, polls it
(``refetchInterval``). The server never calls into a kernel, so nothing breaks when a kernel is
busy, restarted or gone - but the data is only as fresh as the last push: refreshes run when the
kernel is idle (between cells, on its event loop), and a dead kernel leaves its last table served
until the server restarts or the notebook calls :meth:`PublishedWidget.unpublish`.

Without a server (plain ``python``, nbclient, a remote kernel) the kernel runs embedded: nothing
is published, :attr:`PublishedWidget.status` says so, and :attr:`PublishedWidget.entry` still
shows (validated) what Workspace would get. Server lookup: :func:`configure` if called, else the
same as ``nbfeed.connect()`` (:func:`nbfeed.client.find_server`: ``$NBFEED_SERVER_INFO``, then
``nbfeed-$JPY_PARENT_PID.json`` in Jupyter's runtime directory; JupyterHub's token).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .errors import BadRequest, NBFeedError, UpstreamError
from .openbb.entries import WIDGET_PREFIX, build_entry, check_id
from .openbb.tables import to_table

__all__ = ["PublishedWidget", "ServerInfo", "ServerRefused", "configure", "find_server",
           "server_urls", "to_table", "widget"]

log = logging.getLogger("nbfeed.workspace")

API = "nbfeed/workspace/api/"
TIMEOUT = 15.0
MIN_EVERY = 1.0


@dataclass
class ServerInfo:
    """Where to publish: the server's base URL (ending in '/') and its token."""

    url: str
    token: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


class ServerRefused(BadRequest):
    """The server answered a publish request with an HTTP error (``status``)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"server refused ({status}): {detail}")
        self.status = status


_explicit: ServerInfo | None = None


def configure(url: str | None = None, token: str | None = None) -> None:
    """Publish to this server (base URL such as ``http://127.0.0.1:8888/``) instead of looking
    it up; ``configure()`` with no arguments goes back to the automatic lookup."""
    global _explicit
    _explicit = None if url is None else ServerInfo(url.rstrip("/") + "/", token or "")


def find_server() -> ServerInfo | None:
    """The Jupyter server with nbfeed that this kernel belongs to, or None (embedded)."""
    if _explicit is not None:
        return _explicit
    from .client import find_server as runtime_info  # same lookup as nbfeed.connect()

    info = runtime_info()
    if not info or not info.get("url"):
        return None
    return ServerInfo(str(info["url"]).rstrip("/") + "/", info.get("token") or "")


def _request(server: ServerInfo, method: str, path: str, body: Any = None) -> Any:
    """One JSON request to the server; raises NBFeedError (4xx: the server's detail)."""
    data = None if body is None else json.dumps(body, allow_nan=False).encode()
    req = urllib.request.Request(server.url + API + path, data=data, method=method,
                                 headers={**server.headers(), "Content-Type": "application/json"})
    context = None
    if urlparse(server.url).hostname in ("127.0.0.1", "localhost", "::1") \
            and server.url.startswith("https"):
        # The kernel talks to its own server over loopback; its certificate is often
        # self-signed for Safari/Brave, and names the public host, not 127.0.0.1.
        context = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=context) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read().decode()).get("detail", err.reason)
        except ValueError:
            detail = err.reason
        raise ServerRefused(err.code, str(detail)) from None
    except OSError as err:
        raise UpstreamError(f"cannot reach the Jupyter server at {server.url}: {err}") from None
    return json.loads(text) if text else None


def _default_id(func: Callable) -> str:
    raw = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(func, "__name__", "widget"))[:64]
    return raw if raw[:1].isalnum() else ("w" + raw)[:64]


# ---- the published widget -------------------------------------------------------------------


class PublishedWidget:
    """A notebook function served to Workspace as a table. Calling it calls the function."""

    def __init__(self, func: Callable[[], Any], *, id: str | None = None,
                 name: str | None = None, description: str | None = None,
                 category: str = "Notebook", every: float | None = None) -> None:
        self.func = func
        functools.update_wrapper(self, func)
        self.id = check_id(id or _default_id(func))
        self.name = name or self.id.replace("_", " ").strip().capitalize()
        doc = (func.__doc__ or "").strip().splitlines()
        self.description = description if description is not None else (doc[0] if doc else "")
        self.category = category
        if every is not None and (not isinstance(every, (int, float)) or every < MIN_EVERY):
            raise BadRequest(f"every must be at least {MIN_EVERY} second(s), got {every!r}")
        self.every = every
        self.status = "not published yet"
        self.last_error: str | None = None
        self.rows_sent = 0
        self.entry: dict | None = None
        self._columns: list[dict] | None = None
        self._server: ServerInfo | None = None
        self._timer: Any = None
        self._stop = threading.Event()

    @property
    def widget_id(self) -> str:
        return WIDGET_PREFIX + self.id

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def definition(self, columns: list[dict], rows: list[dict] | None = None) -> dict:
        body: dict[str, Any] = {"id": self.id, "name": self.name,
                                "description": self.description, "category": self.category,
                                "columns": columns}
        if self.every:
            body["refetchInterval"] = max(1000, int(self.every * 1000))
        if rows is not None:
            body["rows"] = rows
        return body

    def _table(self) -> tuple[list[dict], list[dict]]:
        columns, rows = to_table(self.func())
        # Validate here too: the notebook user sees the problem, not just the server log.
        self.entry = build_entry(self.definition(columns))[1]
        return columns, rows

    def publish(self) -> PublishedWidget:
        """Run the function and publish (or replace) the table. Embedded: validate only."""
        columns, rows = self._table()
        self._columns = columns
        server = self._server = find_server()
        if server is None:
            self.status = ("not published: no Jupyter server with nbfeed found (this kernel "
                           "runs embedded); .entry shows what Workspace would get")
            return self
        try:
            _request(server, "POST", "widgets", self.definition(columns, rows))
        except NBFeedError as exc:
            self.last_error = self.status = f"not published: {exc}"
            raise
        self.rows_sent = len(rows)
        self.last_error = None
        self._set_status()
        if self.every and self._timer is None:
            self.start(self.every)
        return self

    def refresh(self) -> PublishedWidget:
        """Run the function again and push the new rows (republishing when the columns
        changed or the server forgot the table, e.g. after a restart)."""
        if self._server is None:
            return self.publish()
        columns, rows = self._table()
        self._send(columns, rows)
        return self

    def _send(self, columns: list[dict], rows: list[dict]) -> None:
        assert self._server is not None
        if columns != self._columns:
            _request(self._server, "POST", "widgets", self.definition(columns, rows))
            self._columns = columns
        else:
            try:
                _request(self._server, "PUT", f"widgets/{self.id}/rows", {"rows": rows})
            except ServerRefused as exc:
                if exc.status != 404:
                    raise
                _request(self._server, "POST", "widgets", self.definition(columns, rows))
        self.rows_sent = len(rows)
        self.last_error = None
        self._set_status()

    def _set_status(self) -> None:
        every = f", refreshed every {self.every:g} s" if self.every and self._timer else ""
        self.status = f"published as {self.widget_id} ({self.rows_sent} rows){every}"

    def start(self, every: float) -> None:
        """Refresh every ``every`` seconds: on the kernel's event loop when there is one (runs
        between cells), else on a daemon thread."""
        if every < MIN_EVERY:
            raise BadRequest(f"every must be at least {MIN_EVERY} second(s), got {every!r}")
        self.stop()
        self.every = every
        self._stop = threading.Event()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._timer = loop.call_later(every, self._tick_on_loop, loop)
        else:
            thread = threading.Thread(target=self._thread_loop, name=f"nbfeed-{self.id}",
                                      daemon=True)
            self._timer = thread
            thread.start()
        self._set_status()

    def _tick_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stop.is_set():
            return
        try:
            columns, rows = self._table()  # user code: on the kernel's thread
        except Exception as exc:
            self._failed(exc)
            self._timer = loop.call_later(self.every or MIN_EVERY, self._tick_on_loop, loop)
            return
        future = loop.run_in_executor(None, self._push, columns, rows)

        def again(_: Any) -> None:
            if not self._stop.is_set():
                self._timer = loop.call_later(self.every or MIN_EVERY, self._tick_on_loop, loop)

        future.add_done_callback(again)

    def _push(self, columns: list[dict], rows: list[dict]) -> None:
        """A periodic push (worker thread): failures are recorded, never raised."""
        try:
            if self._server is None:
                self._server = find_server()
                if self._server is None:
                    return
            self._send(columns, rows)
        except Exception as exc:
            self._failed(exc)

    def _thread_loop(self) -> None:
        while not self._stop.wait(self.every or MIN_EVERY):
            try:
                columns, rows = self._table()
            except Exception as exc:
                self._failed(exc)
                continue
            self._push(columns, rows)

    def _failed(self, exc: Exception) -> None:
        if str(exc) != self.last_error:  # log a failure once, not at every tick
            log.warning("nbfeed: refreshing Workspace widget %s failed: %s", self.id, exc)
        self.last_error = str(exc)

    def stop(self) -> None:
        """Stop periodic refreshes (the table stays published)."""
        self._stop.set()
        timer, self._timer = self._timer, None
        if isinstance(timer, asyncio.TimerHandle):
            timer.cancel()
        if self._server is not None and self.rows_sent:
            self._set_status()

    def unpublish(self) -> None:
        """Stop refreshing and remove the table from Workspace's widgets.json."""
        self.stop()
        if self._server is not None:
            try:
                _request(self._server, "DELETE", f"widgets/{self.id}")
            except ServerRefused as exc:
                if exc.status != 404:
                    raise
        self.status = "unpublished"

    def __repr__(self) -> str:
        return f"<nbfeed.workspace widget {self.id!r}: {self.status}>"


def widget(func: Callable | None = None, *, id: str | None = None, name: str | None = None,
           description: str | None = None, category: str = "Notebook",
           every: float | None = None, publish: bool = True) -> Any:
    """Decorator: serve ``func()`` (a DataFrame or list of dicts) to Workspace as a table.

    Publishes at once (``publish=False`` to wait for :meth:`PublishedWidget.publish`); with
    ``every`` seconds it re-runs and pushes periodically and Workspace polls as often. Returns
    the :class:`PublishedWidget`, which is still callable like the function. Raises
    :class:`~nbfeed.errors.BadRequest` for a bad id, return value or server refusal.
    """

    def wrap(fn: Callable) -> PublishedWidget:
        item = PublishedWidget(fn, id=id, name=name, description=description,
                               category=category, every=every)
        if publish:
            item.publish()
        return item

    return wrap(func) if func is not None else wrap


def server_urls() -> dict | None:
    """The backend URLs to paste into Workspace (from the server), or None when embedded."""
    server = find_server()
    if server is None:
        return None
    return _request(server, "GET", "info")
