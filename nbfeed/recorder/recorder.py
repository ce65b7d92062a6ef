"""One recording being written: a writer thread that turns the box's batches into part files.

About once a second (``flush_interval``, sooner when many rows wait) the writer drains its
:class:`~nbfeed.recorder.box.RecorderBox`, numbers the rows in queue order (``seq``), splits them
by partition (source, UTC day of receipt) and writes one part file per partition
(:mod:`nbfeed.recorder.files`: hidden temporary name, then rename). So a ``kill -9`` loses at
most the rows of the last second or so (those still in memory), and every visible file stays a
complete Parquet file.

After each flush the writer enforces the limits (:mod:`nbfeed.recorder.limits`), merges a
partition's parts once there are ``merge_parts`` of them, and rewrites the manifest. When the
recording ends - :meth:`Recorder.stop`, its duration, its disk limit, or a write error - the
writer drains what is left (unless a limit ended it), merges each partition into one file
(when it is not huge), writes the final manifest and calls ``on_end`` (the hub then releases
the recording's subscription).

Failure behaviour: a write error (disk full, permissions) ends the recording with status
``failed`` and the error in ``detail``; files already written stay readable. The thread never
touches the hub's event loop; the hub's only cost is :meth:`RecorderBox.put_batch`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import BadRequest
from .box import Gap, RecorderBox
from .files import PendingFile, merge, remove, write_part
from .layout import DataFile, Layout, check_name
from .limits import Limits, human_bytes
from .manifest import (
    FAILED,
    FINISHED,
    HEARTBEAT_S,
    LIMIT,
    LIVE,
    MAX_EVENTS,
    MAX_GAPS,
    STOPPED,
    new_manifest,
    write_manifest,
)
from .schema import Batch, align, rows_to_table, unify, with_json_metadata

log = logging.getLogger("nbfeed.recorder")

#: Partitions at most this big are merged into one file when a recording ends.
FINAL_MERGE_MAX_BYTES = 256 << 20
#: Rows converted to Arrow between two releases of the GIL (see Recorder._to_table).
SLICE_ROWS = 2_048


def _day(received_us: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(received_us // 1_000_000))


class _FileState:
    __slots__ = ("bytes", "file", "last_received_us", "rows")

    def __init__(self, file: DataFile, rows: int, size: int, last_received_us: int) -> None:
        self.file = file
        self.rows = rows
        self.bytes = size
        self.last_received_us = last_received_us


class Recorder:
    """Writes recording ``name`` from its box until stopped (see module docstring).

    ``streams`` describes what is recorded (``[{"source", "symbols", "interval"}]``) for the
    manifest. Create, then :meth:`start`; the box is :attr:`box`.
    """

    def __init__(self, layout: Layout, name: str, streams: list[dict], limits: Limits, *,
                 flush_interval: float = 1.0, merge_parts: int = 60,
                 max_queue_rows: int | None = None,
                 on_end: Callable[[Recorder], None] | None = None) -> None:
        self.layout = layout
        self.name = check_name(name)
        self.streams = streams
        self.limits = limits
        self.flush_interval = flush_interval
        self.merge_parts = max(2, merge_parts)
        self.box = RecorderBox(max_queue_rows) if max_queue_rows else RecorderBox()
        self.on_end = on_end
        self.folder = layout.recording_dir(name)
        self.manifest = new_manifest(name, streams, limits.to_dict())
        self._seq = 0
        self._files: dict[Path, _FileState] = {}
        self._stop = threading.Event()
        self._stop_status = STOPPED
        self._stop_detail = ""
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._last_beat = 0.0
        self.done = threading.Event()
        #: Flushes completed (each drains the box); :meth:`wait_flushed` waits for more.
        self.flushes = 0
        self._flushed = threading.Condition()

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Create the recording's folder and manifest and start writing.

        Raises BadRequest if a recording of that name exists (nothing is overwritten).
        """
        self.layout.ensure_root()
        try:
            self.folder.mkdir()
        except FileExistsError:
            raise BadRequest(f"a recording named {self.name!r} already exists; delete it or "
                             "choose another name") from None
        write_manifest(self.folder / "_recording.json", self.manifest)
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"nbfeed-recorder-{self.name}",
                                         daemon=True)
        self._thread.start()

    def stop(self, status: str = STOPPED, detail: str = "", wait: bool = True,
             timeout: float | None = None) -> None:
        """End the recording: write what is queued, merge, final manifest. Safe to repeat."""
        if not self._stop.is_set():
            self._stop_status, self._stop_detail = status, detail
            self._stop.set()
            self.box.ready.set()
        if wait and self._thread is not None:
            self._thread.join(timeout)

    @property
    def status(self) -> str:
        return self.manifest["status"]

    def info(self) -> dict[str, Any]:
        """The manifest as it stands (rows, bytes, status... of this live recording)."""
        info = dict(self.manifest)
        info["queued_rows"] = self.box.pending_rows
        info["lost_rows"] = max(info.get("lost_rows", 0), self.box.lost_rows)
        return info

    # ---- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        ended = False
        try:
            while not ended:
                self.box.ready.wait(self.flush_interval)
                ended = self._stop.is_set()
                self._flush()
                ended = ended or self._check_limits()
                if not ended:
                    self._prune()
                    self._merge_full_partitions()
                    self._heartbeat()
            self._finish()
        except Exception as exc:  # disk full, permissions, a bug: end, and say why
            log.exception("recording %s failed", self.name)
            self._end(FAILED, f"writing failed: {type(exc).__name__}: {exc}")
            try:
                self._write_manifest()
            except Exception:
                log.exception("recording %s: could not write its manifest", self.name)
        finally:
            self.box.close()
            self.done.set()
            with self._flushed:
                self._flushed.notify_all()
            if self.on_end is not None:
                try:
                    self.on_end(self)
                except Exception:
                    log.exception("recording %s: on_end raised", self.name)

    def _flush(self) -> None:
        items, events = self.box.drain()
        for received_us, event in events:
            self._note_event(received_us, event)
        partitions: dict[tuple[str, str], list[Batch]] = {}
        for item in items:
            if isinstance(item, Gap):
                self._note_gap(item)
                continue
            item.first_seq = self._seq + 1
            self._seq += len(item.rows)
            key = (item.source, _day(item.received_us))
            batches = partitions.get(key)
            if batches is None:
                batches = partitions[key] = []
            batches.append(item)
        for (source, day), batches in partitions.items():
            if self.status in (LIMIT, FAILED):  # ended by a limit: nothing more goes to disk
                self._count_unwritten(batches)
                continue
            table = self._to_table(batches)
            pending = write_part(table, self.layout.partition_dir(self.name, source, day))
            if not self._fits(pending):
                pending.discard()
                self._count_unwritten(batches)
                continue
            pending.publish()
            self._add_file(DataFile(pending.final, source, day, "part", pending.first_seq,
                                    pending.last_seq), pending)
        if items or events:
            self._write_manifest()
        with self._flushed:
            self.flushes += 1
            self._flushed.notify_all()

    def wait_flushed(self, after: int, timeout: float) -> bool:
        """Wait until more than ``after`` flushes have completed (or the writer ended)."""
        with self._flushed:
            return self._flushed.wait_for(
                lambda: self.flushes > after or self.done.is_set(), timeout)

    def _to_table(self, batches: list[Batch]) -> pa.Table:
        """Rows to Arrow in slices of ``SLICE_ROWS``, yielding the GIL between slices.

        Building columns from row dicts is Python work that holds the GIL; in slices, the
        hub's event loop never waits behind more than one slice (about a millisecond).
        """
        slices: list[list[Batch]] = [[]]
        size = 0
        for batch in batches:
            rows, first = batch.rows, batch.first_seq
            for i in range(0, len(rows), SLICE_ROWS):
                part = Batch(batch.source, batch.symbol, batch.interval, rows[i:i + SLICE_ROWS],
                             batch.received_us)
                part.first_seq = first + i
                if size and size + len(part.rows) > SLICE_ROWS:
                    slices.append([])
                    size = 0
                slices[-1].append(part)
                size += len(part.rows)
        tables = []
        for group in slices:
            tables.append(rows_to_table(group, self.name))
            time.sleep(0)  # releases the GIL: a waiting event loop runs now
        if len(tables) == 1:
            return tables[0]
        schema, as_json = unify([t.schema for t in tables])
        schema = with_json_metadata(schema, as_json, self.name)
        return pa.concat_tables([align(t, schema, as_json) for t in tables]).cast(schema)

    def _fits(self, pending: PendingFile) -> bool:
        limit = self.limits.max_bytes
        used = self.manifest["bytes"]
        if used + pending.bytes <= limit:
            return True
        self._end(LIMIT, f"stopped: the recording reached its disk limit of "
                         f"{human_bytes(limit)} (max_bytes={limit}); it holds "
                         f"{human_bytes(used)} in {self.manifest['files']} files, and the "
                         f"rows received after {_iso_us(pending.first_received_us)} were not "
                         "written")
        return False

    def _count_unwritten(self, batches: list[Batch]) -> None:
        self.manifest["not_written_rows"] += sum(len(b.rows) for b in batches)

    def _add_file(self, file: DataFile, pending: PendingFile) -> None:
        self._files[file.path] = _FileState(file, pending.rows, pending.bytes,
                                            pending.last_received_us)
        m = self.manifest
        m["rows"] += pending.rows
        m["bytes"] += pending.bytes
        m["files"] = len(self._files)
        if m["first_received_ms"] is None:
            m["first_received_ms"] = pending.first_received_us // 1000
        m["last_received_ms"] = max(m["last_received_ms"] or 0, pending.last_received_us // 1000)

    def _drop_files(self, paths: list[Path]) -> None:
        remove(paths)
        for path in paths:
            state = self._files.pop(path, None)
            if state is not None:
                self.manifest["rows"] -= state.rows
                self.manifest["bytes"] -= state.bytes
        self.manifest["files"] = len(self._files)

    def _check_limits(self) -> bool:
        """Whether the recording has ended (a limit reached now or earlier, or stop asked)."""
        if self.status != LIVE:
            return True
        duration = self.limits.duration
        if duration is not None and time.monotonic() - self._started >= duration:
            self._end(FINISHED, f"finished: recorded for its duration of {duration:g} s")
            return True
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            free = None
        if free is not None and free < self.limits.min_free_bytes:
            self._end(LIMIT, f"stopped: the disk holding {self.folder} has only "
                             f"{human_bytes(free)} free (min_free_bytes="
                             f"{self.limits.min_free_bytes})")
            return True
        return False

    def _prune(self) -> None:
        max_age = self.limits.max_age
        if max_age is None:
            return
        cutoff = (time.time() - max_age) * 1_000_000
        old = [p for p, s in self._files.items() if s.last_received_us < cutoff]
        if old:
            self._drop_files(old)
            firsts = [s.file.first_seq for s in self._files.values()]
            self.manifest["pruned_before_seq"] = min(firsts) if firsts else self._seq + 1
            self._write_manifest()

    def _merge_full_partitions(self, final: bool = False) -> None:
        by_partition: dict[tuple[str, str], list[_FileState]] = {}
        for state in self._files.values():
            by_partition.setdefault((state.file.source, state.file.day), []).append(state)
        for states in by_partition.values():
            states.sort(key=lambda s: s.file.first_seq)
            parts = [s for s in states if s.file.kind == "part"]
            if final:
                total = sum(s.bytes for s in states)
                group = states if total <= FINAL_MERGE_MAX_BYTES else parts
            elif len(parts) >= self.merge_parts:
                group = parts
            else:
                continue
            if len(group) < 2:
                continue
            files = [s.file for s in group]
            pending = merge(files, self.name)
            pending.publish()
            self._drop_files([f.path for f in files if f.path != pending.final])
            self._add_file(DataFile(pending.final, files[0].source, files[0].day, "data",
                                    pending.first_seq, pending.last_seq), pending)

    def _finish(self) -> None:
        if self.status == LIVE:
            self._end(self._stop_status, self._stop_detail)
        self._flush()  # rows queued before the end are written (a limit discards them)
        self._merge_full_partitions(final=True)
        self.manifest["ended_ms"] = int(time.time() * 1000)
        self._write_manifest()

    def _end(self, status: str, detail: str) -> None:
        if self.manifest["status"] == LIVE:
            self.manifest["status"] = status
            self.manifest["detail"] = detail
            if status in (LIMIT, FAILED):
                log.warning("recording %s: %s", self.name, detail)

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_beat >= HEARTBEAT_S / 2:
            self._write_manifest()

    def _write_manifest(self) -> None:
        m = self.manifest
        m["heartbeat_ms"] = int(time.time() * 1000)
        m["lost_rows"] = self.box.lost_rows
        m["last_seq"] = self._seq
        write_manifest(self.folder / "_recording.json", m)
        self._last_beat = time.monotonic()

    def _note_gap(self, gap: Gap) -> None:
        gaps = self.manifest["gaps"]
        entry = {"after_seq": self._seq, "rows": gap.rows,
                 "from_ms": gap.first_received_us // 1000,
                 "to_ms": gap.last_received_us // 1000, "streams": dict(gap.streams)}
        if len(gaps) >= MAX_GAPS:
            gaps[-1]["rows"] += gap.rows  # keep the count exact even when the list is full
            gaps[-1]["to_ms"] = entry["to_ms"]
        else:
            gaps.append(entry)
        log.warning("recording %s lost %d rows: the writer fell behind", self.name, gap.rows)

    def _note_event(self, received_us: int, event: dict) -> None:
        events = self.manifest["events"]
        events.append({"at_ms": received_us // 1000, "after_seq": self._seq,
                       **{k: event.get(k) for k in ("type", "source", "state", "detail",
                                                    "code", "message", "symbol", "interval")
                          if event.get(k) is not None}})
        del events[:-MAX_EVENTS]


def _iso_us(us: int) -> str:
    from ..timeutil import ms_to_iso

    return ms_to_iso(us // 1000)
