"""Who is connected to this process: the one count of open websocket connections.

The consumer enters a connection once it is admitted and leaves when it disconnects. The
per-user limit (``MAX_CONNECTIONS_PER_USER``), the streams of code-defined tables (they run
while anyone is connected) and the health endpoint all read this count, so they never
disagree about how many clients there are.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

Hook = Callable[[], None]

_lock = threading.Lock()
_by_key: Counter[str] = Counter()
_first_hooks: list[Hook] = []
_last_hooks: list[Hook] = []


def while_connected(first: Hook, last: Hook) -> None:
    """Call ``first()`` when the process's first connection enters, ``last()`` when the last leaves.

    Both run on the entering or leaving connection's event loop.
    """
    with _lock:
        if first not in _first_hooks:
            _first_hooks.append(first)
        if last not in _last_hooks:
            _last_hooks.append(last)


def enter(key: str, limit: int = 0) -> bool:
    """Count a connection of ``key`` (a user, or an anonymous client); False if ``limit`` is reached."""
    with _lock:
        if limit and _by_key[key] >= limit:
            return False
        first = not _by_key
        _by_key[key] += 1
        hooks = list(_first_hooks) if first else []
    for hook in hooks:
        hook()
    return True


def leave(key: str) -> None:
    """Stop counting one connection of ``key``."""
    with _lock:
        _by_key[key] -= 1
        if _by_key[key] <= 0:
            del _by_key[key]
        hooks = list(_last_hooks) if not _by_key else []
    for hook in hooks:
        hook()


def count(key: str | None = None) -> int:
    """Open connections of ``key``, or of everyone."""
    with _lock:
        return _by_key[key] if key is not None else sum(_by_key.values())
