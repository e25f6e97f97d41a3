"""Give freed memory back to the operating system when the last connection has gone.

glibc keeps memory freed by each thread in that thread's arena, and after a large block is
freed it raises its mmap threshold, so later multi-megabyte replies (a whole-table
``to_arrow``) come from the arenas too. After a burst of such replies, built on the engine
and reader threads, the process keeps its high-water RSS although nothing holds it.
``trim()`` asks glibc to return it (``malloc_trim``); on other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from typing import Any

MIN_INTERVAL = 1.0  # seconds between two trims: a heap of a few hundred MB takes milliseconds

_lock = threading.Lock()
_last = 0.0
_libc: Any = None


def _malloc_trim() -> Any:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    return getattr(_libc, "malloc_trim", None) if _libc else None


def trim() -> bool:
    """Return free heap memory to the OS now; False where that is not possible or too soon."""
    global _last
    malloc_trim = _malloc_trim()
    if malloc_trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < MIN_INTERVAL:
            return False
        _last = now
    malloc_trim(0)
    return True
