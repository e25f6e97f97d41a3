"""Live model tables: a hosted table that follows a Django queryset, row by row.

::

    # myapp/perspective_tables.py
    from django_perspective.live import live_model_table

    live_model_table("open_orders", Order.objects.filter(status="open"),
                     fields=["id", "customer", "amount", "created"], access="staff")

``post_save`` / ``post_delete`` note the row's primary key; once the transaction commits the
rows are read again through the queryset, by primary key, so a row that moved into or out
of the filter is added or removed, and a rolled-back save shows nothing (the committed row
is what gets read back). The table is indexed by primary key. ``bulk_create``,
``QuerySet.update``, raw SQL and changes to related rows send no signals: call
``refresh(name_or_model, pks)`` after them. Changes go through ``django_perspective.update``
/ ``remove``, so with replication on (see replication/) every process sees them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import Field, Model, QuerySet
from django.db.models.signals import post_delete, post_save

from . import api
from .access import Policy, declare, validate
from .data import Encoded, encode
from .engine import Engine, current_engine, get_engine
from .replication import selection
from .tables import TableSpec, declared

logger = logging.getLogger("django_perspective.live")

CHUNK = 1000

_INTEGER = {
    "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField",
    "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}
_TYPES = {
    **dict.fromkeys(_INTEGER, "integer"),
    "FloatField": "float",
    "DecimalField": "float",
    "BooleanField": "boolean",
    "DateField": "date",
    "DateTimeField": "datetime",
}


def column_type(field: Field) -> str:
    """The Perspective type of a model field's values; keys take their target's type."""
    target = getattr(field, "target_field", None)
    if field.is_relation and target is not None:
        return column_type(target)
    return _TYPES.get(field.get_internal_type(), "string")


@dataclass
class LiveTable:
    """A queryset hosted as table ``name``: its columns and how to read rows by primary key."""

    name: str
    queryset: QuerySet
    fields: list[str]
    index: str
    schema: dict[str, str]

    @classmethod
    def create(cls, name: str, queryset: QuerySet, fields: Iterable[str] | None = None, index: str | None = None) -> LiveTable:
        if queryset.query.is_sliced:
            raise ValueError(f"live table {name!r}: a sliced queryset cannot be followed row by row")
        meta = queryset.model._meta
        index = index or meta.pk.attname
        if index not in {"pk", meta.pk.name, meta.pk.attname}:
            raise ValueError(f"live table {name!r}: index must be the primary key, not {index!r}")
        columns = list(fields) if fields is not None else [f.attname for f in meta.concrete_fields]
        if index not in columns:
            columns.insert(0, index)
        schema = {column: _resolve(queryset, column) for column in columns}
        return cls(name, queryset.all(), columns, index, schema)

    @property
    def model(self) -> type[Model]:
        return self.queryset.model._meta.concrete_model

    def records(self, pks: Iterable[Any] | None = None) -> list[dict[str, Any]]:
        """The rows (of ``pks`` only, if given) as Perspective-ready dicts."""
        try:
            if pks is None:
                return [self._row(row) for row in self.queryset.values(*self.fields)]
            keys = list(pks)
            return [
                self._row(row)
                for start in range(0, len(keys), CHUNK)
                for row in self.queryset.filter(pk__in=keys[start : start + CHUNK]).values(*self.fields)
            ]
        finally:
            _close_engine_connection(self.queryset.db)

    def changes(self, pks: Iterable[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        """Rows to update and keys to remove so ``pks`` match the queryset again."""
        keys = set(pks)
        rows = self.records(keys)
        present = {row[self.index] for row in rows}
        return rows, [key for key in keys if key not in present]

    def _row(self, row: dict[str, Any]) -> dict[str, Any]:
        for column, kind in self.schema.items():
            value = row.get(column)
            if kind == "string" and value is not None and not isinstance(value, str):
                row[column] = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        return row

    def reload(self, engine: Engine) -> None:
        """Read and encode the rows on this thread, then host them on the engine thread: the
        query does not hold up the other clients' requests."""
        rows = Encoded(*encode(self.records()))
        engine.run(self.host, engine, rows)

    def host(self, engine: Engine, rows: Encoded | None = None) -> None:
        """Host the rows (engine thread); open views survive a compatible reload."""
        data = self.records() if rows is None else rows
        engine.host(self.name, data, index=self.index, replace=True, schema=self.schema)


def _resolve(queryset: QuerySet, column: str) -> str:
    annotation = queryset.query.annotations.get(column)
    if annotation is not None:
        return column_type(annotation.output_field)
    model, field = queryset.model, None
    for part in column.split("__"):
        field = model._meta.pk if part == "pk" else model._meta.get_field(part)
        model = field.related_model or model
    assert field is not None
    return column_type(field)


def _close_engine_connection(alias: str) -> None:
    # The engine thread reads a live table's rows when it hosts it; it keeps no connection.
    engine = current_engine()
    if engine is not None and engine.on_engine_thread():
        connections[alias].close()


