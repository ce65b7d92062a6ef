"""REST endpoints under ``<base_url>nbfeed/api/``: providers, symbols, history.

Thin handlers: authenticate and authorize with Jupyter's machinery, read parameters, call the
hub, write JSON. Every error is an HTTP 4xx/5xx with ``{"detail": "..."}`` naming the bad value
(:mod:`.base`); parameters a handler does not know are ignored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import BadRequest, UpstreamError, shown
from ..hub import Hub
from ..jsonfast import dumpb, loads
from ..providers.registry import ProviderSpec, available_providers, load_class, resolve_spec
from ..tabular import rows_to_csv
from .base import AUTH_RESOURCE, JSONErrorsMixin

MAX_PARAM_CHARS = 1_000


class NBFeedAPIHandler(JSONErrorsMixin, APIHandler):
    """Base of nbfeed's JSON endpoints: the hub, query parameters, errors as JSON."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, hub: Hub) -> None:
        self.hub = hub

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
    @web.authenticated
    @authorized
    async def get(self) -> None:
        fmt = self.param("format", "json")
        if fmt not in ("json", "csv"):
            raise BadRequest(f"format must be 'json' or 'csv', got {shown(fmt, 40)}")
        source = self.param("source", required=True)
        symbol = self.param("symbol", required=True)
        interval = self.param("interval", required=True)
        rows = await self.hub.history(source, symbol, interval, self.param("start"),
                                      self.param("end"), self.int_param("count"),
                                      options=self.source_options(source))
        if fmt == "csv":
            self.set_header("Content-Disposition",
                            f'attachment; filename="{_safe_filename(source, symbol, interval)}"')
            self.finish(rows_to_csv(rows), set_content_type="text/csv; charset=utf-8")
            return
        self.reply({"source": source, "symbol": symbol, "interval": interval, "rows": rows})


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
