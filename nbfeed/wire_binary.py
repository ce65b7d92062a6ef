"""Binary ``data_update`` frames of wire protocol v1: each batch's columns as raw arrays.

A client that says ``{"type": "hello", "format": "binary"}`` on ``nbfeed/api/stream`` gets its
``data_update`` frames as binary websocket messages in this layout; every other frame (``hello``,
``data_init``, ``status``, ``error``, ``history``...) stays a JSON text frame, and a client that
never asks gets JSON only. Both the server (:mod:`nbfeed.hub.wire`) and the notebook client
(:mod:`nbfeed.client.remote`) import this module, so it imports neither Jupyter nor tornado.

Layout (all integers little-endian; every array starts at a multiple of 8 bytes from the start
of the frame, so a JavaScript client can view it as a typed array without copying)::

    frame   = "NBF1" | u32 header_len | header | block * header.blocks
    header  = JSON {"type": "data_update", "id": <subscription id>, "rows": <rows in all
              blocks>, "blocks": <count>, "schemas": {<key>: schema, ...}},
              padded with spaces to a multiple of 8 bytes; ``schemas`` holds the schemas
              this socket has not been sent before (a reader keeps them for later frames),
              omitted when there are none
    schema  = {"columns": [[name, type], ...],      time first, then the fields
               "present": [name, ...]}              fields some rows lack
    block   = u32 meta_len | meta | arrays
    meta    = JSON {"symbol": <the batch's symbol>, "rows": n, "schema": <key>,
                    "sizes": [bytes of each json column, in schema order; omitted if none]},
              padded with spaces so that 4 + meta_len is a multiple of 8
    arrays  = each column's bytes, then each present mask's, each padded with zeros to a
              multiple of 8 bytes

A block's column names live in its schema, sent once per socket however many batches share it
(a one-row batch costs its values and a short meta, not its field names). A schema's key is a
hash of its JSON (48 bits, hex), so a block is the same bytes in every frame and for every
socket. A reader keeps the schemas of one connection (:class:`FrameReader`); they mean nothing
on another one.

Column types: ``i8`` int64, ``f8`` float64, ``b1`` one byte per flag (0/1); ``json`` a UTF-8
JSON array of the ``n`` values (text, ``null`` mixed in, anything not a plain number or flag).
A ``present`` mask is ``n`` bytes, 1 where a row has the field (absent is not ``null``). Rows
are the same ones a JSON client gets (:func:`json_rows_of`): ``time``, ``symbol`` (the batch's,
unless a ``symbol`` column names others), then the fields; a float that is NaN or infinite
reads as ``None`` as in JSON, and an int in a field that also holds floats reads as a float.

Why not Arrow IPC (pyarrow is already a dependency): a small live batch is a schema message
and a record batch, several hundred bytes of flatbuffers and ~30 us of pyarrow per batch
before the data, while this block is one JSON line and the arrays themselves.

Failure behaviour: :func:`encode_block` raises ``ValueError`` for values JSON cannot hold (the
server then sends that batch as a JSON frame); :func:`decode_frame` raises :class:`FrameError`
naming what is wrong (truncated, lengths that lie, unknown types), never returns half a frame.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, NamedTuple

import numpy as np

from .columns import Columns, object_array
from .jsonfast import dumpb, loads

MAGIC = b"NBF1"
_U32 = struct.Struct("<I")
_ALIGN = 8
#: Longest header or block meta a decoder accepts (a lying length is refused before reading).
MAX_META_BYTES = 1 << 20
_RAW = {"i8": np.dtype("<i8"), "f8": np.dtype("<f8"), "b1": np.dtype(np.uint8)}
_TYPE_OF_KIND = {"i": "i8", "f": "f8", "b": "b1"}


class FrameError(ValueError):
    """Bytes that are not a binary data frame; the message says what is wrong."""


def _pad(size: int) -> int:
    return -size % _ALIGN


class Block(NamedTuple):
    """One batch, encoded: its bytes, row count and schema (key and JSON)."""

    data: bytes
    rows: int
    schema_key: str
    schema: bytes


def encode_block(cols: Columns) -> Block:
    """One batch's rows as a block (see the module docstring); raises ``ValueError`` for
    values JSON cannot hold."""
    columns: list[list] = [["time", "i8"]]
    sizes: list[int] = []
    buffers: list[bytes] = []

    def add(data: bytes) -> int:
        buffers.append(data)
        pad = _pad(len(data))
        if pad:
            buffers.append(b"\0" * pad)
        return len(data)

    add(cols.time.astype("<i8", copy=False).tobytes())
    for name, arr in cols.fields.items():
        kind = _TYPE_OF_KIND.get(arr.dtype.kind)
        if kind is None:
            columns.append([name, "json"])
            sizes.append(add(dumpb(arr.tolist())))
        else:
            columns.append([name, kind])
            add(arr.astype(_RAW[kind], copy=False).tobytes())
    for mask in cols.masks.values():
        add(mask.astype(np.uint8, copy=False).tobytes())
    schema = dumpb({"columns": columns, "present": list(cols.masks)})
    key = hashlib.blake2b(schema, digest_size=6).hexdigest()
    meta = {"symbol": cols.symbol, "rows": len(cols), "schema": key}
    if sizes:
        meta["sizes"] = sizes
    meta = dumpb(meta)
    meta += b" " * _pad(_U32.size + len(meta))
    return Block(b"".join([_U32.pack(len(meta)), meta, *buffers]), len(cols), key, schema)


def encode_frame(rid: str, blocks: list[Block], sent: set[str] | None = None) -> bytes:
    """A whole data frame of encoded blocks (their bytes copied once). ``sent``: keys of the
    schemas this socket's reader already has (updated); None sends every schema used."""
    schemas: dict[str, bytes] = {}
    for block in blocks:
        if sent is None or block.schema_key not in sent:
            schemas.setdefault(block.schema_key, block.schema)
    if sent is not None:
        sent.update(schemas)
    head = [b'{"type":"data_update","id":', dumpb(rid), b',"rows":',
            str(sum(b.rows for b in blocks)).encode(), b',"blocks":', str(len(blocks)).encode()]
    if schemas:
        head += [b',"schemas":{',
                 b",".join(b'"%s":%s' % (k.encode(), v) for k, v in schemas.items()), b"}"]
    head.append(b"}")
    head = b"".join(head)
    head += b" " * _pad(len(head))
    return b"".join([MAGIC, _U32.pack(len(head)), head, *(b.data for b in blocks)])


