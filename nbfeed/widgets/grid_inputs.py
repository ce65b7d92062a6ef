"""What a LiveGrid accepts, checked: its first argument, row ids, rows and options.

Small pure functions, each raising :class:`nbfeed.errors.BadRequest` (or ``BadInterval``)
that names the bad value and what would be accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ..errors import BadRequest
from ..intervals import TICK, check_interval
from ..timeutil import to_ms
from .source import StreamSource, subscribe

MAX_FLUSH_HZ = 60.0


def resolve_stream(stream: Any, symbols: Any, interval: str | None) -> StreamSource | None:
    """The grid's stream adapter (a source name subscribes, and the grid owns that stream)."""
    if stream is None:
        if symbols is not None:
            raise BadRequest("symbols were given without a source; pass the source name first")
        return None
    if isinstance(stream, str):
        if symbols is None:
            raise BadRequest(f"LiveGrid({stream!r}, ...) needs symbols, e.g. ['AAPL', 'MSFT']")
        return StreamSource(subscribe(stream, symbols, interval), owned=True)
    if not callable(getattr(stream, "on_update", None)):
        raise BadRequest(
            f"LiveGrid needs a stream (with on_update) or a source name, got {stream!r:.80}"
        )
    if symbols is not None:
        raise BadRequest("symbols are only used with a source name, not with a stream object")
    return StreamSource(stream, owned=False)


def stream_interval(source: StreamSource | None, interval: str | None) -> str:
    """The stream's own interval (``interval`` must agree), else ``interval``, else tick."""
    own = source.interval if source is not None else None
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


def check_max_height(value: Any) -> int:
    """Grid height limit in pixels: an integer 80-4000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 80 <= value <= 4000:
        raise BadRequest(f"max_height must be an integer 80-4000 (pixels), got {value!r:.80}")
    return value


def check_timezone(value: Any) -> str:
    """An IANA timezone name ("UTC", "America/New_York") the grid shows times in."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str) or not value or len(value) > 64:
        raise BadRequest(f"timezone must be an IANA name like 'UTC', got {value!r:.80}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"unknown timezone {value!r:.80}; use an IANA name like 'UTC' or 'America/New_York'"
        ) from None
    return value


def check_stale_after(value: Any) -> float | None:
    """Seconds after which a row without updates is dimmed (None: never)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 < value <= 86_400
    ):
        raise BadRequest(f"stale_after must be seconds in (0, 86400] or None, got {value!r:.80}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """A real bool (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be True or False, got {value!r:.80}")
    return value


def is_index(value: Any) -> bool:
    """A non-negative int (a row number the browser may send)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
