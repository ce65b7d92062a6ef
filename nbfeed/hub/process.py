"""One provider process seen from the hub: start, talk, supervise, restart, stop.

The process is a fresh interpreter (``python -m nbfeed.providers.runtime``, spawn-like: never a
fork of a threaded server). The pipe is driven by two threads (:mod:`.channel`): nothing here
ever reads or writes it on the event loop, so a provider that stops reading cannot block the
server.

Failure behaviour:

* a heartbeat (``ping`` every ``heartbeat_interval`` seconds, answered by the provider's control
  thread, the one that runs its hooks) tells a hung process from a busy one: rows still flowing
  do not count, only answers do. Without an answer for ``stall_timeout`` seconds the state
  becomes ``stalled`` (pending requests fail at once, new ones fail fast with
  :class:`~nbfeed.errors.UpstreamError`; commands wait in the bounded queue of the channel); an
  answer brings it back to ``running``. A stall lasting ``stall_restart_after`` seconds (0:
  never) gets the process killed (SIGKILL: a stopped process ignores anything else) and
  restarted like a crash. So does a process that lets its command queue overflow. Time the hub
  itself was too busy to read is never blamed on the provider;

* a request (history, dataset) carries an id and a timeout; a reply that is lost or late becomes
  :class:`~nbfeed.errors.UpstreamTimeout` for that caller only; a process that dies fails every
  pending request at once with :class:`~nbfeed.errors.UpstreamError`;
* a request that times out or whose caller is cancelled is cancelled in the provider too
  (``("cancel", id)``: not started, or its answer not sent); a history answer that arrives
  for nobody is dropped without being unpickled (it travels packed: ``packed_reply``);
* a process that exits unexpectedly is restarted with exponential backoff (``backoff_base`` doubling
  up to ``backoff_max``), announced once as ``restarting``; after ``max_restarts`` restarts
  without ``stable_after`` seconds of health in between it is marked ``failed`` and left alone
  until :meth:`restart` is called;
* ``init()`` raising marks the provider ``failed`` with that reason (a bad key would fail again);
* :meth:`stop` asks politely, then terminates, then kills (a stalled process: kills at once).

The owner (the hub) is told about every state change through ``on_state(name, state, detail,
origin)``: origin ``process`` for the process's life (``running`` then means a fresh process
that knows no streams), ``heartbeat`` for ``stalled`` and the recovery from it (the process
kept its streams, and the commands sent meanwhile reach it in order), ``provider`` for the
provider's own ``set_status``. It gets data and stream errors through ``on_message``; it
re-subscribes streams itself when a fresh process is ready.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..errors import UpstreamError, UpstreamTimeout
from ..intervals import INTERVALS
from ..providers.registry import ProviderSpec
from .channel import ProviderChannel
from .tasks import background

log = logging.getLogger("nbfeed.hub")


class ProviderProcess:
    """Supervises the process of one provider. All methods run on the hub's event loop."""

    def __init__(self, spec: ProviderSpec, *, on_message: Callable[[str, tuple], None],
                 on_state: Callable[[str, str, str, str], None], settings: dict | None = None,
                 max_restarts: int = 5, backoff_base: float = 0.25, backoff_max: float = 30.0,
                 stable_after: float = 10.0, start_timeout: float = 60.0,
                 heartbeat_interval: float = 1.0, stall_timeout: float = 5.0,
                 stall_restart_after: float = 15.0) -> None:
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
        self.heartbeat_interval = heartbeat_interval
        self.stall_timeout = stall_timeout
        self.stall_restart_after = stall_restart_after
        #: The process's state: starting, running, stalled, restarting, failed or stopped
        #: (+ why).
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
        self._channel: ProviderChannel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None
        self._stopping = False
        self._restart_task: asyncio.Task | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self._stalled_since = 0.0
        self._kill_reason = ""
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
        if self.state != "restarting":  # a crash already said "restarting", with its reason
            self._set_state("starting" if self.restarts == 0 else "restarting", self.detail)
        try:
            payload = self.spec.payload()
        except Exception as exc:
            self._set_state("failed", str(exc))
            return
        settings = {**self.settings, "parent_pid": os.getpid(), "sys_path": list(sys.path)}
        hello = (self.name, payload, self.spec.options, settings)
        try:
            # The first message may be large (a pickled class): sent off the loop, too.
            proc, conn = await self._loop.run_in_executor(None, _launch, self.name, hello)
        except Exception as exc:
            self._set_state("failed", f"could not start the process: {exc}")
            return
        self._generation += 1
        generation = self._generation
        self._proc = proc
        self._channel = ProviderChannel(
            self.name, conn, self._loop, on_messages=self._on_messages,
            on_closed=lambda: self._on_exit(proc, generation))
        self._ready = self._loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except asyncio.TimeoutError:
            self._set_state("failed", f"did not become ready within {self.start_timeout:.0f} s")
            await self._kill()

    async def stop(self) -> None:
        """Stop the process for good: polite ``stop``, then SIGTERM, then SIGKILL."""
        self._stopping = True
        for task in (self._restart_task, self._heartbeat_task):
            if task is not None:
                task.cancel()
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
        proc, channel = self._proc, self._channel
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        if proc is None:
            return
        self._generation += 1  # its exit is ours, not a crash to restart from
        self._fail_pending(UpstreamError(f"provider {self.name!r} is being stopped"))
        if channel is not None:
            channel.close(last=("stop",))
        if self.state == "stalled":
            _signal(proc, signal.SIGKILL)  # a stopped process would sit out SIGTERM's wait
        await asyncio.get_running_loop().run_in_executor(None, _reap, proc)

    # ---- talking --------------------------------------------------------------------------

    def send(self, msg: tuple) -> bool:
        """Queue a command for the process; never blocks. False when there is no process to
        take it (the hub resends every stream to the next one). A stalled process gets its
        commands when it answers again; one that lets them pile up is killed and restarted."""
        channel = self._channel
        if self.state not in ("running", "stalled") or channel is None:
            return False
        if channel.send(msg):
            return True
        if channel.overflowed and not self._kill_reason:
            self._kill_stuck(f"did not read its last {channel.max_outgoing} commands")
        return False

    async def request(self, kind: str, args: tuple, timeout: float) -> Any:
        """Ask the provider something; raises UpstreamTimeout/UpstreamError, never hangs.

        Fails at once while the process is not running (stalled included)."""
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

    # ---- heartbeat ------------------------------------------------------------------------

    async def _heartbeat(self, channel: ProviderChannel) -> None:
        """Ping the process and judge its answers until it is replaced or stopped."""
        seq = 0
        judged_at = time.monotonic()
        evidence = judged_at  # the newest proof of life; the start counts as one
        while self._channel is channel and not channel.closed:
            seq += 1
            if self.state != "stalled" or not channel.outgoing:
                # A stalled process has pings waiting already; its first answer will do.
                channel.send(("ping", seq))
            await asyncio.sleep(self.heartbeat_interval)
            now = time.monotonic()
            if now - judged_at > self.heartbeat_interval + self.stall_timeout / 2:
                # The hub's own loop was held up: answers may be waiting unread. Judge afresh.
                evidence = now
            judged_at = now
            evidence = max(evidence, channel.last_pong, channel.held_back_at)
            silent = now - evidence
            if self.state == "running" and silent >= self.stall_timeout:
                self._on_stalled(silent, channel)
            elif self.state == "stalled":
                if channel.last_pong > self._stalled_since:
                    self._ready_at, self._stalled_since = now, 0.0
                    self._set_state("running", "", origin="heartbeat")
                elif (self.stall_restart_after > 0
                      and now - self._stalled_since >= self.stall_restart_after):
                    self._kill_stuck(f"stalled for {now - self._stalled_since:.0f} s")
                    return

    def _on_stalled(self, silent: float, channel: ProviderChannel) -> None:
        self._stalled_since = time.monotonic()
        why = f"no heartbeat answer for {silent:.0f} s"
        busy = channel.busy
        if busy is not None and self._stalled_since - busy[2] < 2 * self.heartbeat_interval + 1:
            why += f" (its control thread has been running {busy[0]} for {busy[1]:.0f} s)"
        if self.stall_restart_after > 0:
            why += f"; restarting it after {self.stall_restart_after:g} s of this"
        self._set_state("stalled", why, origin="heartbeat")
        self._fail_pending(UpstreamError(f"provider {self.name!r} stalled: {why}"))

    def _kill_stuck(self, reason: str) -> None:
        """Kill a process that stopped answering; the exit restarts it like a crash."""
        self._kill_reason = reason
        log.warning("provider %s %s; killing it (pid %s)", self.name, reason, self.pid)
        if self._proc is not None:
            _signal(self._proc, signal.SIGKILL)

    # ---- messages from the process (on the loop) ------------------------------------------

    def _on_messages(self, inbox: list[tuple]) -> None:
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
                self._on_ready(msg[1])
            elif op == "init_failed":
                self._on_init_failed(msg[1])
            elif op == "status":
                self._on_provider_status(msg[1], msg[2])
            else:
                self.on_message(self.name, msg)

    def _on_ready(self, info: dict) -> None:
        self.intervals = tuple(info.get("intervals") or self.intervals)
        self.description = str(info.get("description") or "")[:200]
        self.session_options = tuple(info.get("session_options") or ())
        self._ready_at = time.monotonic()
        self._kill_reason = ""
        self._set_state("running", "")
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(True)
        channel = self._channel
        if channel is not None and self.heartbeat_interval > 0:
            self._heartbeat_task = background(self._heartbeat(channel),
                                              f"heartbeat of provider {self.name}")

    def _on_init_failed(self, error: BaseException) -> None:
        """``init()`` raised in the provider: failed for good (a bad key would fail again)."""
        self.detail = f"init failed: {error}"
        self._set_state("failed", self.detail)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)

    def _on_exit(self, proc: Any, generation: int) -> None:
        if generation != self._generation:
            return  # an old process we already replaced
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        if self._channel is not None:
            self._channel.close()
        self._fail_pending(UpstreamError(f"provider {self.name!r} exited"))
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        if self._stopping or self.state in ("failed", "stopped"):
            return
        code = proc.poll()  # None: it closed its pipe but lives on; reaped before the restart
        # Time spent stalled is not health: a hook that hangs at every start must end in
        # "failed" after max_restarts, not loop forever.
        healthy_until = self._stalled_since or time.monotonic()
        self._stalled_since = 0.0
        if healthy_until - self._ready_at >= self.stable_after:
            self._recent_restarts = 0
        why = self._kill_reason or f"exited with code {code}"
        self._kill_reason = ""
        if self._recent_restarts >= self.max_restarts:
            self._set_state("failed", f"{why}; that is {self._recent_restarts + 1} times in a "
                                      f"row; not restarting")
            return
        delay = min(self.backoff_max, self.backoff_base * (2 ** self._recent_restarts))
        self._recent_restarts += 1
        self.restarts += 1
        self._set_state("restarting", f"{why}; restarting in {delay:.2f} s")
        self._restart_task = background(self._restart_after(delay, proc),
                                        f"restart of provider {self.name}")

    async def _restart_after(self, delay: float, old: subprocess.Popen) -> None:
        # Off the loop: a process that closed its pipe without exiting gets TERM, then KILL.
        await asyncio.gather(asyncio.sleep(delay),
                             asyncio.get_running_loop().run_in_executor(None, _reap, old))
        if not self._stopping:
            await self._spawn()

    def _fail_pending(self, error: Exception) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()

    def _set_state(self, state: str, detail: str, origin: str = "process") -> None:
        self.state, self.detail = state, detail
        if state != "running":
            self.reported, self.reported_detail = "running", ""
        self.on_state(self.name, state, detail, origin)

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


def _launch(name: str, hello: tuple) -> tuple[subprocess.Popen, Connection]:
    """Start ``python -m nbfeed.providers.runtime`` with one end of a socket pair, and send it
    ``hello`` (what to run) as its first message.

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
    conn = Connection(parent_sock.detach())
    try:
        conn.send(hello)
    except Exception:
        conn.close()
        _reap(proc)
        raise
    return proc, conn


def _signal(proc: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` unless the process is already gone."""
    try:
        proc.send_signal(signum)
    except (ProcessLookupError, OSError):
        pass


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
