"""``nbfeed feed-server``: run the providers once for a whole deployment, served through Redis.

::

    nbfeed feed-server --redis redis://feed:PASSWORD@redis.internal:6379/0 \\
        --provider binance --provider polygon --option polygon.api_key=env:POLYGON_API_KEY

(also ``python -m nbfeed.bus``; the command lives with the other commands, the feed server it
runs in :mod:`nbfeed.bus.feed`). It runs until SIGTERM or Ctrl-C, then hands its sources over
(another feed server, if one runs, takes them at once) and stops its provider processes. SIGHUP
asks every owned provider for its symbol listing again and publishes it to every user server
(``systemctl reload``). Logs go to stderr, one line each, URLs always redacted.

The URL may also come from ``NBFEED_BUS`` and its password from ``NBFEED_BUS_PASSWORD``. Option
values written ``env:NAME`` are read from the environment (keys stay out of process lists).

Exit codes: 0 after a signal, 1 the feed could not start, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..bus.connection import redact
from ..errors import NBFeedError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ENV_URL = "NBFEED_BUS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The feed server's options (shared by ``nbfeed feed-server`` and ``python -m
    nbfeed.bus``)."""
    parser.add_argument("--redis", metavar="URL", default=os.environ.get(ENV_URL),
                        help="redis:// or rediss:// URL (default: $NBFEED_BUS); the password "
                             "may come from $NBFEED_BUS_PASSWORD")
    parser.add_argument("--namespace", default="nbfeed",
                        help="prefix of every Redis key (default nbfeed)")
    parser.add_argument("--id", dest="feed_id", help="this feed server's name in Redis "
                        "(default: feed-<host>-<pid>-<random>)")
    parser.add_argument("--lease-ttl", type=float, default=10.0, metavar="SECONDS",
                        help="a source's owner must renew within this (default 10): how long "
                             "a dead feed server's sources wait for another")
    parser.add_argument("--stream-length", type=int, default=200, metavar="ENTRIES",
                        help="entries kept per live stream (MAXLEN ~, default 200): the window "
                             "a reconnecting reader resumes within")
    parser.add_argument("--stream-ttl", type=float, default=300.0, metavar="SECONDS",
                        help="a live stream nobody wants is deleted after this (default 300)")
    parser.add_argument("--catalog-refresh", type=float, default=0.0, metavar="SECONDS",
                        help="re-list every provider's symbols this often (default 0: at start "
                             "and on SIGHUP only)")
    parser.add_argument("--max-streams-per-server", type=int, default=10_000, metavar="N",
                        help="streams one user server may ask for (default 10000)")
    parser.add_argument("--home", type=Path, metavar="DIR",
                        help="folder for the catalog and the shared history cache "
                             "(default: $NBFEED_HOME, else <jupyter data dir>/nbfeed)")
    parser.add_argument("--provider", dest="providers", action="append",
                        metavar="NAME[=MODULE:CLASS]",
                        help="a provider to run (repeatable; default simulated and csv)")
    parser.add_argument("--option", dest="options", action="append",
                        metavar="SOURCE.KEY=VALUE",
                        help="a provider option (repeatable); VALUE is JSON if it parses; "
                             "env:NAME reads an environment variable")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long a provider may take to start or to answer (default 30)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbfeed feed-server", allow_abbrev=False,
        description="Run providers once for a whole deployment and serve them to every "
                    "Jupyter server through Redis.")
    add_arguments(parser)
    return parser


def _env_options(options: dict[str, dict[str, Any]]) -> None:
    for values in options.values():
        for key, value in values.items():
            if isinstance(value, str) and value.startswith("env:"):
                values[key] = os.environ.get(value[4:], "")


def feed_server_from_args(args: argparse.Namespace) -> Any:
    """Build (not start) the :class:`FeedServer` an argument namespace describes."""
    from ..bus.feed import FeedServer
    from ..hub import HubConfig, default_home
    from .runner import provider_specs

    if not args.redis:
        raise _Usage("give the Redis URL with --redis or $NBFEED_BUS")
    specs = provider_specs(args.providers, args.options)
    _env_options({spec.name: spec.options for spec in specs})
    home = Path(args.home).expanduser() if args.home is not None else default_home()
    os.environ["NBFEED_HOME"] = str(home)  # the provider processes inherit it
    config = HubConfig(providers=specs, home=home, request_timeout=args.timeout,
                       start_timeout=max(args.timeout, 5.0))
    return FeedServer(args.redis, config, namespace=args.namespace, feed_id=args.feed_id,
                      lease_ttl=args.lease_ttl, stream_length=args.stream_length,
                      stream_ttl=args.stream_ttl, catalog_refresh=args.catalog_refresh,
                      max_streams_per_server=args.max_streams_per_server)


class _Usage(Exception):
    pass


async def serve(feed: Any, *, ready: Any = None) -> None:
    """Start ``feed``, serve until SIGINT/SIGTERM, stop it; SIGHUP refreshes the catalogs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    refreshes: set[asyncio.Task] = set()

    def refresh() -> None:
        task = asyncio.ensure_future(feed.refresh_catalogs())
        refreshes.add(task)
        task.add_done_callback(refreshes.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, refresh)
        handled.append(signal.SIGHUP)
    try:
        await feed.start()
        if ready is not None:
            ready()
        await stop.wait()
    finally:
        await feed.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        feed = feed_server_from_args(args)
    except _Usage as exc:
        print(f"nbfeed feed-server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NBFeedError as exc:
        print(f"nbfeed feed-server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # e.g. UsageError of the provider options
        print(f"nbfeed feed-server: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def ready() -> None:
        print(f"nbfeed feed server {feed.feed_id} serving {', '.join(feed.leased)} on "
              f"{redact(feed.url)}", file=sys.stderr, flush=True)

    try:
        asyncio.run(serve(feed, ready=ready))
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        logging.getLogger("nbfeed.bus").error("feed server failed: %s", exc)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
