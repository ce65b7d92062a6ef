"""The recordings on disk: list, describe, repair, delete, export, read into pandas.

:class:`RecordingStore` works on the files alone, so it answers the same in any process: a
server, a notebook, the CLI, the replay provider. What a live recording's writer knows better
(its status, rows still queued) the hub passes in as ``live`` info.

``describe`` reads only Parquet footers (row counts and ``received``/``time`` statistics), so
it is cheap even for large recordings, and right even after a crash left the manifest a flush
behind. ``repair`` is what opening a dead recording needs: hidden temporary files deleted, files
a merge already covers deleted, the manifest marked ``interrupted`` with counts from the files.
It never touches a live recording.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BadRequest
from ..timeutil import ms_to_iso
from .layout import Layout, check_name, split_overlaps
from .manifest import INTERRUPTED, LIVE, effective_status, read_manifest, write_manifest
from .reader import RecordingReader, RowFilter, read_all, unknown_recording
from .schema import RECEIVED, TIME

EXPORT_FORMATS = ("parquet", "csv")


class RecordingStore:
    """Recordings under ``<home>/recordings`` (see module docstring)."""

    def __init__(self, home: str | Path) -> None:
        self.layout = Layout(home)

    @property
    def root(self) -> Path:
        return self.layout.root

    def names(self) -> list[str]:
        return [n for n in self.layout.names() if self.layout.manifest_path(n).is_file()]

    def exists(self, name: str) -> bool:
        return self.layout.manifest_path(name).is_file()

    def require(self, name: str) -> str:
        """``name`` if such a recording exists, else UnknownRecording listing the others."""
        check_name(name)
        if not self.exists(name):
            raise unknown_recording(self.layout, name)
        return name

    # ---- describing -----------------------------------------------------------------------

    def manifest(self, name: str) -> dict:
        return read_manifest(self.layout.manifest_path(self.require(name)))

    def describe(self, name: str, live: dict | None = None) -> dict[str, Any]:
        """Name, status, streams, span, rows, bytes, lost rows... from manifest and footers."""
        manifest = self.manifest(name)
        if live is not None:
            manifest.update(live)
        status = LIVE if live is not None else effective_status(manifest)
        stats = self._file_stats(name)
        streams = manifest.get("streams") or []
        return {
            "name": name,
            "status": status,
            "detail": manifest.get("detail") or "",
            "sources": sorted({s.get("source") for s in streams if s.get("source")}),
            "symbols": sorted({sym for s in streams for sym in s.get("symbols") or []}),
            "intervals": sorted({s.get("interval") for s in streams if s.get("interval")}),
            "streams": streams,
            "start": _iso(stats["first_received_ms"]),
            "end": _iso(stats["last_received_ms"]),
            "start_ms": stats["first_received_ms"],
            "end_ms": stats["last_received_ms"],
            "first_time_ms": stats["first_time_ms"],
            "last_time_ms": stats["last_time_ms"],
            "rows": stats["rows"],
            "bytes": stats["bytes"],
            "files": stats["files"],
            "lost_rows": int(manifest.get("lost_rows") or 0),
            "gaps": manifest.get("gaps") or [],
            "events": manifest.get("events") or [],
            "limits": manifest.get("limits") or {},
            "created": _iso(manifest.get("created_ms")),
            "path": str(self.layout.recording_dir(name)),
        }

    def list(self, live: dict[str, dict] | None = None) -> list[dict[str, Any]]:
        """Every recording, described (``live`` maps names being written to their info)."""
        out = []
        for name in self.names():
            try:
                out.append(self.describe(name, (live or {}).get(name)))
            except BadRequest as exc:  # a damaged folder must not hide the others
                out.append({"name": name, "status": "failed", "detail": str(exc)})
        return out

    def _file_stats(self, name: str) -> dict[str, Any]:
        files, _ = split_overlaps(self.layout.data_files(name))
        stats: dict[str, Any] = {"rows": 0, "bytes": 0, "files": 0, "first_received_ms": None,
                                 "last_received_ms": None, "first_time_ms": None,
                                 "last_time_ms": None}
        for f in files:
            try:
                md = pq.ParquetFile(f.path).metadata
                size = f.path.stat().st_size
            except (OSError, pa.ArrowException):
                continue
            stats["rows"] += md.num_rows
            stats["bytes"] += size
            stats["files"] += 1
            names = md.schema.to_arrow_schema().names
            for column, key in ((RECEIVED, "received_ms"), (TIME, "time_ms")):
                if column not in names:
                    continue
                index = names.index(column)
                for i in range(md.num_row_groups):
                    st = md.row_group(i).column(index).statistics
                    if st is None or not st.has_min_max:
                        continue
                    low, high = _ms(st.min), _ms(st.max)
                    first, last = f"first_{key}", f"last_{key}"
                    stats[first] = low if stats[first] is None else min(stats[first], low)
                    stats[last] = high if stats[last] is None else max(stats[last], high)
        return stats

    # ---- changing -------------------------------------------------------------------------

    def repair(self, name: str) -> dict[str, Any]:
        """Tidy a recording nobody writes any more (see module docstring); returns what it did.

        Refuses (BadRequest) while the recording is live.
        """
        manifest = self.manifest(name)
        if effective_status(manifest) == LIVE and manifest.get("pid") != os.getpid():
            raise BadRequest(f"recording {name!r} is being recorded (pid {manifest.get('pid')})"
                             "; stop it first")
        removed_tmp = self.layout.temp_files(name)
        for path in removed_tmp:
            path.unlink(missing_ok=True)
        _, covered = split_overlaps(self.layout.data_files(name))
        for f in covered:
            f.path.unlink(missing_ok=True)
        if manifest.get("status") == LIVE:
            stats = self._file_stats(name)
            manifest.update(status=INTERRUPTED, rows=stats["rows"], bytes=stats["bytes"],
                            files=stats["files"],
                            detail="interrupted: the recording process ended without stopping "
                                   "it (killed?); rows of its last second or so may be missing")
            write_manifest(self.layout.manifest_path(name), manifest)
        return {"temporary_files_removed": len(removed_tmp), "covered_files_removed":
                len(covered)}

    def delete(self, name: str) -> None:
        """Delete the recording's folder (the caller stops a live recording first)."""
        folder = self.layout.recording_dir(self.require(name))
        shutil.rmtree(folder)

    # ---- reading --------------------------------------------------------------------------

    def reader(self, name: str) -> RecordingReader:
        return RecordingReader(self.layout, self.require(name))

    def table(self, name: str, where: RowFilter | None = None) -> pa.Table:
        """Every wanted row as one Arrow table (``seq`` order, schemas merged by name)."""
        return read_all(self.reader(name), where)

    def frame(self, name: str, where: RowFilter | None = None) -> Any:
        """The rows as a pandas DataFrame: ``seq, received, interval, time, symbol, fields...,
        source`` with tz-aware UTC times."""
        return self.table(name, where).to_pandas()

    def export(self, name: str, path: str | Path, format: str | None = None, *,
               overwrite: bool = False) -> Path:
        """Write the whole recording to one Parquet or CSV file at ``path``; returns it.

        The format defaults to the file's extension. Streams in bounded memory.
        """
        target = Path(path).expanduser()
        fmt = format or (target.suffix.lstrip(".").lower() or "parquet")
        if fmt not in EXPORT_FORMATS:
            raise BadRequest(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got "
                             f"{fmt!r:.20}")
        if target.exists() and not overwrite:
            raise BadRequest(f"{str(target)!r} exists; pass overwrite=True to replace it")
        reader = self.reader(name)
        schema = reader.schema.append(pa.field("source", pa.string()))
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            if fmt == "parquet":
                with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                    for table in reader.tables():
                        writer.write_table(table.cast(schema))
            else:
                import pyarrow.csv as pcsv

                with pcsv.CSVWriter(tmp, schema) as writer:
                    for table in reader.tables():
                        writer.write_table(table.cast(schema))
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target


def _ms(value: Any) -> int:
    from .reader import exact_us

    return exact_us(value) // 1000 if not isinstance(value, int) else value


def _iso(ms: int | None) -> str | None:
    return None if ms is None else ms_to_iso(ms)
