"""REST endpoints under ``<base_url>nbfeed/api/``: providers, symbols, history.

Thin handlers: authenticate and authorize with Jupyter's machinery, read parameters, call the
hub, write JSON. Every error is an HTTP 4xx/5xx with ``{"detail": "..."}`` naming the bad value;
parameters a handler does not know are ignored.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import BadRequest, NBFeedError
from ..hub import Hub
from ..jsonfast import dumpb
from ..providers.registry import ProviderSpec, resolve_spec
from ..timeutil import ms_to_iso

AUTH_RESOURCE = "nbfeed"
MAX_PARAM_CHARS = 1_000


class NBFeedHandlerMixin:
    """Gives handlers the hub and nbfeed's error format."""

    settings: dict

    @property
    def hub(self) -> Hub:
        return self.settings["nbfeed_hub"]

    @property
    def nbfeed_app(self) -> Any:
        return self.settings["nbfeed_app"]


class NBFeedAPIHandler(NBFeedHandlerMixin, APIHandler):
    """Base for nbfeed's JSON endpoints."""

    auth_resource = AUTH_RESOURCE

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
            raise BadRequest(f"parameter {name!r} must be a whole number, got {value!r:.40}"
                             ) from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            detail = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            detail = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"detail": detail}))

    def send_error_detail(self, exc: NBFeedError) -> None:
        self.set_status(exc.http_status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"detail": exc.message, "code": exc.code}))


class ProvidersHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"providers": self.hub.providers_info(include_available=True)}))

    @web.authenticated
    async def post(self) -> None:
        """Start (or replace) a provider sent by a notebook: ``{"name", "kind": "path" |
        "pickled", "value", "options"}``. Running a class is running code, so this needs the
        same permission as executing code in a kernel."""
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"))
        if not allowed:
            raise web.HTTPError(403, "registering a provider needs permission to execute code")
        try:
            spec = _spec_from_body(self.request.body)
            await self.hub.add_provider(spec, replace=spec.name in self.hub.sources())
        except NBFeedError as exc:
            return self.send_error_detail(exc)
        info = next(p for p in self.hub.providers_info() if p["name"] == spec.name)
        if info["status"] == "failed":
            self.set_status(502)
            return self.finish(json.dumps({"detail": f"provider {spec.name!r} failed to "
                                           f"start: {info['detail']}", "code": "upstream"}))
        self.finish(json.dumps({"provider": info}))


MAX_PROVIDER_BODY = 20_000_000


def _spec_from_body(body: bytes) -> ProviderSpec:
    import base64
    import binascii

    if len(body) > MAX_PROVIDER_BODY:
        raise BadRequest(f"provider body of {len(body)} bytes is over {MAX_PROVIDER_BODY}")
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise BadRequest("body must be JSON") from None
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
    raise BadRequest(f"kind must be 'builtin', 'path' or 'pickled', got {kind!r:.40}")


class SymbolsHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            results = await self.hub.search(
                self.param("q", ""), source=self.param("source"),
                category=self.param("category"), type=self.param("type"),
                limit=self.int_param("limit", 20))
        except NBFeedError as exc:
            return self.send_error_detail(exc)
        self.finish(json.dumps({"results": results}))


class HistoryHandler(NBFeedAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            fmt = self.param("format", "json")
            if fmt not in ("json", "csv"):
                raise BadRequest(f"format must be 'json' or 'csv', got {fmt!r:.40}")
            source = self.param("source", required=True)
            symbol = self.param("symbol", required=True)
            interval = self.param("interval", required=True)
            rows = await self.hub.history(source, symbol, interval, self.param("start"),
                                          self.param("end"), self.int_param("count"))
        except NBFeedError as exc:
            return self.send_error_detail(exc)
        if fmt == "csv":
            self.set_header("Content-Disposition",
                            f'attachment; filename="{_safe_filename(source, symbol, interval)}"')
            self.finish(rows_to_csv(rows), set_content_type="text/csv; charset=utf-8")
            return
        # One orjson pass (NaN/inf become null), not a stdlib check pass plus a second dump.
        self.finish(dumpb({"source": source, "symbol": symbol, "interval": interval,
                           "rows": rows}))


def _safe_filename(*parts: str) -> str:
    name = "_".join(parts)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120] + ".csv"


def rows_to_csv(rows: list[dict]) -> str:
    """Rows as CSV with an ISO UTC ``time`` column first and the fields in first-seen order."""
    fields: dict[str, None] = {"time": None}
    for row in rows:
        for key in row:
            fields.setdefault(key, None)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = dict(row)
        if isinstance(out.get("time"), int):
            out["time"] = ms_to_iso(out["time"])
        writer.writerow(out)
    return buf.getvalue()


def rest_handlers() -> list[tuple[str, type]]:
    return [
        (r"/nbfeed/api/providers", ProvidersHandler),
        (r"/nbfeed/api/symbols", SymbolsHandler),
        (r"/nbfeed/api/history", HistoryHandler),
    ]
