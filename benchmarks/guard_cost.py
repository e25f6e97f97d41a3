"""The guard's cost per frame, over request frames captured from perspective's own client.

    python -m benchmarks.guard_cost

Measures envelope parsing plus ``Guard.check`` (decisions cached, as in a live connection)
per frame, median of many passes; writes benchmarks/results/guard_cost.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

import perspective  # noqa: E402

from django_perspective import protocol  # noqa: E402
from django_perspective.guard import Guard  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


async def capture() -> list[bytes]:
    server = perspective.Server()
    local = server.new_local_client()
    local.table({"id": list(range(1000)), "g": [i % 7 for i in range(1000)], "x": [i * 0.5 for i in range(1000)]}, name="t", index="id")
    frames: list[bytes] = []
    loop = asyncio.get_running_loop()
    session = server.new_session(lambda r: loop.call_soon(asyncio.ensure_future, client.handle_response(r)))

    async def send(frame: bytes) -> None:
        frames.append(bytes(frame))
        session.handle_request(frame)

    client = perspective.AsyncClient(send)
    table = await client.open_table("t")
    view = await table.view(group_by=["g"], columns=["x"])
    for start in range(0, 40, 10):
        await view.to_columns_string(start_row=start, end_row=start + 10)
    await table.size(), await table.schema(), await view.num_rows(), await view.schema()
    await table.update([{"id": 1, "x": 2.0}])
    session.close()
    return frames


async def measure(frames: list[bytes], passes: int = 2000) -> dict:
    async def yes(name: str) -> bool:
        return True

    guard = Guard(can_read=yes, can_update=yes)
    for frame in frames:  # warm the decision cache, register the view ids
        await guard.check(protocol.parse_envelope(frame), frame)
    guard.views.update(protocol.parse_envelope(f).entity_id for f in frames)
    samples = []
    reads = [f for f in frames if protocol.parse_envelope(f).kind != protocol.MAKE_VIEW]
    for _ in range(passes):
        start = time.perf_counter_ns()
        for frame in reads:
            await guard.check(protocol.parse_envelope(frame), frame)
        samples.append((time.perf_counter_ns() - start) / len(reads) / 1000)
    return {"frames": len(reads), "passes": passes, "median_us_per_frame": statistics.median(samples), "p99_us_per_frame": sorted(samples)[int(0.99 * len(samples))]}


def main() -> None:
    frames = asyncio.run(capture())
    result = asyncio.run(measure(frames))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guard_cost.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
