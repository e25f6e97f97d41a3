"""Database tables end to end: a real daphne process, perspective's own client, DuckDB on disk
and the machine's PostgreSQL (15 here: the handler needs nothing of 16), every test on both.

Row counts are parameters (``DB_TEST_ROWS`` for DuckDB, ``PG_TEST_ROWS`` for PostgreSQL,
each 1,000,000 by default for a loaded CI machine); the issue's 10,000,000-row DuckDB table
runs by hand with ``DB_TEST_ROWS=10000000``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest
import websockets

from django_perspective import protocol, schema
from django_perspective.testing import run_script

from .databases_data import duck_fixture, make_events, pg_fixture
from .servers import ROOT, DaphneProcess, connect, make_user

pytestmark = pytest.mark.e2e

SETTINGS = "tests.settings_databases"
ROWS = int(os.environ.get("DB_TEST_ROWS", "1000000"))
PG_ROWS = int(os.environ.get("PG_TEST_ROWS", "1000000"))
OWNERS = ("alice", "bob", "carol")
MAKE_VIEW = schema.BY_NAME["make_view"].number


duck = duck_fixture(ROWS)
pg = pg_fixture(PG_ROWS)


@pytest.fixture(scope="module")
def server(demo_db: dict[str, str], duck: Path, pg: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    env = {**demo_db, "DB_DUCKDB_PATH": str(duck), "DB_PG_NAME": pg["dbname"]}
    process = DaphneProcess(Path(tmp_path_factory.mktemp("dblog")) / "daphne.log", env=env, settings=SETTINGS).start()
    process.env_for_users = env
    yield process
    process.stop()


@pytest.fixture(scope="module")
def sessions(demo_db: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"Cookie": f"sessionid={make_user(demo_db, name, settings=SETTINGS)}"} for name in ("alice", "bob")}


class Database:
    """One backend's declared tables (``pg_`` names for PostgreSQL) and direct SQL on it."""

    def __init__(self, kind: str, duck: Path, pg: dict[str, str]) -> None:
        self.kind, self._duck, self._pg = kind, duck, pg
        self.prefix = "pg_" if kind == "postgres" else ""
        self.rows = PG_ROWS if kind == "postgres" else ROWS

    def name(self, table: str) -> str:
        return self.prefix + table

    def direct(self, sql: str, params: list | None = None) -> list[tuple]:
        """The query run straight on the database (``?`` placeholders)."""
        if self.kind == "duckdb":
            with duckdb.connect(str(self._duck), read_only=True) as db:
                return db.execute(sql, params or []).fetchall()
        with psycopg.connect(**self._pg) as db:
            return [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in db.execute(sql.replace("?", "%s"), params or []).fetchall()]


@pytest.fixture(params=["duckdb", "postgres"])
def database(request: pytest.FixtureRequest, duck: Path, pg: dict[str, str]) -> Database:
    return Database(request.param, duck, pg)


def db_url(server: DaphneProcess) -> str:
    return server.ws_url + "db/"


