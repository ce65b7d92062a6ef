"""The ``nbfeed`` command: what people do with nbfeed outside a notebook.

::

    nbfeed providers                                  # which sources, are they healthy
    nbfeed populate [SOURCE...]                       # fill/refresh the symbol catalog
    nbfeed symbols apple --limit 5                    # search the catalog
    nbfeed history simulated AAPL 1m --count 100 --format csv
    nbfeed stream simulated AAPL MSFT --limit 20      # tail live rows (Ctrl-C ends)
    nbfeed record simulated AAPL --duration 60        # record to Parquet (see .record)
    nbfeed recordings [show|export|delete|repair]     # manage recordings
    nbfeed new-provider my_feed --dir .               # scaffold a provider and its test
    nbfeed serve ...                                  # a Jupyter server with nbfeed
    nbfeed feed-server --redis redis://...            # providers once for a whole JupyterHub
    nbfeed bus-acl > users.acl                        # Redis ACL users for the shared feed

Each command (except ``new-provider`` and ``serve``) runs an embedded :class:`~nbfeed.hub.Hub`
for its own duration, with the providers it needs: those named with ``--provider``, else the
command's source (``history``/``stream``/``populate SOURCE``/``symbols --source``), else
``simulated`` and ``csv``. With ``--bus URL`` (or ``$NBFEED_BUS`` when no ``--provider`` is
given) the hub runs no provider at all and takes every source from the shared feed server through
Redis (:mod:`nbfeed.bus`). The hub is always stopped before the command returns - after success,
errors, Ctrl-C or SIGTERM - so no provider process outlives it.

Modules: :mod:`.parser` (the argument parser), :mod:`.commands` (what each command does),
:mod:`.feed_server` (``feed-server``),
:mod:`.runner` (the providers a command loads, and a hub that always stops), :mod:`.output`
(tables, CSV and JSON), :mod:`.scaffold` (``new-provider`` and its ``templates/``),
:mod:`.record` (``record`` and ``recordings``).

Exit codes: 0 success (``stream`` also after Ctrl-C or ``--limit``), 1 a request failed (unknown
source/symbol/interval, bad date, a provider error), 2 bad usage, 130 interrupted. Errors are one
line on stderr naming the bad value, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from collections.abc import Sequence

from ..errors import NBFeedError
from .commands import COMMANDS, cmd_serve
from .parser import build_parser
from .runner import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, say, set_home

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nbfeed`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "serve":
        if args.home is not None:
            try:
                set_home(args)
            except UsageError as exc:
                parser.exit(EXIT_USAGE, f"nbfeed: error: {exc}\n")
        return cmd_serve(extra)
    if args.command == "feed-server":
        from .feed_server import main as feed_server_main

        return feed_server_main(extra)
    if args.command == "bus-acl":
        from ..bus.acl import main as acl_main

        return acl_main(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="nbfeed: %(name)s: %(message)s")
    out = sys.stdout
    try:
        return COMMANDS[args.command](args, out)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"nbfeed: error: {exc}\n")
    except NBFeedError as exc:
        say(f"error: {exc}")
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, BrokenPipeError):
            return _reader_left()
        where = f": {exc.filename!r}" if getattr(exc, "filename", None) else ""
        say(f"error: {getattr(exc, 'strerror', None) or exc}{where}")
    except KeyboardInterrupt:  # Ctrl-C before the hub's own handlers were in place
        return EXIT_OK if args.command == "stream" else EXIT_INTERRUPTED
    return EXIT_FAILED


def _reader_left() -> int:
    # The reader of our output went away (`| head`): that ends the command normally. Point
    # stdout at devnull so the interpreter's final flush does not complain again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK
