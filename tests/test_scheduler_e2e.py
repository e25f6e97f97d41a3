"""The scheduler end to end: a real daphne process, perspective's own client over websockets.

A client reads its own writes (with and without a server-side stream writing the same
table), the 5.6.1 deadlock order cannot hang the server, a bystander is not starved by
heavy clients, and a stuck engine call makes /health/ fail and still lets SIGTERM end the
process.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import DaphneProcess, connect

pytestmark = pytest.mark.e2e

# The deadlock test's length: the issue asks for 60 s; CI runs a shorter default.
DEADLOCK_SECONDS = float(os.environ.get("SCHED_DEADLOCK_SECONDS", "12"))
STREAM_HZ = 200


def health(server: DaphneProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.http_url + "/health/", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start(log: Path, env: dict[str, str], stream_hz: int) -> DaphneProcess:
    env = {**env, "E2E_SCHED": "1", "E2E_STREAM_HZ": str(stream_hz)}
    return DaphneProcess(log, env=env, settings="tests.settings_sched").start()


@pytest.fixture(scope="module")
def quiet_server(demo_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    server = start(Path(tmp_path_factory.mktemp("sched")) / "daphne-quiet.log", demo_db, 0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stream_server(demo_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    """Streams write ``scratch`` and ``groups`` 200 times a second while clients are connected."""
    server = start(Path(tmp_path_factory.mktemp("sched")) / "daphne-stream.log", demo_db, STREAM_HZ)
    yield server
    server.stop()


async def update_then_read(url: str, rounds: int = 300) -> int:
    """Write row 0 and read it straight back ``rounds`` times; return how many reads were stale."""
    stale = 0
    async with connect(url) as conn:
        table = await conn.client.open_table("scratch")
        view = await table.view(columns=["v"], filter=[["k", "==", 0]])
        for i in range(rounds):
            await table.update([{"k": 0, "v": i}])
            if (await view.to_columns())["v"] != [i]:
                stale += 1
    return stale


async def test_a_client_reads_its_own_writes(quiet_server):
    assert await update_then_read(quiet_server.ws_url) == 0


async def test_a_client_reads_its_own_writes_while_a_stream_writes_the_same_table(stream_server):
    async with connect(stream_server.ws_url) as watcher:
        table = await watcher.client.open_table("scratch")
        view = await table.view(filter=[["k", ">=", 1000]])
        notified: list[float] = []
        await view.on_update(lambda *_: notified.append(time.monotonic()))
        assert await update_then_read(stream_server.ws_url) == 0
        # The stream still reaches viewers in batches: at most one notification per poll.
        count = len(notified)
        await asyncio.sleep(1)
        assert 0 < len(notified) - count <= STREAM_HZ / 2


async def test_new_group_values_from_a_stream_while_a_client_opens_grouped_views(stream_server):
    """update -> make_view -> poll hangs Perspective 5.6.1; here a stream adds new group
    values while a client opens and closes grouped views, and a bystander keeps asking."""
    stop = asyncio.Event()
    cycles = 0
    waits: list[float] = []

    async def churn_views() -> None:
        nonlocal cycles
        async with connect(stream_server.ws_url) as conn:
            table = await conn.client.open_table("groups")
            while not stop.is_set():
                first = await table.view(group_by=["g"], columns=["x"])
                second = await table.view(group_by=["g"], columns=["x"], aggregates={"x": "sum"})
                await first.num_rows()
                await second.delete()
                await first.delete()
                cycles += 1

    async def bystander() -> None:
        async with connect(stream_server.ws_url) as conn:
            table = await conn.client.open_table("ticks")
            while not stop.is_set():
                started = time.monotonic()
                await asyncio.wait_for(table.size(), 30)
                waits.append(time.monotonic() - started)
                await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(churn_views()), asyncio.create_task(bystander())]
    await asyncio.sleep(DEADLOCK_SECONDS)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert cycles >= DEADLOCK_SECONDS  # about one cycle a second at the very least
    assert len(waits) >= DEADLOCK_SECONDS * 3 and max(waits) < 5, max(waits)
    status, body = await asyncio.to_thread(health, stream_server)
    assert status == 200 and body["engine"] == "ok"


async def timed(call) -> float:
    started = time.monotonic()
    await call
    return time.monotonic() - started


async def test_a_bystander_is_answered_within_twice_the_longest_request_while_others_flood(quiet_server):
    url = quiet_server.ws_url
    async with connect(url) as flood, connect(url) as builder, connect(url) as small:
        flood_table = await flood.client.open_table("superstore")
        flood_view = await flood_table.view()
        build_table = await builder.client.open_table("superstore")
        small_table = await small.client.open_table("ticks")

        async def heavy_view() -> None:
            view = await build_table.view(group_by=["Order ID"], columns=["Sales"])
            await view.to_columns_string(start_row=0, end_row=50)
            await view.delete()

        longest = 0.0
        for _ in range(2):  # each heavy request alone
            longest = max(longest, await timed(flood_view.to_csv()), await timed(heavy_view()))

        stop = asyncio.Event()

        async def flood_reads() -> None:
            pending: set[asyncio.Future] = set()
            while not stop.is_set():
                while len(pending) < 20:
                    pending.add(asyncio.ensure_future(flood_view.to_csv()))
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.gather(*pending)

        async def build_views() -> None:
            while not stop.is_set():
                await asyncio.gather(heavy_view(), heavy_view())

        load = [asyncio.create_task(flood_reads()), asyncio.create_task(build_views())]
        await asyncio.sleep(1)  # both backlogs are queued
        waits = []
        for _ in range(30):
            waits.append(await timed(small_table.size()))
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*load), 120)
    assert max(waits) <= 2 * longest, f"bystander waited {max(waits):.2f} s; longest request {longest:.2f} s"


HEAVY_EXPRESSION = "var x := 0; for (var i := 0; i < 1000000; i += 1) { x += 1 }; x"


async def test_a_stuck_engine_call_fails_health_is_logged_and_sigterm_still_ends_the_process(demo_db, tmp_path):
    env = {**demo_db, "E2E_SCHED": "1"}
    server = DaphneProcess(tmp_path / "daphne.log", env=env, settings="tests.settings_watchdog").start()
    try:
        assert (await asyncio.to_thread(health, server))[0] == 200
        async with connect(server.ws_url) as conn:
            table = await conn.client.open_table("trusted")
            # ExprTK loops run a million times per row: this view holds the engine for minutes.
            stuck = asyncio.ensure_future(table.view(expressions={"spin": HEAVY_EXPRESSION}))
            deadline = time.monotonic() + 20
            status, body = 200, {}
            while time.monotonic() < deadline:
                status, body = await asyncio.to_thread(health, server)
                if body["engine"] == "stalled":
                    break
                await asyncio.sleep(0.25)
            assert status == 503 and body["engine"] == "stalled"
            lines = [line for line in server.log().splitlines() if "engine call running" in line]
            assert any("kind=6 entity='trusted'" in line and "client=127.0.0.1:" in line for line in lines), lines
            started = time.monotonic()
            server.proc.terminate()
            server.proc.wait(30)
            stuck.cancel()
        assert time.monotonic() - started < 20
        assert "exiting with an engine call still running" in server.log()
    finally:
        server.stop()
