"""Turning the many ways people write a time into epoch milliseconds (UTC).

Rules, stated once for all of nbfeed: naive datetimes and ISO strings without an offset are UTC;
numbers are epoch seconds when below 1e11 (before year 5138), milliseconds below 1e14,
microseconds below 1e17 and nanoseconds above. Anything else raises :class:`BadRequest` naming the
value and the field it was given for.

The number rule is for what people write. Code that already holds epoch ms must not send them
through it: ms times from 1966-11 to 1973-03 are below 1e11 and would be read as seconds. Such
code hands on ISO text (:func:`ms_to_iso` is exact to the millisecond) - or, for a provider's
rows, plain ints, which :mod:`nbfeed.providers.rows` takes as ms.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .errors import BadRequest, shown

_RELATIVE = re.compile(r"^\s*(?:\$?currentDate|now)\s*(?:([+-])\s*(\d+)\s*([smhdwMy]))?\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def number_to_ms(value: float) -> int:
    """Epoch seconds, ms, us or ns (chosen by magnitude) to epoch ms."""
    v = abs(value)
    if v < 1e11:
        return int(round(value * 1000))
    if v < 1e14:
        return int(value)
    if v < 1e17:
        return int(value // 1000)
    return int(value // 1_000_000)


def to_ms(value: Any, field: str = "time") -> int:
    """Convert ``value`` (number, ISO string, datetime, date, pandas/numpy time) to epoch ms.

    Also understands ``now``, ``now-1d`` and Workspace's ``$currentDate-1d`` (units s, m, h, d, w,
    M for months, y for years). Raises BadRequest for anything it cannot read.
    """
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"{field}: expected a time, got {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(f"{field}: expected a time, got {value!r}")
        return number_to_ms(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        try:
            return int(round(value.timestamp() * 1000))
        except (OverflowError, ValueError):
            raise BadRequest(f"{field}: {value.isoformat()} is outside the years 1..9999"
                             ) from None
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
                   * 1000)
    if isinstance(value, str):
        return _parse_string(value, field)
    # pandas.Timestamp is a datetime subclass; numpy.datetime64 and numpy numbers end up here.
    type_name = type(value).__name__
    if type_name == "datetime64":
        import numpy as np

        if np.isnat(value):
            raise BadRequest(f"{field}: expected a time, got NaT")
        return int(value.astype("datetime64[ms]").astype("int64"))
    if hasattr(value, "item"):
        return to_ms(value.item(), field)
    raise BadRequest(f"{field}: expected a time, got {type_name} {shown(value)}")


def _parse_string(text: str, field: str) -> int:
    s = text.strip()
    if not s:
        raise BadRequest(f"{field}: expected a time, got an empty string")
    if len(s) > 64:
        raise BadRequest(f"{field}: time string too long ({len(s)} characters)")
    m = _RELATIVE.match(s)
    if m:
        try:
            return _relative(m)
        except (OverflowError, ValueError):
            raise BadRequest(f"{field}: {text!r} is outside the years 1..9999") from None
    try:
        return number_to_ms(float(s)) if _looks_numeric(s) else _iso(s)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{field}: cannot read {text!r} as a time; use ISO 8601 (2026-01-02T09:30:00Z), "
            "epoch seconds or milliseconds"
        ) from None


def _looks_numeric(s: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+(\.\d*)?", s))


def _iso(s: str) -> int:
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s.replace(" ", "T", 1) if len(s) > 10 else s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def _relative(m: re.Match) -> int:
    now = now_ms()
    sign, amount, unit = m.groups()
    if not sign:
        return now
    n = int(amount) * (1 if sign == "+" else -1)
    if unit in _UNIT_MS:
        return now + n * _UNIT_MS[unit]
    dt = datetime.fromtimestamp(now / 1000, tz=timezone.utc)
    months = n if unit == "M" else 12 * n
    y, mo = divmod(dt.month - 1 + months, 12)
    day = min(dt.day, 28)
    return int(dt.replace(year=dt.year + y, month=mo + 1, day=day).timestamp() * 1000)


def datetimes_to_ms(values: Any) -> tuple[Any, Any]:
    """pandas/numpy datetimes (a Series, an Index or an array) -> ``(ms, valid)`` numpy arrays.

    Naive times are UTC, aware ones are converted. ``ms`` is int64 epoch milliseconds; ``valid``
    is False where a time is missing (NaT), and ``ms`` holds 0 there. Vectorized: the one place
    nbfeed turns a column of datetimes into epoch ms.
    """
    import numpy as np
    import pandas as pd

    index = pd.DatetimeIndex(values)
    valid = ~np.asarray(index.isna(), dtype=bool)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    ms = index.as_unit("ms").asi8
    return np.where(valid, ms, 0), valid


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ms_to_iso(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC with a ``Z``: whole seconds when exact, else milliseconds (what
    nbfeed shows people). A time outside years 1-9999 stays the number, as text."""
    try:
        dt = _EPOCH + timedelta(milliseconds=ms)
    except (OverflowError, ValueError):
        return str(ms)
    spec = "seconds" if ms % 1000 == 0 else "milliseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")