def is_binary_frame(data: Any) -> bool:
    """Whether ``data`` (a websocket message) is a binary data frame."""
    return isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:4]) == MAGIC


def read_header(data: bytes) -> tuple[dict, int]:
    """The frame's header and the offset of its first block (cheap: no block is read)."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise FrameError("not a binary data frame (no NBF1 magic)")
    (size,) = _U32.unpack_from(data, 4)
    if size > MAX_META_BYTES or 8 + size > len(data):
        raise FrameError(f"frame header of {size} bytes does not fit the frame")
    header = _json_object(data[8:8 + size], "frame header")
    blocks = header.get("blocks")
    if type(blocks) is not int or blocks < 0:
        raise FrameError(f"frame header: blocks must be a count, got {blocks!r:.60}")
    if not isinstance(header.get("schemas", {}), dict):
        raise FrameError("frame header: schemas must be an object")
    return header, 8 + size


class FrameReader:
    """Reads the binary data frames of one connection, keeping the schemas they define."""

    #: At most this many schemas are kept (a hostile server cannot grow the reader forever).
    max_schemas = 10_000

    def __init__(self) -> None:
        self.schemas: dict[str, tuple[list[tuple[str, str]], list[str]]] = {}

    def read(self, data: bytes) -> tuple[dict, list[Columns]]:
        """:func:`decode_frame` with the schemas of earlier frames of this connection."""
        return decode_frame(data, self.schemas, self.max_schemas)

    def skim(self, data: bytes) -> dict:
        """A frame's header only (e.g. its row count), keeping its schemas for later frames:
        what a reader does with a frame whose rows it does not need."""
        header, _ = read_header(data)
        _learn(header, self.schemas, self.max_schemas)
        return header


def decode_frame(data: bytes, schemas: dict | None = None, max_schemas: int = 10_000
                 ) -> tuple[dict, list[Columns]]:
    """The header and the batches of a binary data frame; :class:`FrameError` if malformed.

    ``schemas``: those of earlier frames on the same connection (the frame's own are added to
    it). Numeric arrays are read-only views of ``data``."""
    data = bytes(data)
    header, offset = read_header(data)
    schemas = _learn(header, {} if schemas is None else schemas, max_schemas)
    batches = []
    for i in range(header["blocks"]):
        try:
            cols, offset = _decode_block(data, offset, schemas)
        except FrameError as exc:
            raise FrameError(f"block {i}: {exc}") from None
        batches.append(cols)
    if offset != len(data):
        raise FrameError(f"{len(data) - offset} bytes after the last block")
    return header, batches


def _learn(header: dict, schemas: dict, max_schemas: int) -> dict:
    """``schemas`` with those the header defines added (checked first: all or none)."""
    new = {key: _schema(key, value) for key, value in header.get("schemas", {}).items()}
    if len(schemas) + len(new) > max_schemas:
        raise FrameError(f"more than {max_schemas} schemas on one connection")
    schemas.update(new)
    return schemas


def _schema(key: str, value: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """A schema of the header, checked: ([(name, type), ...] starting with time, present)."""
    if not isinstance(value, dict):
        raise FrameError(f"schema {key!r:.30} must be an object")
    columns, present = value.get("columns"), value.get("present", [])
    if not isinstance(columns, list) or not isinstance(present, list):
        raise FrameError(f"schema {key!r:.30}: columns and present must be lists")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in columns:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise FrameError(f"schema {key!r:.30}: a column must be [name, type], got "
                             f"{entry!r:.80}")
        name, kind = entry
        if kind != "json" and kind not in _RAW:
            raise FrameError(f"column {name!r:.60} has unknown type {kind!r:.30}")
        if name in seen:
            raise FrameError(f"column {name!r:.60} appears twice")
        seen.add(name)
        out.append((name, kind))
    if not out or out[0] != ("time", "i8"):
        raise FrameError(f"schema {key!r:.30}: the first column must be time (i8)")
    seen.discard("time")
    for name in present:
        if not isinstance(name, str) or name not in seen:
            raise FrameError(f"schema {key!r:.30}: present names {name!r:.60}, which is no "
                             "field")
    return out, present


def _decode_block(data: bytes, offset: int, schemas: dict) -> tuple[Columns, int]:
    if offset + 4 > len(data):
        raise FrameError("truncated before its meta")
    (size,) = _U32.unpack_from(data, offset)
    start = offset + 4
    if size > MAX_META_BYTES or start + size > len(data):
        raise FrameError(f"meta of {size} bytes does not fit the frame")
    meta = _json_object(data[start:start + size], "meta")
    offset = start + size
    n = meta.get("rows")
    if type(n) is not int or n < 0:
        raise FrameError(f"rows must be a count, got {n!r:.60}")
    symbol = meta.get("symbol")
    if symbol is not None and not isinstance(symbol, str):
        raise FrameError("symbol must be a string")
    key = meta.get("schema")
    if not isinstance(key, str) or key not in schemas:
        raise FrameError(f"schema {key!r:.30} is not in the frame header")
    columns, present = schemas[key]
    sizes = meta.get("sizes", [])
    if not isinstance(sizes, list):
        raise FrameError("sizes must be a list")
    sizes = iter(sizes)
    view = memoryview(data)

    def take(nbytes: Any, what: str) -> memoryview:
        nonlocal offset
        if type(nbytes) is not int or nbytes < 0 or offset + nbytes > len(data):
            raise FrameError(f"{what}: {nbytes!r:.30} bytes do not fit the frame")
        chunk = view[offset:offset + nbytes]
        offset += nbytes + _pad(nbytes)
        return chunk

    arrays: dict[str, np.ndarray] = {}
    for name, kind in columns:
        if kind == "json":
            chunk = take(next(sizes, None), f"column {name!r:.60}")
            try:
                values = loads(chunk)
            except ValueError as exc:
                raise FrameError(f"column {name!r:.60} is not JSON: {exc}") from None
            if not isinstance(values, list) or len(values) != n:
                raise FrameError(f"column {name!r:.60} must be a JSON array of {n} values")
            arrays[name] = object_array(values)
        else:
            dtype = _RAW[kind]
            arr = np.frombuffer(take(n * dtype.itemsize, f"column {name!r:.60}"), dtype=dtype)
            if kind == "b1":
                arr = arr.view(bool)
            elif not dtype.isnative:  # big-endian machines
                arr = arr.astype(dtype.newbyteorder("="))
            arrays[name] = arr
    masks = {name: np.frombuffer(take(n, f"present mask of {name!r:.60}"),
                                 dtype=np.uint8).view(bool) for name in present}
    time = arrays.pop("time")
    return Columns(time, arrays, symbol=symbol, masks=masks), offset


def _json_object(raw: bytes, what: str) -> dict:
    try:
        value = loads(raw)
    except ValueError as exc:
        raise FrameError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError(f"{what} must be a JSON object")
    return value


def json_rows_of(cols: Columns) -> list[dict]:
    """The rows of ``cols`` exactly as a JSON client reads them: NaN and infinities as None.

    Shares the Columns' cached rows when no float is NaN or infinite (read-only)."""
    fixed = None
    for name, arr in cols.fields.items():
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            if bad.any():
                if fixed is None:
                    fixed = dict(cols.fields)
                values = object_array(arr.tolist())
                values[bad] = None
                fixed[name] = values
    if fixed is None:
        return cols.rows()
    return Columns(cols.time, fixed, symbol=cols.symbol, masks=cols.masks).rows()
