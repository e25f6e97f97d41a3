"""Publish, reload and retire registry tables in this process's engine.

Reading and parsing a source runs on the caller's thread (an admin request, a management
command, a worker); only the final ``host`` call runs on the engine thread, so a big
upload never stalls other clients' requests. A failed load leaves the previous version
hosted and records the error on the row. Status is written with ``QuerySet.update`` so it
does not fire ``post_save`` again.

A row for a table defined in code (``source="provider"``) never retires that table: the code
keeps hosting it and its streams keep running; the row's ``published`` flag and access
decide who sees it (``access.py``), in every process at once since they are read from the
database.

A model row marked ``live`` is hosted with ``live.follow_queryset`` instead: saves and deletes
of its model show in the table as they commit. Unpublishing, deleting or unticking ``live``
stops following it (``live.unfollow``). Live tables are kept in the process's engine, the
one ``live`` pushes changes to.

All of this acts on the calling process's engine only. Other processes (other daphne
workers, or the servers when a management command saves a row) host the change when they
restart; who may read is read from the database, so their open connections follow an
unpublish or an access change within ``POLICY_CACHE_SECONDS`` (consumers.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from . import access, databases, live, sources
from .data import encode
from .engine import Engine, TableNotFound, get_engine
from .errors import LoadError
from .models import PublishedTable
from .tables import declared

if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger("django_perspective.publishing")


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    if isinstance(exc, LoadError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def host(obj: PublishedTable, engine: Engine) -> tuple[int, dict[str, str]]:
    """Load ``obj``'s source and host it under its name; ``(row count, schema)``. Raises on bad input."""
    if obj.source == PublishedTable.SOURCE_DATABASE:
        return _serve_from_database(obj, engine)
    databases.withdraw_registered(obj.name)  # it was a database table: the engine hosts it now
    if obj.is_live():
        return _follow(obj)
    if obj.source != PublishedTable.SOURCE_PROVIDER:  # a code-declared live table follows on its own
        _unfollow(obj.name)  # live unticked or the source changed: the rows load once, as they are now
    data, index = sources.load(obj)
    payload = encode(data)  # checked here, on the caller's thread; the engine thread only hosts it
    limit = sources.limit(obj)

    def replace() -> tuple[int, dict[str, str]]:
        table = engine.host(obj.name, payload, index=index, limit=limit, replace=True)
        engine.flush()  # a replace is applied at the next poll; count what is hosted
        return table.size(), table.schema()

    return engine.run(replace)


def _follow(obj: PublishedTable) -> tuple[int, dict[str, str]]:
    """Host ``obj``'s queryset and follow it (``follow_queryset`` hosts it in the process's engine)."""
    queryset, fields, index = sources.live_query(obj)
    table = live.follow_queryset(obj.name, queryset, fields, index)
    return table.size(), table.schema()


def _serve_from_database(obj: PublishedTable, engine: Engine) -> tuple[int, dict[str, str]]:
    """Serve ``obj`` as a database table (nothing loaded); its count and schema come from SQL."""
    table = sources.database_table(obj)
    columns = table.columns()
    count = table.backend.rows(table.backend.run(f"SELECT COUNT(*) FROM {table.sql()} AS __psp_rel", {}))[0][0]
    _unfollow(obj.name)
    try:  # it was loaded into the engine under another source
        engine.run(engine.delete, obj.name)
    except TableNotFound:
        pass
    databases.register(table)
    return int(count), dict(columns)


def _unfollow(name: str) -> None:
    """Stop following ``name`` if this process follows it; the table stays hosted, as it is."""
    if live.followed(name):
        live.unfollow(name)


def _loaded(obj: PublishedTable, row_count: int, schema: dict[str, str]) -> None:
    """Set the status of a successful load on ``obj`` (not saved)."""
    obj.row_count, obj.schema, obj.last_loaded, obj.last_error = row_count, schema, timezone.now(), ""


def _record(obj: PublishedTable, row_count: int, schema: dict[str, str]) -> None:
    _loaded(obj, row_count, schema)
    PublishedTable.objects.filter(pk=obj.pk).update(
        row_count=row_count, schema=schema, last_loaded=obj.last_loaded, last_error=""
    )


def _failed(obj: PublishedTable, exc: Exception) -> None:
    obj.last_error = _message(exc)
    logger.warning("could not load published table %r: %s", obj.name, obj.last_error)
    PublishedTable.objects.filter(pk=obj.pk).update(last_error=obj.last_error)


def reload(obj: PublishedTable, engine: Engine | None = None) -> bool:
    """Load ``obj``'s source and host it under its name; False (and ``last_error``) on failure."""
    engine = engine or get_engine()
    try:
        row_count, schema = host(obj, engine)
    except Exception as exc:  # any bad input: keep the previous version, say why on the row
        _failed(obj, exc)
        return False
    _record(obj, row_count, schema)
    return True


