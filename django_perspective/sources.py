"""Where a published table's rows come from: one small class per ``source``.

Each has ``load(published) -> (data, index)`` for ``Engine.host``, ``check(published)`` for
form validation (cheap: no full load) and ``limit(published)``. A file is streamed through
pyarrow's readers batch by batch into Arrow IPC bytes, so a large CSV costs about its Arrow
size in memory, never a Python object per cell; an SQL query is fetched the same way
(``sql.py``). Every problem a staff user can cause becomes a ``ValidationError`` whose
``code`` names the form field at fault (``file``, ``fields``, ``index_column``, ``row_limit``,
``model``, ``filter``, ``sql``, ``database``, ``provider``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from .models import PublishedTable

FORMATS = {
    ".csv": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".parquet": "parquet",
}


def _error(message: str, field: str = "file") -> ValidationError:
    return ValidationError(message, code=field)


def file_format(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise _error(
            f'"{PurePath(name).name}" is not a supported file: use .csv, .json, .ndjson, .arrow, .feather or .parquet.'
        ) from None


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is the "parquet" extra
        raise _error('File sources need pyarrow: pip install "django-perspective[parquet]".') from None
    return pyarrow


def _csv_error(exc: Exception) -> ValidationError:
    text = str(exc)
    if "Empty CSV file" in text:
        return _error("The file is empty.")
    if "invalid UTF8" in text or "UTF-8" in text or "UTF8" in text:
        return _error("The file is not UTF-8 text; save it as UTF-8 CSV and upload it again.")
    if "Expected" in text and "columns" in text:
        detail = text.split("\n")[0].removeprefix("CSV parse error: ")
        return _error(f"Rows of the CSV file have different numbers of columns ({detail}).")
    return _error(f"The CSV file could not be read: {text.splitlines()[0] if text else type(exc).__name__}.")


def _batches(fmt: str, fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The file's schema and a stream of its record batches."""
    pa = _pa()
    if fmt == "csv":
        from pyarrow import csv

        try:
            reader = csv.open_csv(fh)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise _csv_error(exc) from None

        if any(pa.types.is_binary(field.type) for field in reader.schema):
            # pyarrow reads a column that is not valid UTF-8 as bytes.
            raise _error("The file is not UTF-8 text; save it as UTF-8 CSV and upload it again.")

        def stream() -> Iterator[pa.RecordBatch]:
            try:
                yield from reader
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                raise _csv_error(exc) from None

        return reader.schema, stream()
    if fmt == "arrow":
        data = fh.read()
        if not data:
            raise _error("The file is empty.")
        try:
            reader = pa.ipc.open_file(pa.BufferReader(data))
            return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            pass
        try:
            stream_reader = pa.ipc.open_stream(pa.BufferReader(data))
        except pa.ArrowInvalid:
            raise _error("The file is not an Arrow IPC (Feather v2) file.") from None
        return stream_reader.schema, iter(stream_reader)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(fh)
        except (pa.ArrowInvalid, OSError) as exc:
            if "size 0" in str(exc) or "empty" in str(exc).lower():
                raise _error("The file is empty.") from None
            raise _error("The file is not a Parquet file.") from None
        return parquet.schema_arrow, parquet.iter_batches()
    if fmt == "ndjson":
        from pyarrow import json as pajson

        data = fh.read()
        if not data.strip():
            raise _error("The file is empty.")
        try:
            table = pajson.read_json(pa.BufferReader(data))
        except pa.ArrowInvalid as exc:
            raise _error(f"The file is not one JSON object a line: {str(exc).splitlines()[0]}.") from None
        return table.schema, iter(table.to_batches())
    return _json_batches(fh)


def _json_batches(fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A JSON array of records or an object of columns (parsed whole: JSON has no stream form)."""
    pa = _pa()
    raw = fh.read()
    if not raw.strip():
        raise _error("The file is empty.")
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError:
        raise _error("The file is not UTF-8 text; save it as UTF-8 JSON and upload it again.") from None
    except ValueError as exc:
        raise _error(f"The file is not valid JSON: {exc}.") from None
    try:
        if isinstance(value, list) and all(isinstance(row, dict) for row in value):
            table = pa.Table.from_pylist(value)
        elif isinstance(value, dict) and all(isinstance(col, list) for col in value.values()):
            if len({len(col) for col in value.values()}) > 1:
                raise _error("The JSON columns have different lengths.")
            table = pa.Table.from_pydict(value)
        else:
            raise _error('JSON must be a list of records [{"a": 1}, ...] or an object of columns {"a": [1, ...]}.')
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _error(f"A JSON column mixes types: {exc}.") from None
    if table.num_columns == 0:
        raise _error("The file is empty.")
    return table.schema, iter(table.to_batches())


def _select(published: PublishedTable, names: list[str], origin: str = "the file") -> list[str]:
    """The columns to keep, after checking ``fields`` and ``index_column`` against ``names``."""
    wanted = published.field_list() or names
    missing = [name for name in wanted if name not in names]
    if missing:
        raise _error(f"No column named {', '.join(missing)}; {origin} has: {', '.join(names)}.", "fields")
    if published.index_column and published.index_column not in wanted:
        raise _error(
            f'The index column "{published.index_column}" is not a column of the table; columns: {", ".join(wanted)}.',
            "index_column",
        )
    return wanted


def _open(published: PublishedTable) -> Any:
    if not published.file:
        raise _error("No file was uploaded.")
    if published.file.size == 0:
        raise _error("The file is empty.")
    published.file.open("rb")
    return published.file


def _first(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Batches up to the first one with rows: enough to know the file is not empty."""
    for batch in batches:
        yield batch
        if batch.num_rows:
            return


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
        """Format, first block, columns: enough to refuse a bad upload before it is saved."""
        if not published.file:
            raise _error("Upload a file for a file source.")
        fmt = file_format(published.file.name)
        fh = _open(published)
        try:
            schema, batches = _batches(fmt, fh)
            _select(published, list(schema.names))
            if not any(batch.num_rows for batch in _first(batches)):
                raise _error("The file has no rows.")
        finally:
            fh.seek(0)

    def load(self, published: PublishedTable) -> tuple[bytes, str | None]:
        pa = _pa()
        fmt = file_format(published.file.name)
        fh = _open(published)
        try:
            schema, batches = _batches(fmt, fh)
            columns = _select(published, list(schema.names))
            sink = io.BytesIO()
            # Perspective has no null type: an all-empty column becomes a string column.
            fields = [schema.field(name) for name in columns]
            out_schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in fields])
            rows = 0
            with pa.ipc.new_stream(sink, out_schema) as writer:
                for batch in batches:
                    batch = batch.select(columns)
                    if batch.schema != out_schema:
                        batch = batch.cast(out_schema)
                    rows += batch.num_rows
                    writer.write_batch(batch)
        finally:
            fh.close()
        if rows == 0:
            raise _error("The file has no rows.")
        return sink.getvalue(), published.index_column or None


