"""Reading an uploaded file as Arrow record batches, for the registry's file source.

CSV and Parquet are streamed through pyarrow's readers batch by batch, so a large file
costs about its Arrow size in memory, never a Python object per cell; Arrow files are read
from one buffer and validated (``arrow.read_ipc``); JSON has no stream form and is parsed
whole. Every problem a staff user can cause becomes a ``ValidationError`` on the ``file``
field saying what is wrong with the file: not text, not UTF-8, a row with the wrong number
of values (and its line), several columns of one name, no rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

import pyarrow as pa
from django.core.exceptions import ValidationError

from . import arrow
from .errors import LoadError, field_error

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
SNIFF_BYTES = 64 * 1024
# Leading bytes of files saved under a text name by mistake: what they are, what to do.
_MAGIC = (
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook is one)", None),
    (b"\xd0\xcf\x11\xe0", "an old Excel or Word document", None),
    (b"\x1f\x8b", "gzip-compressed", "unpack it and upload the file inside"),
    (b"PAR1", "a Parquet file", "upload it named .parquet"),
    (b"ARROW1", "an Arrow file", "upload it named .arrow"),
    (b"%PDF", "a PDF document", None),
)


def file_format(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise field_error(
            f'"{PurePath(name).name}" is not a supported file: use .csv, .json, .ndjson, .arrow, .feather or .parquet.',
            "file",
        ) from None


def _not_utf8(kind: str) -> ValidationError:
    return field_error(f"The file is not UTF-8 text; save it as UTF-8 {kind} and upload it again.", "file")


def _check_text(fh: Any, kind: str) -> None:
    """Refuse binary data under a text name from its first block, before a parser reports nonsense."""
    head = fh.read(SNIFF_BYTES)
    fh.seek(0)
    for magic, what, advice in _MAGIC:
        if head.startswith(magic):
            advice = advice or f"save it as {kind} (UTF-8) and upload it again"
            raise field_error(f"The file is not {kind} text: it is {what}; {advice}.", "file")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise field_error(f"The file is UTF-16 text; save it as UTF-8 {kind} and upload it again.", "file")
    controls = sum(head.count(bytes([code])) for code in (*range(0, 9), 11, 12, *range(14, 32)))
    if b"\x00" in head or controls > len(head) // 100:
        raise field_error(
            f"The file is not text: it holds binary data. Upload a {kind} file saved as UTF-8 text.", "file"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of the block
            raise _not_utf8(kind) from None


def _line_of_row(fh: Any, row: int) -> int:
    """The line of pyarrow's row number ``row`` (the header is row 1; blank lines are not rows)."""
    fh.seek(0)
    rows = 0
    for line_number, line in enumerate(fh, 1):
        if line.strip(b"\r\n"):
            rows += 1
            if rows == row:
                return line_number
    return row


def _ragged(fh: Any, exc: Exception) -> ValidationError:
    """Which line has the wrong number of values: read again on one thread, which numbers rows."""
    from pyarrow import csv

    found: list[Any] = []

    def first(row: Any) -> str:
        found.append(row)
        return "error"

    fh.seek(0)
    try:
        for _ in csv.open_csv(
            fh,
            read_options=csv.ReadOptions(use_threads=False),
            parse_options=csv.ParseOptions(invalid_row_handler=first),
        ):
            pass
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    detail = str(exc).split("\n")[0].removeprefix("CSV parse error: ")
    if not found or found[0].number is None:
        return field_error(f"Rows of the CSV file have different numbers of columns ({detail}).", "file")
    bad = found[0]
    line = _line_of_row(fh, bad.number)
    return field_error(
        f"Rows of the CSV file have different numbers of columns: line {line} has {bad.actual_columns} "
        f"value{'s' if bad.actual_columns != 1 else ''} where the header has {bad.expected_columns} ({bad.text}).",
        "file",
    )


