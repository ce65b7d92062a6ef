"""The provider process: runs one ``Provider`` and talks to the hub over a pipe.

Started by :class:`nbfeed.hub.process.ProviderProcess` as a fresh interpreter (never a fork of
a threaded Jupyter server, which is unsafe); the first message on the pipe says what to run.
Messages are pickled tuples, batched both ways:

hub -> provider::

    ("sub", client, symbol, interval)       start_streaming
    ("unsub", client, symbol, interval)     on_close
    ("req", req_id, kind, args)             kind "history" | "dataset" | "open_session" |
                                            "close_session" | "control" (the last two are
                                            answered on the reader thread, at once; id 0
                                            means nobody waits for the reply)
    ("cancel", req_id)                      the hub stopped waiting: a request not started
                                            yet is skipped, the answer of one in progress
                                            is dropped instead of sent
    ("ping", seq)                           heartbeat
    ("stop",)

provider -> hub::

    ("ready", {"pid", "name", "intervals", "description", "session_options"})
                                            after init() returned
    ("init_failed", error)                  init() raised; the process then exits
    ("data", [(symbol, interval, columns), ...])
                                            one :class:`nbfeed.columns.Columns` per stream
                                            (a list of row dicts in the one case rows cannot
                                            be columns, see ``_Sink``)
    ("reply", req_id, ok, value_or_error)
    ("packed_reply", req_id, True, bytes)   a history answer: :class:`nbfeed.columns.Columns`
                                            pickled on its own, so the hub can drop a reply
                                            nobody waits for without unpickling it
    ("stream_error", symbol, interval, error)
    ("status", state, detail)
    ("market", "open"|"closed", [symbol, ...] or None, detail)   set_market_state
    ("pong", seq)                           heartbeat answer, from the control thread
    ("busy", seq, hook, seconds)            the control thread is still in ``hook``

The heartbeat: the command reader hands each ``ping`` to the control thread, the one that runs
the subscription hooks, and that thread answers ``pong``. A hook that never returns therefore
stops the answers even while other threads keep publishing rows, and the hub calls the process
stalled; the reader meanwhile says which hook it is stuck in (``busy``) so the hub can tell why.

History answers are columns, built here from whatever ``get_history`` returned (rows or a
DataFrame): one array per field instead of one object per value, so the hub reads an answer
with a few ``memcpy``s. The hub asks for big spans in pieces (``HistoryCache.fetch_bars``), so
an answer is never bigger than one piece on either side of the pipe.

Failure behaviour: when the hub's end of the pipe closes (the hub stopped or died, even by
SIGKILL) or the parent process disappears, this process exits within about a second, so no
provider outlives its server. A hook that raises affects only its caller.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..columns import BadRows, Columns
from ..errors import BadRequest, NBFeedError, UpstreamError
from ..intervals import TICK

if TYPE_CHECKING:
    from .base import Provider

log = logging.getLogger("nbfeed.runtime")

# A batch is sent as soon as the sender is free; under load rows pile up while the previous send
# is in flight, which batches them without adding latency at low rates.
MAX_BATCH_ROWS = 20_000


def _report(what: str, exc: BaseException) -> None:
    """One line for expected errors (nbfeed errors name the problem); a traceback for bugs."""
    if isinstance(exc, NBFeedError):
        log.warning("%s: %s", what, exc)
    else:
        log.warning("%s raised", what, exc_info=exc)


def _wire_error(exc: BaseException) -> NBFeedError:
    if isinstance(exc, NBFeedError):
        return exc
    if isinstance(exc, NotImplementedError):
        return UpstreamError("provider does not implement this hook")
    detail = f"{type(exc).__name__}: {exc}"
    return UpstreamError(detail[:2000])


class _Sink:
    """The provider's outgoing side: queues rows from any thread, one sender thread ships them.

    Each publish arrives with its rows as :class:`~nbfeed.columns.Columns`; the sender joins
    what waits per ``(symbol, interval)`` and ships one Columns per stream in one ``data``
    message. Rows of several streams in one publish are split by row first; rows that still
    could not be columns (not possible for rows ``publish`` checked) go as dicts."""

    def __init__(self, conn: Any, provider: Provider) -> None:
        self._conn = conn
        self._provider = provider
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: list[tuple[list[dict] | None, str | None, Columns]] = []
        self._pending_rows = 0
        self._wake = threading.Event()
        self._room = threading.Condition(self._lock)
        self.last_publish: dict[tuple[Any, str], float] = {}
        self.closed = False

    def send(self, msg: tuple) -> None:
        with self._send_lock:
            self._conn.send(msg)

    def queue(self, rows: list[dict], interval: str | None, columns: Columns) -> None:
        """Queue rows for the sender thread (``Provider.publish`` calls it with the rows and the
        same rows as columns); blocks while more than ``10 * MAX_BATCH_ROWS`` rows wait, until
        the sender catches up or the sink closes."""
        # Rows of one symbol and one interval travel as the columns alone; only rows of
        # several streams are kept as dicts too, for the sender to split.
        whole = "symbol" not in columns.fields and (interval or "interval" not in columns.fields)
        item = (None if whole else rows, interval, columns)
        with self._lock:
            # Back-pressure instead of unbounded memory when the hub cannot keep up.
            while self._pending_rows > 10 * MAX_BATCH_ROWS and not self.closed:
                self._room.wait(0.5)
            self._pending.append(item)
            self._pending_rows += len(columns)
        self._wake.set()

    def close(self) -> None:
        """Stop the sender thread and release publishers waiting for room."""
        with self._lock:
            self.closed = True
            self._room.notify_all()
        self._wake.set()

    def status(self, state: str, detail: str) -> None:
        self.send(("status", state, detail))

    def run_sender(self) -> None:
        while not self.closed:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, []
                self._pending_rows = 0
                self._room.notify_all()
            if not pending:
                continue
            now = time.monotonic()
            groups = self._group(pending)
            for key in groups:
                self.last_publish[key] = now
            try:
                self.send(("data", [(s, i, _joined(parts, s)) for (s, i), parts in groups.items()]))
            except (OSError, EOFError, BrokenPipeError):
                return

    def _group(self, pending: list[tuple[list[dict] | None, str | None, Columns]]
               ) -> dict[tuple[Any, str], list[Columns | list[dict]]]:
        """The pending publishes as parts per ``(symbol, interval)``, in publish order."""
        groups: dict[tuple[Any, str], list[Columns | list[dict]]] = {}
        guessed: dict[Any, str] | None = None  # symbol -> interval, for rows that name none
        for rows, interval, columns in pending:
            if rows is None:  # one stream: the columns as they are
                iv = interval
                if not iv:
                    if guessed is None:
                        guessed = _default_intervals(self._provider.streams())
                    iv = guessed.get(columns.symbol, TICK)
                groups.setdefault((columns.symbol, iv), []).append(columns)
                continue
            split: dict[tuple[Any, str], list[dict]] = {}
            for row in rows:
                sym = row.get("symbol")
                iv = interval or row.get("interval")
                if not iv:
                    if guessed is None:
                        guessed = _default_intervals(self._provider.streams())
                    iv = guessed.get(sym, TICK)
                key = (sym, iv)
                part = split.get(key)
                if part is None:
                    part = split[key] = []
                part.append(row)
            for key, part in split.items():
                try:
                    groups.setdefault(key, []).append(Columns.from_rows(part, key[0]))
                except BadRows:  # cannot happen to rows publish() checked; sent as rows then
                    log.exception("provider %s: rows of %s sent as dicts", self._provider.name,
                                  key)
                    groups.setdefault(key, []).append(part)
        return groups


def _joined(parts: list[Columns | list[dict]], symbol: Any) -> Columns | list[dict]:
    """One payload of a stream's parts: Columns (rows only if some part could not be columns)."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, Columns) for p in parts):
        return Columns.concat(parts, symbol)  # type: ignore[arg-type]
    return [row for p in parts for row in (p.rows() if isinstance(p, Columns) else p)]


