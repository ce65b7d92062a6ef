"""The CSV folder as a store: which files are symbols, and refusing anything outside the folder.

:class:`CSVStore` maps symbols to files (symbol = file name without ``.csv``, exactly), keeps one
:class:`~nbfeed.providers.csv.file.CSVFile` per symbol (parsed once, kept fresh), and builds the
catalog entries. Listing the folder is cached by the folder's mtime, so a request costs one
``stat`` of the folder and one of the file.

Path safety: a symbol is only ever looked up in the folder's own listing; names with a path
separator, ``..``/``.``, NUL or an absolute path are refused with ``BadRequest``, and so is a file
that is a link resolving outside the folder. Failure behaviour: a file that cannot be served is
left out of the catalog with its reason (:meth:`CSVStore.unserved`); its neighbours are served as
usual.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from ...errors import BadInterval, BadRequest, UnknownSymbol
from ...intervals import BAR_INTERVALS
from .file import CSVFile
from .parse import Problem, ReadOptions


class CSVStore:
    """A folder of CSV files, one symbol per file.

    ``symbols()`` lists them; ``file(symbol)`` returns the refreshed :class:`CSVFile` or raises
    ``UnknownSymbol`` (no such file) / ``BadRequest`` (a name that is not a plain file name, or a
    link leading out of the folder).
    """

    def __init__(self, folder: str | Path, options: ReadOptions | None = None, *,
                 interval: str | None = None, log: logging.Logger | None = None) -> None:
        self.folder = Path(folder).expanduser()
        self.options = options or ReadOptions()
        if interval is not None and interval not in BAR_INTERVALS:
            raise BadInterval(f"interval {interval!r}: expected one of {', '.join(BAR_INTERVALS)}")
        self.interval = interval
        self.log = log or logging.getLogger("nbfeed.provider.csv")
        self._lock = threading.Lock()
        self._files: dict[str, CSVFile] = {}
        self._listing: tuple[int, dict[str, Path], list[Problem]] | None = None
        self._unserved: list[str] = []

    def symbols(self) -> dict[str, Path]:
        """Symbol -> path of every servable ``*.csv`` file directly in the folder (sorted)."""
        return self._list()[0]

    def _list(self) -> tuple[dict[str, Path], list[Problem]]:
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
            return {}, [Problem(self.folder.name, None, "CSV folder does not exist")]
        with self._lock:
            if self._listing is not None and self._listing[0] == mtime:
                return self._listing[1], self._listing[2]
            root = self.folder.resolve()
            found: dict[str, Path] = {}
            notes: list[Problem] = []
            for entry in sorted(os.scandir(self.folder), key=lambda e: e.name):
                name = entry.name
                if name.startswith(".") or len(name) <= 4 or name[-4:].lower() != ".csv":
                    continue  # hidden files, editor and OS droppings
                symbol = name[:-4]
                path = Path(entry.path)
                if entry.is_symlink() and not path.resolve().is_relative_to(root):
                    notes.append(Problem(name, None, "link points outside the CSV folder; "
                                         "refused"))
                    continue
                if not entry.is_file():
                    continue
                if symbol in found:
                    notes.append(Problem(name, None, f"same symbol as {found[symbol].name}; "
                                         "ignored"))
                    continue
                found[symbol] = path
            # unknown folder mtimes (same-second edits) only cost one extra listing
            self._listing = (mtime, found, notes)
            for gone in set(self._files) - set(found):
                del self._files[gone]
            return found, notes

    def file(self, symbol: Any) -> CSVFile:
        """The refreshed file of ``symbol``; see the class docstring for the errors."""
        if not isinstance(symbol, str) or not symbol:
            raise BadRequest(f"csv: symbol must be a non-empty string, got {symbol!r}")
        if any(c in symbol for c in ("/", "\\", "\0")) or symbol in (".", "..") or \
                os.path.isabs(symbol):
            raise BadRequest(f"csv: symbol {symbol!r} is not a file name in the CSV folder; "
                             "paths are refused")
        listed, notes = self._list()
        path = listed.get(symbol)
        if path is None:
            for p in notes:
                if p.path[:-4] == symbol:
                    raise BadRequest(f"csv: symbol {symbol!r}: {p.message}")
            some = ", ".join(list(listed)[:10])
            # Errors reach clients: never the server's absolute path.
            raise UnknownSymbol(f"csv: no file {symbol + '.csv'!r} in the CSV folder; "
                                f"symbols: {some}{', ...' if len(listed) > 10 else ''}")
        if not path.resolve().is_relative_to(self.folder.resolve()):
            raise BadRequest(f"csv: symbol {symbol!r} resolves outside the CSV folder; refused")
        with self._lock:
            f = self._files.get(symbol)
            if f is None:
                f = self._files[symbol] = CSVFile(path, symbol, self.options,
                                                  interval=self.interval, log=self.log)
        f.refresh()
        return f

    def history(self, symbol: str, interval: str, start: int | None = None,
                end: int | None = None, count: int | None = None) -> list[dict]:
        """Bars of ``symbol`` in ``[start, end)``, at most ``count`` newest (see CSVFile.bars)."""
        if count is not None and (not isinstance(count, int) or count < 0):
            raise BadRequest(f"count must be a non-negative integer, got {count!r}")
        return self.file(symbol).bars(interval, start, end, count)

    def problems(self, symbol: str | None = None) -> list[Problem]:
        """Problems of one symbol's file, or of the folder and every file read so far."""
        if symbol is not None:
            return self.file(symbol).problems()
        _, notes = self._list()
        with self._lock:
            files = list(self._files.values())
        out = list(notes)
        for f in files:
            out.extend(f.problems())
        return out

    def entries(self, source: str, categories: list[str] | None = None) -> list[dict]:
        """Catalog entries: one per servable file (see the provider docs for the naming).

        Files that cannot be served are left out; :meth:`unserved` then says why.
        """
        out = []
        unserved = [str(p) for p in self._list()[1]]
        for symbol in self.symbols():
            try:
                layout, error, intervals = self.file_unrefreshed(symbol).describe()
            except (OSError, KeyError) as exc:
                unserved.append(f"{symbol}.csv: {exc}")
                continue
            if layout is None:
                unserved.append(error or f"{symbol}.csv: cannot be served")
                continue
            outputs = []
            for name in layout.fields:
                axis = "price" if name in ("open", "high", "low", "close") else name
                outputs.append({"name": name, "y_axis": axis})
            out.append({"source": source, "name": symbol, "name_label": symbol,
                        "type": layout.kind, "categories": list(categories or ["CSV"]),
                        "intervals": intervals, "outputs": outputs})
        self._unserved = unserved
        return out

    def unserved(self) -> list[str]:
        """Why each file left out by the last :meth:`entries` call was left out."""
        return list(self._unserved)

    def file_unrefreshed(self, symbol: str) -> CSVFile:
        """The file object of a listed symbol without reading it (for :meth:`entries`)."""
        path = self.symbols()[symbol]
        with self._lock:
            f = self._files.get(symbol)
            if f is None:
                f = self._files[symbol] = CSVFile(path, symbol, self.options,
                                                  interval=self.interval, log=self.log)
            return f
