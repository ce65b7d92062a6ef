"""``nbfeed record`` and ``nbfeed recordings``: the flight recorder from a terminal.

::

    nbfeed record simulated AAPL MSFT --interval tick --interval 1s --duration 60 --name demo
    nbfeed recordings                       # list: name, status, span, rows, bytes
    nbfeed recordings show demo             # everything about one (gaps, events, limits)
    nbfeed recordings export demo out.parquet       # or out.csv; --force to overwrite
    nbfeed recordings delete demo
    nbfeed recordings repair demo           # tidy a recording whose process was killed

``record`` runs an embedded hub with the source's provider and records until ``--duration``
ends, a limit is reached, or Ctrl-C/SIGTERM: every row received until then is written and the
recording is closed properly (status ``stopped``). It prints one summary line (name, status,
rows, bytes, path); exit code 0, or 1 when a limit or a write error ended it (the message says
which). ``recordings`` reads the files only (no provider starts) and refuses to delete or
repair a recording another process is writing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import BadRequest, UpstreamError
from ..recorder.layout import check_name
from ..recorder.limits import make_limits
from ..recorder.manifest import LIVE
from ..recorder.service import default_name
from ..recorder.store import RecordingStore
from .output import write_rows
from .runner import EXIT_FAILED, EXIT_OK, UsageError, hub_command, say, set_home

_LIST_COLUMNS = ["name", "status", "sources", "symbols", "intervals", "start", "end", "rows",
                 "bytes", "lost_rows"]


def add_parsers(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``record`` and ``recordings`` with the CLI's own ``command(name, help)`` helper."""
    p = command("record", "Record live rows of a source to Parquet until --duration or Ctrl-C.")
    p.add_argument("source", help="provider name, e.g. simulated")
    p.add_argument("symbols", nargs="+", metavar="SYMBOL", help="one or more symbols")
    p.add_argument("--interval", dest="intervals", action="append", metavar="INTERVAL",
                   help="tick (default) or a bar interval; repeat for several streams")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--name", help="recording name (default: <source>-<UTC time>)")
    p.add_argument("--max-bytes", type=int, metavar="BYTES",
                   help="disk limit; reaching it stops the recording (default 1 GiB)")
    p.add_argument("--max-age", type=float, metavar="SECONDS",
                   help="keep only the newest SECONDS of data (a rolling window)")

    p = command("recordings", "List, show, export, delete or repair recordings.")
    p.add_argument("action", nargs="?", default="list",
                   choices=("list", "show", "export", "delete", "repair"))
    p.add_argument("name", nargs="?", help="the recording (all actions but list)")
    p.add_argument("path", nargs="?", help="export: the file to write (.parquet or .csv)")
    p.add_argument("--format", choices=("table", "json", "parquet", "csv"),
                   help="list/show: table (default) or json; export: parquet or csv "
                        "(default: from the file's extension)")
    p.add_argument("--force", action="store_true", help="export: overwrite the file")


def record(args: argparse.Namespace, out: TextIO) -> int:
    """``nbfeed record``: see the module docstring."""
    intervals = args.intervals or ["tick"]
    name = check_name(args.name or default_name(args.source))
    make_limits(args.max_bytes, args.max_age, args.duration)  # fail before providers start
    streams = [(args.source, args.symbols, iv) for iv in intervals]

    async def body(hub: Any) -> int:
        for info in hub.providers_info():
            if info["name"] == args.source and info["status"] == "failed":
                raise UpstreamError(f"provider {args.source!r} failed: {info['detail']}")
        started = await hub.recordings.start(name, streams, duration=args.duration,
                                             max_bytes=args.max_bytes, max_age=args.max_age)
        path = hub.recordings.store.layout.recording_dir(name)
        ends = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
        say(f"recording {started['name']} ({', '.join(intervals)}) to {path} {ends}")
        final: dict | None = None
        try:
            if args.duration:
                final = await hub.recordings.wait(name)
            else:
                await asyncio.Event().wait()  # until Ctrl-C/SIGTERM cancels this body
        finally:
            if final is None:
                final = await hub.recordings.stop(name)
            out.write(f"{final['name']}  {final['status']}  {final['rows']} rows  "
                      f"{final['bytes']} bytes  {final['path']}\n")
            out.flush()
            if final["status"] in ("limit", "failed"):
                say(final["detail"])
        return EXIT_FAILED if final["status"] in ("limit", "failed") else EXIT_OK

    return hub_command(args, [args.source], body, interrupted_code=EXIT_OK)


def recordings(args: argparse.Namespace, out: TextIO) -> int:
    """``nbfeed recordings``: see the module docstring."""
    store = RecordingStore(set_home(args))
    action = args.action
    if action != "list" and not args.name:
        raise UsageError(f"recordings {action} needs the recording's NAME")
    if action == "list":
        rows = store.list()
        if not rows:
            say(f"no recordings in {store.root}")
        if args.format == "json":
            write_rows(rows, "json", out)
        else:
            write_rows([_flat(r) for r in rows], "table", out, _LIST_COLUMNS)
        return EXIT_OK
    if action == "show":
        info = store.describe(args.name)
        if args.format == "json":
            write_rows([info], "json", out)
        else:
            for key, value in _flat(info).items():
                out.write(f"{key:>14}  {value}\n")
        return EXIT_OK
    if action == "export":
        if not args.path:
            raise UsageError("recordings export needs NAME and PATH (a .parquet or .csv file)")
        fmt = args.format if args.format in ("parquet", "csv") else None
        written = store.export(args.name, args.path, fmt, overwrite=args.force)
        out.write(f"{written}\n")
        return EXIT_OK
    info = store.describe(args.name)
    if info["status"] == LIVE:
        raise BadRequest(f"recording {args.name!r} is being recorded by another process; "
                         f"stop it there first")
    if action == "delete":
        store.delete(args.name)
        say(f"deleted {args.name}")
    else:
        done = store.repair(args.name)
        say(f"repaired {args.name}: {done['temporary_files_removed']} temporary and "
             f"{done['covered_files_removed']} already merged files removed")
    return EXIT_OK


def _flat(info: dict) -> dict:
    """Lists of names as ``a,b``; anything nested as compact JSON (one table cell each)."""
    out = {}
    for key, value in info.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        elif isinstance(value, (list, dict)):
            value = json.dumps(value, separators=(",", ":"))
        out[key] = value
    return out

