"""Which tables replicate, and this process's ``Replicator``.

Tables declare themselves: ``tables.py`` for every ``perspective_table`` and
``live_model_table``, ``live.py`` for ``follow_queryset``. Tables hosted at run time with
``host_table()`` are one process's and never declared here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .changes import EntryId
from .config import redis, redis_config
from .stream import Replicator

logger = logging.getLogger("django_perspective.replication")

Reload = Callable[[], None]

_replicated: dict[str, Reload | None] = {}
_replicator: Replicator | None = None
_replicator_lock = threading.Lock()
_config_key: Any = None


def replicate(name: str, reload_from_source: Reload | None = None) -> None:
    """Send changes to ``name`` through its stream (when replication is on).

    ``reload_from_source`` reads the table again from its database (live model tables): a
    replica that starts or falls behind catches up that way instead of from a snapshot.
    """
    _replicated[name] = reload_from_source


def stop_replicating(name: str) -> None:
    """Changes to ``name`` stay in this process again; its replica stops following the stream."""
    _replicated.pop(name, None)
    if _replicator is not None:
        _replicator.unfollow(name)


def active_replicator() -> Replicator | None:
    """This process's replicator, or None when replication is off."""
    global _replicator, _config_key
    config = redis_config()
    if config is None:
        return None
    key = repr(config)
    if _replicator is None or _config_key != key:
        with _replicator_lock:
            if _replicator is None or _config_key != key:
                if _replicator is not None:
                    _replicator.stop()
                _replicator, _config_key = Replicator(*config), key
    return _replicator


def replicator_for(name: str) -> Replicator | None:
    """The replicator changes to ``name`` go through: declared tables, with replication on."""
    return active_replicator() if name in _replicated else None


def reset() -> None:
    """Stop replicating (tests)."""
    global _replicator, _config_key
    with _replicator_lock:
        if _replicator is not None:
            _replicator.stop()
        _replicator, _config_key = None, None


def prepare_replica(name: str) -> Callable[[], None] | None:
    """Call just before loading a declared table; call what it returns once it is hosted.

    What it returns makes the hosted table a replica that follows its stream. For a table
    with a source to reload from, this notes the stream's position before the database is
    read, so the changes committed while it loads are applied after it.
    """
    replicator = replicator_for(name)
    if replicator is None:
        return None
    reload = _replicated.get(name)
    mark: EntryId | None = None
    try:
        if reload is not None:
            mark = replicator.mark(name)
        elif not replicator.redis.exists(replicator.log_key(name)):
            mark = (0, 0)  # nothing was ever changed: the loader's rows are everyone's rows
    except redis.RedisError as exc:  # the listener catches up once Redis answers
        logger.warning("replication: Redis unavailable while hosting %r: %s", name, exc)
    return lambda: replicator.follow(name, reload, mark)
