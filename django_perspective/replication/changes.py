"""What a stream entry carries: the operation, the payload, and the entry ids that order them."""

from __future__ import annotations

from typing import Any

from ..data import encode

UPDATE, REMOVE, REPLACE, SNAPSHOT_REQUEST = b"u", b"r", b"p", b"s"

EntryId = tuple[int, int]


def parse_id(value: bytes | str) -> EntryId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: EntryId) -> str:
    return f"{value[0]}-{value[1]}"


def serialize(data: Any) -> tuple[bytes | str, str]:
    """A change's payload and Perspective format name ("" lets Perspective detect Arrow/CSV)."""
    payload, fmt = encode(data)
    if isinstance(payload, (bytes, str)):
        return payload, fmt or ""
    if hasattr(payload, "to_arrow"):  # polars
        payload = payload.to_arrow()
    elif hasattr(payload, "to_records"):  # pandas
        import pyarrow as pa

        payload = pa.Table.from_pandas(payload, preserve_index=False)
    if hasattr(payload, "schema") and hasattr(payload, "to_batches"):
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, payload.schema) as writer:
            writer.write_table(payload)
        return sink.getvalue().to_pybytes(), ""
    raise TypeError(f"a replicated change cannot carry a {type(payload).__name__}")
