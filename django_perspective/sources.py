"""Where a published table's rows come from: one small class per ``source``.

Each has ``load(published) -> (data, index)`` for ``Engine.host``, ``check(published)`` for
form validation and ``limit(published)``. A file is read by ``files.py`` and an SQL query by
``sql.py``, both batch by batch into an Arrow stream in types the engine takes
(``arrow.write``). Every problem a staff user can cause becomes a ``ValidationError`` whose
``code`` names the form field at fault (``file``, ``fields``, ``index_column``, ``row_limit``,
``model``, ``filter``, ``sql``, ``database``, ``provider``).

A file is checked by loading it whole - what the form accepts, the engine loads - and the
result is kept on the row for the load that follows the save, so it is read once.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ValidationError

from .data import Encoded
from .errors import LoadError, field_error

if TYPE_CHECKING:
    from .models import PublishedTable



def _select(published: PublishedTable, names: list[str], origin: str = "the file") -> list[str]:
    """The columns to keep, after checking ``fields`` and ``index_column`` against ``names``."""
    wanted = published.field_list() or names
    missing = [name for name in wanted if name not in names]
    if missing:
        raise field_error(f"No column named {', '.join(missing)}; {origin} has: {', '.join(names)}.", "fields")
    if published.index_column and published.index_column not in wanted:
        raise field_error(
            f'The index column "{published.index_column}" is not a column of the table; columns: {", ".join(wanted)}.',
            "index_column",
        )
    return wanted


def _empty(columns: list[str]) -> str:
    """No rows: CSV text of the header alone, a table of string columns that ``replace`` also accepts."""
    import csv

    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(columns)
    return header.getvalue()


class Source:
    """The interface: validate cheaply, load fully, and say the row limit."""

    def check(self, published: PublishedTable) -> None:
        """Raise ``ValidationError`` (``code`` = the field) for what a load would refuse."""

    def load(self, published: PublishedTable) -> tuple[Any, str | None]:
        raise NotImplementedError

    def limit(self, published: PublishedTable) -> int | None:
        return published.row_limit or None


class FileSource(Source):
    """An uploaded file read through Django's storage API."""

    def check(self, published: PublishedTable) -> None:
        """Load the file whole, as the engine will: a file the form accepts is one that loads."""
        if not published.file:
            raise field_error("Upload a file for a file source.", "file")
        loaded = self._read(published)
        published.file.seek(0)  # an upload not yet saved is stored from this handle
        published._checked_load = loaded

    def load(self, published: PublishedTable) -> tuple[Encoded, str | None]:
        loaded = published.__dict__.pop("_checked_load", None)
        if loaded is not None:
            return loaded
        try:
            return self._read(published)
        finally:
            published.file.close()

    def _read(self, published: PublishedTable) -> tuple[Encoded, str | None]:
        from . import arrow, files

        fmt = files.file_format(published.file.name)
        schema, batches = files.read(fmt, files.open_upload(published))
        columns = _select(published, list(schema.names))
        try:
            data, rows = arrow.write(schema, batches, columns)
        except LoadError as exc:
            raise field_error(str(exc), "file") from None
        if rows == 0:
            raise field_error("The file has no rows.", "file")
        return Encoded(data, None), published.index_column or None


class ModelSource(Source):
    """Rows of a Django model matching ``filter``, indexed by primary key unless told otherwise."""

    def _model(self, published: PublishedTable) -> Any:
        try:
            return apps.get_model(published.model)
        except (LookupError, ValueError):
            message = f'"{published.model}" is not an installed model; use "app_label.Model".'
            raise field_error(message, "model") from None

    def _query(self, published: PublishedTable) -> tuple[Any, list[str], str]:
        """The filtered queryset, the fields to read and the index, all checked."""
        model = self._model(published)
        concrete = [f.attname for f in model._meta.concrete_fields]
        fields = published.field_list() or concrete
        unknown = [name for name in fields if name not in concrete and name not in {f.name for f in model._meta.concrete_fields}]
        if unknown:
            message = f"{model._meta.label} has no field {', '.join(unknown)}; fields: {', '.join(concrete)}."
            raise field_error(message, "fields")
        index = published.index_column or model._meta.pk.attname
        if index not in fields:
            if published.index_column:
                raise field_error(
                    f'The index column "{index}" is not one of the chosen fields: {", ".join(fields)}.', "index_column"
                )
            fields = [index, *fields]
        if published.live:
            self._check_live(published, model, index)
        return self._filtered(model, published.filter), fields, index

    def _check_live(self, published: PublishedTable, model: Any, index: str) -> None:
        """A followed queryset is read back row by row by primary key, every matching row kept."""
        pk = model._meta.pk
        if index not in {pk.name, pk.attname}:
            raise field_error(
                f'A live table is indexed by the primary key: leave the index column blank or set it to "{pk.attname}".',
                "index_column",
            )
        if published.row_limit:
            raise field_error("A live table keeps every matching row; leave the row limit blank.", "row_limit")

    def _filtered(self, model: Any, lookups: Any) -> Any:
        """``model``'s rows matching ``lookups``; every lookup is tried alone so the error names it."""
        from django.core.exceptions import FieldError

        queryset = model._default_manager.all()
        if lookups in (None, "", {}):
            return queryset
        if not isinstance(lookups, dict):
            message = 'The filter must be an object of field lookups, e.g. {"status": "open", "amount__gte": 10}.'
            raise field_error(message, "filter")
        for lookup, value in lookups.items():
            try:
                queryset.filter(**{lookup: value})
            except (FieldError, ValidationError, ValueError, TypeError) as exc:
                detail = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                message = f'The filter "{lookup}" does not apply to {model._meta.label}: {detail}'
                raise field_error(message, "filter") from None
        return queryset.filter(**lookups)

    def check(self, published: PublishedTable) -> None:
        self._query(published)

    def load(self, published: PublishedTable) -> tuple[list[dict[str, Any]], str | None]:
        queryset, fields, index = self._query(published)
        rows = list(queryset.values(*fields))
        if not rows:  # nothing to infer types from: the model's fields give them
            from .live import column_type

            model = queryset.model
            by_name = {name: f for f in model._meta.concrete_fields for name in (f.name, f.attname)}
            return {name: column_type(by_name[name]) for name in fields}, index  # type: ignore[return-value]
        return rows, index


