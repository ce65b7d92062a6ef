"""Authentication, CORS and origin checks of the Workspace HTTP endpoints.

Workspace calls the backend from the browser, cross-origin, with whatever auth entries the user
configured on the connection. Accepted, on every request:

- Jupyter's own authentication: ``Authorization: token <jupyter token>``, ``?token=...``, the login
  cookie, or whatever the server's identity provider accepts (JupyterHub tokens included);
- the Jupyter token or ``c.NBFeed.workspace_api_key`` as ``X-API-KEY: ...``;
- ``workspace_api_key`` as ``Authorization: token|Bearer ...``, ``?token=`` or ``?api_key=``.

No credentials -> 401, wrong ones -> 403, both with ``{"detail": ...}``; :meth:`WorkspaceHandler.
prepare` checks them before any handler method runs, so an endpoint only answers.

CORS is scoped to these routes: ``Access-Control-Allow-Origin`` is echoed only for origins in
``c.NBFeed.workspace_origins`` (or the server's own origin, or Jupyter's own ``allow_origin``
settings); Jupyter's server-wide CORS is not widened. Preflight ``OPTIONS`` requests carry no
credentials and always get 204 (with the CORS headers when the origin is allowed, including
``Access-Control-Allow-Private-Network: true`` when the browser asks for it). A request whose
``Origin`` is not allowed is refused with 403 even with valid credentials, so a foreign page can
neither read nor trigger anything. Headers are set in ``set_default_headers``, so error responses
carry them too and Workspace can show their ``detail``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from tornado import web

from ...jsonfast import dumpb, loads
from ..base import JSONErrorsMixin
from .backend import WorkspaceBackend

ALLOW_HEADERS = "Authorization, X-API-KEY, Content-Type"
ALLOW_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
PREFLIGHT_MAX_AGE = "600"


class WorkspaceError(web.HTTPError):
    """An HTTP error whose ``detail`` is shown by Workspace in the widget."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status)
        self.detail = detail


class WorkspaceHandler(JSONErrorsMixin, APIHandler):
    """Base of every Workspace HTTP endpoint: CORS, origin check, key auth, JSON errors.

    Methods are marked ``@allow_unauthenticated`` because Jupyter's own check would refuse a
    Workspace key; :meth:`prepare` authenticates instead (:meth:`require_auth`).
    """

    backend: WorkspaceBackend
    prefix: str = ""
    _key_ok: bool | None = None

    def initialize(self, backend: WorkspaceBackend, prefix: str = "") -> None:
        self.backend = backend
        self.prefix = prefix

    # ---- CORS -----------------------------------------------------------------------------

    def _origin_allowed(self) -> bool:
        return self.backend.origin_allowed(self.request.headers.get("Origin"),
                                           self.request.headers.get("Host"), self.settings)

    def _apply_cors(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin and self._origin_allowed():
            self.set_header("Access-Control-Allow-Origin", origin)
        self.set_header("Vary", "Origin")

    def set_default_headers(self) -> None:
        super().set_default_headers()
        # Also runs when an error response clears the headers, so errors stay readable.
        # tornado calls it once before initialize(), when there is no backend yet.
        if getattr(self, "backend", None) is not None:
            self._apply_cors()

    def set_cors_headers(self) -> None:
        # Jupyter's version echoes any origin for token-authenticated requests; ours is scoped.
        pass

    def check_origin(self, origin_to_satisfy_tornado: str = "") -> bool:
        return self._origin_allowed()

    async def prepare(self) -> None:  # type: ignore[override]
        self._apply_cors()
        # JupyterHandler.prepare (identity, host check) but not APIHandler's 404 on origin.
        await JupyterHandler.prepare(self)
        if self.request.method == "OPTIONS":
            return
        if not self._origin_allowed():
            raise WorkspaceError(403, f"origin {self.request.headers.get('Origin')!r:.100} is "
                                 "not allowed; add it to c.NBFeed.workspace_origins")
        self.require_auth()

    @allow_unauthenticated
    def options(self, *args: Any, **kwargs: Any) -> None:
        """Preflight: no credentials needed; CORS headers only for allowed origins."""
        if self.request.headers.get("Origin") and self._origin_allowed():
            self.set_header("Access-Control-Allow-Methods", ALLOW_METHODS)
            self.set_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            self.set_header("Access-Control-Max-Age", PREFLIGHT_MAX_AGE)
            if self.request.headers.get("Access-Control-Request-Private-Network",
                                        "").lower() == "true":
                self.set_header("Access-Control-Allow-Private-Network", "true")
        self.set_status(204)
        self.finish()

    # ---- auth -----------------------------------------------------------------------------

    def _presented_keys(self) -> list[str]:
        headers = self.request.headers
        keys = [headers.get("X-API-KEY", "")]
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer"):
            keys.append(value.strip())
        for name in ("token", "api_key"):
            keys.append(self.get_query_argument(name, "") or "")
        return [k for k in keys if k]

    def _key_authenticated(self) -> bool:
        if self._key_ok is None:
            self._key_ok = any(self.backend.key_matches(k) for k in self._presented_keys())
        return self._key_ok

    def check_xsrf_cookie(self) -> None:
        # XSRF protects cookie-authenticated requests. One with a valid key, or without any
        # cookie (then require_auth answers 401/403 with a useful detail), is not one.
        if self._key_authenticated() or "Cookie" not in self.request.headers:
            return None
        return super().check_xsrf_cookie()

    def require_auth(self) -> None:
        """Raise 401 (nothing presented) or 403 (wrong credentials) unless authenticated."""
        if self.current_user or self._key_authenticated():
            return
        if self._presented_keys() or self.request.headers.get("Authorization", "").strip():
            raise WorkspaceError(403, "invalid credentials: send the Jupyter server token (or "
                                 "c.NBFeed.workspace_api_key) as X-API-KEY, "
                                 "'Authorization: token <token>' or ?token=")
        raise WorkspaceError(401, "authentication required: add the Jupyter server token to the "
                             "Workspace connection as header X-API-KEY (or 'Authorization: "
                             "token <token>', or query parameter token)")

    # ---- replies --------------------------------------------------------------------------

    def reply(self, data: Any, status: int = 200) -> None:
        """``data`` as JSON (orjson; NaN becomes null instead of a 500)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumpb(data))

    def json_body(self, max_bytes: int) -> Any:
        """The request body as JSON; 413 above ``max_bytes``, 400 when it is not JSON."""
        body = self.request.body or b""
        if len(body) > max_bytes:
            raise WorkspaceError(413, f"request body of {len(body)} bytes is over the "
                                 f"{max_bytes}-byte limit")
        try:
            return loads(body or b"null")
        except ValueError as exc:
            raise WorkspaceError(400, f"request body is not valid JSON: {exc}") from None
