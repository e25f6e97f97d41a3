"""Database tables end to end: a real daphne process, perspective's own client, DuckDB on disk.

Row counts are parameters (``DB_TEST_ROWS``, default 1,000,000 for a loaded CI machine);
the issue's 10,000,000 runs by hand with ``DB_TEST_ROWS=10000000``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import websockets

from django_perspective import protocol, schema

from .servers import DaphneProcess, connect, make_user

pytestmark = pytest.mark.e2e

SETTINGS = "tests.settings_databases"
ROWS = int(os.environ.get("DB_TEST_ROWS", "1000000"))
OWNERS = ("alice", "bob", "carol")
MAKE_VIEW = schema.BY_NAME["make_view"].number


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


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("duck") / "events.duckdb"
    make_events(path, ROWS)
    return path


@pytest.fixture(scope="module")
def server(demo_db: dict[str, str], duck: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    env = {**demo_db, "DB_DUCKDB_PATH": str(duck)}
    process = DaphneProcess(Path(tmp_path_factory.mktemp("dblog")) / "daphne.log", env=env, settings=SETTINGS).start()
    process.env_for_users = env
    yield process
    process.stop()


@pytest.fixture(scope="module")
def sessions(demo_db: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"Cookie": f"sessionid={make_user(demo_db, name, settings=SETTINGS)}"} for name in ("alice", "bob")}


def db_url(server: DaphneProcess) -> str:
    return server.ws_url + "db/"


def direct(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as db:
        return db.execute(sql, params or []).fetchall()


async def test_listed_pivoted_and_scrolled_equal_the_database(server: DaphneProcess, duck: Path, sessions) -> None:
    async with connect(db_url(server), headers=sessions["alice"]) as conn:
        client = conn.client
        listed = await asyncio.wait_for(client.get_hosted_table_names(), 30)
        assert "events" in listed and "my_events" in listed
        assert "staff_events" not in listed and "canary" not in listed
        table = await client.open_table("events")
        assert await asyncio.wait_for(table.size(), 60) == ROWS
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
        expected = direct(
            duck,
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
        assert await flat.num_rows() == direct(duck, "SELECT count(*) FROM events WHERE owner = 'bob'")[0][0]
        start = min(ROWS // 3 - 20, 100_000)
        page = await asyncio.wait_for(flat.to_columns(start_row=start, end_row=start + 20), 60)
        rows = direct(duck, "SELECT id, owner, amount FROM events WHERE owner = 'bob' ORDER BY id DESC LIMIT 20 OFFSET ?", [start])
        assert page["id"] == [r[0] for r in rows]
        assert page["owner"] == ["bob"] * 20
        assert page["amount"] == [r[2] for r in rows]


async def test_each_user_sees_only_their_rows(server: DaphneProcess, duck: Path, sessions) -> None:
    seen: dict[str, dict] = {}
    for name in ("alice", "bob"):
        async with connect(db_url(server), headers=sessions[name]) as conn:
            table = await conn.client.open_table("my_events")
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
        rows = direct(duck, "SELECT count(*), min(id), max(id) FROM events WHERE owner = ?", [name])[0]
        assert seen[name]["size"] == rows[0]
        assert [tuple(p) for p in seen[name]["owners"]] == [(), (name,)]
        assert tuple(seen[name]["min_max"]) == (rows[1], rows[2]) == (index, rows[2])
        assert seen[name]["last_owners"] == {name}
        assert seen[name]["stolen"] == 0
    async with connect(db_url(server)) as anonymous:  # no user: not allowed to read the table at all
        with pytest.raises(Exception, match="Unknown table"):
            await asyncio.wait_for((await anonymous.client.open_table("my_events")).size(), 30)


INJECTIONS = [
    "x'; DROP TABLE canary; --",
    'x"; DROP TABLE canary; --',
    "1); DROP TABLE canary; --",
]


async def test_injection_through_every_client_string_is_refused(server: DaphneProcess, duck: Path, sessions) -> None:
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
        table = await conn.client.open_table("events")
        with pytest.raises(Exception, match="Unknown table"):
            await asyncio.wait_for((await conn.client.open_table(f"events; {INJECTIONS[0]}")).size(), 30)
        for where, config in attempts.items():
            view_id = config.pop("view_id", None)
            if view_id is not None:
                # perspective's client picks its own ids; a raw frame with one off the strict form is refused.
                envelope = await _raw_make_view(server, sessions["alice"], "events", view_id)
                assert envelope.kind == protocol.SERVER_ERROR, where
                continue
            with pytest.raises(Exception) as refused:
                await asyncio.wait_for(table.view(**config), 30)
            assert any(reason in str(refused.value) for reason in ("no column", "not available", "expressions", "needs a number")), (where, refused.value)
        # String values are values: the filter matches nothing and the table is intact.
        harmless = await table.view(columns=["id"], filter=[["owner", "==", INJECTIONS[0]]])
        assert await harmless.num_rows() == 0
        assert await table.size() == ROWS
    assert direct(duck, "SELECT alive FROM canary") == [(42,)]
    sent = "\n".join(line for line in server.log().splitlines() if line.startswith("SQL> "))
    assert "CREATE TEMP VIEW" in sent and 'FROM "psp_src_' in sent  # the statement log is on
    assert "canary" not in sent.replace(f"'{INJECTIONS[0].replace(chr(39), chr(39) * 2)}'", "")  # only as a quoted value


async def _raw_make_view(server: DaphneProcess, headers: dict[str, str], table: str, view_id: str) -> protocol.Envelope:
    """A make_view frame with a view id the test chooses, on a websocket of its own."""
    frame = protocol.encode_envelope(7, table, MAKE_VIEW, protocol.encode_len(1, view_id.encode()))
    async with websockets.connect(db_url(server), origin=server.http_url, additional_headers=headers) as ws:
        await ws.send(frame)
        return protocol.parse_envelope(await asyncio.wait_for(ws.recv(), 30))


async def test_a_slow_statement_times_out_and_others_go_on(server: DaphneProcess, sessions) -> None:
    async with connect(db_url(server), headers=sessions["alice"]) as slow, connect(db_url(server), headers=sessions["bob"]) as other:
        started = asyncio.get_running_loop().time()
        slow_call = asyncio.ensure_future((await slow.client.open_table("slow")).size())
        await asyncio.sleep(0.2)
        fast = await asyncio.wait_for((await other.client.open_table("events")).size(), 10)
        assert fast == ROWS
        with pytest.raises(Exception, match="ran longer than 2s"):
            await asyncio.wait_for(slow_call, 30)
        assert asyncio.get_running_loop().time() - started < 15
        assert await asyncio.wait_for((await slow.client.open_table("events")).size(), 10) == ROWS


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
