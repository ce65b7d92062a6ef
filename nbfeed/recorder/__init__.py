"""nbfeed's flight recorder: every row a hub delivers, kept in Parquet, read back in order.

Modules, bottom up (none imports the hub; the hub drives them through :mod:`.service`):

* :mod:`.layout` - names and paths under ``<home>/recordings`` (Hive partitions by source and
  UTC day); nothing outside that folder is ever written or read.
* :mod:`.schema` - the columns (``seq``, ``received``, ``interval``, ``time``, ``symbol``,
  fields) and the exact conversion of rows to Arrow and back.
* :mod:`.files` - part files written under a hidden name and renamed into place; merges.
* :mod:`.manifest` - ``_recording.json``: what was asked, status, counts, gaps, events.
* :mod:`.limits` - disk limit, age window, duration, free-space floor.
* :mod:`.box` - the recorder's inbox at the hub: bounded, never conflating, counting losses.
* :mod:`.recorder` - the writer thread of one recording.
* :mod:`.reader` - rows back in ``seq`` order, filtered, in bounded memory.
* :mod:`.bars` - bars built from recorded rows (``history()`` on a recording).
* :mod:`.store` - list, describe, repair, delete, export recordings; read them into pandas.
* :mod:`.service` - the hub's recordings (start/stop from any front end).

Replay is the built-in ``replay`` provider (:mod:`nbfeed.providers.replay`).
"""

from .layout import RECORDINGS_DIR, Layout, check_name
from .limits import Limits, make_limits
from .reader import RecordingReader, RowFilter
from .store import RecordingStore

__all__ = ["RECORDINGS_DIR", "Layout", "Limits", "RecordingReader", "RecordingStore",
           "RowFilter", "check_name", "make_limits"]
