"""Reading a recording back in recorded order, in bounded memory.

:class:`RecordingReader` opens a recording's visible files (skipping files a merge already
covers, see :func:`~nbfeed.recorder.layout.split_overlaps`), unifies their schemas by column
name (:func:`~nbfeed.recorder.schema.unify`), and yields Arrow tables in ``seq`` order with a
``source`` column added. Files of one source are already in order; the sources of a recording
that holds several are merged on ``seq`` a few row groups at a time (a k-way merge whose buffers
hold at most one row group per source), so even a recording far larger than memory streams.

Filters (symbols, interval, source, a span of receive times, rows after a sequence number) are
applied per row group; row groups whose ``received`` statistics fall outside the span are not
read at all.

A recording that is still being written can be read: the reader sees the files that were
visible when it was opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import BadRequest
from .layout import DataFile, Layout, split_overlaps
from .manifest import read_manifest
from .schema import INTERVAL, RECEIVED, SEQ, SYMBOL, align, unify

BATCH_ROWS = 65_536
_RECEIVED_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class RowFilter:
    """What to read: ``None`` means everything. Times are receive times in microseconds."""

    sources: frozenset[str] | None = None
    symbols: frozenset[str] | None = None
    interval: str | None = None
    received_from_us: int | None = None  # inclusive
    received_to_us: int | None = None  # exclusive
    after_seq: int | None = None


class RecordingReader:
    """The files of recording ``name``; iterate :meth:`tables` (see module docstring)."""

    def __init__(self, layout: Layout, name: str) -> None:
        self.layout = layout
        self.name = name
        folder = layout.recording_dir(name)
        if not (folder / "_recording.json").is_file():
            raise unknown_recording(layout, name)
        self.manifest = read_manifest(folder / "_recording.json")
        self.files, _ = split_overlaps(layout.data_files(name))
        schemas = []
        readable = []
        for f in self.files:
            try:
                schemas.append(pq.read_schema(f.path))
                readable.append(f)
            except (OSError, pa.ArrowException):
                continue  # deleted meanwhile (age limit, a merge) or not ours
        self.files = readable
        self.schema, self.json_columns = unify(schemas) if schemas else (pa.schema([]), set())

    def sources(self) -> list[str]:
        return sorted({f.source for f in self.files})

    def tables(self, where: RowFilter | None = None) -> Iterator[pa.Table]:
        """Tables of rows in ``seq`` order with a ``source`` column; all share one schema."""
        where = where or RowFilter()
        by_source: dict[str, list[DataFile]] = {}
        for f in self.files:
            if where.sources is not None and f.source not in where.sources:
                continue
            if where.after_seq is not None and f.last_seq <= where.after_seq:
                continue
            by_source.setdefault(f.source, []).append(f)
        streams = [self._source_tables(files, where) for files in by_source.values()]
        if len(streams) == 1:
            yield from streams[0]
        elif streams:
            yield from _merge_on_seq(streams)

    def _source_tables(self, files: list[DataFile], where: RowFilter) -> Iterator[pa.Table]:
        for f in sorted(files, key=lambda f: f.first_seq):
            try:
                pf = pq.ParquetFile(f.path)
            except (OSError, pa.ArrowException):
                continue  # pruned by an age limit while we read
            groups = _row_groups(pf, where)
            if not groups:
                continue
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=groups):
                table = pa.Table.from_batches([batch])
                table = _filter(table, where)
                if table.num_rows:
                    table = align(table, self.schema, self.json_columns)
                    yield table.append_column("source", pa.repeat(pa.scalar(f.source),
                                                                  table.num_rows))


def _row_groups(pf: pq.ParquetFile, where: RowFilter) -> list[int]:
    """Row groups that may hold wanted rows (by the ``received`` and ``seq`` statistics)."""
    md = pf.metadata
    names = pf.schema_arrow.names
    received_index = names.index(RECEIVED) if RECEIVED in names else None
    seq_index = names.index(SEQ) if SEQ in names else None
    keep = []
    for i in range(md.num_row_groups):
        group = md.row_group(i)
        if received_index is not None and (where.received_from_us is not None
                                           or where.received_to_us is not None):
            stats = group.column(received_index).statistics
            if stats is not None and stats.has_min_max:
                low, high = _us(stats.min), _us(stats.max)
                if where.received_from_us is not None and high < where.received_from_us:
                    continue
                if where.received_to_us is not None and low >= where.received_to_us:
                    continue
        if seq_index is not None and where.after_seq is not None:
            stats = group.column(seq_index).statistics
            if stats is not None and stats.has_min_max and stats.max <= where.after_seq:
                continue
        keep.append(i)
    return keep


def _us(value: object) -> int:
    return value if isinstance(value, int) else exact_us(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def exact_us(value: Any) -> int:
    """A datetime from Parquet statistics as exact epoch microseconds (no float rounding)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _filter(table: pa.Table, where: RowFilter) -> pa.Table:
    masks = []
    if where.symbols is not None:
        masks.append(pc.is_in(table.column(SYMBOL), value_set=pa.array(sorted(where.symbols),
                                                                          pa.string())))
    if where.interval is not None:
        masks.append(pc.equal(table.column(INTERVAL), where.interval))
    if where.received_from_us is not None:
        masks.append(pc.greater_equal(table.column(RECEIVED),
                                      pa.scalar(where.received_from_us, _RECEIVED_TYPE)))
    if where.received_to_us is not None:
        masks.append(pc.less(table.column(RECEIVED),
                             pa.scalar(where.received_to_us, _RECEIVED_TYPE)))
    if where.after_seq is not None:
        masks.append(pc.greater(table.column(SEQ), where.after_seq))
    if not masks:
        return table
    mask = masks[0]
    for m in masks[1:]:
        mask = pc.and_(mask, m)
    return table.filter(mask)


