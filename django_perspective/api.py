"""The Python API for code that hosts tables: views, tasks, threads, management commands.

Each function runs its work on the engine thread (see ``engine.py``). The plain functions
wait for the result and are safe from sync code and any thread; the ``a``-prefixed ones are
for async code and never block the event loop.

With replication on (a Redis channel layer, see ``replication/``), ``update``, ``remove``
and ``replace`` of a declared table go through its Redis stream and reach every process,
this one included, in the same order; from a process that does not host the table (a
worker, a management command) they only publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .access import Policy, declare
from .expressions import Policy as ExpressionPolicy
from .data import encode
from .engine import get_engine
from .replication import selection
from .replication.changes import REMOVE, REPLACE, UPDATE, serialize
from .replication.stream import Replicator

T = TypeVar("T")


class HostedTable:
    """A handle on a hosted table whose every call runs on the engine thread.

    Perspective's own ``Table`` object must not be used from other threads; this handle is
    safe to keep and share. ``local=True``: changes apply to this process only, even with
    replication on (what code-defined streams get).
    """

    def __init__(self, name: str, *, local: bool = False) -> None:
        self.name = name
        self.local = local

    def _replicator(self) -> Replicator | None:
        return None if self.local else selection.replicator_for(self.name)

    def __repr__(self) -> str:
        return f"<HostedTable {self.name!r}>"

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(table)`` on the engine thread with Perspective's ``Table``."""
        engine = get_engine()
        return engine.run(lambda: fn(engine.open_table(self.name, flush=True)))

    async def acall(self, fn: Callable[[Any], T]) -> T:
        engine = get_engine()
        return await engine.arun(lambda: fn(engine.open_table(self.name, flush=True)))

    # Writes skip the flush reads do: flushing before each write would poll once per
    # update and undo POLL_INTERVAL's batching (one viewer frame per save).
    def _write(self, fn: Callable[[Any], None]) -> None:
        engine = get_engine()
        engine.run(lambda: fn(engine.open_table(self.name)))

    async def _awrite(self, fn: Callable[[Any], None]) -> None:
        engine = get_engine()
        await engine.arun(lambda: fn(engine.open_table(self.name)))

    def update(self, data: Any) -> None:
        """Insert rows, or update them by index on an indexed table."""
        if (replicator := self._replicator()) is not None:
            return replicator.publish(self.name, UPDATE, *serialize(data))
        payload, fmt = encode(data)
        self._write(lambda t: t.update(payload, format=fmt))

    async def aupdate(self, data: Any) -> None:
        if (replicator := self._replicator()) is not None:
            return await replicator.apublish(self.name, UPDATE, *serialize(data))
        payload, fmt = encode(data)
        await self._awrite(lambda t: t.update(payload, format=fmt))

    def remove(self, keys: Iterable[Any]) -> None:
        """Remove rows by index value (indexed tables only)."""
        keys = list(keys)
        if (replicator := self._replicator()) is not None:
            return replicator.publish(self.name, REMOVE, *serialize(keys))
        self._write(lambda t: t.remove(keys))

    async def aremove(self, keys: Iterable[Any]) -> None:
        keys = list(keys)
        if (replicator := self._replicator()) is not None:
            return await replicator.apublish(self.name, REMOVE, *serialize(keys))
        await self._awrite(lambda t: t.remove(keys))

    def replace(self, data: Any) -> None:
        """Replace every row; open views stay open."""
        if (replicator := self._replicator()) is not None:
            return replicator.publish(self.name, REPLACE, *serialize(data))
        payload, fmt = encode(data)
        self._write(lambda t: t.replace(payload, format=fmt))

    def size(self) -> int:
        return self.call(lambda t: t.size())

    def schema(self) -> dict[str, str]:
        return self.call(lambda t: t.schema())

    def index(self) -> str | None:
        return self.call(lambda t: t.get_index())

    def query(self, fn: Callable[[Any], T], **view_config: Any) -> T:
        """Build a view with ``view_config``, return ``fn(view)``, then delete the view."""

        def run(table: Any) -> T:
            view = table.view(**view_config)
            try:
                return fn(view)
            finally:
                view.delete()

        return self.call(run)

    def to_records(self, **view_config: Any) -> list[dict[str, Any]]:
        return self.query(lambda v: v.to_records(), **view_config)

    def to_arrow(self, **view_config: Any) -> bytes:
        return self.query(lambda v: v.to_arrow(), **view_config)


def start_engine() -> None:
    """Start this process's engine and host the code-defined tables now.

    Daphne has no lifespan events, so by default this happens on the first connection;
    call it from ``asgi.py`` to pay the cost at start-up instead.
    """
    engine = get_engine()
    engine.run(engine.start)


def host_table(
    name: str,
    data: Any,
    *,
    index: str | None = None,
    limit: int | None = None,
    replace: bool = False,
    access: Policy = None,
    editable: Policy = None,
    expressions: ExpressionPolicy = "safe",
) -> HostedTable:
    """Host ``data`` (Arrow bytes, CSV text, records, columns, a DataFrame) as ``name``.

    ``access``/``editable``: who may read it and who may update it over the websocket
    (see access.py; None reads ``PERSPECTIVE["DEFAULT_ACCESS"]`` and allows no updates).
    ``expressions``: what its viewers may compute (see expressions.py).
    """
    declare(name, access, editable, expressions)
    payload = encode(data)  # checked on this thread; the engine thread only hosts it
    engine = get_engine()
    engine.run(lambda: engine.host(name, payload, index=index, limit=limit, replace=replace))
    return HostedTable(name)


async def ahost_table(
    name: str,
    data: Any,
    *,
    index: str | None = None,
    limit: int | None = None,
    replace: bool = False,
    access: Policy = None,
    editable: Policy = None,
    expressions: ExpressionPolicy = "safe",
) -> HostedTable:
    declare(name, access, editable, expressions)
    payload = await asyncio.to_thread(encode, data)  # a large payload is checked off the event loop
    engine = get_engine()
    await engine.arun(lambda: engine.host(name, payload, index=index, limit=limit, replace=replace))
    return HostedTable(name)


def get_table(name: str) -> HostedTable:
    """Return a handle on ``name``; raises ``TableNotFound`` if nothing is hosted there."""
    engine = get_engine()
    engine.run(engine.open_table, name)
    return HostedTable(name)


def hosted_tables() -> list[str]:
    engine = get_engine()
    return engine.run(engine.table_names)


def update(name: str, data: Any) -> None:
    """Insert or update rows of ``name``."""
    HostedTable(name).update(data)


async def aupdate(name: str, data: Any) -> None:
    await HostedTable(name).aupdate(data)


def remove(name: str, keys: Iterable[Any]) -> None:
    """Remove rows of ``name`` by index value."""
    HostedTable(name).remove(keys)


async def aremove(name: str, keys: Iterable[Any]) -> None:
    await HostedTable(name).aremove(keys)


def replace(name: str, data: Any) -> None:
    """Replace every row of ``name``; open views stay open."""
    HostedTable(name).replace(data)


def delete_table(name: str) -> None:
    """Stop hosting ``name``; the connections' views on it are deleted, so the name is free at once."""
    engine = get_engine()
    engine.run(engine.delete, name)
