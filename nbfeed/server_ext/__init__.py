"""nbfeed's Jupyter server extension: REST, websocket and the OpenBB Workspace backend.

A thin adapter: :class:`~nbfeed.server_ext.app.NBFeed` owns a :class:`~nbfeed.hub.Hub` and exposes
it through tornado handlers that authenticate with Jupyter's own machinery. Jupyter finds the
extension through ``nbfeed._jupyter_server_extension_points`` (the package enabled in
``jupyter-config/``). Nothing outside this package imports it, except that entry point.
"""
