"""One tornado shell for both socket protocols: wire protocol v1 and the Workspace live grid.

Each protocol lives in a session object that knows no tornado (:class:`~nbfeed.hub.wire.
WireSession`, :class:`~nbfeed.server_ext.workspace.live.LiveGridSession`); a subclass of
:class:`SessionSocket` adds only its access checks (in ``get``) and :meth:`~SessionSocket.
make_session`. The shell moves frames between the socket and the session:

- when the socket opens, :meth:`~SessionSocket.make_session` builds the session, handing it
  :meth:`~SessionSocket.send` as its way out;
- :meth:`~SessionSocket.send` writes one frame (UTF-8 JSON ``bytes`` go out as a text frame,
  without re-encoding; ``binary=True`` makes it a binary frame) and returns tornado's write
  future, which completes once the frame is in the OS buffer (flow control) and raises if the
  connection closes first; once the socket is closed it returns None instead;
- every client message goes to ``session.receive``, which never raises;
- when the socket closes, ``session.close()`` runs as a task kept referenced until it is done;
- every log line about the request shows it without its secrets (:mod:`.base`).

Frames larger than ``max_message_bytes`` are refused by tornado before a session sees them (the
socket closes with 1009). WebSocketMixin pings every 30 s and closes a peer that stopped
answering; the shell never closes a healthy socket itself.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..hub.tasks import background
from .base import RedactedRequestMixin


class Session(Protocol):
    """What a socket protocol gives the shell."""

    async def receive(self, message: str | bytes) -> None: ...

    async def close(self) -> None: ...


class SessionSocket(RedactedRequestMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """A websocket that hands its frames to one :class:`Session` (see module docstring).

    Its request shows only redacted URIs (:mod:`.base`): the live grid's path carries a
    capability."""

    #: The largest client frame tornado accepts; larger ones close the socket (1009).
    max_message_bytes = 16 * 1024 * 1024
    session: Session | None = None

    @property
    def max_message_size(self) -> int:  # tornado reads this on upgrade
        return self.max_message_bytes

    def make_session(self, *path_args: str) -> Session:
        """The session of this connection, made when the socket opens (it may send at once)."""
        raise NotImplementedError

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self.session = self.make_session(*args)

    def send(self, frame: bytes | str, binary: bool = False) -> Awaitable[Any] | None:
        """Write one text frame (a binary one if ``binary``); the write future, or None when
        the socket is closed."""
        try:
            return self.write_message(frame, binary=binary)
        except WebSocketClosedError:
            return None

    async def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            await self.session.receive(message)

    def on_close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            background(session.close(), f"closing the session of {type(self).__name__}")
