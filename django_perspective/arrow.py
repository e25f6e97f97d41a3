"""Arrow data in the types Perspective 5.6.1 loads, checked before the engine sees it.

The engine trusts its input: a dictionary column of int64 values kills the process when
the table is created (SIGSEGV), a dictionary index out of range or a corrupt offset buffer
reads past its memory, and many types are refused only after parsing or load in a way that
breaks later updates (an int8 or float32 column refuses every JSON update; a list column
silently adds rows). So every Arrow payload - files, SQL, code, the Python API, replication
snapshots - is read with pyarrow, validated in full, and written again as an Arrow stream
whose every column has one of the types below. Each rule was measured against 5.6.1 in a
subprocess (``tests/test_arrow.py`` keeps the evidence):

====================================  ==========================================
kept                                  bool, int32, int64, float64, string, date32,
                                      timestamp[ms] without time zone
dictionary                            decoded to its value type, then these rules
int8, int16, uint8, uint16            int32
uint32                                int64
uint64                                int64; a value above 2**63 - 1 is refused
float16, float32, decimals            float64
timestamp[s/us/ns], with time zone    timestamp[ms] of the same UTC instant
date64                                date32
null                                  string (all empty)
large_string, string_view             string
binary kinds                          string: UTF-8 text as it is, other bytes as hex
fixed_size_binary                     string of hex digits; ``arrow.uuid`` as a UUID
time32, time64                        string ``HH:MM:SS[.fraction]``
duration                              float64 seconds
list, map (all kinds)                 string of JSON text
struct                                one column per field, named ``parent.child``
run-end encoded, extension types      decoded to their values / storage, then these rules
intervals, unions                     refused, naming the column
====================================  ==========================================

Types are decided from the schema alone, so every batch of one stream gets the same.
"""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import LoadError

Convert = Callable[[Any], Any]  # an Array of one type to an Array of another

_KEPT = (pa.bool_(), pa.int32(), pa.int64(), pa.float64(), pa.string(), pa.date32(), pa.timestamp("ms"))
_SECONDS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_INT64_MAX = 2**63 - 1


def _cast(kind: pa.DataType, safe: bool = True) -> Convert:
    return lambda array: pc.cast(array, kind, safe=safe)


def _then(first: Convert, second: Convert | None) -> Convert:
    return first if second is None else lambda array: second(first(array))


def _cells(array: Any, text: Callable[[Any], str]) -> pa.Array:
    """A string column of ``text(value)`` for every non-null value (Python, for the rare kinds only)."""
    return pa.array([None if value is None else text(value) for value in array.to_pylist()], pa.string())


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _bytes_text(array: Any) -> Any:
    """UTF-8 bytes as text, anything else as hex: the column stays readable either way."""
    try:
        return pc.cast(array, pa.string())
    except pa.ArrowInvalid:
        return _cells(array, bytes.hex)


def _seconds(unit: str) -> Convert:
    return lambda array: pc.divide(pc.cast(pc.cast(array, pa.int64()), pa.float64()), float(_SECONDS[unit]))


def _storage(array: Any) -> Any:
    return array.storage


def _uuid_text(array: Any) -> Any:
    return _cells(array.storage, lambda value: str(uuid.UUID(bytes=value)))


def _bool8(array: Any) -> Any:
    return pc.not_equal(array.storage, 0)


def _refused(name: str, kind: pa.DataType) -> LoadError:
    return LoadError(
        f'Column "{name}" is of type {kind}, which Perspective cannot load; convert it to numbers or text first.',
        name,
    )


