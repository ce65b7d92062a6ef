"""Where recordings live on disk, and the names that are allowed there.

Layout (Hive-style partitions, so pandas, pyarrow, polars and DuckDB understand it as it is)::

    <home>/recordings/                       RECORDINGS_DIR, the only folder nbfeed writes to
      <name>/                                one recording
        _recording.json                      its manifest (``_`` prefix: Parquet readers skip it)
        source=<source>/date=<YYYY-MM-DD>/   one partition per source and UTC day of receipt
          part-<first seq>-<last seq>.parquet    rolled every ~1 s while recording
          data-<first seq>-<last seq>.parquet    parts merged (compacted)
          .<anything>.tmp                    being written; hidden from every reader

Every visible ``*.parquet`` file is complete: files are written under a hidden temporary name
and renamed into place, which is atomic on POSIX file systems.

Names are checked before any path is built (1-64 characters of letters, digits, ``.``, ``_``,
``-``, starting with a letter or digit), and every path is resolved and checked to stay inside
the recordings folder, so neither ``../x`` nor a symlink leads elsewhere. Errors are
:class:`~nbfeed.errors.BadRequest` naming the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadRequest

RECORDINGS_DIR = "recordings"
MANIFEST = "_recording.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Partition values (sources) follow the provider-name rule; days are ISO dates.
_SOURCE = re.compile(r"[a-z0-9_.-]{1,64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_FILE = re.compile(r"(part|data)-(\d{16})-(\d{16})\.parquet")


def check_name(name: object) -> str:
    """A recording name, or BadRequest saying what a name may be."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".tmp") \
            or ".." in name:
        raise BadRequest(f"recording name {name!r:.80} must be 1-64 characters of letters, "
                         "digits, '.', '_' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class DataFile:
    """One visible Parquet file of a recording, known from its path alone."""

    path: Path
    source: str
    day: str
    kind: str  # "part" | "data"
    first_seq: int
    last_seq: int

    def covers(self, other: DataFile) -> bool:
        """Whether this file's sequence range contains ``other``'s (a leftover of a merge)."""
        if self is other or (self.source, self.day) != (other.source, other.day):
            return False  # merges never cross a partition
        if not (self.first_seq <= other.first_seq and other.last_seq <= self.last_seq):
            return False
        same = (self.first_seq, self.last_seq) == (other.first_seq, other.last_seq)
        return not same or (self.kind == "data" and other.kind == "part")


def file_name(kind: str, first_seq: int, last_seq: int) -> str:
    return f"{kind}-{first_seq:016d}-{last_seq:016d}.parquet"


class Layout:
    """Paths under ``<home>/recordings``; never hands out one outside it."""

    def __init__(self, home: str | Path) -> None:
        self.root = (Path(home).expanduser() / RECORDINGS_DIR).resolve()

    def ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def recording_dir(self, name: str) -> Path:
        """The folder of recording ``name`` (checked; it need not exist)."""
        return self._inside(self.root / check_name(name))

    def manifest_path(self, name: str) -> Path:
        return self.recording_dir(name) / MANIFEST

    def partition_dir(self, name: str, source: str, day: str) -> Path:
        if not _SOURCE.fullmatch(source) or not _DAY.fullmatch(day):
            raise BadRequest(f"bad partition source={source!r:.80} date={day!r:.20}")
        return self._inside(self.recording_dir(name) / f"source={source}" / f"date={day}")

    def names(self) -> list[str]:
        """Names of the recordings on disk (folders with a valid name), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _NAME.fullmatch(p.name) and not p.is_symlink())

    def data_files(self, name: str) -> list[DataFile]:
        """Every visible Parquet file of ``name``, ordered by source, then sequence number.

        Files whose names do not follow the layout are ignored (a user's own notes, say).
        """
        folder = self.recording_dir(name)
        found: list[DataFile] = []
        for source_dir in sorted(folder.glob("source=*")):
            source = source_dir.name.partition("=")[2]
            if not source_dir.is_dir() or not _SOURCE.fullmatch(source):
                continue
            for day_dir in sorted(source_dir.glob("date=*")):
                day = day_dir.name.partition("=")[2]
                if not day_dir.is_dir() or not _DAY.fullmatch(day):
                    continue
                for path in day_dir.iterdir():
                    m = _FILE.fullmatch(path.name)
                    if m and path.is_file():
                        found.append(DataFile(path, source, day, m.group(1), int(m.group(2)),
                                              int(m.group(3))))
        found.sort(key=lambda f: (f.source, f.first_seq, f.kind != "data"))
        return found

    def temp_files(self, name: str) -> list[Path]:
        """Hidden files being written (or left behind by a crash) in ``name``'s partitions."""
        folder = self.recording_dir(name)
        return [p for p in folder.glob("source=*/date=*/.*.tmp") if p.is_file()]

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise BadRequest(f"path {str(path)!r:.120} is outside the recordings folder")
        return resolved


def split_overlaps(files: list[DataFile]) -> tuple[list[DataFile], list[DataFile]]:
    """``(kept, covered)``: files whose sequence range another file already holds are covered.

    A merge writes its result before it deletes its inputs; a crash between the two leaves
    both, and the inputs are then covered (readers skip them, repair deletes them).
    """
    covered = [f for f in files if any(g.covers(f) for g in files)]
    ids = {id(f) for f in covered}
    return [f for f in files if id(f) not in ids], covered
