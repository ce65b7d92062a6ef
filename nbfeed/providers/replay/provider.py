"""``replay``: nbfeed's recordings played back through the same API as any live source.

::

    stream = feed.subscribe("replay", ["AAPL", "MSFT"], recording="demo", speed=10)
    bars = feed.history("replay", "AAPL", "1m", recording="demo", end=stream_start)

Every subscription is a session of its own (the class lists :attr:`session_options`): two
notebooks replaying the same recording at different speeds never interfere. Options:

* ``recording`` (required) - a name from ``feed.recordings()``;
* ``speed`` - 0.1 to 1000 (times real time) or ``"max"`` (as fast as the reader takes rows);
  default 1;
* ``start`` / ``end`` - the span to play on the recording's clock (its receive times; ISO,
  epoch s/ms, datetimes); default: all of it;
* ``origin`` - which recorded source, when the recording holds the symbol from several
  (named ``origin`` because ``source`` is the replay source itself in ``subscribe``);
* ``paused`` - open paused (attach callbacks and widgets, then ``stream.resume()``);
* ``ack`` / ``window`` - pacing by acknowledgements (set by nbfeed's own clients; see
  :mod:`.player`).

The interval must be one the symbols were recorded at. ``get_history`` builds bars from the
recording's rows (:mod:`nbfeed.recorder.bars`) as they stood at ``end``. The catalog lists one
entry per recorded symbol, with the recordings that hold it as categories.

The provider reads files only; recordings are written by the hub (:mod:`nbfeed.recorder`).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from ...errors import BadInterval, BadRequest, UnknownSymbol
from ...intervals import INTERVALS, TICK, check_interval
from ...recorder.bars import build_bars, check_bar_interval
from ...recorder.reader import RecordingReader, RowFilter, StreamStats, scan
from ...recorder.store import RecordingStore
from ...timeutil import to_ms
from ..base import Provider
from .player import DEFAULT_WINDOW, MAX_WINDOW, Player


class ReplayProvider(Provider):
    """Plays back nbfeed recordings (see module docstring)."""

    name = "replay"
    summary = "Recordings of any source, played back on a virtual clock (nbfeed record)"
    intervals: ClassVar[tuple[str, ...]] = INTERVALS
    session_options: ClassVar[tuple[str, ...]] = (
        "recording", "speed", "start", "end", "origin", "paused", "ack", "window")

    def init(self) -> None:
        home = self.options.get("home")
        if not home:
            from ...hub.config import default_home

            home = default_home()
        self.store = RecordingStore(home)
        self._players: dict[str, Player] = {}
        self._symbols: dict[str, set[str]] = {}  # session -> symbols subscribed
        self._lock = threading.Lock()

    # ---- catalog --------------------------------------------------------------------------

    def get_dataset(self) -> list[dict]:
        by_symbol: dict[str, dict[str, Any]] = {}
        for info in self.store.list():
            for stream in info.get("streams") or []:
                for symbol in stream.get("symbols") or []:
                    entry = by_symbol.setdefault(symbol, {"recordings": [], "intervals": set(),
                                                          "sources": set()})
                    if info["name"] not in entry["recordings"]:
                        entry["recordings"].append(info["name"])
                    entry["intervals"].add(stream.get("interval"))
                    entry["sources"].add(stream.get("source"))
        out = []
        for symbol, entry in sorted(by_symbol.items()):
            intervals = sorted(i for i in entry["intervals"] if i in INTERVALS)
            if not intervals:
                continue
            kind = "quote" if intervals == [TICK] else "candlestick"
            out.append({"name": symbol, "type": kind, "intervals": intervals,
                        "categories": entry["recordings"],
                        "name_label": f"{symbol} ({', '.join(sorted(entry['sources']))}) - "
                                      f"recorded in {', '.join(entry['recordings'][:5])}"})
        return out

    # ---- sessions -------------------------------------------------------------------------

    def open_session(self, session: str, symbols: list[str], interval: str,
                     options: dict[str, Any]) -> dict[str, Any]:
        from ...clock import check_speed

        name = options.get("recording")
        if name is None:
            raise BadRequest("replay needs recording=<name> (feed.recordings() lists them)")
        reader = self.store.reader(name)
        interval = check_interval(interval)
        speed = check_speed(options.get("speed", 1.0))
        start_us = _time_us(options.get("start"), "start")
        end_us = _time_us(options.get("end"), "end")
        if start_us is not None and end_us is not None and start_us >= end_us:
            raise BadRequest(f"start ({options.get('start')}) must be before end "
                             f"({options.get('end')})")
        window = options.get("window", DEFAULT_WINDOW)
        if isinstance(window, bool) or not isinstance(window, int) or \
                not 100 <= window <= MAX_WINDOW:
            raise BadRequest(f"window must be a whole number of rows from 100 to {MAX_WINDOW}, "
                             f"got {window!r:.40}")
        found = scan(reader, start_us, end_us)
        source = self._pick_source(name, reader, found, symbols, interval,
                                   options.get("origin"))
        chosen = [found[(source, s, interval)] for s in symbols]
        total = StreamStats()
        for stats in chosen:
            total.in_span += stats.in_span
            for attr, pick in (("first_seq", min), ("last_seq", max),
                               ("first_received_us", min), ("last_received_us", max)):
                value = getattr(stats, attr)
                if value is not None:
                    old = getattr(total, attr)
                    setattr(total, attr, value if old is None else pick(old, value))
        first_us = total.first_received_us
        play_from = start_us if start_us is not None else (first_us or 0)
        where = RowFilter(sources=frozenset([source]), symbols=frozenset(symbols),
                          interval=interval, received_to_us=end_us)
        player = Player(name, reader, where, self._publisher(session, interval),
                        start_us=play_from, end_us=end_us, last_seq=total.last_seq,
                        rows=total.in_span, speed=speed, paused=bool(options.get("paused")),
                        ack=bool(options.get("ack")), window=window)
        with self._lock:
            old = self._players.pop(session, None)
            self._players[session] = player
            self._symbols[session] = set()
        if old is not None:
            old.stop()
        state = player.state()
        state.update(origin=source, symbols=list(symbols), interval=interval,
                     first_ms=None if first_us is None else first_us // 1000,
                     last_ms=None if total.last_received_us is None
                     else total.last_received_us // 1000)
        return state

    def _pick_source(self, name: str, reader: RecordingReader,
                     found: dict[tuple[str, str, str], StreamStats], symbols: list[str],
                     interval: str, source: Any) -> str:
        sources = reader.sources()
        if source is not None:
            if source not in sources:
                raise BadRequest(f"recording {name!r} holds no source {source!r:.60} (origin); it "
                                 f"holds: {', '.join(sources) or '(nothing yet)'}")
            candidates = [source]
        else:
            candidates = sources
        for symbol in symbols:
            holders = [s for s in candidates if (s, symbol, interval) in found]
            if not holders:
                recorded = sorted(f"{sym} ({iv})" for (src, sym, iv) in found
                                  if src in candidates)
                at = [iv for (src, sym, iv) in found if sym == symbol and src in candidates]
                if at:
                    raise BadInterval(f"{symbol!r} was recorded in {name!r} at "
                                      f"{', '.join(sorted(set(at)))}, not {interval!r}")
                raise UnknownSymbol(f"symbol {symbol!r:.60} is not in recording {name!r}; it "
                                    f"holds: {', '.join(recorded[:20]) or '(no rows yet)'}")
            if len(holders) > 1:
                raise BadRequest(f"{symbol!r} was recorded from several sources in {name!r} "
                                 f"({', '.join(holders)}); pass origin=... to pick one")
            candidates = holders  # one session plays one source
        return candidates[0]

    def _publisher(self, session: str, interval: str):
        tagged = f"{interval}@{session}"

        def publish(rows: list[dict]) -> None:
            self.publish(rows, interval=tagged)

        return publish

    def start_streaming(self, client: Any, symbol: str, interval: str) -> None:
        _, _, session = interval.partition("@")
        with self._lock:
            player = self._players.get(session)
            if player is None:
                raise BadRequest(f"replay: no open session {session!r:.40}")
            self._symbols[session].add(symbol)
        player.start()

    def on_close(self, client: Any, symbol: str, interval: str) -> None:
        _, _, session = interval.partition("@")
        with self._lock:
            symbols = self._symbols.get(session)
            if symbols is None:
                return
            symbols.discard(symbol)
            if symbols:
                return
        self.close_session(session)

    def close_session(self, session: str) -> None:
        with self._lock:
            player = self._players.pop(session, None)
            self._symbols.pop(session, None)
        if player is not None:
            player.stop()

    def control(self, session: str, command: str, args: dict[str, Any]) -> dict[str, Any]:
        player = self._players.get(session)
        if player is None:
            raise BadRequest(f"replay: no open session {session!r:.40} (closed or ended)")
        return player.control(command, args)

    # ---- history --------------------------------------------------------------------------

    def get_history(self, symbol: str, interval: str, start: int | None, end: int | None,
                    count: int | None, recording: Any = None, origin: Any = None,
                    **other: Any) -> list[dict]:
        if other:
            raise BadRequest(f"replay history takes recording and origin, not "
                             f"{', '.join(sorted(other))}")
        if recording is None:
            raise BadRequest("replay history needs recording=<name> (feed.recordings() lists "
                             "them)")
        reader = self.store.reader(recording)
        end_us = None if end is None else end * 1000
        found = scan(reader, None, end_us)
        recorded = sorted({iv for (src, sym, iv) in found if sym == symbol
                           and (origin is None or src == origin)})
        if not recorded:
            return self._no_symbol(recording, reader, found, symbol, origin)
        base = _base_interval(interval, recorded)
        chosen = self._pick_source(recording, reader, found, [symbol], base, origin)
        where = RowFilter(sources=frozenset([chosen]), symbols=frozenset([symbol]),
                          interval=base, received_to_us=end_us)
        return build_bars(reader.tables(where), symbol, interval, base, start, end, count)

    def _no_symbol(self, name: str, reader: RecordingReader, found: dict, symbol: str,
                   source: Any) -> list[dict]:
        self._pick_source(name, reader, found, [symbol], TICK, source)  # raises, naming why
        return []


def _time_us(value: Any, field: str) -> int | None:
    return None if value is None else to_ms(value, field) * 1000


def _base_interval(interval: str, recorded: list[str]) -> str:
    """The recorded interval to build ``interval`` bars from: the same bars when recorded
    (exact, with the provider's volume), else quotes, else the coarsest bars that divide it."""
    if interval in recorded:
        check_bar_interval(interval, interval)
        return interval
    if TICK in recorded:
        return TICK
    usable = []
    for candidate in recorded:
        try:
            check_bar_interval(interval, candidate)
        except BadInterval:
            continue
        usable.append(candidate)
    if not usable:
        raise BadInterval(f"bars of {interval} cannot be built from the recorded "
                          f"{', '.join(recorded)} bars; use one of those or a whole multiple")
    from ...intervals import interval_ms

    return max(usable, key=interval_ms)
