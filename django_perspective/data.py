"""Turn what code hands us into what Perspective loads: the one place every load passes through.

Every table creation, ``replace`` and ``update`` - files, SQL, models, code-defined tables,
the Python API, replication - calls ``encode`` (``Engine.host`` does for whatever reaches it
unencoded), so checks made here hold for every path:

- Arrow (IPC bytes, pyarrow tables, batches and readers, polars and pandas DataFrames, any
  object with ``__arrow_c_stream__``) is validated and rewritten in types the engine takes
  (``arrow.py``); what it cannot take is refused with ``LoadError`` naming the column.
- Python rows and columns become JSON: Perspective's binding serialises them with plain
  ``json.dumps``, which fails on ``date``, ``datetime``, ``Decimal`` and ``UUID`` - the types
  Django models are made of. Encoding them ourselves as ISO strings lets Perspective infer
  ``date`` and ``datetime`` columns (or parse them into an existing schema) and keeps
  partial-row updates partial. A list or dict in a cell becomes JSON text (Perspective would
  spread a list over extra rows and a dict over extra columns).
- CSV text goes to Perspective's own parser; a ``{"column": "type"}`` mapping is a schema.

``encode`` may run on any thread: callers run it before they hand the result to the engine
thread, so a large payload is checked without holding up other clients.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from itertools import chain
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

_NESTED = (list, tuple, set, frozenset, dict)


class Encoded(NamedTuple):
    """What ``Client.table`` / ``Table.update`` take: the payload and its Perspective ``format``.

    Encoding again passes it through, so callers encode on their own thread and the engine
    thread does not pay for it.
    """

    payload: Any
    format: str | None


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"Perspective cannot store a {type(value).__name__}: {value!r}")


def _cell(value: Any) -> Any:
    """A nested value as JSON text, one cell; anything else as it is."""
    if isinstance(value, _NESTED):
        return json.dumps(value, default=_default, ensure_ascii=False)
    return value


def _nested(values: Iterable[Any]) -> bool:
    """Whether any value is nested: the distinct types are collected first, at C speed."""
    return any(issubclass(kind, _NESTED) for kind in set(map(type, values)))


def _records(rows: list[Any]) -> list[Any]:
    if set(map(type, rows)) <= {dict}:  # the usual case, scanned without a Python loop
        values = chain.from_iterable(map(dict.values, rows))
    else:
        values = chain.from_iterable(row.values() for row in rows if isinstance(row, Mapping))
    if not _nested(values):
        return rows
    return [{key: _cell(value) for key, value in row.items()} if isinstance(row, Mapping) else row for row in rows]


def encode(data: Any) -> Encoded:
    """``Encoded(payload, format)`` for ``Client.table`` / ``Table.update``; raises ``LoadError`` or ``TypeError``."""
    if isinstance(data, Encoded):
        return data
    if isinstance(data, Mapping) and all(isinstance(v, str) for v in data.values()):
        return Encoded(dict(data), None)  # a schema: {"column": "type"}
    if isinstance(data, Mapping):
        columns = {str(k): [_cell(value) for value in v] if _nested(v) else list(v) for k, v in data.items()}
        return Encoded(json.dumps(columns, default=_default), "columns")
    if isinstance(data, (list, tuple)):
        return Encoded(json.dumps(_records(list(data)), default=_default), "json")
    if isinstance(data, str):
        return Encoded(data, None)
    from . import arrow

    if isinstance(data, (bytes, bytearray, memoryview)):
        return Encoded(arrow.from_ipc(data), None)
    return Encoded(arrow.from_object(data), None)
