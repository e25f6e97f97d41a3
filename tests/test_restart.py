"""SIGKILL a daphne process while clients stream: they reconnect, the survivors keep serving."""

from __future__ import annotations

import asyncio
import time

import pytest

from django_perspective.client import reconnecting

from .servers import DaphneProcess, connect

pytestmark = pytest.mark.e2e


async def follow_ticks(url: str, updates: list[tuple[int, float]], connections: list[int]) -> None:
    """Subscribe to ``ticks`` on every (re)connection, recording which connection saw each update."""
    async for conn in reconnecting(url, initial_delay=0.1, max_delay=1.0):
        number = len(connections)
        connections.append(number)
        table = await conn.client.open_table("ticks")
        view = await table.view()
        await view.on_update(lambda *args, n=number: updates.append((n, time.monotonic())))
        await conn.wait_closed()


async def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_clients_reconnect_after_sigkill_and_survivors_keep_serving(demo_db, tmp_path):
    a = DaphneProcess(tmp_path / "a.log", env=demo_db).start()
    b = DaphneProcess(tmp_path / "b.log", env=demo_db).start()
    on_a: list[tuple[int, float]] = []
    on_b: list[tuple[int, float]] = []
    connections_a: list[int] = []
    connections_b: list[int] = []
    followers = [
        asyncio.create_task(follow_ticks(a.ws_url, on_a, connections_a)),
        asyncio.create_task(follow_ticks(b.ws_url, on_b, connections_b)),
    ]
    try:
        assert await wait_until(lambda: len(on_a) >= 3 and len(on_b) >= 3)

        a.kill()  # SIGKILL: no close frame, no cleanup
        killed_at = time.monotonic()
        # The survivor keeps streaming to its clients while A is down...
        assert await wait_until(lambda: sum(t > killed_at for _, t in on_b) >= 5)
        assert connections_b == [0]
        # ...and a fresh client can still use it.
        async with connect(b.ws_url) as conn:
            assert await (await conn.client.open_table("superstore")).size() == 100_000

        restarted = DaphneProcess(tmp_path / "a2.log", env=demo_db, port=a.port).start()
        try:
            # A's client reconnects by itself, re-subscribes and streams again.
            assert await wait_until(lambda: any(n >= 1 for n, _ in on_a), timeout=30)
            assert len(connections_a) >= 2
        finally:
            restarted.stop()
    finally:
        for task in followers:
            task.cancel()
        a.stop()
        b.stop()
