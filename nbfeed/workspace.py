"""Publish tables from a notebook to OpenBB Workspace: ``import nbfeed.workspace as ws``.

::

    @ws.widget(name="Top movers", every=30)      # re-run and push every 30 s
    def movers():
        return feed.history("simulated", "AAPL", "1d", count=20)

The implementation, and how publishing behaves when the kernel is busy, restarted or embedded,
is in :mod:`nbfeed.client.publish`.
"""

from .client.publish import (
    PublishedWidget,
    configure,
    publish_target,
    server_urls,
    to_table,
    widget,
)

__all__ = ["PublishedWidget", "configure", "publish_target", "server_urls", "to_table", "widget"]
