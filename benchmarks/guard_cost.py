"""The guard's cost per frame, over request frames captured from perspective's own client.

    python -m benchmarks.guard_cost

Per frame, the whole path a request takes before the engine runs it: ``schema.decode``,
``Guard.check`` (access decisions cached, as in a live connection), ``Guard.bind`` against
the view's current size (a probe of the engine, as on the engine thread) and
``schema.encode``. Reported separately for view requests (the viewer's scrolling), for
make_view, and for a 10 MB update frame. Median of many passes; writes
benchmarks/results/guard_cost.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

import perspective  # noqa: E402

from django_perspective import protocol, schema  # noqa: E402
from django_perspective.catalog import Catalog  # noqa: E402
from django_perspective.guard import Guard, Limits  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


async def capture(server: perspective.Server) -> list[bytes]:
    frames: list[bytes] = []
    loop = asyncio.get_running_loop()
    session = server.new_session(lambda r: loop.call_soon(asyncio.ensure_future, client.handle_response(r)))

    async def send(frame: bytes) -> None:
        frames.append(bytes(frame))
        session.handle_request(frame)

    client = perspective.AsyncClient(send)
    table = await client.open_table("t")
    view = await table.view(group_by=["g"], columns=["x"], filter=[["x", ">", 1.0]], sort=[["x", "desc"]])
    for start in range(0, 40, 10):
        await view.to_columns_string(start_row=start, end_row=start + 10)
    await table.size(), await table.schema(), await view.num_rows(), await view.schema()
    await view.to_arrow(start_row=0, end_row=5)
    await table.update([{"id": 1, "x": 2.0}])
    return frames


def median_us(fn: Callable[[], None], passes: int) -> tuple[float, float]:
    samples = []
    for _ in range(passes):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * len(samples))]


async def measure(passes: int = 3000) -> dict:
    server = perspective.Server()
    local = server.new_local_client()
    local.table({"id": list(range(1000)), "g": [i % 7 for i in range(1000)], "x": [i * 0.5 for i in range(1000)]}, name="t", index="id")
    frames = await capture(server)
    catalog = Catalog(server)

    async def yes(name: str) -> bool:
        return True

    async def columns(name: str) -> dict[str, str] | None:
        return catalog.columns(name)

    guard = Guard(can_read=yes, can_update=yes, catalog=catalog, owned={}, limits=Limits(max_read_cells=50_000_000))
    decoded = [schema.decode(f) for f in frames]
    make_view = next(f for f, r in zip(frames, decoded) if r.kind.name == "make_view")
    views = [f for f, r in zip(frames, decoded) if r.kind.scope == "view"]
    for frame in frames:  # warm the decision cache, register the view id
        await guard.check(schema.decode(frame), columns)

    def path(frame: bytes) -> None:
        request = schema.decode(frame)
        coro = guard.check(request, columns)
        try:
            coro.send(None)
        except StopIteration as done:
            assert done.value is None, done.value
        if request.kind.scope == "view":
            assert guard.bind(request, catalog.dimensions(request.entity_id)) is None
        schema.encode(request)

    def view_pass() -> None:
        for frame in views:
            path(frame)

    view_median, view_p99 = median_us(view_pass, passes)
    view_id = schema.decode(make_view).body["view_id"]

    def make_view_once() -> None:
        guard.release(view_id)
        path(make_view)

    make_median, make_p99 = median_us(make_view_once, passes)
    big_rows = json.dumps([{"id": i, "g": i % 7, "x": i * 0.5} for i in range(240_000)]).encode()
    big = protocol.encode_envelope(7, "t", 33, protocol.encode_len(1, protocol.encode_len(4, big_rows)))
    update_median, update_p99 = median_us(lambda: path(big), 30)
    return {
        "view_requests": {"frames": len(views), "median_us_per_frame": view_median / len(views), "p99_us_per_frame": view_p99 / len(views)},
        "make_view": {"median_us": make_median, "p99_us": make_p99},
        "update_frame": {"bytes": len(big), "median_us": update_median, "p99_us": update_p99},
        "passes": passes,
    }


def main() -> None:
    result = asyncio.run(measure())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guard_cost.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