def publish(obj: PublishedTable, engine: Engine | None = None) -> bool:
    """Mark ``obj`` published and host it; a source that fails to load stays as it was.

    Published first: connections re-list their tables when the table appears, and one that
    asked while the row still said unpublished would not see it until its cached answer
    expires (``POLICY_CACHE_SECONDS``).
    """
    was_published = obj.published
    if not was_published:
        _set_published(obj, True)
    if reload(obj, engine):
        return True
    if not was_published:
        _set_published(obj, False)
    return False


def _set_published(obj: PublishedTable, published: bool) -> None:
    """Save only the flag: no post_save, whose receiver would host or retire the row again."""
    obj.published = published
    PublishedTable.objects.filter(pk=obj.pk).update(published=published)
    access.forget_rows()  # this process reads the row afresh


def save_published(obj: PublishedTable, engine: Engine | None = None) -> None:
    """Validate, load and host ``obj`` first, then save it published with its status.

    For management commands: bad input raises (``ValidationError`` or the loader's error)
    and nothing is saved; the save does not load the source a second time.
    """
    engine = engine or get_engine()
    obj.full_clean()
    row_count, schema = host(obj, engine)
    obj.published = True
    _loaded(obj, row_count, schema)
    obj._hosted_now = True
    obj.save()


def _retire(name: str, engine: Engine) -> None:
    """Stop hosting ``name``, unless the code declares it (the code hosts it, a row only publishes it)."""
    databases.withdraw_registered(name)
    if name in declared.specs:
        return
    _unfollow(name)  # before the delete: a save committing meanwhile must not reach the table
    try:
        engine.run(engine.delete, name)
    except TableNotFound:
        pass


def _host_declared(obj: PublishedTable, engine: Engine) -> bool:
    """Host a code-defined table as the code declares it (if not yet) and record its status."""

    def hosted() -> tuple[int, dict[str, str]]:
        if not declared.host(engine, obj.name):
            spec = declared.specs.get(obj.name)
            raise LookupError(spec.error if spec is not None and spec.error else f"no table {obj.name!r} is declared in code")
        table = engine.open_table(obj.name, flush=True)
        return table.size(), table.schema()

    try:
        row_count, schema = engine.run(hosted)
    except Exception as exc:  # a broken loader is the code's problem; say so on the row
        _failed(obj, exc)
        return False
    _record(obj, row_count, schema)
    return True


def unpublish(obj: PublishedTable, engine: Engine | None = None) -> None:
    """Mark ``obj`` unpublished and stop hosting it.

    The engine deletes every connection's views on it first (``Engine.delete``), so it can
    be published again at once. A code-defined table stays hosted: its row now lets nobody
    read it, and open connections delete their views within ``POLICY_CACHE_SECONDS``.
    """
    if obj.published:
        _set_published(obj, False)
    _retire(obj.name, engine or get_engine())


def host_published(engine: Engine) -> int:
    """Host every published table from the database (process start); returns how many loaded.

    A database that cannot be read (no registry table before ``migrate``, no database)
    hosts nothing rather than stopping the engine.
    """
    from django.db import connections

    try:
        rows = list(PublishedTable.objects.filter(published=True))
    except Exception as exc:  # no table before migrate, no database access in some tests
        logger.warning("published tables not hosted: %s", exc)
        return 0
    try:
        return sum(
            _host_declared(row, engine) if row.source == PublishedTable.SOURCE_PROVIDER else reload(row, engine)
            for row in rows
        )
    finally:
        if engine.on_engine_thread():
            connections.close_all()  # this thread's connections only; the engine keeps none


def _after_save(obj: PublishedTable, previous_name: str | None) -> None:
    engine = get_engine()
    if previous_name and previous_name != obj.name:
        _retire(previous_name, engine)
    if not obj.published:
        _retire(obj.name, engine)
    elif obj.source == PublishedTable.SOURCE_PROVIDER:
        _host_declared(obj, engine)
    else:
        reload(obj, engine)


@receiver(post_save, sender=PublishedTable, dispatch_uid="django_perspective.published_saved")
def _saved(sender: Any, instance: PublishedTable, **kwargs: Any) -> None:
    previous = getattr(instance, "_hosted_name", None)
    instance._hosted_name = instance.name
    if instance.__dict__.pop("_hosted_now", False):  # save_published hosted it already
        return
    transaction.on_commit(lambda: _after_save(instance, previous))


@receiver(post_delete, sender=PublishedTable, dispatch_uid="django_perspective.published_deleted")
def _deleted(sender: Any, instance: PublishedTable, **kwargs: Any) -> None:
    name = instance.name
    transaction.on_commit(lambda: _retire(name, get_engine()))
