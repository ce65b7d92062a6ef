"""The columns of a recording, and the exact way rows go into Arrow and come back out.

One Parquet row per recorded row, in these columns:

=============  ===========================  ===============================================
column         type                          meaning
=============  ===========================  ===============================================
``seq``        int64                         recording order: 1, 2, 3... across all sources
``received``   timestamp[us, UTC]            when the hub received the row (the replay clock)
``interval``   string                        the stream's interval (``tick``, ``1m``...)
``time``       timestamp[ms, UTC]            the row's own (source) time, exact to the ms
``symbol``     string                        the row's symbol
fields...      as the values are             the row's fields in first-seen order
=============  ===========================  ===============================================

``source`` and ``date`` (UTC day of ``received``) come from the Hive partition folders. A field
whose name is one of those column names (``seq``, ``received``, ``interval``, ``source``,
``date``) or starts with ``row.`` is stored as ``row.<name>`` and renamed back on replay.

Field types are inferred per part file: numbers stay float64 (``double``) or int64 (a field that
mixes ints and floats is stored as float64, so ints come back as floats), strings stay strings,
booleans stay booleans; anything Arrow cannot type as one scalar column (nested dicts or lists,
mixed strings and numbers) is stored as JSON text and listed in the file's ``nbfeed.json``
metadata, so replay decodes it. A value of ``None`` is stored as null; replayed rows leave out
null fields, which is also how rows of a stream that gained fields later come back: the earlier
rows simply lack them.

Readers that combine files whose columns differ (a stream gained a field, or a recording holds
quotes and candles) must merge schemas by name: DuckDB ``read_parquet(..., union_by_name=true)``,
polars ``pl.concat(..., how="diagonal_relaxed")``, pyarrow ``pa.unify_schemas`` (what
:mod:`nbfeed.recorder.reader` does). ``pandas.read_parquet(folder)`` takes the columns of the
first file it finds; a closed recording keeps one merged file per partition, so reading one
partition (``.../source=simulated``) with pandas sees every column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

SEQ, RECEIVED, INTERVAL, TIME, SYMBOL = "seq", "received", "interval", "time", "symbol"
#: Columns the recorder owns (plus the partition columns); row fields never use these names.
RECORDER_COLUMNS = (SEQ, RECEIVED, INTERVAL, "source", "date")
FORMAT_VERSION = "1"
META_FORMAT = b"nbfeed.format"
META_RECORDING = b"nbfeed.recording"
META_JSON = b"nbfeed.json"
_ESCAPE = "row."
_RECEIVED_TYPE = pa.timestamp("us", tz="UTC")
_TIME_TYPE = pa.timestamp("ms", tz="UTC")


def column_of(field: str) -> str:
    """The Parquet column name of row field ``field`` (escaped when it would clash)."""
    if field in RECORDER_COLUMNS or field.startswith(_ESCAPE):
        return _ESCAPE + field
    return field


def field_of(column: str) -> str:
    """The row field name of Parquet column ``column`` (inverse of :func:`column_of`)."""
    return column[len(_ESCAPE):] if column.startswith(_ESCAPE) else column


class Batch:
    """Rows of one stream received together: what the recorder queues and writes.

    ``first_seq`` is set by the writer when it numbers the rows (the queue's order).
    """

    __slots__ = ("first_seq", "interval", "received_us", "rows", "source", "symbol")

    def __init__(self, source: str, symbol: str, interval: str, rows: Sequence[dict],
                 received_us: int) -> None:
        self.source = source
        self.symbol = symbol
        self.interval = interval
        self.rows = rows
        self.received_us = received_us
        self.first_seq = 0


def rows_to_table(batches: Sequence[Batch], recording: str) -> pa.Table:
    """Batches (of one partition, numbered, in order) as one Arrow table."""
    rows: list[dict] = []
    seqs: list[np.ndarray] = []
    received: list[np.ndarray] = []
    intervals: list[str] = []
    for batch in batches:
        n = len(batch.rows)
        rows.extend(batch.rows)
        seqs.append(np.arange(batch.first_seq, batch.first_seq + n, dtype=np.int64))
        received.append(np.full(n, batch.received_us, dtype=np.int64))
        intervals.extend([batch.interval] * n)
    columns: dict[str, pa.Array] = {
        SEQ: pa.array(np.concatenate(seqs) if seqs else np.empty(0, np.int64)),
        RECEIVED: pa.array(np.concatenate(received) if received else np.empty(0, np.int64)
                           ).cast(_RECEIVED_TYPE),
        INTERVAL: pa.array(intervals, pa.string()),
    }
    names = _field_order(rows)
    fields = _fields_typed(rows, names)
    as_text: set[str] = set()
    if fields is None:
        fields, as_text = _fields_one_by_one(rows, names)
    json_columns: list[str] = []
    for name in names:
        array = fields[name]
        if name == TIME:
            array = _times(array)
        elif name == SYMBOL:
            if not pa.types.is_string(array.type):
                array = pa.array([None if v is None else str(v) for v in array.to_pylist()],
                                 pa.string())
        elif pa.types.is_nested(array.type):
            # From the rows' own values: Arrow's struct/list types would fill in missing keys
            # and turn ints into floats.
            array = pa.array([None if (v := row.get(name)) is None else
                              json.dumps(v, default=str) for row in rows], pa.string())
            json_columns.append(column_of(name))
        elif name in as_text:
            json_columns.append(column_of(name))
        columns[TIME if name == TIME else SYMBOL if name == SYMBOL else column_of(name)] = array
    for name in (TIME, SYMBOL):
        if name not in columns:
            columns[name] = pa.nulls(len(rows), _TIME_TYPE if name == TIME else pa.string())
    ordered = [SEQ, RECEIVED, INTERVAL, TIME, SYMBOL]
    ordered += [c for c in columns if c not in ordered]
    meta = {META_FORMAT: FORMAT_VERSION.encode(), META_RECORDING: recording.encode(),
            META_JSON: json.dumps(json_columns).encode()}
    return pa.table({c: columns[c] for c in ordered}).replace_schema_metadata(meta)


def _field_order(rows: list[dict]) -> list[str]:
    """Every key of ``rows``: the first row's in its order, then the others sorted."""
    if not rows:
        return []
    first = list(rows[0])
    others = set().union(*rows).difference(first)  # C speed, unlike a loop over rows
    return first + sorted(others, key=str)


def _fields_typed(rows: list[dict], names: list[str]) -> dict[str, pa.Array] | None:
    """All fields in one typed pass (the fast path), or None when types disagree.

    Types come from a sample holding every key; converting the rows to a struct of those
    types is one C loop. A value that does not fit its sampled type (an int column that later
    holds a float, a string among numbers) makes it give up, and the caller converts field
    by field instead.
    """
    if not rows or any(type(name) is not str for name in names):
        return None
    sample = rows[:64]
    seen = set().union(*sample)
    for name in names:
        if name not in seen:
            sample.append(next(r for r in rows if name in r))
    try:
        inferred = pa.array(sample).type
        struct = pa.struct([inferred.field(name) for name in names])
        if any(pa.types.is_null(f.type) for f in struct):
            return None
        array = pa.array(rows, type=struct)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
            OverflowError, ValueError, KeyError):
        return None
    return {name: array.field(i) for i, name in enumerate(names)}


