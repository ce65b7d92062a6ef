"""The ``csv`` provider: a folder of CSV files as a data source.

Folder
    Option ``folder``, else the ``NBFEED_CSV_DIR`` environment variable, else the small sample
    folder shipped with nbfeed (``nbfeed/data/sample_csv``). Only ``*.csv`` files directly in the
    folder are read (``.CSV`` too); hidden files and subfolders are ignored.

Symbols
    A file's symbol is its name without ``.csv``, exactly: case, dots, dashes, spaces and any
    Unicode are kept (``BRK.B.csv`` -> ``BRK.B``, ``EUR-USD.csv`` -> ``EUR-USD``, ``my file.csv``
    -> ``my file``). A symbol that is a path (``../x``, ``/etc/x``, ``a/b``) is refused, and so is
    a file that is a link pointing outside the folder.

Layout (example)::

    date,open,high,low,close,volume,vwap
    2024-01-02,187.15,188.44,183.89,185.64,82488700,185.9
    2024-01-03,184.22,185.88,183.43,184.25,58414500,184.6

* The first non-blank line is the header. The date column is the option ``date_column`` when set
  (a name, or a list of names joined with a space, e.g. ``["Date", "Time"]``), else the first of
  ``date``, ``time``, ``timestamp``, ``datetime`` (any case); a ``date`` column next to a ``time``
  column of clock times is read as one date and time; failing all that, the first column when it
  holds times.
* Times: ISO 8601 (``2024-01-02``, ``2024-01-02T09:30:00``, ``2024-01-02 09:30:00.250``, with
  ``Z`` or ``+01:00``), epoch seconds or epoch milliseconds (told apart by size), or
  ``YYYYMMDD``. Timezone rules: a time with ``Z`` or an offset is exact; a naive date-time is in
  the option ``timezone`` (an IANA name such as ``America/New_York``), UTC when unset; a date
  without a time of day is a calendar day and starts at 00:00 UTC in any case (so daily bars sit
  on nbfeed's UTC day grid); epoch numbers are UTC. In a local timezone, the repeated hour when
  clocks go back reads as its first occurrence, and times in the skipped hour move forward.
* ``open, high, low, close`` (any case, all four) make the file a **candlestick** with
  ``volume`` when present. Every other column whose values are numbers is a **line series** of
  its own, named exactly as in the header. Text columns (and a ``symbol`` column) are ignored. A
  file without all four candle columns is a line file: each numeric column is a line series.
* Rows need not be sorted (newest-first files are fine). When two rows have the same time the
  later line wins, as a live bar update would.
* The bar interval of a file is the nearest nbfeed interval to the median spacing of its times
  (option ``interval`` forces one). Coarser intervals that are whole multiples are served by
  resampling (open first, high max, low min, close last, volume sum, line columns last value).

Catalog and rows: one entry per file, named after the file. Its ``type`` is ``candlestick`` or
``line`` and its ``outputs`` list every series of the file, each named after its own column
(``open`` .. ``volume`` on the ``price``/``volume`` axes, every other column on an axis of its
own name). Rows carry every series under its own column name, so each series always carries its
own column's values::

    {"time": 1704153600000, "symbol": "ACME", "open": 187.15, ..., "volume": 82488700.0,
     "vwap": 185.9}

A missing value is ``None``. One entry per file (rather than one per column) keeps a symbol equal
to a file name (``:`` or any other separator would be ambiguous, since it may occur in file names)
and lets one subscription or history request bring the whole file.

Streaming (option ``mode``):

* ``replay`` - publish the file's bars from the start (or from option ``replay_start``, a time)
  at ``replay_speed`` bars of the subscribed interval per second (default 1), with their own
  times; at the end, follow the file as ``tail`` does.
* ``tail`` - publish the newest bar, then every bar appended to the file (checked every
  ``poll_interval`` seconds, default 1). A writer may rewrite the newest bar by appending a line
  with the same time; a last line without its line break yet is read, and read again once
  complete.
* ``auto`` (default) - ``tail`` when the newest row is recent (within three bars or five
  minutes of now), else ``replay``.

Other options: ``delimiter`` (default ``,``), ``encoding`` (default ``utf-8``; must be
ASCII-compatible), ``categories`` (catalog categories, default ``["CSV"]``).

Malformed files never take the provider down. Rows with a bad or missing date, a bad or missing
candle value, the wrong number of fields, or bytes that are not valid in the encoding are skipped
and reported with file and line (log warnings, :meth:`CSVProvider.problems`); a bad number in
``volume`` or a line column reads as missing and is reported too. A file that cannot be served
at all (empty, no date column, no numeric column) is left out of the catalog, and the provider
reports ``degraded`` with the reason; every other file is served as usual.
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import BadRequest
from ...intervals import BAR_INTERVALS, check_interval, interval_ms
from ...timeutil import now_ms, to_ms
from .._config import positive_number
from ..base import Provider
from .file import CSVFile
from .parse import Problem, ReadOptions
from .store import CSVStore

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample_csv"
MODES = ("auto", "replay", "tail")
OPTIONS = ("folder", "date_column", "timezone", "delimiter", "encoding", "interval", "mode",
           "replay_speed", "replay_start", "poll_interval", "categories",
           "idle_timeout")  # the last one is read by the hub
_MAX_BATCH = 10_000  # bars per publish while a fast replay catches up
_LIVE_WINDOW_MS = 5 * 60_000


@dataclass(frozen=True)
class CSVSettings:
    """The provider's options, validated."""

    folder: Path
    read: ReadOptions
    interval: str | None
    mode: str
    replay_speed: float
    replay_start: int | None
    poll_interval: float
    categories: list[str]


