"""The ``events`` rows the database-table tests and benchmarks query, in DuckDB and PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from .services import PG


def make_events(path: Path, rows: int) -> None:
    """An ``events`` table of ``rows`` rows and a ``canary`` table, built inside DuckDB."""
    with duckdb.connect(str(path)) as db:
        db.execute(
            f"""
            CREATE TABLE events AS SELECT
                range AS id,
                ['alice', 'bob', 'carol'][range % 3 + 1] AS owner,
                'r' || (range % 5) AS region,
                'c' || (range % 7) AS category,
                (range % 1000) * 0.25 AS amount,
                CAST(range % 10 AS INTEGER) AS qty,
                DATE '2024-01-01' + CAST(range % 365 AS INTEGER) AS day
            FROM range({rows})
            """
        )
        db.execute("CREATE TABLE canary AS SELECT 42 AS alive")


def make_pg_events(conninfo: dict[str, str], rows: int) -> None:
    """The same ``events`` rows and ``canary`` table in PostgreSQL, built by the server."""
    with psycopg.connect(**conninfo, autocommit=True) as db:
        db.execute(
            f"""
            CREATE TABLE events AS SELECT
                g AS id,
                (ARRAY['alice', 'bob', 'carol'])[g % 3 + 1] AS owner,
                'r' || (g % 5) AS region,
                'c' || (g % 7) AS category,
                ((g % 1000) * 0.25)::double precision AS amount,
                (g % 10)::integer AS qty,
                DATE '2024-01-01' + (g % 365)::integer AS day
            FROM generate_series(0::bigint, {int(rows) - 1}) g
            """
        )
        db.execute("CREATE TABLE canary AS SELECT 42 AS alive")
        db.execute("ANALYZE events")


@contextlib.contextmanager
def pg_events(rows: int) -> Iterator[dict[str, str]]:
    """A database of its own on the machine's PostgreSQL holding ``events``; dropped afterwards."""
    name = f"dp_tables_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    conninfo = {**PG, "dbname": name}
    try:
        make_pg_events(conninfo, rows)
        yield conninfo
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def duck_fixture(rows: int) -> Any:
    """A module fixture: a DuckDB file of ``rows`` events."""

    @pytest.fixture(scope="module")
    def duck(tmp_path_factory: pytest.TempPathFactory) -> Path:
        path = tmp_path_factory.mktemp("duck") / "events.duckdb"
        make_events(path, rows)
        return path

    return duck


def pg_fixture(rows: int) -> Any:
    """A module fixture: a PostgreSQL database of its own with ``rows`` events."""

    @pytest.fixture(scope="module")
    def pg() -> Iterator[dict[str, str]]:
        with pg_events(rows) as conninfo:
            yield conninfo

    return pg
