"""The websocket ``<base_url>nbfeed/api/stream``: wire protocol v1 over tornado.

Only moves bytes between the socket and a :class:`~nbfeed.hub.wire.WireSession`, which owns the
protocol. Authentication is Jupyter's (token header, ``?token=``, or login cookie; without one
the upgrade is refused with 403) and so is the Origin check: a token-authenticated request skips
it, a cookie-only one must come from the server's own origin or an allowed one.

Frames larger than 16 MB are refused by tornado (the socket closes with 1009); smaller ones over
``NBFeed.max_message_bytes`` get an ``error`` frame and the socket stays open.
"""

from __future__ import annotations

from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..hub.wire import WireSession
from .handlers import AUTH_RESOURCE, NBFeedHandlerMixin

HARD_MAX_MESSAGE = 16 * 1024 * 1024
_closing: set = set()  # keeps session.close() tasks alive until they finish


class StreamHandler(NBFeedHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """One client connection: subscribe/unsubscribe/history/search over JSON text frames."""

    auth_resource = AUTH_RESOURCE
    session: WireSession | None = None

    @property
    def max_message_size(self) -> int:  # tornado reads this on upgrade
        return HARD_MAX_MESSAGE

    async def pre_get(self) -> None:
        user = self.current_user
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE))
        if not allowed:
            raise web.HTTPError(403)

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.pre_get()
        res = super().get(*args, **kwargs)
        if res is not None:
            await res

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self.session = WireSession(self.hub, self._send, self.nbfeed_app.wire_limits())
        self._send(self.session.hello())

    def _send(self, frame: bytes) -> Any:
        try:
            # UTF-8 JSON bytes, sent as a text frame: no re-encoding per client.
            return self.write_message(frame)
        except WebSocketClosedError:
            return None

    async def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            await self.session.receive(message)

    def on_close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            import asyncio

            task = asyncio.ensure_future(session.close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