def _fields_one_by_one(rows: list[dict], names: list[str]
                       ) -> tuple[dict[str, pa.Array], set[str]]:
    """Field by field (the slow, general path): arrays, and the fields stored as JSON text."""
    out: dict[str, pa.Array] = {}
    as_text: set[str] = set()
    for name in names:
        values = [row.get(name) for row in rows]
        if name == TIME:
            out[name] = pa.array([v if type(v) is int else None for v in values], pa.int64())
        elif name == SYMBOL:
            out[name] = pa.array([_text(v) for v in values], pa.string())
        else:
            out[name], is_text = _field_array(values)
            if is_text:
                as_text.add(name)
    return out, as_text


def _times(array: pa.Array) -> pa.Array:
    """Row times (int ms) as timestamps; anything that is not a whole number becomes null (the
    hub only passes rows with int ms times, so this is a guard, not a path)."""
    if pa.types.is_integer(array.type):
        return array.cast(pa.int64()).cast(_TIME_TYPE)
    return pa.array([v if type(v) is int else None for v in array.to_pylist()],
                    pa.int64()).cast(_TIME_TYPE)


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def _field_array(values: list[Any]) -> tuple[pa.Array, bool]:
    """One field as Arrow: a typed column when Arrow can type it (nested types are turned
    into JSON by the caller), else JSON text (``True``)."""
    try:
        return pa.array(values), False
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, ValueError):
        pass
    return pa.array([None if v is None else json.dumps(v, default=str) for v in values],
                    pa.string()), True


