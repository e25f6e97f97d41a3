"""The workloads, each measured against one target per call so rounds can interleave servers.

A target holds the persistent connections (and views) its workloads reuse across rounds, so
view builds on the big table are paid once per server rather than inside the timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import perspective
import pyarrow as pa
import pyarrow.compute as pc

from django_perspective.client import Connection, connect

from .data import GROUPED, TABLE, TICKS, bench_table

WINDOW = 50
WINDOWS = 200
CLIENTS = 20
FANOUT_CLIENTS = 50
FANOUT_RATE = 10.0
FANOUT_ROWS = 1000
HEAVY = {"group_by": ["g1", "g2"], "columns": ["x", "y", "n"], "aggregates": {"x": "sum", "y": "avg", "n": "sum"}}
HOL_DELAY = 0.1
TICK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def offsets(rows: int) -> list[int]:
    """The 200 window starts every target reads, spread over the view deterministically."""
    span = max(1, rows - WINDOW)
    return [(i * 7919) % span for i in range(WINDOWS)]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Target:
    """A server under test, reached over a websocket, with its long-lived client state."""

    key: str
    url: str
    http: str
    pid: int
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    viewport: Any = None
    windows: list[int] = field(default_factory=list)
    workers: list[Any] = field(default_factory=list)
    flat: Any = None
    heavy_table: Any = None
    small_table: Any = None

    async def open(self) -> Connection:
        return await self.stack.enter_async_context(connect(self.url))

    async def table(self) -> Any:
        return await (await self.open()).client.open_table(TABLE)

    async def setup(self) -> None:
        """Connect the persistent clients; the first connection makes our servers host the tables."""
        first = await self.table()
        await first.size()
        self.viewport = await first.view(**GROUPED)
        self.windows = offsets(await self.viewport.num_rows())
        for _ in range(CLIENTS):
            self.workers.append(await (await self.table()).view(**GROUPED))
        self.flat = await (await self.table()).view()
        self.heavy_table = await self.table()
        self.small_table = await self.table()

    async def close(self) -> None:
        await self.stack.aclose()


class Engine:
    """The floor: the same table and requests in this process, no transport at all."""

    key = "engine"

    def __init__(self, rows: int) -> None:
        self.server = perspective.Server()
        self.client = self.server.new_local_client()
        table = self.client.table(bench_table(rows), name=TABLE)
        self.viewport = table.view(**GROUPED)
        self.windows = offsets(self.viewport.num_rows())


def _latency_summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
    }


def viewport_engine(engine: Engine) -> dict[str, float]:
    latencies = []
    for start in engine.windows:
        t0 = time.perf_counter()
        engine.viewport.to_columns_string(start_row=start, end_row=start + WINDOW)
        latencies.append((time.perf_counter() - t0) * 1000)
    return _latency_summary(latencies)


async def viewport(target: Target) -> dict[str, float]:
    """200 sequential 50-row windows of the grouped view (what the datagrid fetches)."""
    latencies = []
    cpu0 = cpu_seconds(target.pid)
    for start in target.windows:
        t0 = time.perf_counter()
        await target.viewport.to_columns_string(start_row=start, end_row=start + WINDOW)
        latencies.append((time.perf_counter() - t0) * 1000)
    server_cpu = cpu_seconds(target.pid) - cpu0
    return {**_latency_summary(latencies), "server_cpu_us_per_req": server_cpu / len(latencies) * 1e6}


async def throughput(target: Target, seconds: float) -> dict[str, float]:
    """20 clients each issuing windows back to back for ``seconds``."""
    latencies: list[float] = []

    async def work(index: int, view: Any, deadline: float) -> None:
        i = index * 10
        while time.perf_counter() < deadline:
            start = target.windows[i % len(target.windows)]
            t0 = time.perf_counter()
            await view.to_columns_string(start_row=start, end_row=start + WINDOW)
            latencies.append((time.perf_counter() - t0) * 1000)
            i += 1

    cpu0 = cpu_seconds(target.pid)
    begin = time.perf_counter()
    deadline = begin + seconds
    await asyncio.gather(*(work(i, v, deadline) for i, v in enumerate(target.workers)))
    elapsed = time.perf_counter() - begin
    server_cpu = cpu_seconds(target.pid) - cpu0
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "server_cpu_us_per_req": server_cpu / len(latencies) * 1e6,
    }


async def bulk(target: Target) -> dict[str, float]:
    """The whole table as one Arrow reply."""
    t0 = time.perf_counter()
    payload = await target.flat.to_arrow()
    elapsed = time.perf_counter() - t0
    return {"mb_per_s": len(payload) / elapsed / 1e6, "seconds": elapsed, "mb": len(payload) / 1e6}


async def head_of_line(target: Target) -> dict[str, float]:
    """A ``size()`` sent 100 ms after another client started building a heavy grouped view."""
    t0 = time.perf_counter()

    async def heavy() -> tuple[Any, float]:
        view = await target.heavy_table.view(**HEAVY)
        return view, time.perf_counter()

    task = asyncio.get_running_loop().create_task(heavy())
    await asyncio.sleep(HOL_DELAY)
    s0 = time.perf_counter()
    await target.small_table.size()
    small_done = time.perf_counter()
    view, heavy_done = await task
    await view.delete()
    return {
        "small_ms": (small_done - s0) * 1000,
        "heavy_ms": (heavy_done - t0) * 1000,
        "small_first": float(small_done < heavy_done),
    }


def _on_delta(seen: dict[int, float], _port: int, delta: bytes) -> None:
    """Record when each update's rows first reached this subscriber (ms after it was stamped)."""
    received = time.time() * 1000
    batch = pa.ipc.open_stream(delta).read_all()
    seqs, stamps = batch.column("seq"), batch.column("ts")
    if pc.min(seqs) == pc.max(seqs):  # the usual case: one update per notification
        seen.setdefault(seqs[0].as_py(), received - stamps[0].as_py())
        return
    firsts = batch.group_by("seq").aggregate([("ts", "min")])
    for seq, ts in zip(firsts.column("seq").to_pylist(), firsts.column("ts_min").to_pylist()):
        seen.setdefault(seq, received - ts)


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


