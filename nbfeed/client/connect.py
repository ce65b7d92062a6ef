"""How ``connect()`` finds its nbfeed, in order:

1. ``url`` (and ``token``) given explicitly;
2. ``NBFEED_SERVER_INFO``, the runtime file the extension exported to kernels it started;
3. ``<jupyter runtime dir>/nbfeed-$JPY_PARENT_PID.json`` (a kernel's parent is its server);
4. otherwise an embedded hub in this process (plain ``python``, nbclient, CI) - one on the
   shared feed of a JupyterHub (:mod:`nbfeed.bus`) when ``bus`` is given or ``NBFEED_BUS`` is
   set (and no ``providers`` are asked for), running no provider of its own.

A found server that does not answer within a few seconds (a remote or gateway kernel cannot
reach the server's localhost) is skipped with a warning, falling back to embedded. Under
JupyterHub the token is ``JUPYTERHUB_API_TOKEN``, sent as a header.
"""

from __future__ import annotations

import logging
import os
import threading

from ..runtime_file import ENV_INFO, pid_alive, read_info
from .feed import Feed
from .http import ServerInfo

log = logging.getLogger("nbfeed.client")
_default: Feed | None = None
_default_lock = threading.Lock()


def find_server() -> ServerInfo | None:
    """The Jupyter server with nbfeed that this kernel belongs to (steps 2-3 above), or None."""
    candidates = []
    if os.environ.get(ENV_INFO):
        candidates.append(os.environ[ENV_INFO])
    ppid = os.environ.get("JPY_PARENT_PID")
    if ppid and ppid.isdigit():
        from jupyter_core.paths import jupyter_runtime_dir

        candidates.append(os.path.join(jupyter_runtime_dir(), f"nbfeed-{ppid}.json"))
    for path in candidates:
        info = read_info(path)
        if info and info.get("url") and pid_alive(info.get("pid")):
            token = info.get("token") or os.environ.get("JUPYTERHUB_API_TOKEN") or ""
            return ServerInfo(str(info["url"]), str(token))
    return None



def connect(url: str | None = None, token: str | None = None, *, embedded: bool | None = None,
            providers: list[str] | None = None, home: str | None = None,
            bus: str | None = None, timeout: float = 60.0) -> Feed:
    """Return a :class:`Feed` (see the module docstring for how it is found).

    ``connect()`` without arguments returns the same Feed every time in a process.
    ``embedded=True`` forces an in-process hub (``providers`` and ``home`` apply to it);
    ``bus="redis://..."`` an in-process hub on that shared feed.
    """
    global _default
    from .embedded import EmbeddedFeed
    from .remote import RemoteFeed

    if url is not None:
        feed = RemoteFeed(url, token=token, timeout=timeout)
        feed.ping(timeout=min(timeout, 10.0))
        return feed
    if bus is not None:
        return EmbeddedFeed(providers=providers, home=home, timeout=timeout, bus=bus)
    # A kernel of a JupyterHub with a shared feed inherits NBFEED_BUS: an embedded hub there
    # uses the feed too, unless providers of its own are asked for.
    env_bus = (os.environ.get("NBFEED_BUS") or None) if providers is None else None
    if embedded or providers is not None or home is not None:
        return EmbeddedFeed(providers=providers, home=home, timeout=timeout, bus=env_bus)
    with _default_lock:
        if _default is not None and not getattr(_default, "_closed", False):
            return _default
        server = find_server()
        if server is not None:
            feed = RemoteFeed(server.url, token=server.token, timeout=timeout)
            try:
                feed.ping()
                _default = feed
                return feed
            except Exception as exc:
                log.warning("nbfeed: the Jupyter server at %s did not answer (%s); using an "
                            "embedded hub instead", server.url, exc)
        if embedded is False:
            raise RuntimeError("nbfeed: no Jupyter server with nbfeed found for this kernel")
        _default = EmbeddedFeed(timeout=timeout, bus=env_bus)
        return _default
