"""Where a published table's rows come from: ``load(published) -> (data, index)``.

A file is streamed through pyarrow's readers batch by batch into Arrow IPC bytes, so a
large CSV costs about its Arrow size in memory, never a Python object per cell. Every
problem a staff user can cause becomes a ``ValidationError`` whose ``code`` names the
form field at fault (``file``, ``fields``, ``index_column``, ``model``).
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


def _select(published: PublishedTable, schema: pa.Schema) -> list[str]:
    """The columns to keep, after checking ``fields`` and ``index_column`` against ``schema``."""
    names = list(schema.names)
    wanted = published.field_list() or names
    missing = [name for name in wanted if name not in names]
    if missing:
        raise _error(f"No column named {', '.join(missing)}; the file has: {', '.join(names)}.", "fields")
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


def check(published: PublishedTable) -> None:
    """Validate a file source cheaply: format, first block, columns (for form validation)."""
    fmt = file_format(published.file.name)
    fh = _open(published)
    try:
        schema, batches = _batches(fmt, fh)
        _select(published, schema)
        if not any(batch.num_rows for batch in _first(batches)):
            raise _error("The file has no rows.")
    finally:
        fh.seek(0)


class FileSource:
    """An uploaded file read through Django's storage API."""

    def load(self, published: PublishedTable) -> tuple[bytes, str | None]:
        pa = _pa()
        fmt = file_format(published.file.name)
        fh = _open(published)
        try:
            schema, batches = _batches(fmt, fh)
            columns = _select(published, schema)
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


class ModelSource:
    """Rows of a Django model, indexed by primary key unless told otherwise."""

    def load(self, published: PublishedTable) -> tuple[list[dict[str, Any]], str | None]:
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
        rows = list(model._default_manager.values(*fields))
        if not rows:
            # Perspective cannot infer types from no rows; host an empty table of strings.
            return {name: "string" for name in fields}, index  # type: ignore[return-value]
        return rows, index


SOURCES = {"file": FileSource(), "model": ModelSource()}


def load(published: PublishedTable) -> tuple[Any, str | None]:
    """``(data, index)`` for ``Engine.host``; raises ``ValidationError`` on bad input."""
    return SOURCES[published.source].load(published)
