"""The notebook API: :func:`connect` and the :class:`Feed` / :class:`Stream` it hands out.

- :mod:`.connect` - :func:`connect` and :func:`find_server` (how a kernel finds its server);
- :mod:`.feed` - :class:`Feed`, the same API embedded or remote; :mod:`.embedded` (a hub in this
  process) and :mod:`.remote` (REST + one websocket to a server) implement it;
- :mod:`.stream` - :class:`Stream`, live rows with callbacks, ``async for`` and ``latest``;
- :mod:`.http` - :class:`ServerInfo` and one authenticated JSON request to a server;
- :mod:`.publish` - tables published to OpenBB Workspace (the face is :mod:`nbfeed.workspace`);
- :mod:`.frames` - rows as pandas DataFrames.
"""

from .connect import connect, find_server
from .feed import Feed
from .http import ServerInfo
from .stream import Stream

__all__ = ["Feed", "ServerInfo", "Stream", "connect", "find_server"]