async def fanout(target: Target, seconds: float) -> dict[str, float]:
    """50 subscribers; the server appends 1,000 stamped rows 10 times a second."""
    count = int(seconds * FANOUT_RATE)
    seen: list[dict[int, float]] = [{} for _ in range(FANOUT_CLIENTS)]
    async with contextlib.AsyncExitStack() as stack:
        for received in seen:
            conn = await stack.enter_async_context(connect(target.url))
            view = await (await conn.client.open_table(TICKS)).view()
            await view.on_update(partial(_on_delta, received), mode="row")
        cpu0, server0, wall0 = time.process_time(), cpu_seconds(target.pid), time.perf_counter()
        await asyncio.to_thread(
            _post, target.http + "/feed", {"seconds": seconds, "rate": FANOUT_RATE, "rows": FANOUT_ROWS}
        )
        deadline = time.monotonic() + seconds + 10
        while time.monotonic() < deadline and not all(count - 1 in s for s in seen):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        wall = time.perf_counter() - wall0
        driver_cpu = (time.process_time() - cpu0) / wall
        server_cpu = (cpu_seconds(target.pid) - server0) / wall
    latencies = [ms for s in seen for seq, ms in s.items() if 0 <= seq < count]
    lost = sum(count - len([q for q in s if 0 <= q < count]) for s in seen)
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "lost": float(lost),
            "driver_cpu": driver_cpu, "server_cpu": server_cpu}


async def idle_memory(target: Target, connections: int) -> dict[str, float]:
    """Server RSS growth per open, idle connection that has a live Perspective session."""
    await asyncio.sleep(2.0)
    before = rss_kb(target.pid)
    async with contextlib.AsyncExitStack() as stack:

        async def one() -> None:
            conn = await stack.enter_async_context(connect(target.url))
            await conn.client.get_hosted_table_names()

        for begin in range(0, connections, 50):
            await asyncio.gather(*(one() for _ in range(min(50, connections - begin))))
        await asyncio.sleep(1.0)
        after = rss_kb(target.pid)
    return {"kb_per_connection": (after - before) / connections, "rss_before_mb": before / 1024}
