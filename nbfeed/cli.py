"""The ``nbfeed`` command: what people do with nbfeed outside a notebook.

::

    nbfeed providers                                  # which sources, are they healthy
    nbfeed populate [SOURCE...]                       # fill/refresh the symbol catalog
    nbfeed symbols apple --limit 5                    # search the catalog
    nbfeed history simulated AAPL 1m --count 100 --format csv
    nbfeed stream simulated AAPL MSFT --limit 20      # tail live rows (Ctrl-C ends)
    nbfeed new-provider my_feed --dir .               # scaffold a provider and its test
    nbfeed serve ...                                  # a Jupyter server with nbfeed

Each command (except ``new-provider`` and ``serve``) runs an embedded :class:`~nbfeed.hub.Hub`
for its own duration, with the providers it needs: those named with ``--provider``, else the
command's source (``history``/``stream``/``populate SOURCE``/``symbols --source``), else
``simulated`` and ``csv``. The hub is always stopped before the command returns - after success,
errors, Ctrl-C or SIGTERM - so no provider process outlives it.

Exit codes: 0 success (``stream`` also after Ctrl-C or ``--limit``), 1 a request failed (unknown
source/symbol/interval, bad date, a provider error), 2 bad usage, 130 interrupted. Errors are one
line on stderr naming the bad value, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ._version import __version__
from .cli_format import FORMATS, LiveTable, columns_of, write_json_lines, write_rows
from .cli_hub import (
    DEFAULT_PROVIDERS,
    Body,
    UsageError,
    provider_specs,
    run_with_hub,
)
from .errors import NBFeedError, UpstreamError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_SYMBOL_COLUMNS = ["source", "name", "type", "categories", "name_label"]
_PROVIDER_COLUMNS = ["name", "status", "datasets", "restarts", "detail"]
_CLI_ENABLE_HINT = ("--provider {name} (or name it as a command's source); in Jupyter: "
                    "c.NBFeed.providers")


# ---- options ------------------------------------------------------------------------------


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
    p.add_argument("interval", help="a bar interval: 1s 1m 3m 5m 15m 30m 1h ... 1d 1w 1M")
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

    p = commands.add_parser("new-provider", allow_abbrev=False,
                            help="Scaffold a provider module and a test that passes.",
                            description="Write NAME_provider.py (a Provider subclass) and "
                                        "test_NAME_provider.py into DIR.")
    p.add_argument("name", help="source name: a lower-case identifier such as my_feed")
    p.add_argument("--dir", default=".", help="where to write the files (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")

    # Everything after 'serve' belongs to the serve command's own parser (add_help=False so
    # that 'nbfeed serve --help' reaches it too).
    commands.add_parser("serve", add_help=False, allow_abbrev=False,
                        help="Run a Jupyter server with nbfeed (options: nbfeed serve --help).")
    return parser


# ---- running a hub for one command ----------------------------------------------------------


def _hub_command(args: argparse.Namespace, wanted: Sequence[str] | None, body: Body, *,
                 populate_on_start: bool = True, interrupted_code: int = EXIT_INTERRUPTED) -> int:
    from .hub import HubConfig

    specs = provider_specs(args.providers, args.options, wanted)
    config = HubConfig(home=_home(args), providers=specs, request_timeout=args.timeout,
                       start_timeout=max(args.timeout, 5.0), populate_on_start=populate_on_start,
                       enable_hint=_CLI_ENABLE_HINT)
    try:
        return asyncio.run(run_with_hub(config, body, interrupted_code=interrupted_code))
    except KeyboardInterrupt:
        return interrupted_code


def _home(args: argparse.Namespace) -> Path:
    from .hub import default_home

    home = Path(args.home).expanduser() if args.home is not None else default_home()
    if home.exists() and not home.is_dir():
        raise UsageError(f"--home {str(home)!r} is not a folder")
    # Provider processes (and the Jupyter server of `serve`) inherit the environment, so
    # anything there that asks for nbfeed's home gets this one.
    os.environ["NBFEED_HOME"] = str(home)
    return home


def _say(message: str) -> None:
    print(f"nbfeed: {message}", file=sys.stderr, flush=True)


# ---- commands -------------------------------------------------------------------------------


def cmd_providers(args: argparse.Namespace, out: TextIO) -> int:
    async def body(hub: Any) -> int:
        info = hub.providers_info(include_available=True)
        for row in info:  # why a provider has no symbols is as useful as why it failed
            if not row["detail"] and row.get("populate_error"):
                row["detail"] = f"populate failed: {row['populate_error']}"
        if args.format == "json":
            write_rows(info, "json", out)
            return EXIT_OK
        loaded = [row for row in info if row.get("loaded", True)]
        others = [row for row in info if not row.get("loaded", True)]
        write_rows(loaded, "table", out, _PROVIDER_COLUMNS)
        if others:
            out.write("\nAlso installed (not loaded by this command):\n")
            for row in others:
                about = row["detail"] if row["status"] == "not usable" else row["description"]
                out.write(f"  {row['name']:<12} {row['status']:<11} {about}\n")
                then = "turn on" if row["status"] == "not loaded" else "then turn on"
                out.write(f"  {'':<12} {'':<11} {then}: {row['enable']}\n")
        return EXIT_OK

    return _hub_command(args, None, body)


def cmd_populate(args: argparse.Namespace, out: TextIO) -> int:
    # The results below say why a source failed; the hub's own warning would repeat it.
    logging.getLogger("nbfeed.hub").setLevel(max(logging.ERROR - 10 * args.verbose, 10))

    async def body(hub: Any) -> int:
        results = await hub.populate(args.sources or None)
        width = max(len(name) for name in results) if results else 0
        for name, result in results.items():
            out.write(f"{name.ljust(width)}  {result}\n")
        return EXIT_FAILED if any(not r.startswith("ok") for r in results.values()) else EXIT_OK

    return _hub_command(args, args.sources, body, populate_on_start=False)


def cmd_symbols(args: argparse.Namespace, out: TextIO) -> int:
    async def body(hub: Any) -> int:
        found = await hub.search(args.query, source=args.source, category=args.category,
                                 type=args.type_, limit=args.limit)
        if not found:
            _say(f"no symbols match {args.query!r}" if args.query else "the catalog is empty")
        if args.format == "json":
            write_rows(found, "json", out)
        elif args.format == "csv":
            cols = [*_SYMBOL_COLUMNS, *(c for c in columns_of(found) if c not in _SYMBOL_COLUMNS)]
            write_rows(found, "csv", out, cols)
        else:
            write_rows(found, "table", out, _SYMBOL_COLUMNS)
        return EXIT_OK

    return _hub_command(args, [args.source] if args.source else None, body)


def _check_request(interval: str, **times: str | None) -> None:
    """Validate what needs no provider first, so a typo fails fast (same messages as the hub)."""
    from .intervals import check_interval
    from .timeutil import to_ms

    check_interval(interval)
    for name, value in times.items():
        if value is not None:
            to_ms(value, name)


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    _check_request(args.interval, start=args.start, end=args.end)

    async def body(hub: Any) -> int:
        rows = await hub.history(args.source, args.symbol, args.interval, start=args.start,
                                 end=args.end, count=args.count)
        if not rows:
            _say(f"no {args.interval} bars of {args.source}/{args.symbol} in that span")
        write_rows(rows, args.format, out)
        return EXIT_OK

    return _hub_command(args, [args.source], body)


def cmd_stream(args: argparse.Namespace, out: TextIO) -> int:
    _check_request(args.interval)
    if args.limit is not None and args.limit <= 0:
        raise UsageError(f"--limit must be a positive number of rows, got {args.limit}")

    async def body(hub: Any) -> int:
        from .hub import StreamBatch

        for info in hub.providers_info():
            if info["name"] == args.source and info["status"] == "failed":
                raise UpstreamError(f"provider {args.source!r} failed: {info['detail']}")
        sub = await hub.subscribe(args.source, args.symbols, args.interval)
        table = LiveTable(out, {"symbol": max(len(s) for s in sub.symbols)})
        remaining = args.limit
        live = set(sub.symbols)
        try:
            async for items in sub:
                for item in items:
                    if not isinstance(item, StreamBatch):
                        if _stream_event(item, live):
                            return EXIT_FAILED
                        continue
                    rows = item.rows if remaining is None else item.rows[:remaining]
                    if args.format == "json":
                        write_json_lines(rows, out)
                    else:
                        table.write(rows)
                    if remaining is not None:
                        remaining -= len(rows)
                        if remaining <= 0:
                            out.flush()
                            return EXIT_OK
                out.flush()
        finally:
            await sub.close()
        return EXIT_OK

    return _hub_command(args, [args.source], body, interrupted_code=EXIT_OK)


def _stream_event(event: Any, live: set[str]) -> bool:
    """Report a status/error event on stderr; True when the stream cannot go on."""
    if not isinstance(event, dict):
        return False
    if event.get("type") == "error":
        _say(f"error: {event.get('message')}")
        live.discard(event.get("symbol"))  # the hub released that stream
        return not live
    state, detail = event.get("state"), event.get("detail")
    _say(f"{event.get('source')} is {state}" + (f": {detail}" if detail else ""))
    return state == "failed"  # given up after repeated crashes: no rows will come


def cmd_new_provider(args: argparse.Namespace, out: TextIO) -> int:
    from .scaffold import create_provider, provider_names

    written = create_provider(args.name, args.dir, force=args.force)
    names = provider_names(args.name)
    for path in written:
        out.write(f"wrote {path}\n")
    folder = Path(args.dir)
    out.write(f"\nnext:\n  cd {folder}\n  python -m pytest {written[1].name}\n"
              f"  nbfeed --provider {names.name}={names.module}:{names.class_name} "
              f"history {names.name} DEMO 1m --count 5\n")
    return EXIT_OK


def cmd_serve(extra: list[str]) -> int:
    try:
        from .server_ext.serve import main as serve_main
    except ImportError as exc:
        _say(f"error: the serve command is not available here ({exc})")
        return EXIT_USAGE
    return int(serve_main(extra) or 0)


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "providers": cmd_providers, "populate": cmd_populate, "symbols": cmd_symbols,
    "history": cmd_history, "stream": cmd_stream, "new-provider": cmd_new_provider,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nbfeed`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "serve":
        if args.home is not None:
            try:
                _home(args)
            except UsageError as exc:
                parser.exit(EXIT_USAGE, f"nbfeed: error: {exc}\n")
        return cmd_serve(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="nbfeed: %(name)s: %(message)s")
    out = sys.stdout
    try:
        return _COMMANDS[args.command](args, out)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"nbfeed: error: {exc}\n")
    except NBFeedError as exc:
        _say(f"error: {exc}")
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, BrokenPipeError):
            return _reader_left()
        where = f": {exc.filename!r}" if getattr(exc, "filename", None) else ""
        _say(f"error: {getattr(exc, 'strerror', None) or exc}{where}")
    except KeyboardInterrupt:  # Ctrl-C before the hub's own handlers were in place
        return EXIT_OK if args.command == "stream" else EXIT_INTERRUPTED
    return EXIT_FAILED


def _reader_left() -> int:
    # The reader of our output went away (`| head`): that ends the command normally. Point
    # stdout at devnull so the interpreter's final flush does not complain again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
