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

How order and pacing are kept: the player tags each row with ``_rp = [epoch, seq, received_us,
last?]``. Before the callbacks run, this stream drops rows of an epoch older than the newest
seek, sorts each delivery by ``seq`` (the hub groups a burst by symbol; ``seq`` restores the
recorded order across symbols), moves the clock to the newest row's receive time and removes
the tag. After the callbacks, it acknowledges the rows, so the player never has more than its
window in flight: nothing between the recording and your callback ever conflates or drops a row,
and a slow callback slows the replay instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..clock import VirtualClock, check_speed
from ..timeutil import to_ms
from .stream import Stream

Control = Callable[[str, dict, bool], Any]


class ReplayStream(Stream):
    """A replay session's stream (see module docstring)."""

    def __init__(self, source: str, symbols: list[str], interval: str,
                 closer: Callable[[Stream], None], control: Control, state: dict,
                 history: Callable[..., Any] | None = None) -> None:
        super().__init__(source, symbols, interval, closer, history=history)
        self._control_fn = control
        self._session_lock = threading.Lock()
        self.session: dict[str, Any] = dict(state)
        self._epoch = int(state.get("epoch") or 1)
        self._acked = 0
        self.ack = bool(state.get("ack"))
        self.finished = threading.Event()
        self._pending_ack: tuple[int, int] | None = None
        self._finishing = False
        speed = state.get("speed")
        self.clock = VirtualClock(state.get("start_ms") or 0,
                                  None if speed in (None, "max") else float(speed),
                                  paused=bool(state.get("paused")))
        if state.get("rows") == 0:
            self.finished.set()

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

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the replay has dispatched its last row; False on timeout."""
        return self.finished.wait(timeout)

    def _command(self, command: str, args: dict | None = None) -> dict:
        state = self._control_fn(command, args or {}, True) or {}
        self.session.update(state)
        return state

    # ---- the dispatcher's hooks -----------------------------------------------------------

    def _prepare(self, rows: list[dict]) -> list[dict]:
        tags = [row.pop("_rp", None) for row in rows]
        if not any(tags):
            return rows  # not paced by acknowledgements: rows as they come
        with self._session_lock:
            newest = max((t[0] for t in tags if t), default=self._epoch)
            if newest > self._epoch:
                self._epoch, self._acked = newest, 0
            epoch = self._epoch
        kept = [(tag[1], tag, row) for tag, row in zip(tags, rows)
                if tag is None or tag[0] == epoch]
        kept.sort(key=lambda item: item[0] if item[1] is not None else 0)
        last = max((item[1] for item in kept if item[1] is not None),
                   key=lambda tag: tag[1], default=None)
        if last is not None:
            self.clock.advance_to(last[2] / 1000)
            if len(last) > 3:
                self.clock.set_state(last[2] / 1000, self.clock.speed, True)
                self._finishing = True
        self._pending_ack = (epoch, sum(1 for item in kept if item[1] is not None))
        return [item[2] for item in kept]

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
