"""Background tasks that cannot die silently.

``asyncio`` keeps the exception of a task nobody awaits until the task is garbage collected,
and then prints it, maybe, without context. Every fire-and-forget task of the hub, the wire
protocol and the server extension is started with :func:`background` instead, which keeps a
reference until the task is done (so it is never collected mid-flight) and logs an exception
at ERROR with the task's purpose the moment it ends with one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("nbfeed.hub")

_running: set[asyncio.Task] = set()


def background(coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task:
    """Run ``coro`` as a task on the running loop; an exception it ends with is logged at
    ERROR as ``what`` (cancellation is not an error)."""
    task = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(lambda t: _done(t, what))
    return task


def _done(task: asyncio.Task, what: str) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("%s failed", what, exc_info=exc)
