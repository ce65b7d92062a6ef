"""Columns as bytes: the history cache's block form, and Arrow IPC streams.

Two encodings of :class:`~nbfeed.columns.Columns`, each exact (every row comes back with the same
keys and values):

- :func:`pack` / :func:`unpack` - the history cache's blocks: a small JSON header naming each
  field, its type and whether it has a mask, then the raw little-endian arrays; object fields
  travel inside the header as JSON values. Reading a block is a few ``frombuffer`` calls.
- :class:`ArrowStream` / :func:`read_arrow` - an Arrow IPC *stream* (the format pandas, polars,
  DuckDB and Arrow JS read): what the REST history endpoint sends with ``format=arrow`` and what
  the notebook client asks for. Schema: ``time`` int64 (epoch ms), then the fields as float64,
  int64 or bool; a field some rows lack is null there; fields holding anything else are JSON
  text (their names in the schema metadata ``nbfeed.json``); the batch's symbol is the metadata
  ``nbfeed.symbol`` (a ``symbol`` column only when rows name others). A stream is written batch
  by batch, so an answer of any size goes out in pieces of bounded size.

pyarrow is imported on first use (it is a core dependency, but heavy to import).

Failure behaviour: :func:`unpack` and :func:`read_arrow` raise ``ValueError`` for bytes that are
not what they expect (truncated, another schema), never return half a result.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from .columns import Columns, object_array

ARROW_STREAM = "application/vnd.apache.arrow.stream"
"""The media type of an Arrow IPC stream."""

_HEADER = struct.Struct("<I")
_KINDS = {"f": np.dtype("<f8"), "i": np.dtype("<i8"), "b": np.dtype(bool)}
_NATIVE = {"f": np.dtype(np.float64), "i": np.dtype(np.int64), "b": np.dtype(bool)}


# ---- the history cache's blocks ------------------------------------------------------------


def pack(cols: Columns) -> bytes:
    """The fields of ``cols`` (not time or its symbol) as bytes; see the module docstring.

    Raises ``TypeError`` for object values JSON cannot hold (the cache stores numbers, flags,
    None and text only)."""
    header: list[list] = []
    buffers: list[bytes] = []
    for name, arr in cols.fields.items():
        mask = cols.masks.get(name)
        if mask is not None and bool(mask.all()):
            mask = None
        kind = arr.dtype.kind
        if kind == "O":
            header.append([name, "O", mask is not None, arr.tolist()])
        else:
            header.append([name, kind, mask is not None])
            buffers.append(arr.astype(_KINDS[kind], copy=False).tobytes())
        if mask is not None:
            buffers.append(mask.astype(bool, copy=False).tobytes())
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_HEADER.pack(len(head)), head, *buffers])


def unpack(data: bytes, time: np.ndarray, symbol: str | None) -> Columns:
    """The Columns :func:`pack` wrote, for these ``time`` values (numeric arrays are read-only
    views of ``data``)."""
    n = len(time)
    try:
        (size,) = _HEADER.unpack_from(data)
        offset = _HEADER.size + size
        header = json.loads(data[_HEADER.size:offset])
    except (struct.error, ValueError) as exc:
        raise ValueError(f"not a packed block: {exc}") from None
    view = memoryview(data)
    fields: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for entry in header:
        name, kind, masked = entry[0], entry[1], entry[2]
        if kind == "O":
            fields[name] = object_array(entry[3])
        else:
            dtype = _KINDS[kind]
            end = offset + n * dtype.itemsize
            if end > len(data):
                raise ValueError(f"packed block is truncated in field {name!r}")
            arr = np.frombuffer(view[offset:end], dtype=dtype)
            fields[name] = arr if dtype.isnative else arr.astype(_NATIVE[kind])
            offset = end
        if masked:
            if offset + n > len(data):
                raise ValueError(f"packed block is truncated in the mask of {name!r}")
            masks[name] = np.frombuffer(view[offset:offset + n], dtype=bool)
            offset += n
    return Columns(time, fields, symbol=symbol, masks=masks)


# ---- Arrow IPC streams ---------------------------------------------------------------------


class _Sink:
    """A file-like object collecting what the Arrow writer writes, taken piece by piece."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class ArrowStream:
    """Writes one Columns as an Arrow IPC stream in pieces: ``schema()``, then ``batch(part)``
    for consecutive slices of it, then ``end()``; each returns the bytes to send."""

    def __init__(self, cols: Columns) -> None:
        import pyarrow as pa

        self._pa = pa
        # Object fields of text only are Arrow strings; anything else mixed is JSON text.
        self._json = [k for k, v in cols.fields.items()
                      if v.dtype.kind not in "fib" and not _all_text(v, cols.masks.get(k))]
        types = [pa.field("time", pa.int64(), nullable=False)]
        for name, arr in cols.fields.items():
            kind = arr.dtype.kind
            types.append(pa.field(name, {"f": pa.float64(), "i": pa.int64(),
                                         "b": pa.bool_()}.get(kind, pa.string())))
        meta = {"nbfeed.json": json.dumps(self._json)}
        if cols.symbol is not None:
            meta["nbfeed.symbol"] = cols.symbol
        self.schema_ = pa.schema(types, metadata=meta)
        self._sink = _Sink()
        self._writer = pa.ipc.new_stream(self._sink, self.schema_)

    def schema(self) -> bytes:
        """The stream's first bytes (its schema)."""
        return self._sink.take()

    def batch(self, part: Columns) -> bytes:
        """One record batch of ``part`` (a slice of the Columns the stream was made for)."""
        pa = self._pa
        arrays = [pa.array(part.time, type=pa.int64())]
        for name, field in zip(part.fields, self.schema_.types[1:]):
            arr = part.fields[name]
            mask = part.masks.get(name)
            if arr.dtype.kind == "O":
                encode = json.dumps if name in self._json else _same
                values = [encode(v) if m else None
                          for v, m in zip(arr.tolist(), _flags(mask, len(arr)))]
                arrays.append(pa.array(values, type=pa.string()))
            else:
                arrays.append(pa.array(arr, type=field,
                                       mask=None if mask is None else ~mask))
        self._writer.write_batch(pa.record_batch(arrays, schema=self.schema_))
        return self._sink.take()

    def end(self) -> bytes:
        """The end-of-stream marker."""
        self._writer.close()
        return self._sink.take()

    def whole(self, cols: Columns, rows_per_batch: int = 65_536) -> bytes:
        """Everything at once: schema, ``cols`` in batches, end."""
        parts = [self.schema()]
        parts += [self.batch(part) for part in cols.chunks(rows_per_batch)]
        parts.append(self.end())
        return b"".join(parts)


