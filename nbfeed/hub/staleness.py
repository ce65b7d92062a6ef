"""Stream health: how often each live stream should speak, and whether it is live, stale or closed.

A quiet market and a dead feed look the same from far away: no rows. :class:`StreamHealth` tells
them apart per stream ``(source, symbol, interval)``:

* **Expected cadence.** Every stream learns the gap between its bursts of rows (the 90th
  percentile of the last :data:`GAPS_KEPT` gaps, so one long pause does not teach it to wait
  forever). A candle stream never expects to wait longer than its interval: a bar must at least
  start once per interval. Until :attr:`StalenessRules.learn_from` gaps are seen, a stream
  expects ``initial_gap`` (capped by the interval for candles). Quote streams are capped at
  ``max_quote_gap`` (an illiquid symbol still has a bound).
* **Stale** when the stream has been silent for more than ``factor`` times its expected gap,
  and at least ``min_silence`` seconds. The first fresh row makes it **live** again, at once.
* **Closed** when its provider said the symbol's market is closed
  (:meth:`nbfeed.providers.base.Provider.set_market_state`): silence is then expected and never
  reported as stale. When the market opens again the stream is live, and stale once it has been
  silent for too long counted from the opening.

Transitions are reported through ``emit(key, event)`` as ``status`` events of that one stream::

    {"type": "status", "source": ..., "symbol": ..., "interval": ..., "state": "stale"|"live"|
     "closed", "age": seconds since its newest row (None before the first), "expected": the
     expected gap in seconds, "detail": "..."}

Cost: :meth:`saw_rows` is the hot path (called for every burst of every stream): a clock read, a
deque append and a comparison. :meth:`check` walks every stream (the hub calls it every
``check_every`` seconds); a percentile is computed only for streams already silent for
``min_silence``. Not thread-safe: the hub's event loop calls everything.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..intervals import BAR_INTERVALS, TICK, interval_ms

StreamKey = tuple[str, str, str]

#: Recent gaps a stream learns its cadence from.
GAPS_KEPT = 32


@dataclass(frozen=True)
class StalenessRules:
    """When a stream counts as stale (see the module docstring); seconds throughout."""

    #: Stale after this many expected gaps of silence...
    factor: float = 4.0
    #: ...and never before this much silence (scheduling jitter is not a dead feed).
    min_silence: float = 2.0
    #: The gap a stream expects before it has learned its own.
    initial_gap: float = 5.0
    #: The longest gap a quote stream may learn to expect.
    max_quote_gap: float = 300.0
    #: Gaps a stream must have seen before it trusts what it learned.
    learn_from: int = 4
    #: How often the hub checks every stream.
    check_every: float = 0.25


class _Health:
    __slots__ = ("bar_s", "closed", "detail", "gaps", "last", "since", "state")

    def __init__(self, bar_s: float | None, now: float) -> None:
        self.bar_s = bar_s  # the bar length for candle streams, None for quotes
        self.last: float | None = None  # clock of the newest burst
        self.since = now  # silence is counted from max(last, since): tracking or market open
        self.gaps: deque[float] = deque(maxlen=GAPS_KEPT)
        self.state = "live"
        self.closed = False
        self.detail = ""


class StreamHealth:
    """The health of every tracked stream; reports changes through ``emit(key, event)``."""

    def __init__(self, rules: StalenessRules | None = None, *,
                 emit: Callable[[StreamKey, dict], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules or StalenessRules()
        self._emit = emit
        self._clock = clock
        self._streams: dict[StreamKey, _Health] = {}
        # (source, symbol) -> (state, detail) as the provider last said; symbol None = all
        self._markets: dict[tuple[str, str | None], tuple[str, str]] = {}

    # ---- what the hub tells us --------------------------------------------------------------

    def track(self, key: StreamKey) -> None:
        """Start watching a stream (its first subscriber arrived). Only live quote and candle
        streams are watched: a stream of another kind (e.g. a replay session, whose clock may
        be paused) is not."""
        if key in self._streams or (key[2] != TICK and key[2] not in BAR_INTERVALS):
            return
        bar_s = None if key[2] == TICK else interval_ms(key[2]) / 1000.0
        health = self._streams[key] = _Health(bar_s, self._clock())
        market = self._markets.get((key[0], key[1])) or self._markets.get((key[0], None))
        if market is not None and market[0] == "closed":
            health.closed, health.state, health.detail = True, "closed", market[1]

    def forget(self, key: StreamKey) -> None:
        """Stop watching a stream (its last subscriber left)."""
        self._streams.pop(key, None)

    def saw_rows(self, key: StreamKey) -> None:
        """A burst of rows of ``key`` arrived (the hot path); a stale stream is live again."""
        health = self._streams.get(key)
        if health is None:
            return
        now = self._clock()
        if health.last is not None:
            health.gaps.append(now - health.last)
        health.last = now
        if health.state == "stale":
            health.state, health.detail = "live", ""
            self._emit(key, self._event(key, health, now))

    def market(self, source: str, symbols: Iterable[str] | None, state: str,
               detail: str = "") -> None:
        """The provider of ``source`` says the market of ``symbols`` (None: all) is open or
        closed; streams that change state are reported."""
        names = None if symbols is None else set(symbols)
        if names is None:
            self._markets = {k: v for k, v in self._markets.items() if k[0] != source}
            self._markets[(source, None)] = (state, detail)
        else:
            for symbol in names:
                self._markets[(source, symbol)] = (state, detail)
        now = self._clock()
        for key, health in self._streams.items():
            if key[0] != source or (names is not None and key[1] not in names):
                continue
            closed = state == "closed"
            if closed:
                if health.state != "closed" or health.detail != detail:
                    health.closed, health.state, health.detail = True, "closed", detail
                    self._emit(key, self._event(key, health, now))
            elif health.closed:
                health.closed, health.state, health.detail = False, "live", detail
                health.since = now  # silence counts from the opening
                self._emit(key, self._event(key, health, now))

    def check(self) -> None:
        """Mark every stream silent for too long as stale (and report it)."""
        now = self._clock()
        rules = self.rules
        for key, health in self._streams.items():
            if health.state != "live":
                continue
            start = health.since if health.last is None else max(health.last, health.since)
            silence = now - start
            if silence < rules.min_silence:
                continue
            expected = self.expected_gap(key)
            if silence > max(rules.min_silence, rules.factor * expected):
                health.state = "stale"
                health.detail = (f"no data for {silence:.1f} s (expected about every "
                                 f"{_seconds(expected)})")
                self._emit(key, self._event(key, health, now))

    # ---- what others ask --------------------------------------------------------------------

    def expected_gap(self, key: StreamKey) -> float:
        """Seconds between bursts the stream is expected to keep (see the module docstring)."""
        health = self._streams[key]
        rules = self.rules
        if len(health.gaps) >= rules.learn_from:
            ordered = sorted(health.gaps)
            learned = ordered[int(0.9 * (len(ordered) - 1))]
        else:
            learned = rules.initial_gap
        cap = health.bar_s if health.bar_s is not None else rules.max_quote_gap
        return max(0.0, min(learned, cap))

    def state(self, key: StreamKey) -> str | None:
        """``live``, ``stale`` or ``closed``; None for a stream not tracked."""
        health = self._streams.get(key)
        return None if health is None else health.state

    def age(self, key: StreamKey) -> float | None:
        """Seconds since the stream's newest row; None before its first (or when untracked)."""
        health = self._streams.get(key)
        if health is None or health.last is None:
            return None
        return self._clock() - health.last

    def status(self, key: StreamKey) -> dict | None:
        """The stream's current status event (for a new subscriber), None when untracked."""
        health = self._streams.get(key)
        return None if health is None else self._event(key, health, self._clock())

    # ---- internals --------------------------------------------------------------------------

    def _event(self, key: StreamKey, health: _Health, now: float) -> dict[str, Any]:
        age = None if health.last is None else round(now - health.last, 3)
        return {"type": "status", "source": key[0], "symbol": key[1], "interval": key[2],
                "state": health.state, "age": age,
                "expected": round(self.expected_gap(key), 3), "detail": health.detail}


def _seconds(value: float) -> str:
    return f"{value:.2g} s" if value < 10 else f"{value:.0f} s"


__all__ = ["GAPS_KEPT", "StalenessRules", "StreamHealth"]
