"""What every nbfeed HTTP handler shares: an error becomes a JSON reply in one place, and no
secret reaches a log line.

Secrets travel in nbfeed's URLs: the Jupyter token or the Workspace key as ``?token=`` /
``?api_key=``, and the live grid's socket capability as a path segment
(``workspace/ws/<capability>/...``). Tornado, Jupyter and nbfeed all log a request by its
``uri`` or ``path`` (access lines, refused requests, uncaught exceptions, "Opening websocket"),
so :class:`RedactedRequestMixin` replaces both by :func:`redacted_uri` forms as soon as a
handler is made - after routing and after the query was parsed, so nothing reads them any more
for their meaning - and every line logged for nbfeed's routes is secret-free.

A handler raises; it never formats an error itself. The reply body is ``{"detail": ...}``:

- :class:`~nbfeed.errors.NBFeedError` (bad input, unknown source or symbol, a provider failing)
  -> its ``http_status`` (4xx, 502, 504) with ``{"detail": message, "code": code}``; logged as
  one line at info level, never with a traceback;
- tornado's ``HTTPError`` (authentication, permissions, sizes) -> its status, the detail being
  its ``detail`` attribute or its message;
- anything else -> 500 with the status reason, logged with its traceback (a bug).
"""

from __future__ import annotations

import logging
import re
from types import TracebackType
from typing import Any

from tornado import web

from ..errors import NBFeedError
from ..jsonfast import dumpb

#: The resource name of nbfeed's endpoints for Jupyter's authorizer.
AUTH_RESOURCE = "nbfeed"

log = logging.getLogger("nbfeed.server")

#: Query parameters whose value is a secret when their name contains one of these.
SECRET_PARAM_WORDS = ("token", "key", "auth", "secret", "password", "capability")
_CAPABILITY_SEGMENT = re.compile(r"(/nbfeed/workspace/ws/)[^/?]+")
REDACTED = "[secret]"  # the word Jupyter uses for what it scrubs


def redacted_uri(uri: str) -> str:
    """``uri`` with secret query values and the socket capability replaced by ``[secret]``."""
    path, sep, query = uri.partition("?")
    path = _CAPABILITY_SEGMENT.sub(r"\1" + REDACTED, path)
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        if eq and any(word in name.lower() for word in SECRET_PARAM_WORDS):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"


class RedactedRequestMixin:
    """Makes the handler's request show only :func:`redacted_uri` forms (see module
    docstring). Put it first among a handler's bases."""

    def __init__(self, application: Any, request: Any, **kwargs: Any) -> None:
        super().__init__(application, request, **kwargs)  # type: ignore[call-arg]
        request.uri = redacted_uri(request.uri or "")
        request.path = redacted_uri(request.path or "")


def error_body(exc: BaseException | None, reason: str) -> dict[str, Any]:
    """The JSON body that answers ``exc`` (see module docstring)."""
    if isinstance(exc, NBFeedError):
        return {"detail": exc.message, "code": exc.code}
    detail = getattr(exc, "detail", None)
    if detail is None and isinstance(exc, web.HTTPError) and exc.log_message:
        detail = exc.log_message % exc.args if exc.args else exc.log_message
    return {"detail": detail or reason}


class JSONErrorsMixin(RedactedRequestMixin):
    """``write_error`` and ``log_exception`` of a tornado handler, as the module says."""

    _reason: str

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NBFeedError):
            self.set_status(exc.http_status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(dumpb(error_body(exc, self._reason)))  # type: ignore[attr-defined]

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        if isinstance(value, NBFeedError):
            log.info("%s %s: %s", value.http_status,
                     self._request_summary(), value)  # type: ignore[attr-defined]
            return
        super().log_exception(typ, value, tb)  # type: ignore[misc]
