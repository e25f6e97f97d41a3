"""End to end: a real daphne process, perspective's own AsyncClient over real websockets."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import perspective
import pytest
import websockets

from django_perspective.data import encode
from example_project.demo.perspective_tables import superstore_columns

from .servers import ROOT, DaphneProcess, connect, free_port, wait_for_port

pytestmark = pytest.mark.e2e

BIG_ROWS = 2_400_000

QUERY = dict(
    columns=["Sales", "Profit", "Quantity"],
    group_by=["Region", "Category"],
    filter=[["Discount", "<", 0.25], ["Returned", "==", False]],
    sort=[["Sales", "desc"]],
    aggregates={"Sales": "sum", "Profit": "avg", "Quantity": "sum"},
)


def health(server: DaphneProcess) -> dict:
    with urllib.request.urlopen(server.http_url + "/health/", timeout=10) as response:
        return json.loads(response.read())


def expected_superstore_view() -> dict:
    client = perspective.Server().new_local_client()
    data, fmt = encode(superstore_columns())
    return client.table(data, format=fmt).view(**QUERY).to_columns()


async def test_a_grouped_filtered_sorted_view_matches_the_engine_in_process(demo_server):
    async with connect(demo_server.ws_url) as conn:
        assert {"superstore", "ticks"} <= set(await conn.client.get_hosted_table_names())
        table = await conn.client.open_table("superstore")
        assert await table.size() == 100_000
        schema = await table.schema()
        assert {"string", "integer", "float", "boolean", "date", "datetime"} <= set(schema.values())
        remote = await (await table.view(**QUERY)).to_columns()
    local = expected_superstore_view()
    assert remote.keys() == local.keys()
    assert remote["__ROW_PATH__"] == local["__ROW_PATH__"]
    for column in ("Sales", "Profit", "Quantity"):
        assert remote[column] == pytest.approx(local[column], rel=1e-12)


async def test_ticks_stream_updates_to_a_subscribed_view(demo_server):
    async with connect(demo_server.ws_url) as conn:
        table = await conn.client.open_table("ticks")
        assert table.get_index() == "symbol"
        view = await table.view()
        updates: list[float] = []
        await view.on_update(lambda *args: updates.append(time.monotonic()))
        before = await view.to_columns()
        deadline = time.monotonic() + 10
        while len(updates) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(updates) >= 3
        after = await view.to_columns()
        assert sorted(after["symbol"]) == sorted(before["symbol"])
        assert after["price"] != before["price"]


async def test_twenty_concurrent_clients(demo_server):
    async def one(i: int) -> tuple[int, list]:
        async with connect(demo_server.ws_url) as conn:
            table = await conn.client.open_table("superstore")
            view = await table.view(group_by=["Region"], columns=["Quantity"], filter=[["Quantity", "==", i % 14 + 1]])
            return await table.size(), (await view.to_columns())["__ROW_PATH__"]

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert [size for size, _ in results] == [100_000] * 20
    assert all(paths == [[], ["Central"], ["East"], ["South"], ["West"]] for _, paths in results)


async def test_disconnect_frees_the_session(demo_server):
    baseline = await asyncio.to_thread(health, demo_server)
    async with connect(demo_server.ws_url) as conn:
        table = await conn.client.open_table("superstore")
        for _ in range(5):
            await table.view(group_by=["Segment"])
        assert (await asyncio.to_thread(health, demo_server))["connections"] == baseline["connections"] + 1
    for _ in range(100):
        if (await asyncio.to_thread(health, demo_server))["connections"] == baseline["connections"]:
            break
        await asyncio.sleep(0.05)
    assert (await asyncio.to_thread(health, demo_server))["connections"] == baseline["connections"]


@pytest.fixture(scope="module")
def big_servers(demo_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, str]]]:
    """The large table behind each documented launch: daphne as in the README, and runserver."""
    import os
    import subprocess
    import sys

    logs = Path(tmp_path_factory.mktemp("big"))
    env = {**demo_db, "E2E_BIG_ROWS": str(BIG_ROWS)}
    daphne = DaphneProcess(logs / "daphne.log", env=env).start()
    port = free_port()
    log = open(logs / "runserver.log", "ab")
    runserver = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        stdout=log,
        stderr=log,
    )
    log.close()
    try:
        wait_for_port(port, proc=runserver)
        yield {"daphne": (daphne.ws_url, daphne.log_path), "runserver": (f"ws://127.0.0.1:{port}/ws/perspective/", logs / "runserver.log")}
    finally:
        daphne.stop()
        runserver.terminate()
        runserver.wait(10)


@pytest.mark.parametrize("launch", ["daphne", "runserver"])
async def test_a_response_over_100_mb_is_delivered(big_servers, launch):
    url, _ = big_servers[launch]
    async with connect(url) as conn:
        table = await conn.client.open_table("big")
        assert await table.size() == BIG_ROWS
        arrow = await asyncio.wait_for((await table.view()).to_arrow(), 120)
    assert len(arrow) > 100 * 1024 * 1024
    import pyarrow as pa

    result = pa.ipc.open_stream(arrow).read_all()
    assert result.num_rows == BIG_ROWS
    assert result.column("b")[BIG_ROWS - 1].as_py() == (BIG_ROWS - 1) * 1.5


async def test_the_event_loop_answers_while_the_engine_runs_a_heavy_query(big_servers):
    url, _ = big_servers["daphne"]
    events: list[str] = []
    async with connect(url) as heavy_conn:
        table = await heavy_conn.client.open_table("big")

        async def heavy() -> None:
            # The engine builds the whole view (seconds), then refuses it as over
            # MAX_VIEW_CELLS: the build is what the small requests must not wait for.
            with pytest.raises(perspective.PerspectiveError, match="MAX_VIEW_CELLS"):
                await table.view(group_by=["key"], split_by=["d"], columns=["a", "b"])
            events.append("heavy query answered")

        heavy_task = asyncio.create_task(heavy())
        await asyncio.sleep(0.3)  # let the engine start on it
        async with websockets.connect(url, origin=url.replace("ws://", "http://").split("/ws/")[0]) as ws:
            events.append("connected")
            await (await ws.ping())
            events.append("pong")
            await ws.send("a text frame")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            events.append(f"closed {closed.value.rcvd.code}")
        # Pure reads run beside the engine thread: another client's listing and size()
        # do not queue behind the view build (Perspective's own handlers stall here).
        async with connect(url) as small_conn:
            small = await small_conn.client.open_table("big")
            assert await small.size() == BIG_ROWS
            events.append("small read answered")
        await asyncio.wait_for(heavy_task, 120)
    assert events == ["connected", "pong", "closed 4003", "small read answered", "heavy query answered"]


async def test_under_daphne_defaults_a_large_response_fails_clearly(demo_db, tmp_path):
    server = DaphneProcess(tmp_path / "daphne.log", env=demo_db, settings="tests.settings_default_limit", max_message=None).start()
    try:
        async with connect(server.ws_url) as conn:
            table = await conn.client.open_table("superstore")
            view = await table.view()
            with pytest.raises(perspective.PerspectiveError, match="exceeds the server's websocket message limit of 1048576"):
                await asyncio.wait_for(view.to_arrow(), 60)
            # The connection and the server carry on.
            assert await table.size() == 100_000
    finally:
        server.stop()


async def test_shutdown_tells_clients_to_reconnect_and_closes_sessions(demo_db, tmp_path):
    server = DaphneProcess(tmp_path / "daphne.log", env=demo_db).start()
    try:
        async with connect(server.ws_url) as conn:
            table = await conn.client.open_table("ticks")
            await table.view()
            server.stop()  # SIGTERM
            await asyncio.wait_for(conn.ws.wait_closed(), 15)
            assert conn.ws.close_code == 4012
        assert server.proc.returncode == 0
        assert "disconnect code=4012" in server.log()
    finally:
        server.stop()