def read_settings(options: dict[str, Any]) -> CSVSettings:
    """Validate the provider options; BadRequest names the option and what it accepts."""
    folder = options.get("folder") or os.environ.get("NBFEED_CSV_DIR") or SAMPLE_DIR
    date_column = options.get("date_column")
    if date_column is None:
        columns: tuple[str, ...] = ()
    elif isinstance(date_column, str) and date_column.strip():
        columns = (date_column.strip(),)
    elif isinstance(date_column, (list, tuple)) and date_column and \
            all(isinstance(c, str) and c.strip() for c in date_column):
        columns = tuple(c.strip() for c in date_column)
    else:
        raise BadRequest(f"csv option date_column: expected a column name or a list of names, "
                         f"got {date_column!r}")
    tz = options.get("timezone")
    if tz is not None:
        _check_timezone(tz)
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise BadRequest(f"csv option delimiter: expected one character such as ',' or ';', "
                         f"got {delimiter!r}")
    encoding = options.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise BadRequest(f"csv option encoding: unknown encoding {encoding!r}; e.g. 'utf-8', "
                         "'latin-1', 'cp1252'") from None
    interval = options.get("interval")
    if interval is not None and interval not in BAR_INTERVALS:
        raise BadRequest(f"csv option interval: {interval!r} is not a bar interval; expected "
                         f"one of {', '.join(BAR_INTERVALS)}")
    mode = options.get("mode", "auto")
    if mode not in MODES:
        raise BadRequest(f"csv option mode: {mode!r}; expected one of {', '.join(MODES)}")
    categories = options.get("categories", ["CSV"])
    if isinstance(categories, str):
        categories = [categories]
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise BadRequest(f"csv option categories: expected a list of strings, got {categories!r}")
    start = options.get("replay_start")
    return CSVSettings(
        folder=Path(folder).expanduser(),
        read=ReadOptions(date_column=columns, timezone=tz, delimiter=delimiter,
                         encoding=encoding),
        interval=interval, mode=mode,
        replay_speed=positive_number(options, "csv", "replay_speed", 1.0),
        replay_start=None if start is None else to_ms(start, "csv option replay_start"),
        poll_interval=positive_number(options, "csv", "poll_interval", 1.0),
        categories=categories)


def _check_timezone(tz: Any) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not isinstance(tz, str) or not tz:
            raise ValueError
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"csv option timezone: {tz!r} is not an IANA timezone name such as "
                         "'America/New_York' or 'Europe/London'") from None


