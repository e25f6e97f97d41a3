"""An engine that refuses, instead of crashing on, Arrow the normalisation should have rewritten.

Tests that host uploads in their own process use it: if a path ever skipped the checks, the
test fails with the offending schema instead of the test process dying in Perspective.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa

from django_perspective.data import encode
from django_perspective.engine import Engine

LOADABLE = {pa.bool_(), pa.int32(), pa.int64(), pa.float64(), pa.string(), pa.date32(), pa.timestamp("ms")}


class CheckedEngine(Engine):
    """A real engine whose ``host`` first proves the payload is made of loadable types."""

    def host(self, name: str, data: Any, **kwargs: Any) -> Any:
        encoded = encode(data)
        if isinstance(encoded.payload, bytes):
            schema = pa.ipc.open_stream(encoded.payload).schema
            wrong = [f"{field.name}: {field.type}" for field in schema if field.type not in LOADABLE]
            assert not wrong, f"unchecked Arrow reached the engine: {wrong}"
        return super().host(name, encoded, **kwargs)


def arrow_file(columns: dict) -> bytes:
    """``columns`` as an Arrow IPC file (Feather v2), as a user would upload one."""
    table = pa.table(columns)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()