def _hook_name(msg: tuple) -> str:
    """The hook a control message runs, as the hub shows it (``start_streaming('AAPL', '1m')``)."""
    if msg[0] in ("sub", "unsub"):
        name = "start_streaming" if msg[0] == "sub" else "on_close"
        return f"{name}({msg[2]!r:.40}, {msg[3]!r:.10})"
    if msg[0] == "idle":
        return f"no_update({msg[1]!r:.40}, {msg[2]!r:.10})"
    return str(msg[0])[:40]


def _default_intervals(streams: list[tuple[str, str]]) -> dict[Any, str]:
    """The interval a row without one belongs to, per symbol: ``tick`` when the symbol is
    subscribed to ticks, else its one (first) subscribed interval; unknown symbols: ``tick``."""
    out: dict[Any, str] = {}
    for symbol, interval in streams:
        if out.get(symbol) != TICK:
            out.setdefault(symbol, interval)
            if interval == TICK:
                out[symbol] = TICK
    return out


class ProviderRuntime:
    """Owns the provider instance and its threads inside the provider process."""

    def __init__(self, conn: Any, name: str, payload: tuple, options: dict, settings: dict) -> None:
        from .registry import class_from_payload

        self.conn = conn
        self.name = name
        self.settings = settings
        cls = class_from_payload(payload)
        self.provider = cls(**options)
        # The registered name wins over the class attribute (one class, several sources).
        self.provider.name = name
        self.provider.log = logging.getLogger(f"nbfeed.provider.{name}")
        self.sink = _Sink(conn, self.provider)
        self.provider._sink = self.sink
        self.control: queue.Queue = queue.Queue()
        self.workers = ThreadPoolExecutor(max_workers=int(settings.get("workers", 4)),
                                          thread_name_prefix=f"nbfeed-{name}-worker")
        self.idle_timeout = float(settings.get("idle_timeout", 30.0))
        self._idle_reported: dict[tuple[str, str], float] = {}
        # Ids of requests received and not answered yet, and those of them the hub cancelled
        # (set operations are atomic: the reader thread adds, workers discard).
        self._open_requests: set[int] = set()
        self._cancelled: set[int] = set()
        #: The hook the control thread is running and since when (``time.monotonic()``).
        self._in_hook: tuple[str, float] | None = None

    # ---- threads --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.provider.init()
        except BaseException as exc:
            _report(f"provider {self.name}: init()", exc)
            self.sink.send(("init_failed", _wire_error(exc)))
            return
        for target, tname in ((self.sink.run_sender, "sender"), (self._run_control, "control"),
                              (self._watch_parent, "parent-watch"), (self._watch_idle, "idle")):
            threading.Thread(target=target, name=f"nbfeed-{self.name}-{tname}",
                             daemon=True).start()
        self.sink.send(("ready", {"pid": os.getpid(), "name": self.name,
                                  "intervals": list(self.provider.intervals),
                                  "description": type(self.provider).describe(),
                                  "session_options": list(self.provider.session_options)}))
        self._read_commands()

    def _read_commands(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            op = msg[0]
            if op == "stop":
                break
            if op in ("sub", "unsub"):
                self.control.put(msg)
            elif op == "ping":
                self.control.put(msg)
                hook = self._in_hook
                if hook is not None and time.monotonic() - hook[1] >= 1.0:
                    self._safe_send(("busy", msg[1], hook[0], time.monotonic() - hook[1]))
            elif op == "req":
                if msg[2] in ("control", "close_session"):
                    self._answer(*msg[1:])  # quick by contract; must not queue behind history
                else:
                    self._open_requests.add(msg[1])
                    self.workers.submit(self._answer, *msg[1:])
            elif op == "cancel" and msg[1] in self._open_requests:
                self._cancelled.add(msg[1])
        self.shutdown()

    def _run_control(self) -> None:
        p = self.provider
        while True:
            msg = self.control.get()
            if msg is None:
                return
            op = msg[0]
            if op == "ping":
                self._safe_send(("pong", msg[1]))
                continue
            self._in_hook = (_hook_name(msg), time.monotonic())
            try:
                if op == "sub":
                    _, client, symbol, interval = msg
                    p.start_streaming(client, symbol, interval)
                elif op == "unsub":
                    _, client, symbol, interval = msg
                    p.on_close(client, symbol, interval)
                elif op == "idle":
                    _, symbol, interval = msg
                    p.no_update(symbol, interval)
            except BaseException as exc:
                if op == "sub":
                    _report(f"provider {self.name}: start_streaming({msg[2]!r}, {msg[3]!r})",
                            exc)
                    self._safe_send(("stream_error", msg[2], msg[3], _wire_error(exc)))
                else:
                    log.exception("provider %s: %s hook raised", self.name, op)
            finally:
                self._in_hook = None

    def _answer(self, req_id: int, kind: str, args: tuple) -> None:
        try:
            if req_id in self._cancelled:
                return  # cancelled while it waited for a worker: never started
            self._answer_now(req_id, kind, args)
        finally:
            self._open_requests.discard(req_id)
            self._cancelled.discard(req_id)

    def _answer_now(self, req_id: int, kind: str, args: tuple) -> None:
        p = self.provider
        try:
            if kind == "history":
                symbol, interval, start, end, count, *more = args
                from .rows import history_columns

                options = more[0] if more else None
                raw = (p.get_history(symbol, interval, start, end, count, **options) if options
                       else p.get_history(symbol, interval, start, end, count))
                if req_id in self._cancelled:
                    log.debug("provider %s: history request %s cancelled; answer dropped",
                              self.name, req_id)
                    return
                columns = history_columns(raw, source=self.name, symbol=symbol,
                                          interval=interval)
                del raw
                if req_id and req_id not in self._cancelled:
                    packed = pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL)
                    del columns
                    self._safe_send(("packed_reply", req_id, True, packed))
                return
            elif kind == "open_session":
                session, symbols, interval, options = args
                value: Any = p.open_session(session, list(symbols), interval, dict(options))
            elif kind == "close_session":
                value = p.close_session(args[0])
            elif kind == "control":
                session, command, command_args = args
                value = p.control(session, command, dict(command_args))
            elif kind == "dataset":
                from .dataset import validate_entries
                from .listing import prepare_entries

                # Checked, JSON-encoded and sorted here, in the provider's process: the hub
                # receives a few lists of text and only writes them (hub/catalog_populate.py).
                value = prepare_entries(self.name, validate_entries(self.name, p.get_dataset()))
            else:
                raise BadRequest(f"unknown request kind {kind!r}")
            if req_id:  # id 0: one-way, nobody waits for a reply
                self._safe_send(("reply", req_id, True, value))
        except BaseException as exc:
            if not isinstance(exc, (NBFeedError, NotImplementedError)) or not req_id:
                _report(f"provider {self.name}: {kind} request", exc)
            if req_id:
                self._safe_send(("reply", req_id, False, _wire_error(exc)))

    def _safe_send(self, msg: tuple) -> None:
        try:
            self.sink.send(msg)
        except (OSError, EOFError, BrokenPipeError):
            pass
        except Exception as exc:  # e.g. an unpicklable value returned by get_history
            if msg[0] == "reply":
                self.sink.send(("reply", msg[1], False,
                                UpstreamError(f"could not send the reply: {exc}")))

    def _watch_parent(self) -> None:
        parent = int(self.settings.get("parent_pid") or os.getppid())
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                # Orphaned (the server was SIGKILLed): nothing would read our data; leave.
                os._exit(0)

    def _watch_idle(self) -> None:
        if self.idle_timeout <= 0:
            return
        period = max(0.05, self.idle_timeout / 4)
        started: dict[tuple[str, str], float] = {}
        while True:
            time.sleep(period)
            now = time.monotonic()
            active = set(self.provider.streams())
            for key in list(started):
                if key not in active:
                    del started[key]
            for key in active:
                started.setdefault(key, now)
                last = max(self.sink.last_publish.get(key, 0.0), started[key],
                           self._idle_reported.get(key, 0.0))
                if now - last >= self.idle_timeout:
                    self._idle_reported[key] = now
                    self.control.put(("idle", key[0], key[1]))

    def shutdown(self) -> None:
        self.provider.stopping.set()
        self.sink.close()
        self.control.put(None)
        self.workers.shutdown(wait=False, cancel_futures=True)


