"""How much a recording may take: its disk limit, its age window and its duration.

* ``max_bytes`` - the recording's visible Parquet files never add up to more. The writer checks
  each part file before it makes it visible; the part that would cross the limit is deleted and
  the recording stops with status ``limit`` and a message saying so (default 1 GiB).
* ``max_age`` - seconds of data to keep: files whose newest row was received longer ago than
  that are deleted after each flush, so a long recording is a rolling window (default: keep all).
* ``duration`` - seconds after which the recording stops by itself (status ``finished``).
* ``min_free_bytes`` - the recording also stops (status ``limit``) when the disk it writes to
  has less free space than this (default 256 MiB), before the disk fills up for everyone.

Every value is checked here, with errors naming the field (:class:`~nbfeed.errors.BadRequest`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import BadRequest

DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MIN_FREE_BYTES = 256 << 20
_MAX_SECONDS = 366 * 86_400 * 10


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age: float | None = None
    duration: float | None = None
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_limits(max_bytes: Any = None, max_age: Any = None, duration: Any = None,
                min_free_bytes: Any = None) -> Limits:
    """Checked limits; ``None`` means the default (see the module docstring)."""
    return Limits(
        max_bytes=DEFAULT_MAX_BYTES if max_bytes is None
        else _whole(max_bytes, "max_bytes", 1, 1 << 50),
        max_age=None if max_age is None else _seconds(max_age, "max_age"),
        duration=None if duration is None else _seconds(duration, "duration"),
        min_free_bytes=DEFAULT_MIN_FREE_BYTES if min_free_bytes is None
        else _whole(min_free_bytes, "min_free_bytes", 0, 1 << 50))


def _whole(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not value.is_integer()):
        raise BadRequest(f"{field} must be a whole number of bytes, got {value!r:.40}")
    value = int(value)
    if not low <= value <= high:
        raise BadRequest(f"{field} must be between {low} and {high} bytes, got {value}")
    return value


def _seconds(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise BadRequest(f"{field} must be a number of seconds, got {value!r:.40}")
    if not 0 < value <= _MAX_SECONDS:
        raise BadRequest(f"{field} must be more than 0 and at most {_MAX_SECONDS} seconds, "
                         f"got {value}")
    return float(value)


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: what limit messages show."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
