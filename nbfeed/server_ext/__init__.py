"""nbfeed's Jupyter server extension: REST, websocket and the OpenBB Workspace backend.

A thin adapter: :class:`~nbfeed.server_ext.app.NBFeed` owns a :class:`~nbfeed.hub.Hub` and exposes
it through tornado handlers that authenticate with Jupyter's own machinery.
"""


def _jupyter_server_extension_points() -> list[dict]:
    from .app import NBFeed

    return [{"module": "nbfeed.server_ext.app", "app": NBFeed}]
