"""How the process's C heap treats the engine's large, short-lived blocks.

A whole-table ``to_arrow`` of a million rows allocates and frees some 500 MB in blocks of
many megabytes. By default glibc serves each such block with a fresh ``mmap`` (and a
non-main thread, the engine's and the reader's, from an arena of its own), so every call
faults in 130,000 new zeroed pages and gives them back at the end: half the call's time.
``tune()`` keeps those blocks in long-lived heaps and keeps up to ``retain`` bytes of them
when they are freed, so the next call reuses warm pages. ``trim()`` gives everything free
back to the operating system (``malloc_trim``) when the last connection has gone.
On other C libraries both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from typing import Any

MIN_INTERVAL = 1.0  # seconds between two trims: a heap of a few hundred MB takes milliseconds

_lock = threading.Lock()
_last = 0.0
_pending: threading.Timer | None = None  # a trim asked for too soon, run when it may
_libc: Any = None
# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
ARENAS = 2


def _glibc(function: str) -> Any:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    return getattr(_libc, function, None) if _libc else None


def _malloc_trim() -> Any:
    return _glibc("malloc_trim")


def operator_tuned() -> bool:
    """True when the environment already sets glibc's allocator: the operator's choice wins."""
    return any(key.startswith("MALLOC_") for key in os.environ) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")


def tune(retain: int) -> bool:
    """Serve large blocks from the arenas' heaps and keep ``retain`` freed bytes for reuse.

    No ``mmap`` for large blocks, a trim threshold of ``retain``, and two arenas: the main
    heap and one that the other threads share, since a heap of a thread's own is dropped,
    pages and all, each time its blocks are freed. (One arena for every thread faulted no
    page at all, but the event loop and the reader thread then wait on one lock: 11% fewer
    requests a second for 20 clients, where two arenas cost none; ``benchmarks.run``.)
    Call it before the engine's threads start. False, and nothing changed, if ``retain`` is
    0, the environment sets the allocator, or the C library is not glibc.
    """
    mallopt = _glibc("mallopt")
    if not retain or mallopt is None or operator_tuned():
        return False
    return bool(
        mallopt(M_ARENA_MAX, ARENAS) and mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, min(int(retain), 2**31 - 1))
    )


def trim() -> bool:
    """Return free heap memory to the OS now; False where that is not possible or too soon.

    Too soon after the last trim, one trim is scheduled for when the interval has passed,
    so the last of a burst of closing connections still gives the memory back.
    """
    global _last, _pending
    malloc_trim = _malloc_trim()
    if malloc_trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < MIN_INTERVAL:
            if _pending is None:
                _pending = threading.Timer(_last + MIN_INTERVAL - now, _trailing_trim)
                _pending.daemon = True
                _pending.start()
            return False
        _last = now
    malloc_trim(0)
    return True


def _trailing_trim() -> None:
    global _last, _pending
    with _lock:
        _pending = None
        _last = time.monotonic()
    _malloc_trim()(0)
