"""Connect / open a view / disconnect, thousands of times, cleanly and abruptly: nothing leaks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import urllib.request

import perspective
import pytest
import websockets

from .servers import LAUNCHERS, DaphneProcess, rss_kib

pytestmark = pytest.mark.e2e

CYCLES = int(os.environ.get("LEAK_CYCLES", "10000"))
CONCURRENCY = 25


def probe(server: DaphneProcess) -> dict:
    with urllib.request.urlopen(f"{server.http_url}/e2e/views-free/leak/", timeout=30) as response:
        return json.loads(response.read())


async def cycle(url: str, origin: str, kind: str) -> None:
    async with websockets.connect(url, max_size=None, origin=origin) as ws:
        client = perspective.AsyncClient(ws.send)

        async def pump() -> None:
            try:
                async for message in ws:
                    await client.handle_response(message)
            except websockets.ConnectionClosed:
                pass

        reader = asyncio.create_task(pump())
        table = await client.open_table("leak")
        view = await table.view(columns=["x"], filter=[["id", "<", 100]])
        if kind == "clean":
            assert await view.num_rows() == 100
        elif kind == "reset":
            # TCP RST in the middle of a request: SO_LINGER 0 then close.
            pending = asyncio.ensure_future(view.to_columns())
            sock: socket.socket = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.transport.abort()
            pending.cancel()
        elif kind == "large":
            # Close while the server is producing a multi-megabyte to_arrow.
            big = await table.view()
            pending = asyncio.ensure_future(big.to_arrow())
            await asyncio.sleep(0)
            await ws.close()
            pending.cancel()
        reader.cancel()


async def run_cycles(server: DaphneProcess, count: int) -> None:
    origin = server.http_url
    kinds = ["clean"] * 8 + ["reset", "large"]
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with semaphore:
            try:
                await asyncio.wait_for(cycle(server.ws_url, origin, kinds[i % len(kinds)]), 60)
            except (websockets.ConnectionClosed, ConnectionError, asyncio.CancelledError):
                pass  # abrupt cycles end abruptly; the server is what is under test

    await asyncio.gather(*(one(i) for i in range(count)))


async def settled(server: DaphneProcess) -> dict:
    """Wait until every connection closed, then probe for views."""
    for _ in range(200):
        state = await asyncio.to_thread(probe, server)
        if state["free"] and state["connections"] == 0:
            return state
        await asyncio.sleep(0.1)
    return state


@pytest.mark.timeout(900)  # 11,000 connections: minutes on a loaded 2-core machine
@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_ten_thousand_cycles_leave_no_views_and_no_memory_behind(demo_db, tmp_path, launcher):
    server = DaphneProcess(tmp_path / "daphne.log", env=demo_db, launcher=launcher).start()
    try:
        await run_cycles(server, 1000)  # warm up: allocator pools, caches, imports
        assert await settled(server) == {"free": True, "connections": 0}
        baseline = rss_kib(server.proc.pid)

        await run_cycles(server, CYCLES)
        state = await settled(server)
        after = rss_kib(server.proc.pid)
        print(f"\nleak: {CYCLES} cycles, RSS {baseline / 1024:.1f} MiB -> {after / 1024:.1f} MiB")
        assert state == {"free": True, "connections": 0}
        assert after - baseline < 40 * 1024, f"RSS grew by {(after - baseline) / 1024:.1f} MiB"
        # And the server still serves.
        async with websockets.connect(server.ws_url, origin=server.http_url, max_size=None):
            pass
        assert server.proc.poll() is None
    finally:
        server.stop()