def _leaf(name: str, kind: pa.DataType) -> tuple[pa.DataType, Convert | None]:
    """The type a non-nested column becomes and how, or ``LoadError``."""
    types = pa.types
    if kind in _KEPT:
        return kind, None
    if types.is_timestamp(kind):  # to milliseconds, UTC: coarser units cannot overflow, seconds can
        return pa.timestamp("ms"), _cast(pa.timestamp("ms"), safe=kind.unit == "s")
    if types.is_date64(kind):
        return pa.date32(), _cast(pa.date32(), safe=False)
    if types.is_null(kind):
        return pa.string(), _cast(pa.string())
    if types.is_int8(kind) or types.is_int16(kind) or types.is_uint8(kind) or types.is_uint16(kind):
        return pa.int32(), _cast(pa.int32())
    if types.is_uint32(kind):
        return pa.int64(), _cast(pa.int64())
    if types.is_uint64(kind):
        return pa.int64(), _unsigned64(name)
    if types.is_floating(kind):
        return pa.float64(), _cast(pa.float64())
    if types.is_decimal(kind):
        return pa.float64(), _cast(pa.float64(), safe=False)
    if types.is_large_string(kind) or types.is_string_view(kind):
        return pa.string(), _cast(pa.string())
    if types.is_binary(kind) or types.is_large_binary(kind) or types.is_binary_view(kind):
        return pa.string(), _bytes_text
    if types.is_fixed_size_binary(kind):
        return pa.string(), lambda array: _cells(array, bytes.hex)
    if types.is_time(kind):
        return pa.string(), _cast(pa.string())
    if types.is_duration(kind):
        return pa.float64(), _seconds(kind.unit)
    lists = (types.is_list, types.is_large_list, types.is_fixed_size_list, types.is_list_view, types.is_large_list_view)
    if types.is_map(kind) or any(is_list(kind) for is_list in lists):
        return pa.string(), lambda array: _cells(array, _json)
    raise _refused(name, kind)


def _unsigned64(name: str) -> Convert:
    def convert(array: Any) -> Any:
        try:
            return pc.cast(array, pa.int64())
        except pa.ArrowInvalid:
            raise LoadError(
                f'Column "{name}" holds integers above {_INT64_MAX:,}, more than Perspective can hold; '
                "store them as text or floats.",
                name,
            ) from None

    return convert


def _plan(name: str, kind: pa.DataType) -> list[tuple[str, pa.DataType, Convert | None]]:
    """The columns one field becomes: ``(name, type, convert)``, ``convert`` None to keep it as it is."""
    if pa.types.is_struct(kind):
        planned = []
        for i in range(kind.num_fields):
            child = kind.field(i)
            field_of = (lambda index: lambda array: pc.struct_field(array, [index]))(i)
            planned += [(n, t, _then(field_of, f)) for n, t, f in _plan(f"{name}.{child.name}", child.type)]
        return planned
    if pa.types.is_dictionary(kind):
        decode = _cast(kind.value_type)
        return [(n, t, _then(decode, f)) for n, t, f in _plan(name, kind.value_type)]
    if pa.types.is_run_end_encoded(kind):
        return [(n, t, _then(pc.run_end_decode, f)) for n, t, f in _plan(name, kind.value_type)]
    if isinstance(kind, pa.BaseExtensionType):
        if kind.extension_name == "arrow.uuid":
            return [(name, pa.string(), _uuid_text)]
        if kind.extension_name == "arrow.bool8":
            return [(name, pa.bool_(), _bool8)]
        return [(n, t, _then(_storage, f)) for n, t, f in _plan(name, kind.storage_type)]
    return [(name, *_leaf(name, kind))]


