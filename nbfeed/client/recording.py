"""``Recording``: a notebook's handle on one recording, live or finished.

``feed.record(...)`` and ``stream.record(...)`` return one; ``feed.recording(name)`` finds one
by name. The recording itself lives at the hub (the server, or the embedded hub), so it goes on
while the notebook does other things, and a server's recordings go on with no notebook open.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .feed import Feed
    from .stream import Stream


class Recording:
    """Recording ``name`` of ``feed``'s hub (see module docstring)."""

    def __init__(self, feed: Feed, name: str) -> None:
        self.feed = feed
        self.name = name

    def info(self) -> dict[str, Any]:
        """Status, streams, span (``start``/``end``), rows, bytes, lost rows, gaps..."""
        return self.feed._recording_info(self.name)

    @property
    def status(self) -> str:
        """``recording``, ``stopped``, ``finished``, ``limit``, ``failed`` or ``interrupted``."""
        return self.info()["status"]

    def stop(self) -> dict[str, Any]:
        """Stop recording: every row received so far is written. Returns the final info."""
        return self.feed._recording_stop(self.name)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the recording ends by itself (its ``duration``, a limit); its info."""
        return self.feed._recording_wait(self.name, timeout)

    def delete(self) -> None:
        """Delete the recording's files (a live recording is stopped first)."""
        self.feed._recording_delete(self.name)

    def export(self, path: str | Path, format: str | None = None, *,
               overwrite: bool = False) -> Path:
        """Write the whole recording to one Parquet or CSV file (format from the extension)."""
        return self.feed._recording_export(self.name, Path(path), format, overwrite)

    def rows(self) -> pd.DataFrame:
        """Every recorded row as a DataFrame: ``seq, received, interval, time, symbol``, the
        fields, and ``source`` (times tz-aware UTC)."""
        return self.feed._recording_frame(self.name)

    def replay(self, symbols: str | list[str] | None = None, interval: str | None = None,
               **options: Any) -> Stream:
        """``feed.subscribe("replay", ...)`` on this recording; symbols and interval default to
        what was recorded (the first recorded stream's)."""
        info = self.info()
        streams = info.get("streams") or [{}]
        if symbols is None:
            symbols = list(streams[0].get("symbols") or info.get("symbols") or [])
        if interval is None:
            interval = streams[0].get("interval") or "tick"
        return self.feed.subscribe("replay", symbols, interval, recording=self.name, **options)

    def history(self, symbol: str, interval: str = "1m", start: Any = None, end: Any = None,
                count: int | None = None) -> pd.DataFrame:
        """Bars built from this recording's rows as they stood at ``end`` (default: all)."""
        return self.feed.history("replay", symbol, interval, start=start, end=end, count=count,
                                 recording=self.name)

    def __repr__(self) -> str:
        try:
            info = self.info()
        except Exception as exc:  # deleted meanwhile, server gone...
            return f"<nbfeed.Recording {self.name!r} ({type(exc).__name__})>"
        return (f"<nbfeed.Recording {self.name!r} {info.get('status')} "
                f"{info.get('rows', 0):,} rows, {info.get('bytes', 0):,} bytes>")
