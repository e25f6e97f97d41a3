"""Database tables: declared relations that stay in DuckDB or PostgreSQL, read through SQL.

A database table is never copied into the engine: each connection's views become SQL run
by the database (Perspective's ``VirtualServer`` drives a handler of ours). Upstream's
handlers list every relation and interpolate client strings into SQL; this one only knows
the declared tables, sees requests the guard has already checked (columns of the declared
table, the operators and aggregates advertised here, values of the column's type, strict
view ids), names each view itself, and never writes: a view is a SELECT kept in memory and
run as a common table expression, never a table in the database. Every statement runs
read-only, under a timeout, on a connection from a bounded pool, on this module's own
threads (never the event loop, never the engine thread). A table's ``scope(user)`` rows
filter is bound as parameters inside the database, so a session sees only its rows in
every answer: size, schema, views, min/max and exports.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import access, conf, scheduler
from .catalog import Dimensions, Features
from .expressions import Policy as ExpressionPolicy

logger = logging.getLogger("django_perspective.databases")
statements = logging.getLogger("django_perspective.databases.sql")  # every statement sent, at DEBUG

# What a database table offers the viewer, in the handler's SQL vocabulary. Each name is
# emitted verbatim by Perspective's SQL builder, so only these reach SQL.
FILTER_OPS = ("==", "!=", ">", ">=", "<", "<=", "LIKE")
NUMBER_AGGREGATES = ("sum", "count", "avg", "min", "max")
OTHER_AGGREGATES = ("count", "min", "max")
TYPES = ("string", "date", "datetime", "integer", "float", "boolean")
VIEW_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

Scope = Callable[[Any], "dict[str, Any] | None"]


class DatabaseError(Exception):
    """A statement failed, timed out or was over a limit; the message is the client's error."""


def features() -> dict[str, Any]:
    """What ``get_features`` advertises for database tables (the UI offers only these)."""
    numbers = {"integer", "float"}
    return {
        "group_by": True,
        "split_by": True,
        "sort": True,
        "expressions": False,
        "filter_ops": {t: list(FILTER_OPS) for t in TYPES},
        "aggregates": {t: list(NUMBER_AGGREGATES if t in numbers else OTHER_AGGREGATES) for t in TYPES},
    }


def guard_features() -> Features:
    """The same features as the guard checks them: a request may use nothing else."""
    advertised = features()
    return Features(
        {t: frozenset(ops) for t, ops in advertised["filter_ops"].items()},
        {t: {name: 0 for name in names} for t, names in advertised["aggregates"].items()},
    )


def quote(name: str) -> str:
    """A SQL identifier, quoted: ``schema.table`` parts each; refused if it needs escaping."""
    parts = name.split(".")
    if not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(f"{name!r} is not a plain SQL identifier (letters, digits, _ and $; dots between parts)")
    return ".".join(f'"{part}"' for part in parts)


