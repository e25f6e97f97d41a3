"""memory.trim: memory freed by a worker thread goes back to the OS, at most once a second."""

from __future__ import annotations

import os
import threading

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


def test_freed_memory_of_a_thread_goes_back_after_trim() -> None:
    assert memory._malloc_trim() is not None, "this machine's C library is glibc"
    kept: list[bytearray] = []
    worker = threading.Thread(target=churn, args=(kept,))
    worker.start()
    worker.join()
    memory._last = 0.0
    before = rss_mib()
    assert memory.trim() is True
    assert rss_mib() < before - 100, "the 200 MiB freed by the thread stayed in the process"
    assert memory.trim() is False  # within MIN_INTERVAL: no second trim
