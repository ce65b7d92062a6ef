"""REST endpoints under ``<base_url>nbfeed/api/``: providers, symbols, history.

Thin handlers: authenticate and authorize with Jupyter's machinery, read parameters, call the
hub, write JSON. Every error is an HTTP 4xx/5xx with ``{"detail": "..."}`` naming the bad value
(:mod:`.base`); parameters a handler does not know are ignored.

History answers are written from the hub's columns (:mod:`nbfeed.columns`) in pieces of
``HISTORY_PIECE_ROWS`` bars, each encoded (off the event loop when big) and flushed to the
client before the next, so the largest answer never sits in memory as text. A client that goes
away mid-request cancels it, in the provider too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from ..columns import Columns
from ..columns_io import ARROW_STREAM, ArrowStream
from ..errors import BadRequest, UpstreamError, shown
from ..hub import Hub
from ..hub.memory import BIG_ANSWER_BARS, release_freed_memory
from ..jsonfast import dumpb, loads
from ..providers.registry import ProviderSpec, available_providers, load_class, resolve_spec
from ..tabular import columns_csv, columns_order
from .base import AUTH_RESOURCE, JSONErrorsMixin

MAX_PARAM_CHARS = 1_000
#: Bars encoded and flushed at a time when writing a history answer.
HISTORY_PIECE_ROWS = 20_000
#: Pieces smaller than this are encoded on the event loop (a thread costs more than it saves).
_THREAD_ROWS = 2_000
HISTORY_FORMATS = ("json", "csv", "arrow")


class NBFeedAPIHandler(JSONErrorsMixin, APIHandler):
    """Base of nbfeed's JSON endpoints: the hub, query parameters, errors as JSON."""

    auth_resource = AUTH_RESOURCE

    #: The type of a non-JSON answer (CSV, Arrow, Parquet), set by :meth:`answer_type`.
    _answer_type: str | None = None

    def initialize(self, hub: Hub) -> None:
        self.hub = hub

    def answer_type(self, content_type: str) -> None:
        """Answer with ``content_type`` instead of JSON. (Setting the header alone is not
        enough: Jupyter's ``APIHandler.finish`` stamps every answer ``application/json``, which
        wins whenever nothing was flushed before it - a small CSV or an empty Arrow stream.)"""
        self._answer_type = content_type
        self.set_header("Content-Type", content_type)

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        if self._answer_type is not None and self.get_status() < 400:
            kwargs.setdefault("set_content_type", self._answer_type)
        return super().finish(*args, **kwargs)

    def param(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        value = self.get_query_argument(name, None)
        if value is None or value == "":
            if required:
                raise BadRequest(f"missing required parameter {name!r}")
            return default
        if len(value) > MAX_PARAM_CHARS:
            raise BadRequest(f"parameter {name!r} is too long ({len(value)} characters)")
        return value

    def int_param(self, name: str, default: int | None = None) -> int | None:
        value = self.param(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise BadRequest(f"parameter {name!r} must be a whole number, got {shown(value, 40)}"
                             ) from None

    def source_options(self, source: str, known: tuple[str, ...] = (
            "source", "symbol", "interval", "start", "end", "count", "format", "token")
                       ) -> dict[str, str] | None:
        """Query parameters beyond ``known``, for sources that take options (``replay``:
        ``?recording=demo``); None for other sources, which ignore unknown parameters."""
        if not self.hub.is_session_source(source):
            return None
        return {k: self.param(k) for k in self.request.query_arguments if k not in known} or None

    def reply(self, data: Any) -> None:
        """``data`` as JSON (orjson: one pass; NaN and infinities become null)."""
        self.set_header("Content-Type", "application/json")
        self.finish(dumpb(data))


_installed_imported = False


async def _import_installed_providers() -> None:
    """Import every installed provider class once, in a thread: the first listing of what could
    be turned on imports them all, which takes a second on a busy machine - too long to stall
    every socket of the server for."""
    global _installed_imported
    if _installed_imported:
        return

    def load_all() -> None:
        for path in available_providers().values():
            try:
                load_class(path)
            except BadRequest:
                pass  # reported by the listing itself

    await asyncio.to_thread(load_all)
    _installed_imported = True


class ProvidersHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await _import_installed_providers()
        self.reply({"providers": self.hub.providers_info(include_available=True)})

    @web.authenticated
    async def post(self) -> None:
        """Start (or replace) a provider sent by a notebook: ``{"name", "kind": "path" |
        "pickled", "value", "options"}``. Running a class is running code, so this needs the
        same permission as executing code in a kernel."""
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"))
        if not allowed:
            raise web.HTTPError(403, "registering a provider needs permission to execute code")
        spec = _spec_from_body(self.request.body)
        await self.hub.add_provider(spec, replace=spec.name in self.hub.sources())
        info = next(p for p in self.hub.providers_info() if p["name"] == spec.name)
        if info["status"] == "failed":
            raise UpstreamError(f"provider {spec.name!r} failed to start: {info['detail']}")
        self.reply({"provider": info})


MAX_PROVIDER_BODY = 20_000_000


def _spec_from_body(body: bytes) -> ProviderSpec:
    import base64
    import binascii

    if len(body) > MAX_PROVIDER_BODY:
        raise BadRequest(f"provider body of {len(body)} bytes is over {MAX_PROVIDER_BODY}")
    try:
        data = loads(body or b"null")
    except ValueError as exc:
        raise BadRequest(f"body must be JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object with name, kind, value, options")
    name, kind, value = data.get("name"), data.get("kind"), data.get("value")
    options = data.get("options") or {}
    if kind == "builtin":  # a provider this server knows by name (built-in or entry point)
        if value is not None:
            raise BadRequest("kind 'builtin' takes no value: the name says which provider")
        return resolve_spec(name, None, **(options if isinstance(options, dict) else {}))
    if kind == "path":
        if not isinstance(value, str):
            raise BadRequest("value must be a dotted class path for kind 'path'")
        return ProviderSpec(name=name, factory=value, options=options)
    if kind == "pickled":
        try:
            pickled = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadRequest("value must be base64 for kind 'pickled'") from None
        return ProviderSpec(name=name, factory=None, options=options, pickled=pickled)
    raise BadRequest(f"kind must be 'builtin', 'path' or 'pickled', got {shown(kind, 40)}")


class SymbolsHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        results = await self.hub.search(
            self.param("q", ""), source=self.param("source"), category=self.param("category"),
            type=self.param("type"), limit=self.int_param("limit", 20))
        self.reply({"results": results})


class HistoryHandler(NBFeedAPIHandler):
    """``GET nbfeed/api/history?source=&symbol=&interval=&start=&end=&count=&format=``.

    ``format``: ``json`` (default; ``{"source", "symbol", "interval", "rows": [...]}``),
    ``csv`` (a download), or ``arrow`` (an Arrow IPC stream: what the notebook client reads).
    """

    _request_task: asyncio.Future | None = None
    _gone = False

    @web.authenticated
    @authorized
    async def get(self) -> None:
        fmt = self.param("format", "json")
        if fmt not in HISTORY_FORMATS:
            raise BadRequest(f"format must be one of {', '.join(HISTORY_FORMATS)}, got "
                             f"{shown(fmt, 40)}")
        source = self.param("source", required=True)
        symbol = self.param("symbol", required=True)
        interval = self.param("interval", required=True)
        self._request_task = asyncio.ensure_future(self.hub.history_columns(
            source, symbol, interval, self.param("start"), self.param("end"),
            self.int_param("count"), options=self.source_options(source)))
        try:
            bars = await self._request_task
        except asyncio.CancelledError:
            if self._gone:
                return  # the client went away: nobody to answer
            raise
        try:
            await self._write_bars(bars, fmt, source, symbol, interval)
        except StreamClosedError:
            return
        finally:
            big = len(bars) >= BIG_ANSWER_BARS
            del bars
            self._request_task = None  # it holds the answer too
            if big:
                await asyncio.to_thread(release_freed_memory)

    def on_connection_close(self) -> None:
        """The client went away: stop its request (and the provider's work for it)."""
        self._gone = True
        if self._request_task is not None and not self._request_task.done():
            self._request_task.cancel()
        super().on_connection_close()

    async def _write_bars(self, bars: Columns, fmt: str, source: str, symbol: str,
                          interval: str) -> None:
        if fmt == "csv":
            self.answer_type("text/csv; charset=utf-8")
            self.set_header("Content-Disposition",
                            f'attachment; filename="{_safe_filename(source, symbol, interval)}"')
            columns = columns_order(bars)
            self.write(columns_csv(bars.slice(0, 0), columns).encode())
            await self._pieces(bars, lambda part: columns_csv(part, columns,
                                                              header=False).encode())
        elif fmt == "arrow":
            self.answer_type(ARROW_STREAM)
            stream = ArrowStream(bars)
            self.write(stream.schema())
            await self._pieces(bars, stream.batch)
            self.write(stream.end())
        else:
            self.set_header("Content-Type", "application/json")
            self.write(dumpb({"source": source, "symbol": symbol, "interval": interval,
                              "rows": []})[:-2])  # '{..."rows":[' - the rows follow
            first = True

            def json_piece(part: Columns) -> bytes:
                nonlocal first
                body = part.json_rows()
                if not first:
                    body = b"," + body
                first = False
                return body

            await self._pieces(bars, json_piece)
            self.write(b"]}")
        self.finish()

    async def _pieces(self, bars: Columns, encode: Any) -> None:
        """Encode ``bars`` a piece at a time and flush each before encoding the next."""
        for part in bars.chunks(HISTORY_PIECE_ROWS):
            if len(part) >= _THREAD_ROWS:
                body = await asyncio.to_thread(encode, part)
            else:
                body = encode(part)
            self.write(body)
            if self._gone:
                raise StreamClosedError()
            await self.flush()


def _safe_filename(*parts: str) -> str:
    name = "_".join(parts)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120] + ".csv"


def rest_handlers(hub: Hub) -> list[tuple[str, type, dict]]:
    """Routes under ``<base_url>nbfeed/api/`` (ExtensionApp prefixes the base_url)."""
    kw = {"hub": hub}
    return [
        (r"/nbfeed/api/providers", ProvidersHandler, kw),
        (r"/nbfeed/api/symbols", SymbolsHandler, kw),
        (r"/nbfeed/api/history", HistoryHandler, kw),
    ]