class Backend:
    """One database: a bounded pool of read-only connections (schema reads), and cursors.

    ``keeps_views``: a session keeps its views in the database as temporary objects on a
    cursor of its own (DuckDB); otherwise a view is SQL kept in memory and every statement
    runs on a pooled connection with the session's scope bound to it (PostgreSQL, whose
    read-only transactions create nothing). ``pivots``: the SQL has DuckDB's ``PIVOT``
    for ``split_by``; otherwise split columns are filtered aggregates of their own.
    """

    keeps_views = True
    pivots = True
    builder_config: dict[str, str] = {"row_id_expr": "(SELECT NULL)"}  # a query's rows: its own order
    # A plain table's unsorted flat views keep the table's order: its row id (``row_id``),
    # passed through the session's relation as __psp_row.
    table_builder_config: dict[str, str] | None = {"row_id_expr": '"__psp_row"'}
    row_id = "rowid"

    def __init__(self) -> None:
        self._pool: queue.Queue[Any] | None = None
        self._lock = threading.Lock()
        self._made = 0

    def connect(self) -> Any:
        raise NotImplementedError

    def placeholder(self, name: str, kind: str) -> str:
        """SQL reading bound value ``name`` (of Perspective type ``kind``) inside the database."""
        raise NotImplementedError

    def literal(self, value: Any) -> str:
        """``value`` (read from this database) as a SQL literal."""
        raise NotImplementedError

    def execute(self, conn: Any, sql: str, params: dict[str, Any], timeout: float) -> Any:
        raise NotImplementedError

    def columns(self, result: Any) -> list[tuple[str, str]]:
        raise NotImplementedError

    def rows(self, result: Any) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def fill(self, result: Any, data: Any, config: dict[str, Any]) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection; waits at most the statement timeout for one to be free."""
        with self._lock:
            if self._pool is None:
                self._pool = queue.Queue()
            if self._pool.empty() and self._made < max(1, conf.get("DATABASE_POOL_SIZE")):
                self._made += 1
                self._pool.put(None)
        try:
            conn = self._pool.get(timeout=conf.get("DATABASE_STATEMENT_TIMEOUT") or None)
        except queue.Empty:
            raise DatabaseError("the database is busy: every pooled connection is in use") from None
        healthy = True
        try:
            if conn is None:
                conn = self.connect()
            yield conn
        except DatabaseError:
            raise
        except Exception:
            healthy = False
            raise
        finally:
            if not healthy and conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            self._pool.put(conn)

    def run(self, sql: str, params: dict[str, Any]) -> Any:
        """Run one read-only statement under the timeout and return the driver's result."""
        timeout = float(conf.get("DATABASE_STATEMENT_TIMEOUT") or 0)
        statements.debug("%s", sql)
        with self.connection() as conn:
            return self.execute(conn, sql, params, timeout)

    def _timed_out(self, timeout: float) -> DatabaseError:
        return DatabaseError(
            f"the query ran longer than {timeout:g}s (PERSPECTIVE['DATABASE_STATEMENT_TIMEOUT']) and was stopped"
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._made = self._pool, None, 0
        while pool is not None and not pool.empty():
            conn = pool.get_nowait()
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


class DuckDBBackend(Backend):
    """A DuckDB database file (opened read-only) or an in-memory DuckDB over files."""

    def __init__(self, path: str = ":memory:") -> None:
        super().__init__()
        self.path = str(path)
        self._db: Any = None

    def connect(self) -> Any:
        import duckdb

        with self._lock:
            if self._db is None:
                read_only = self.path != ":memory:"
                limit = conf.get("DATABASE_DUCKDB_MEMORY_LIMIT")
                self._db = duckdb.connect(self.path, read_only=read_only, config={"memory_limit": limit} if limit else {})
                if not read_only:
                    # Only files named by declarations are read: no new extensions, no writes
                    # outside temp, and the configuration cannot be changed back.
                    self._db.execute("SET enable_external_access = true")
                    self._db.execute("SET lock_configuration = true")
            return self._db.cursor()

    def placeholder(self, name: str, kind: str) -> str:
        return f"${name}"

    def execute(self, conn: Any, sql: str, params: dict[str, Any], timeout: float) -> Any:
        timer = threading.Timer(timeout, conn.interrupt) if timeout else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            relation = conn.sql(sql, params=params or None)  # None for a statement without rows
            return relation.to_arrow_table() if relation is not None else None
        except Exception as exc:
            if type(exc).__name__ == "InterruptException":
                raise self._timed_out(timeout) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def columns(self, result: Any) -> list[tuple[str, str]]:
        from perspective.virtual_servers.duckdb import duckdb_type_to_psp

        return [(f.name, duckdb_type_to_psp(_duckdb_type(f.type))) for f in result.schema]

    def rows(self, result: Any) -> list[tuple[Any, ...]]:
        columns = [column.to_pylist() for column in result.columns]
        return list(zip(*columns, strict=True))

    def fill(self, result: Any, data: Any, config: dict[str, Any]) -> None:
        from pyarrow import ipc

        buf = io.BytesIO()
        with ipc.new_stream(buf, result.schema) as writer:
            writer.write_table(result)
        data.from_arrow_ipc(buf.getvalue())

    def close(self) -> None:
        super().close()
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()


def _duckdb_type(arrow_type: Any) -> str:
    """The DuckDB type name upstream's mapping expects, from the Arrow type DuckDB returned."""
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_int8(arrow_type) or pa.types.is_int16(arrow_type) or pa.types.is_int32(arrow_type):
        return "INTEGER"
    if pa.types.is_uint8(arrow_type) or pa.types.is_uint16(arrow_type):
        return "INTEGER"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "DOUBLE"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_time(arrow_type):
        return "TIMESTAMP"
    return "VARCHAR"


# How a bound scope value is read back, by the column's Perspective type.
_PG_CASTS = {"integer": "bigint", "float": "double precision", "string": "text", "boolean": "boolean", "date": "date", "datetime": "timestamptz"}


class PostgresBackend(Backend):
    """A PostgreSQL database of ``settings.DATABASES``, read in read-only transactions.

    Every statement runs in its own ``READ ONLY`` transaction on a pooled connection, with
    ``SET LOCAL statement_timeout`` and the session's scope values bound as transaction
    settings (``set_config``, read back with ``current_setting``): nothing is created in
    the database and no client string is ever a parameter of its SQL. Works on
    PostgreSQL 12 and newer (the tests run 15): the SQL never needs ``any_value``.
    """

    keeps_views = False
    pivots = False
    builder_config = {"grouping_fn": "GROUPING", "row_id_expr": "(SELECT NULL)"}
    table_builder_config = {"grouping_fn": "GROUPING", "row_id_expr": '"__psp_row"'}
    row_id = "ctid"

    def __init__(self, alias: str) -> None:
        super().__init__()
        self.alias = alias

    def _conninfo(self) -> dict[str, Any]:
        from django.conf import settings

        db = settings.DATABASES.get(self.alias)
        if db is None or "postgresql" not in db.get("ENGINE", ""):
            raise DatabaseError(f"DATABASES[{self.alias!r}] is not a PostgreSQL database")
        info = {"dbname": db.get("NAME"), "user": db.get("USER"), "password": db.get("PASSWORD"), "host": db.get("HOST"), "port": db.get("PORT")}
        info = {key: value for key, value in info.items() if value}
        options = {key: value for key, value in db.get("OPTIONS", {}).items() if key not in ("pool", "server_side_binding", "isolation_level", "assume_role")}
        return {**info, **options}

    def connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(**self._conninfo(), autocommit=True, application_name="django-perspective")
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        return conn

    def placeholder(self, name: str, kind: str) -> str:
        return f"current_setting('psp.{name}')::{_PG_CASTS.get(kind, 'text')}"

    def literal(self, value: Any) -> str:
        from psycopg import sql

        return sql.Literal(value).as_string(None)

    def execute(self, conn: Any, sql: str, params: dict[str, Any], timeout: float) -> Any:
        import psycopg

        try:
            with conn.transaction():
                if timeout:
                    conn.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
                for key, value in params.items():
                    conn.execute("SELECT set_config(%s, %s, true)", (f"psp.{key}", _setting_text(value)))
                cursor = conn.execute(sql)  # no parameters: the SQL is sent as it is, % included
                description = [(d.name, d.type_code) for d in cursor.description or ()]
                return description, cursor.fetchall()
        except psycopg.errors.QueryCanceled:
            raise self._timed_out(timeout) from None
        except psycopg.Error as exc:
            raise DatabaseError(f"the database refused the query: {str(exc).splitlines()[0]}") from None

    def columns(self, result: Any) -> list[tuple[str, str]]:
        from perspective.virtual_servers.postgres import pg_oid_to_psp

        return [(name, pg_oid_to_psp(oid, name)) for name, oid in result[0]]

    def rows(self, result: Any) -> list[tuple[Any, ...]]:
        return result[1]

    def fill(self, result: Any, data: Any, config: dict[str, Any]) -> None:
        import pyarrow as pa
        from pyarrow import ipc

        arrays, names = [], []
        for index, (name, kind) in enumerate(self.columns(result)):
            names.append(name)
            arrays.append(pa.array([_arrow_value(row[index], kind) for row in result[1]], type=_arrow_type(kind)))
        table = pa.Table.from_arrays(arrays, names=names)
        buf = io.BytesIO()
        with ipc.new_stream(buf, table.schema) as writer:
            writer.write_table(table)
        data.from_arrow_ipc(buf.getvalue())


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    if kind == "datetime":
        return pa.timestamp("ms", tz="UTC")
    return {"integer": pa.int32, "float": pa.float64, "boolean": pa.bool_, "date": pa.date32}.get(kind, pa.string)()


def _arrow_value(value: Any, kind: str) -> Any:
    """A psycopg value as the Arrow column of its Perspective type takes it."""
    import datetime as dt
    import decimal

    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    if kind == "float" and isinstance(value, decimal.Decimal):
        return float(value)
    if kind == "datetime":
        if isinstance(value, dt.time):
            value = dt.datetime.combine(dt.date(1970, 1, 1), value)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
    return value


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


@dataclass
class DatabaseTable:
    """A declared relation of one backend: what viewers of ``name`` may query."""

    name: str
    backend: Backend
    relation: str | Callable[[], str]  # SQL of the relation: a quoted identifier, a (SELECT ...), read_parquet(...)
    access: access.Policy = None
    scope: Scope | None = None
    expressions: ExpressionPolicy = False
    in_code: bool = True  # declared by database_table(); False: a registry row's
    _columns: dict[str, str] | None = field(default=None, repr=False)

    def sql(self) -> str:
        """The relation's SQL; a queryset's is composed on first use (it needs a connection)."""
        if callable(self.relation):
            self.relation = self.relation()
        return self.relation

    def columns(self) -> dict[str, str]:
        """Column name -> Perspective type, read once from the database (no rows)."""
        if self._columns is None:
            result = self.backend.run(f"SELECT * FROM {self.sql()} AS __psp_rel LIMIT 0", {})
            found = dict(self.backend.columns(result))
            for name in found:
                if '"' in name or name.startswith("__") or not name:
                    raise DatabaseError(f"table {self.name!r}: column {name!r} cannot be served (quotes or a leading __)")
            self._columns = found
        return self._columns

    def source(self, user: Any) -> tuple[str, dict[str, Any]]:
        """The relation as this user may see it: SQL with placeholders, and their values."""
        if self.scope is None:
            return f"SELECT * FROM {self.sql()} AS __psp_rel", {}
        rows = self.scope(user)
        if not rows:  # None or {}: a scope that names nothing shows nothing
            return f"SELECT * FROM {self.sql()} AS __psp_rel WHERE FALSE", {}
        columns = self.columns()
        terms, params = [], {}
        for i, (column, value) in enumerate(sorted(rows.items())):
            if column not in columns:
                raise DatabaseError(f"table {self.name!r}: its scope names no column {column!r}")
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            if not values:
                terms.append("FALSE")
            slots = []
            for j, item in enumerate(values):
                key = f"psp_scope_{i}_{j}"
                params[key] = item
                slots.append(self.backend.placeholder(key, columns[column]))
            if values:
                terms.append(f'"{column}" IN ({", ".join(slots)})')
        return f"SELECT * FROM {self.sql()} AS __psp_rel WHERE {' AND '.join(terms)}", params


_declared: dict[str, DatabaseTable] = {}
_backends: dict[str, Backend] = {}


def _shared(key: str, make: Callable[[], Backend]) -> Any:
    backend = _backends.get(key)
    if backend is None:
        backend = _backends[key] = make()
    return backend


def duckdb_backend(path: str = ":memory:") -> DuckDBBackend:
    """The process's backend for one DuckDB file (shared by the tables declared on it)."""
    return _shared(f"duckdb:{path}", lambda: DuckDBBackend(path))


def postgres_backend(alias: str = "default") -> PostgresBackend:
    """The process's backend for one PostgreSQL alias of ``DATABASES`` (a read replica is one too)."""
    return _shared(f"postgres:{alias}", lambda: PostgresBackend(alias))


def _queryset_sql(queryset: Any, backend: Backend) -> Callable[[], str]:
    """The queryset's SELECT with its parameters quoted by psycopg, composed when first needed."""

    def compose() -> str:
        import psycopg

        sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
        with backend.connection() as conn:
            return f"({psycopg.ClientCursor(conn).mogrify(sql, params)})"

    return compose


def _relation(
    *,
    duckdb: str | None = None,
    parquet: str | list[str] | None = None,
    csv: str | list[str] | None = None,
    table: str | None = None,
    query: str | None = None,
    backend: Backend | None = None,
    model: Any = None,
    queryset: Any = None,
) -> tuple[Backend, str | Callable[[], str]]:
    """The backend and relation SQL of one declaration (see ``database_table``)."""
    if model is not None or queryset is not None:
        from django.db import router

        if queryset is None:
            return backend or postgres_backend(router.db_for_read(model)), quote(model._meta.db_table)
        chosen = backend or postgres_backend(queryset.db)
        return chosen, _queryset_sql(queryset, chosen)
    if parquet is not None or csv is not None:
        files = parquet if parquet is not None else csv
        paths = [files] if isinstance(files, str) else list(files)
        reader = "read_parquet" if parquet is not None else "read_csv_auto"
        listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
        return duckdb_backend(), f"{reader}([{listed}])"
    chosen = backend if backend is not None else duckdb_backend(duckdb) if duckdb else None
    if chosen is None or (table is None) == (query is None):
        raise ValueError("database_table needs duckdb= or backend= with one of table= or query=, or parquet=/csv=")
    return chosen, quote(table) if table is not None else f"({query})"


def database_table(
    name: str,
    *,
    duckdb: str | None = None,
    parquet: str | list[str] | None = None,
    csv: str | list[str] | None = None,
    table: str | None = None,
    query: str | None = None,
    backend: Backend | None = None,
    model: Any = None,
    queryset: Any = None,
    access: access.Policy = None,
    scope: Scope | None = None,
) -> DatabaseTable:
    """Declare a table that stays in its database.

    One source: ``duckdb=`` a DuckDB file with ``table=`` or ``query=``; ``parquet=`` or
    ``csv=`` files read by an in-memory DuckDB; ``backend=`` (``postgres_backend(alias)``)
    with ``table=`` or ``query=``; or a Django ``model=`` or ``queryset=`` on a PostgreSQL
    alias (the one the router reads it from). ``query`` and querysets are trusted SQL from
    the project, never from a client. ``scope(user)`` returns a ``{column: value or values}``
    rows filter (None: no rows), bound inside the database.
    """
    from . import access as access_module

    access_module.validate(access)
    chosen, relation = _relation(
        duckdb=duckdb, parquet=parquet, csv=csv, table=table, query=query, backend=backend, model=model, queryset=queryset
    )
    declared = DatabaseTable(name, chosen, relation, access=access, scope=scope)
    _declared[name] = declared
    access_module.declare_code_table(name, access, expressions=False)
    return declared


def registry_table(name: str, *, queryset: Any = None, query: str | None = None, alias: str = "default") -> DatabaseTable:
    """A database table for a registry row, not yet reachable (``register``); the row decides access."""
    chosen, relation = _relation(queryset=queryset, query=query, backend=None if queryset is not None else postgres_backend(alias))
    return DatabaseTable(name, chosen, relation, in_code=False)


def register(table: DatabaseTable) -> None:
    """Make a registry row's table reachable in this process (``publishing.host``)."""
    if declared_in_code(table.name):
        raise ValueError(f"{table.name!r} is a database table declared in code")
    _declared[table.name] = table


def declared_in_code(name: str) -> bool:
    table = _declared.get(name)
    return table is not None and table.in_code


def withdraw(name: str) -> None:
    table = _declared.pop(name, None)
    if table is not None and table.in_code:
        access.withdraw_code_table(name)


def withdraw_registered(name: str) -> None:
    """Stop serving a registry row's table (unpublished, deleted, renamed or another source)."""
    table = _declared.get(name)
    if table is not None and not table.in_code:
        del _declared[name]


def get(name: str) -> DatabaseTable | None:
    return _declared.get(name)


def is_database_table(name: str | None) -> bool:
    return bool(name) and name in _declared


def names() -> list[str]:
    return sorted(_declared)


class SessionHandler:
    """Perspective's ``VirtualServerHandler`` for one connection: declared tables only.

    Method names and arguments are the interface ``perspective.VirtualServer`` calls. On a
    backend that keeps views (DuckDB) each session has its own cursor, so its temporary
    objects are its own: per table a temporary view of the scoped relation (the scope's
    values bound as variables, never written into SQL), per view a temporary view (flat)
    or temporary table (grouped or split: computed once, about the size of its cells).
    Otherwise (PostgreSQL) a table is its scoped SELECT and a view its SQL, run as a
    subquery with the scope's values bound to each statement.
    """

    def __init__(self, user: Any) -> None:
        self.user = user
        self._cursors: dict[int, Any] = {}
        self._builders: dict[int, Any] = {}
        self._sources: dict[str, str] = {}
        self._params: dict[str, dict[str, Any]] = {}
        self._views: dict[str, tuple[str, DatabaseTable, dict[str, Any]]] = {}
        self._dims: dict[str, Dimensions] = {}
        self._count = 0

    def close(self) -> None:
        cursors, self._cursors = self._cursors, {}
        for cursor in cursors.values():
            with contextlib.suppress(Exception):
                cursor.close()

    def _table(self, name: str) -> DatabaseTable:
        table = _declared.get(name)
        if table is None:
            raise DatabaseError(f"Unknown table {name!r}")
        return table

    def _builder(self, table: DatabaseTable) -> Any:
        """Perspective's SQL builder in the table's dialect (emits only what the guard let by)."""
        config = table.backend.table_builder_config if _row_ids(table) else None
        config = config or table.backend.builder_config
        builder = self._builders.get(id(config))
        if builder is None:
            import perspective

            builder = self._builders[id(config)] = perspective.GenericSQLVirtualServerModel(dict(config))
        return builder

    def _run(self, table: DatabaseTable, sql: str, params: dict[str, Any] | None = None) -> Any:
        backend = table.backend
        timeout = float(conf.get("DATABASE_STATEMENT_TIMEOUT") or 0)
        statements.debug("%s", sql)
        if not backend.keeps_views:
            with backend.connection() as conn:
                return backend.execute(conn, sql, self._params.get(table.name, {}), timeout)
        cursor = self._cursors.get(id(backend))
        if cursor is None:
            cursor = self._cursors[id(backend)] = backend.connect()
        return backend.execute(cursor, sql, params or {}, timeout)

    def _source(self, table: DatabaseTable) -> str:
        """The relation of ``table`` as this session's user may see it."""
        found = self._sources.get(table.name)
        if found is not None:
            return found
        select, params = table.source(self.user)
        if _row_ids(table):
            select = select.replace("SELECT * FROM", f'SELECT *, __psp_rel.{table.backend.row_id} AS "__psp_row" FROM', 1)
        if not table.backend.keeps_views:
            self._params[table.name] = params
            found = f'({select}) AS "__psp_src"'
        else:
            name = f"psp_src_{len(self._sources) + 1}"
            for key, value in params.items():
                self._run(table, f"SET VARIABLE {key} = $value", {"value": value})
            for key in params:
                select = select.replace(f"${key}", f"getvariable('{key}')")
            self._run(table, f'CREATE OR REPLACE TEMP VIEW "{name}" AS {select}')
            found = f'"{name}"'
        self._sources[table.name] = found
        return found

    def _view(self, view_name: str) -> tuple[str, DatabaseTable, dict[str, Any]]:
        found = self._views.get(view_name)
        if found is None:
            raise DatabaseError(f"View not found: {view_name!r}")
        return found

    def get_features(self) -> dict[str, Any]:
        return features()

    def get_hosted_tables(self) -> list[str]:
        return names()

    def table_schema(self, table_name: str, config: Any = None) -> dict[str, str]:
        return dict(self._table(table_name).columns())

    def table_size(self, table_name: str) -> int:
        table = self._table(table_name)
        result = self._run(table, f"SELECT COUNT(*) FROM {self._source(table)}")
        return int(table.backend.rows(result)[0][0])

    def table_make_view(self, table_name: str, view_name: str, config: dict[str, Any]) -> None:
        table = self._table(table_name)
        if not VIEW_ID.fullmatch(view_name) or view_name in self._views:
            raise DatabaseError(f"view id {view_name!r} is refused")
        self._count += 1
        internal = f"psp_view_{self._count}"
        config = _with_default_aggregates(config, table.columns())
        if config.get("split_by") and not table.backend.pivots:
            config = self._split_columns(table, config)
        created = self._builder(table).table_make_view(self._source(table), internal, config, None)
        select = _select_of(created, internal)
        if table.backend.keeps_views:
            grouped = bool(config.get("group_by") or config.get("split_by"))
            self._run(table, f'CREATE TEMP {"TABLE" if grouped else "VIEW"} "{internal}" AS ({select})')
            relation = f'"{internal}"'
        else:
            relation = f'({select}) AS "{internal}"'
        self._views[view_name] = (relation, table, config)
        try:
            self._dimensions(view_name)
        except Exception:
            self.view_delete(view_name)
            raise

    def _split_columns(self, table: DatabaseTable, config: dict[str, Any]) -> dict[str, Any]:
        """``split_by`` without ``PIVOT``: one filtered column per split value and column.

        The split values are read from the database first (under the view's filters); each
        becomes a literal of the database's own quoting in a ``CASE`` the aggregate runs
        over, named ``value|column`` as Perspective names split columns.
        """
        split = list(config["split_by"])
        probe = {"columns": split, "filter": config.get("filter", []), "filter_op": config.get("filter_op", "and")}
        flat = _select_of(self._builder(table).table_make_view(self._source(table), "psp_split", probe, None), "psp_split")
        keys = ", ".join(f'"{column}"' for column in split)
        result = self._run(table, f"SELECT DISTINCT {keys} FROM ({flat}) AS __psp_split ORDER BY {keys} LIMIT {MAX_SPLIT_COLUMNS + 1}")
        values = table.backend.rows(result)
        columns = [c for c in config.get("columns", []) if c is not None]
        if len(values) * max(len(columns), 1) > MAX_SPLIT_COLUMNS:
            raise DatabaseError(
                f"split_by {split} makes more than {MAX_SPLIT_COLUMNS} columns on a database table: filter first"
            )
        expressions: dict[str, str] = {}
        aggregates = dict(config.get("aggregates", {}))
        names: list[str] = []
        for value in values:
            test = " AND ".join(
                f'"{column}" IS NOT DISTINCT FROM {table.backend.literal(item)}' for column, item in zip(split, value, strict=True)
            )
            prefix = "|".join("null" if item is None else _split_text(item) for item in value)
            for column in columns:
                name = f"{prefix}|{column}"
                expressions[name] = f'CASE WHEN {test} THEN "{column}" END'
                aggregates[name] = aggregates[column]
                names.append(name)
        return {**config, "split_by": [], "columns": names, "expressions": expressions, "aggregates": aggregates}

    def table_describe(self, table_name: str, config: dict[str, Any]) -> dict[str, Any]:
        table = self._table(table_name)
        query = self._builder(table).table_describe(self._source(table), _with_default_aggregates(config, table.columns()), None)
        if query is None:
            return {"expression_schema": {}, "view_schema": {}}
        select = query[len("DESCRIBE ") :] if query.startswith("DESCRIBE ") else query
        result = self._run(table, f"SELECT * FROM ({select}) AS __psp_describe LIMIT 0")
        return {"expression_schema": {}, "view_schema": {n: t for n, t in table.backend.columns(result) if not n.startswith("__")}}

    def view_schema(self, view_name: str, config: Any = None) -> dict[str, str]:
        return {n: t for n, t in self._view_columns(view_name) if not n.startswith("__")}

    def _view_columns(self, view_name: str) -> list[tuple[str, str]]:
        relation, table, _config = self._view(view_name)
        return table.backend.columns(self._run(table, f"SELECT * FROM {relation} LIMIT 0"))

    def view_size(self, view_name: str) -> int:
        relation, table, _config = self._view(view_name)
        return int(table.backend.rows(self._run(table, f"SELECT COUNT(*) FROM {relation}"))[0][0])

    def view_column_size(self, view_name: str, config: dict[str, Any]) -> int:
        return sum(1 for name, _type in self._view_columns(view_name) if not name.startswith("__"))

    def view_delete(self, view_name: str) -> None:
        found = self._views.pop(view_name, None)
        self._dims.pop(view_name, None)
        if found is not None and found[1].backend.keeps_views:
            relation, table, config = found
            kind = "TABLE" if config.get("group_by") or config.get("split_by") else "VIEW"
            self._run(table, f"DROP {kind} IF EXISTS {relation}")

    def view_get_min_max(self, view_name: str, column_name: str, config: dict[str, Any]) -> tuple[Any, Any]:
        relation, table, stored = self._view(view_name)
        if column_name not in self.view_schema(view_name):
            raise DatabaseError(f"no column {column_name!r} in this view")
        query = self._builder(table).view_get_min_max(relation, column_name, stored)
        row = table.backend.rows(self._run(table, query))[0]
        return (row[0], row[1])

    def view_get_data(self, view_name: str, config: dict[str, Any], schema: Any, viewport: dict[str, Any], data: Any) -> None:
        relation, table, stored = self._view(view_name)
        limit = conf.get("DATABASE_MAX_ROWS")
        start = viewport.get("start_row") or 0
        end = viewport.get("end_row")
        if end is None:
            end = self._dimensions(view_name).rows
        if limit and end - start > limit:
            raise DatabaseError(
                f"this read asks for {end - start} rows: at most {limit} per read from a database table "
                "(PERSPECTIVE['DATABASE_MAX_ROWS']); ask for a smaller viewport"
            )
        query = self._builder(table).view_get_data(relation, stored, viewport, schema)
        table.backend.fill(self._run(table, query), data, stored)

    def _dimensions(self, view_name: str) -> Dimensions:
        known = self._dims.get(view_name)
        if known is None:
            _relation, table, config = self._view(view_name)
            known = Dimensions(
                self.table_size(table.name), len(table.columns()), self.view_size(view_name), self.view_column_size(view_name, config)
            )
            self._dims[view_name] = known
        return known

    def dimensions(self, view_name: str) -> Dimensions | None:
        """The view's size for the guard's ``bind`` (cached: database views are snapshots)."""
        if view_name not in self._views:
            return None
        return self._dimensions(view_name)


def _row_ids(table: DatabaseTable) -> bool:
    """A plain table (not a query or files): its row ids keep unsorted flat views in order."""
    return table.backend.table_builder_config is not None and isinstance(table.relation, str) and table.relation.startswith('"')


MAX_SPLIT_COLUMNS = 2000  # columns a split view of a database table may have (without PIVOT)


def _with_default_aggregates(config: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """Name every grouped column's aggregate: Perspective's defaults (sum of numbers, else count).

    The builder's own fallback is ``any_value``, which the in-memory engine never uses and
    PostgreSQL before 16 lacks.
    """
    if not (config.get("group_by") or config.get("split_by")):
        return config
    aggregates = dict(config.get("aggregates", {}))
    for column in [*config.get("columns", []), *(term[0] for term in config.get("sort", []))]:
        if column is not None and column not in aggregates:
            aggregates[column] = "sum" if columns.get(column) in ("integer", "float") else "count"
    return {**config, "aggregates": aggregates}


def _split_text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _select_of(created: str, internal: str) -> str:
    """The SELECT inside the builder's ``CREATE TABLE <internal> AS (...)``: nothing is created."""
    for prefix in (f"CREATE TABLE {internal} AS (", f"CREATE TEMPORARY VIEW {internal} AS ("):
        if created.startswith(prefix) and created.endswith(")"):
            return created[len(prefix) : -1]
    raise DatabaseError("the view could not be planned")


class Link:
    """One connection's database session: what the consumer treats as its engine.

    Calls run one at a time, in order, on the database threads (``submit``/``submit_read``
    are what ``engine.Lane`` uses); the catalog answers the guard from this session's own
    handler, so sizes and schemas are the scoped ones.
    """

    ready = True

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._busy = False
        self._lock = threading.Lock()
        self.views: dict[str, Any] = {}
        # The consumer registers here as it does on the engine; a database table is never
        # deleted from memory, so nothing calls these (re-validation still cuts revoked views).
        self.before_delete: set[Callable[[str], None]] = set()
        self.handler: SessionHandler | None = None
        self.catalog = _LinkCatalog(self)

    @staticmethod
    def _route(task: scheduler.Task) -> scheduler.Worker:
        """``engine.Lane`` asks where a call runs: on the least busy database worker.

        A lane has one call in flight at a time, so a connection's calls stay in order.
        """
        return min(workers(), key=lambda worker: worker.backlog())

    def new_session(self, callback: Callable[[bytes], None], user: Any = None) -> Any:
        import perspective

        self.handler = SessionHandler(user)
        return _Session(perspective.VirtualServer(self.handler), callback)

    def close_session(self, session: Any) -> None:
        session.close()
        if self.handler is not None:
            self.handler.close()

    def table_names(self) -> list[str]:
        return names()

    async def arun(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a database thread, as ``Engine.arun`` runs it on the engine's."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def columns(self, name: str) -> dict[str, str] | None:
        table = _declared.get(name)
        if table is None:
            return None
        if table._columns is not None:
            return table._columns
        import asyncio

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, table.columns)


class _LinkCatalog:
    """The guard's view of a database session: advertised features, this session's views."""

    def __init__(self, link: Link) -> None:
        self._link = link

    def features(self) -> Features:
        return guard_features()

    def dimensions(self, view_id: str) -> Dimensions | None:
        handler = self._link.handler
        return None if handler is None else handler.dimensions(view_id)

    def forget_view(self, view_id: str) -> None:
        pass

    def forget(self, table: str) -> None:
        pass


class _Session:
    def __init__(self, server: Any, callback: Callable[[bytes], None]) -> None:
        self._server = server
        self._callback = callback

    def handle_request(self, frame: bytes, decoded: tuple[int, str] | None = None) -> None:
        self._callback(self._server.handle_request(frame))

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_workers: list[scheduler.Worker] = []


def workers() -> list[scheduler.Worker]:
    """The daemon threads database sessions' calls run on, one per pooled connection."""
    with _executor_lock:
        if not _workers:
            count = max(1, conf.get("DATABASE_POOL_SIZE"))
            _workers.extend(scheduler.Worker(f"perspective-db-{n}") for n in range(count))
        return _workers


def executor() -> ThreadPoolExecutor:
    """The threads database statements run on: as many as the pool has connections."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max(1, conf.get("DATABASE_POOL_SIZE")), thread_name_prefix="perspective-db")
        return _executor