class SQLSource(Source):
    """One read-only SELECT against a configured database alias (see ``sql.py``)."""

    def check(self, published: PublishedTable) -> None:
        """Runs the query with ``LIMIT 0``: syntax, tables and columns are checked, no rows read."""
        from . import sql

        _select(published, sql.columns(published.database, published.sql), "the query")

    def load(self, published: PublishedTable) -> tuple[Any, str | None]:
        from . import arrow, sql

        names, batches = sql.query_arrow(published.database, published.sql)
        columns = _select(published, names, "the query")
        index = published.index_column or None
        if not batches:
            return _empty(columns), index
        try:
            data, _ = arrow.write(batches[0].schema, batches, columns)
        except LoadError as exc:
            raise field_error(str(exc), "sql") from None
        return Encoded(data, None), index


class ProviderSource(Source):
    """A table declared in code with ``perspective_table``; the row only publishes it.

    Loading calls the declared loader with the declared index and limit, so a reload
    replaces the rows of the table the code hosts in place and its streams carry on.
    """

    def _spec(self, published: PublishedTable) -> Any:
        from .tables import declared

        spec = declared.specs.get(published.provider)
        if spec is None:
            names = ", ".join(sorted(declared.specs)) or "none"
            raise field_error(
                f'No table named "{published.provider}" is declared in code with perspective_table(); declared: {names}.',
                "provider",
            )
        return spec

    def check(self, published: PublishedTable) -> None:
        self._spec(published)
        for field, value in (("fields", published.fields), ("index_column", published.index_column), ("row_limit", published.row_limit)):
            if value not in ("", None):
                message = "A table defined in code keeps the columns, index and limit its code declares; leave this blank."
                raise field_error(message, field)

    def load(self, published: PublishedTable) -> tuple[Any, str | None]:
        spec = self._spec(published)
        return spec.loader(), spec.index

    def limit(self, published: PublishedTable) -> int | None:
        return self._spec(published).limit


class DatabaseSource(Source):
    """A model (and its filter) or a SELECT on a PostgreSQL alias, left in the database.

    Nothing is loaded: the row publishes a database table (``databases.py``) whose views
    are SQL the database runs, through the same guard; the row decides who reads it.
    """

    def table(self, published: PublishedTable) -> Any:
        """The row's database table, not yet reachable; raises ``ValidationError``."""
        from . import databases, sql

        if bool(published.model) == bool(published.sql.strip()):
            raise field_error("Give either a model (with an optional filter) or an SQL query on a database.", "sql" if published.sql.strip() else "model")
        if published.model:
            model_source: ModelSource = SOURCES["model"]  # type: ignore[assignment]
            model = model_source._model(published)
            queryset = model_source._filtered(model, published.filter)
            alias, field = queryset.db, "model"
            table = databases.registry_table(published.name, queryset=queryset)
        else:
            alias, field = published.database, "database"
            table = databases.registry_table(published.name, query=sql.statement(published.sql), alias=alias)
        if sql.connection_for(alias).vendor != "postgresql":
            raise field_error(f'The database "{alias}" is not PostgreSQL: only PostgreSQL tables can stay in the database.', field)
        return table

    def check(self, published: PublishedTable) -> None:
        """Reads the columns (no rows): the relation exists and every column can be served."""
        from . import databases

        try:
            self.table(published).columns()
        except databases.DatabaseError as exc:
            raise field_error(str(exc), "model" if published.model else "sql") from None

    def load(self, published: PublishedTable) -> tuple[Any, str | None]:
        raise LoadError("a database table is not loaded: its rows stay in the database")


SOURCES: dict[str, Source] = {
    "file": FileSource(), "model": ModelSource(), "sql": SQLSource(), "provider": ProviderSource(), "database": DatabaseSource(),
}


def check(published: PublishedTable) -> None:
    """Validate ``published``'s source cheaply (form validation); raises ``ValidationError``."""
    SOURCES[published.source].check(published)


def load(published: PublishedTable) -> tuple[Any, str | None]:
    """``(data, index)`` for ``Engine.host``; raises ``ValidationError`` on bad input."""
    return SOURCES[published.source].load(published)


def database_table(published: PublishedTable) -> Any:
    """The database table a ``database`` row publishes (not yet reachable); raises ``ValidationError``."""
    database_source: DatabaseSource = SOURCES["database"]  # type: ignore[assignment]
    return database_source.table(published)


def live_query(published: PublishedTable) -> tuple[Any, list[str], str]:
    """``(queryset, fields, index)`` for ``live.follow_queryset``; raises ``ValidationError`` on bad input."""
    model_source: ModelSource = SOURCES["model"]  # type: ignore[assignment]
    return model_source._query(published)


def limit(published: PublishedTable) -> int | None:
    """The row limit to host ``published`` with."""
    return SOURCES[published.source].limit(published)
