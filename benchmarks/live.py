"""Live model tables end to end: a save in a daphne process, the row at perspective clients.

    python -m benchmarks.live            # PostgreSQL and Redis on 127.0.0.1, under 2 minutes

Two deployments, each on a fresh PostgreSQL database:

- ``single``: one daphne process, in-memory channel layer; saves and clients on it;
- ``redis``: two daphne processes and channels_redis (replication on); saves through A,
  clients split between A and B, so half the deliveries cross processes.

Workloads (saves are ``Order.objects.create`` in a paced loop inside an HTTP view of
process A; each row carries the wall-clock time of its save, so latency is save -> row
delta decoded at the client):

- ``latency``: 1 client (on B with Redis), 300 saves at 100/s;
- ``fanout``: 50 clients, 300 saves at 100/s, every client must see every row;
- ``burst``: 1 client, 1,000 saves at 1,000/s: how many notifications (frames) it costs the
  viewer, and how long after the last save the last row arrives.

Writes ``benchmarks/results/live.json`` and ``live.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from tests.servers import DaphneProcess, connect
from tests.services import post, postgres_database, redis_prefix

from .workloads import percentile

SETTINGS = "tests.settings_live"
RESULTS = Path(__file__).resolve().parent / "results"
TABLE = "open_orders"


class Subscriber:
    """One client's view of the live table: when each saved row first reached it."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.frames: list[float] = []

    def on_delta(self, _port: int, delta: bytes | None = None) -> None:
        received = time.time()
        self.frames.append(received)
        if not delta:
            return
        for customer in pa.ipc.open_stream(delta).read_all().column("customer").to_pylist():
            number, _, stamp = (customer or "").partition(":")
            if stamp:
                self.seen.setdefault(int(number), (received - float(stamp)) * 1000)


async def subscribe(stack: contextlib.AsyncExitStack, url: str) -> Subscriber:
    conn = await stack.enter_async_context(connect(url))
    view = await (await conn.client.open_table(TABLE)).view()
    subscriber = Subscriber()
    await view.on_update(subscriber.on_delta, mode="row")
    return subscriber


async def saves(server: DaphneProcess, count: int, rate: float) -> float:
    """Run ``count`` paced saves in ``server``; returns the wall time they started."""
    started = time.time()
    await asyncio.to_thread(post, server.http_url + "/live/orders/", {"op": "burst", "count": count, "rate": rate})
    return started


async def settle(subscribers: list[Subscriber], count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(len(s.seen) >= count for s in subscribers):
        await asyncio.sleep(0.05)


def summary(subscribers: list[Subscriber], count: int) -> dict[str, float]:
    latencies = [ms for s in subscribers for ms in s.seen.values()]
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "lost": float(sum(count - len(s.seen) for s in subscribers)),
    }


async def run_workloads(a: DaphneProcess, b: DaphneProcess, reset: Any) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        one = [await subscribe(stack, b.ws_url)]
        await saves(a, 300, 100)
        await settle(one, 300)
        results["latency"] = summary(one, 300)
    await reset()
    async with contextlib.AsyncExitStack() as stack:
        many = [await subscribe(stack, (a if i % 2 else b).ws_url) for i in range(50)]
        await saves(a, 300, 100)
        await settle(many, 300)
        results["fanout"] = summary(many, 300)
    await reset()
    async with contextlib.AsyncExitStack() as stack:
        (viewer,) = [await subscribe(stack, b.ws_url)]
        started = await saves(a, 1000, 1000)
        finished = time.time()
        await settle([viewer], 1000)
        frames = [t for t in viewer.frames if t >= started]
        results["burst"] = {
            **summary([viewer], 1000),
            "saves_per_s": 1000 / (finished - started),
            "frames": float(len(frames)),
            "frames_per_s": len(frames) / (finished - started),
        }
    return results


async def deployment(redis: bool, logs: Path) -> dict[str, dict[str, float]]:
    with contextlib.ExitStack() as stack:
        env = {**stack.enter_context(postgres_database(SETTINGS)), "LIVE_TABLES": "1"}
        if redis:
            env.update(stack.enter_context(redis_prefix()))
        kind = "redis" if redis else "single"
        a = DaphneProcess(logs / f"{kind}-a.log", env=env, settings=SETTINGS).start()
        stack.callback(a.stop)
        b = a
        if redis:
            b = DaphneProcess(logs / f"{kind}-b.log", env=env, settings=SETTINGS).start()
            stack.callback(b.stop)

        async def reset() -> None:
            # Each workload starts from an empty table: close all and delete the rows.
            await asyncio.to_thread(post, a.http_url + "/live/orders/", {"op": "clear"})

        return await run_workloads(a, b, reset)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| deployment | workload | p50 ms | p99 ms | lost | notes |",
        "|---|---|---|---|---|---|",
    ]
    for kind, workloads in results["deployments"].items():
        for name, r in workloads.items():
            notes = ""
            if name == "burst":
                notes = f"{r['saves_per_s']:.0f} saves/s -> {r['frames']:.0f} frames ({r['frames_per_s']:.0f}/s) at the viewer"
            lines.append(f"| {kind} | {name} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['lost']:.0f} | {notes} |")
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=Path, default=Path("/tmp/django-perspective-live-bench"))
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {"deployments": {}}
    for redis in (False, True):
        results["deployments"]["redis" if redis else "single"] = await deployment(redis, args.logs)
    results["seconds"] = time.monotonic() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "live.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "live.md").write_text(markdown(results))
    print(markdown(results))
    print(f"{results['seconds']:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
