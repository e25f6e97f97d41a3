"""Database tables vs the in-memory engine: server RSS, grouped-view build, viewport reads.

    flock /tmp/fullsuite.lock .venv/bin/python -m benchmarks.databases --rows 10000000

Daphne processes over the same rows: one serves a DuckDB file as a database table (nothing
is copied), one the same rows in the machine's PostgreSQL (``--pg``), one hosts them in the
in-memory engine. Reported: each process's RSS before and after the table is opened and a
grouped view built, the grouped view's build time and the median of 20 viewport reads
(100 rows) of a flat sorted view. Written to ``benchmarks/results/databases.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.servers import DaphneProcess, connect, make_user, migrate, rss_kib
from tests.databases_data import make_events, pg_events

SETTINGS = "benchmarks.databases_settings"
GROUPED = dict(columns=["amount", "qty"], group_by=["region", "category"], aggregates={"amount": "sum", "qty": "sum"})


async def measure(server: DaphneProcess, url: str, table_name: str, cookie: dict[str, str]) -> dict[str, float]:
    before = rss_kib(server.proc.pid)
    async with connect(url, headers=cookie) as conn:
        # The first open hosts an in-memory table: charged to that connection's engine-time
        # budget, so the measuring goes on over a fresh connection.
        start = time.perf_counter()
        await conn.client.open_table(table_name)
        opened = time.perf_counter() - start
    async with connect(url, headers=cookie) as conn:
        table = await conn.client.open_table(table_name)
        rows = await table.size()
        start = time.perf_counter()
        view = await table.view(**GROUPED)
        await view.to_columns()
        grouped = time.perf_counter() - start
        flat = await table.view(columns=["id", "amount"], sort=[["amount", "desc"]])
        reads = []
        for i in range(20):
            start = time.perf_counter()
            await flat.to_columns(start_row=i * 1000, end_row=i * 1000 + 100)
            reads.append(time.perf_counter() - start)
        return {
            "rows": rows,
            "rss_before_mib": before / 1024,
            "rss_after_mib": rss_kib(server.proc.pid) / 1024,
            "open_s": round(opened, 3),
            "grouped_view_s": round(grouped, 3),
            "viewport_read_median_ms": round(statistics.median(reads) * 1000, 2),
        }


async def main(rows: int, in_memory: bool, pg_rows: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-db-"))
    duck = work / "events.duckdb"
    make_events(duck, rows)
    env = {"DJANGO_SQLITE_PATH": str(work / "db.sqlite3"), "DB_DUCKDB_PATH": str(duck)}
    migrate(env, settings=SETTINGS)
    cookie = {"Cookie": f"sessionid={make_user(env, 'bench', settings=SETTINGS)}"}
    results = {}
    with DaphneProcess(work / "database.log", env=env, settings=SETTINGS) as server:
        results["duckdb"] = await measure(server, server.ws_url + "db/", "events", cookie)
    if pg_rows:
        with pg_events(pg_rows) as pg, DaphneProcess(work / "pg.log", env={**env, "DB_PG_NAME": pg["dbname"]}, settings=SETTINGS) as server:
            results["postgres"] = await measure(server, server.ws_url + "db/", "pg_events", cookie)
    if in_memory:
        with DaphneProcess(work / "memory.log", env={**env, "DB_ALSO_IN_MEMORY": "1"}, settings=SETTINGS) as server:
            results["in_memory"] = await measure(server, server.ws_url, "events_memory", cookie)
    print(json.dumps(results, indent=2))
    (Path(__file__).resolve().parent / "results" / "databases.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-in-memory", action="store_true", help="only the database table (large row counts)")
    parser.add_argument("--pg", type=int, default=0, metavar="ROWS", help="also a PostgreSQL table of ROWS rows")
    args = parser.parse_args()
    asyncio.run(main(args.rows, not args.no_in_memory, args.pg))
