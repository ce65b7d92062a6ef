"""The pipe between the hub and one provider process, driven by two threads, never by the loop.

A provider process can stop reading its pipe at any moment (SIGSTOP, a deadlocked hook, a machine
swapping). A write on the event loop would then block the whole server, so the loop never touches
the pipe: :meth:`ProviderChannel.send` only appends to a bounded queue and a writer thread does
the writing; a reader thread receives and hands messages to the loop in batches (one
``call_soon_threadsafe`` per burst, not per message), so a provider publishing 100k rows/s costs
the loop a few wake-ups per millisecond at most.

Failure behaviour:

* ``send`` never blocks: it returns False once the channel is closed, and also when
  ``max_outgoing`` messages are already waiting for a process that stopped reading; then
  :attr:`ProviderChannel.overflowed` is set (the owner treats that process as hung);
* the writer thread owns its own duplicate of the pipe's descriptor and closes it itself, after
  its current write returns (a write to a stopped process returns with an error once the process
  is killed), so no descriptor is ever closed under a thread that still uses it;
* the reader holds at most ``MAX_INBOX_MESSAGES`` messages for the loop, then stops reading, so
  the pipe fills and the provider's ``publish()`` blocks instead of the hub's memory growing; the
  time it last waited for the loop is :attr:`ProviderChannel.held_back_at` (a late heartbeat
  answer is then the hub's fault, not the provider's);
* heartbeat answers (``pong``, ``busy``) are taken by the reader thread itself and timestamped
  there, so a busy event loop cannot make a healthy provider look hung;
* when the process closes its end (exit, crash, SIGKILL), ``on_closed`` runs on the loop once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection

log = logging.getLogger("nbfeed.hub")

#: Messages (each a batch of rows) the reader thread may hold before it waits for the loop.
MAX_INBOX_MESSAGES = 1_000
#: Messages (commands, pings) that may wait for a process that is not reading its pipe.
MAX_OUTGOING_MESSAGES = 10_000


class ProviderChannel:
    """The two pipe threads of one provider process (see the module docstring).

    ``on_messages(batch)`` and ``on_closed()`` are called on ``loop``. Methods are safe to call
    from the loop; ``send`` from any thread.
    """

    def __init__(self, name: str, conn: Connection, loop: asyncio.AbstractEventLoop, *,
                 on_messages: Callable[[list[tuple]], None], on_closed: Callable[[], None],
                 max_outgoing: int = MAX_OUTGOING_MESSAGES) -> None:
        self.name = name
        self._loop = loop
        self._on_messages = on_messages
        self._on_closed = on_closed
        self.max_outgoing = max_outgoing
        self._reader_conn = conn
        # The writer gets its own descriptor so each thread closes only what it alone uses.
        self._writer_conn = Connection(os.dup(conn.fileno()))
        self._outgoing: deque[tuple] = deque()
        self._cond = threading.Condition()
        self.closed = False
        #: Set once ``send`` found ``max_outgoing`` messages waiting (the process is not reading).
        self.overflowed = False
        self._inbox: list[tuple] = []
        self._inbox_lock = threading.Lock()
        self._drained = threading.Event()
        self._drain_scheduled = False
        #: ``time.monotonic()`` of the newest heartbeat answer (``pong``) and its sequence number.
        self.last_pong = 0.0
        self.last_pong_seq = 0
        #: What the provider's control thread is busy with, from its last ``busy`` report:
        #: ``(what, seconds, time.monotonic() of the report)``, or None.
        self.busy: tuple[str, float, float] | None = None
        #: ``time.monotonic()`` when the reader last had to wait for the event loop.
        self.held_back_at = 0.0
        threading.Thread(target=self._write, name=f"nbfeed-{name}-writer", daemon=True).start()
        threading.Thread(target=self._read, name=f"nbfeed-{name}-reader", daemon=True).start()

    # ---- outgoing -------------------------------------------------------------------------

    def send(self, msg: tuple) -> bool:
        """Queue ``msg`` for the writer thread; never blocks. False when closed or full."""
        with self._cond:
            if self.closed:
                return False
            if len(self._outgoing) >= self.max_outgoing:
                self.overflowed = True
                return False
            self._outgoing.append(msg)
            self._cond.notify()
        return True

    @property
    def outgoing(self) -> int:
        """Messages waiting for the writer thread."""
        return len(self._outgoing)

    def close(self, last: tuple | None = None) -> None:
        """Drop what waits, send ``last`` (if the process still reads), and end the writer.

        The reader goes on until the process closes its end, so late messages still arrive.
        """
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._outgoing.clear()
            if last is not None:
                self._outgoing.append(last)
            self._cond.notify()

    def _write(self) -> None:
        conn = self._writer_conn
        try:
            while True:
                with self._cond:
                    while not self._outgoing and not self.closed:
                        self._cond.wait()
                    if not self._outgoing:
                        return  # closed and nothing left
                    msg = self._outgoing.popleft()
                try:
                    conn.send(msg)
                except (OSError, EOFError, ValueError):
                    return  # the process is gone; the reader reports it
                except Exception as exc:  # an unpicklable command: a bug, but only this one
                    log.error("provider %s: could not send %r: %s", self.name, msg[:1], exc)
        finally:
            with self._cond:
                self.closed = True
                self._outgoing.clear()
            conn.close()

    # ---- incoming -------------------------------------------------------------------------

    def _read(self) -> None:
        conn, loop = self._reader_conn, self._loop
        try:
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    break
                except Exception as exc:  # an unpicklable message: report, keep reading
                    log.warning("provider %s sent an unreadable message: %s", self.name, exc)
                    continue
                op = msg[0] if isinstance(msg, tuple) and msg else None
                if op == "pong":
                    self.last_pong, self.last_pong_seq = time.monotonic(), msg[1]
                    self.busy = None
                    continue
                if op == "busy":
                    self.busy = (str(msg[2])[:200], float(msg[3]), time.monotonic())
                    continue
                if not self._hand_over(msg, loop):
                    return
        finally:
            conn.close()
        try:
            loop.call_soon_threadsafe(self._on_closed)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _hand_over(self, msg: tuple, loop: asyncio.AbstractEventLoop) -> bool:
        """Give ``msg`` to the loop; wait while it is behind. False once the loop is closed."""
        with self._inbox_lock:
            self._inbox.append(msg)
            full = len(self._inbox) >= MAX_INBOX_MESSAGES
            schedule = not self._drain_scheduled
            self._drain_scheduled = True
            if full:
                self._drained.clear()
        if schedule:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                return False
        if full:
            # The loop is not keeping up: stop reading, so the pipe fills and the provider's
            # publish() blocks (its own bounded queue) instead of our memory growing.
            while not self._drained.wait(0.5):
                self.held_back_at = time.monotonic()
                if loop.is_closed():
                    return False
            self.held_back_at = time.monotonic()
        return True

    def _drain(self) -> None:
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, []
            self._drain_scheduled = False
            self._drained.set()
        self._on_messages(inbox)
