"""memory.tune: the engine's large blocks reuse warm pages; memory.trim: freed memory goes back
to the OS, at most once a second."""

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
import time
from django_perspective import memory
from tests.test_memory import churn, rss_mib

kept = []
worker = threading.Thread(target=churn, args=(kept,))
worker.start()
worker.join()
memory._last = 0.0
before = rss_mib()
trimmed = memory.trim()
after = rss_mib()
# Another burst, and a trim asked for too soon: it runs once the interval has passed.
worker = threading.Thread(target=churn, args=(kept,))
worker.start()
worker.join()
again = memory.trim()
burst = rss_mib()
time.sleep(memory.MIN_INTERVAL + 0.5)
print(before, after, trimmed, again, burst, rss_mib())
"""


def test_freed_memory_of_a_thread_goes_back_after_trim() -> None:
    """In a fresh interpreter: a long test run leaves glibc's thresholds wherever it left them."""
    assert memory._malloc_trim() is not None, "this machine's C library is glibc"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=root, capture_output=True, text=True, check=True)
    before, after, trimmed, again, burst, later = out.stdout.split()
    assert trimmed == "True"
    assert int(after) < int(before) - 100, f"the 200 MiB freed by the thread stayed in the process ({before} -> {after} MiB)"
    assert again == "False"  # within MIN_INTERVAL: not now...
    assert int(later) < int(burst) - 40, f"...but once it has passed ({burst} -> {later} MiB)"


# In a fresh interpreter set up like a project (apps.ready applies RETAIN_FREED_MEMORY): a
# thread allocates and frees a block twice, as the reader does for two whole-table replies;
# the second block's minor page faults tell whether it reused the first's pages. (A block
# over 64 MiB does not fit the heap of a thread's arena and still comes fresh each time.)
REUSE = """
import os, resource, sys, threading
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
from django.conf import settings
settings.PERSPECTIVE = {"RETAIN_FREED_MEMORY": int(sys.argv[1])}
size = int(sys.argv[2])
django.setup()

def faults_of_a_block():
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    block = b"x" * size  # written through: every page is touched
    del block
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

out = []
worker = threading.Thread(target=lambda: out.extend([faults_of_a_block(), faults_of_a_block()]))
worker.start()
worker.join()
print(out[1])
"""


def second_block_faults(retain: int, size: int, **env: str) -> int:
    root = Path(__file__).resolve().parent.parent
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", REUSE, str(retain), str(size)], cwd=root, capture_output=True, text=True,
                         check=True, env={**environ, **env})
    return int(out.stdout.split()[-1])


def test_a_threads_second_large_block_reuses_the_first_ones_pages() -> None:
    size = 32 << 20
    pages = size // os.sysconf("SC_PAGE_SIZE")
    assert second_block_faults(256 << 20, size) < pages // 20
    # The C library's defaults (setting 0, or the operator's own MALLOC_*): fresh pages again.
    assert second_block_faults(0, size) > pages // 2
    assert second_block_faults(256 << 20, size, MALLOC_ARENA_MAX="4") > pages // 2


def test_tune_leaves_the_allocator_alone_when_asked_or_when_the_environment_sets_it(monkeypatch) -> None:
    assert memory.tune(0) is False
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert memory.operator_tuned() and memory.tune(256 << 20) is False
