"""What travels through Redis, and how it is encoded: JSON only, never pickle.

Everything a user server reads from Redis was written by a feed server and vice versa; JSON
means a compromised or buggy peer can at worst send wrong values, never run code (pickle would
let anyone able to write a key run code in every reader). Rows are the engine's flat dicts
(docs/internals.md, "Rows"); NaN/inf become ``null``.

* live entry (``XADD {ns}:data:...``): field ``r`` = JSON array of rows of one provider batch, or
  field ``e`` = JSON error ``{"code", "message"}`` ending the stream;
* event entry (``XADD {ns}:events``): field ``e`` = ``{"type": "state", "source", "state",
  "detail", "status", "status_detail", "owner", "seq"}`` or ``{"type": "catalog", "source",
  "version"}``;
* source info (``{ns}:source:{source}``): :func:`encode_info`;
* request: ``{"id", "server", "kind", "args", "deadline"}``; reply: ``{"id", "ok", "value"}``
  or ``{"id", "ok": false, "error": {"code", "message"}}``;
* catalog: zlib-compressed JSON entries; its version is a hash of the JSON, so an unchanged
  listing keeps its version and user servers do not re-index it.

Decoders raise :class:`~nbfeed.errors.UpstreamError` naming what was malformed.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from .. import errors
from ..errors import BadRequest, NBFeedError, UpstreamError
from ..jsonfast import dumpb
from ..providers.listing import Listing

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

#: Largest request a feed server reads (a history request is a few hundred bytes).
MAX_REQUEST_BYTES = 16_384
_ERRORS = {cls.code: cls for cls in (errors.BadRequest, errors.UnknownSource,
                                     errors.UnknownSymbol, errors.BadInterval,
                                     errors.LimitExceeded, errors.UpstreamError)}


def loads(data: bytes | str, what: str) -> Any:
    try:
        return _loads(data)
    except (ValueError, TypeError):
        raise UpstreamError(f"malformed {what} on the bus (not JSON)") from None


def encode_rows(rows: list[dict]) -> bytes:
    return dumpb(rows)


def decode_rows(data: bytes) -> list[dict]:
    """The rows of a live entry. Only its shape is checked (a list starting and ending with
    rows), not every row: entries come from the feed role, and this is the per-row hot path."""
    rows = loads(data, "live entry")
    if not isinstance(rows, list) or (rows and not (isinstance(rows[0], dict)
                                                    and isinstance(rows[-1], dict))):
        raise UpstreamError("malformed live entry on the bus (not a list of rows)")
    return rows


def error_to_dict(exc: BaseException) -> dict:
    if isinstance(exc, NBFeedError):
        return {"code": exc.code, "message": exc.message}
    return {"code": "upstream", "message": f"{type(exc).__name__}: {exc}"[:2000]}


def error_from_dict(data: Any) -> NBFeedError:
    """The nbfeed error a peer reported (unknown codes become UpstreamError)."""
    if not isinstance(data, dict):
        return UpstreamError("the feed server reported an error without details")
    cls = _ERRORS.get(data.get("code"), UpstreamError)
    return cls(str(data.get("message") or "error reported by the feed server")[:4000])


def encode_info(info: dict) -> bytes:
    return dumpb(info)


def decode_info(data: bytes | None) -> dict | None:
    if data is None:
        return None
    try:
        info = loads(data, "source info")
    except UpstreamError:
        return None
    return info if isinstance(info, dict) else None


def encode_request(req_id: str, server: str, kind: str, args: list, deadline_ms: int) -> bytes:
    return dumpb({"id": req_id, "server": server, "kind": kind, "args": args,
                  "deadline": deadline_ms})


def decode_request(data: bytes) -> dict:
    """A request from a user server, checked field by field (BadRequest names the field)."""
    if len(data) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request of {len(data)} bytes is over {MAX_REQUEST_BYTES}")
    try:
        req = _loads(data)
    except (ValueError, TypeError):
        raise BadRequest("request is not JSON") from None
    if not isinstance(req, dict):
        raise BadRequest("request must be a JSON object")
    for field, kind in (("id", str), ("server", str), ("kind", str), ("args", list),
                        ("deadline", int)):
        if not isinstance(req.get(field), kind) or isinstance(req.get(field), bool):
            raise BadRequest(f"request field {field!r} must be a {kind.__name__}")
    if not 0 < len(req["id"]) <= 64:
        raise BadRequest("request field 'id' must be 1-64 characters")
    return req


def encode_reply(req_id: str, value: Any = None, error: BaseException | None = None) -> bytes:
    if error is not None:
        return dumpb({"id": req_id, "ok": False, "error": error_to_dict(error)})
    return dumpb({"id": req_id, "ok": True, "value": value})


def decode_reply(data: bytes) -> dict:
    reply = loads(data, "reply")
    if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
        raise UpstreamError("malformed reply on the bus")
    return reply


def encode_catalog(entries: list[dict] | Listing) -> tuple[bytes, str]:
    """``(compressed blob, version)`` of a catalog listing: a JSON array of entries.

    A ``Listing`` (what a provider's process sends) already holds each entry as JSON text:
    the array is joined from those, not encoded again.
    """
    joined = isinstance(entries, Listing)
    raw = b"[" + b",".join(entries.docs) + b"]" if joined else dumpb(entries)
    return zlib.compress(raw, 6), hashlib.sha256(raw).hexdigest()[:20]


def decode_catalog(blob: bytes) -> tuple[list[dict], str]:
    """``(entries, version)`` of a published catalog (the version as :func:`encode_catalog`)."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error:
        raise UpstreamError("malformed catalog on the bus (not zlib data)") from None
    entries = loads(raw, "catalog")
    if not isinstance(entries, list):
        raise UpstreamError("malformed catalog on the bus (not a list)")
    return entries, hashlib.sha256(raw).hexdigest()[:20]