async def test_listed_pivoted_and_scrolled_equal_the_database(server: DaphneProcess, database: Database, sessions) -> None:
    async with connect(db_url(server), headers=sessions["alice"]) as conn:
        client = conn.client
        listed = await asyncio.wait_for(client.get_hosted_table_names(), 30)
        assert {"events", "my_events", "pg_events", "pg_my_events"} <= set(listed)
        assert "staff_events" not in listed and "pg_staff_events" not in listed and "canary" not in listed
        table = await client.open_table(database.name("events"))
        assert await asyncio.wait_for(table.size(), 60) == database.rows
        schema = await table.schema()
        assert schema == {"id": "float", "owner": "string", "region": "string", "category": "string", "amount": "float", "qty": "integer", "day": "date"}

        view = await asyncio.wait_for(
            table.view(
                columns=["amount", "qty"],
                group_by=["region"],
                split_by=["category"],
                filter=[["qty", ">", 3]],
                sort=[["qty", "desc"]],
                aggregates={"amount": "sum", "qty": "sum"},
            ),
            120,
        )
        got = await asyncio.wait_for(view.to_columns(), 60)
        expected = database.direct(
            "SELECT region, category, sum(amount), sum(qty) FROM events WHERE qty > 3 GROUP BY region, category",
        )
        regions = got["__ROW_PATH__"][1:]
        totals: dict[str, int] = {}
        for region, _category, _amount, qty in expected:
            totals[region] = totals.get(region, 0) + qty
        assert [path[0] for path in regions] == sorted(totals, key=lambda r: -totals[r])
        for row, path in enumerate(got["__ROW_PATH__"]):
            if not path:
                continue
            for region, category, amount, qty in expected:
                if region == path[0]:
                    assert got[f"{category}|amount"][row] == pytest.approx(amount)
                    assert got[f"{category}|qty"][row] == qty
        await view.delete()

        flat = await table.view(columns=["id", "owner", "amount"], sort=[["id", "desc"]], filter=[["owner", "==", "bob"]])
        assert await flat.num_rows() == database.direct("SELECT count(*) FROM events WHERE owner = 'bob'")[0][0]
        start = min(database.rows // 3 - 20, 100_000)
        page = await asyncio.wait_for(flat.to_columns(start_row=start, end_row=start + 20), 60)
        rows = database.direct("SELECT id, owner, amount FROM events WHERE owner = 'bob' ORDER BY id DESC LIMIT 20 OFFSET ?", [start])
        assert page["id"] == [r[0] for r in rows]
        assert page["owner"] == ["bob"] * 20
        assert page["amount"] == [r[2] for r in rows]

        unsorted = await table.view(columns=["id", "region"])  # the table's own order, page after page
        for start in (0, database.rows // 2, database.rows - 10):
            page = await asyncio.wait_for(unsorted.to_columns(start_row=start, end_row=start + 10), 60)
            assert page["id"] == list(range(start, start + 10))
            assert page["region"] == [f"r{i % 5}" for i in range(start, start + 10)]


async def test_each_user_sees_only_their_rows(server: DaphneProcess, database: Database, sessions) -> None:
    seen: dict[str, dict] = {}
    for name in ("alice", "bob"):
        async with connect(db_url(server), headers=sessions[name]) as conn:
            table = await conn.client.open_table(database.name("my_events"))
            size = await asyncio.wait_for(table.size(), 60)
            grouped = await table.view(columns=["id"], group_by=["owner"], aggregates={"id": "count"})
            owners = (await grouped.to_columns())["__ROW_PATH__"]
            flat = await table.view(columns=["id", "owner"], sort=[["id", "asc"]])
            ids = await flat.get_min_max("id")
            last = await flat.to_columns(start_row=size - 5, end_row=size)
            # A filter naming the other user's rows finds nothing.
            other = "bob" if name == "alice" else "alice"
            stolen = await table.view(columns=["id"], filter=[["owner", "==", other]])
            seen[name] = {"size": size, "owners": owners, "min_max": ids, "last_owners": set(last["owner"]), "stolen": await stolen.num_rows()}
    for name in ("alice", "bob"):
        index = OWNERS.index(name)
        rows = database.direct("SELECT count(*), min(id), max(id) FROM events WHERE owner = ?", [name])[0]
        assert seen[name]["size"] == rows[0]
        assert [tuple(p) for p in seen[name]["owners"]] == [(), (name,)]
        assert tuple(seen[name]["min_max"]) == (rows[1], rows[2]) == (index, rows[2])
        assert seen[name]["last_owners"] == {name}
        assert seen[name]["stolen"] == 0
    async with connect(db_url(server)) as anonymous:  # no user: not allowed to read the table at all
        with pytest.raises(Exception, match="Unknown table"):
            await asyncio.wait_for((await anonymous.client.open_table(database.name("my_events"))).size(), 30)


INJECTIONS = [
    "x'; DROP TABLE canary; --",
    'x"; DROP TABLE canary; --',
    "1); DROP TABLE canary; --",
]


async def test_injection_through_every_client_string_is_refused(server: DaphneProcess, database: Database, sessions) -> None:
    evil = INJECTIONS[1]
    attempts = {
        "view id": dict(view_id=evil),
        "column": dict(columns=[evil]),
        "group_by": dict(group_by=[evil]),
        "split_by": dict(split_by=[evil]),
        "sort column": dict(sort=[[evil, "asc"]]),
        "filter column": dict(filter=[[evil, "==", "x"]]),
        "filter operator": dict(filter=[["owner", "= 'x' OR 1=1; DROP TABLE canary; --", "x"]]),
        "aggregate": dict(columns=["amount"], group_by=["owner"], aggregates={"amount": "sum(amount)); DROP TABLE canary; --"}),
        "aggregate column": dict(group_by=["owner"], aggregates={evil: "sum"}),
        "expression": dict(expressions={"e": "1); DROP TABLE canary; --"}),
        "number filter given a string": dict(filter=[["qty", "==", INJECTIONS[2]]]),
    }
    async with connect(db_url(server), headers=sessions["alice"]) as conn:
        table = await conn.client.open_table(database.name("events"))
        with pytest.raises(Exception, match="Unknown table"):
            await asyncio.wait_for((await conn.client.open_table(f"{database.name('events')}; {INJECTIONS[0]}")).size(), 30)
        for where, config in attempts.items():
            view_id = config.pop("view_id", None)
            if view_id is not None:
                # perspective's client picks its own ids; a raw frame with one off the strict form is refused.
                envelope = await _raw_make_view(server, sessions["alice"], database.name("events"), view_id)
                assert envelope.kind == protocol.SERVER_ERROR, where
                continue
            with pytest.raises(Exception) as refused:
                await asyncio.wait_for(table.view(**config), 30)
            assert any(reason in str(refused.value) for reason in ("no column", "not available", "expressions", "needs a number")), (where, refused.value)
        # String values are values: the filter matches nothing and the table is intact.
        harmless = await table.view(columns=["id"], filter=[["owner", "==", INJECTIONS[0]]])
        assert await harmless.num_rows() == 0
        assert await table.size() == database.rows
    assert database.direct("SELECT alive FROM canary") == [(42,)]
    sent = "\n".join(line for line in server.log().splitlines() if line.startswith("SQL> "))
    if database.kind == "duckdb":
        assert "CREATE TEMP VIEW" in sent and 'FROM "psp_src_' in sent  # the statement log is on
    else:
        assert 'FROM "events" AS __psp_rel' in sent and 'AS "__psp_src"' in sent
    assert "canary" not in sent.replace(f"'{INJECTIONS[0].replace(chr(39), chr(39) * 2)}'", "")  # only as a quoted value


async def _raw_make_view(server: DaphneProcess, headers: dict[str, str], table: str, view_id: str) -> protocol.Envelope:
    """A make_view frame with a view id the test chooses, on a websocket of its own."""
    frame = protocol.encode_envelope(7, table, MAKE_VIEW, protocol.encode_len(1, view_id.encode()))
    async with websockets.connect(db_url(server), origin=server.http_url, additional_headers=headers) as ws:
        await ws.send(frame)
        return protocol.parse_envelope(await asyncio.wait_for(ws.recv(), 30))


async def test_a_slow_statement_times_out_and_others_go_on(server: DaphneProcess, database: Database, sessions) -> None:
    async with connect(db_url(server), headers=sessions["alice"]) as slow, connect(db_url(server), headers=sessions["bob"]) as other:
        started = asyncio.get_running_loop().time()
        slow_call = asyncio.ensure_future((await slow.client.open_table(database.name("slow"))).size())
        await asyncio.sleep(0.2)
        fast = await asyncio.wait_for((await other.client.open_table(database.name("events"))).size(), 10)
        assert fast == database.rows
        with pytest.raises(Exception, match="ran longer than 2s"):
            await asyncio.wait_for(slow_call, 30)
        assert asyncio.get_running_loop().time() - started < 15
        assert await asyncio.wait_for((await slow.client.open_table(database.name("events"))).size(), 10) == database.rows


@pytest.mark.django_db  # the tag reads a registry row's title
def test_the_viewer_tag_routes_database_tables_to_their_own_path(tmp_path: Path) -> None:
    from django.template import Context, Template

    from django_perspective import browser, databases

    make_events(tmp_path / "unit.duckdb", 10)
    databases.database_table("unit_events", duckdb=str(tmp_path / "unit.duckdb"), table="events", access="public")
    try:
        assert browser.websocket_url(None, "unit_events") == "/ws/perspective/db/"
        assert browser.websocket_url(None, "superstore") == "/ws/perspective/"
        html = Template('{% load perspective %}{% perspective_viewer "unit_events" %}').render(Context({}))
        assert "/ws/perspective/db/" in html
        with pytest.raises(ValueError, match="plain SQL identifier"):
            databases.database_table("bad", duckdb=str(tmp_path / "unit.duckdb"), table='events"; --')
    finally:
        databases.withdraw("unit_events")


QUERYSET_PROBE = """
import json
from django.contrib.auth.models import User
from django_perspective import databases

warehouse = databases.postgres_backend("warehouse")
databases.database_table("users_all", model=User, backend=warehouse, access="public")
databases.database_table("users_staff", queryset=User.objects.using("warehouse").filter(is_staff=True).values("id", "username"), access="public")
databases.database_table("users_routed", model=User, access="public")  # the router says "default": SQLite
handler = databases.SessionHandler(None)
out = {name: [handler.table_size(name), handler.table_schema(name)] for name in ("users_all", "users_staff")}
try:
    handler.table_size("users_routed")
except databases.DatabaseError as exc:
    out["routed"] = str(exc)
print(json.dumps(out))
"""


def test_a_model_and_a_queryset_are_read_where_they_live(pg: dict[str, str], demo_db: dict[str, str]) -> None:
    with psycopg.connect(**pg, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS auth_user (id integer, username text, is_staff boolean)")
        db.execute("TRUNCATE auth_user")
        db.execute("INSERT INTO auth_user VALUES (1, 'ann', true), (2, 'bo''b', false), (3, 'cy', true)")
    out = json.loads(run_script({**demo_db, "DB_PG_NAME": pg["dbname"]}, QUERYSET_PROBE, settings=SETTINGS, cwd=ROOT))
    assert out["users_all"] == [3, {"id": "integer", "username": "string", "is_staff": "boolean"}]
    assert out["users_staff"] == [2, {"id": "integer", "username": "string"}]  # the filter ran in the database
    assert "is not a PostgreSQL database" in out["routed"]


REGISTRY_ROWS = """
import json
from django.core.exceptions import ValidationError
from django_perspective.models import PublishedTable

def errors(**fields):
    row = PublishedTable(name="probe", source="database", access="authenticated", **fields)
    try:
        row.full_clean()
    except ValidationError as exc:
        return exc.message_dict
    return {}

out = {
    "sqlite": errors(sql="SELECT 1 AS one", database="default"),
    "missing": errors(sql="SELECT * FROM no_such_table", database="warehouse"),
    "both": errors(sql="SELECT 1 AS one", database="warehouse", model="auth.User"),
    "write": errors(sql="DELETE FROM canary", database="warehouse"),
}
row = PublishedTable(name="pg_busy_events", source="database", access="authenticated", published=True,
                     sql="SELECT id, owner, qty FROM events WHERE qty > 5", database="warehouse")
row.full_clean()
row.save()
row.refresh_from_db()
out["saved"] = [row.row_count, row.schema, row.last_error]
print(json.dumps(out))
"""


async def test_a_registry_row_publishes_a_query_that_stays_in_postgresql(pg: dict[str, str], tmp_path: Path, sessions, demo_db) -> None:
    env = {**demo_db, "DB_PG_NAME": pg["dbname"]}
    out = json.loads(run_script(env, REGISTRY_ROWS, settings=SETTINGS, cwd=ROOT))
    assert "is not PostgreSQL" in " ".join(out["sqlite"]["database"])
    assert "no_such_table" in " ".join(out["missing"]["sql"])
    assert "either a model" in " ".join(out["both"]["sql"])
    assert "Only a SELECT" in " ".join(out["write"]["sql"])
    expected = database_direct(pg, "SELECT count(*) FROM events WHERE qty > 5")[0][0]
    assert out["saved"] == [expected, {"id": "float", "owner": "string", "qty": "integer"}, ""]
    # Another process hosts the published row when it starts, like every registry table.
    with DaphneProcess(tmp_path / "daphne.log", env=env, settings=SETTINGS) as server:
        async with connect(db_url(server), headers=sessions["alice"]) as conn:
            assert "pg_busy_events" in await asyncio.wait_for(conn.client.get_hosted_table_names(), 30)
            table = await conn.client.open_table("pg_busy_events")
            assert await table.size() == expected
            view = await table.view(columns=["qty"], group_by=["owner"], aggregates={"qty": "sum"})
            got = await view.to_columns()
        async with connect(db_url(server)) as anonymous:  # the row's access: signed-in users only
            assert "pg_busy_events" not in await asyncio.wait_for(anonymous.client.get_hosted_table_names(), 30)
    sums = dict(database_direct(pg, "SELECT owner, sum(qty) FROM events WHERE qty > 5 GROUP BY owner"))
    assert [p[0] for p in got["__ROW_PATH__"][1:]] == sorted(sums)
    assert got["qty"][1:] == [sums[o] for o in sorted(sums)]


def database_direct(pg: dict[str, str], sql: str) -> list[tuple]:
    with psycopg.connect(**pg) as db:
        return db.execute(sql).fetchall()


def test_duckdbs_buffer_pool_takes_its_limit_from_the_settings(tmp_path: Path, settings) -> None:
    from django_perspective.databases import DuckDBBackend

    make_events(tmp_path / "limit.duckdb", 10)
    settings.PERSPECTIVE = {**getattr(settings, "PERSPECTIVE", {}), "DATABASE_DUCKDB_MEMORY_LIMIT": "300MB"}
    backend = DuckDBBackend(str(tmp_path / "limit.duckdb"))
    try:
        limit = backend.rows(backend.run("SELECT current_setting('memory_limit')", {}))[0][0]
    finally:
        backend.close()
    assert limit == "286.1 MiB"  # 300 MB, as DuckDB prints it (its default is 80% of the machine)
