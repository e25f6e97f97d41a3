"""Two daphne processes and Redis: changes made through A reach B's clients exactly once,
including after B is SIGKILLed and restarted mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import urllib.error
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.liveapp.perspective_tables import KEYS

from .live_helpers import until
from .servers import DaphneProcess, connect, free_port, wait_for_port
from .services import post, postgres_database, redis_prefix

pytestmark = pytest.mark.e2e

SETTINGS = "tests.settings_live"
TOTAL = 1000


@pytest.fixture(scope="module")
def cluster_env() -> Iterator[dict[str, str]]:
    with postgres_database(SETTINGS) as database, redis_prefix() as redis:
        yield {**database, **redis, "LIVE_TABLES": "1"}


def expected_replicated(count: int) -> list[dict]:
    """What tests/liveapp/views.stream leaves in ``replicated`` after ``count`` changes."""
    state = {i: (0.0, "seed") for i in range(10)}
    for k in range(count):
        state[k % KEYS] = (float(k), f"v{k}")
        if k % 7 == 0:
            state.pop((k * 13) % KEYS, None)
    return [{"id": key, "value": value, "label": label} for key, (value, label) in sorted(state.items())]


def expected_appended(count: int) -> Counter:
    return Counter([-1, *range(0, count, 10)])


async def snapshot(conn) -> tuple[list[dict], Counter]:
    replicated = await (await (await conn.client.open_table("replicated")).view(sort=[["id", "asc"]])).to_records()
    appended = await (await (await conn.client.open_table("appended")).view()).to_records()
    return replicated, Counter(row["n"] for row in appended)


async def converge(conn, count: int, timeout: float = 30.0) -> tuple[list[dict], Counter]:
    want = (expected_replicated(count), expected_appended(count))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await snapshot(conn)
        if got == want or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_changes_through_a_reach_b_exactly_once_across_a_restart(cluster_env, tmp_path):
    a = DaphneProcess(tmp_path / "a.log", env=cluster_env, settings=SETTINGS).start()
    b = DaphneProcess(tmp_path / "b.log", env=cluster_env, settings=SETTINGS).start()
    restarted: DaphneProcess | None = None

    async def stream(start: int, count: int) -> None:
        await asyncio.to_thread(post, a.http_url + "/live/stream/", {"start": start, "count": count})

    try:
        async with connect(a.ws_url) as on_a:
            await snapshot(on_a)  # A hosts (and follows) the tables
            async with connect(b.ws_url) as on_b:
                view = await (await on_b.client.open_table("replicated")).view()
                notified: list[int] = []
                await view.on_update(lambda *args: notified.append(1))
                await stream(0, 400)
                assert await converge(on_b, 400) == (expected_replicated(400), expected_appended(400))
                assert notified

            sending = asyncio.create_task(stream(400, 300))
            await asyncio.sleep(0.3)
            b.kill()  # SIGKILL mid-stream: no goodbye
            await sending
            restarted = DaphneProcess(tmp_path / "b2.log", env=cluster_env, settings=SETTINGS, port=b.port).start()
            sending = asyncio.create_task(stream(700, TOTAL - 700))
            async with connect(restarted.ws_url) as on_b:
                await snapshot(on_b)  # B hosts the tables and catches up while A streams on
                await sending
                on_a_rows = await converge(on_a, TOTAL)
                on_b_rows = await converge(on_b, TOTAL)
        assert on_a_rows == (expected_replicated(TOTAL), expected_appended(TOTAL))
        assert on_b_rows == on_a_rows
        assert "caught up from a snapshot" in restarted.log()
    finally:
        for server in (a, b, restarted):
            if server is not None:
                server.stop()


async def test_a_save_in_one_process_reaches_a_viewer_of_the_other(cluster_env, tmp_path):
    a = DaphneProcess(tmp_path / "a.log", env=cluster_env, settings=SETTINGS).start()
    b = DaphneProcess(tmp_path / "b.log", env=cluster_env, settings=SETTINGS).start()
    try:
        async with connect(b.ws_url) as on_b:
            view = await (await on_b.client.open_table("open_orders")).view()
            order = (await asyncio.to_thread(post, a.http_url + "/live/orders/", {"op": "create", "customer": "via-a"}))["id"]
            rows = await until(view, lambda rows: any(row["id"] == order for row in rows))
            assert [row["customer"] for row in rows if row["id"] == order] == ["via-a"]
            await asyncio.to_thread(post, a.http_url + "/live/orders/", {"op": "update", "id": order, "status": "done"})
            assert not [row for row in await until(view, lambda rows: all(row["id"] != order for row in rows)) if row["id"] == order]
    finally:
        a.stop()
        b.stop()


@contextlib.contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen]:
    """A redis-server of this test's own, so it can be killed without touching anyone else's."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


async def test_replicas_carry_on_after_redis_restarts(cluster_env, tmp_path):
    port = free_port()
    env = {**cluster_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    url = None
    with private_redis(port):
        a = DaphneProcess(tmp_path / "a.log", env=env, settings=SETTINGS).start()
        b = DaphneProcess(tmp_path / "b.log", env=env, settings=SETTINGS).start()
        url = a.http_url + "/live/stream/"
        try:
            async with connect(a.ws_url) as on_a, connect(b.ws_url) as on_b:
                await snapshot(on_a)
                await snapshot(on_b)
                await asyncio.to_thread(post, url, {"start": 0, "count": 200})
                assert await converge(on_b, 200) == (expected_replicated(200), expected_appended(200))
        except BaseException:
            a.stop()
            b.stop()
            raise
    try:
        with pytest.raises(urllib.error.HTTPError):  # Redis is down: the change cannot be made
            await asyncio.to_thread(post, url, {"start": 200, "count": 1})
        with private_redis(port):  # back, empty: stream ids are times, so they keep growing
            await asyncio.sleep(1.0)
            await asyncio.to_thread(post, url, {"start": 200, "count": 300})
            async with connect(a.ws_url) as on_a, connect(b.ws_url) as on_b:
                # The refused request published nothing; sent again, every change applied once.
                want = (expected_replicated(500), expected_appended(500))
                assert await converge(on_a, 500) == want
                assert await converge(on_b, 500) == want
        assert "Redis unavailable" in b.log()
    finally:
        a.stop()
        b.stop()