def json_columns(schema: pa.Schema) -> set[str]:
    """Columns of ``schema`` that hold JSON text (from its ``nbfeed.json`` metadata)."""
    raw = (schema.metadata or {}).get(META_JSON)
    if not raw:
        return set()
    try:
        return set(json.loads(raw))
    except ValueError:
        return set()


def field_columns(schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` that are row fields (not the recorder's own)."""
    return [name for name in schema.names if name not in RECORDER_COLUMNS]


class ReplayedRows:
    """Rows rebuilt from a table, with the recorder's columns beside them."""

    __slots__ = ("intervals", "received_us", "rows", "seqs", "sources")

    def __init__(self, rows: list[dict], seqs: list[int], received_us: list[int],
                 intervals: list[str], sources: list[str] | None) -> None:
        self.rows = rows
        self.seqs = seqs
        self.received_us = received_us
        self.intervals = intervals
        self.sources = sources


def table_to_rows(table: pa.Table, json_fields: set[str] | None = None) -> ReplayedRows:
    """Rows exactly as recorded (``time`` back to int ms, null fields left out).

    ``json_fields`` names the columns holding JSON text (default: read from the table's
    metadata; pass it when tables of several files were concatenated).
    """
    names = field_columns(table.schema)
    if json_fields is None:
        json_fields = json_columns(table.schema)
    columns: list[list[Any]] = []
    nulls = False
    for name in names:
        column = table.column(name)
        if name == TIME:
            column = column.cast(pa.int64())
        values = column.to_pylist()
        if column.null_count:
            nulls = True
        if name in json_fields:
            values = [None if v is None else json.loads(v) for v in values]
        columns.append(values)
    keys = [field_of(name) for name in names]
    if not columns:
        rows: list[dict] = [{} for _ in range(table.num_rows)]
    elif nulls:
        rows = [{k: v for k, v in zip(keys, vals) if v is not None} for vals in zip(*columns)]
    else:
        rows = [dict(zip(keys, vals)) for vals in zip(*columns)]
    sources = table.column("source").to_pylist() if "source" in table.schema.names else None
    return ReplayedRows(rows, table.column(SEQ).to_pylist(),
                        table.column(RECEIVED).cast(pa.int64()).to_pylist(),
                        table.column(INTERVAL).to_pylist(), sources)


def unify(schemas: Sequence[pa.Schema]) -> tuple[pa.Schema, set[str]]:
    """One schema holding every column of ``schemas`` by name, and its JSON-text columns.

    Same types stay; ints and floats meet as float64; anything else that disagrees (or was
    JSON text in any file) becomes JSON text, so no value is ever lost in a merge.
    """
    types: dict[str, list[pa.DataType]] = {}
    as_json: set[str] = set()
    for schema in schemas:
        as_json |= json_columns(schema)
        for field in schema:
            types.setdefault(field.name, []).append(field.type)
    fields = []
    for name, seen in types.items():
        kinds = {t for t in seen if not pa.types.is_null(t)}
        if name in as_json:
            target: pa.DataType = pa.string()
        elif not kinds:
            target = pa.null()
        elif len(kinds) == 1:
            target = kinds.pop()
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
            target = pa.float64()
        else:
            target = pa.string()
            as_json.add(name)
        fields.append(pa.field(name, target))
    return pa.schema(fields), as_json


def align(table: pa.Table, schema: pa.Schema, as_json: set[str]) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (missing ones null, types as unified)."""
    own_json = json_columns(table.schema)
    arrays = []
    for field in schema:
        if field.name not in table.schema.names:
            arrays.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if field.name in as_json and field.name not in own_json:
            column = pa.array([None if v is None else json.dumps(v, default=str)
                               for v in column.to_pylist()], pa.string())
        elif column.type != field.type:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def with_json_metadata(schema: pa.Schema, as_json: set[str], recording: str) -> pa.Schema:
    return schema.with_metadata({
        META_FORMAT: FORMAT_VERSION.encode(), META_RECORDING: recording.encode(),
        META_JSON: json.dumps(sorted(c for c in as_json if c in schema.names)).encode()})
