"""Database tables for the database tests; declared only when their variables are set."""

from __future__ import annotations

import os
from typing import Any

from django_perspective.databases import database_table, postgres_backend


def own_rows(user: Any) -> dict[str, Any] | None:
    """Each user sees the rows whose ``owner`` is their username; anonymous users none."""
    if user is None or not user.is_authenticated:
        return None
    return {"owner": user.username}


DUCKDB = os.environ.get("DB_DUCKDB_PATH")

if DUCKDB:
    database_table("events", duckdb=DUCKDB, table="events", access="authenticated")
    database_table("my_events", duckdb=DUCKDB, table="events", access="authenticated", scope=own_rows)
    database_table("staff_events", duckdb=DUCKDB, table="events", access="staff")
    # Every count of this one multiplies the table by 100,000 rows: it exceeds any timeout.
    database_table("slow", duckdb=DUCKDB, query="SELECT e.*, r.range AS r FROM events e, range(100000) r", access="authenticated")

if os.environ.get("DB_PG_NAME"):
    warehouse = postgres_backend("warehouse")
    database_table("pg_events", backend=warehouse, table="events", access="authenticated")
    database_table("pg_my_events", backend=warehouse, table="events", access="authenticated", scope=own_rows)
    database_table("pg_staff_events", backend=warehouse, table="events", access="staff")
    database_table("pg_slow", backend=warehouse, query="SELECT e.*, r AS r FROM events e, generate_series(1, 100000) r", access="authenticated")

if DUCKDB and os.environ.get("DB_ALSO_IN_MEMORY"):
    from django_perspective.tables import perspective_table

    @perspective_table("events_memory", access="authenticated")
    def events_memory() -> bytes:
        """The same ``events`` rows hosted in the in-memory engine, for the benchmark."""
        import duckdb

        with duckdb.connect(DUCKDB, read_only=True) as db:
            arrow = db.execute("SELECT * FROM events").to_arrow_table()
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, arrow.schema) as writer:
            writer.write_table(arrow)
        return sink.getvalue().to_pybytes()
