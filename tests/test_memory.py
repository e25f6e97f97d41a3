"""memory.trim: memory freed by a worker thread goes back to the OS, at most once a second."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django_perspective import memory


def rss_mib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def churn(kept: list[bytearray]) -> None:
    """What a burst of large replies does on the engine's threads, in miniature."""
    first = bytearray(4 << 20)
    del first  # freeing an mmapped block raises glibc's mmap threshold: later ones use the arena
    blocks = [bytearray(2 << 20) for _ in range(100)]
    kept.append(bytearray(64))  # a live block after them: the heap cannot simply shrink
    del blocks


PROBE = """
import threading
from django_perspective import memory
from tests.test_memory import churn, rss_mib

kept = []
worker = threading.Thread(target=churn, args=(kept,))
worker.start()
worker.join()
memory._last = 0.0
before = rss_mib()
trimmed = memory.trim()
print(before, rss_mib(), trimmed, memory.trim())
"""


def test_freed_memory_of_a_thread_goes_back_after_trim() -> None:
    """In a fresh interpreter: a long test run leaves glibc's thresholds wherever it left them."""
    assert memory._malloc_trim() is not None, "this machine's C library is glibc"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=root, capture_output=True, text=True, check=True)
    before, after, trimmed, again = out.stdout.split()
    assert trimmed == "True"
    assert int(after) < int(before) - 100, f"the 200 MiB freed by the thread stayed in the process ({before} -> {after} MiB)"
    assert again == "False"  # within MIN_INTERVAL: no second trim
