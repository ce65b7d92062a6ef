"""The ``nbfeed`` command line's argument parser: common options, one sub-parser per command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._version import __version__
from .output import FORMATS
from .runner import DEFAULT_PROVIDERS


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _common_options(with_defaults: bool) -> argparse.ArgumentParser:
    """Options every hub command accepts, before or after the command name.

    The copy on each sub-command has no defaults (SUPPRESS) so that it does not overwrite a value
    given before the command name.
    """
    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = parser.add_argument_group("common options")
    group.add_argument("--home", type=Path, metavar="DIR", default=default(None),
                       help="folder for nbfeed's state (catalog, history cache); default: "
                            "$NBFEED_HOME, else <jupyter data dir>/nbfeed")
    group.add_argument("--provider", dest="providers", action="append",
                       metavar="NAME[=MODULE:CLASS]", default=default(None),
                       help="a provider to load (repeatable); default: the command's source, "
                            f"else {' and '.join(DEFAULT_PROVIDERS)}")
    group.add_argument("--option", dest="options", action="append", metavar="SOURCE.KEY=VALUE",
                       default=default(None),
                       help="a provider option (repeatable); VALUE is read as JSON if it can be, "
                            "e.g. --option simulated.rate=10")
    group.add_argument("--bus", metavar="URL", default=default(None),
                       help="take the sources from a shared feed server through Redis "
                            "(redis:// or rediss:// URL; default: $NBFEED_BUS unless "
                            "--provider is given); no provider runs in this command")
    group.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                       default=default(30.0),
                       help="how long a provider may take to start or to answer (default 30)")
    group.add_argument("-v", "--verbose", action="count", default=default(0),
                       help="log more (-v info, -vv debug) to stderr")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``nbfeed`` argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="nbfeed", parents=[_common_options(True)], allow_abbrev=False,
        description="Live market data for Jupyter: providers, symbols, history and streams.",
        epilog="Run 'nbfeed COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"nbfeed {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options(False)

    def command(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common],
                                   allow_abbrev=False, **kwargs)

    p = command("providers", "List providers: the loaded ones (status, symbol count, detail), "
                "then every other installed one (usable or not, and how to turn it on).")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = command("populate", "Fill or refresh the symbol catalog from providers.")
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="providers to ask (default: every loaded provider)")

    p = command("symbols", "Search the symbol catalog (best matches first).")
    p.add_argument("query", nargs="?", default="", help="words of a symbol or its name")
    p.add_argument("--source", help="only this provider's symbols")
    p.add_argument("--category", help="only symbols in this category (e.g. Stocks)")
    p.add_argument("--type", dest="type_", metavar="TYPE",
                   help="only this type: candlestick, line or quote")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.add_argument("--format", choices=FORMATS, default="table")

    p = command("history", "Print bars of a symbol (times in ISO 8601 UTC).")
    p.add_argument("source", help="provider name, e.g. simulated")
    p.add_argument("symbol", help="e.g. AAPL (see 'nbfeed symbols')")
    p.add_argument("interval", help="a bar interval: 1s 1m 3m 5m 15m 30m 1h ... 1d 3d 1w 1M")
    p.add_argument("--start", help="first bar time: ISO 8601, epoch s/ms, or now-2d")
    p.add_argument("--end", help="end of the span (exclusive); default now")
    p.add_argument("--count", type=int, help="at most this many bars, the newest before --end")
    p.add_argument("--format", choices=FORMATS, default="table")

    p = command("stream", "Tail live rows until Ctrl-C or --limit rows.")
    p.add_argument("source", help="provider name, e.g. simulated")
    p.add_argument("symbols", nargs="+", metavar="SYMBOL", help="one or more symbols")
    p.add_argument("--interval", default="tick", help="tick (quotes, default) or a bar interval")
    p.add_argument("--limit", type=int, help="stop after this many rows")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table, or json: one object per line")

    from .record import add_parsers as add_record_parsers

    add_record_parsers(command)  # record, recordings

    p = commands.add_parser("new-provider", allow_abbrev=False,
                            help="Scaffold a provider module and a test that passes.",
                            description="Write NAME_provider.py (a Provider subclass) and "
                                        "test_NAME_provider.py into DIR.")
    p.add_argument("name", help="source name: a lower-case identifier such as my_feed")
    p.add_argument("--dir", default=".", help="where to write the files (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")

    # Everything after 'serve' (and 'feed-server', 'bus-acl') belongs to that command's own
    # parser (add_help=False so that 'nbfeed serve --help' reaches it too).
    commands.add_parser("serve", add_help=False, allow_abbrev=False,
                        help="Run a Jupyter server with nbfeed (options: nbfeed serve --help).")
    commands.add_parser("feed-server", add_help=False, allow_abbrev=False,
                        help="Run providers once for a whole JupyterHub and serve them to "
                             "every Jupyter server through Redis (nbfeed feed-server --help).")
    commands.add_parser("bus-acl", add_help=False, allow_abbrev=False,
                        help="Print the Redis ACL users for the shared feed's two roles "
                             "(nbfeed bus-acl --help).")
    return parser
