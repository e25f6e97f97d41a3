"""Code-defined tables: declared in an app's ``perspective_tables.py``, hosted on first use.

::

    from django_perspective.tables import perspective_table

    @perspective_table("ticks", index="symbol")
    def ticks():
        return [{"symbol": "AAPL", "price": 1.0}]

    @ticks.stream
    async def move_prices(table):
        while True:
            await table.aupdate([...])
            await asyncio.sleep(0.2)

Every process imports those modules in ``AppConfig.ready()`` (in ``INSTALLED_APPS`` order),
so every daphne worker knows the same tables. A stream runs while at least one websocket
is connected to the process; its changes stay in that process, while ``update()`` and
friends of a declared table reach every process when replication is on (replication/).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import access, conf
from .access import Policy, validate
from .api import HostedTable
from .expressions import Policy as ExpressionPolicy
from .expressions import validate_policy
from .replication import selection

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger("django_perspective.tables")

Stream = Callable[[HostedTable], Awaitable[None]]


@dataclass
class TableSpec:
    """A named table whose data comes from ``loader()``, optionally kept live by streams."""

    name: str
    loader: Callable[[], Any]
    index: str | None = None
    limit: int | None = None
    streams: list[Stream] = field(default_factory=list)
    error: str = ""
    access: Policy = None
    editable: Policy = None
    expressions: ExpressionPolicy = "safe"
    title: str = ""  # what viewers, the table pages and export file names call it
    description: str = ""
    # Hosts the table itself (engine thread) instead of ``engine.host(loader())``: live
    # model tables declare their column types, since an empty queryset has nothing to infer.
    host: Callable[[Engine], None] | None = None

    def stream(self, fn: Stream) -> Stream:
        """Register ``fn(table)``, a coroutine run while clients are connected."""
        self.streams.append(fn)
        return fn


class DeclaredTables:
    """The tables this process's code declares, by name (not the admin's registry rows)."""

    def __init__(self) -> None:
        self.specs: dict[str, TableSpec] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, spec: TableSpec, *, reload_from_source: Callable[[], None] | None = None) -> TableSpec:
        """Declare ``spec``; its policy goes to access.py and its changes replicate.

        ``reload_from_source`` reads the table again from its database (live model tables),
        which is how a replica catches up.
        """
        existing = self.specs.get(spec.name)
        if existing is not None and existing.loader is not spec.loader:
            raise ValueError(f"a perspective table named {spec.name!r} is already registered")
        self.specs[spec.name] = spec
        access.declare_code_table(spec.name, spec.access, spec.editable, spec.expressions)
        selection.replicate(spec.name, reload_from_source)
        return spec

    def withdraw(self, name: str) -> None:
        """Forget the declaration of ``name`` (tests); a hosted table stays as it is."""
        self.specs.pop(name, None)
        access.withdraw_code_table(name)
        selection.stop_replicating(name)

    def host(self, engine: Engine, name: str) -> bool:
        """Host the declared table ``name`` (engine thread); False if unknown or broken."""
        spec = self.specs.get(name)
        if spec is None:
            return False
        if name in engine.table_names():
            return True
        try:
            follow = selection.prepare_replica(name)
            if spec.host is not None:
                spec.host(engine)
            else:
                engine.host(name, spec.loader(), index=spec.index, limit=spec.limit)
            if follow is not None:
                follow()
        except Exception as exc:  # a broken provider must not take the others down
            spec.error = f"{type(exc).__name__}: {exc}"
            logger.exception("could not host perspective table %r", name)
            return False
        spec.error = ""
        return True

    def host_all(self, engine: Engine) -> None:
        for name in self.specs:
            self.host(engine, name)

    def host_on_start(self, engine: Engine) -> None:
        """The engine's start hook: host every declared table unless ``HOST_ON_START`` is off."""
        if conf.get("HOST_ON_START"):
            self.host_all(engine)

    def start_streams(self) -> None:
        """The first websocket of this process opened: start every declared stream."""
        # A stream runs in every process with clients, so its changes stay local: with
        # replication on, each process would otherwise send every change N times.
        self._tasks = [
            asyncio.get_running_loop().create_task(self._run(fn, HostedTable(spec.name, local=True)))
            for spec in self.specs.values()
            for fn in spec.streams
        ]

    def stop_streams(self) -> None:
        """The last websocket closed: stop the streams."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _run(self, fn: Stream, table: HostedTable) -> None:
        try:
            await fn(table)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("perspective stream %r for table %r failed", fn, table.name)


declared = DeclaredTables()


def perspective_table(
    name: str,
    *,
    index: str | None = None,
    limit: int | None = None,
    access: Policy = None,
    editable: Policy = None,
    expressions: ExpressionPolicy = "safe",
    title: str = "",
    description: str = "",
) -> Callable[[Callable[[], Any]], TableSpec]:
    """Declare a code-defined table whose rows come from the decorated function.

    ``access`` says who may read it (``PERSPECTIVE["DEFAULT_ACCESS"]`` when None) and
    ``editable`` who may send it ``update`` requests (nobody when None); see access.py.
    ``expressions`` says what its viewers may compute: "safe" (no loops), False or
    "full"; see expressions.py. ``title`` and ``description`` are shown in viewers and on
    the table pages (a registry row's own title wins).
    """
    validate(access)
    validate(editable)
    validate_policy(expressions)

    def decorate(loader: Callable[[], Any]) -> TableSpec:
        spec = TableSpec(
            name,
            loader,
            index=index,
            limit=limit,
            access=access,
            editable=editable,
            expressions=expressions,
            title=title,
            description=description,
        )
        return declared.register(spec)

    return decorate