def child_main(conn: Any, name: str, payload: tuple, options: dict, settings: dict) -> None:
    """Run the provider until told to stop or orphaned, then exit the process."""
    import signal
    import sys

    # Ctrl-C in a terminal reaches the whole process group; the hub decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for entry in settings.get("sys_path", []):
        if entry not in sys.path:
            sys.path.append(entry)  # modules a notebook-defined provider imports
    logging.basicConfig(level=settings.get("log_level", "WARNING"),
                        format=f"[nbfeed provider {name}] %(levelname)s %(name)s: %(message)s")
    try:
        runtime = ProviderRuntime(conn, name, payload, options, settings)
    except BaseException as exc:
        _report(f"provider {name}: loading the class", exc)
        try:
            conn.send(("init_failed", _wire_error(exc)))
        except Exception:
            pass
        return
    runtime.run()
    # Daemon threads (author's upstream loops) must not keep a stopped provider alive.
    os._exit(0)


def main(argv: list[str]) -> None:
    """``python -m nbfeed.providers.runtime FD NAME``: FD is our end of the hub's socket pair."""
    from multiprocessing.connection import Connection

    conn = Connection(int(argv[1]))
    try:
        name, payload, options, settings = conn.recv()
    except (EOFError, OSError):
        return
    child_main(conn, name, payload, options, settings)


if __name__ == "__main__":
    import sys

    main(sys.argv)
