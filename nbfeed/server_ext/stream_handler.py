"""The websocket ``<base_url>nbfeed/api/stream``: wire protocol v1 over tornado.

A :class:`~nbfeed.server_ext.sockets.SessionSocket` around a :class:`~nbfeed.hub.wire.WireSession`,
which owns the protocol. What this handler adds is access: authentication is Jupyter's (token
header, ``?token=``, or login cookie; without one the upgrade is refused with 403) and so is the
Origin check: a token-authenticated request skips it, a cookie-only one must come from the
server's own origin or an allowed one. The user must also be authorized to read ``nbfeed``.

Frames larger than 16 MB are refused by tornado (the socket closes with 1009); smaller ones over
``NBFeed.max_message_bytes`` get an ``error`` frame and the socket stays open, and so does a
binary frame from the client (the protocol's messages are JSON text; binary frames only ever go
from the server to a client that asked for them).
"""

from __future__ import annotations

from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from tornado import web

from ..hub import Hub
from ..hub.wire import WireLimits, WireSession
from .handlers import AUTH_RESOURCE
from .sockets import SessionSocket


class StreamHandler(SessionSocket):
    """One client connection: subscribe/unsubscribe/history/search over JSON text frames
    (binary ``data_update`` frames for a client that asked: :mod:`nbfeed.wire_binary`)."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, hub: Hub, limits: WireLimits) -> None:
        self.hub = hub
        self.limits = limits

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

    async def on_message(self, message: str | bytes) -> None:
        # tornado hands text frames over as str and binary frames as bytes.
        session = self.session
        if isinstance(message, bytes) and isinstance(session, WireSession):
            await session.refuse_binary(message)
        else:
            await super().on_message(message)

    def make_session(self) -> WireSession:
        session = WireSession(self.hub, self.send, self.limits)
        self.send(session.hello())
        return session
