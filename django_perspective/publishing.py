"""Publish, reload and retire registry tables in this process's engine.

Reading and parsing a source runs on the caller's thread (an admin request, a management
command, a worker); only the final ``host`` call runs on the engine thread, so a big
upload never stalls other clients' requests. A failed load leaves the previous version
hosted and records the error on the row. Status is written with ``QuerySet.update`` so it
does not fire ``post_save`` again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from . import sources
from .engine import Engine, TableNotFound, get_engine
from .models import PublishedTable

if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger("django_perspective.publishing")


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return f"{type(exc).__name__}: {exc}"


def reload(obj: PublishedTable, engine: Engine | None = None) -> bool:
    """Load ``obj``'s source and host it under its name; False (and ``last_error``) on failure."""
    engine = engine or get_engine()
    try:
        data, index = sources.load(obj)
        limit = obj.row_limit or None

        def host() -> tuple[int, dict[str, str]]:
            table = engine.host(obj.name, data, index=index, limit=limit, replace=True)
            engine.flush()  # a replace is applied at the next poll; count what is hosted
            return table.size(), table.schema()

        row_count, schema = engine.run(host)
    except Exception as exc:  # any bad input: keep the previous version, say why on the row
        obj.last_error = _message(exc)
        logger.warning("could not load published table %r: %s", obj.name, obj.last_error)
        PublishedTable.objects.filter(pk=obj.pk).update(last_error=obj.last_error)
        return False
    obj.row_count, obj.schema, obj.last_loaded, obj.last_error = row_count, schema, timezone.now(), ""
    PublishedTable.objects.filter(pk=obj.pk).update(
        row_count=row_count, schema=schema, last_loaded=obj.last_loaded, last_error=""
    )
    return True


def publish(obj: PublishedTable, engine: Engine | None = None) -> bool:
    """Mark ``obj`` published and host it."""
    if not obj.published:
        obj.published = True
        PublishedTable.objects.filter(pk=obj.pk).update(published=True)
    return reload(obj, engine)


def _retire(name: str, engine: Engine) -> None:
    try:
        engine.run(engine.delete, name)
    except TableNotFound:
        pass


def unpublish(obj: PublishedTable, engine: Engine | None = None) -> None:
    """Mark ``obj`` unpublished and stop hosting it; open views keep it until they close."""
    if obj.published:
        obj.published = False
        PublishedTable.objects.filter(pk=obj.pk).update(published=False)
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
        return sum(reload(row, engine) for row in rows)
    finally:
        if engine.on_engine_thread():
            connections.close_all()  # this thread's connections only; the engine keeps none


def _after_save(obj: PublishedTable, previous_name: str | None) -> None:
    engine = get_engine()
    if previous_name and previous_name != obj.name:
        _retire(previous_name, engine)
    if obj.published:
        reload(obj, engine)
    else:
        _retire(obj.name, engine)


@receiver(post_save, sender=PublishedTable, dispatch_uid="django_perspective.published_saved")
def _saved(sender: Any, instance: PublishedTable, **kwargs: Any) -> None:
    previous = getattr(instance, "_hosted_name", None)
    instance._hosted_name = instance.name
    transaction.on_commit(lambda: _after_save(instance, previous))


@receiver(post_delete, sender=PublishedTable, dispatch_uid="django_perspective.published_deleted")
def _deleted(sender: Any, instance: PublishedTable, **kwargs: Any) -> None:
    name = instance.name
    transaction.on_commit(lambda: _retire(name, get_engine()))
