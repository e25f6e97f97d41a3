"""Read-only SQL for the registry's SQL source: one statement, one read-only transaction.

The statement check (one ``SELECT`` or ``WITH ... SELECT``) gives a staff user a clear
error early; the read-only transaction is the real guard, because a ``SELECT`` can still
write (a function that inserts, ``nextval()``, ``SELECT ... INTO``):

- PostgreSQL: ``SET TRANSACTION READ ONLY`` inside ``atomic()``, rolled back afterwards
  (inside an outer transaction the savepoint is rolled back, which restores its mode);
  rows come through a server-side cursor (``chunked_cursor``), ``fetchmany`` at a time.
  Every statement built from the user's text goes through such a cursor: its ``DECLARE``
  is sent as a prepared statement, which holds exactly one command. A plain cursor would
  run ``SELECT '\\'; COMMIT; DELETE ...`` (one SELECT to sqlparse, whose string rules are
  not PostgreSQL's) as three statements, the ``COMMIT`` ending the read-only transaction.
- SQLite: ``PRAGMA query_only`` on the connection for the duration, then restored.
- Other backends (MySQL, Oracle, ...) cannot be made read-only per statement the same way,
  so they are refused; serve such data through a model source or a code-defined table.

No statement timeout is set: a slow query holds the request (or command) that runs it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlparse
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .errors import field_error

BATCH_ROWS = 10_000
READ_ONLY_VENDORS = ("postgresql", "sqlite")



def statement(sql: str) -> str:
    """The single SELECT/WITH statement in ``sql``, without comments or a trailing ``;``."""
    parsed = [
        (part.get_type(), sqlparse.format(str(part), strip_comments=True).strip().rstrip(";").strip())
        for part in sqlparse.parse(sql or "")
    ]
    parsed = [(kind, text) for kind, text in parsed if text]
    if not parsed:
        raise field_error("Enter a SELECT query.", "sql")
    if len(parsed) > 1:
        message = "Enter one statement only: the query may not contain several statements separated by ;."
        raise field_error(message, "sql")
    kind, text = parsed[0]
    if kind != "SELECT":
        found = text.split(None, 1)[0].upper()
        message = f"Only a SELECT query (or WITH ... SELECT) can be published; this one is a {found} statement."
        raise field_error(message, "sql")
    return text


def connection_for(alias: str) -> BaseDatabaseWrapper:
    """The connection of ``alias``, refusing aliases that are unknown or cannot be read-only."""
    if alias not in connections:
        raise field_error(f'There is no database "{alias}"; configured: {", ".join(connections)}.', "database")
    connection = connections[alias]
    if connection.vendor not in READ_ONLY_VENDORS:
        raise field_error(
            f'The database "{alias}" is {connection.display_name}: SQL sources need PostgreSQL or SQLite, '
            "where the query runs in a read-only transaction.",
            "database",
        )
    return connection


@contextlib.contextmanager
def read_only(alias: str) -> Iterator[BaseDatabaseWrapper]:
    """``alias``'s connection with writes refused until the block ends; nothing it did is kept."""
    connection = connection_for(alias)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA query_only")
            before = cursor.fetchone()[0]
            cursor.execute("PRAGMA query_only = ON")
        try:
            yield connection
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA query_only = {int(before)}")
        return
    with transaction.atomic(using=alias):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
            yield connection
        finally:
            transaction.set_rollback(True, using=alias)


@contextlib.contextmanager
def _cursor(alias: str) -> Iterator[Any]:
    """A cursor for the user's statement: read-only, and one statement only (see above)."""
    with read_only(alias) as connection, connection.chunked_cursor() as cursor:
        yield cursor


def _failed(exc: Exception) -> ValidationError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return field_error(f"The query failed: {first}", "sql")


def _columns(description: Sequence[Any]) -> list[str]:
    names = [column[0] for column in description]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        message = f"The query returns several columns named {', '.join(repeated)}; name them apart with AS."
        raise field_error(message, "sql")
    return names


def columns(alias: str, sql: str) -> list[str]:
    """The column names ``sql`` returns, asking the database for none of its rows."""
    probe = f"SELECT * FROM (\n{statement(sql)}\n) AS perspective_probe LIMIT 0"
    try:
        with _cursor(alias) as cursor:
            cursor.execute(probe)
            return _columns(cursor.description)
    except DatabaseError as exc:
        raise _failed(exc) from None


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)


def _array(values: Sequence[Any]) -> Any:
    """One column of a batch as Arrow, in a type Perspective loads (else as text)."""
    import pyarrow as pa

    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        array = None
    if array is not None:
        kind = array.type
        if pa.types.is_decimal(kind):
            return array.cast(pa.float64())
        if (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_string(kind)
            or pa.types.is_date32(kind)
            or pa.types.is_timestamp(kind)
            or pa.types.is_null(kind)
        ):
            return array
    return pa.array([None if value is None else _text(value) for value in values], pa.string())


def _common(kinds: set[Any]) -> Any:
    """The one type a column keeps across batches: the same, a float for mixed numbers, else text."""
    import pyarrow as pa

    kinds = {kind for kind in kinds if not pa.types.is_null(kind)}
    if len(kinds) == 1:
        return kinds.pop()
    if kinds and all(pa.types.is_integer(kind) or pa.types.is_floating(kind) for kind in kinds):
        return pa.float64()
    return pa.string()


def query_arrow(alias: str, sql: str, batch_rows: int = BATCH_ROWS) -> tuple[list[str], list[Any]]:
    """Column names and Arrow record batches of ``sql``'s rows, ``batch_rows`` at a time.

    Only one batch of Python tuples exists at once; the rest is Arrow.
    """
    import pyarrow as pa
    text = statement(sql)
    batches = []
    try:
        with _cursor(alias) as cursor:
            cursor.execute(text)
            names = _columns(cursor.description)
            while rows := cursor.fetchmany(batch_rows):
                batches.append(pa.RecordBatch.from_arrays([_array(col) for col in zip(*rows)], names=names))
    except DatabaseError as exc:
        raise _failed(exc) from None
    if not batches:
        return names, []
    schema = pa.schema([(name, _common({batch.schema.field(name).type for batch in batches})) for name in names])
    return names, [batch if batch.schema == schema else batch.cast(schema) for batch in batches]
