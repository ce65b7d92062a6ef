"""Handing freed memory back to the operating system after a big answer.

A history answer of a million bars passes through a few hundred MB of short-lived buffers
(pieces from the provider, cache blocks, encoded text). Python and numpy free them, but glibc's
allocator keeps much of that memory in its heaps for reuse (after a big free it even raises the
size above which it maps memory directly), so one request could leave a server 150 MB bigger
for good. :func:`release_freed_memory` asks glibc to return what is free (``malloc_trim``);
callers run it off the event loop after answers of at least :data:`BIG_ANSWER_BARS` bars.

On a C library without ``malloc_trim`` (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger("nbfeed.hub")

#: Answers with at least this many bars are followed by :func:`release_freed_memory`.
BIG_ANSWER_BARS = 200_000

_trim: Any = None


def release_freed_memory() -> None:
    """Return freed heap memory to the operating system (glibc only; a few ms to tens of ms,
    so call it from a worker thread)."""
    global _trim
    if _trim is None:
        _trim = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _trim = libc.malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            log.debug("no malloc_trim in this C library: freed memory stays with the process")
    if _trim:
        _trim(0)