def _all_text(arr: np.ndarray, mask: np.ndarray | None) -> bool:
    values = arr.tolist() if mask is None else arr[mask].tolist()
    return all(type(v) is str for v in values)


def _same(value: Any) -> Any:
    return value


def _flags(mask: np.ndarray | None, n: int) -> Any:
    return mask.tolist() if mask is not None else [True] * n


def to_arrow(cols: Columns) -> bytes:
    """``cols`` as a whole Arrow IPC stream."""
    return ArrowStream(cols).whole(cols)


def read_arrow(data: bytes | Any) -> Columns:
    """The Columns of an Arrow IPC stream written by :class:`ArrowStream` (bytes or a
    readable file)."""
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"not an Arrow IPC stream: {exc}") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    as_json = set(json.loads(meta.get("nbfeed.json", "[]")))
    symbol = meta.get("nbfeed.symbol")
    if "time" not in table.column_names:
        raise ValueError("Arrow stream has no time column")
    time = np.asarray(table.column("time").to_numpy(), dtype=np.int64)
    fields: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name == "time":
            continue
        column = table.column(name).combine_chunks()
        valid = None
        if column.null_count:
            valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            masks[name] = valid
        if name in as_json:
            fields[name] = object_array([None if v is None else json.loads(v)
                                         for v in column.to_pylist()])
        elif pa.types.is_boolean(column.type):
            fields[name] = np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False),
                                      dtype=bool)
        elif pa.types.is_integer(column.type):
            fields[name] = np.asarray(column.fill_null(0).to_numpy(), dtype=np.int64)
        elif pa.types.is_floating(column.type):
            fields[name] = np.asarray(column.fill_null(np.nan).to_numpy(), dtype=np.float64)
        else:
            fields[name] = object_array(column.to_pylist())
    return Columns(time, fields, symbol=symbol, masks=masks)
