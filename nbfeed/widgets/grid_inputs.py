"""What a LiveGrid accepts, checked: its first argument, row ids, rows and numeric options.

Small pure functions, each raising :class:`nbfeed.errors.BadRequest` (or ``BadInterval``)
that names the bad value and what would be accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import pandas as pd

from ..errors import BadRequest
from ..intervals import TICK, check_interval
from ..timeutil import to_ms

MAX_FLUSH_HZ = 60.0


def resolve_stream(stream: Any, symbols: Any, interval: str | None) -> tuple[Any, bool]:
    """The grid's stream and whether the grid owns it (a source name subscribes lazily)."""
    if stream is None:
        if symbols is not None:
            raise BadRequest("symbols were given without a source; pass the source name first")
        return None, False
    if isinstance(stream, str):
        if symbols is None:
            raise BadRequest(f"LiveGrid({stream!r}, ...) needs symbols, e.g. ['AAPL', 'MSFT']")
        from .. import connect  # lazily: the notebook API may not be loaded yet

        return connect().subscribe(stream, symbols, interval=interval or TICK), True
    if not callable(getattr(stream, "on_update", None)):
        raise BadRequest(
            f"LiveGrid needs a stream (with on_update) or a source name, got {stream!r:.80}"
        )
    if symbols is not None:
        raise BadRequest("symbols are only used with a source name, not with a stream object")
    return stream, False


def stream_interval(stream: Any, interval: str | None) -> str:
    """The stream's own interval (``interval`` must agree), else ``interval``, else tick."""
    own = getattr(stream, "interval", None) if stream is not None else None
    if own is not None:
        check_interval(own)
        if interval is not None and interval != own:
            raise BadRequest(f"interval {interval!r} does not match the stream's {own!r}")
        return own
    return check_interval(interval if interval is not None else TICK)


def key_fields_for(row_id: Any, bar: bool) -> tuple[str, ...]:
    """The fields that identify a row; candle grids add ``time`` (one row per bar)."""
    if isinstance(row_id, str):
        fields = (row_id,)
    elif isinstance(row_id, (list, tuple)) and row_id and all(isinstance(f, str) for f in row_id):
        fields = tuple(row_id)
    else:
        raise BadRequest(f"row_id must be a field name or a list of them, got {row_id!r:.80}")
    if any(not f for f in fields) or len(set(fields)) != len(fields):
        raise BadRequest(f"row_id has empty or repeated fields: {row_id!r:.80}")
    if bar and "time" not in fields:
        fields = (*fields, "time")  # one row per bar: same time replaces, a later one appends
    return fields


def key_function(key_fields: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Hashable]:
    """A fast row -> key function; raises KeyError/TypeError/ValueError on a bad row."""
    def as_ms(value: Any) -> int:
        return value if type(value) is int else to_ms(value)

    if len(key_fields) == 1:
        (name,) = key_fields
        if name == "time":
            return lambda row: as_ms(row[name])
        return lambda row: _hashable(row[name])
    if key_fields == ("symbol", "time"):
        return lambda row: (_hashable(row["symbol"]), as_ms(row["time"]))
    return lambda row: tuple(
        as_ms(row[f]) if f == "time" else _hashable(row[f]) for f in key_fields
    )


def _hashable(value: Any) -> Hashable:
    if value is None:
        raise ValueError("row id is None")
    hash(value)
    return value


def latest_rows(stream: Any) -> list[dict[str, Any]]:
    """The stream's current rows (its ``latest`` snapshot) as row dicts; [] when none."""
    latest = getattr(stream, "latest", None) if stream is not None else None
    if latest is None:
        return []
    if isinstance(latest, pd.DataFrame):
        return frame_rows(latest) if len(latest) else []
    return [dict(r) for r in latest]


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as row dicts; a named index becomes a field, datetimes become epoch ms."""
    df = frame if isinstance(frame.index, pd.RangeIndex) else frame.reset_index()
    for name in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[name]):
            ts = df[name]
            if getattr(ts.dt, "tz", None) is None:
                ts = ts.dt.tz_localize("UTC")
            df = df.assign(**{name: (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")})
    return [{str(k): v for k, v in row.items()} for row in df.to_dict("records")]


def check_flush_hz(value: Any) -> float:
    """Screen updates per second: a number in (0, 60]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 < value <= MAX_FLUSH_HZ
    ):
        raise BadRequest(
            f"flush_hz must be a number above 0 and at most {MAX_FLUSH_HZ:g} (screen updates per "
            f"second), got {value!r:.80}"
        )
    return float(value)


def check_flash_ms(value: Any) -> float:
    """Highlight duration: 0-60000 ms (0 turns highlights off)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 <= value <= 60_000
    ):
        raise BadRequest(f"flash_ms must be a number of milliseconds 0-60000, got {value!r:.80}")
    return float(value)


def check_max_rows(value: Any) -> int:
    """Rolling window size: an integer 1-1,000,000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise BadRequest(f"max_rows must be an integer 1-1000000, got {value!r:.80}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """A real bool (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be True or False, got {value!r:.80}")
    return value


def is_index(value: Any) -> bool:
    """A non-negative int (a row number the browser may send)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