class ModelSource(Source):
    """Rows of a Django model matching ``filter``, indexed by primary key unless told otherwise."""

    def _query(self, published: PublishedTable) -> tuple[Any, list[str], str]:
        """The filtered queryset, the fields to read and the index, all checked."""
        try:
            model = apps.get_model(published.model)
        except (LookupError, ValueError):
            raise _error(f'"{published.model}" is not an installed model; use "app_label.Model".', "model") from None
        concrete = [f.attname for f in model._meta.concrete_fields]
        fields = published.field_list() or concrete
        unknown = [name for name in fields if name not in concrete and name not in {f.name for f in model._meta.concrete_fields}]
        if unknown:
            raise _error(f"{model._meta.label} has no field {', '.join(unknown)}; fields: {', '.join(concrete)}.", "fields")
        index = published.index_column or model._meta.pk.attname
        if index not in fields:
            if published.index_column:
                raise _error(
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
            raise _error(
                f'A live table is indexed by the primary key: leave the index column blank or set it to "{pk.attname}".',
                "index_column",
            )
        if published.row_limit:
            raise _error("A live table keeps every matching row; leave the row limit blank.", "row_limit")

    def _filtered(self, model: Any, lookups: Any) -> Any:
        """``model``'s rows matching ``lookups``; every lookup is tried alone so the error names it."""
        from django.core.exceptions import FieldError

        queryset = model._default_manager.all()
        if lookups in (None, "", {}):
            return queryset
        if not isinstance(lookups, dict):
            raise _error('The filter must be an object of field lookups, e.g. {"status": "open", "amount__gte": 10}.', "filter")
        for lookup, value in lookups.items():
            try:
                queryset.filter(**{lookup: value})
            except (FieldError, ValidationError, ValueError, TypeError) as exc:
                detail = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                raise _error(f'The filter "{lookup}" does not apply to {model._meta.label}: {detail}', "filter") from None
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
        from . import sql

        pa = _pa()
        names, batches = sql.query_arrow(published.database, published.sql)
        columns = _select(published, names, "the query")
        index = published.index_column or None
        if not batches:
            return _empty(columns), index
        sink = io.BytesIO()
        schema = batches[0].select(columns).schema
        with pa.ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch.select(columns))
        return sink.getvalue(), index


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
            raise _error(
                f'No table named "{published.provider}" is declared in code with perspective_table(); declared: {names}.',
                "provider",
            )
        return spec

    def check(self, published: PublishedTable) -> None:
        self._spec(published)
        for field, value in (("fields", published.fields), ("index_column", published.index_column), ("row_limit", published.row_limit)):
            if value not in ("", None):
                raise _error("A table defined in code keeps the columns, index and limit its code declares; leave this blank.", field)

    def load(self, published: PublishedTable) -> tuple[Any, str | None]:
        spec = self._spec(published)
        return spec.loader(), spec.index

    def limit(self, published: PublishedTable) -> int | None:
        return self._spec(published).limit


SOURCES: dict[str, Source] = {"file": FileSource(), "model": ModelSource(), "sql": SQLSource(), "provider": ProviderSource()}


def check(published: PublishedTable) -> None:
    """Validate ``published``'s source cheaply (form validation); raises ``ValidationError``."""
    SOURCES[published.source].check(published)


def load(published: PublishedTable) -> tuple[Any, str | None]:
    """``(data, index)`` for ``Engine.host``; raises ``ValidationError`` on bad input."""
    return SOURCES[published.source].load(published)


def live_query(published: PublishedTable) -> tuple[Any, list[str], str]:
    """``(queryset, fields, index)`` for ``live.follow_queryset``; raises ``ValidationError`` on bad input."""
    model_source: ModelSource = SOURCES["model"]  # type: ignore[assignment]
    return model_source._query(published)


def limit(published: PublishedTable) -> int | None:
    """The row limit to host ``published`` with."""
    return SOURCES[published.source].limit(published)
