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
    """A change's payload and Perspective format name ("" lets Perspective detect Arrow/CSV).

    ``encode`` turns Arrow of every kind (pyarrow, polars, pandas) into checked IPC bytes.
    """
    payload, fmt = encode(data)
    if isinstance(payload, (bytes, str)):
        return payload, fmt or ""
    raise TypeError(f"a replicated change cannot carry a {type(payload).__name__}")