class Plan:
    """What the columns of ``schema`` become; raises ``LoadError`` for what cannot load."""

    def __init__(self, schema: pa.Schema) -> None:
        self._columns: list[tuple[int, str, Convert | None]] = []
        fields = []
        for index, field in enumerate(schema):
            for name, kind, convert in _plan(field.name, field.type):
                self._columns.append((index, name, convert))
                fields.append(pa.field(name, kind))
        if not fields:
            raise LoadError("The data has no columns.")
        unique_names(name for _, name, _ in self._columns)
        self.schema = pa.schema(fields)
        self.unchanged = schema.remove_metadata() == self.schema

    def batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` in the planned types (``LoadError`` naming the column a value does not fit)."""
        if self.unchanged:
            return batch
        arrays = []
        for index, name, convert in self._columns:
            column = batch.column(index)
            try:
                arrays.append(column if convert is None else convert(column))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise LoadError(f'Column "{name}" cannot be loaded: {str(exc).splitlines()[0]}', name) from None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def unique_names(names: Iterable[str]) -> None:
    """Refuse several columns of one name: Perspective would keep one, or fail at its first update."""
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        listed = ", ".join(f'"{name}"' for name in repeated)
        raise LoadError(
            f"The data has several columns named {listed}; give each column a name of its own.", repeated[0]
        )


def _validate(data: pa.RecordBatch | pa.Table) -> None:
    try:
        data.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise LoadError(f"The Arrow data is corrupt: {str(exc).splitlines()[0]}") from None


def read_ipc(data: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The schema and the validated batches of Arrow IPC ``data``, file (Feather v2) or stream format."""
    buffer = pa.py_buffer(data)
    try:
        reader = pa.ipc.open_file(buffer)
    except pa.ArrowInvalid:
        pass
    else:
        return reader.schema, (_checked(reader.get_batch, i) for i in range(reader.num_record_batches))
    try:
        stream = pa.ipc.open_stream(buffer)
    except pa.ArrowInvalid:
        raise LoadError("The data is not Arrow IPC (a Feather v2 file or an Arrow stream).") from None

    def batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = stream.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as exc:
                raise LoadError(f"The Arrow data is corrupt: {str(exc).splitlines()[0]}") from None
            _validate(batch)
            yield batch

    return stream.schema, batches()


def _checked(read: Callable[[int], pa.RecordBatch], index: int) -> pa.RecordBatch:
    try:
        batch = read(index)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LoadError(f"The Arrow data is corrupt: {str(exc).splitlines()[0]}") from None
    _validate(batch)
    return batch


def write(schema: pa.Schema, batches: Iterable[pa.RecordBatch], columns: list[str] | None = None) -> tuple[bytes, int]:
    """An Arrow stream of ``batches`` (only ``columns``, if given) in loadable types, and its row count.

    One batch at a time: the stream and one batch in flight are all that is held.
    """
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    plan = Plan(schema)
    sink = io.BytesIO()
    rows = 0
    with pa.ipc.new_stream(sink, plan.schema) as writer:
        for batch in batches:
            if columns is not None:
                batch = batch.select(columns)
            batch = plan.batch(batch)
            rows += batch.num_rows
            writer.write_batch(batch)
    return sink.getvalue(), rows


def from_ipc(data: Any) -> bytes:
    """Arrow IPC bytes from anyone, as an Arrow stream the engine may load."""
    schema, batches = read_ipc(data)
    return write(schema, batches)[0]


def from_object(data: Any) -> bytes:
    """An Arrow table, batch or reader, a polars or a pandas DataFrame, as an Arrow stream the engine may load."""
    module = type(data).__module__.split(".")[0]
    if module == "polars":
        if hasattr(data, "collect"):  # a LazyFrame
            data = data.collect()
        data = data.to_arrow()
    elif module == "pandas" and hasattr(data, "columns"):
        data = _from_pandas(data)
    elif not isinstance(data, (pa.Table, pa.RecordBatch, pa.RecordBatchReader)) and hasattr(data, "__arrow_c_stream__"):
        data = pa.RecordBatchReader.from_stream(data)  # any library speaking Arrow's C stream interface
    if isinstance(data, pa.RecordBatch):
        return write(data.schema, [_valid(data)])[0]
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        batches = data.to_batches() if isinstance(data, pa.Table) else data
        return write(data.schema, (_valid(batch) for batch in batches))[0]
    raise TypeError(f"Perspective cannot load a {type(data).__name__}")


def _valid(batch: pa.RecordBatch) -> pa.RecordBatch:
    _validate(batch)
    return batch


def _from_pandas(frame: Any) -> pa.Table:
    """A DataFrame as Perspective's own binding reads one: its index kept, an unnamed one first as ``index``."""
    table = pa.Table.from_pandas(frame, preserve_index=True)
    if "__index_level_0__" not in table.column_names:
        return table
    names = ["__index_level_0__", *(name for name in table.column_names if name != "__index_level_0__")]
    return table.select(names).rename_columns(["index", *names[1:]])