def _merge_on_seq(streams: list[Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """K-way merge of per-source table streams (each in ``seq`` order) into ``seq`` order."""
    buffers: list[pa.Table | None] = [None] * len(streams)
    live = list(range(len(streams)))
    while True:
        for i in list(live):
            if buffers[i] is None or buffers[i].num_rows == 0:
                buffers[i] = next(streams[i], None)
                if buffers[i] is None:
                    live.remove(i)
        if not live:
            return
        # Every row up to the smallest "last seq" of the buffers is in the buffers.
        bound = min(buffers[i].column(SEQ)[-1].as_py() for i in live)
        pieces = []
        for i in live:
            table = buffers[i]
            seqs = table.column(SEQ)
            n = int(pc.sum(pc.less_equal(seqs, bound)).as_py() or 0)
            if n:
                pieces.append(table.slice(0, n))
                buffers[i] = table.slice(n)
        merged = pa.concat_tables(pieces)
        yield merged.take(pc.sort_indices(merged.column(SEQ)))


def unknown_recording(layout: Layout, name: str) -> BadRequest:
    from ..errors import UnknownRecording

    known = layout.names()
    listed = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    return UnknownRecording(f"unknown recording {name!r}; recordings: {listed or '(none)'}")


def read_all(reader: RecordingReader, where: RowFilter | None = None) -> pa.Table:
    """Every wanted row as one table (in memory: for frames and exports of modest size)."""
    tables: Iterable[pa.Table] = list(reader.tables(where))
    if not tables:
        schema = reader.schema.append(pa.field("source", pa.string()))
        return schema.empty_table()
    return pa.concat_tables(tables)


@dataclass
class StreamStats:
    """What :meth:`RecordingReader.scan` found for one ``(source, symbol, interval)``."""

    rows: int = 0
    in_span: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_received_us: int | None = None
    last_received_us: int | None = None

    def add(self, rows: int, seqs: Any, received: Any) -> None:
        self.in_span += rows
        if not rows:
            return
        first_seq, last_seq = seqs[0].as_py(), seqs[-1].as_py()
        first_us, last_us = received[0].as_py(), received[-1].as_py()
        self.first_seq = first_seq if self.first_seq is None else min(self.first_seq, first_seq)
        self.last_seq = last_seq if self.last_seq is None else max(self.last_seq, last_seq)
        self.first_received_us = first_us if self.first_received_us is None else \
            min(self.first_received_us, first_us)
        self.last_received_us = last_us if self.last_received_us is None else \
            max(self.last_received_us, last_us)


def scan(reader: RecordingReader, received_from_us: int | None = None,
         received_to_us: int | None = None) -> dict[tuple[str, str, str], StreamStats]:
    """Rows per ``(source, symbol, interval)``: all of them, and those received in the span.

    Reads four small columns only (``seq``, ``received``, ``symbol``, ``interval``).
    """
    found: dict[tuple[str, str, str], StreamStats] = {}
    columns = [SEQ, RECEIVED, SYMBOL, INTERVAL]
    span = RowFilter(received_from_us=received_from_us, received_to_us=received_to_us)
    for f in reader.files:
        try:
            table = pq.read_table(f.path, columns=columns)
        except (OSError, pa.ArrowException):
            continue
        if not table.num_rows:
            continue
        keys = pc.binary_join_element_wise(table.column(SYMBOL), table.column(INTERVAL), "\x00")
        for key, count in zip(*_value_counts(keys)):
            symbol, _, interval = key.partition("\x00")
            stats = found.setdefault((f.source, symbol, interval), StreamStats())
            stats.rows += count
        inside = _filter(table, span)
        if not inside.num_rows:
            continue
        inside_keys = pc.binary_join_element_wise(inside.column(SYMBOL),
                                                  inside.column(INTERVAL), "\x00")
        for key in set(inside_keys.to_pylist()):
            part = inside.filter(pc.equal(inside_keys, key))
            symbol, _, interval = key.partition("\x00")
            found[(f.source, symbol, interval)].add(
                part.num_rows, part.column(SEQ), part.column(RECEIVED).cast(pa.int64()))
    return found


def _value_counts(values: Any) -> tuple[list[str], list[int]]:
    counts = pc.value_counts(values)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()