class CSVProvider(Provider):
    """Serves a folder of CSV files: catalog, history, replay and live tailing (see module)."""

    name = "csv"
    summary = "A folder of CSV files (NBFEED_CSV_DIR, else nbfeed's samples)"
    intervals = BAR_INTERVALS

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            self.log.warning("csv: ignoring unknown options %s; known: %s", ", ".join(unknown),
                             ", ".join(OPTIONS))
        self.settings = read_settings(options)
        self._store: CSVStore | None = None
        self._followers: dict[tuple[str, str], _FileFollower] = {}
        self._followers_lock = threading.Lock()

    @property
    def store(self) -> CSVStore:
        """The folder store (created on first use, so the class works outside a process)."""
        if self._store is None:
            self._store = CSVStore(self.settings.folder, self.settings.read,
                                   interval=self.settings.interval, log=self.log)
        return self._store

    def init(self) -> None:
        if not self.settings.folder.is_dir():
            self.log.warning("csv: folder %s does not exist (option folder / NBFEED_CSV_DIR)",
                             self.settings.folder)

    def get_dataset(self) -> list[dict]:
        store = self.store
        if not store.folder.is_dir():
            # Statuses reach every client: the folder's name, not where it sits on the server.
            self.set_status("degraded", f"csv: folder {store.folder.name!r} does not exist")
            return []
        entries = store.entries(self.name, self.settings.categories)
        unserved = store.unserved()
        if unserved:
            self.set_status("degraded", f"csv: {len(unserved)} file(s) not served: "
                            + "; ".join(unserved[:5]))
        else:
            self.set_status("running", f"csv: {len(entries)} files in {store.folder.name!r}")
        return entries

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None) -> list[dict]:
        return self.store.history(symbol, interval, start, end, count)

    def problems(self, symbol: str | None = None) -> list[Problem]:
        """What is wrong in the folder, or in one symbol's file, with file and line."""
        return self.store.problems(symbol)

    def subscribe(self, symbol: str, interval: str) -> None:
        f = self.store.file(symbol)
        if f.layout is None:
            raise BadRequest(f"csv: {symbol!r} cannot be streamed: {f.error}")
        check_interval(interval, f.intervals())
        follower = _FileFollower(self, f, interval, self._mode_for(f))
        with self._followers_lock:
            old = self._followers.pop((symbol, interval), None)
            self._followers[(symbol, interval)] = follower
        if old is not None:
            old.stop()
        follower.start()

    def unsubscribe(self, symbol: str, interval: str) -> None:
        with self._followers_lock:
            follower = self._followers.pop((symbol, interval), None)
        if follower is not None:
            follower.stop()
            follower.join(timeout=2.0)

    def _mode_for(self, f: CSVFile) -> str:
        if self.settings.mode != "auto":
            return self.settings.mode
        newest = f.last_time()
        if newest is None:
            return "tail"
        window = max(3 * interval_ms(f.native_interval), _LIVE_WINDOW_MS)
        return "tail" if now_ms() - newest <= window else "replay"


class _FileFollower(threading.Thread):
    """One stream: replays a file then follows it, or follows it from the newest bar.

    Stops within a fraction of a second of :meth:`stop` or the provider's ``stopping`` event.
    An error reading the file (it vanished, it is being replaced) is logged once and retried at
    the next poll; the stream resumes when the file is back.
    """

    def __init__(self, provider: CSVProvider, file: CSVFile, interval: str, mode: str) -> None:
        super().__init__(name=f"nbfeed-csv-{mode}-{file.symbol}-{interval}", daemon=True)
        self.provider = provider
        self.file = file
        self.interval = interval
        self.mode = mode
        self._stop_event = threading.Event()
        self._last: dict | None = None
        self._failing = False

    def stop(self) -> None:
        self._stop_event.set()

    def _sleep(self, seconds: float) -> bool:
        """Wait; True when the follower must stop."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stop_event.is_set() or self.provider.stopping.is_set():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # The provider's stopping event cannot wake us; a short slice bounds the delay.
            self._stop_event.wait(min(remaining, 0.25))

    def _publish(self, rows: list[dict]) -> None:
        if rows:
            self.provider.publish(rows, interval=self.interval)
            self._last = rows[-1]

    def run(self) -> None:
        try:
            if self.mode == "replay":
                if self._replay():
                    return
            else:
                self._publish(self.file.bars(self.interval, count=1))
            self._follow()
        except Exception:
            self.provider.log.exception("csv: stream %s %s stopped", self.file.symbol,
                                        self.interval)

    def _replay(self) -> bool:
        """Publish bars at the configured pace until the end; True when told to stop."""
        speed = self.provider.settings.replay_speed
        cursor = self.provider.settings.replay_start
        started = time.monotonic()
        sent = 0
        while True:
            due = int((time.monotonic() - started) * speed) + 1 - sent
            if due > 0:
                want = min(due, _MAX_BATCH)
                rows = self.file.bars(self.interval, start=cursor, first=want)
                self._publish(rows)
                sent += len(rows)
                if len(rows) < want:
                    return False  # the end of the file: follow it from here
                cursor = rows[-1]["time"] + 1
            if self._sleep(max(0.01, (sent / speed) - (time.monotonic() - started))):
                return True

    def _follow(self) -> None:
        while not self._sleep(self.provider.settings.poll_interval):
            try:
                changed = self.file.refresh()
            except Exception as exc:
                if not self._failing:
                    self.provider.log.warning("csv: %s: %s (retrying)", self.file.path, exc)
                self._failing = True
                continue
            self._failing = False
            if not changed:
                continue
            start = self._last["time"] if self._last else None
            rows = self.file.bars(self.interval, start=start)
            if rows and rows[0] == self._last:
                rows = rows[1:]  # the newest bar we sent is unchanged
            self._publish(rows)
