"""One replay session: a recording's rows published on a virtual clock, paced by the reader.

A :class:`Player` runs one thread. It reads the recording in ``seq`` order
(:class:`~nbfeed.recorder.reader.RecordingReader`, bounded memory) and publishes each row when
the session's :class:`~nbfeed.clock.VirtualClock` reaches the row's *receive* time - the moment
the hub saw it live - so the gaps between rows, bursts and quiet spells come back as they were,
scaled by ``speed``. Rows are published in chunks of at most ``MAX_CHUNK`` (all rows that are
due), exactly as recorded: same values, same ``time``, same order.

Pacing by the reader (``ack``): nbfeed's own clients acknowledge the rows they have handed to
their callbacks; the player keeps at most ``window`` rows unacknowledged, so no queue between it
and the notebook ever fills up or conflates, at any speed, even "as fast as possible" (the
window must stay below the smallest queue on the way: a client stream conflates beyond 50,000
rows). Then each row carries ``_rp = epoch << 40 | seq`` and the last row of each chunk also
``_rt = received_us``; the client sorts a delivery by ``_rp`` (the recorded order across
symbols, which the hub groups by symbol), drops rows of an epoch before the newest seek, moves
its copy of the clock to ``_rt``, knows the replay has ended when it sees the last ``seq``, and
removes both fields before anyone sees the row. Without ``ack`` (a plain websocket client),
rows are published on the clock only, untagged.

Controls (:meth:`Player.control`, quick, any thread): ``pause``, ``resume``, ``seek`` (``to``: a
time on the recording's clock; starts a new *epoch* so rows in flight from before are
recognizable), ``speed``, ``ack`` (``epoch``, ``rows``), ``state``. Each answers the state.

Failure behaviour: a file that disappears while playing (an age limit pruned it) is skipped; an
unexpected error stops the session and is logged; the provider keeps serving other sessions.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ...clock import VirtualClock, check_speed
from ...errors import BadRequest
from ...recorder.reader import RecordingReader, RowFilter
from ...recorder.schema import table_to_rows
from ...timeutil import to_ms

log = logging.getLogger("nbfeed.provider.replay")

MAX_CHUNK = 5_000
DEFAULT_WINDOW = 20_000
MAX_WINDOW = 40_000
EPOCH_SHIFT = 40  # _rp = epoch << 40 | seq: a recording of up to 10^12 rows
_WAIT_S = 0.2  # longest sleep between checks; controls wake the thread at once anyway


class Player:
    """Plays rows matching ``where`` from ``reader`` (see module docstring)."""

    def __init__(self, name: str, reader: RecordingReader, where: RowFilter,
                 publish: Callable[[list[dict]], None], *, start_us: int, end_us: int | None,
                 last_seq: int | None, rows: int, speed: float | None, paused: bool,
                 ack: bool, window: int = DEFAULT_WINDOW) -> None:
        self.name = name
        self.reader = reader
        self.where = where
        self._publish = publish
        self.start_us = start_us
        self.end_us = end_us
        self.last_seq = last_seq
        self.rows = rows
        self.ack = ack
        self.window = window
        self.clock = VirtualClock(start_us / 1000, speed, paused=True)
        self._paused = paused  # the user's pause; the clock also waits for start()
        self._cond = threading.Condition()
        self.epoch = 1
        self._from_us = start_us
        self._published = 0
        self._acked = 0
        self.seq = 0
        self.position_us = start_us
        self.finished = False
        self._stop = False
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Begin playing (the hub has the session's streams); idempotent."""
        with self._cond:
            if self._thread is not None:
                return
            self.clock.seek(self.start_us / 1000)
            if not self._paused:
                self.clock.resume()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"replay-{self.name}")
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    # ---- controls -------------------------------------------------------------------------

    def control(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            if command == "ack":
                epoch, rows = args.get("epoch"), args.get("rows")
                if epoch == self.epoch and isinstance(rows, int) and rows > self._acked:
                    self._acked = rows
            elif command == "pause":
                self._paused = True
                self.clock.pause()
            elif command == "resume":
                self._paused = False
                if self._thread is not None and not self.finished:
                    self.clock.resume()
            elif command == "seek":
                if "to" not in args:
                    raise BadRequest("seek needs 'to': a time on the recording's clock")
                to_us = to_ms(args["to"], "to") * 1000
                self.epoch += 1
                self._from_us = to_us
                self._published = self._acked = 0
                self.finished = False
                self.position_us = to_us
                self.clock.seek(to_us / 1000)
                if not self._paused and self._thread is not None:
                    self.clock.resume()
            elif command == "speed":
                self.clock.set_speed(check_speed(args.get("speed")))
            elif command != "state":
                raise BadRequest(f"unknown replay command {command!r:.40}; use pause, resume, "
                                 "seek, speed, ack or state")
            self._cond.notify_all()
            return self.state()

    def state(self) -> dict[str, Any]:
        clock = self.clock.state()
        return {"recording": self.name, "epoch": self.epoch, "now_ms": clock["now_ms"],
                "speed": "max" if clock["speed"] is None else clock["speed"],
                "paused": self._paused, "finished": self.finished, "seq": self.seq,
                "position_ms": self.position_us // 1000, "published": self._published,
                "start_ms": self.start_us // 1000,
                "end_ms": None if self.end_us is None else self.end_us // 1000,
                "rows": self.rows, "last_seq": self.last_seq, "ack": self.ack,
                "window": self.window}

    # ---- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stop:
                        return
                    epoch, from_us = self.epoch, self._from_us
                if self._play(epoch, from_us):
                    continue  # seeked: start over from the new position
                with self._cond:
                    if self.epoch == epoch and not self._stop:
                        self._finish()
                    while self.epoch == epoch and not self._stop:
                        self._cond.wait(_WAIT_S)
        except Exception:
            log.exception("replay of %s stopped by an error", self.name)

    def _finish(self) -> None:
        """The last row is sent (lock held): the clock stops on it."""
        self.finished = True
        self.clock.set_state(self.position_us / 1000, self.clock.speed, True)

    def _play(self, epoch: int, from_us: int) -> bool:
        """Publish rows from ``from_us`` on; True if a seek interrupted (new epoch)."""
        where = replace(self.where, received_from_us=max(from_us, self.start_us))
        for table in self.reader.tables(where):
            replayed = table_to_rows(table, self.reader.json_columns)
            rows, seqs, received = replayed.rows, replayed.seqs, replayed.received_us
            i, n = 0, len(rows)
            while i < n:
                j = self._wait_for_due(epoch, received, i)
                if j is None:
                    return True
                if j < 0:
                    return True  # stopping
                chunk = rows[i:j]
                if self.ack:
                    base = epoch << EPOCH_SHIFT
                    for row, seq in zip(chunk, seqs[i:j]):
                        row["_rp"] = base | seq
                    chunk[-1]["_rt"] = received[j - 1]
                with self._cond:  # the state says "sent" before anyone can see the rows
                    if self.epoch != epoch:
                        return True
                    self.seq = seqs[j - 1]
                    self.position_us = received[j - 1]
                    if self.clock.speed is None:
                        self.clock.advance_to(received[j - 1] / 1000)
                    if self.seq == self.last_seq:
                        self._finish()
                self._publish(chunk)
                i = j
        return False

    def _wait_for_due(self, epoch: int, received: list[int], i: int) -> int | None:
        """Block until rows from ``i`` are due and may be sent; the end index of the chunk.

        None when a seek began a new epoch, -1 when stopping.
        """
        with self._cond:
            while True:
                if self._stop:
                    return -1
                if self.epoch != epoch:
                    return None
                credit = self.window - (self._published - self._acked) if self.ack \
                    else MAX_CHUNK
                if self._paused or credit <= 0:
                    self._cond.wait(_WAIT_S)
                    continue
                wait = self.clock.seconds_until(received[i] / 1000)
                if wait > 0:
                    self._cond.wait(min(wait, _WAIT_S))
                    continue
                limit = i + min(credit, MAX_CHUNK)
                if self.clock.speed is None:
                    j = min(len(received), limit)
                else:
                    now_us = self.clock.now_ms() * 1000 + 999
                    j = min(bisect.bisect_right(received, now_us, i), limit)
                    j = max(j, i + 1)
                self._published += j - i
                return j
