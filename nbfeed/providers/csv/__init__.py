"""The ``csv`` provider: a folder of CSV files as a data source (see :mod:`.provider`).

Inside: :mod:`.provider` (options, catalog, history, live streams), :mod:`.store` (the folder:
which files are symbols), :mod:`.file` (one file parsed into arrays, kept fresh),
:mod:`.resample` (coarser bars), :mod:`.parse` (CSV text into arrays, every problem named) and
:mod:`.times` (time text into epoch ms; which intervals a file serves).
"""

from .provider import SAMPLE_DIR, CSVProvider, CSVSettings, read_settings

__all__ = ["SAMPLE_DIR", "CSVProvider", "CSVSettings", "read_settings"]
