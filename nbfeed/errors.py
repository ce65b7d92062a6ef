"""The errors nbfeed raises, each with the machine-readable code the wire protocol uses.

Every error names the bad value and, where there is a fixed set, what would be accepted. The
same classes travel from provider processes to the hub, from the hub to the server extension
(which maps ``code`` to an HTTP status or an ``{"type": "error"}`` frame) and to notebook users.
"""

from __future__ import annotations

import reprlib
from typing import Any

#: How :func:`shown` abbreviates: a few levels, a few items, short strings.
_SHOWN = reprlib.Repr()
for _attr in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset",
              "maxdeque"):
    setattr(_SHOWN, _attr, 4)
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxlong, _SHOWN.maxother = 3, 60, 40, 60


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` abbreviated to at most ``limit`` characters: how an error message echoes
    a bad value. Safe and cheap for anything a client can send - a 100,000-character string, a
    list nested 5,000 levels deep, text with lone surrogates (escaped, as repr does) - where a
    plain ``f"{value!r:.80}"`` would build the whole repr first, or hit the recursion limit."""
    try:
        text = _SHOWN.repr(value)
    except Exception:  # a hostile __repr__: say what it is, not what it claims
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


class NBFeedError(Exception):
    """Base class: ``code`` is the wire protocol's error code, ``str(err)`` the message."""

    code = "bad_request"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self, request_id: str | None = None) -> dict:
        """The ``{"type": "error"}`` frame of wire protocol v1 for this error."""
        return {"type": "error", "id": request_id, "code": self.code, "message": self.message}

    @staticmethod
    def from_wire(code: str | None, message: str) -> NBFeedError:
        """The error a wire ``error`` frame or an HTTP error body describes: the inverse of
        :meth:`to_wire`. A code nbfeed has no class for (e.g. a Workspace endpoint's
        ``no_data``) gives an :class:`NBFeedError` that keeps the code."""
        cls = _BY_CODE.get(code or "")
        if cls is not None:
            return cls(message)
        err = NBFeedError(message)
        if code:
            err.code = code
        return err

    def __reduce__(self):  # keep the class when pickled across the process boundary
        return (type(self), (self.message,))


class BadRequest(NBFeedError, ValueError):
    """Malformed or out-of-range input: a bad date, count, type or field."""

    code = "bad_request"


class UnknownSource(NBFeedError, KeyError):
    """No provider of that name is loaded."""

    code = "unknown_source"
    http_status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class UnknownSymbol(NBFeedError, KeyError):
    """The provider does not list that symbol."""

    code = "unknown_symbol"
    http_status = 404

    def __str__(self) -> str:
        return self.message


class UnknownRecording(NBFeedError, KeyError):
    """No recording of that name (``feed.recordings()`` lists them)."""

    code = "unknown_recording"
    http_status = 404

    def __str__(self) -> str:
        return self.message


class BadInterval(NBFeedError, ValueError):
    """An interval that nbfeed or the provider does not support."""

    code = "bad_interval"


class LimitExceeded(NBFeedError):
    """A configured limit (subscriptions per client, frame size, rows per request) was hit."""

    code = "limit"
    http_status = 429


class UpstreamError(NBFeedError):
    """The provider failed: it raised, died, or did not answer in time."""

    code = "upstream"
    http_status = 502


class UpstreamTimeout(UpstreamError):
    """The provider did not answer a request within its timeout."""

    http_status = 504


_BY_CODE: dict[str, type[NBFeedError]] = {
    cls.code: cls for cls in (UnknownSource, UnknownSymbol, UnknownRecording, BadInterval,
                              BadRequest, LimitExceeded, UpstreamError)}
