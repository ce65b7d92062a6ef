"""A websocket connection that stays open: connect, handshake, read, reconnect with backoff.

Why ``websockets`` (its threading client, ``websockets.sync.client``): providers are synchronous
code with their own threads, and this client is exactly that - a blocking ``recv(timeout=...)``
on a thread, automatic answers to the server's pings, client pings that notice a dead TCP
connection, and no event loop to host. tornado's websocket client would need an IOLoop per
provider thread; the vendors' clients are asyncio-based and do not resubscribe after a drop.

One :class:`ReconnectingSocket` owns one thread and one connection at a time. The protocol on top
is the owner's business, through three callbacks run on that thread:

* ``on_open(conn)`` - after each (re)connect: authenticate, resubscribe. Raise
  :class:`PermanentStreamError` when retrying cannot help (a rejected API key): the socket then
  stops for good and reports ``failed``.
* ``on_message(text)`` - each text frame; an exception here is logged and the stream goes on
  (one bad frame must not cut everybody's data).
* ``on_idle(conn)`` - after every frame and at least every ``idle_interval`` seconds: send queued
  control messages (subscribe/unsubscribe), so only this thread ever writes to the socket.

Failure behaviour: a dropped connection, a refused handshake or a server close are followed by a
reconnect after an exponential, jittered backoff (reset once a connection has stayed up for
``healthy_after`` seconds). A clean server close (1000/1001, e.g. a scheduled disconnect) or a
:meth:`reconnect` request reconnects at once, the first time. ``max_age`` closes and reopens a
connection before the server's own cut-off (Binance ends connections after 24 hours).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

_CLEAN_CLOSE = (1000, 1001)


class PermanentStreamError(Exception):
    """Raised by ``on_open`` when reconnecting cannot help (bad credentials, no entitlement)."""


class Backoff:
    """Exponential backoff with jitter: ``initial * factor**n`` capped at ``maximum`` seconds."""

    def __init__(self, initial: float = 0.5, factor: float = 2.0, maximum: float = 30.0,
                 jitter: float = 0.2) -> None:
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.attempt)
        self.attempt += 1
        return delay * (1 + self.jitter * random.random())

    def reset(self) -> None:
        self.attempt = 0


class ReconnectingSocket:
    """One upstream websocket kept open by its own daemon thread (see the module docstring)."""

    def __init__(
        self,
        url: Callable[[], str] | str,
        *,
        name: str,
        on_open: Callable[[ClientConnection], None] | None = None,
        on_message: Callable[[str], None],
        on_idle: Callable[[ClientConnection], None] | None = None,
        on_state: Callable[[str, str], None] | None = None,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
        idle_interval: float = 0.2,
        healthy_after: float = 10.0,
        max_age: float | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_size: int = 4 * 1024 * 1024,
        log: logging.Logger | None = None,
    ) -> None:
        self._url = url if callable(url) else (lambda: url)
        self.name = name
        self._on_open = on_open
        self._on_message = on_message
        self._on_idle = on_idle
        self._on_state = on_state
        self._stop = stop
        self._closing = threading.Event()
        self._reconnect_now = threading.Event()
        self.backoff = backoff or Backoff()
        self.idle_interval = idle_interval
        self.healthy_after = healthy_after
        self.max_age = max_age
        self._connect_kwargs = dict(open_timeout=open_timeout, ping_interval=ping_interval,
                                    ping_timeout=ping_timeout, max_size=max_size,
                                    close_timeout=2.0)
        self.log = log or logging.getLogger(f"nbfeed.ws.{name}")
        self.connected = threading.Event()
        self.connects = 0
        self.state = "idle"
        self.detail = ""
        self._thread: threading.Thread | None = None

    # ---- control (any thread) ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"nbfeed-ws-{self.name}",
                                            daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the connection (no reconnect)."""
        self._closing.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def reconnect(self) -> None:
        """Close the current connection and open a new one at once (e.g. server shutdown notice)."""
        self._reconnect_now.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the thread -------------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._closing.is_set() or (self._stop is not None and self._stop.is_set())

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if we should stop instead."""
        deadline = time.monotonic() + seconds
        while not self._stopping():
            left = deadline - time.monotonic()
            if left <= 0 or self._reconnect_now.is_set():
                return False
            self._closing.wait(min(left, 0.1))
        return True

    def _set_state(self, state: str, detail: str = "") -> None:
        self.state, self.detail = state, detail
        if self._on_state is not None:
            try:
                self._on_state(state, detail)
            except Exception:
                self.log.exception("%s: state callback failed", self.name)

    def _run(self) -> None:
        delay = 0.0
        while not self._stopping():
            if delay and self._sleep(delay):
                break
            self._reconnect_now.clear()
            try:
                conn = connect(self._url(), **self._connect_kwargs)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                delay = self.backoff.next()
                self._set_state("reconnecting", f"connect failed: {_describe(exc)}")
                self.log.warning("%s: connect failed (%s); retry in %.1f s", self.name,
                                 _describe(exc), delay)
                continue
            except InvalidURI as exc:
                self._set_state("failed", f"bad websocket URL: {exc}")
                return
            self.connects += 1
            try:
                delay = self._serve(conn)
            except PermanentStreamError as exc:
                self._set_state("failed", str(exc))
                self.log.error("%s: %s; not reconnecting", self.name, exc)
                _close_quietly(conn)
                return
            except Exception as exc:  # a bug or an unexpected reply in a handshake: retry later
                delay = self.backoff.next()
                self._set_state("reconnecting", _describe(exc))
                self.log.exception("%s: connection failed; reconnecting in %.1f s", self.name,
                                   delay)
                _close_quietly(conn)
            finally:
                self.connected.clear()
        self._set_state("closed")

    def _serve(self, conn: ClientConnection) -> float:
        """Run one connection; return the delay before the next connect attempt."""
        opened = time.monotonic()
        try:
            if self._on_open is not None:
                self._on_open(conn)
            self.connected.set()
            self._set_state("connected")
            healthy = False
            while True:
                if self._stopping():
                    _close_quietly(conn)
                    return 0.0
                now = time.monotonic()
                if self._reconnect_now.is_set():
                    self.log.info("%s: reconnecting on request", self.name)
                    _close_quietly(conn, 1000, "reconnect")
                    self.backoff.reset()
                    return 0.0
                if self.max_age is not None and now - opened > self.max_age:
                    self.log.info("%s: connection is %.0f s old; renewing it", self.name,
                                  now - opened)
                    _close_quietly(conn, 1000, "renew")
                    return 0.0
                if not healthy and now - opened > self.healthy_after:
                    healthy = True
                    self.backoff.reset()
                try:
                    message = conn.recv(timeout=self.idle_interval)
                except TimeoutError:
                    message = None
                if message is not None:
                    if isinstance(message, bytes):
                        message = message.decode("utf-8", "replace")
                    try:
                        self._on_message(message)
                    except Exception:
                        self.log.exception("%s: failed to handle a message: %.200r", self.name,
                                           message)
                if self._on_idle is not None:
                    self._on_idle(conn)
        except ConnectionClosed as exc:
            received = exc.rcvd
            clean = received is not None and received.code in _CLEAN_CLOSE
            why = (f"server closed the connection ({received.code} {received.reason})".rstrip()
                   if received is not None else "connection dropped")
            # A scheduled disconnect is routine: reconnect at once the first time.
            first = self.backoff.attempt == 0
            delay = 0.0 if clean and first else self.backoff.next()
            if clean and first:
                self.backoff.attempt = 1
            self._set_state("reconnecting", why)
            self.log.warning("%s: %s; reconnecting in %.1f s", self.name, why, delay)
            return delay
        except (OSError, TimeoutError) as exc:
            delay = self.backoff.next()
            self._set_state("reconnecting", _describe(exc))
            self.log.warning("%s: %s; reconnecting in %.1f s", self.name, _describe(exc), delay)
            _close_quietly(conn)
            return delay


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


def _close_quietly(conn: Any, code: int = 1000, reason: str = "") -> None:
    try:
        conn.close(code, reason)
    except Exception:
        pass