def _csv_error(fh: Any, exc: Exception) -> ValidationError:
    text = str(exc)
    if "Empty CSV file" in text:
        return field_error("The file is empty.", "file")
    if "invalid UTF8" in text or "UTF-8" in text or "UTF8" in text:
        return _not_utf8("CSV")
    if "Expected" in text and "columns" in text:
        return _ragged(fh, exc)
    detail = text.splitlines()[0] if text else type(exc).__name__
    return field_error(f"The CSV file could not be read: {detail}.", "file")


def _csv(fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    from pyarrow import csv

    _check_text(fh, "CSV")
    try:
        reader = csv.open_csv(fh)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _csv_error(fh, exc) from None
    if any(pa.types.is_binary(field.type) for field in reader.schema):
        # pyarrow reads a column that is not valid UTF-8 as bytes.
        raise _not_utf8("CSV")

    def stream() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise _csv_error(fh, exc) from None

    return reader.schema, stream()


def _arrow(fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    data = fh.read()
    if not data:
        raise field_error("The file is empty.", "file")
    try:
        return arrow.read_ipc(data)
    except LoadError:
        raise field_error("The file is not an Arrow IPC (Feather v2) file.", "file") from None


def _parquet(fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(fh)
    except (pa.ArrowInvalid, OSError) as exc:
        if "size 0" in str(exc) or "empty" in str(exc).lower():
            raise field_error("The file is empty.", "file") from None
        raise field_error("The file is not a Parquet file.", "file") from None
    return parquet.schema_arrow, parquet.iter_batches()


def _read_text(fh: Any, kind: str) -> Any:
    """The whole file, once it is known to be text and not empty."""
    _check_text(fh, kind)
    data = fh.read()
    if not data.strip():
        raise field_error("The file is empty.", "file")
    return data


def _ndjson(fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    from pyarrow import json as pajson

    data = _read_text(fh, "NDJSON")
    try:
        table = pajson.read_json(pa.BufferReader(data))
    except pa.ArrowInvalid as exc:
        raise field_error(f"The file is not one JSON object a line: {str(exc).splitlines()[0]}.", "file") from None
    return table.schema, iter(table.to_batches())


def _json(fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A JSON array of records or an object of columns (parsed whole: JSON has no stream form)."""
    raw = _read_text(fh, "JSON")
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError:
        raise _not_utf8("JSON") from None
    except ValueError as exc:
        raise field_error(f"The file is not valid JSON: {exc}.", "file") from None
    try:
        if isinstance(value, list) and all(isinstance(row, dict) for row in value):
            table = pa.Table.from_pylist(value)
        elif isinstance(value, dict) and all(isinstance(col, list) for col in value.values()):
            if len({len(col) for col in value.values()}) > 1:
                raise field_error("The JSON columns have different lengths.", "file")
            table = pa.Table.from_pydict(value)
        else:
            message = 'JSON must be a list of records [{"a": 1}, ...] or an object of columns {"a": [1, ...]}.'
            raise field_error(message, "file")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise field_error(f"A JSON column mixes types: {exc}.", "file") from None
    if table.num_columns == 0:
        raise field_error("The file is empty.", "file")
    return table.schema, iter(table.to_batches())


_READERS = {"csv": _csv, "arrow": _arrow, "parquet": _parquet, "ndjson": _ndjson, "json": _json}


def _guarded(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A reader's batches, a damaged block after the first refused like the first would be."""
    try:
        yield from batches
    except (pa.ArrowException, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise field_error(f"The file could not be read: {detail}", "file") from None


def read(fmt: str, fh: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The file's schema and a stream of its record batches; several columns of one name are refused."""
    schema, batches = _READERS[fmt](fh)
    try:
        arrow.unique_names(schema.names)
    except LoadError as exc:
        raise field_error(str(exc).replace("The data has", "The file has"), "file") from None
    return schema, _guarded(batches)


def open_upload(published: Any) -> Any:
    """``published.file`` open for reading from its start."""
    if not published.file:
        raise field_error("No file was uploaded.", "file")
    if published.file.size == 0:
        raise field_error("The file is empty.", "file")
    published.file.open("rb")
    return published.file
