"""Clocks a stream runs on: the wall clock for live data, a virtual clock for replays.

Every :class:`~nbfeed.client.Stream` has a ``clock`` with ``now_ms()`` (epoch ms UTC). Code that
ages or times rows - a grid's cell flash, "updated 3 s ago", a chart's open bar, a strategy's
timer - should ask ``stream.clock.now_ms()`` (or ``stream.now_ms()``) instead of the system clock,
so it behaves the same live and in a replay at any speed, paused or after a seek.

:class:`VirtualClock` maps the monotonic wall clock onto a recording's time line: it reads
``position + elapsed * speed`` from an anchor, stands still while paused, jumps on ``seek`` and
re-anchors on every change, so it never runs backwards except when seeked backwards. ``speed``
``None`` means "as fast as possible": the clock then stands at the newest row it was told about
(:meth:`VirtualClock.advance_to`). Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .timeutil import now_ms as _wall_now_ms

MIN_SPEED, MAX_SPEED = 0.1, 1000.0


class WallClock:
    """The system clock: what live streams run on."""

    virtual = False
    speed: float | None = 1.0
    paused = False

    def now_ms(self) -> int:
        return _wall_now_ms()

    def state(self) -> dict[str, Any]:
        return {"virtual": False, "now_ms": self.now_ms(), "speed": 1.0, "paused": False}

    def __repr__(self) -> str:
        return "<WallClock>"


class VirtualClock:
    """A recording's clock (see module docstring). Times are epoch ms; speed a factor."""

    virtual = True

    def __init__(self, position_ms: float, speed: float | None = 1.0, paused: bool = False,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._position = float(position_ms)
        self._anchor = monotonic()
        self.speed = speed
        self.paused = paused

    def now_ms(self) -> int:
        """The recording's time now (ms since the epoch, UTC)."""
        with self._lock:
            return int(self._now())

    def _now(self) -> float:
        if self.paused or self.speed is None:
            return self._position
        return self._position + (self._monotonic() - self._anchor) * 1000.0 * self.speed

    def _reanchor(self) -> None:
        self._position = self._now()
        self._anchor = self._monotonic()

    def pause(self) -> None:
        with self._lock:
            self._reanchor()
            self.paused = True

    def resume(self) -> None:
        with self._lock:
            self._anchor = self._monotonic()
            self.paused = False

    def seek(self, position_ms: float) -> None:
        with self._lock:
            self._position = float(position_ms)
            self._anchor = self._monotonic()

    def set_speed(self, speed: float | None) -> None:
        with self._lock:
            self._reanchor()
            self.speed = speed

    def advance_to(self, position_ms: float) -> None:
        """The newest row so far was recorded at ``position_ms``: never stand behind it."""
        with self._lock:
            if position_ms > self._now():
                self._position = float(position_ms)
                self._anchor = self._monotonic()

    def seconds_until(self, position_ms: float) -> float:
        """Wall seconds until the clock reads ``position_ms`` (inf while paused)."""
        with self._lock:
            ahead = position_ms - self._now()
            if ahead <= 0:
                return 0.0
            if self.paused:
                return float("inf")
            if self.speed is None:
                return 0.0
            return ahead / 1000.0 / self.speed

    def set_state(self, position_ms: float, speed: float | None, paused: bool) -> None:
        with self._lock:
            self._position = float(position_ms)
            self._anchor = self._monotonic()
            self.speed = speed
            self.paused = paused

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"virtual": True, "now_ms": int(self._now()), "speed": self.speed,
                    "paused": self.paused}

    def __repr__(self) -> str:
        s = self.state()
        speed = "max" if s["speed"] is None else f"{s['speed']:g}x"
        return f"<VirtualClock {s['now_ms']} {speed}{' paused' if s['paused'] else ''}>"


def check_speed(speed: Any) -> float | None:
    """A replay speed: a number from 0.1 to 1000, or ``"max"``/``None`` (as fast as possible)."""
    from .errors import BadRequest

    if speed is None or speed == "max":
        return None
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or speed != speed:
        raise BadRequest(f"speed must be a number from {MIN_SPEED:g} to {MAX_SPEED:g}, or "
                         f"'max' (as fast as possible); got {speed!r:.40}")
    if speed == float("inf"):
        return None
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise BadRequest(f"speed must be from {MIN_SPEED:g} to {MAX_SPEED:g}, or 'max' (as "
                         f"fast as possible); got {speed:g}")
    return float(speed)
