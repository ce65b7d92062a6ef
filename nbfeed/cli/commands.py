"""What each ``nbfeed`` command does (see :mod:`nbfeed.cli` for the command line).

A command is ``cmd_NAME(args, out) -> exit code``. The hub commands run their body against an
embedded hub that :func:`~.runner.run_with_hub` always stops; errors propagate to
:func:`nbfeed.cli.main`, which prints them as one line.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..errors import UpstreamError
from ..tabular import columns_csv, columns_of, columns_order
from .output import LiveTable, write_json_lines, write_rows
from .runner import EXIT_FAILED, EXIT_OK, UsageError, hub_command, say

_SYMBOL_COLUMNS = ["source", "name", "type", "categories", "name_label"]
_PROVIDER_COLUMNS = ["name", "status", "datasets", "restarts", "detail"]


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

    return hub_command(args, None, body)


def cmd_populate(args: argparse.Namespace, out: TextIO) -> int:
    # The results below say why a source failed; the hub's own warning would repeat it.
    logging.getLogger("nbfeed.hub").setLevel(max(logging.ERROR - 10 * args.verbose, 10))

    async def body(hub: Any) -> int:
        results = await hub.populate(args.sources or None)
        width = max(len(name) for name in results) if results else 0
        for name, result in results.items():
            out.write(f"{name.ljust(width)}  {result}\n")
        return EXIT_FAILED if any(not r.startswith("ok") for r in results.values()) else EXIT_OK

    return hub_command(args, args.sources, body, populate_on_start=False)


def cmd_symbols(args: argparse.Namespace, out: TextIO) -> int:
    async def body(hub: Any) -> int:
        found = await hub.search(args.query, source=args.source, category=args.category,
                                 type=args.type_, limit=args.limit)
        if not found:
            say(f"no symbols match {args.query!r}" if args.query else "the catalog is empty")
        if args.format == "json":
            write_rows(found, "json", out)
        elif args.format == "csv":
            cols = [*_SYMBOL_COLUMNS, *(c for c in columns_of(found) if c not in _SYMBOL_COLUMNS)]
            write_rows(found, "csv", out, cols)
        else:
            write_rows(found, "table", out, _SYMBOL_COLUMNS)
        return EXIT_OK

    return hub_command(args, [args.source] if args.source else None, body)


def _check_request(interval: str, **times: str | None) -> None:
    """Validate what needs no provider first, so a typo fails fast (same messages as the hub)."""
    from ..intervals import check_interval
    from ..timeutil import to_ms

    check_interval(interval)
    for name, value in times.items():
        if value is not None:
            to_ms(value, name)


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    _check_request(args.interval, start=args.start, end=args.end)

    async def body(hub: Any) -> int:
        bars = await hub.history_columns(args.source, args.symbol, args.interval,
                                         start=args.start, end=args.end, count=args.count)
        if not bars:
            say(f"no {args.interval} bars of {args.source}/{args.symbol} in that span")
        if args.format == "csv":  # straight from the columns, a piece at a time
            columns = columns_order(bars)
            out.write(columns_csv(bars.slice(0, 0), columns))
            for part in bars.chunks(20_000):
                out.write(columns_csv(part, columns, header=False))
        else:
            write_rows(bars.rows(), args.format, out)
        return EXIT_OK

    return hub_command(args, [args.source], body)


def cmd_stream(args: argparse.Namespace, out: TextIO) -> int:
    _check_request(args.interval)
    if args.limit is not None and args.limit <= 0:
        raise UsageError(f"--limit must be a positive number of rows, got {args.limit}")

    async def body(hub: Any) -> int:
        from ..hub import StreamBatch

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

    return hub_command(args, [args.source], body, interrupted_code=EXIT_OK)


def _stream_event(event: Any, live: set[str]) -> bool:
    """Report a status/error event on stderr; True when the stream cannot go on."""
    if not isinstance(event, dict):
        return False
    if event.get("type") == "error":
        say(f"error: {event.get('message')}")
        if event.get("gap") is None:  # a stream error: the hub released that stream
            live.discard(event.get("symbol"))  # (a failed backfill names a gap and goes on)
        return not live
    state, detail = event.get("state"), event.get("detail")
    what = event.get("source")
    if "symbol" in event:  # one stream's health: live, stale, closed
        what = f"{what}/{event['symbol']} {event.get('interval')}"
    say(f"{what} is {state}" + (f": {detail}" if detail else ""))
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
    from .serve import main as serve_main

    return int(serve_main(extra) or 0)


def cmd_record(args: argparse.Namespace, out: TextIO) -> int:
    from .record import record  # the flight recorder's commands live in .record

    return record(args, out)


def cmd_recordings(args: argparse.Namespace, out: TextIO) -> int:
    from .record import recordings

    return recordings(args, out)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "providers": cmd_providers, "populate": cmd_populate, "symbols": cmd_symbols,
    "history": cmd_history, "stream": cmd_stream, "new-provider": cmd_new_provider,
    "record": cmd_record, "recordings": cmd_recordings,
}
