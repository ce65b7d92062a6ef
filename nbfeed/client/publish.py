"""Publish a table from a notebook to OpenBB Workspace, live, without restarting Jupyter.

Users reach it as :mod:`nbfeed.workspace`::

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
shows (validated) what Workspace would get. Where tables go (:func:`publish_target`): the server
given to :func:`configure`, else the one ``nbfeed.connect()`` finds
(:func:`nbfeed.client.find_server`: ``$NBFEED_SERVER_INFO``, then ``nbfeed-$JPY_PARENT_PID.json``
in Jupyter's runtime directory; JupyterHub's token).

Failure behaviour: a definition or return value Workspace would reject raises
:class:`~nbfeed.errors.BadRequest` in the notebook, before anything is sent; a server that
refuses raises the error its reply names (:mod:`nbfeed.client.http`). Periodic refreshes never
raise: a failure is logged once and kept in :attr:`PublishedWidget.last_error`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from ..errors import BadRequest, NBFeedError
from ..openbb.entries import WIDGET_PREFIX, build_entry, check_id
from ..openbb.tables import to_table
from .connect import find_server
from .http import ServerInfo, request

__all__ = ["PublishedWidget", "configure", "publish_target", "server_urls", "to_table", "widget"]

log = logging.getLogger("nbfeed.workspace")

API = "nbfeed/workspace/api/"
TIMEOUT = 15.0
MIN_EVERY = 1.0


_explicit: ServerInfo | None = None


def configure(url: str | None = None, token: str | None = None) -> None:
    """Publish to this server (base URL such as ``http://127.0.0.1:8888/``) instead of looking
    it up; ``configure()`` with no arguments goes back to the automatic lookup."""
    global _explicit
    _explicit = None if url is None else ServerInfo(url, token or "")


def publish_target() -> ServerInfo | None:
    """Where tables are published: the server given to :func:`configure`, else this kernel's
    Jupyter server with nbfeed, else None (the kernel runs embedded)."""
    return _explicit if _explicit is not None else find_server()


def _request(server: ServerInfo, method: str, path: str, body: Any = None) -> Any:
    """One JSON request to the server's Workspace API; raises NBFeedError."""
    return request(server, method, API + path, body, TIMEOUT)


def _not_found(exc: NBFeedError) -> bool:
    """The server does not know the table (it restarted, or it was deleted meanwhile)."""
    return exc.http_status == 404


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
        server = self._server = publish_target()
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
            except NBFeedError as exc:
                if not _not_found(exc):
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
                self._server = publish_target()
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
            except NBFeedError as exc:
                if not _not_found(exc):
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
    :class:`~nbfeed.errors.BadRequest` for a bad id or return value, and the server's error
    when it refuses.
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
    server = publish_target()
    if server is None:
        return None
    return _request(server, "GET", "info")
