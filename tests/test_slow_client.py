"""A client that stops reading its socket is closed with 4008 before the server buffers much;
the other clients carry on."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

from django_perspective.client import Connection, default_origin

from .servers import LAUNCHERS, DaphneProcess, connect

pytestmark = pytest.mark.e2e

LIMIT = int(__import__("os").environ.get("T_LIMIT", 8 * 1024 * 1024))
REQUESTS = 40  # x ~5.9 MB of Arrow each: ~235 MB asked for, never read


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def connections(server: DaphneProcess) -> int:
    with urllib.request.urlopen(server.http_url + "/health/", timeout=10) as response:
        return json.loads(response.read())["connections"]


@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_a_client_that_stops_reading_is_closed_and_others_stay_fast(demo_db, tmp_path, launcher):
    env = {**demo_db, "MAX_OUTBOX_BYTES": str(LIMIT)}
    server = DaphneProcess(tmp_path / "daphne.log", env=env, settings="tests.settings_live", launcher=launcher).start()
    try:
        async with connect(server.ws_url) as fast:
            fast_table = await fast.client.open_table("leak")
            # max_queue=1: once one message waits unread, websockets stops reading the socket.
            ws = await websockets.connect(server.ws_url, origin=default_origin(server.ws_url), max_size=None, max_queue=1)
            slow = Connection(ws)
            view = await (await slow.client.open_table("leak")).view()
            await view.to_arrow()  # warm the allocator: one reply's worth is not a leak
            baseline = rss_mb(server.proc.pid)
            slow._reader.cancel()
            ws.transport.pause_reading()  # stop reading the socket: the kernel buffers fill, then the server's
            asked = [asyncio.ensure_future(view.to_arrow()) for _ in range(REQUESTS)]

            latencies: list[float] = []
            peak = baseline
            deadline = time.monotonic() + 30
            while "cannot keep up" not in server.log() and time.monotonic() < deadline:
                started = time.monotonic()
                assert await fast_table.size() == 200_000
                latencies.append(time.monotonic() - started)
                peak = max(peak, rss_mb(server.proc.pid))
                await asyncio.sleep(0.02)
            assert "cannot keep up" in server.log()
            for _ in range(100):  # the server drops the socket after autobahn's close timeout
                if await asyncio.to_thread(connections, server) == 1:
                    break
                peak = max(peak, rss_mb(server.proc.pid))
                await asyncio.sleep(0.1)
            assert await asyncio.to_thread(connections, server) == 1
            for _ in range(20):
                started = time.monotonic()
                assert await fast_table.size() == 200_000
                latencies.append(time.monotonic() - started)
            for future in asked:
                future.cancel()
            await slow.close()
        print(f"rss baseline {baseline:.0f} MB, peak {peak:.0f} MB; fast client max {max(latencies) * 1000:.0f} ms")
        assert peak - baseline < 120, (baseline, peak)
        assert sorted(latencies)[len(latencies) // 2] < 0.1
        assert max(latencies) < 1.0  # the slow client's queued requests are dropped, not computed
        assert "cannot keep up (4008)" in server.log()
    finally:
        server.stop()
