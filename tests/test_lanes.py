"""Pure reads beside the engine thread: order per connection, and no update lost.

Perspective's notes report that concurrent calls into one Server have lost an update.
Updates and polls therefore stay on the engine thread; only requests that change nothing
(``protocol.is_read``) run on a reader thread, and only while the same connection has
nothing else in flight (``engine.Lane``). These tests hold the scheme to both promises.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.test import override_settings

from django_perspective import api
from django_perspective.engine import Engine, Lane

from .test_consumer import connected

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_lane_keeps_one_connections_calls_in_order():
    engine = Engine(poll_interval=0, concurrent_reads=True)
    try:
        lane = Lane(engine)
        log: list[tuple[str, str]] = []
        gate = threading.Event()

        def step(name: str, wait: bool = False) -> None:
            if wait:
                gate.wait(5)
            log.append((name, threading.current_thread().name.split("_")[0]))

        lane.read(step, "read 1", True)  # holds the reader until the gate opens
        lane.call(step, "call")  # must wait for read 1
        lane.read(step, "read 2")  # must wait for the call: no overtaking
        time.sleep(0.1)
        assert log == []
        gate.set()
        engine.run(lambda: None)
        deadline = time.monotonic() + 5
        while len(log) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [name for name, _ in log] == ["read 1", "call", "read 2"]
        assert log[0][1] == "perspective-reader" and log[1][1] == "perspective-engine"
        lane.read(step, "read 3")  # nothing in flight: back on the reader
        engine.run(lambda: None)
        while len(log) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log[3] == ("read 3", "perspective-reader")
    finally:
        engine.shutdown()


def test_without_concurrent_reads_every_call_runs_on_the_engine_thread():
    engine = Engine(poll_interval=0, concurrent_reads=False)
    try:
        lane = Lane(engine)
        threads: list[str] = []
        lane.read(lambda: threads.append(threading.current_thread().name))
        lane.call(lambda: threads.append(threading.current_thread().name))
        engine.run(lambda: None)
        assert [name.split("_")[0] for name in threads] == ["perspective-engine", "perspective-engine"]
    finally:
        engine.shutdown()


@pytest.mark.parametrize("trial", range(5))
async def test_no_update_is_lost_while_other_connections_read(trial):
    """300 updates on the engine thread while two clients read and subscribe on the reader."""
    with override_settings(PERSPECTIVE={"DEFAULT_ACCESS": "public", "HOST_ON_START": False, "RATE_LIMIT": 0}):
        engine = Engine(poll_interval=0.005, concurrent_reads=True)
        api_engine = api.get_engine
        api.get_engine = lambda: engine
        try:
            await engine.arun(lambda: engine.host("t", [{"k": 0, "v": -1}, {"k": 1, "v": -1}], index="k"))
            async with connected(engine) as a, connected(engine) as b:
                views = []
                last_seen: list[int] = []
                for conn in (a, b):
                    table = await conn.client.open_table("t")
                    view = await table.view(columns=["v"], sort=[["k", "asc"]])
                    views.append((table, view))
                await views[0][1].on_update(lambda *_: last_seen.append(time.monotonic_ns()))
                stop = asyncio.Event()

                async def read(table, view) -> int:
                    reads = 0
                    while not stop.is_set():
                        await view.to_columns()
                        await table.size()
                        reads += 2
                    return reads

                readers = [asyncio.create_task(read(*pair)) for pair in views]
                hosted = api.HostedTable("t")
                for i in range(300):
                    await hosted.aupdate([{"k": i % 2, "v": i}])
                    if i % 50 == 0:
                        await asyncio.sleep(0)
                stop.set()
                assert all(n > 0 for n in await asyncio.gather(*readers))
                expected = {"v": [298, 299]}
                deadline = time.monotonic() + 5
                seen = []
                while time.monotonic() < deadline:
                    seen = [await view.to_columns() for _, view in views]
                    if all(s == expected for s in seen):
                        break
                    await asyncio.sleep(0.02)
                assert seen == [expected, expected]  # from the reader thread, without a forced poll
                assert last_seen  # the subscriber was notified through it all
        finally:
            api.get_engine = api_engine
            engine.shutdown()
