"""Database tables in headless Chromium: the same viewer tag as for in-memory tables, over
``ws/perspective/db/``, pivoted, filtered, sorted and scrolled, equal to SQL run directly on
DuckDB and on PostgreSQL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from playwright.sync_api import Browser, Page

from .browsing import LOAD_TIMEOUT_MS, Console, browser, loaded, new_context  # noqa: F401  (browser is a fixture)
from .databases_data import duck_fixture, pg_fixture
from .servers import DaphneProcess, make_user, migrate

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SETTINGS = "tests.settings_browser_databases"
ROWS = int(os.environ.get("DB_TEST_ROWS", "1000000"))  # the DuckDB table; 10,000,000 by hand
PG_ROWS = int(os.environ.get("PG_TEST_ROWS", "1000000"))
PIVOT = {
    "columns": ["amount"],
    "group_by": ["region"],
    "split_by": ["category"],
    "filter": [["qty", ">", 3]],
    "sort": [["amount", "desc"]],
    "aggregates": {"amount": "sum"},
}


duck = duck_fixture(ROWS)
pg = pg_fixture(PG_ROWS)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, duck: Path, pg: dict[str, str]) -> dict[str, str]:
    path = tmp_path_factory.mktemp("browser-db-registry") / "db.sqlite3"
    env = {"DJANGO_SQLITE_PATH": str(path), "DB_DUCKDB_PATH": str(duck), "DB_PG_NAME": pg["dbname"]}
    migrate(env, settings=SETTINGS)
    return env


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    proc = DaphneProcess(tmp_path_factory.mktemp("browser-db-logs") / "daphne.log", env=env, settings=SETTINGS).start()
    yield proc
    proc.stop()


def direct(kind: str, duck: Path, pg: dict[str, str], sql: str) -> list[tuple]:
    if kind == "duckdb":
        with duckdb.connect(str(duck), read_only=True) as db:
            return db.execute(sql).fetchall()
    with psycopg.connect(**pg) as db:
        return db.execute(sql).fetchall()


def grid_rows(page: Page) -> list[str]:
    return [row.strip() for row in page.locator("#v regular-table tbody tr").all_inner_texts()]


def _first_id(page: Page) -> int:
    rows = grid_rows(page)
    return _id(rows[0]) if rows else -1


def _id(row: str) -> int:
    return int(float(row.split()[0].replace(",", "")))


def wait_until(check: Callable[[], Any], page: Page, seconds: float = 60) -> Any:
    """``check()``'s first truthy value, polled while the page works; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        page.wait_for_timeout(100)
    raise AssertionError(f"not true within {seconds} s: {check}")


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_a_database_table_pivots_and_scrolls_in_the_viewer(browser: Browser, server: DaphneProcess, env, duck, pg, kind: str) -> None:
    name = "events" if kind == "duckdb" else "pg_events"
    page = new_context(browser, server.http_url, make_user(env, "alice", settings=SETTINGS)).new_page()
    console = Console(page)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"{server.http_url}/browser/viewer/{name}/")
    page.wait_for_function(loaded("#v"), timeout=LOAD_TIMEOUT_MS)
    assert any(url.endswith("/ws/perspective/db/") for url in sockets), sockets
    page.locator("#v regular-table tbody tr").nth(5).wait_for(timeout=LOAD_TIMEOUT_MS)
    assert _first_id(page) == 0  # the flat view starts at the table's first row (ids are floats: bigint)

    # Scrolled: the grid asks the database for a window far down, and shows it.
    page.locator("#v regular-table").evaluate("table => { table.scrollTop = 19 * 20000; }")
    wait_until(lambda: _first_id(page) > 1000, page)
    assert _first_id(page) == _id(grid_rows(page)[1]) - 1  # in the table's order

    page.evaluate("async (config) => await document.querySelector('#v').restore(config)", PIVOT)
    columns = page.evaluate(
        "async () => { const view = await document.querySelector('#v').getView(); return await view.to_columns(); }"
    )
    expected = direct(
        kind, duck, pg,
        "SELECT region, category, sum(amount) FROM events WHERE qty > 3 GROUP BY region, category",
    )
    totals: dict[str, float] = {}
    for region, _category, amount in expected:
        totals[region] = totals.get(region, 0.0) + float(amount)
    paths = columns["__ROW_PATH__"]
    assert [path[0] for path in paths[1:]] == sorted(totals, key=lambda r: -totals[r])
    for row, path in enumerate(paths[1:], start=1):
        for region, category, amount in expected:
            if region == path[0]:
                assert columns[f"{category}|amount"][row] == pytest.approx(float(amount))
    wait_until(lambda: "c6" in page.locator("#v regular-table thead").inner_text() and len(grid_rows(page)) > 5, page)
    grid = "\n".join(grid_rows(page))
    best = max(totals, key=lambda r: totals[r])
    assert best in grid.split("\n")[1], grid[:300]  # the first group under the total is the largest
    assert console.errors == []