_tables: dict[str, LiveTable] = {}
_lock = threading.Lock()


def followed(name: str) -> bool:
    return name in _tables


def live_table(name: str) -> LiveTable | None:
    """The queryset this process follows as table ``name``, if any."""
    return _tables.get(name)


def _add(table: LiveTable) -> None:
    with _lock:
        _tables[table.name] = table
        post_save.connect(_saved, weak=False, dispatch_uid="django_perspective.live.saved")
        post_delete.connect(_deleted, weak=False, dispatch_uid="django_perspective.live.deleted")


def _reload_from_source(table: LiveTable) -> Callable[[], None]:
    """How a replica of ``table`` catches up: it reads the queryset again."""
    return lambda: table.reload(get_engine())


def live_model_table(
    name: str,
    queryset: QuerySet,
    *,
    fields: Iterable[str] | None = None,
    index: str | None = None,
    access: Policy = None,
    editable: Policy = None,
) -> LiveTable:
    """Declare a live table (e.g. in ``perspective_tables.py``): every process hosts it."""
    validate(access)
    validate(editable)
    table = LiveTable.create(name, queryset, fields, index)
    declared.register(
        TableSpec(name, table.records, index=table.index, access=access, editable=editable, host=table.host),
        reload_from_source=_reload_from_source(table),
    )
    _add(table)
    return table


def follow_queryset(
    name: str,
    queryset: QuerySet,
    fields: Iterable[str] | None = None,
    index: str | None = None,
    *,
    access: Policy = None,
    editable: Policy = None,
) -> api.HostedTable:
    """Host ``queryset`` as ``name`` now and keep it live in this process (registry code).

    Policies are recorded only when given, so a registry row's own policy still applies.
    """
    if access is not None or editable is not None:
        declare(name, access, editable)
    table = LiveTable.create(name, queryset, fields, index)
    _add(table)
    selection.replicate(name, _reload_from_source(table))
    follow = selection.prepare_replica(name)
    table.reload(get_engine())
    if follow is not None:
        follow()
    return api.HostedTable(name)


def unfollow(name: str) -> None:
    """Stop following ``name``: it stays hosted, frozen at its last rows."""
    with _lock:
        _tables.pop(name, None)
    selection.stop_replicating(name)


def refresh(target: str | type[Model], pks: Iterable[Any] | None = None) -> None:
    """Re-read rows after changes that sent no signal (``bulk_create``, ``QuerySet.update``).

    ``target``: a live table's name, or a model (every live table following it). With
    ``pks``, only those rows are re-read; without, the whole table is replaced.
    """
    for table in _targets(target):
        if pks is None:
            api.replace(table.name, table.records())
            continue
        rows, gone = table.changes(pks)
        if rows:
            api.update(table.name, rows)
        if gone:
            api.remove(table.name, gone)


async def arefresh(target: str | type[Model], pks: Iterable[Any] | None = None) -> None:
    from channels.db import database_sync_to_async

    await database_sync_to_async(refresh)(target, None if pks is None else list(pks))


def _targets(target: str | type[Model]) -> list[LiveTable]:
    if isinstance(target, str):
        if target not in _tables:
            raise LookupError(f"no live table named {target!r}")
        return [_tables[target]]
    model = target._meta.concrete_model
    return [table for table in list(_tables.values()) if table.model is model]


class _Pending:
    """Primary keys changed in one transaction, read back once it commits.

    Every save registers ``flush`` with ``on_commit``; the first call reads and pushes, the
    rest do nothing. If the transaction rolls back, its keys ride along with the next
    commit on this connection, where reading them back finds the committed rows.
    """

    def __init__(self) -> None:
        self.pks: dict[str, set[Any]] = defaultdict(set)
        self.done = False

    def flush(self) -> None:
        if self.done:
            return
        self.done = True
        for name, pks in self.pks.items():
            if name not in _tables:
                continue
            try:
                refresh(name, pks)
            except Exception:  # a save must not fail because a viewer table could not follow
                logger.exception("live table %r: could not push %d changed rows", name, len(pks))


_local = threading.local()


def _changed(sender: type[Model], instance: Model, using: str) -> None:
    model = sender._meta.concrete_model
    names = [table.name for table in list(_tables.values()) if table.model is model]
    if not names or instance.pk is None:
        return
    pending_by_db: dict[str, _Pending] = _local.__dict__.setdefault("pending", {})
    pending = pending_by_db.get(using)
    if pending is None or pending.done:
        pending = pending_by_db[using] = _Pending()
    for name in names:
        pending.pks[name].add(instance.pk)
    transaction.on_commit(pending.flush, using=using)


def _saved(sender: type[Model], instance: Model, using: str, raw: bool = False, **kwargs: Any) -> None:
    if not raw:  # fixtures loading
        _changed(sender, instance, using)


def _deleted(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    _changed(sender, instance, using)
