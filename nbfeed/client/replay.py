"""``ReplayStream``: a replay session seen from a notebook - a Stream with controls and a
virtual clock.

``feed.subscribe("replay", symbols, recording=..., speed=...)`` returns one. It is a
:class:`~nbfeed.client.stream.Stream` in every way (callbacks, ``async for``, ``latest``,
widgets), plus:

* ``pause()``, ``resume()``, ``seek(to)``, ``set_speed(speed)``, ``state()`` - each returns the
  session's state once the player has applied it;
* ``clock`` - a :class:`~nbfeed.clock.VirtualClock` on the recording's time line (its receive
  times), which follows pause, seek and speed; ``now_ms()`` reads it, so widgets that age rows
  by ``stream.now_ms()`` follow the replay;
* ``finished`` - a :class:`threading.Event` set when the last row has been dispatched;
  ``wait(timeout)`` waits for it.

How order and pacing are kept: the player tags each row with ``_rp = epoch << 40 | seq`` and
the last row of each chunk with ``_rt`` (its receive time). Before the callbacks run, this
stream sorts each delivery by ``_rp`` (the hub groups a burst by symbol; ``seq`` restores the
recorded order across symbols), drops rows of an epoch older than the newest seek, moves the
clock to the newest receive time and removes the tags. After the callbacks, it acknowledges
the rows, so the player never has more than its window in flight: nothing between the
recording and your callback ever conflates or drops a row, and a slow callback slows the
replay instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from ..clock import VirtualClock, check_speed
from ..timeutil import to_ms
from .stream import Stream

Control = Callable[[str, dict, bool], Any]
EPOCH_SHIFT = 40  # as nbfeed.providers.replay.player: _rp = epoch << 40 | seq
_SEQ_MASK = (1 << EPOCH_SHIFT) - 1
_ORDER = itemgetter("_rp")


class ReplayStream(Stream):
    """A replay session's stream (see module docstring)."""

    def __init__(self, source: str, symbols: list[str], interval: str,
                 closer: Callable[[Stream], None], control: Control, state: dict,
                 history: Callable[..., Any] | None = None) -> None:
        super().__init__(source, symbols, interval, closer, history=history)
        self._control_fn = control
        self._session_lock = threading.Lock()
        self.session: dict[str, Any] = {}
        self._epoch = 1
        self._acked = 0
        self.ack = False
        self.finished = threading.Event()
        self._pending_ack: tuple[int, int] | None = None
        self._finishing = False
        self.clock = VirtualClock(0, 1.0, paused=True)
        if state:
            self._open_session(state)

    def _open_session(self, state: dict) -> None:
        """Take the session's state as the hub opened it (before any of its rows arrive)."""
        self.session = dict(state)
        self._epoch = int(state.get("epoch") or 1)
        self._acked = 0
        self.ack = bool(state.get("ack"))
        speed = state.get("speed")
        self.clock.set_state(state.get("start_ms") or 0,
                             None if speed in (None, "max") else float(speed),
                             bool(state.get("paused")))
        if state.get("rows") == 0:
            self.finished.set()
        else:  # a session reopened after a reconnect plays again
            self.finished.clear()

    # ---- controls -------------------------------------------------------------------------

    def pause(self) -> dict:
        """Stop the replay where it is (rows already on their way still arrive)."""
        state = self._command("pause")
        self.clock.pause()
        return state

    def resume(self) -> dict:
        """Continue a paused replay (also one opened with ``paused=True``)."""
        state = self._command("resume")
        if not self.finished.is_set():
            self.clock.resume()
        return state

    def seek(self, to: Any) -> dict:
        """Jump to ``to`` on the recording's clock (ISO, epoch s/ms, datetime); rows from
        before the jump that are still on their way are dropped."""
        to_ms(to, "to")  # a bad time fails here, naming it
        state = self._command("seek", {"to": to if isinstance(to, (str, int, float))
                                       else to_ms(to, "to")})
        with self._session_lock:
            epoch = int(state.get("epoch") or self._epoch)
            if epoch > self._epoch:
                self._epoch, self._acked = epoch, 0
        self.finished.clear()
        self.clock.seek(to_ms(to, "to"))
        if not state.get("paused"):
            self.clock.resume()
        return state

    def set_speed(self, speed: float | str | None) -> dict:
        """Change the speed (0.1-1000 x real time, or ``"max"``)."""
        value = check_speed(speed)
        state = self._command("speed", {"speed": "max" if value is None else value})
        self.clock.set_speed(value)
        return state

    def state(self) -> dict:
        """The session as the player sees it: position, speed, paused, finished, rows..."""
        return self._command("state")

    @property
    def speed(self) -> float | None:
        return self.clock.speed

    @property
    def paused(self) -> bool:
        return self.clock.paused

    def history(self, count: int = 500) -> Any:
        """Bars of the first symbol built from the recording as they stood at the replay's
        clock now (at the start: the warm-up before the first replayed row). Charts call this
        before following the stream."""
        import pandas as pd

        if self._history is None or self.interval == "tick":
            return pd.DataFrame()
        options = {"recording": self.session.get("recording")}
        if self.session.get("origin"):
            options["origin"] = self.session["origin"]
        return self._history(self.source, self.symbols[0], self.interval, count=count,
                             end=self.clock.now_ms(), **options)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the replay has dispatched its last row; False on timeout."""
        return self.finished.wait(timeout)

    def _command(self, command: str, args: dict | None = None) -> dict:
        state = self._control_fn(command, args or {}, True) or {}
        self.session.update(state)
        return state

    # ---- the dispatcher's hooks -----------------------------------------------------------

    def _prepare(self, rows: list[dict]) -> list[dict]:
        # Sorts ``rows`` and strips their pacing tags in place: that is safe because a replay
        # session's rows reach this stream alone (the hub keeps no snapshot, cache or backfill
        # of session streams, the recorder refuses them). Anything that starts sharing them
        # must hand this a copy.
        if "_rp" not in rows[0]:
            return rows  # not paced by acknowledgements: rows as they come
        rows.sort(key=_ORDER)  # C speed; the recorded order across symbols
        with self._session_lock:
            newest = rows[-1]["_rp"] >> EPOCH_SHIFT
            if newest > self._epoch:
                self._epoch, self._acked = newest, 0
            epoch = self._epoch
        if rows[0]["_rp"] >> EPOCH_SHIFT != epoch:  # rows from before a seek: dropped
            rows = [row for row in rows if row["_rp"] >> EPOCH_SHIFT == epoch]
            if not rows:
                return rows
        last_seq = rows[-1]["_rp"] & _SEQ_MASK
        received = None
        for row in rows:
            del row["_rp"]
            at = row.pop("_rt", None)
            if at is not None:
                received = at
        if received is not None:
            self.clock.advance_to(received / 1000)
        if last_seq == self.session.get("last_seq"):
            self._finishing = True
            if received is not None:
                self.clock.set_state(received / 1000, self.clock.speed, True)
        self._pending_ack = (epoch, len(rows))
        return rows

    def _consumed(self, rows: list[dict]) -> None:
        pending, self._pending_ack = self._pending_ack, None
        if pending is not None and self.ack:
            epoch, count = pending
            with self._session_lock:
                if epoch != self._epoch:
                    return
                self._acked += count
                total = self._acked
            try:
                self._control_fn("ack", {"epoch": epoch, "rows": total}, False)
            except Exception:  # closed meanwhile: nothing to pace any more
                pass
        if self._finishing:
            self._finishing = False
            self.finished.set()

    def __repr__(self) -> str:
        state = "finished" if self.finished.is_set() else f"{self.rows_received} rows"
        return (f"<nbfeed.ReplayStream {self.session.get('recording')} "
                f"{', '.join(self.symbols[:5])}{'...' if len(self.symbols) > 5 else ''} "
                f"{self.interval} {self.clock!r} ({state})>")
