"""Turn Python rows into something Perspective loads with the right column types.

Perspective's Python binding serialises lists and dicts with plain ``json.dumps``, which
fails on ``date``, ``datetime``, ``Decimal`` and ``UUID`` - the types Django models are made
of. Encoding them ourselves as ISO strings lets Perspective infer ``date`` and
``datetime`` columns (or parse them into an existing schema) and keeps partial-row updates
partial. Everything else (Arrow bytes, CSV text, DataFrames) passes through untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple


class Encoded(NamedTuple):
    """Rows already encoded (on the caller's thread, so the engine thread does not pay for it)."""

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
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Perspective cannot store a {type(value).__name__}: {value!r}")


def encode(data: Any) -> tuple[Any, str | None]:
    """Return ``(input, format)`` for ``Client.table`` / ``Table.update``."""
    if isinstance(data, Encoded):
        return data.payload, data.format
    if isinstance(data, Mapping) and all(isinstance(v, str) for v in data.values()):
        return dict(data), None  # a schema: {"column": "type"}
    if isinstance(data, Mapping):
        return json.dumps({str(k): list(v) for k, v in data.items()}, default=_default), "columns"
    if isinstance(data, (list, tuple)):
        return json.dumps(list(data), default=_default), "json"
    return data, None
