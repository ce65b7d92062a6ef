"""What the ``nbfeed`` command needs around a hub: which providers to load, and a hub that
always stops.

:func:`provider_specs` turns ``--provider``/``--option`` texts into provider specs (errors name
the text). :func:`run_with_hub` runs one command's coroutine against a started hub and stops the
hub afterwards whatever happened - success, an exception, SIGINT or SIGTERM - so no provider
process outlives the command. :func:`hub_command` builds that hub from a parsed command line
(``--bus``, ``--provider``/``--option``, ``--home``, ``--timeout``) for every command module, with
the exit codes and :func:`say` (a line for people on stderr) they share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ..providers.registry import ProviderSpec, available_providers, resolve_spec

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_CLI_ENABLE_HINT = ("--provider {name} (or name it as a command's source); in Jupyter: "
                    "c.NBFeed.providers")

#: Providers loaded when the command line names none (and the command names no source).
DEFAULT_PROVIDERS = ("simulated", "csv")


class UsageError(Exception):
    """A command line that cannot be run as written (exit code 2)."""


def parse_option(text: str) -> tuple[str, str, Any]:
    """``SOURCE.KEY=VALUE`` -> ``(source, key, value)``; VALUE is JSON when it parses, else text.

    So ``simulated.rate=10`` gives the number 10, ``csv.folder=/data`` the string ``"/data"``
    and ``x.symbols=["A","B"]`` a list.
    """
    target, sep, raw = text.partition("=")
    source, dot, key = target.partition(".")
    if not sep or not dot or not source or not key:
        raise UsageError(f"--option {text!r}: expected SOURCE.KEY=VALUE, e.g. simulated.rate=10")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return source, key, value


def parse_provider(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME=package.module:Class`` -> ``(name, dotted path or None)``."""
    name, sep, path = text.partition("=")
    if not name or (sep and not path):
        raise UsageError(f"--provider {text!r}: expected NAME or NAME=package.module:Class")
    return name, (path if sep else None)


def provider_specs(providers: Sequence[str] | None, options: Sequence[str] | None,
                   wanted: Sequence[str] | None = None) -> list[ProviderSpec]:
    """The providers this command runs, with their ``--option`` values.

    ``--provider`` wins; else the sources the command names (``wanted``); else the defaults.
    Raises UsageError/NBFeedError naming an unknown provider, a duplicate or a stray option.
    """
    by_source: dict[str, dict[str, Any]] = {}
    for text in options or []:
        source, key, value = parse_option(text)
        by_source.setdefault(source, {})[key] = value
    if providers:
        entries = [parse_provider(text) for text in providers]
        if any(path for _, path in entries) and "" not in sys.path and \
                os.getcwd() not in sys.path:
            # As with `python -m`: a provider module in the current folder is importable, here
            # and in the provider process (which inherits this sys.path).
            sys.path.append(os.getcwd())
    else:
        entries = [(name, None) for name in dict.fromkeys(wanted or DEFAULT_PROVIDERS)]
    names = [name for name, _ in entries]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"--provider {name!r} is given more than once")
    known = set(available_providers()) | set(names)
    for source in by_source:
        if source not in known:
            raise UsageError(f"--option {source}.…: no provider named {source!r}; known: "
                             f"{', '.join(sorted(known))}")
    return [resolve_spec(name, path, **by_source.get(name, {})) for name, path in entries]


Body = Callable[[Any], Awaitable[int]]


async def run_with_hub(config: Any, body: Body, *, interrupted_code: int) -> int:
    """Start a hub, run ``body(hub)``, always stop the hub.

    SIGINT/SIGTERM cancel the body (its ``finally`` blocks run) and return ``interrupted_code``;
    the hub's stop itself is not interruptible, so provider processes are always shut down.
    """
    from ..hub import Hub

    hub = Hub(config)
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    handled: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue  # e.g. SIGINT of a job started with '&' by a script: keep ignoring it
        try:
            loop.add_signal_handler(sig, interrupted.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # e.g. Windows: Ctrl-C arrives as KeyboardInterrupt instead

    async def work() -> int:
        await hub.start()
        return await body(hub)

    task = asyncio.ensure_future(work())
    waiter = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return interrupted_code
    finally:
        waiter.cancel()
        if not task.done():  # cancelled from outside (KeyboardInterrupt without handlers)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await hub.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)


# ---- a hub for one command, shared by every command module ---------------------------------


def hub_command(args: argparse.Namespace, wanted: Sequence[str] | None, body: Body, *,
                 populate_on_start: bool = True, interrupted_code: int = EXIT_INTERRUPTED) -> int:
    """Run ``body(hub)`` on a hub made from the command line (``--bus`` or the providers it
    names, ``--home``, ``--timeout``); returns the exit code."""
    from ..hub import HubConfig

    settings = {"home": set_home(args), "request_timeout": args.timeout,
                "start_timeout": max(args.timeout, 5.0), "populate_on_start": populate_on_start}
    bus = bus_url(args)
    if bus:
        from ..bus import BusClient

        config = BusClient(bus).hub_config(**settings)
    else:
        specs = provider_specs(args.providers, args.options, wanted)
        config = HubConfig(providers=specs, enable_hint=_CLI_ENABLE_HINT, **settings)
    try:
        return asyncio.run(run_with_hub(config, body, interrupted_code=interrupted_code))
    except KeyboardInterrupt:
        return interrupted_code


def bus_url(args: argparse.Namespace) -> str | None:
    """The shared feed this command uses: ``--bus``, else ``$NBFEED_BUS`` unless the command
    names its own providers. Raises UsageError for ``--bus`` with ``--provider``/``--option``."""
    explicit = getattr(args, "bus", None)
    if explicit and (args.providers or args.options):
        raise UsageError("--bus takes every source from the shared feed server: --provider and "
                         "--option belong to the feed server's command line")
    if explicit:
        return explicit
    if args.providers or args.options:
        return None
    return os.environ.get("NBFEED_BUS") or None


def set_home(args: argparse.Namespace) -> Path:
    """The ``--home`` folder (default: nbfeed's usual home), exported as ``NBFEED_HOME``.
    Raises UsageError when it exists and is not a folder."""
    from ..hub import default_home

    home = Path(args.home).expanduser() if args.home is not None else default_home()
    if home.exists() and not home.is_dir():
        raise UsageError(f"--home {str(home)!r} is not a folder")
    # Provider processes (and the Jupyter server of `serve`) inherit the environment, so
    # anything there that asks for nbfeed's home gets this one.
    os.environ["NBFEED_HOME"] = str(home)
    return home


def say(message: str) -> None:
    """One line for people on stderr (stdout carries the data)."""
    print(f"nbfeed: {message}", file=sys.stderr, flush=True)
