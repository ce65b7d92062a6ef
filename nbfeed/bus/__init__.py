"""The shared feed: providers run once for a whole deployment, every hub reaches them via Redis.

On a JupyterHub every user's Jupyter server would otherwise run its own providers - fifty
upstream connections to a vendor that allows one, fifty downloads of the same history. With the
bus, one *feed server* (``nbfeed feed-server --redis URL``, :class:`FeedServer`) runs the
providers, the history cache and the catalog, and every user server is a client of it
(``c.NBFeed.bus = URL``: its hub's sources are :class:`~nbfeed.bus.source.BusSource` transports
built by a :class:`BusClient`). Notebooks, REST, the websocket, Workspace and the CLI work
unchanged on top of the hub.

How the pieces talk, all through Redis (key names in :mod:`nbfeed.bus.keys`):

==================  ======================================================================
live rows           one Redis Stream per ``(source, symbol, interval)``, one entry per
                    provider batch, ``MAXLEN ~`` bounded; readers ``XREAD BLOCK`` and resume
                    after the last entry seen (:mod:`~nbfeed.bus.publisher`,
                    :mod:`~nbfeed.bus.reader`)
demand              each user server's wanted streams in a set with a lease; the feed server
                    subscribes upstream once per stream of the union and stops when the last
                    server leaves or dies (:mod:`~nbfeed.bus.demand`)
history             requests and replies on lists, with ids and deadlines; identical requests
                    share one call (:mod:`~nbfeed.bus.requests`)
catalog             compressed listing + version per source, replicated into each server's
                    local SQLite catalog, so search stays local
status              an events stream and a per-source record that expires with its owner, so a
                    dead feed shows as ``stale`` (:mod:`~nbfeed.bus.source`)
scale-out           one owner per source at a time, by lease (:mod:`~nbfeed.bus.ownership`)
==================  ======================================================================

Why Redis Streams and not pub/sub: a stream keeps its last entries, so a reader that lost its
connection resumes without a gap and a new subscriber gets a snapshot from the tail; ``MAXLEN ~``
bounds memory. Why plain ``XREAD`` and not consumer groups: every server must see every entry of
the streams it reads (fan-out), and a group would leave per-consumer state behind that a dead
server never cleans up; with ``XREAD`` the position lives in the reader, nothing in Redis.

Security: URLs carry the user and password (or ``NBFEED_BUS_PASSWORD``), ``rediss://`` gives TLS;
only redacted URLs are ever logged. :mod:`nbfeed.bus.acl` writes the ACL recipe for the two roles:
a feed server may write everything under the namespace; a user server may read the streams,
records and catalogs, write only demand sets, its lease and requests, and pop replies - it cannot
publish market data, forge replies or command providers.
"""

from .client import BusClient
from .feed import FeedServer

__all__ = ["BusClient", "FeedServer"]
