"""One provider process seen from the hub: start, talk, supervise, restart, stop.

The process is a fresh interpreter (``python -m nbfeed.providers.runtime``, spawn-like: never a
fork of a threaded server). A reader thread receives its messages and hands
them to the event loop in batches (one ``call_soon_threadsafe`` per burst, not per message), so a
provider publishing 100k rows/s costs the loop a few wake-ups per millisecond at most.

Failure behaviour:

* a request (history, dataset) carries an id and a timeout; a reply that is lost or late becomes
  :class:`~nbfeed.errors.UpstreamTimeout` for that caller only; a process that dies fails every
  pending request at once with :class:`~nbfeed.errors.UpstreamError`;
* a request that times out or whose caller is cancelled is cancelled in the provider too
  (``("cancel", id)``: not started, or its answer not sent); a history answer that arrives
  for nobody is dropped without being unpickled (it travels packed: ``packed_reply``);
* a process that exits unexpectedly is restarted with exponential backoff (``backoff_base`` doubling
  up to ``backoff_max``); after ``max_restarts`` restarts without ``stable_after`` seconds of
  health in between it is marked ``failed`` and left alone until :meth:`restart` is called;
* ``init()`` raising marks the provider ``failed`` with that reason (a bad key would fail again);
* :meth:`stop` asks politely, then terminates, then kills.

The owner (the hub) is told about every state change through ``on_state`` and gets data and
stream errors through ``on_message``; it re-subscribes streams itself when a process is ready.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..errors import UpstreamError, UpstreamTimeout
from ..intervals import INTERVALS
from ..providers.registry import ProviderSpec

log = logging.getLogger("nbfeed.hub")

#: Messages (each a batch of rows) the reader thread may hold before it waits for the loop.
MAX_INBOX_MESSAGES = 1_000


class ProviderProcess:
    """Supervises the process of one provider. All methods run on the hub's event loop."""

    def __init__(self, spec: ProviderSpec, *, on_message: Callable[[str, tuple], None],
                 on_state: Callable[[str, str, str, str], None], settings: dict | None = None,
                 max_restarts: int = 5, backoff_base: float = 0.25, backoff_max: float = 30.0,
                 stable_after: float = 10.0, start_timeout: float = 60.0) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = dict(settings or {})
        self.on_message = on_message
        self.on_state = on_state
        self.max_restarts = max_restarts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.start_timeout = start_timeout
        #: The process's state: starting, running, restarting, failed or stopped (+ why).
        self.state = "stopped"
        self.detail = ""
        #: The provider's own report about itself (``set_status``), e.g. failed auth upstream.
        self.reported = "running"
        self.reported_detail = ""
        self.restarts = 0  # total, for display
        #: What the provider class says it can serve at all (its ``intervals`` attribute).
        self.intervals: tuple[str, ...] = INTERVALS
        #: The provider class's one-line description (``Provider.describe()``).
        self.description = ""
        #: Subscription options the provider takes (``Provider.session_options``); non-empty
        #: means it serves per-subscriber sessions (see :mod:`nbfeed.hub.sessions`).
        self.session_options: tuple[str, ...] = ()
        self._recent_restarts = 0
        self._ready_at = 0.0
        self._proc: Any = None
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None
        self._stopping = False
        self._restart_task: asyncio.Task | None = None
        self._inbox: list[tuple] = []
        self._inbox_lock = threading.Lock()
        self._drained = threading.Event()
        self._drain_scheduled = False
        self._generation = 0

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Spawn the process and wait until it is ready (or failed). Never raises for a
        provider failure: the state says what happened."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        await self._spawn()

    async def _spawn(self) -> None:
        assert self._loop is not None
        self._set_state("starting" if self.restarts == 0 else "restarting", self.detail)
        try:
            payload = self.spec.payload()
        except Exception as exc:
            self._set_state("failed", str(exc))
            return
        settings = {**self.settings, "parent_pid": os.getpid(), "sys_path": list(sys.path)}
        try:
            proc, conn = await self._loop.run_in_executor(None, _launch, self.name)
            conn.send((self.name, payload, self.spec.options, settings))
        except Exception as exc:
            self._set_state("failed", f"could not start the process: {exc}")
            return
        self._generation += 1
        self._proc, self._conn = proc, conn
        self._ready = self._loop.create_future()
        threading.Thread(target=self._read, args=(conn, proc, self._generation),
                         name=f"nbfeed-{self.name}-reader", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except asyncio.TimeoutError:
            self._set_state("failed", f"did not become ready within {self.start_timeout:.0f} s")
            await self._kill()

    async def stop(self) -> None:
        """Stop the process for good: polite ``stop``, then SIGTERM, then SIGKILL."""
        self._stopping = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        self._fail_pending(UpstreamError(f"provider {self.name!r} stopped"))
        await self._kill()
        self._set_state("stopped", "")

    def kill_now(self) -> None:
        """Synchronous last resort at interpreter exit: terminate, then kill, the process."""
        self._stopping = True
        if self._proc is not None and self._proc.poll() is None:
            _reap(self._proc)

    async def restart(self) -> None:
        """Restart now (also from ``failed``), keeping the hub's subscriptions."""
        self._stopping = True
        await self._kill()
        self._stopping = False
        self._recent_restarts = 0
        self.restarts += 1
        await self._spawn()

    async def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        try:
            conn.send(("stop",))
        except Exception:
            pass
        await loop.run_in_executor(None, _reap, proc)
        try:
            conn.close()
        except Exception:
            pass

    # ---- talking --------------------------------------------------------------------------

    def send(self, msg: tuple) -> bool:
        """Send a command if the process is up; False when it is not (the hub resends later)."""
        if self.state != "running" or self._conn is None:
            return False
        try:
            self._conn.send(msg)
            return True
        except (OSError, EOFError, BrokenPipeError, ValueError):
            return False

    async def request(self, kind: str, args: tuple, timeout: float) -> Any:
        """Ask the provider something; raises UpstreamTimeout/UpstreamError, never hangs."""
        if self.state != "running":
            raise UpstreamError(f"provider {self.name!r} is {self.state}"
                                + (f": {self.detail}" if self.detail else ""))
        assert self._loop is not None
        req_id = next(self._ids)
        fut = self._loop.create_future()
        self._pending[req_id] = fut
        try:
            if not self.send(("req", req_id, kind, args)):
                raise UpstreamError(f"provider {self.name!r} is not reachable")
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._cancel(req_id)
            raise UpstreamTimeout(f"provider {self.name!r} did not answer the {kind} request "
                                  f"within {timeout:g} s") from None
        except asyncio.CancelledError:
            self._cancel(req_id)
            raise
        finally:
            self._pending.pop(req_id, None)

    def _cancel(self, req_id: int) -> None:
        """Tell the provider nobody waits for request ``req_id`` any more (no-op once it
        answered: the provider ignores ids it does not hold)."""
        fut = self._pending.get(req_id)
        if fut is not None and not fut.done():
            self.send(("cancel", req_id))

    # ---- reader thread -> loop ------------------------------------------------------------

    def _read(self, conn: Any, proc: Any, generation: int) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # an unpicklable message: report, keep reading
                log.warning("provider %s sent an unreadable message: %s", self.name, exc)
                continue
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
                except RuntimeError:  # loop closed
                    return
            if full:
                # The loop is not keeping up: stop reading, so the pipe fills and the provider's
                # publish() blocks (its own bounded queue) instead of our memory growing.
                while not self._drained.wait(1.0):
                    if loop.is_closed():
                        return
        try:
            loop.call_soon_threadsafe(self._on_exit, proc, generation)
        except RuntimeError:
            pass

    def _drain(self) -> None:
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, []
            self._drain_scheduled = False
            self._drained.set()
        for msg in inbox:
            op = msg[0]
            if op == "reply" or op == "packed_reply":
                _, req_id, ok, value = msg
                fut = self._pending.get(req_id)
                if fut is not None and not fut.done():
                    if op == "packed_reply":  # unpickled only now that someone waits for it
                        ok, value = _unpacked(value)
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
            elif op == "ready":
                self.intervals = tuple(msg[1].get("intervals") or self.intervals)
                self.description = str(msg[1].get("description") or "")[:200]
                self.session_options = tuple(msg[1].get("session_options") or ())
                self._ready_at = time.monotonic()
                self._set_state("running", "")
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(True)
            elif op == "init_failed":
                self._on_init_failed(msg[1])
            elif op == "status":
                self._on_provider_status(msg[1], msg[2])
            else:
                self.on_message(self.name, msg)

    def _on_init_failed(self, error: BaseException) -> None:
        """``init()`` raised in the provider: failed for good (a bad key would fail again)."""
        self.detail = f"init failed: {error}"
        self._set_state("failed", self.detail)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)

    def _on_exit(self, proc: Any, generation: int) -> None:
        if generation != self._generation:
            return  # an old process we already replaced
        self._fail_pending(UpstreamError(f"provider {self.name!r} exited"))
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        if self._stopping or self.state in ("failed", "stopped"):
            return
        try:
            code = proc.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        if time.monotonic() - self._ready_at >= self.stable_after:
            self._recent_restarts = 0
        if self._recent_restarts >= self.max_restarts:
            self._set_state("failed", f"exited (code {code}) {self._recent_restarts + 1} times "
                                      f"in a row; not restarting")
            return
        delay = min(self.backoff_max, self.backoff_base * (2 ** self._recent_restarts))
        self._recent_restarts += 1
        self.restarts += 1
        self._set_state("restarting", f"exited with code {code}; restarting in {delay:.2f} s")
        self._restart_task = asyncio.ensure_future(self._restart_after(delay))

    async def _restart_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._stopping:
            await self._spawn()

    def _fail_pending(self, error: Exception) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()

    def _set_state(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        if state != "running":
            self.reported, self.reported_detail = "running", ""
        self.on_state(self.name, state, detail, "process")

    def _on_provider_status(self, state: str, detail: str) -> None:
        self.reported, self.reported_detail = state, detail
        self.on_state(self.name, state, detail, "provider")

    @property
    def status(self) -> tuple[str, str]:
        """``(state, detail)`` users see: the process state, or the provider's own report."""
        if self.state == "running" and self.reported != "running":
            return self.reported, self.reported_detail
        return self.state, self.detail


def _unpacked(packed: bytes) -> tuple[bool, Any]:
    """``(True, value)`` of a packed reply, or ``(False, UpstreamError)`` if it is unreadable."""
    try:
        return True, pickle.loads(packed)
    except Exception as exc:
        return False, UpstreamError(f"unreadable reply from the provider: {exc}")


def _launch(name: str) -> tuple[subprocess.Popen, Connection]:
    """Start ``python -m nbfeed.providers.runtime`` with one end of a socket pair.

    A fresh interpreter, like multiprocessing's *spawn*, but without re-running the parent's
    ``__main__`` (a script without a main guard, or a notebook, must not run twice).
    """
    parent_sock, child_sock = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbfeed.providers.runtime", str(child_sock.fileno()), name],
            pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
    finally:
        child_sock.close()
    return proc, Connection(parent_sock.detach())


def _reap(proc: subprocess.Popen) -> None:
    for action in (None, proc.terminate, proc.kill):
        if action is not None:
            try:
                action()
            except ProcessLookupError:
                return
        try:
            proc.wait(2.0)
            return
        except subprocess.TimeoutExpired:
            continue
